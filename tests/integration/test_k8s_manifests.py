"""deploy/k8s validated offline (deploy/k8s/validate.py): every object against the strict
Kubernetes schemas, the custom resources against their CRDs (FlinkDeployment from the Flink
operator's API jar, KafkaTopic from Strimzi's generator), the FlinkDeployment through the
operator's DefaultValidator; a broken copy must fail each. Then the manifests against the code:
topic names, partitions and policies, the settings the submitter passes, the restart strategy,
images, ports and every name one object uses of another.

The schemas and jars are fetched once from PyPI and Maven Central into the cache (~165 MB,
1-3 minutes); later runs take 15-35 s. No broker, runner or cluster."""

from __future__ import annotations

import copy
import importlib.util
import inspect
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from beam_jobs.config import DEFAULT_CALL_STATE_TOPIC, DEFAULT_TOPIC, DEFAULT_TRANSCRIPTS_TOPIC
from beam_jobs.pipeline import call_state_topic_problem
from beam_jobs.services.local import create_topic

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"


def _load_validate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_validate", K8S / "validate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


validate = _load_validate()


@pytest.fixture(scope="module")
def cache() -> Path:
    return validate.fetch()


@pytest.fixture(scope="module")
def validators(cache: Path) -> Any:
    return validate.load_validators(cache)


@pytest.fixture(scope="module")
def docs() -> list[Any]:
    return validate.load_docs(validate.manifest_files())


def _one(docs: list[Any], kind: str, name: str | None = None) -> dict[str, Any]:
    (body,) = [
        d.body for d in docs
        if d.body["kind"] == kind and name in (None, d.body["metadata"]["name"])
    ]  # fmt: skip
    return body


def _broken(docs: list[Any], kind: str, change: Callable[[dict[str, Any]], None]) -> list[Any]:
    """A copy of ``docs`` with ``change`` applied to the objects of ``kind`` (in memory)."""
    out = []
    for d in docs:
        body = copy.deepcopy(d.body)
        if body["kind"] == kind:
            change(body)
        out.append(validate.Doc(d.file, body))
    return out


def _sidecar(docs: list[Any]) -> dict[str, Any]:
    containers = _one(docs, "FlinkDeployment")["spec"]["taskManager"]["podTemplate"]["spec"][
        "containers"
    ]
    (sidecar,) = [c for c in containers if c["name"] == "beam-worker-pool"]
    return sidecar


def _settings(docs: list[Any]) -> dict[str, str]:
    return _one(docs, "ConfigMap", "callqa-settings")["data"]


def _submit_script(docs: list[Any]) -> str:
    return _one(docs, "ConfigMap", "callqa-submit")["data"]["submit.sh"]


# --- the validators -------------------------------------------------------------------------


def test_every_object_passes_its_schemas(docs: list[Any], validators: Any) -> None:
    kinds = {d.body["kind"] for d in docs}
    assert {"FlinkDeployment", "KafkaTopic", "Job", "ConfigMap"} <= kinds
    assert validate.schema_errors(docs, validators) == []


@pytest.fixture(scope="module")
def operator_verdicts(docs: list[Any], cache: Path) -> list[str]:
    """The operator's validator on the manifests and on a copy of the FlinkDeployment with a
    memory size it cannot parse (one JVM for both)."""

    def bad_memory(body: dict[str, Any]) -> None:
        body["spec"]["taskManager"]["resource"]["memory"] = "4 GB!"

    broken = [
        validate.Doc("broken copy", d.body)
        for d in _broken(docs, "FlinkDeployment", bad_memory)
        if d.body["kind"] == "FlinkDeployment"
    ]
    return validate.operator_errors([*docs, *broken], cache)


def test_the_flink_operator_accepts_the_deployment(operator_verdicts: list[str]) -> None:
    assert [e for e in operator_verdicts if not e.startswith("broken copy:")] == []


def test_the_operator_rejects_a_broken_deployment(operator_verdicts: list[str]) -> None:
    (error,) = [e for e in operator_verdicts if e.startswith("broken copy:")]
    assert "TaskManager resource memory parse error" in error


