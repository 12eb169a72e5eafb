"""The layer rule: every import of the package points downward (read from the source, lazy
imports inside functions included).

    spec, nmaccel.files, nmaccel.cachekey  <  hw, model (never each other)  <  sim
        <  boards  <  studies  <  cli

A module may import its own layer's modules and those of lower layers; nothing imports the
CLI; the spec imports neither Amaranth nor PyTorch, and the golden models never Amaranth.
"""

import ast
import importlib.util
from pathlib import Path

import pytest

#: layer of each subpackage (the package root, nmaccel.files and nmaccel.cachekey sit with the
#: spec)
LAYERS = {"nmaccel": 0, "nmaccel.files": 0, "nmaccel.cachekey": 0, "nmaccel.spec": 0,
          "nmaccel.hw": 1, "nmaccel.model": 1, "nmaccel.sim": 2, "nmaccel.boards": 3,
          "nmaccel.studies": 4, "nmaccel.cli": 5}
#: third-party packages a layer must not import
FORBIDDEN = {"nmaccel.spec": ("amaranth", "torch"), "nmaccel.model": ("amaranth",)}


def _group(module: str) -> str:
    parts = module.split(".")
    for n in (2, 1):
        if ".".join(parts[:n]) in LAYERS:
            return ".".join(parts[:n])
    raise AssertionError(f"{module} belongs to no layer")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in LAYERS:
        spec = importlib.util.find_spec(pkg)
        if spec.submodule_search_locations:
            for root in spec.submodule_search_locations:
                for path in Path(root).rglob("*.py"):
                    rel = path.relative_to(root).with_suffix("")
                    name = ".".join([pkg, *rel.parts]).removesuffix(".__init__")
                    if _group(name) == pkg:
                        out[name] = path
        else:
            out[pkg] = Path(spec.origin)
    return out


def _imports(path: Path, name: str):
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            yield base, node.lineno


MODULES = _modules()


def test_every_subpackage_is_walked():
    assert {_group(m) for m in MODULES} == set(LAYERS)
    assert len(MODULES) > 80


def violations(module: str, path: Path) -> list[str]:
    """The imports of ``module`` (source ``path``) that break the rule."""
    mine = _group(module)
    bad = []
    for target, line in _imports(path, module):
        if target.split(".")[0] in FORBIDDEN.get(mine, ()):
            bad.append(f"line {line}: {target} (the {mine} layer must not import it)")
        if not target.startswith("nmaccel"):
            continue
        theirs = _group(target)
        if theirs == mine:
            continue
        if LAYERS[theirs] >= LAYERS[mine] and not (theirs == "nmaccel" and target == "nmaccel"):
            bad.append(f"line {line}: {target} ({theirs} is not below {mine})")
    return bad


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_downward(module):
    bad = violations(module, MODULES[module])
    assert not bad, f"{module} imports upward or sideways:\n" + "\n".join(bad)


def test_the_rule_catches_upward_sideways_and_forbidden_imports(tmp_path):
    src = tmp_path / "fake.py"
    src.write_text("from nmaccel.spec.config import StaConfig\n"
                   "def f():\n    from nmaccel.model import quant\n"
                   "    from nmaccel.cli import main\n    import torch\n")
    assert len(violations("nmaccel.hw.fake", src)) == 2          # model (sideways), cli (up)
    assert len(violations("nmaccel.spec.fake", src)) == 3        # model, cli, torch
    assert len(violations("nmaccel.studies.fake", src)) == 1      # cli (up)
