"""The package's layers and its one-way import rule, checked on the source (ast), function-level
imports included.

Layers, lowest first: ``base`` < ``core`` < ``vgg`` < ``losses`` < ``model`` < ``train`` | ``infer``
< ``apps`` < ``commands``; the package root (``fastmmd/__init__``, ``__main__``) is the entry point
above all. A module may import its own layer and any lower one, never a higher one nor its sibling
(``train`` and ``infer`` share a rank and never import each other); modules never import each other
in a circle; Lightning is imported only under ``train``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fastmmd"
RANK = {"base": 0, "core": 1, "vgg": 2, "losses": 3, "model": 4, "train": 5, "infer": 5, "apps": 6, "commands": 7}
ROOT_MODULES = {"fastmmd", "fastmmd.__main__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported fastmmd module) for every import in the file, at any depth; ``from X import
    name`` counts as X.name where that is a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "fastmmd"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "fastmmd":
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.append((node.lineno, candidate if candidate in MODULES else node.module))
    return found


FILES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
MODULES = set(FILES)


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def violations() -> list[str]:
    bad = []
    for name, path in FILES.items():
        if name in ROOT_MODULES:
            continue
        mine = layer(name)
        if mine is None:
            bad.append(f"{name}: outside every layer (put it in one of {sorted(RANK)})")
            continue
        for line, target in imports(path):
            theirs = layer(target)
            if target == "fastmmd" or theirs == mine:
                continue
            if theirs is None:
                bad.append(f"{name}:{line} imports the entry point {target}")
            elif RANK[theirs] >= RANK[mine]:
                bad.append(f"{name}:{line} ({mine}) imports {target} ({theirs}): against the one-way rule")
    return sorted(set(bad))


def test_every_import_runs_down_the_layers():
    assert violations() == []


def test_modules_import_each_other_in_no_circle():
    graph = {name: {t for _, t in imports(path) if t in MODULES and t != name} for name, path in FILES.items()}
    # a package's __init__ is imported with any of its modules: only the edges the source writes count
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [node, nxt]) if nxt in stack else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, stack + [node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert cycles == []


def test_lightning_is_imported_only_by_the_training_layer():
    bad = []
    for name, path in FILES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(m.split(".")[0] in ("lightning", "pytorch_lightning") for m in mods) and layer(name) != "train":
                bad.append(f"{name}:{node.lineno}")
    assert bad == []


@pytest.mark.parametrize("name", sorted(RANK))
def test_each_layer_says_what_it_is_for(name):
    doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
    assert doc and len(doc.splitlines()[0]) <= 120, f"fastmmd/{name}/__init__.py needs a docstring whose first line is its purpose"


def test_the_rule_catches_an_upward_import(tmp_path, monkeypatch):
    """The check itself can fail: a base module importing the model layer is reported."""
    fake = PACKAGE / "base" / "errors.py"
    real_read = Path.read_text

    def read(self, *a, **k):
        text = real_read(self, *a, **k)
        return text + "\nfrom fastmmd.model.networks import TransformerNet\n" if self == fake else text

    monkeypatch.setattr(Path, "read_text", read)
    assert any("fastmmd.base.errors" in v and "fastmmd.model.networks" in v for v in violations())


def test_old_module_names_still_import_with_one_warning():
    """The flat layout's names keep working until 0.3 (fastmmd.MOVED), each with a FutureWarning
    naming the new home; a split module answers every name it had."""
    import importlib
    import subprocess
    import sys

    import fastmmd

    code = ("import warnings, sys\n"
            "warnings.simplefilter('error')\n"
            "try:\n    import fastmmd.stylize\nexcept FutureWarning as w:\n    print('WARN', w)\n"
            "warnings.simplefilter('ignore')\n"
            "from fastmmd.stylize import load_stylizer, build_parser, available_memory\n"
            "from fastmmd.conditioning import Condition, ConditionalAffine, draw_conditions, condition_defaults\n"
            "from fastmmd.infer.stylize import load_stylizer as new\n"
            "print('SAME', load_stylizer is new)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "WARN fastmmd.stylize moved to fastmmd.infer.stylize" in out and "SAME True" in out, out
    for old, homes in fastmmd.MOVED.items():
        assert all(importlib.util.find_spec(f"fastmmd.{h}") for h in homes), old
        assert importlib.util.find_spec(f"fastmmd.{old}") is not None


def test_the_architecture_page_lists_every_module_in_its_layer():
    """docs/architecture.md's table names each layer's modules: a module added or moved updates it."""
    rows = {}
    for line in (PACKAGE.parent / "docs" / "architecture.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].strip("`") in RANK:
            rows[cells[0].strip("`")] = {m.strip(" `") for m in cells[2].split(",")}
    assert set(rows) == set(RANK)
    for name in FILES:
        mine = layer(name)
        if mine and name.count(".") >= 2:
            leaf = name.split(".")[2]
            assert leaf in rows[mine], f"docs/architecture.md: {name} is missing from the {mine} row"
