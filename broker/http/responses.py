"""The gateway's own answers and the per-request keys they read: errors as a page or JSON, the request id.

Every layer that answers a request itself (the proxy, the handlers, the middleware) builds its error here,
so a lower layer never reaches up to the middleware for it.
"""

from __future__ import annotations

from aiohttp import web

from broker.http.pages import views
from broker.sessions.model import Session

# Set by the request-id middleware, read by every answer and log line of the request.
REQUEST_ID_KEY = web.RequestKey("request_id", str)
# The session stage's result, memoised per request (None: no live session).
SESSION_KEY: web.RequestKey[Session | None] = web.RequestKey("session")
# The route label for metrics and the access log, set once the route is matched.
ROUTE_LABEL_KEY = web.RequestKey("route_label", str)


def request_id_of(request: web.Request) -> str:
    """The id assigned to this request by the middleware."""
    return str(request.get(REQUEST_ID_KEY, ""))


def wants_html(request: web.Request) -> bool:
    """Browsers ask for HTML; API clients (fetch, curl with JSON) get JSON errors and 401 instead of 302."""
    accept = request.headers.get("Accept", "")
    return "text/html" in accept


def error_response(request: web.Request, status: int, title: str, message: str, code: str) -> web.Response:
    """An error as an HTML page for browsers or JSON for API clients, with the request id."""
    rid = request_id_of(request)
    if wants_html(request):
        return views.simple(title, message, status, rid)
    return web.json_response(
        {"error": code, "message": message, "request_id": rid},
        status=status,
        headers={"Cache-Control": "no-store"},
    )
