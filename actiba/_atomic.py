"""File I/O with the CLI's guarantees: writes that never destroy, and reads that fail as one clear line.

Every writer in actiba goes through `atomic_path` / `atomic_files` (or `write_text`/`write_bytes` on top
of them), so each output path is handled the same way:

- a regular file (or a new name) is written to a temporary file in the same folder and renamed onto it:
  a reader or a crash never sees half a file, and a failed command leaves what was there;
- a symlink is written *through*: its target is replaced atomically and the link stays a link;
- a character/block device or a FIFO (`/dev/null`, `/dev/stdout`, a named pipe) is written in place,
  never replaced (renaming onto `/dev/full` as root would turn the device node into a regular file);
  a failed write there (ENOSPC on `/dev/full`) is one InputError line;
- a folder is refused with one line;
- `-` is standard output for text outputs (`write_text`) and refused for binary ones.

`refuse_inputs` is the other half: an output that is one of the command's own inputs (the same file,
also through a symlink or a hard link) needs `--force`.

Reads of user files (tables, table sets, statistics) turn every OS/JSON problem into one InputError line.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import InputError

STDOUT = "-"


def _fail(target: Path | str, exc: OSError) -> InputError:
    return InputError(f"cannot write {target}: {exc.strerror or exc}")


class _Target:
    """Where the bytes for one output path really go.

    `real` is the file to replace (a symlink's final target; a dangling link's target is created);
    `special` is True for devices, FIFOs and sockets, which are written in place."""

    def __init__(self, path: str | os.PathLike):
        if os.fspath(path) == "":
            raise InputError("output path is empty")
        self.given = Path(path)
        try:
            st = os.stat(self.given)  # follows symlinks: what kind of thing the bytes would land in
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise _fail(self.given, exc) from None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise InputError(f"cannot write {self.given}: it is a folder")
        self.exists = st is not None
        self.special = st is not None and not stat.S_ISREG(st.st_mode)
        # devices and FIFOs are opened by the given name (/dev/stdout -> /proc/self/fd/1 must not be
        # resolved to a pipe's pseudo-name); files are replaced at the link's final target
        self.real = self.given if self.special or not self.given.is_symlink() else Path(os.path.realpath(self.given))
        self.folder = self.real.parent if str(self.real.parent) else Path(".")
        if not self.special and not self.folder.is_dir():
            raise InputError(f"cannot write {self.given}: folder {self.folder} does not exist")

    def mode(self) -> int:
        """The mode a plain open() would give a new file (mkstemp makes 0600), or the replaced file's."""
        if self.exists and not self.special:
            with contextlib.suppress(OSError):
                return self.real.stat().st_mode & 0o7777
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask

    def commit(self, tmp: Path) -> None:
        """Put the finished temporary file `tmp` in place (see the module docstring for how)."""
        try:
            if self.special:
                with open(tmp, "rb") as src, open(self.real, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                return
            with contextlib.suppress(OSError):
                os.chmod(tmp, self.mode())
            try:
                os.replace(tmp, self.real)  # the scratch folder sits beside the output: same file system
                return
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
            # a link whose target is on another file system: copy beside the target, then rename there
            fd, near = tempfile.mkstemp(prefix=f".{self.real.name}.", suffix=".tmp", dir=self.folder)
            os.close(fd)
            try:
                shutil.copyfile(tmp, near)
                with contextlib.suppress(OSError):
                    os.chmod(near, self.mode())
                os.replace(near, self.real)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(near)
                raise
        except OSError as exc:
            raise _fail(self.given, exc) from None


def _scratch_dir(near: _Target) -> Path:
    """A private temporary folder: beside the output when it is a file (so the final rename is
    atomic and on the same file system), in the system temp folder when the output is a device."""
    where = None if near.special else near.folder
    try:
        return Path(tempfile.mkdtemp(prefix=f".{near.real.name}.", suffix=".tmp", dir=where))
    except OSError as exc:
        raise _fail(near.given, exc) from None


@contextlib.contextmanager
def atomic_files(paths: Sequence[str | os.PathLike]) -> Iterator[Path]:
    """Yield a temporary folder; the block writes one file per output, named as the output's basename
    (OpenVINO writes NAME.xml and NAME.bin together); on success each is put in place, in the order
    given (so list the .bin before the .xml: a reader who sees the new .xml finds its .bin).
    On any failure nothing is put in place and the scratch folder is removed."""
    if any(os.fspath(p) == STDOUT for p in paths):
        raise InputError("this output is binary; '-' (stdout) is for text outputs, give a file name")
    targets = [_Target(p) for p in paths]
    scratch = _scratch_dir(targets[-1])
    try:
        try:
            yield scratch
        except OSError as exc:
            raise _fail(targets[-1].given, exc) from None
        for t in targets:
            t.commit(scratch / t.given.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary file path for `path` (ending in `suffix`, for writers that look at it); it is
    put in place only if the block succeeds (see the module docstring for links, devices, folders)."""
    name = Path(os.fspath(path)).name if os.fspath(path) != STDOUT else "stdout"
    with atomic_files([path]) as scratch:
        tmp = scratch / (name + (suffix or ".tmp"))
        yield tmp
        os.replace(tmp, scratch / name)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` with the guarantees above."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path`; `-` is standard output."""
    if os.fspath(path) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    write_bytes(path, text.encode("utf-8"))


def check_writable(path: str | os.PathLike) -> None:
    """Fail early (InputError) if `path` could not be written, without creating or touching it:
    run it before spending minutes on a fit or an export."""
    if os.fspath(path) == STDOUT:
        return
    target = _Target(path)
    if target.special:
        if not os.access(target.real, os.W_OK):
            raise InputError(f"cannot write {target.given}: permission denied")
        return
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.real.name}.", suffix=".probe", dir=target.folder)
    except OSError as exc:
        raise _fail(target.given, exc) from None
    os.close(fd)
    os.unlink(tmp)


def refuse_inputs(outputs: Iterable[str | os.PathLike | None], inputs: Iterable[str | os.PathLike | None],
                  force: bool = False) -> None:
    """InputError if an output is the same file as one of the command's inputs (compared by device and
    inode, so through symlinks and hard links too), unless `force`: a typo in `-o` must not replace
    the model or table the command is reading."""
    if force:
        return
    ins = []
    for p in inputs:
        if p is None or os.fspath(p) == STDOUT:
            continue
        with contextlib.suppress(OSError):
            st = os.stat(p)
            if stat.S_ISREG(st.st_mode):
                ins.append((p, (st.st_dev, st.st_ino)))
    for out in outputs:
        if out is None or os.fspath(out) == STDOUT:
            continue
        try:
            st = os.stat(out)
        except OSError:
            continue
        for p, key in ins:
            if (st.st_dev, st.st_ino) == key:
                raise InputError(f"output {os.fspath(out)} is the input {os.fspath(p)}"
                                 + ("" if os.fspath(out) == os.fspath(p) else " (the same file)")
                                 + "; add --force to overwrite it")


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
