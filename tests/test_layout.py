"""The package's rooms stay as README's table of paths draws them (issue 12).

Each subpackage of skipsr_cli owns one concern and imports only the rooms below it; commands sit
side by side and never import one another; models/ never imports the command line; no module grows
past 500 lines; the top of skipsr_cli stays small.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "skipsr_cli"
COMMANDS = PACKAGE / "commands"
MAX_LINES = 500
MAX_TOP_MODULES = 8

# What each room of skipsr_cli may import from skipsr_cli (besides itself).
ALLOWED = {
    "media": {"errors"},
    "run": {"errors", "weights", "media"},
    "train": {"errors", "weights", "media"},
    "measure": {"errors", "weights", "media", "run", "train"},
    "batch": {"errors", "weights", "media", "run", "processes"},
    "farm": {"errors", "weights", "media", "run", "batch", "processes"},
}


def modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module name an import in `path` may load (`from a import b` counts a and a.b)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def rooms_imported(path: Path) -> set[str]:
    """The top-level names of skipsr_cli (subpackages and modules) that `path` imports."""
    parts = (name.split(".") for name in imported(path))
    return {p[1] for p in parts if p[0] == "skipsr_cli" and len(p) > 1}


def test_no_module_is_over_500_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for folder in (PACKAGE, ROOT / "models")
        for p in modules(folder)
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_top_of_the_package_stays_small():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top
    subpackages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert len(subpackages) >= 3, subpackages


@pytest.mark.parametrize("init", sorted(PACKAGE.glob("*/__init__.py")), ids=lambda p: p.parent.name)
def test_each_subpackage_says_what_it_owns_and_may_import(init: Path):
    doc = ast.get_docstring(ast.parse(init.read_text()))
    assert doc, f"{init.relative_to(ROOT)} has no docstring"
    assert "import" in doc, f"{init.relative_to(ROOT)} does not say what it may import"


def test_no_command_module_imports_another():
    commands = {p.stem for p in COMMANDS.glob("*.py")} - {"__init__", "app", "common"}
    assert {"upscale", "eval", "bench", "train"} <= commands
    for path in COMMANDS.glob("*.py"):
        if path.stem == "app":  # the assembly: it imports every command group, by design
            continue
        parts = [name.split(".") for name in imported(path)]
        wrong = {
            ".".join(p)
            for p in parts
            if p[:2] == ["skipsr_cli", "commands"] and len(p) > 2 and p[2] in commands - {path.stem}
        }
        assert not wrong, f"{path.relative_to(ROOT)} imports command modules {sorted(wrong)}"


def test_library_rooms_import_only_the_rooms_below_them():
    for room, allowed in ALLOWED.items():
        for path in modules(PACKAGE / room):
            wrong = rooms_imported(path) - allowed - {room}
            assert not wrong, f"{path.relative_to(ROOT)} imports skipsr_cli.{sorted(wrong)}"


def test_only_commands_and_cli_import_commands():
    for path in modules(PACKAGE):
        if path.parent == COMMANDS or path == PACKAGE / "cli.py":
            continue
        assert "commands" not in rooms_imported(path), f"{path.relative_to(ROOT)} imports commands"


def test_models_import_nothing_from_the_command_line():
    for path in modules(ROOT / "models"):
        wrong = {name for name in imported(path) if name.split(".")[0] == "skipsr_cli"}
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"
