"""The session stage: the live, fresh session of a request's cookie, loaded once per request."""

from __future__ import annotations

from aiohttp import web

from broker.gateway import Gateway
from broker.http.responses import SESSION_KEY
from broker.ops.tracing import span
from broker.sessions.model import Session


async def current_session(gateway: Gateway, request: web.Request) -> Session | None:
    """The live, fresh session of this request's cookie (memoised per request).

    A session of a company that is no longer configured is refused (the company was removed at a
    reload): nothing that company's users held still opens a door.
    """
    if SESSION_KEY in request:
        return request[SESSION_KEY]
    ticket = gateway.cookie.read(request)
    now = gateway.clock()
    loaded = None
    if ticket:
        with span("session.load"):
            loaded = await gateway.sessions.load(ticket, now)
    session: Session | None = None
    if loaded is not None:
        stored, session = loaded
        if session.login_code not in gateway.config.tenants:
            session = None
        elif gateway.refresher.due(session, now):
            with span("session.refresh"):
                session = await gateway.refresher.ensure_fresh(stored, session, now)
    request[SESSION_KEY] = session
    return session
