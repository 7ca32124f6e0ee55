"""Output files that are whole or absent: `atomic_path` hands a writer a temp path in the target's folder and
renames it into place only when the writer finished; `check_output_path` refuses a bad target before long work."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from roofsim.hardware_specs.errors import InputError


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A temp file next to `path` (same suffix, so writers that look at it behave the same) for the caller to
    write; on normal exit it is fsynced and os.replace'd onto `path`, on any exception or interrupt (Ctrl-C,
    SIGTERM through roofsim's handler) it is deleted: `path` keeps its old content or stays absent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write `data` to `path` through atomic_path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: Path | str, text: str) -> Path:
    """Write `text` (UTF-8) to `path` through atomic_path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def check_output_path(path: Path | str, flag: str, force: bool = False, directory: bool = False,
                      names: tuple[str, ...] = ()) -> None:
    """InputError naming `flag` unless `path` can be written: its folder (or, for a `directory` output, the
    nearest existing ancestor) exists and is writable, and without `force` nothing is overwritten (`names`:
    the files a directory output writes)."""
    path = Path(path)
    if directory:
        if path.exists() and not path.is_dir():
            raise InputError(f"{flag} {path}: exists and is not a directory")
        existing = [n for n in names if (path / n).exists()]
        if existing and not force:
            raise InputError(f"{flag} {path}: already has {', '.join(existing)}; pass --force to overwrite")
        parent = path
        while not parent.exists():  # the folders that will be made: the first existing one must be writable
            parent = parent.parent
    else:
        if path.is_dir():
            raise InputError(f"{flag} {path}: is a directory, not a file")
        if path.exists() and not force:
            raise InputError(f"{flag} {path}: exists; pass --force to overwrite it")
        parent = path.parent
        if not parent.is_dir():
            raise InputError(f"{flag} {path}: folder {parent} does not exist")
    if not parent.is_dir():
        raise InputError(f"{flag} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {path}: folder {parent} is not writable")


__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "check_output_path"]
