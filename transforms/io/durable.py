"""Atomic, durable file replacement shared by the sinks and the offset checkpoints.

Write to a temporary file in the target directory, fsync it, rename it over the target, fsync
the directory. Readers see the old file or the new one, never a torn one, and after a host
crash a checkpoint can never be newer on disk than the rows it vouches for.

A disk that is full, read-only or refuses the job for a while (``is_disk_fault``) stalls the
write: it is retried with backoff until it succeeds, one log line when the fault starts and one
when it ends, so nothing is acknowledged that is not on disk and the job goes on by itself
once space returns.
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Final

from transforms.io.outage import Outage

#: Faults of the output volume that an operator can cure while the job waits.
_DISK_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES,
                                 errno.EPERM, errno.EIO})  # fmt: skip


def is_disk_fault(exc: BaseException) -> bool:
    """A full, read-only or forbidding output volume (pyarrow's ``OSError`` names it in its
    message, without ``errno``)."""
    if not isinstance(exc, OSError):
        return False
    if exc.errno in _DISK_ERRNOS:
        return True
    return exc.errno is None and any(os.strerror(e) in str(exc) for e in _DISK_ERRNOS)


_DISK: Final = Outage("writing the output", is_disk_fault, "cannot write", "writing again",
                      "disk", max_backoff_s=30.0)  # fmt: skip


def replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` then move ``tmp`` over ``path`` durably; no temp file is left. A
    disk fault is waited out (``is_disk_fault``)."""
    _DISK.call(lambda: _replace_once(path, write))


def _replace_once(path: Path, write: Callable[[Path], object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)  # only left when the write or the rename failed
