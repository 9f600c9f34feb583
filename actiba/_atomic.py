"""File I/O with the CLI's guarantees: atomic writes, and reads that fail as one clear line.

Writes go to a temporary file in the target folder and are renamed into place, so a reader (or a
crash) never sees a half-written output and a failed command leaves nothing behind. Reads of user
files (tables, table sets, statistics) turn every OS/JSON problem into one InputError line.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"cannot write {target}: folder {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=folder)
    except OSError as exc:
        raise InputError(f"cannot write {target}: {exc.strerror}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _set_mode(tmp_path, target)
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def _set_mode(tmp: Path, target: Path) -> None:
    """Give the finished file the mode a plain open() would (mkstemp makes it 0600), or the mode of
    the file it replaces."""
    try:
        if target.exists():
            mode = target.stat().st_mode & 0o777
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        if tmp.is_file():
            os.chmod(tmp, mode)
    except OSError:
        pass  # permissions are a courtesy; the write itself succeeded


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically write `data` to `path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write `text` (UTF-8) to `path`."""
    write_bytes(path, text.encode("utf-8"))


def check_writable(path: str | os.PathLike) -> None:
    """Fail early (InputError) if `path` could not be written, without creating or touching it."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"cannot write {target}: folder {folder} does not exist")
    if target.is_dir():
        raise InputError(f"cannot write {target}: it is a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=folder)
    except OSError as exc:
        raise InputError(f"cannot write {target}: {exc.strerror}") from None
    os.close(fd)
    os.unlink(tmp)


def read_text(path: str | os.PathLike, what: str, error: type[InputError] = InputError) -> str:
    """The UTF-8 text of `path`; a missing, folder or unreadable path is one `error` line naming `what`."""
    name = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        raise error(f"{what} file {name} does not exist") from None
    except IsADirectoryError:
        raise error(f"{name} is a folder, not a {what} file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {what} {name}: {exc}") from None


def read_json(path: str | os.PathLike, what: str, error: type[InputError] = InputError) -> tuple[Any, str]:
    """(parsed JSON, raw text) of `path`; invalid JSON is one `error` line with its position."""
    import json

    text = read_text(path, what, error)
    try:
        return json.loads(text), text
    except json.JSONDecodeError as exc:
        raise error(f"{os.fspath(path)} is not valid JSON ({exc.msg} at line {exc.lineno}, "
                    f"column {exc.colno})") from None


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks (weights and archives can be large)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
