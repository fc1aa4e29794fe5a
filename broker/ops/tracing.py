"""OpenTelemetry tracing (``tracing:``): a tracer provider per gateway app, exporting over OTLP/HTTP.

Off by default, and then free: no provider, no middleware, no client hooks; ``span()`` returns one shared
``nullcontext`` after a single ContextVar read, so the stages that name a span create no span object.
On, the request middleware (``broker.middleware.RequestSpans``) opens the server span and makes this
app's tracer current for the request's task; the stages below it (session load, refresh, token redemption,
JWKS fetch) open child spans through ``span()``; the upstream HTTP client opens the upstream call's span
and sends W3C ``traceparent`` upstream through ``client_span`` (the OpenTelemetry API), and the WebSocket
clients through aiohttp trace hooks (the opentelemetry aiohttp-client instrumentation, per client session,
not patched globally).

The provider is the app's own, never the process-global one: tests run several gateways in one process,
and nothing here is module state but the two ContextVars (per task, like the request id).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import TYPE_CHECKING

import aiohttp
import yarl
from aiohttp import web
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from broker import __version__

if TYPE_CHECKING:
    # The SDK and the aiohttp instrumentation are imported when tracing is turned on (``Tracing``): ~55 ms
    # of every start-up otherwise, for a feature that is off by default.
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = [
    "TRACING",
    "Tracing",
    "annotate",
    "client_span",
    "current_tracer",
    "end_client_span",
    "span",
    "trace_id_of",
]

# The tracer of the app serving this task's request (None: tracing off, or not in a request).
current_tracer: ContextVar[Tracer | None] = ContextVar("current_tracer", default=None)
_OFF: AbstractContextManager[None] = (
    contextlib.nullcontext()
)  # stateless, shared: entered any number of times


def span(name: str) -> AbstractContextManager[object]:
    """A child span of the current request's span; with tracing off, a shared no-op (no object made)."""
    tracer = current_tracer.get()
    if tracer is None:
        return _OFF
    return tracer.start_as_current_span(name)


def annotate(attributes: Mapping[str, str]) -> None:
    """Set attributes on the current request's innermost span (nothing when tracing is off)."""
    if current_tracer.get() is None:
        return
    trace.get_current_span().set_attributes(attributes)


def _without_query(url: yarl.URL) -> str:
    """The upstream URL a span records: no query (it can carry codes or tokens, as in the access log)."""
    return str(url.with_query(None).with_fragment(None))


def client_span(method: str, url: yarl.URL, headers: MutableMapping[str, str]) -> Span | None:
    """The upstream call's span (kind CLIENT, a child of the request's span), its W3C ``traceparent`` set
    in ``headers``; None, and nothing set, when tracing is off (or the request is not sampled: then the
    propagator still passes the unsampled context on, as the aiohttp hooks did)."""
    tracer = current_tracer.get()
    if tracer is None:
        return None
    client = tracer.start_span(
        method,
        kind=SpanKind.CLIENT,
        attributes={
            "http.request.method": method,
            "url.full": _without_query(url),
            "server.address": url.host or "",
            "server.port": url.port or 0,
        },
    )
    propagate.inject(headers, context=trace.set_span_in_context(client))
    return client


def end_client_span(client: Span | None, status: int | None, error: BaseException | None) -> None:
    """End the upstream call's span with the answer's status, or the error that ended the call."""
    if client is None:
        return
    if status is not None:
        client.set_attribute("http.response.status_code", status)
        if status >= 500:
            client.set_status(Status(StatusCode.ERROR))
    if error is not None:
        client.set_attribute("error.type", type(error).__qualname__)
        client.set_status(Status(StatusCode.ERROR, type(error).__name__))
    client.end()


class Tracing:
    """This app's tracer provider (None when off) and the aiohttp hooks its upstream clients use."""

    def __init__(
        self,
        enabled: bool,
        *,
        otlp_endpoint: str | None = None,
        sample_ratio: float = 1.0,
        service_name: str = "entra-broker",
        exporter: SpanExporter | None = None,
    ) -> None:
        self.provider: TracerProvider | None = None
        self.tracer: Tracer | None = None
        self.client_hooks: tuple[aiohttp.TraceConfig, ...] = ()
        if not enabled:
            return
        from opentelemetry.instrumentation.aiohttp_client import create_trace_config
        from opentelemetry.metrics import NoOpMeterProvider
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        provider = TracerProvider(
            resource=Resource.create({"service.name": service_name, "service.version": __version__}),
            # A trusted parent's sampling decision is kept; new traces are sampled at ``sample_ratio``.
            sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
        )
        if exporter is not None:  # tests: spans handed over as they end
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            # Batched on the SDK's own thread: a slow or absent collector never holds up a request.
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
        self.provider = provider
        self.tracer = provider.get_tracer("broker", __version__)
        self.client_hooks = (
            create_trace_config(
                url_filter=_without_query, tracer_provider=provider, meter_provider=NoOpMeterProvider()
            ),
        )

    @contextlib.contextmanager
    def serving(self) -> Iterator[Tracer | None]:
        """Make this app's tracer current for the request being handled in this task."""
        token = current_tracer.set(self.tracer)
        try:
            yield self.tracer
        finally:
            current_tracer.reset(token)

    def shutdown(self) -> None:
        """Export what is queued and stop the exporter's thread (at the app's clean-up)."""
        if self.provider is not None:
            self.provider.shutdown()


def trace_id_of(current: Span) -> str:
    """The 32-hex-digit W3C trace id of ``current`` (as log lines carry it)."""
    return format(current.get_span_context().trace_id, "032x")


TRACING = web.AppKey("tracing", Tracing)
