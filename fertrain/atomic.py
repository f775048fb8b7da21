"""Atomic writes: temp file in the same directory, fsync, rename.

A reader (or a crash) never sees a half-written JSON, manifest or checkpoint: either the
old file or the complete new one is there. Every writer in fertrain goes through here.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from fertrain.errors import DiskFullError

FULL_BELOW = 1 << 20  # bytes free under which a failed write is taken for a full disk


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_umask() -> int:
    # os.umask can only be read by setting it; do it once at import, before any threads.
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


_FILE_MODE = 0o666 & ~_read_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` atomically.

    For writers that want a filename (pandas, pyarrow, torch.save). On error the temp file
    is removed and `path` is untouched. `durable=False` skips the fsyncs: still atomic for
    readers, but a power cut may lose the file, which is right for bulk regenerable data.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(path, shutil.disk_usage(path.parent).free) from None
        raise
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; published files follow the umask
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError
        free = shutil.disk_usage(path.parent).free
        if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or free < FULL_BELOW:
            raise DiskFullError(path, free) from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()
    if durable:  # the new file is in place; this makes the rename itself survive a power cut
        _fsync_dir(path.parent)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any], *, durable: bool = True) -> Path:
    """Call `write(fh)` on a binary temp file, then move it over `path`."""
    path = Path(path)
    with atomic_path(path, durable=durable) as tmp, open(tmp, "wb") as fh:
        write(fh)
    return path


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = True) -> Path:
    return atomic_write(path, lambda fh: fh.write(data), durable=durable)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """JSON with sorted-free, human-readable indentation; non-JSON values become strings."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """torch.save through a temp file, so an interrupted checkpoint never replaces a good one."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)
