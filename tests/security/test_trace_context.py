"""A client's W3C trace context at the upstream boundary (issue 18, stream X): ``traceparent``,
``tracestate`` and ``baggage`` reach the upstream only from a trusted proxy, tracing on or off.

Raw requests (the spelling of each header is the client's), a recording upstream says what arrived.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.security.conftest import Target, running_target
from tests.support.upstreams import Seen

CLIENT_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CLIENT_PARENT_ID = "b7ad6b7169203331"
CLIENT_CONTEXT = {
    "traceparent": f"00-{CLIENT_TRACE_ID}-{CLIENT_PARENT_ID}-01",
    "tracestate": "vendor=client-picked",
    "baggage": "tenant=fabrikam,user.id=admin",
}
# The same headers as an upstream reading names CGI-style (``HTTP_TRACE_STATE``) would also take them.
ODD_SPELLINGS = {"Trace-State": "odd=spelling", "BAGGAGE": "role=admin"}
TRUSTED = {"trusted_proxies": ["127.0.0.1/32"]}
TRACING_ON: dict[str, Any] = {"enabled": True}


async def send_trace_context(target: Target, spellings: dict[str, str]) -> Seen:
    """A public-route GET carrying the client's trace context; what the upstream received."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in spellings.items())
    request = f"GET /rec/x HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}Connection: close\r\n\r\n"
    answer = await target.raw(request.encode())
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    return target.recorder.last


def trace_headers(seen: Seen) -> dict[str, list[str]]:
    """Every trace-context header the upstream got, by lower-case name with dashes and underscores gone."""
    found: dict[str, list[str]] = {}
    for name, value in seen.headers:
        folded = name.lower().replace("-", "").replace("_", "")
        if folded in ("traceparent", "tracestate", "baggage"):
            found.setdefault(folded, []).append(value)
    return found


@pytest.mark.parametrize("tracing", [None, TRACING_ON], ids=["tracing-off", "tracing-on"])
async def test_a_clients_trace_context_never_reaches_the_upstream(
    tmp_path: Path, tracing: dict[str, Any] | None
) -> None:
    # X1: an untrusted client picks no trace id, sampling flag, tracestate or baggage for the upstream.
    exporter = InMemorySpanExporter()
    async with running_target(tmp_path, tracing=tracing, span_exporter=exporter) as target:
        seen = await send_trace_context(target, {**CLIENT_CONTEXT, **ODD_SPELLINGS})
    received = trace_headers(seen)
    if tracing is None:
        assert received == {}
        return
    # Tracing on: the broker's own trace, a new one (no tracestate or baggage of the client's).
    [traceparent] = received.pop("traceparent")
    assert received == {}
    assert CLIENT_TRACE_ID not in traceparent and CLIENT_PARENT_ID not in traceparent
    ours = {format(s.context.trace_id, "032x") for s in exporter.get_finished_spans() if s.context}
    assert traceparent.split("-")[1] in ours


async def test_a_trusted_proxys_trace_context_is_passed_on_with_tracing_off(tmp_path: Path) -> None:
    # X1 (the other side): a trusted proxy's trace context passes as it came.
    async with running_target(tmp_path, server=TRUSTED) as target:
        seen = await send_trace_context(target, CLIENT_CONTEXT)
    assert trace_headers(seen) == {name: [value] for name, value in CLIENT_CONTEXT.items()}


async def test_a_trusted_proxys_trace_is_continued_upstream_with_tracing_on(tmp_path: Path) -> None:
    # X1 (the other side): the trace continues through the broker's span; tracestate and baggage ride along.
    exporter = InMemorySpanExporter()
    async with running_target(tmp_path, server=TRUSTED, tracing=TRACING_ON, span_exporter=exporter) as target:
        seen = await send_trace_context(target, CLIENT_CONTEXT)
    received = trace_headers(seen)
    [traceparent] = received.pop("traceparent")
    _, trace_id, parent_id, _ = traceparent.split("-")
    assert trace_id == CLIENT_TRACE_ID and parent_id != CLIENT_PARENT_ID  # the broker's upstream call span
    assert received == {"tracestate": [CLIENT_CONTEXT["tracestate"]], "baggage": [CLIENT_CONTEXT["baggage"]]}
