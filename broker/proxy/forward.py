"""Forward one HTTP request upstream and stream the answer back (the I/O; decisions live in
``boundary``, ``forwarded`` and ``upstream_url``; the HTTP/1.1 client is ``proxy/http1``).

- Bodies stream both ways as they arrive, with backpressure; nothing is buffered whole, so the gateway's
  memory does not grow with the size of an upload or a download. (Answers that declare at most
  ``SMALL_BODY`` bytes are read whole and sent in one write: cheaper, and bounded.)
- ``max_body`` (0 = no limit): a larger ``Content-Length`` is refused with 413 before the upstream is
  contacted; a chunked body that grows past it aborts the upstream request, and the client gets 413 if
  the upstream has not answered yet (once the answer has started, the connection can only be closed).
- ``Expect: 100-continue`` is answered by the broker only after its own checks passed, so 401/403/413 go
  out before the client sends any of the body (RFC 9110 section 10.1.1).
- Upstream redirects pass through untouched: no redirect is followed, ``Location`` is not rewritten.
- Upstream unreachable or untrusted TLS -> 502, too slow -> 504, each a clear page with the request id.
  Once the response has started, a failure can only close the client's connection; it is logged.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from broker.errors import (
    RequestBodyTooLarge,
    UnsendableHeader,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamTlsError,
    UpstreamUnreachable,
)
from broker.http.responses import error_response, request_id_of
from broker.ops.metrics import METRICS
from broker.proxy.boundary import UpstreamBoundary
from broker.proxy.forwarded import FORWARDED_HEADERS
from broker.proxy.http1.connection import Answer
from broker.proxy.routing import Route
from broker.proxy.upstream import Upstream
from broker.proxy.upstream_url import replacement_for, upstream_url

log = logging.getLogger(__name__)

CONTINUE = "100-continue"
# Answers with a Content-Length up to this are read whole and sent in one write; larger ones stream.
SMALL_BODY = 64 * 1024


@dataclass(frozen=True)
class Failure:
    """How an upstream failure is explained to the user."""

    status: int
    title: str
    message: str
    code: str


UNREACHABLE = Failure(
    502,
    "The application is not reachable",
    "The application behind this address is not answering right now. Please try again in a moment.",
    "upstream_unreachable",
)
UNTRUSTED = Failure(
    502,
    "The application's certificate is not trusted",
    "The gateway could not verify the TLS certificate of the application behind this address, so it "
    "did not send your request. Please tell your administrator.",
    "upstream_tls",
)
TOO_SLOW = Failure(
    504,
    "The application took too long to answer",
    "The application behind this address did not answer in time. Please try again.",
    "upstream_timeout",
)
BAD_ANSWER = Failure(
    502,
    "The application sent an invalid answer",
    "The application behind this address answered in a way the gateway cannot pass on. Please try "
    "again, or tell your administrator if it keeps happening.",
    "upstream_invalid",
)
UNSENDABLE = Failure(
    500,
    "This request cannot be forwarded",
    "One of the headers this request would carry to the application cannot be sent safely, so the "
    "gateway did not send it. Please tell your administrator.",
    "unsendable_header",
)
BAD_PATH = Failure(
    400,
    "This address cannot be forwarded",
    "The path contains an encoded '/' where the application's prefix is, so it cannot be mapped.",
    "unmappable_path",
)


def count_upstream_error(request: web.Request, route: Route, kind: str) -> None:
    """``broker_upstream_errors_total{route, kind}``: unreachable, tls, timeout, aborted."""
    if METRICS in request.app:
        request.app[METRICS].upstream_errors.labels(route.label, kind).inc()


def failure_for(exc: BaseException) -> Failure:
    """The answer the user gets for an upstream client's error: the HTTP/1.1 client's own (``UpstreamError``),
    or aiohttp's (WebSocket handshakes)."""
    if isinstance(exc, (TimeoutError, UpstreamTimeout)):
        return TOO_SLOW
    if isinstance(exc, (aiohttp.ClientSSLError, UpstreamTlsError)):
        return UNTRUSTED
    if isinstance(exc, UpstreamProtocolError):
        return BAD_ANSWER
    if isinstance(exc, UnsendableHeader):
        return UNSENDABLE
    return UNREACHABLE


