"""Imports only go down: benchmarks (which measure everything) -> cli -> gateways -> streams ->
feeds, simulator, billing -> rules -> models. A module that imports from a layer above it would make the pure
core depend on Kafka or the entrypoints."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent
LAYERS = {"benchmarks": 6, "cli": 5, "gateways": 4, "streams": 3, "feeds": 2, "simulator": 2, "billing": 2,
          "rules": 1, "models": 0}


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_imports_only_go_down():
    wrong = []
    for package, level in LAYERS.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in imported(path) & LAYERS.keys():
                if LAYERS[name] > level or (LAYERS[name] == level and name != package):
                    wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, wrong
