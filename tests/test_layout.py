"""The one-way flow, read from the source: plumbing and configs <- convert <- the stages <- cascade."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("plumbing", "configs", "convert", "stage1_detect", "stage2_segment", "synthetic_hands", "cascade")
MAY_IMPORT = {
    "plumbing": set(),
    "configs": {"plumbing"},
    "convert": {"plumbing", "configs"},
    "synthetic_hands": {"plumbing", "configs", "convert"},
    "stage1_detect": {"plumbing", "configs", "convert"},
    "stage2_segment": {"plumbing", "configs", "convert"},
    "cascade": {"plumbing", "configs", "convert", "stage1_detect", "stage2_segment"},
}
GENERATOR_USERS = {"cascade/demo.py", "cascade/cli.py"}  # `cascade demo` and `cascade synth`


def _imports(path: Path) -> set[str]:
    """Top-level package names this module imports (relative imports stay inside the package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & set(OURS)


@pytest.mark.parametrize("package", OURS)
def test_a_package_imports_only_the_layers_below_it(package):
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        allowed = MAY_IMPORT[package] | {package} | ({"synthetic_hands"} if rel in GENERATOR_USERS else set())
        assert _imports(path) <= allowed, f"{rel} imports {sorted(_imports(path) - allowed)}"


MAX_FUNCTION_LINES = 60  # a function a reader takes in at once; longer ones become named steps


def test_no_function_is_longer_than_a_screen():
    long = []
    for path in sorted(p for d in (*OURS, "benchmarks", "tests") for p in (ROOT / d).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT).as_posix()}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long
