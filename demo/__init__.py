"""The demo backend ("whoami"): shows every request it receives and who the gateway says sent it.

Any method on any path answers the whoami page: JSON for ``Accept: application/json`` or ``?format=json``,
a self-contained HTML page otherwise. The ``X-Broker-Assertion`` header is verified against the gateway's
JWKS (cached; an unknown ``kid`` refetches at most once per 30 s): algorithms ES256/RS256, ``iss`` equal
to the issuer, ``exp`` with 30 s leeway, ``aud`` only when audiences are given. A missing or invalid
assertion is shown as such (with pyjwt's reason), never as a 500. Request bodies are read in chunks and
counted, so uploads through the gateway can be tested.

Test helper endpoints (GET and HEAD), for proxy tests:

- ``/_demo/status/{code}``   answers that status (200..599; JSON ``{"status": code}`` unless 204/304)
- ``/_demo/redirect?to=URL`` answers 302 with ``Location: URL``
- ``/_demo/cookies``         sets two cookies (``demo_a``, ``demo_b``: two ``Set-Cookie`` headers) and
  echoes the cookies received as ``{"received": {...}}``
- ``/_demo/slow?seconds=N``  sleeps N seconds (clamped to 0..30), then answers ``{"slept": N}``
- ``/_demo/bytes?n=N``       streams N zero bytes, chunked transfer encoding, in 64 KiB chunks

Run it alone with ``python -m demo.whoami --listen 127.0.0.1:9001 --jwks-url URL --issuer URL``;
``python -m demo`` (``make demo``) runs it together with the dev IdP and the gateway (``demo.launcher``).
"""

from __future__ import annotations

from demo.app import create_demo_app

__all__ = ["create_demo_app"]
