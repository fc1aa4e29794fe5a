"""The Kubernetes manifests validate against the Kubernetes schema and say who may reach whom; the compose
file runs without host networking, with one URL for the dev IdP for the browser and the gateway alike.

Docker cannot run here, so the compose file's structure is what is checked: the names, networks and
ports that make the dev IdP reachable at http://localhost:9000 from both sides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from broker.config.load import load_config_text
from tests.test_deploy_files import K8S, ROOT, documents

# The oldest Kubernetes release still commonly run whose schema every manifest must satisfy.
KUBERNETES_VERSION = "1.29"
# Kinds from CRDs (not in the Kubernetes schema): checked field by field below instead.
CRD_KINDS = frozenset({"ServiceMonitor"})
GATEWAY_POD = {"app.kubernetes.io/name": "entra-broker"}


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    """Every object of a kind the Kubernetes schema knows (CRD kinds are checked field by field below)."""
    return [
        (f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc)
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc["kind"] not in CRD_KINDS
    ]


@pytest.mark.parametrize(("name", "doc"), _manifests(), ids=[n for n, _ in _manifests()])
def test_every_manifest_validates_against_the_kubernetes_schema(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)  # strict: no unknown fields


def test_the_schema_check_catches_a_misspelt_field() -> None:
    """Guards the guard: a typo'd field must fail, or the test above proves nothing."""
    ingress = documents()["Ingress/entra-broker"]
    path = ingress["spec"]["rules"][0]["http"]["paths"][0]
    broken = {**path, "pathTyp": path["pathType"]}
    ingress["spec"]["rules"][0]["http"]["paths"][0] = broken
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ingress, KUBERNETES_VERSION, strict=True)


def _pod_labels(objects: dict[str, dict[str, Any]], deployment: str) -> dict[str, str]:
    labels: dict[str, str] = objects[f"Deployment/{deployment}"]["spec"]["template"]["metadata"]["labels"]
    return labels


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_only_the_gateway_reaches_redis() -> None:
    objects = documents()
    policy = objects["NetworkPolicy/redis-from-gateway-only"]["spec"]
    assert _selects(policy["podSelector"], _pod_labels(objects, "redis"))
    assert policy["policyTypes"] == ["Ingress"]
    [rule] = policy["ingress"]
    [source] = rule["from"]
    assert set(source) == {"podSelector"} and source["podSelector"]["matchLabels"] == GATEWAY_POD
    assert _selects(source["podSelector"], _pod_labels(objects, "entra-broker"))
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]


def test_upstreams_are_reachable_from_the_gateway_only() -> None:
    policy = documents()["NetworkPolicy/upstreams-from-gateway-only"]["spec"]
    assert policy["podSelector"]["matchLabels"] == {"entra-broker.example.com/upstream": "true"}
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["ingress"] == [{"from": [{"podSelector": {"matchLabels": GATEWAY_POD}}]}]


def test_the_gateway_takes_http_and_metrics_only_from_their_namespaces() -> None:
    policy = documents()["NetworkPolicy/entra-broker"]["spec"]
    assert policy["podSelector"]["matchLabels"] == GATEWAY_POD
    ports = sorted(port["port"] for rule in policy["ingress"] for port in rule["ports"])
    assert ports == [8080, 9090]
    assert all(set(source) == {"namespaceSelector"} for rule in policy["ingress"] for source in rule["from"])


def test_replicas_prefer_distinct_nodes_and_spread_across_zones() -> None:
    objects = documents()
    pod = objects["Deployment/entra-broker"]["spec"]["template"]["spec"]
    labels = _pod_labels(objects, "entra-broker")
    [term] = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert _selects(term["podAffinityTerm"]["labelSelector"], labels)
    [spread] = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone" and _selects(
        spread["labelSelector"], labels
    )


