"""The deployment files parse and agree with the gateway: probes, ports, replicas, config."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import yaml

from broker.config.load import load_config_text

ROOT = Path(__file__).parents[1]
K8S = ROOT / "deploy" / "kubernetes"


def documents() -> dict[str, dict[str, Any]]:
    """Every Kubernetes object, by kind/name."""
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                assert {"apiVersion", "kind", "metadata"} <= set(doc), path
                objects[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return objects


def test_deployment_probes_ports_and_replicas() -> None:
    objects = documents()
    deployment = objects["Deployment/entra-broker"]
    assert deployment["spec"]["replicas"] >= 3
    pod = deployment["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "broker")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080, "metrics": 9090}
    assert container["readinessProbe"]["httpGet"] == {"path": "/.auth/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/.auth/healthz", "port": "http"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert pod["terminationGracePeriodSeconds"] > 20  # > server.shutdown_timeout in the ConfigMap
    pdb = objects["PodDisruptionBudget/entra-broker"]
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    service = next(o for k, o in objects.items() if k.startswith("Service/") and "redis" not in k)
    assert any(p.get("targetPort") in ("http", 8080) for p in service["spec"]["ports"])


def test_configmap_holds_a_valid_gateway_config(tmp_path: Path) -> None:
    config_text = documents()["ConfigMap/broker-config"]["data"]["broker.yaml"]
    config = load_config_text(
        config_text,
        "configmap:broker.yaml",
        tmp_path,
        {
            "CONTOSO_CLIENT_SECRET": "x",
            "SESSION_SECRET_KEY": "c2Vzc2lvbi1rZXktZm9yLXRoZS1kZXBsb3ktdGVzdC0zMmJ5dGVz",
        },
        file_exists=lambda _: True,
    )
    assert config.server.listen == "0.0.0.0:8080" and config.server.metrics_listen == "0.0.0.0:9090"
    assert config.sessions.store.startswith("redis")
    assert config.server.shutdown_timeout < 30


def test_compose_file_parses_and_uses_the_cli() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert {"redis", "devidp", "whoami", "gateway"} <= set(compose["services"])
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "USER" in dockerfile and "HEALTHCHECK" in dockerfile and 'ENTRYPOINT ["broker"]' in dockerfile


# The development packages: the dev IdP forges tokens on request, the demo backend trusts any gateway.
DEV_PACKAGES = frozenset({"devidp", "demo"})
# What the production image may copy into its build: the project file, the README and the gateway.
PRODUCTION_SOURCES = frozenset({"pyproject.toml", "README*", "broker"})


def copy_sources(dockerfile: Path) -> list[str]:
    """The sources of every COPY that reads the build context (not ``--from`` another stage)."""
    sources: list[str] = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0].upper() != "COPY" or any(w.startswith("--from") for w in words):
            continue
        sources += [w.removeprefix("./").rstrip("/") for w in words[1:-1] if not w.startswith("--")]
    return sources


def dev_package_imports(tree: ast.AST) -> list[str]:
    """Every module of a dev package that ``tree`` imports, statically or by name (importlib, __import__)."""
    found: list[str] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            callee = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if callee in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names = [node.args[0].value]
        found += [name for name in names if name.split(".")[0] in DEV_PACKAGES]
    return found


def test_production_image_copies_the_gateway_alone() -> None:
    sources = copy_sources(ROOT / "deploy" / "Dockerfile")
    assert "broker" in sources
    assert set(sources) <= PRODUCTION_SOURCES, sources
    # The demo image is the one that adds them (for docker-compose.yml only).
    assert DEV_PACKAGES <= set(copy_sources(ROOT / "deploy" / "Dockerfile.demo"))


def test_broker_imports_nothing_from_the_dev_packages() -> None:
    # The checker itself finds every spelling, so an empty answer below means something.
    probe = ast.parse(
        "import devidp\nimport demo.whoami as w\nfrom devidp.app import x\nimport importlib\n"
        "def f():\n    from demo import launcher\n    importlib.import_module('devidp.cli')\n"
        "    __import__('demo')\nimport demos\nfrom broker.demo_x import y\nfrom . import demo\n"
    )
    assert sorted(dev_package_imports(probe)) == [
        "demo",
        "demo",
        "demo.whoami",
        "devidp",
        "devidp.app",
        "devidp.cli",
    ]
    modules = sorted((ROOT / "broker").rglob("*.py"))
    assert len(modules) > 50
    offenders = {
        str(path.relative_to(ROOT)): imports
        for path in modules
        if (imports := dev_package_imports(ast.parse(path.read_text(), str(path))))
    }
    assert offenders == {}
    assert not (ROOT / "broker" / "devidp").exists() and not (ROOT / "broker" / "demo").exists()


def test_compose_runs_the_dev_packages_from_the_demo_image() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert services["gateway"]["build"]["dockerfile"] == "deploy/Dockerfile"
    for name in ("devidp", "whoami"):
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile.demo"
    assert services["devidp"]["command"][0] == "devidp"
    assert services["whoami"]["command"][0] == "demo.whoami"


NUMBER_WORDS = {"two": 2, "three": 3, "four": 4}


def test_manifests_and_their_readme_agree() -> None:
    """The comments and README say what the manifests do (issue 18's contradictions stay fixed)."""
    objects = documents()
    deployment = objects["Deployment/entra-broker"]
    container = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "broker")
    config = yaml.safe_load(objects["ConfigMap/broker-config"]["data"]["broker.yaml"])
    assert config["server"]["workers"] == int(container["resources"]["limits"]["cpu"])  # one worker per CPU
    service = objects["Service/entra-broker"]
    if any(p["name"] == "metrics" for p in service["spec"]["ports"]):
        assert "not exposed" not in (K8S / "configmap.yaml").read_text()
    readme = (ROOT / "deploy" / "README.md").read_text()
    said = [n for word, n in NUMBER_WORDS.items() if f"{word} replicas" in readme.lower()]
    assert said == [deployment["spec"]["replicas"]]
