"""Imports flow one way: the import-linter contracts in `.importlinter` hold on the package as it is.

The contracts are docs/ARCHITECTURE.md's layers, "nothing below the command line imports the
top-level package", and no cycle between sibling modules or packages. Each contract is checked by
import-linter itself on the graph grimp builds from the source (no module is executed), about 1 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp")
pytest.importorskip("importlinter")

from importlinter import api  # noqa: E402  (configures import-linter: must come first)
from importlinter.contracts.acyclic_siblings import AcyclicSiblingsContract  # noqa: E402
from importlinter.contracts.forbidden import ForbiddenContract  # noqa: E402
from importlinter.contracts.layers import LayersContract  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".importlinter"
TYPES = {"layers": LayersContract, "forbidden": ForbiddenContract, "acyclic_siblings": AcyclicSiblingsContract}


def _options():
    opts = api.read_configuration(str(CONFIG))
    return opts["session_options"], {c["id"]: c for c in opts["contracts_options"]}


SESSION, CONTRACTS = _options()


def _contract(cid: str):
    opts = dict(CONTRACTS[cid])
    return TYPES[opts["type"]](opts["name"], SESSION, opts)


@pytest.fixture
def graph():
    """A fresh graph per test (tests add imports to it); building it takes ~0.1 s."""
    import actiba

    assert Path(actiba.__file__).resolve().parent == ROOT / "actiba", "checking another checkout's actiba"
    # imports under `if TYPE_CHECKING:` never run, so they cannot form a cycle (as in .importlinter)
    return grimp.build_graph("actiba", include_external_packages=False, cache_dir=None,
                             exclude_type_checking_imports=True)


def _broken_text(contract, check) -> str:
    from importlinter.application import output

    with output.console.capture() as cap:
        contract.render_broken_contract(check)
    return cap.get()


@pytest.mark.parametrize("cid", sorted(CONTRACTS))
def test_contract_is_kept(graph, cid):
    contract = _contract(cid)
    check = contract.check(graph, verbose=False)
    assert check.kept, f"{contract.name}:\n{_broken_text(contract, check)}"


@pytest.mark.parametrize(("importer", "imported", "cid"), [
    ("actiba.fitting", "actiba.targets", "layers"),              # the fitter calling the hardware formats
    ("actiba.rewrite.torch_rw", "actiba.calibrate", "layers"),   # rewrites reaching into capture
    ("actiba.recover.tune", "actiba.evaluate.perplexity", "layers"),
    ("actiba.table", "actiba", "facade"),
    ("actiba.rewrite.onnx_ssd", "actiba.rewrite.onnx_rw", "acyclic"),
])
def test_contracts_catch_an_import_against_the_grain(graph, importer, imported, cid):
    g = graph
    g.add_import(importer=importer, imported=imported)
    if cid == "acyclic":
        g.add_import(importer=imported, imported=importer)
    assert not _contract(cid).check(g, verbose=False).kept


def test_every_top_level_module_has_a_layer(graph):
    layered = {m.strip().strip("()").split(".")[0] for layer in CONTRACTS["layers"]["layers"]
               for m in layer.replace(":", "|").split("|")}
    top = {m.split(".")[1] for m in graph.find_children("actiba")}
    assert top - layered == set(), "place new modules in a layer of .importlinter and docs/ARCHITECTURE.md"