def failure_response(
    request: web.Request, route: Route, failure: Failure, exc: BaseException
) -> web.Response:
    """Log an upstream failure for the operator (no trace: the kind says it all) and answer the user."""
    count_upstream_error(request, route, failure.code.removeprefix("upstream_"))
    log.warning(
        "upstream failed: %s",
        failure.code,
        extra={
            "route": route.label,
            "request_id": request_id_of(request),
            "error": type(exc).__name__,
            # Only connector errors: their text names host, port and the OS or TLS error; others may quote
            # the URL, and a query string can carry codes or tokens.
            "detail": str(exc) if _names_the_connection(exc) else "",
        },
    )
    return error_response(request, failure.status, failure.title, failure.message, failure.code)


def _names_the_connection(exc: BaseException) -> bool:
    """A connect error, whose text is host, port and the OS or TLS error (or which header could not be
    sent, never its value)."""
    if isinstance(exc, UpstreamUnreachable):
        return exc.connecting
    return isinstance(exc, (aiohttp.ClientConnectorError, UpstreamTlsError, UnsendableHeader))


def expects_continue(request: web.Request) -> bool:
    """The client holds its body back until it hears ``100 Continue``."""
    return request.headers.get("Expect", "").lower() == CONTINUE and request.version >= (1, 1)


async def defer_continue(request: web.Request) -> None:
    """The proxy route's expect handler: refuse unknown expectations (417) but hold ``100 Continue``
    back until the broker has decided to forward (``forward`` sends it)."""
    expectation = request.headers.get("Expect", "")
    if expectation.lower() != CONTINUE:
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expectation}")


async def send_continue(request: web.Request) -> None:
    """The interim ``100 Continue`` (RFC 9110 section 15.2.1) that releases the client's held-back body.

    Written through the request's public writer, as aiohttp's own (private) default expect handler does.
    """
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    # The interim answer is not part of the response: its bytes must not count toward the response's size.
    request.writer.output_size = 0


