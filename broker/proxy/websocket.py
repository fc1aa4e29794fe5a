"""Relay a WebSocket between the client and the upstream, in both directions.

The upstream handshake is made first, with the same filtered headers, forwarding headers and identity as
an HTTP request; only when the upstream has accepted is the client's upgrade accepted (with the
subprotocol the upstream chose), so a refused or unreachable upstream still gets a clear HTTP answer.
Text and binary messages are passed on as they are; pings are answered by aiohttp on each side; a close
from either side is passed on with its code and reason (RFC 6455 section 7.4).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp import WSMsgType, web
from yarl import URL

from broker.http.responses import SESSION_KEY, error_response, request_id_of
from broker.ops.events import audit
from broker.proxy.boundary import UpstreamBoundary
from broker.proxy.forward import BAD_PATH, failure_for, failure_response, outgoing_headers, target_url
from broker.proxy.routing import Route
from broker.proxy.upstream import Upstream

log = logging.getLogger(__name__)

# Pings on both legs find dead peers (and keep idle NAT entries alive); a missing pong closes the leg.
HEARTBEAT = 30.0
# Close codes that may be sent in a close frame (RFC 6455 section 7.4.1, IANA registry, 3000-4999).
SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
NORMAL = 1000
INTERNAL_ERROR = 1011
# Reserved codes that only describe what happened locally and must never go on the wire.
NO_STATUS = frozenset({0, 1005})
WebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse
MAX_ORIGIN = 512  # longer Origin values are refused unread (real origins are scheme://host:port)


@dataclass(frozen=True)
class Closing:
    """Why one leg ended: the close code and reason to pass to the other leg."""

    code: int
    reason: str


def relayable_close_code(code: int | None) -> int:
    """A received close code as one that may be sent on: codes a peer may send pass unchanged; "no status"
    becomes a normal close, and an abnormal end (1006, a dropped connection) an internal error."""
    if code is None or code in NO_STATUS:
        return NORMAL
    if code in SENDABLE_CLOSE_CODES or 3000 <= code <= 4999:
        return code
    return INTERNAL_ERROR


def normal_origin(text: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of an origin, default port made explicit; None for ``null`` or garbage."""
    if len(text) > MAX_ORIGIN:
        return None
    try:
        url = URL(text.strip())
        if url.scheme not in ("http", "https") or not url.host or url.user is not None:
            return None
        return url.scheme, url.host.lower().rstrip("."), url.port
    except ValueError:
        return None


def origin_allowed(origin: str | None, scheme: str, host: str, allowed: list[str]) -> bool:
    """May a WebSocket handshake with this ``Origin`` be relayed? Absent: yes (no browser); otherwise only
    the gateway's own origin for ``host`` or one of the route's ``allowed`` origins."""
    if origin is None:
        return True
    seen = normal_origin(origin)
    if seen is None:
        return False
    own = normal_origin(f"{scheme}://{host}")
    return seen == own or any(seen == normal_origin(extra) for extra in allowed)


def refuse_origin(request: web.Request, route: Route, origin: str) -> web.Response:
    """403 for a cross-site handshake, with an audit event (the Origin is bounded before it is logged)."""
    session = request.get(SESSION_KEY)
    audit(
        "access_denied",
        who=session.user_key if session is not None else None,
        company=session.login_code if session is not None else None,
        why="websocket origin not allowed",
        route=route.label,
        origin=origin[:200],
    )
    return error_response(
        request,
        403,
        "Cross-site WebSocket refused",
        "This WebSocket connection was opened from a page on another site.",
        "websocket_origin",
    )


def requested_protocols(request: web.Request) -> list[str]:
    """The subprotocols the client offered, in its order of preference."""
    values = request.headers.getall("Sec-WebSocket-Protocol", [])
    return [p.strip() for value in values for p in value.split(",") if p.strip()]


