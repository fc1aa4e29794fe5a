"""``broker run`` as a real process, its JSON log in a file, for tests of what only the command does
(connection bounds, worker supervision)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from broker.identity.assertion import generate_es256_pem
from tests.support.servers import wait_until_serving
from tests.support.stack import gateway_config, new_session_key


def broker_config(
    tmp_path: Path, backend_url: str, listen: str, store: str = "memory", **server: Any
) -> Path:
    """A config whose only route is a public ``/`` to ``backend_url``; ``server`` keys override.

    Several workers need a shared ``store`` (``check-config`` refuses ``workers > 1`` with ``memory``)."""
    key = tmp_path / "assertion.pem"
    key.write_bytes(generate_es256_pem())
    raw = gateway_config(0, "http://127.0.0.1:1", backend_url, store, key)  # IdP unused: public route
    raw["server"].update(public_url="http://127.0.0.1:8080", listen=listen, **server)
    raw["routes"] = [{"host": "127.0.0.1", "path": "/", "upstream": backend_url, "auth": "public"}]
    path = tmp_path / "broker.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@dataclass
class BrokerRun:
    """One ``broker run --config``; ``env`` adds to the environment, ``args`` to the command line."""

    config: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Spawn it (returns at once)."""
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "TEST_CONTOSO_SECRET": "x",
            "TEST_FABRIKAM_SECRET": "x",
            "TEST_SESSION_KEY": new_session_key(),  # used only by a config with a Redis store
        }
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "broker", "run", "--config", str(self.config), *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**env, **self.env},
            )

    def records(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far."""
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [json.loads(line) for line in lines if line.startswith("{")]

    async def wait_for_record(
        self, message: str, count: int = 1, timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` records whose message starts with ``message`` were logged; return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r for r in self.records() if str(r.get("msg", "")).startswith(message)]
            if len(found) >= count:
                return found
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"{count} x {message!r} not logged within {timeout} s:\n{self.log.read_text()[-3000:]}"
        )

    async def bound_port(self) -> int:
        """The port the (first) worker listens on: the one the OS gave it for ``listen: host:0``."""
        return int((await self.wait_for_record("gateway listening"))[0]["port"])

    async def serving(self, base: str) -> None:
        """Wait until ``base`` answers its health check."""
        assert self.proc is not None
        await wait_until_serving(base, self.proc, log=self.log)

    async def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM; the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.proc.wait, timeout)

    async def wait(self, timeout: float = 30.0) -> int:
        """Its exit code, once it exits on its own."""
        assert self.proc is not None
        return await asyncio.to_thread(self.proc.wait, timeout)

    def kill(self) -> None:
        """SIGKILL the parent if still running (the workers stop on their own once it is gone)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
