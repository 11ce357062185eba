#!/usr/bin/env bash
# Builds a launcher jar for Beam's Flink job server (embedded Flink 1.16, '[local]' master):
# the runtime jars from Maven Central (~160 MB, ~80 s once) plus a manifest-only jar whose
# Class-Path lists them and whose Add-Opens lets Java 17 run Flink. Prints the jar's path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
home="${CALLQA_HOME:-$HOME/.cache/callqa}/flink-jobserver-2.56.0"
jar="$home/callqa-flink-jobserver.jar"
if [ ! -f "$jar" ]; then
  mkdir -p "$home/libs" "$home/manifest"
  mvn -B -q -s "$here/settings.xml" -f "$here/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$home/libs" >&2
  python3 - "$home" <<'PY'
import pathlib, sys
home = pathlib.Path(sys.argv[1])
opens = ("java.lang java.util java.lang.reflect java.io java.net java.nio sun.nio.ch "
         "java.lang.invoke java.util.concurrent java.util.concurrent.atomic java.math "
         "java.text java.time").split()
headers = {
    "Manifest-Version": "1.0",
    "Main-Class": "org.apache.beam.runners.flink.FlinkJobServerDriver",
    "Add-Opens": " ".join([f"java.base/{p}" for p in opens] + ["java.sql/java.sql"]),
    "Class-Path": " ".join(f"libs/{j.name}" for j in sorted((home / "libs").glob("*.jar"))),
}
lines = []
for key, value in headers.items():  # manifest lines: at most 72 bytes, continuations start " "
    text = f"{key}: {value}"
    lines.append(text[:72])
    lines += [" " + text[i : i + 71] for i in range(72, len(text), 71)]
(home / "manifest" / "MANIFEST.MF").write_text("\n".join(lines) + "\n")
PY
  (cd "$home" && jar cfm "$jar.tmp" manifest/MANIFEST.MF && mv "$jar.tmp" "$jar")
fi
echo "$jar"
