"""The layering of ``broker/`` (docs/architecture.md), checked over the import graph so it cannot rot.

``LAYERS`` lists the gateway bottom-up, once. A module belongs to the longest entry that prefixes its name;
it may import its own entry and any entry of a lower layer, never a higher layer, and never another entry
of its own layer (the entries of one layer are independent of each other). Every import counts, including
those inside functions and under ``TYPE_CHECKING``: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

BROKER = Path(__file__).resolve().parents[1] / "broker"

LAYERS: tuple[tuple[str, ...], ...] = (
    # Leaves: pure, import nothing of the broker.
    ("broker.errors", "broker.grammar", "broker.http.paths"),
    # The package's face: its docstring and version.
    ("broker",),
    ("broker.ops",),
    ("broker.config",),
    ("broker.sessions", "broker.oidc"),
    ("broker.http",),
    ("broker.proxy",),
    ("broker.identity",),
    ("broker.gateway",),
    ("broker.handlers", "broker.middleware", "broker.reload"),
    ("broker.app",),
    ("broker.server",),
    ("broker.cli",),
    ("broker.__main__",),
)


def module_name(path: Path) -> str:
    """``broker/proxy/forward.py`` -> ``broker.proxy.forward``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(BROKER.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every ``broker`` module or package this file imports (``from broker.x import y`` counts ``broker.x``
    and ``broker.x.y``: y may be a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "broker" or name.startswith("broker.")}


def entry_of(module: str) -> str | None:
    """The longest ``LAYERS`` entry that is the module or one of its packages."""
    matches = [
        e for layer in LAYERS for e in layer if module == e or (e != "broker" and module.startswith(e + "."))
    ]
    return max(matches, key=len) if matches else None


def layer_of(entry: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if entry in layer)


def is_face(path: Path) -> bool:
    """A package's ``__init__.py`` that only describes its package (imports and defines nothing)."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return path.name == "__init__.py" and all(
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body
    )


def import_graph() -> dict[str, set[str]]:
    """Each broker module (faces left out) and the broker modules it imports (faces left out)."""
    paths = {module_name(path): path for path in sorted(BROKER.rglob("*.py")) if not is_face(path)}
    return {module: imported_modules(path) & set(paths) for module, path in paths.items()}


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    """Each import that reaches up a layer or across to an independent entry of the same layer."""
    problems = []
    for module, targets in graph.items():
        entry = entry_of(module)
        if entry is None:
            continue
        for target in sorted(targets):
            target_entry = entry_of(target)
            if target_entry is None or target_entry == entry:
                continue
            if layer_of(target_entry) >= layer_of(entry):
                problems.append(f"{module} ({entry}) imports {target} ({target_entry})")
    return problems


def test_every_module_has_a_layer() -> None:
    assert [module for module in import_graph() if entry_of(module) is None] == []


def test_no_module_imports_a_higher_or_sibling_layer() -> None:
    assert layering_violations(import_graph()) == []


def test_the_check_sees_a_forbidden_import() -> None:
    """The check itself: a proxy module importing the app (a higher layer), or the middleware importing a
    handler (an independent entry of its own layer), is reported."""
    graph = import_graph()
    graph["broker.proxy.routing"] = graph["broker.proxy.routing"] | {"broker.app"}
    graph["broker.middleware"] = graph["broker.middleware"] | {"broker.handlers.login"}
    assert sorted(layering_violations(graph)) == [
        "broker.middleware (broker.middleware) imports broker.handlers.login (broker.handlers)",
        "broker.proxy.routing (broker.proxy) imports broker.app (broker.app)",
    ]
