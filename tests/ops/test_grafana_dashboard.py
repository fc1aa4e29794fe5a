"""The Grafana dashboard (``deploy/grafana/``, issue 18) names only metrics the gateway really exports:
its queries' metric names, parsed out of the PromQL, are all on the metrics page of a gateway that signed a
user in, refused a sign-in with an AADSTS code, refreshed a session, denied a request, failed an upstream
and reloaded its config."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from broker.ops.metrics import METRICS, metrics_app
from broker.reload import RELOADER, reload_config
from tests.support.servers import serve
from tests.support.stack import ADELE, ALEX, running_stack
from tests.support.traffic import OffsetClock

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "entra-broker.json"
# Exported by the parent of ``broker run`` with ``workers > 1`` only (the supervisor counts the exits):
# checked on that page by tests/scenarios/test_worker_supervision.py.
MULTI_WORKER_ONLY = frozenset({"broker_worker_exits_total"})
# Exported (declared on the page) but with a sample only once one fails: the memory store never does.
FAILURE_ONLY = frozenset({"broker_session_store_errors_total"})

_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_VARIABLES = re.compile(r"\$\{?\w+\}?")
_IDENTIFIER = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
# PromQL words that are not metric names (aggregations are followed by "(" or "by": both are handled).
_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or"})
_KEYWORDS |= {"unless", "offset", "atan2", "inf", "nan", "sum", "min", "max", "avg", "count", "topk"}


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression (or a Grafana ``label_values(metric, label)``) reads."""
    text = _VARIABLES.sub("1", _QUOTED.sub('""', expression))
    text = _GROUPING.sub("", _RANGES.sub("", _MATCHERS.sub("", text)))
    if match := re.fullmatch(r"\s*label_values\(\s*([a-zA-Z_:][\w:]*)\s*,\s*\w+\s*\)\s*", text):
        return {match.group(1)}
    return {
        name
        for name, call in _IDENTIFIER.findall(text)
        if not call and name.lower() not in _KEYWORDS and not re.fullmatch(r"\d.*", name)
    }


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every query of the dashboard: each panel's targets (rows' nested panels too) and the variables."""
    panels = [p for p in dashboard["panels"] for p in [p, *p.get("panels", [])]]
    queries = [target["expr"] for panel in panels for target in panel.get("targets", [])]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            queries.append(query if isinstance(query, str) else query["query"])
    return queries


def dashboard_metric_names() -> set[str]:
    """Every metric name the shipped dashboard reads."""
    return {
        name for query in dashboard_queries(json.loads(DASHBOARD.read_text())) for name in metric_names(query)
    }


def exported_names(page: str) -> tuple[set[str], set[str]]:
    """The sample names on a metrics page (``x_total``, ``x_bucket``...), and every name it declares
    (a family with no sample yet included, in each spelling a query may use)."""
    families = list(text_string_to_metric_families(page))
    samples = {sample.name for family in families for sample in family.samples}
    declared = samples | {f"{family.name}{suffix}" for family in families for suffix in ("", "_total")}
    return samples, declared


def test_metric_names_are_read_out_of_promql() -> None:
    expression = (
        'histogram_quantile(0.99, sum by (le, route) (rate(broker_x_bucket{job=~"$job", code!="a_b"}'
        "[$__rate_interval]))) / on (route) group_left max(up offset 5m) > bool 0 and ignoring(x) other"
    )
    assert metric_names(expression) == {"broker_x_bucket", "up", "other"}
    assert metric_names("label_values(broker_build_info, job)") == {"broker_build_info"}


async def test_every_metric_the_dashboard_reads_is_exported(tmp_path: Path, refused_port: int) -> None:
    names = dashboard_metric_names()
    # The parse is not vacuous: the panels the issue asks for are there.
    assert {
        "broker_http_requests_total",
        "broker_http_request_duration_seconds_bucket",
        "broker_logins_total",
        "broker_refreshes_total",
        "broker_session_store_errors_total",
        "broker_config_reloads_total",
        "broker_config_last_reload_successful",
        "broker_worker_exits_total",
    } <= names
    clock = OffsetClock()
    dead = {
        "host": "127.0.0.1",
        "path": "/dead/",
        "upstream": f"http://127.0.0.1:{refused_port}",
        "auth": "public",
    }
    async with running_stack("memory", tmp_path, {}, clock=clock, routes_extra=[dead]) as stack:
        async with stack.browser() as browser, stack.browser() as refused:
            await stack.login(browser, "contoso", ADELE.username)
            assert (await stack.whoami(browser, "/fabrikam/x"))[0] == 403  # denied
            assert (await stack.whoami(browser, "/dead/x"))[0] == 502  # an upstream error
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    f"{stack.idp_url}/_devidp/users/{ALEX.oid}", json={"authorize_error": 50105}
                ) as r:
                    assert r.status == 200
            form = await stack.pick_user(refused, await stack.start_login(refused, "contoso"), ALEX.username)
            assert (await stack.post_callback(refused, form)).status == 400  # AADSTS50105
            clock.offset = 56 * 60  # the ID token is near expiry: the next request refreshes it
            assert (await stack.whoami(browser, "/"))[0] == 200
        app = stack.runners[-1].app
        assert app is not None
        assert await reload_config(app)
        await app[RELOADER].sample_sessions()
        runner = await serve(metrics_app(app[METRICS]))
        host, port = runner.addresses[0][:2]
        try:
            async with aiohttp.ClientSession() as http, http.get(f"http://{host}:{port}/metrics") as resp:
                page = await resp.text()
        finally:
            await runner.cleanup()
    samples, declared = exported_names(page)
    assert names - declared == MULTI_WORKER_ONLY
    assert names - samples == MULTI_WORKER_ONLY | FAILURE_ONLY
    assert 'aadsts="50105"' in page and 'broker_refreshes_total{company="contoso",result="success"}' in page
    assert "_created" not in page  # no creation-time series (``disable_created_metrics``)
