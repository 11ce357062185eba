#!/usr/bin/env bash
# A standalone Flink 1.16 session cluster on this machine, from the job server's Maven jars
# (deploy/flink/setup.sh; flink-dist is not needed): a JobManager, FLINK_TASKMANAGERS (2)
# TaskManagers with 2 slots each, and Beam's Python worker pool (the SDK workers), each its own
# process, all on 127.0.0.1.
#   eval "$(./deploy/flink/cluster.sh start)"  # waits for every TaskManager; exports
#                                               # FLINK_MASTER and BEAM_WORKER_POOL
#   ./deploy/flink/run.sh --kafka_topic=...     # on the cluster, at --parallelism=2
#   ./deploy/flink/cluster.sh status       # REST /overview
#   ./deploy/flink/cluster.sh add-taskmanager   # one more, for the running JobManager
#   ./deploy/flink/cluster.sh stop
# FLINK_CLUSTER_DIR (default $CALLQA_HOME/flink-cluster) holds each process's log and pid
# (taskmanager-1.pid, ...). Ports: FLINK_REST_PORT (8081), FLINK_RPC_PORT (6123),
# BEAM_WORKER_POOL_PORT (50000).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${CALLQA_HOME:-$HOME/.cache/callqa}"
dir="${FLINK_CLUSTER_DIR:-$cache/flink-cluster}"
rest_port="${FLINK_REST_PORT:-8081}"
rpc_port="${FLINK_RPC_PORT:-6123}"
pool_port="${BEAM_WORKER_POOL_PORT:-50000}"
taskmanagers="${FLINK_TASKMANAGERS:-2}"
libs="$cache/flink-jobserver-2.56.0/libs"
logging_libs="$cache/flink-cluster-libs"
log4j=2.24.3

opens=()
for p in java.lang java.util java.lang.reflect java.io java.net java.nio sun.nio.ch \
  java.lang.invoke java.util.concurrent java.util.concurrent.atomic java.math java.text java.time; do
  opens+=("--add-opens=java.base/$p=ALL-UNNAMED")
done
opens+=(--add-opens=java.sql/java.sql=ALL-UNNAMED
  --add-exports=java.base/sun.net.util=ALL-UNNAMED
  --add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED)

install() {
  "$here/setup.sh" >/dev/null  # the job server's jars: Flink 1.16 runtime and Beam's runner
  if [ ! -f "$logging_libs/log4j-core-$log4j.jar" ]; then  # Flink logs through SLF4J 1.7
    for a in log4j-api log4j-core log4j-slf4j-impl; do
      mvn -B -q -s "$here/settings.xml" dependency:copy \
        -Dartifact="org.apache.logging.log4j:$a:$log4j" -DoutputDirectory="$logging_libs" >&2
    done
  fi
}

rest() { curl -fsS --max-time 3 "http://127.0.0.1:$rest_port$1"; }

alive() { [ -f "$dir/$1.pid" ] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null; }

launch() {  # name, then the command; its own session so that stop reaches its children
  local name=$1
  shift
  setsid "$@" >"$dir/$name.out" 2>&1 </dev/null &
  echo $! >"$dir/$name.pid"
}

flink_process() {  # name, main class
  launch "$1" java "${opens[@]}" -Xms"$3" -Xmx"$3" -XX:MaxMetaspaceSize=256m \
    -XX:MaxDirectMemorySize=256m -Dlog.file="$dir/$1.log" \
    -Dlog4j.configurationFile="file:$here/cluster/log4j2.properties" \
    -cp "$libs/*:$logging_libs/*" "$2" --configDir "$here/cluster" \
    -D "rest.port=$rest_port" -D "jobmanager.rpc.port=$rpc_port" \
    -D "io.tmp.dirs=$dir/tmp"
}

start() {
  install
  mkdir -p "$dir/tmp"
  if alive jobmanager; then
    echo "cluster: already running (REST 127.0.0.1:$rest_port)" >&2
    exit 1
  fi
  launch worker-pool "$root/.venv/bin/python" -m beam_jobs.services.worker_pool \
    --host=127.0.0.1 --port="$pool_port"
  flink_process jobmanager \
    org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint 512m
  for i in $(seq 1 "$taskmanagers"); do
    flink_process "taskmanager-$i" org.apache.flink.runtime.taskexecutor.TaskManagerRunner 640m
  done
  local deadline=$((SECONDS + ${FLINK_START_TIMEOUT_S:-180}))
  until rest /overview 2>/dev/null | grep -q "\"taskmanagers\":$taskmanagers[,}]"; do
    for name in worker-pool jobmanager $(seq -f "taskmanager-%g" 1 "$taskmanagers"); do
      alive "$name" || { echo "cluster: $name exited; see $dir/$name.log and .out" >&2; stop; exit 1; }
    done
    if [ $SECONDS -ge $deadline ]; then
      echo "cluster: not up after ${FLINK_START_TIMEOUT_S:-180} s; see $dir/*.log" >&2
      stop
      exit 1
    fi
    sleep 1
  done
  echo "cluster: JobManager REST http://127.0.0.1:$rest_port, $taskmanagers TaskManagers," \
    "worker pool 127.0.0.1:$pool_port; logs in $dir" >&2
  echo "export FLINK_MASTER=127.0.0.1:$rest_port BEAM_WORKER_POOL=127.0.0.1:$pool_port"
}

add_taskmanager() {  # one more TaskManager for the running JobManager
  local n=1 want=1
  alive jobmanager || { echo "cluster: no JobManager running" >&2; exit 1; }
  while [ -e "$dir/taskmanager-$n.pid" ]; do  # a lost one keeps its pid file and number
    alive "taskmanager-$n" && want=$((want + 1))
    n=$((n + 1))
  done
  flink_process "taskmanager-$n" org.apache.flink.runtime.taskexecutor.TaskManagerRunner 640m
  local deadline=$((SECONDS + ${FLINK_START_TIMEOUT_S:-180}))
  until rest /overview 2>/dev/null | grep -q "\"taskmanagers\":$want[,}]"; do
    alive "taskmanager-$n" || { echo "cluster: taskmanager-$n exited; see $dir/taskmanager-$n.log" >&2; exit 1; }
    [ $SECONDS -lt $deadline ] || { echo "cluster: taskmanager-$n did not register" >&2; exit 1; }
    sleep 1
  done
  echo "cluster: taskmanager-$n registered ($want TaskManagers)" >&2
}

stop() {
  local pid
  for f in "$dir"/*.pid; do
    [ -e "$f" ] || continue
    pid="$(cat "$f")"
    kill -TERM -- "-$pid" 2>/dev/null || true  # its whole session: a JVM, or the pool and its workers
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$f"
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) rest /overview && echo ;;
  add-taskmanager) add_taskmanager ;;
  install) install ;;
  *) echo "usage: $0 start|stop|status|add-taskmanager|install" >&2; exit 2 ;;
esac