async def relay(
    request: web.Request,
    route: Route,
    upstream: Upstream,
    boundary: UpstreamBoundary,
    identity: Mapping[str, str],
) -> web.StreamResponse:
    """Open the upstream WebSocket, accept the client's, and pass messages both ways until one closes."""
    url = target_url(request, route, upstream)
    if url is None:
        return error_response(request, BAD_PATH.status, BAD_PATH.title, BAD_PATH.message, BAD_PATH.code)
    if not web.WebSocketResponse().can_prepare(request).ok:
        return error_response(
            request, 400, "Not a WebSocket handshake", "The upgrade request is incomplete.", "bad_websocket"
        )
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, boundary.scheme, request.host, route.config.websocket_origins):
        return refuse_origin(request, route, origin or "")
    headers = outgoing_headers(request, route, boundary, identity, websocket=True)
    config = route.config
    try:
        # ws_connect has no per-request timeout for the handshake: bound it here instead.
        async with asyncio.timeout(config.connect_timeout + config.read_timeout):
            upstream_ws = await upstream.http.ws_connect(
                url,
                headers=headers,
                protocols=requested_protocols(request),
                heartbeat=HEARTBEAT,
                max_msg_size=config.max_body,
            )
    except aiohttp.WSServerHandshakeError as exc:
        status = exc.status if 400 <= exc.status < 500 else 502
        log.warning(
            "upstream refused the WebSocket: %s",
            exc.status,
            extra={"route": route.label, "request_id": request_id_of(request)},
        )
        return error_response(
            request,
            status,
            "The application refused the connection",
            f"The application did not accept the WebSocket connection (it answered {exc.status}).",
            "upstream_websocket_refused",
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        return failure_response(request, route, failure_for(exc), exc)
    client_ws = web.WebSocketResponse(
        protocols=(upstream_ws.protocol,) if upstream_ws.protocol else (),
        heartbeat=HEARTBEAT,
        max_msg_size=config.max_body,
    )
    try:
        await client_ws.prepare(request)
        await _pump_both_ways(client_ws, upstream_ws)
    except (ConnectionError, TimeoutError) as exc:
        log.info(
            "websocket ended abruptly",
            extra={"route": route.label, "request_id": request_id_of(request), "error": type(exc).__name__},
        )
    finally:
        await upstream_ws.close()
    log.info(
        "websocket closed",
        extra={
            "route": route.label,
            "request_id": request_id_of(request),
            "client_code": client_ws.close_code,
            "upstream_code": upstream_ws.close_code,
        },
    )
    return client_ws


async def _pump_both_ways(
    client_ws: web.WebSocketResponse, upstream_ws: aiohttp.ClientWebSocketResponse
) -> None:
    """Run both directions; when one leg ends, close the other with its code and let that pump finish."""
    to_upstream = asyncio.create_task(_pump(client_ws, upstream_ws), name="ws-to-upstream")
    to_client = asyncio.create_task(_pump(upstream_ws, client_ws), name="ws-to-client")
    pumps = (to_upstream, to_client)
    try:
        done, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        ending = done.pop().result()
        # The leg that ended is closed already (aiohttp answered its close); closing the other passes the
        # code on, and wakes that leg's pending receive() with CLOSING, which ends its pump.
        for leg in (upstream_ws, client_ws):
            await leg.close(code=ending.code, message=ending.reason.encode())
        await asyncio.gather(*pending)
    finally:
        for task in pumps:
            task.cancel()


async def _pump(source: WebSocket, sink: WebSocket) -> Closing:
    """Pass messages from ``source`` to ``sink`` until ``source`` ends; say how it ended."""
    while True:
        message = await source.receive()
        if message.type is WSMsgType.TEXT:
            ok = await _send(sink.send_str(message.data))
        elif message.type is WSMsgType.BINARY:
            ok = await _send(sink.send_bytes(message.data))
        elif message.type is WSMsgType.CLOSE:
            return Closing(relayable_close_code(message.data), message.extra or "")
        elif message.type is WSMsgType.ERROR:
            return Closing(INTERNAL_ERROR, "")
        else:  # CLOSING / CLOSED: this leg was closed from our side or dropped
            return Closing(relayable_close_code(source.close_code), "")
        if not ok:
            return Closing(relayable_close_code(sink.close_code), "")


async def _send(step: Awaitable[None]) -> bool:
    """Await one send; False when the receiving leg is already gone."""
    try:
        await step
    except ConnectionError:
        return False
    return True
