"""The import rules of docs/architecture.md, read from the source (and, for Dagster, from what an
import really loads)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "news_ai_assets"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement of the file names (at any depth, functions included);
    `from package import name` counts as package.name too, since name may be a module."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def package_imports() -> dict[str, set[str]]:
    """module -> the modules of this package it imports (a submodule standing for itself)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imported_modules(path) if m in modules} for name, path in modules.items()}


GRAPH = package_imports()


def layer(module: str) -> str:
    """The package's folder the module is in (its __init__ included), or "root"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else "root"


def offending(source_layer: str, allowed) -> list[str]:
    return sorted(f"{module} imports {target}" for module, targets in GRAPH.items() if layer(module) == source_layer
                  for target in targets if not allowed(target))


def test_the_rules_see_every_layer():
    layers = {layer(m) for m in GRAPH}
    assert {"compute", "mind", "storage", "assets", "root"} <= layers
    assert "news_ai_assets.storage.database" in GRAPH["news_ai_assets.assets.bronze"]  # the reading works


def test_compute_imports_only_compute_and_mind():
    assert offending("compute", lambda t: layer(t) in {"compute", "mind"}) == []


def test_mind_imports_only_mind_and_how_duckdb_is_opened():
    assert offending("mind", lambda t: layer(t) == "mind" or t == "news_ai_assets.storage.duckdb_config") == []


def test_storage_imports_no_asset_resource_setting_or_code_location():
    assert offending("storage", lambda t: layer(t) in {"storage", "mind"} or t == "news_ai_assets.dagster_internals") == []


def test_assets_import_no_storage_implementation():
    interface = {"news_ai_assets.storage", "news_ai_assets.storage.database", "news_ai_assets.storage.tables",
                 "news_ai_assets.storage.staging"}
    assert offending("assets", lambda t: (layer(t) != "storage" or t in interface)
                     and t != "news_ai_assets.definitions") == []


def test_only_dagster_internals_reaches_into_dagster_private_modules():
    private = sorted(
        f"{module_name(path)} imports {name}"
        for path in [*PACKAGE.rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]
        for name in imported_modules(path) if name.startswith("dagster._") or ".dagster._" in f".{name}"
    )
    assert private and all(line.startswith("news_ai_assets.dagster_internals ") for line in private), private


def test_nothing_outside_the_tests_imports_the_tests():
    importers = sorted(
        str(path.relative_to(ROOT)) for path in [*PACKAGE.rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]
        if any(name.split(".")[0] == "news_ai_assets_tests" for name in imported_modules(path))
    )
    assert importers == []


def test_the_package_imports_form_no_cycle():
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == "open":
                pytest.fail("import cycle: " + " -> ".join([*path, module, target]))
            if target not in state:
                visit(target, [*path, module])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [])


def test_importing_compute_and_mind_loads_no_dagster():
    modules = sorted(m for m in GRAPH if layer(m) in {"compute", "mind"})
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules) + (
        "print(sorted(m for m in sys.modules if m.split('.')[0].startswith('dagster')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
