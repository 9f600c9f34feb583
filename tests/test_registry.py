"""The generic lazy registry (`actiba.registry`) and the registries built on it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from actiba import exporters, functions, targets
from actiba.cli import COMMANDS
from actiba.errors import InputError
from actiba.registry import Registry, resolve


def test_placeholder_is_imported_on_first_get_only():
    reg: Registry = Registry("thing")
    reg.register("path", "os.path:join")
    assert not reg.is_loaded("path")
    assert reg.placeholder("path") == "os.path:join"
    import os.path

    assert reg.get("path") is os.path.join
    assert reg.is_loaded("path")


def test_module_placeholder_and_dotted_attr():
    import collections.abc
    import json

    assert resolve("json") is json

    assert resolve("collections:abc.Mapping") is collections.abc.Mapping


def test_unknown_name_is_one_line_input_error_listing_known_names_and_aliases():
    reg: Registry = Registry("colour", hint=", or #rrggbb")
    reg.register("red", 1, aliases=("crimson",))
    reg.register("blue", 2)
    with pytest.raises(InputError) as exc:
        reg.get("green")
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg == "unknown colour 'green'; known: blue, crimson, red, or #rrggbb"


def test_aliases_normalize_and_build_once():
    built = []
    reg: Registry = Registry("shape", normalize=str.lower, build=lambda v: built.append(v) or [v])
    reg.register("square", 4, aliases=("box",))
    a = reg.get("BOX")
    assert a == [4] and reg.get("square") is a and built == [4]
    assert reg.canonical("Box") == "square" and reg.aliases("square") == ("box",)
    assert "SQUARE" in reg and "circle" not in reg and 3 not in reg
    assert reg.names() == ("square",) and list(reg) == ["square"] and len(reg) == 1


@pytest.mark.parametrize("second", [("a", 2, ()), ("b", 2, ("a",)), ("c", 3, ("x",))])
def test_a_name_or_alias_registers_once(second):
    reg: Registry = Registry("thing")
    reg.register("a", 1, aliases=("x",))
    name, entry, aliases = second
    with pytest.raises(ValueError, match="registered twice"):
        reg.register(name, entry, aliases=aliases)


def test_decorator_registration():
    reg: Registry = Registry("hook")

    @reg.register("twice", aliases=("double",))
    def twice(x):
        return 2 * x

    assert reg.get("double")(3) == 6 and twice(1) == 2


def test_missing_optional_dependency_is_input_error_but_missing_actiba_module_is_a_bug():
    reg: Registry = Registry("backend", extra="onnx")
    reg.register("gone", "no_such_module_xyz:thing")
    reg.register("broken", "actiba.no_such_module:thing")
    with pytest.raises(InputError, match=r"backend gone needs no_such_module_xyz, .*actiba\[onnx\]"):
        reg.get("gone")
    with pytest.raises(ModuleNotFoundError):
        reg.get("broken")


def test_bad_placeholder_is_rejected_at_registration():
    with pytest.raises(ValueError, match="names no module"):
        Registry("thing").register("x", ":attr")


def test_project_registries_resolve_every_entry_without_error():
    for name in COMMANDS:
        mod = COMMANDS.get(name)
        assert callable(mod.add_parser) and callable(mod.run)
    for name in targets.NAMES:
        t = targets.get(name)
        assert t.name == name and t is targets.get(name)  # one shared instance
    for name in functions.NAMES:
        assert functions.get(name).name in {"silu", "softplus", "gelu", "gelu-tanh", "sigmoid", "tanh", "exp"}
    assert functions.get(" Swish ").name == "silu"


def test_every_target_is_an_exporter_registered_once():
    assert set(targets.NAMES) <= set(exporters.EXPORTERS)
    assert {"onnx", "openvino", "torch"} <= set(exporters.EXPORTERS)
    assert len(exporters.EXPORTERS.names()) == len(set(exporters.EXPORTERS.names()))


def test_target_abc_declares_from_table():
    from actiba.targets.base import Target

    assert "from_table" in Target.__abstractmethods__


@pytest.mark.parametrize(("reg", "kind"), [(lambda: exporters.get("nope"), "export format"),
                                           (lambda: targets.get("nope"), "target"),
                                           (lambda: functions.get("nope"), "function"),
                                           (lambda: COMMANDS.get("nope"), "command")])
def test_project_registries_name_the_kind_and_list_the_known(reg, kind):
    with pytest.raises(InputError, match=rf"^unknown {kind} 'nope'; known: "):
        reg()


def test_listing_exporters_and_commands_imports_no_heavy_framework():
    code = ("import sys\n"
            "from actiba.cli import build_parser\n"
            "from actiba import exporters\n"
            "build_parser(); list(exporters.EXPORTERS); exporters.get('npu-ppe')\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'openvino', 'torch'))\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)
