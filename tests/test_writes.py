"""Writes never destroy: every CLI writer goes through `actiba._atomic`, and each kind of output path is
handled the same way (run as root, where permissions do not stop a rename onto `/dev/full`):
a device or FIFO is written in place and stays what it was; a symlink is written through and stays a
link; a folder is refused with one line; `-` is stdout for text and refused for binary outputs; an
output that is one of the command's inputs needs --force; a failed write leaves what was there."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import threading

import numpy as np
import pytest
from _cli import one_line, run

from actiba import _atomic
from actiba.cli import main
from actiba.errors import InputError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def table(tmp_path, capsys):
    path = tmp_path / "in" / "silu.json"
    path.parent.mkdir()
    assert main(["fit", "silu", "--segments", "6", "-o", str(path)]) == 0
    capsys.readouterr()
    return path


# --- devices and FIFOs: written in place, never replaced ------------------------------------------------
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("argv", [
    ["fit", "silu", "--segments", "4", "-o", "/dev/full"],
    ["export", "{table}", "--to", "c-header", "-o", "/dev/full"],
    ["export", "{table}", "--to", "onnx", "-o", "/dev/full"],
])
def test_dev_full_fails_as_one_line_and_stays_a_device(capsys, table, argv):
    before = os.stat("/dev/full")
    assert stat.S_ISCHR(before.st_mode)
    rc, _, err = run(capsys, *[a.format(table=table) for a in argv])
    line = one_line(rc, err)
    assert "/dev/full" in line and "No space left" in line
    after = os.lstat("/dev/full")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_dev_null_is_written_not_replaced(capsys, table):
    rc, _, err = run(capsys, "show", table, "--plot", "/dev/null")
    assert rc == 0, err
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)


def _reader(path, sink: list) -> threading.Thread:
    def read():
        with open(path, "rb") as fh:
            sink.append(fh.read())

    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("what", ["fit", "export-c", "export-onnx"])
def test_fifo_is_written_through_with_a_reader(capsys, tmp_path, table, what):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = _reader(fifo, got)
    argv = {"fit": ["fit", "silu", "--segments", "4", "-o", fifo],
            "export-c": ["export", table, "--to", "c-header", "-o", fifo],
            "export-onnx": ["export", table, "--to", "onnx", "-o", fifo]}[what]
    rc, _, err = run(capsys, *argv)
    reader.join(timeout=60)
    assert rc == 0, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["in", "pipe"]
    data = got[0]
    if what == "fit":
        assert json.loads(data)["format"] == "actiba-pwl/1"
    elif what == "export-c":
        assert b"#" in data and b"silu" in data.lower()
    else:
        import onnx

        assert onnx.load_from_string(data).graph.node


# --- symlinks: written through -------------------------------------------------------------------------
def test_symlink_is_written_through(capsys, tmp_path):
    real = tmp_path / "real" / "t.json"
    real.parent.mkdir()
    real.write_text("old")
    os.chmod(real, 0o640)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    rc, _, err = run(capsys, "fit", "tanh", "--segments", "5", "-o", link)
    assert rc == 0, err
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert json.loads(real.read_text())["function"] == "tanh"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640  # the replaced file's mode is kept
    assert sorted(os.listdir(real.parent)) == ["t.json"]  # no temp file left


def test_dangling_symlink_creates_its_target(capsys, tmp_path, table):
    link = tmp_path / "m.onnx"
    link.symlink_to(tmp_path / "target.onnx")
    rc, _, err = run(capsys, "export", table, "--to", "onnx", "-o", link)
    assert rc == 0, err
    assert link.is_symlink() and (tmp_path / "target.onnx").stat().st_size > 0


def test_openvino_ir_pair_through_symlinks(capsys, tmp_path, table):
    pytest.importorskip("openvino")
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "m.xml").symlink_to(real / "m.xml")
    rc, _, err = run(capsys, "export", table, "--to", "openvino", "-o", tmp_path / "m.xml")
    assert rc == 0, err
    assert (tmp_path / "m.xml").is_symlink()
    assert sorted(os.listdir(real)) == ["m.xml"] and (tmp_path / "m.bin").is_file()
    assert b"<net" in (real / "m.xml").read_bytes()


# --- folders are refused ---------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["fit", "silu", "--segments", "4", "-o", "{dir}"],
    ["export", "{table}", "--to", "onnx", "-o", "{dir}"],
    ["export", "{table}", "--to", "c-header", "-o", "{dir}"],
    ["export", "{table}", "--to", "torch", "-o", "{dir}"],
    ["show", "{table}", "--plot", "{dir}"],
])
def test_folder_output_is_one_line(capsys, tmp_path, table, argv):
    folder = tmp_path / "out.d"
    folder.mkdir()
    rc, _, err = run(capsys, *[a.format(table=table, dir=folder) for a in argv])
    assert "folder" in one_line(rc, err)
    assert folder.is_dir() and os.listdir(folder) == []


# --- '-' is stdout for text, refused for binary ------------------------------------------------------------
def test_dash_is_stdout_for_text(capsys, tmp_path, table, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(capsys, "fit", "silu", "--segments", "4", "-o", "-")
    assert rc == 0, err
    assert json.loads(out)["format"] == "actiba-pwl/1"
    rc, out, err = run(capsys, "export", table, "--to", "c-header", "-o", "-")
    assert rc == 0, err
    assert "#" in out
    assert not os.path.exists(tmp_path / "-")


@pytest.mark.parametrize("argv", [["export", "{table}", "--to", "onnx", "-o", "-"],
                                  ["show", "{table}", "--plot", "-"]])
def test_dash_is_refused_for_binary(capsys, tmp_path, table, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(capsys, *[a.format(table=table) for a in argv])
    assert "stdout" in one_line(rc, err)
    assert not os.path.exists(tmp_path / "-")


# --- outputs that are inputs need --force ---------------------------------------------------------------
@pytest.mark.parametrize("via", ["same", "symlink", "hardlink"])
@pytest.mark.parametrize("argv", [["export", "{table}", "--to", "c-header", "-o", "{out}"],
                                  ["show", "{table}", "--plot", "{out}"]])
def test_output_onto_input_needs_force(capsys, tmp_path, table, via, argv):
    out = table
    if via == "symlink":
        out = tmp_path / "alias.json"
        out.symlink_to(table)
    elif via == "hardlink":
        out = tmp_path / "alias.json"
        os.link(table, out)
    before = table.read_bytes()
    rc, _, err = run(capsys, *[a.format(table=table, out=out) for a in argv])
    assert "--force" in one_line(rc, err)
    assert table.read_bytes() == before
    rc, _, err = run(capsys, *[a.format(table=table, out=out) for a in argv], "--force")
    assert rc == 0, err
    # a hard link is a second name: the rename replaces that name and leaves the input file alone
    assert (out if via == "hardlink" else table).read_bytes() != before


def test_rewrite_onto_its_model_needs_force(capsys, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    g = helper.make_graph([helper.make_node("CumSum", ["x", "ax"], ["y"], name="cs")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 8])],
                          [numpy_helper.from_array(np.array(-1, np.int64), "ax")])
    model = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    before = model.read_bytes()
    rc, _, err = run(capsys, "rewrite", model, "--cumba", "-o", model)
    assert "--force" in one_line(rc, err)
    assert model.read_bytes() == before
    link = tmp_path / "link.onnx"
    link.symlink_to(model)
    rc, _, err = run(capsys, "rewrite", model, "--cumba", "-o", link)
    assert "--force" in one_line(rc, err)
    assert model.read_bytes() == before
    rc, _, err = run(capsys, "rewrite", model, "--cumba", "-o", model, "--force")
    assert rc == 0, err
    assert "CumSum" not in {n.op_type for n in onnx.load(str(model)).graph.node}


def test_rewrite_output_kind_names_the_output(capsys, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    rc, _, err = run(capsys, "rewrite", model, "--cumba", "-o", tmp_path / "x.json")
    line = one_line(rc, err)
    assert "output" in line and "x.json" in line and "model" not in line.split("x.json")[0]


# --- a failed write leaves what was there --------------------------------------------------------------
def test_failed_export_leaves_the_old_file(capsys, tmp_path, table, monkeypatch):
    """The ONNX exporter fails after the output was opened: the old file is untouched."""
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")

    def boom(path, data):
        with _atomic.atomic_path(path) as tmp:
            tmp.write_bytes(data[:10])
            raise InputError("simulated failure mid-write")

    import actiba.lower.onnx_lower as ol

    monkeypatch.setattr(ol._atomic, "write_bytes", boom)
    rc, _, err = run(capsys, "export", table, "--to", "onnx", "-o", out)
    one_line(rc, err)
    assert out.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["in", "m.onnx"]


def test_missing_folder_and_empty_name(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        _atomic.write_text(tmp_path / "nope" / "t.json", "x")
    with pytest.raises(InputError, match="empty"):
        _atomic.write_text("", "x")


def test_symlink_to_another_file_system(capsys, tmp_path):
    """The scratch folder sits beside the link; its target is on tmpfs: the file is copied beside the
    target and renamed there (a rename across file systems fails with EXDEV)."""
    shm = "/dev/shm"
    if not os.path.isdir(shm) or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another file system than the test folder")
    folder = tempfile.mkdtemp(dir=shm)
    try:
        real = os.path.join(folder, "t.json")
        link = tmp_path / "link.json"
        link.symlink_to(real)
        rc, _, err = run(capsys, "fit", "tanh", "--segments", "3", "-o", link)
        assert rc == 0, err
        assert link.is_symlink() and json.loads(open(real).read())["function"] == "tanh"
        assert os.listdir(folder) == ["t.json"] and sorted(os.listdir(tmp_path)) == ["link.json"]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("argv", [
    ["fit", "silu", "--segments", "4", "--calibration", "{f}", "-o", "{f}"],
    ["calibrate", "embedded:mamba2", "--data", "{f}", "-o", "{f}"],
    ["eval", "embedded:mamba2", "--config", "{f}", "--json", "{f}"],
])
def test_other_writers_refuse_their_inputs(capsys, tmp_path, argv):
    """Checked before any model loads or fit runs, so these cost nothing."""
    f = tmp_path / "in.json"
    f.write_text("{}")
    rc, _, err = run(capsys, *[a.format(f=f) for a in argv])
    assert "--force" in one_line(rc, err)
    assert f.read_text() == "{}"
