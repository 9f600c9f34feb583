"""Fixtures shared by several test files (each documented where it is built)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_mamba2(tmp_path_factory: pytest.TempPathFactory):
    """(torch model, ONNX ModelProto, path) of the random tiny Mamba-2 exported at 40 tokens
    (2.5 chunks of 16: the padding path is included); exported once per test session."""
    pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    from actiba.evaluate.build import load_model
    from actiba.models.export import export_onnx

    lm = load_model("random:tiny-mamba2")
    path = tmp_path_factory.mktemp("ssd") / "tiny.onnx"
    export_onnx(lm.model, path, seq_len=40, verbose=False)
    return lm.model, onnx.load(str(path)), str(path)
