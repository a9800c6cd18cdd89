"""The layers point one way: the engine is pure, storage never reaches up.

Read from the source with `ast`, so a forbidden import fails `make test` even when it sits
inside a function or behind TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from pathlib import Path

from bot.settings import PROJECT_ROOT

# The engine may import only these (an allowlist: anything new, e.g. os, pathlib, time or
# asyncio, must be argued for here first).
ENGINE_MAY_IMPORT = {
    "__future__",
    "collections",
    "dataclasses",
    "enum",
    "functools",
    "hashlib",
    "itertools",
    "json",
    "re",
    "string",
    "types",
    "typing",
    "transitions",
    "yaml",
    "state_machines",
}

RULES = {
    # the engine: no I/O, no Telegram, no SQL, no upper layer
    "state_machines": {
        "telegram",
        "aiosqlite",
        "sqlite3",
        "asyncio",
        "bot",
        "storage",
        "httpx",
        "aiohttp",
        "socket",
        "requests",
        "subprocess",
        "sentry_sdk",
    },
    # storage: never the application or Telegram
    "storage": {"bot", "telegram", "state_machines", "sentry_sdk"},
}


def forbidden_imports(package_dir: Path, forbidden: set[str]) -> list[str]:
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        tree = ast.parse(path.read_text("utf-8"), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in forbidden:
                    found.append(f"{path.relative_to(package_dir.parent)}:{node.lineno}: {name}")
    return found


def imported_roots(package_dir: Path) -> dict[str, str]:
    """Every top-level module imported in a package, with one place it is imported."""
    found: dict[str, str] = {}
    for path in sorted(package_dir.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], f"{path.name}:{node.lineno}")
    return found


def test_the_engine_imports_only_pure_modules() -> None:
    imported = imported_roots(PROJECT_ROOT / "state_machines")
    assert {m: where for m, where in imported.items() if m not in ENGINE_MAY_IMPORT} == {}


def test_layers_import_only_downwards() -> None:
    problems = [
        p
        for package, forbidden in RULES.items()
        for p in forbidden_imports(PROJECT_ROOT / package, forbidden)
    ]
    assert problems == []


def test_the_rule_catches_a_planted_violation(tmp_path: Path) -> None:
    planted = tmp_path / "state_machines"
    planted.mkdir()
    (planted / "sneaky.py").write_text(
        "def f():\n    import asyncio.tasks\nfrom storage.database import Database\n"
    )
    assert sorted(forbidden_imports(planted, RULES["state_machines"])) == [
        "state_machines/sneaky.py:2: asyncio.tasks",
        "state_machines/sneaky.py:3: storage.database",
    ]
