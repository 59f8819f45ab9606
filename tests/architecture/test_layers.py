"""The layers, each importing only those below it (docs/architecture.md, "Layers"), and who may
end a transaction."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("app", "bot", "cogs", "comfy", "db", "orchestration", "scheduler")

# What each package may import of ours; itself is always allowed.
ALLOWED: dict[str, set[str]] = {
    "comfy": set(),
    "db": {"orchestration.states"},
    "orchestration": {"db", "comfy"},
    "scheduler": {"db", "comfy", "orchestration"},
    "app": {"db", "comfy", "orchestration", "scheduler"},
    "bot": {"app", "db", "comfy", "orchestration", "scheduler"},
    "cogs": {"app", "bot", "db", "comfy", "orchestration", "scheduler", "cogs.common"},
}
# Where a transaction may end: the use cases, the scheduler's I/O, and the migrations.
MAY_COMMIT = ("app/", "scheduler/", "db/migrations/")


def modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if ".venv" not in p.parts)


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {n for n in names if n.split(".")[0] in OURS}


def allowed(package: str, name: str) -> bool:
    if name.split(".")[0] == package and package != "cogs":
        return True
    return any(name == rule or name.startswith(rule + ".") for rule in ALLOWED[package])


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_layer_imports_only_those_below(package: str) -> None:
    if not (ROOT / package).is_dir():
        pytest.skip(f"no {package}/ package")
    wrong = []
    for path in modules(package):
        if "migrations" in path.parts:
            continue
        own = f"{package}.{path.stem}" if package == "cogs" else None
        wrong += [
            f"{path.relative_to(ROOT)} imports {name}"
            for name in sorted(imported(path))
            if name != own and not allowed(package, name)
        ]
    assert not wrong, "\n".join(wrong)


def test_only_the_use_cases_the_scheduler_and_migrations_end_a_transaction() -> None:
    found = []
    for package in ("app", "bot", "cogs", "comfy", "db", "orchestration", "scheduler"):
        for path in modules(package) if (ROOT / package).is_dir() else []:
            where = str(path.relative_to(ROOT))
            if where.startswith(MAY_COMMIT):
                continue
            for node in ast.walk(ast.parse(path.read_text(), where)):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in ("commit", "rollback")):
                    found.append(f"{where}:{node.lineno} calls {node.func.attr}()")
    assert not found, "\n".join(found)
