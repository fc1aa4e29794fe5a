"""The deployment files parse and agree with the gateway: probes, ports, replicas, config."""

from __future__ import annotations

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