@pytest.mark.parametrize(
    ("kind", "change", "expected"),
    [
        # an unknown field deep in the TaskManager pod template (the sidecar), in the Job's pod
        # and in a topic's metadata; wrong types; a value out of the CRD's enum
        (
            "FlinkDeployment",
            lambda b: b["spec"]["taskManager"]["podTemplate"]["spec"]["containers"][1].update(
                workerPool=True
            ),
            "'workerPool' was unexpected",
        ),
        (
            "FlinkDeployment",
            lambda b: b["spec"]["taskManager"]["podTemplate"]["spec"]["containers"][1]["ports"][
                0
            ].update(containerPort="50000"),
            "'50000' is not of type 'integer'",
        ),
        ("FlinkDeployment", lambda b: b["spec"].update(flinkVersion="v1_99"), "'v1_99' is not"),
        (
            "Job",
            lambda b: b["spec"]["template"]["spec"]["containers"][0].update(envFrm=[]),
            "'envFrm' was unexpected",
        ),
        ("KafkaTopic", lambda b: b["spec"].update(partitions="4"), "'4' is not of type 'integer'"),
        ("KafkaTopic", lambda b: b["spec"].update(replicas=0), "0 is less than the minimum"),
        ("KafkaTopic", lambda b: b["metadata"].update(label={}), "'label' was unexpected"),
        ("ConfigMap", lambda b: b["data"].update(PARALLELISM=2), "2 is not of type 'string'"),
    ],
)
def test_a_broken_copy_is_rejected(
    docs: list[Any],
    validators: Any,
    kind: str,
    change: Callable[[dict[str, Any]], None],
    expected: str,
) -> None:
    errors = validate.schema_errors(_broken(docs, kind, change), validators)
    assert errors and all(kind in e for e in errors), errors
    assert all(expected in e for e in errors), errors


def test_kustomize_renders_the_same_objects(docs: list[Any]) -> None:
    errors = validate.kustomize_errors(docs)
    if errors is None:
        pytest.skip("no kubectl on PATH")
    assert errors == []


# --- the manifests against the code ---------------------------------------------------------


def test_the_topics_are_the_jobs_with_its_partitions_and_policies(docs: list[Any]) -> None:
    topics = {
        d.body["metadata"]["name"]: d.body["spec"] for d in docs if d.body["kind"] == "KafkaTopic"
    }
    assert set(topics) == {DEFAULT_TOPIC, DEFAULT_CALL_STATE_TOPIC, DEFAULT_TRANSCRIPTS_TOPIC}
    # the partitions `callqa kafka create-topic` makes; the preflight would create the
    # call-state topic with the source's count
    partitions = inspect.signature(create_topic).parameters["partitions"].default
    assert {t["partitions"] for t in topics.values()} == {partitions}
    state = topics[DEFAULT_CALL_STATE_TOPIC]["config"]
    assert call_state_topic_problem(DEFAULT_CALL_STATE_TOPIC, state["cleanup.policy"]) is None
    audio = topics[DEFAULT_TOPIC]["config"]
    assert audio["cleanup.policy"] == "delete"  # the delivery guarantee's requirement
    assert audio["retention.ms"] >= 24 * 3600 * 1000
    for t in topics.values():
        assert t["config"]["min.insync.replicas"] < t["replicas"]


def test_the_submitter_passes_the_jobs_settings(docs: list[Any]) -> None:
    settings = _settings(docs)
    assert settings["KAFKA_TOPIC"] == DEFAULT_TOPIC
    assert settings["CALL_STATE_TOPIC"] == DEFAULT_CALL_STATE_TOPIC
    assert settings["TRANSCRIPTS_TOPIC"] == DEFAULT_TRANSCRIPTS_TOPIC
    flink = _one(docs, "FlinkDeployment")
    assert settings["FLINK_MASTER"] == f"{flink['metadata']['name']}-rest:8081"  # operator's REST
    assert settings["PARALLELISM"] == flink["spec"]["flinkConfiguration"]["parallelism.default"]
    assert settings["PARALLELISM"] == "2"
    # the launcher jar where deploy/flink/setup.sh puts it under CALLQA_HOME
    setup = (ROOT / "deploy" / "flink" / "setup.sh").read_text()
    home = re.search(r'home="\$\{CALLQA_HOME:-\$HOME/\.cache/callqa\}/([^"]+)"', setup)
    jar = re.search(r'jar="\$home/([^"]+)"', setup)
    assert home and jar
    assert settings["FLINK_JOB_SERVER_JAR"] == f"{settings['CALLQA_HOME']}/{home[1]}/{jar[1]}"


