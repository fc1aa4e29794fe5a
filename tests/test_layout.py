"""The layout of ``tests/`` (docs/architecture.md, "Tests"), checked over the tree so it cannot rot.

A test module lives in the folder that mirrors the ``broker/`` package it tests (``tests/proxy/`` for
``broker/proxy/``, ``tests/http/pages/`` for ``broker/http/pages/``), or anywhere under one of the folders
that cut across the packages (``CROSS_CUTTING``). Only the repository-wide checks (``REPOSITORY_CHECKS``)
sit at the top of ``tests/``. A helper in ``tests/support/`` is shared: more than one test module imports it
(a helper of one test module lives next to that module). Every folder is a package.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
BROKER = TESTS.parent / "broker"

# Folders that cut across the packages: attacks end to end, whole flows, the shared fixtures, and the two
# development packages that sit beside broker/ (devidp/, demo/).
CROSS_CUTTING = frozenset({"security", "scenarios", "support", "devidp", "demo"})
# Checks of the repository as a whole: the import layers, this layout, the docs' snippet, the deploy files
# (the image and compose; the Kubernetes manifests against their schema).
REPOSITORY_CHECKS = frozenset(
    {
        "test_architecture.py",
        "test_layout.py",
        "test_docs.py",
        "test_deploy_files.py",
        "test_deploy_kubernetes.py",
    }
)


def broker_packages(broker: Path = BROKER) -> set[tuple[str, ...]]:
    """Every package folder of ``broker/``, relative to it (``("proxy",)``, ``("http", "pages")``)."""
    return {path.parent.relative_to(broker).parts for path in broker.rglob("__init__.py")} - {()}


def misplaced(test_modules: list[tuple[str, ...]], packages: set[tuple[str, ...]]) -> list[str]:
    """Each test module (its path relative to ``tests/``) that is in no folder the layout allows."""
    problems = []
    for parts in test_modules:
        folder, name = parts[:-1], parts[-1]
        if not folder:
            if name not in REPOSITORY_CHECKS:
                problems.append(f"{'/'.join(parts)}: only repository-wide checks sit at the top of tests/")
        elif folder[0] not in CROSS_CUTTING and folder not in packages:
            problems.append(f"{'/'.join(parts)}: tests/{'/'.join(folder)}/ mirrors no package of broker/")
    return problems


def collected_test_modules(tests: Path = TESTS) -> list[tuple[str, ...]]:
    """Every ``test_*.py`` under ``tests/``, relative to it."""
    return sorted(path.relative_to(tests).parts for path in tests.rglob("test_*.py"))


def imported_support_helpers(path: Path) -> set[str]:
    """The ``tests.support`` helpers a file imports (``from tests.support.stack import x`` -> ``stack``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and not node.level:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found.update(name.split(".")[2] for name in names if name.startswith("tests.support."))
    return found


def test_every_test_module_mirrors_a_package_or_cuts_across() -> None:
    assert misplaced(collected_test_modules(), broker_packages()) == []


def test_every_test_folder_is_a_package() -> None:
    """Test modules are imported by dotted name (``tests.scenarios.test_faults_under_traffic``); a folder
    without ``__init__.py`` would make two ``test_redirects.py`` collide."""
    folders = {path.parent for path in TESTS.rglob("*.py")}
    assert sorted(str(f.relative_to(TESTS)) for f in folders if not (f / "__init__.py").exists()) == []


def test_every_support_helper_is_shared() -> None:
    """Each helper module of ``tests/support/`` is imported by at least two test modules or conftests outside
    it; one used by a single test module belongs next to that module."""
    helpers = {
        path.stem
        for path in (TESTS / "support").glob("*.py")
        if path.name != "__init__.py" and not path.name.startswith("test_")
    }
    users: dict[str, int] = dict.fromkeys(helpers, 0)
    for path in TESTS.rglob("*.py"):
        if path.parent == TESTS / "support" or not path.name.startswith(("test_", "conftest")):
            continue
        for helper in imported_support_helpers(path) & helpers:
            users[helper] += 1
    assert {helper: count for helper, count in users.items() if count < 2} == {}


def test_the_check_sees_a_misplaced_module() -> None:
    """The check itself: a new top-level test, a folder named after no package, and a sub-folder that
    ``broker/`` lacks are reported; the mirrored, cross-cutting and repository-wide ones are not."""
    packages = broker_packages()
    assert ("proxy",) in packages and ("http", "pages") in packages
    modules = [
        ("test_architecture.py",),
        ("proxy", "test_routing.py"),
        ("http", "pages", "test_templates.py"),
        ("scenarios", "browser", "test_browser_login.py"),
        ("test_new_feature.py",),
        ("browser", "test_login.py"),
        ("proxy", "nowhere", "test_x.py"),
    ]
    assert misplaced(modules, packages) == [
        "test_new_feature.py: only repository-wide checks sit at the top of tests/",
        "browser/test_login.py: tests/browser/ mirrors no package of broker/",
        "proxy/nowhere/test_x.py: tests/proxy/nowhere/ mirrors no package of broker/",
    ]
