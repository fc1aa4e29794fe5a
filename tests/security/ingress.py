"""Real ingresses in front of the broker for forward-auth tests: Debian's nginx and caddy on loopback.

Each binds its own port (like redis-server): started on a candidate port and, when that port is taken,
on another (``tests.support.ports.on_some_port``). The configs are the ones ``docs/forward-auth.md`` and
``deploy/forward-auth/`` give, with the loopback addresses filled in.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.ports import HOST, PortTaken, on_some_port, says_port_taken

# The identity headers the test configs copy from the verify answer to the upstream.
COPIED_HEADERS = ("X-Broker-Assertion", "X-Remote-User", "X-Remote-Roles")


@contextmanager
def nginx_writable_dir() -> Iterator[Path]:
    """A folder nginx's unprivileged workers can write in (pytest's ``tmp_path`` is private to its owner)."""
    with tempfile.TemporaryDirectory(prefix="broker-nginx-") as name:
        os.chmod(name, 0o755)
        cache = Path(name) / "cache"
        cache.mkdir()
        os.chmod(cache, 0o777)
        yield cache


def verify_cache(cache_dir: Path, cookie_name: str, seconds: int) -> tuple[str, str]:
    """The opt-in cache of verify answers of docs/forward-auth.md ("Caching verify answers"): the lines of
    the ``http`` block and those of the verify location, with ``seconds`` as the revocation delay."""
    http = f"""
  proxy_cache_path {cache_dir} levels=1 keys_zone=broker_verify:1m max_size=10m inactive=1m
                   use_temp_path=off;
  map $http_cookie $broker_session {{
    "~(?:^|;)\\s*{cookie_name}=(?<session>[^;]+)" $session;
    default "";
  }}
  map $broker_session $broker_no_session {{
    "" 1;
    default 0;
  }}"""
    location = f"""
      proxy_cache broker_verify;
      proxy_cache_key "$broker_session $request_method $scheme://$http_host$request_uri";
      proxy_cache_valid 200 {seconds}s;
      proxy_ignore_headers Cache-Control Expires;
      proxy_no_cache $broker_no_session;
      proxy_cache_bypass $broker_no_session;"""
    return http, location


def nginx_config(
    port: int, broker: str, backend: str, workdir: Path, cache: tuple[str, str] = ("", "")
) -> str:
    """nginx ``auth_request`` in front of ``backend``, asking ``broker`` (as docs/forward-auth.md shows);
    ``cache``: ``verify_cache``'s lines (none: every request asks the broker)."""
    temp = "\n".join(
        f"  {kind}_temp_path {workdir}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    copied = "\n".join(
        f"      auth_request_set $id_{i} $upstream_http_{name.lower().replace('-', '_')};\n"
        f"      proxy_set_header {name} $id_{i};"
        for i, name in enumerate(COPIED_HEADERS)
    )
    return f"""
daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log info;
events {{ worker_connections 256; }}
http {{
  access_log off;
{temp}{cache[0]}
  server {{
    listen {HOST}:{port};
    # The broker's own pages (login, callback, logout) are served by the broker, on this host.
    location /.auth/ {{
      proxy_pass {broker};
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-For $remote_addr;
    }}
    location = /_broker_verify {{
      internal;
      proxy_pass {broker}/.auth/verify;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
      proxy_set_header X-Original-Method $request_method;{cache[1]}
    }}
    location @broker_login {{
      if ($broker_login = "") {{ return 401; }}
      return 302 $broker_login;
    }}
    location / {{
      auth_request /_broker_verify;
      auth_request_set $broker_login $upstream_http_x_broker_login;
      error_page 401 = @broker_login;
      # Each identity header is set from the verify answer: a client's copy is replaced (or removed).
{copied}
      proxy_set_header Host $http_host;
      proxy_pass {backend};
    }}
  }}
}}
"""


def caddy_config(port: int, broker: str, backend: str) -> str:
    """Caddy ``forward_auth`` in front of ``backend``, asking ``broker`` (redirect mode)."""
    broker_hostport = broker.removeprefix("http://")
    names = " ".join(COPIED_HEADERS)
    strip = "\n".join(f"      request_header -{name}" for name in COPIED_HEADERS)
    return f"""
{{
  admin off
  auto_https off
}}
http://{HOST}:{port} {{
  handle /.auth/* {{
    reverse_proxy {broker_hostport}
  }}
  handle {{
    route {{
      # A client's copies of the identity headers go first; forward_auth then copies the broker's.
{strip}
      forward_auth {broker_hostport} {{
        uri /.auth/verify?login=redirect
        copy_headers {names}
      }}
      reverse_proxy {backend.removeprefix("http://")}
    }}
  }}
}}
"""


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path, name: str) -> None:
    """Until ``proc`` accepts connections on ``port``; ``PortTaken`` when it reports the port taken."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text(errors="replace")
            if says_port_taken(text):
                raise PortTaken(port)
            raise RuntimeError(f"{name} exited on port {port}:\n{text[-3000:]}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"{name} did not start on port {port}:\n{log.read_text(errors='replace')[-3000:]}")


def binary(name: str, path: str) -> str:
    """A Debian ingress binary the tests need (``make test`` installs it: scripts/ensure-ingresses.sh)."""
    found = shutil.which(name) or (path if os.path.exists(path) else None)
    if found is None:
        raise RuntimeError(f"{name} is not installed (make test installs it); the forward-auth tests need it")
    return found


def _start(
    argv: list[str], port: int, workdir: Path, name: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    log = workdir / f"{name}-{port}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_listening(port, proc, log if name == "caddy" else workdir / "nginx-error.log", name)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    return proc


@contextmanager
def running_nginx(
    workdir: Path, broker: str, backend: str, cache: tuple[str, str] = ("", "")
) -> Iterator[str]:
    """Debian's nginx with ``auth_request`` on a loopback port (``cache``: see ``verify_cache``); yields its
    base URL."""
    nginx = binary("nginx", "/usr/sbin/nginx")
    workdir.mkdir(parents=True, exist_ok=True)

    def start(port: int) -> tuple[int, subprocess.Popen[bytes]]:
        conf = workdir / f"nginx-{port}.conf"
        conf.write_text(nginx_config(port, broker, backend, workdir, cache))
        (workdir / "nginx-error.log").write_text("")
        return port, _start(
            [nginx, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "nginx-error.log")],
            port,
            workdir,
            "nginx",
        )

    port, proc = on_some_port(start)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def running_caddy(workdir: Path, broker: str, backend: str) -> Iterator[str]:
    """Debian's caddy with ``forward_auth`` on a loopback port; yields its base URL."""
    caddy = binary("caddy", "/usr/bin/caddy")
    workdir.mkdir(parents=True, exist_ok=True)
    # Caddy keeps state under $HOME/$XDG_*: a throw-away folder, never the machine's.
    env = {**os.environ, "HOME": str(workdir), "XDG_DATA_HOME": str(workdir), "XDG_CONFIG_HOME": str(workdir)}

    def start(port: int) -> tuple[int, subprocess.Popen[bytes]]:
        conf = workdir / f"Caddyfile-{port}"
        conf.write_text(caddy_config(port, broker, backend))
        argv = [caddy, "run", "--config", str(conf), "--adapter", "caddyfile"]
        return port, _start(argv, port, workdir, "caddy", env)

    port, proc = on_some_port(start)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
