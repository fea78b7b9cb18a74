"""Atomic file writes: a killed process leaves the old file or the new one, never half of one."""
import os
import pathlib


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via ``path.tmp``, fsync, ``os.replace`` and a directory fsync."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # some filesystems do not open directories; the rename is done either way
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
