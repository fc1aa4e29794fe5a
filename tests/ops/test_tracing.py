"""OpenTelemetry tracing (issue 18), through the whole stack with the spans in memory: one server span per
request with route, company and decision, child spans for its stages, W3C traceparent as the upstream
receives it, the trace id in the log lines; and, off, no spans at all."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from broker.ops.tracing import span
from tests.support.stack import ADELE, running_stack

# A client-made trace id: continued only from a trusted proxy.
FOREIGN_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def header(body: dict[str, Any], name: str) -> Any:
    """A header the whoami backend received (any spelling)."""
    return next((v for k, v in body["headers"].items() if k.lower() == name), None)


def server_span(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    [found] = [s for s in spans if s.kind == SpanKind.SERVER and s.name == name]
    return found


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


async def test_a_signed_in_request_is_one_trace_into_the_upstream(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    exporter = InMemorySpanExporter()
    async with running_stack(
        "memory", tmp_path, {}, tracing={"enabled": True}, span_exporter=exporter
    ) as stack:
        async with stack.browser() as browser:
            await stack.login(browser, "contoso", ADELE.username)
            spans = exporter.get_finished_spans()
            callback = server_span(spans, "POST broker")
            assert callback.attributes is not None and callback.attributes["broker.company"] == "contoso"
            assert "oidc.redeem_code" in [s.name for s in children(spans, callback)]
            exporter.clear()

            status, body = await stack.whoami(
                browser, "/reports?code=secret", traceparent=FOREIGN_TRACEPARENT
            )
            assert status == 200
        spans = exporter.get_finished_spans()
    request = server_span(spans, "GET 127.0.0.1/")
    assert request.attributes is not None and request.context is not None
    assert request.attributes["broker.route"] == "127.0.0.1/"
    assert request.attributes["broker.company"] == "contoso"
    assert request.attributes["broker.decision"] == "allowed"
    assert request.attributes["http.response.status_code"] == 200
    trace_id = format(request.context.trace_id, "032x")
    assert trace_id != FOREIGN_TRACEPARENT.split("-")[1]  # the client is no trusted proxy: a new trace
    assert request.parent is None
    stages = children(spans, request)
    assert "session.load" in [s.name for s in stages]
    [upstream] = [s for s in stages if s.kind == SpanKind.CLIENT]
    assert upstream.context is not None and upstream.attributes is not None
    upstream_url = str(upstream.attributes.get("url.full", upstream.attributes.get("http.url")))
    assert upstream_url.endswith("/reports")  # never the query: it can carry codes or tokens
    # What the upstream received: our trace, its parent the upstream call's span, sampled.
    version, received_trace, parent_id, flags = header(body, "traceparent").split("-")
    assert (version, received_trace, parent_id) == ("00", trace_id, format(upstream.context.span_id, "016x"))
    assert int(flags, 16) & 1  # sampled
    access = [r for r in caplog.records if r.name == "broker.access" and r.__dict__["path"] == "/reports"]
    assert [r.__dict__.get("trace_id") for r in access] == [trace_id]


async def test_a_trusted_proxys_trace_is_continued_and_a_denial_recorded(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    async with running_stack(
        "memory",
        tmp_path,
        {},
        tracing={"enabled": True},
        span_exporter=exporter,
        server={"trusted_proxies": ["127.0.0.1/32"]},
    ) as stack:
        async with stack.browser() as browser:
            await stack.login(browser, "contoso", ADELE.username)
            exporter.clear()
            assert (await stack.whoami(browser, "/fabrikam/x", traceparent=FOREIGN_TRACEPARENT))[0] == 403
            assert (await stack.whoami(browser, "/open/x"))[0] == 200
        spans = exporter.get_finished_spans()
    denied = server_span(spans, "GET 127.0.0.1/fabrikam/")
    assert denied.context is not None and denied.parent is not None and denied.attributes is not None
    assert format(denied.context.trace_id, "032x") == FOREIGN_TRACEPARENT.split("-")[1]
    assert format(denied.parent.span_id, "016x") == FOREIGN_TRACEPARENT.split("-")[2]
    assert denied.attributes["broker.decision"] == "denied"
    public = server_span(spans, "GET 127.0.0.1/open/")
    assert public.attributes is not None and public.attributes["broker.decision"] == "public"


async def test_tracing_off_makes_no_span_and_passes_no_clients_traceparent(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    async with running_stack("memory", tmp_path, {}, span_exporter=exporter) as stack:
        async with stack.browser() as browser:
            await stack.login(browser, "contoso", ADELE.username)
            status, body = await stack.whoami(browser, "/reports", traceparent=FOREIGN_TRACEPARENT)
    assert status == 200 and exporter.get_finished_spans() == ()
    assert header(body, "traceparent") is None  # a client's, untrusted: dropped (tests/security/)
    assert span("a") is span("b")  # one shared no-op: nothing made per stage