def test_the_ingress_serves_the_public_url_through_the_service() -> None:
    objects = documents()
    ingress = objects["Ingress/entra-broker"]["spec"]
    config = yaml.safe_load(objects["ConfigMap/broker-config"]["data"]["broker.yaml"])
    public = urlsplit(config["server"]["public_url"])
    assert public.scheme == "https"  # the __Host- session cookie is Secure
    [rule] = ingress["rules"]
    assert rule["host"] == public.hostname and public.hostname in ingress["tls"][0]["hosts"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    service = objects[f"Service/{backend['name']}"]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


def test_the_servicemonitor_scrapes_the_metrics_port() -> None:
    objects = documents()
    monitor = objects["ServiceMonitor/entra-broker"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = objects["Service/entra-broker"]
    assert _selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    [endpoint] = monitor["spec"]["endpoints"]
    metrics = next(p for p in service["spec"]["ports"] if p["name"] == endpoint["port"])
    pod = objects["Deployment/entra-broker"]["spec"]["template"]["spec"]
    container_ports = {p["name"]: p["containerPort"] for c in pod["containers"] for p in c["ports"]}
    config = yaml.safe_load(objects["ConfigMap/broker-config"]["data"]["broker.yaml"])
    assert config["server"]["metrics_listen"].endswith(f":{container_ports[metrics['targetPort']]}")
    assert endpoint["path"] == "/metrics"


# --- docker-compose.yml -------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose


def _compose_config(tmp_path: Path) -> Any:
    env = {
        "CONTOSO_CLIENT_SECRET": "x",
        "FABRIKAM_CLIENT_SECRET": "y",
        "SESSION_SECRET_KEY": "c2Vzc2lvbi1rZXktZm9yLXRoZS1kZXBsb3ktdGVzdC0zMmJ5dGVz",
    }
    text = (ROOT / "config" / "compose.yaml").read_text()
    return load_config_text(text, "config/compose.yaml", tmp_path, env, file_exists=lambda _: True)


def test_compose_uses_no_host_networking() -> None:
    services = _compose()["services"]
    assert all(service.get("network_mode") != "host" for service in services.values())


def test_the_browser_and_the_gateway_reach_the_dev_idp_by_one_url(tmp_path: Path) -> None:
    """The dev IdP lives in the gateway's network namespace: localhost:9000 there is the dev IdP, and the
    gateway service publishes 9000 (and 8080) on the host, so the browser's localhost:9000 is it too."""
    services = _compose()["services"]
    devidp, gateway = services["devidp"], services["gateway"]
    public_url = devidp["command"][devidp["command"].index("--public-url") + 1]
    listen = devidp["command"][devidp["command"].index("--listen") + 1]
    assert devidp["network_mode"] == "service:gateway" and "ports" not in devidp
    assert public_url == "http://localhost:9000" and listen.endswith(":9000")
    published = {p.rsplit(":", 2)[-2]: p.rsplit(":", 1)[-1] for p in gateway["ports"]}
    assert published == {"8080": "8080", "9000": "9000"}
    assert all(p.startswith("127.0.0.1:") for p in gateway["ports"])  # made-up secrets: host loopback only
    config = _compose_config(tmp_path)
    assert {tenant.authority for tenant in config.tenants.values()} == {public_url}
    assert config.server.public_url == "http://localhost:8080"
    assert config.server.listen.startswith("0.0.0.0:")  # published ports arrive on the container's address


def test_redis_and_the_upstream_are_on_internal_networks_only_the_gateway_joins(tmp_path: Path) -> None:
    compose = _compose()
    services, networks = compose["services"], compose["networks"]
    config = _compose_config(tmp_path)
    store_host = urlsplit(config.sessions.store).hostname
    upstream_hosts = {urlsplit(route.upstream).hostname for route in config.routes}
    for name in {store_host, *upstream_hosts}:
        assert name in services, name  # a compose service name, resolved on the shared network
        service_networks = services[name]["networks"]
        assert service_networks and all(networks[n].get("internal") is True for n in service_networks)
        for net in service_networks:
            members = {other for other, s in services.items() if net in s.get("networks", [])}
            assert members == {name, "gateway"}, (net, members)
    whoami = services["whoami"]["command"]
    assert urlsplit(whoami[whoami.index("--jwks-url") + 1]).hostname == "gateway"