def test_the_submit_script_uses_real_options(docs: list[Any]) -> None:
    from apache_beam.options.pipeline_options import PipelineOptions

    import beam_jobs.config  # noqa: F401  (registers the job's options)

    script = _submit_script(docs)
    known = set(PipelineOptions([]).get_all_options())
    used = re.findall(r"--([a-z_]+)=", script.split("exec callqa run", 1)[1])
    assert {"runner", "flink_master", "environment_type", "environment_config"} <= set(used)
    # options of Beam's Java Flink runner (FlinkPipelineOptions) pass through the Python
    # parser to the job server, as deploy/flink/run.sh passes them
    java_flink = {"max_bundle_time_mills"}
    run_sh = (ROOT / "deploy" / "flink" / "run.sh").read_text()
    assert java_flink <= set(re.findall(r"--([a-z_]+)=", run_sh))
    assert set(used) - known == java_flink
    assert "--environment_type=EXTERNAL --environment_config=localhost:50000" in script
    for var in re.findall(r"\$\{?([A-Z_]+)", script):
        assert var in _settings(docs), var
    # the shell parses, and so does the Python guard inside it
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)
    guard = script.split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0]
    compile(guard, "submit.sh guard", "exec")


def test_restarts_and_heartbeats_are_the_session_clusters(docs: list[Any]) -> None:
    config = _one(docs, "FlinkDeployment")["spec"]["flinkConfiguration"]
    for conf_file, prefixes in [
        ("conf/flink-conf.yaml", ("restart-strategy",)),
        ("cluster/flink-conf.yaml", ("restart-strategy", "heartbeat.")),
    ]:
        conf = yaml.safe_load((ROOT / "deploy" / "flink" / conf_file).read_text())
        wanted = {k: str(v) for k, v in conf.items() if k.startswith(prefixes)}
        assert len(wanted) >= 6, conf_file
        assert {k: v for k, v in config.items() if k.startswith(prefixes)} == wanted, conf_file


def test_only_flinks_ports_are_open_between_pods(docs: list[Any]) -> None:
    config = _one(docs, "FlinkDeployment")["spec"]["flinkConfiguration"]
    fixed = {int(v) for k, v in config.items() if k.endswith(".port")}
    policy = _one(docs, "NetworkPolicy", "callqa-flink")["spec"]
    peers, outside = policy["ingress"]
    assert {p["port"] for p in peers["ports"]} == fixed
    assert [p["port"] for p in outside["ports"]] == [int(config["rest.port"])]
    assert 50000 not in fixed  # the worker pool: loopback within its pod only


def test_the_worker_pool_sidecar_and_the_images(docs: list[Any]) -> None:
    sidecar = _sidecar(docs)
    assert sidecar["command"] == ["/opt/apache/beam/boot"] and sidecar["args"] == ["--worker_pool"]
    assert [p["containerPort"] for p in sidecar["ports"]] == [50000]
    flink = _one(docs, "FlinkDeployment")["spec"]
    assert flink["flinkVersion"] == "v1_16" and flink["image"].startswith("flink:1.16.")
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    tags = {i["name"]: i["newTag"] for i in kustomization["images"]}
    job = _one(docs, "Job")["spec"]["template"]["spec"]
    used = {c["image"] for c in job["containers"]} | {sidecar["image"]}
    assert used == {f"{name}:{tag}" for name, tag in tags.items()}


def test_every_reference_names_an_object_here(docs: list[Any]) -> None:
    names = {(d.body["kind"], d.body["metadata"]["name"]) for d in docs}
    flink = _one(docs, "FlinkDeployment")
    pods = [
        flink["spec"]["jobManager"]["podTemplate"]["spec"],
        flink["spec"]["taskManager"]["podTemplate"]["spec"],
        _one(docs, "Job")["spec"]["template"]["spec"],
    ]
    refs = {("ServiceAccount", flink["spec"]["serviceAccount"])}
    for pod in pods:
        for v in pod.get("volumes", []):
            if "persistentVolumeClaim" in v:
                refs.add(("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]))
            if "configMap" in v:
                refs.add(("ConfigMap", v["configMap"]["name"]))
        mounted = {v["name"] for v in pod.get("volumes", [])}
        for c in pod["containers"]:
            assert {m["name"] for m in c.get("volumeMounts", [])} <= mounted, c["name"]
            refs |= {("ConfigMap", e["configMapRef"]["name"]) for e in c.get("envFrom", [])}
    binding = _one(docs, "RoleBinding")
    refs.add((binding["roleRef"]["kind"], binding["roleRef"]["name"]))
    refs |= {(s["kind"], s["name"]) for s in binding["subjects"]}
    assert refs - names == set()
    # the network policies select the pods they are about (Flink's native mode labels its pods
    # app: <deployment name>)
    job_labels = _one(docs, "Job")["spec"]["template"]["metadata"]["labels"]
    selectors = {
        d.body["metadata"]["name"]: d.body["spec"]["podSelector"]["matchLabels"]
        for d in docs
        if d.body["kind"] == "NetworkPolicy"
    }
    assert selectors["callqa-flink"] == {"app": flink["metadata"]["name"]}
    assert selectors["callqa-submit"].items() <= job_labels.items()