def unread_answer(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """An answer given while the client still holds its body back for ``100 Continue``: the connection
    closes after it, as RFC 9110 section 10.1.1 asks of a server that will not read the body."""
    if expects_continue(request) and request.body_exists:
        response.force_close()
    return response


def declared_too_large(request: web.Request, route: Route) -> bool:
    """The declared ``Content-Length`` is over the route's ``max_body`` (0 = no limit)."""
    limit = route.config.max_body
    length = request.content_length
    return bool(limit) and length is not None and length > limit


def body_too_large(request: web.Request, route: Route) -> web.Response:
    """413, and the connection closed after it: the client's body was not read (RFC 9110 15.5.14)."""
    response = error_response(
        request,
        413,
        "The upload is too large",
        f"This application accepts request bodies of at most {route.config.max_body} bytes.",
        "body_too_large",
    )
    response.force_close()
    return response


class LimitedBody:
    """The request body as it arrives, stopped once it passes ``limit`` bytes (0 = no limit)."""

    def __init__(self, content: aiohttp.StreamReader, limit: int) -> None:
        self._content = content
        self._limit = limit
        self._answer: Answer | None = None
        self.received = 0
        self.exceeded = False

    def attach(self, answer: Answer) -> None:
        """Tie the upstream's answer to the body: once the answer has started, passing the limit must end
        the answer too (the client's connection is then closed). Raises ``RequestBodyTooLarge`` if the
        limit was passed already."""
        self._answer = answer
        if self.exceeded:
            error = RequestBodyTooLarge(f"request body passed {self._limit} bytes")
            answer.fail(error)
            raise error

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yield the body chunk by chunk; raise before yielding the chunk that passes the limit."""
        async for chunk in self._content.iter_any():
            self.received += len(chunk)
            if self._limit and self.received > self._limit:
                self.exceeded = True
                error = RequestBodyTooLarge(f"request body passed {self._limit} bytes")
                if self._answer is not None:
                    self._answer.fail(error)
                raise error
            yield chunk


def outgoing_headers(
    request: web.Request,
    route: Route,
    boundary: UpstreamBoundary,
    identity: Mapping[str, str],
    *,
    websocket: bool,
) -> CIMultiDict[str]:
    """The headers of the upstream request: the client's filtered, forwarding headers, identity."""
    # What a client claims about earlier hops is read only when it is a trusted proxy (most deployments
    # trust none: then nothing is gathered).
    from_trusted_proxy = boundary.trusts(request.remote)
    claimed = (
        {name: request.headers.getall(name, []) for name in FORWARDED_HEADERS} if from_trusted_proxy else None
    )
    added = {
        **boundary.forwarding(request.remote, request.host, claimed),
        "X-Request-Id": request_id_of(request),
    }
    if route.config.preserve_host:
        added["Host"] = request.host
    return boundary.request_headers(
        request.headers, {**added, **identity}, websocket=websocket, from_trusted_proxy=from_trusted_proxy
    )


def answer_headers(
    request: web.Request, route: Route, boundary: UpstreamBoundary, answer: Answer
) -> CIMultiDict[str]:
    """The upstream's response headers to relay; an attempt to set a broker cookie is dropped and logged."""
    headers, refused = boundary.response_headers(answer.headers)
    if refused:
        # A malicious or confused upstream could switch the user's browser to another session (or sign
        # it out): the line is dropped, and the operator told which name, never the value.
        count_upstream_error(request, route, "broker_cookie")
        log.warning(
            "upstream tried to set a broker cookie; dropped",
            extra={
                "route": route.label,
                "request_id": request_id_of(request),
                "cookies": sorted(set(refused)),
            },
        )
    return headers


def target_url(request: web.Request, route: Route, upstream: Upstream) -> URL | None:
    """The upstream URL of this request (None: the path cannot be mapped to the upstream's)."""
    return upstream_url(
        upstream.target,
        route.prefix,
        replacement_for(route.config),
        request.rel_url.raw_path,
        request.rel_url.raw_query_string,
    )


def abort(request: web.Request, route: Route, what: str, exc: BaseException) -> None:
    """Close the client's connection mid-response: the status is sent, a page can no longer be."""
    count_upstream_error(request, route, "aborted")
    log.warning(
        "%s; closing the client connection",
        what,
        extra={"route": route.label, "request_id": request_id_of(request), "error": type(exc).__name__},
    )
    if request.transport is not None:
        request.transport.close()


async def forward(
    request: web.Request,
    route: Route,
    upstream: Upstream,
    boundary: UpstreamBoundary,
    identity: Mapping[str, str],
) -> web.StreamResponse:
    """Proxy one request to ``route``'s upstream, streaming both ways."""
    url = target_url(request, route, upstream)
    if url is None:
        bad = error_response(request, BAD_PATH.status, BAD_PATH.title, BAD_PATH.message, BAD_PATH.code)
        return unread_answer(request, bad)
    headers = outgoing_headers(request, route, boundary, identity, websocket=False)
    body = LimitedBody(request.content, route.config.max_body) if request.body_exists else None
    if body is not None and expects_continue(request):
        await send_continue(request)
    response: web.StreamResponse | None = None
    try:
        async with upstream.client.request(
            upstream.destination,
            request.method,
            url,
            upstream.host,
            headers,
            body.chunks() if body is not None else None,
            upstream.timeouts,
        ) as answer:
            if body is not None:
                body.attach(answer)
            if _small_answer(request, answer):
                # Read whole and sent in one write: no streaming machinery for a page of a few KB.
                small = web.Response(status=answer.status, reason=answer.reason, body=await answer.read())
                small.headers.extend(answer_headers(request, route, boundary, answer))
                return small
            response = web.StreamResponse(status=answer.status, reason=answer.reason)
            response.headers.extend(answer_headers(request, route, boundary, answer))
            await _stream_down(request, route, answer, response)
            return response
    except (UpstreamError, RequestBodyTooLarge) as exc:
        too_large = body is not None and body.exceeded
        if response is not None and response.prepared:
            what = "request body too large" if too_large else "upstream failed mid-response"
            abort(request, route, what, exc)
            return response
        if too_large:
            log.warning(
                "request body too large", extra={"route": route.label, "request_id": request_id_of(request)}
            )
            return body_too_large(request, route)
        return failure_response(request, route, failure_for(exc), exc)


def _small_answer(request: web.Request, answer: Answer) -> bool:
    """A body of known, small length (not HEAD's, nor of a status that has none): read it whole."""
    length = answer.content_length
    return (
        length is not None
        and length <= SMALL_BODY
        and request.method != "HEAD"
        and answer.status >= 200
        and answer.status not in (204, 304)
    )


async def _stream_down(
    request: web.Request, route: Route, answer: Answer, response: web.StreamResponse
) -> None:
    """Relay the upstream's answer as it arrives (the upstream's reading pauses while the client's side is
    not drained). Upstream errors propagate; a client that went away ends the relay quietly (leaving the
    ``async with`` then drops the upstream connection)."""
    if not await _downstream(request, route, response.prepare(request)):
        return
    while (chunk := await answer.next_chunk()) is not None:
        if not await _downstream(request, route, response.write(chunk)):
            return
    await _downstream(request, route, response.write_eof())


async def _downstream(request: web.Request, route: Route, step: Awaitable[object]) -> bool:
    """Await one write to the client; False (logged) when the client has gone away."""
    try:
        await step
    except ConnectionError:
        log.info("client went away", extra={"route": route.label, "request_id": request_id_of(request)})
        return False
    return True
