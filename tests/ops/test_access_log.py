"""Access logging: one line per request with who and what, never a query string or a secret, and written
off the event loop so a stuck stdout cannot stall requests."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import socket
import sys
import threading
import time
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

import pytest

from broker.ops.events import ACCESS_FIELDS, access_record, current_request_id, current_trace_id
from broker.ops.logging import JsonFormatter, LogPipeline, configure_logging
from tests.support.stack import ADELE, CONTOSO_TID, Stack, running_stack


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "broker.access"]


async def test_each_request_is_logged_with_who_but_no_query_or_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="broker.access")
    async with running_stack("memory", tmp_path, {}) as stack, stack.browser() as browser:
        await stack.login(browser, "contoso", ADELE.username)
        caplog.clear()
        status, _ = await stack.whoami(browser, "/reports?code=very-secret-code&token=abc")
        assert status == 200
        async with browser.get(f"{stack.gateway_url}/.auth/callback?code=another-secret") as resp:
            await resp.read()
    records = access_records(caplog)
    proxied = next(r for r in records if r.__dict__["path"] == "/reports")
    assert proxied.__dict__["status"] == 200 and proxied.__dict__["method"] == "GET"
    assert (
        proxied.__dict__["user"] == f"{CONTOSO_TID}:{ADELE.oid}" and proxied.__dict__["company"] == "contoso"
    )
    assert proxied.__dict__["route"] != "broker" and proxied.__dict__["duration_ms"] >= 0
    callback = next(r for r in records if r.__dict__["path"] == "/.auth/callback")
    assert callback.__dict__["user"] is None
    rendered = "\n".join(JsonFormatter().format(r) for r in records)
    for secret in ("very-secret-code", "another-secret", "token=abc", "broker=v1."):
        assert secret not in rendered


async def test_access_log_can_be_turned_off(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="broker.access")
    async with running_stack("memory", tmp_path, {}, server={"access_log": False}) as stack:
        async with stack.browser() as browser:
            assert (await stack.whoami(browser, "/open/x"))[0] == 200
    assert access_records(caplog) == []


class StuckStream(io.StringIO):
    """A stdout whose reader has stopped: every write waits until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.release.wait()
        return super().write(text)


def test_a_stuck_stdout_never_blocks_the_logging_caller() -> None:
    stream = StuckStream()
    writer = LogPipeline(JsonFormatter(), stream, size=100)
    writer.start()
    logger = logging.getLogger("test.stuck")
    logger.propagate = False
    logger.addHandler(writer.handler)
    logger.setLevel(logging.INFO)
    done = threading.Event()

    def log_a_lot() -> None:
        for n in range(5_000):
            logger.info("line %d", n, extra={"n": n})
        done.set()

    try:
        caller = threading.Thread(target=log_a_lot)
        caller.start()
        assert done.wait(30), "a logging call blocked on the stuck stream"
        # The cumulative count: the listener may already have caught up and taken ``dropped`` back to 0.
        assert writer.handler.dropped_total > 0
        stream.release.set()
        for _ in range(3000):  # let the writer catch up before the last line, so it is not dropped too
            if writer.handler.records.empty():
                break
            time.sleep(0.01)
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("after the stall")
        writer.stop(timeout=30)
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert any("dropped" in line["msg"] and line["dropped"] > 0 for line in lines)
        assert lines[-1]["msg"] == "after the stall"
        assert "RuntimeError: boom" in lines[-1]["exc"]  # the traceback, formatted where it was raised
    finally:
        stream.release.set()
        logger.removeHandler(writer.handler)


async def test_broker_run_logging_writes_access_lines_off_the_request_path(tmp_path: Path) -> None:
    """As ``broker run`` configures it: access records go through the queue and come out as JSON lines,
    with the request id captured on the request's task, written by the listener's thread."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    try:
        with configure_logging("json", stream=out):
            async with running_stack("memory", tmp_path, {}) as stack, stack.browser() as browser:
                await stack.login(browser, "contoso", ADELE.username)
                headers = {"X-Request-Id": "req-12345678"}
                status, _ = await stack.whoami(browser, "/reports?code=very-secret-code", **headers)
                assert status == 200
    finally:
        root.handlers[:], root.level = saved
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    access = next(line for line in lines if line.get("event") == "access" and line["path"] == "/reports")
    assert access["logger"] == "broker.access" and access["msg"] == "GET /reports 200"
    assert access["request_id"] == "req-12345678" and access["user"] == f"{CONTOSO_TID}:{ADELE.oid}"
    assert access["company"] == "contoso" and access["level"] == "info" and access["ts"].endswith("Z")
    assert "very-secret-code" not in out.getvalue()


@pytest.mark.parametrize(
    "path",
    [
        "/plain",
        '/quote"d',
        "/back\\slash",
        "/ctrl\x01\x1f",
        "/ünïcode/€",
        "/%22encoded%5c",
        "/tab\tnew\nline",
    ],
)
def test_access_lines_are_the_json_of_their_fields(path: str) -> None:
    formatter = JsonFormatter()
    for user, company, remote in (("t:o", "contoso", "127.0.0.1"), (None, None, None)):
        entry = (1_700_000_000.25, "req-1", "GET", path, 200, 1.5, 'h"/', remote, user, company)
        line = json.loads(formatter.format(record_of(entry)))
        assert line == {
            "ts": "2023-11-14T22:13:20.250Z",
            "level": "info",
            "logger": "broker.access",
            "msg": f"GET {path} 200",
            "request_id": "req-1",
            "event": "access",
            **dict(zip(ACCESS_FIELDS, entry[2:], strict=True)),
        }


def test_access_lines_take_a_direct_path_with_the_general_output() -> None:
    # The formatter writes access records (most lines) by name, not by walking the record: the same line,
    # byte for byte, as python-json-logger's general path, with and without a trace id.
    formatter = JsonFormatter()
    general = JsonFormatter.__mro__[1].format  # python-json-logger's own ``format``
    for trace_id in ("", "0af7651916cd43dd8448eb211c80319c"):
        token = current_trace_id.set(trace_id)
        try:
            record = record_of((1_700_000_000.25, "req-1", "GET", '/a"\\€', 200, 1.5, "r", "::1", "t:o", "c"))
        finally:
            current_trace_id.reset(token)
        assert formatter.format(record) == general(formatter, record)
        assert ('"trace_id"' in formatter.format(record)) is bool(trace_id)


def record_of(entry: tuple[Any, ...]) -> logging.LogRecord:
    """The access record ``log_access`` makes, at ``created``, in a request whose id is ``request_id``:
    ``entry`` is ``(created, request_id, *the arguments of log_access)``."""
    created, request_id, *fields = entry
    token = current_request_id.set(request_id)
    try:
        record = access_record(*fields)
    finally:
        current_request_id.reset(token)
    record.created = created
    return record


def test_text_logging_renders_access_entries_with_its_own_format() -> None:
    """The demo's plain-text format applies to access entries as to any record."""
    out = io.StringIO()
    formatter = logging.Formatter("%(levelname)s %(name)s [%(request_id)s] %(status)s: %(message)s")
    writer = LogPipeline(formatter, out)
    writer.start()
    writer.handler.handle(
        record_of((1_700_000_000.25, "req-1", "GET", "/x", 200, 1.5, "h/", None, None, None))
    )
    writer.stop(timeout=10)
    assert out.getvalue() == "INFO broker.access [req-1] 200: GET /x 200\n"


async def test_every_line_of_a_request_names_its_route_with_the_same_string(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The proxy's own lines (here: the upstream failed) and the access line name the route alike, as a
    string, so one query finds every line of a route."""
    caplog.set_level(logging.INFO)
    with socket.socket() as refusing:  # bound, never listening: connections to it are refused
        refusing.bind(("127.0.0.1", 0))
        dead = {
            "host": "127.0.0.1",
            "path": "/dead/",
            "upstream": f"http://127.0.0.1:{refusing.getsockname()[1]}",
            "auth": "public",
        }
        async with running_stack("memory", tmp_path, {}, routes_extra=[dead]) as stack:
            async with stack.browser() as browser:
                assert (await stack.whoami(browser, "/dead/x", **{"X-Request-Id": "req-dead-1"}))[0] == 502
    lines = [
        json.loads(JsonFormatter().format(r))
        for r in caplog.records
        if r.__dict__.get("request_id") == "req-dead-1" or r.__dict__.get("path") == "/dead/x"
    ]
    failed = next(line for line in lines if line["msg"].startswith("upstream failed"))
    access = next(line for line in lines if line.get("event") == "access")
    assert failed["route"] == access["route"] == "127.0.0.1/dead/"


async def test_sessions_revoke_writes_its_audit_line_to_stderr(redis_stack: Stack) -> None:
    """``broker sessions revoke``, as an operator runs it (its own process): the audit event is logged, as
    JSON on stderr, while stdout keeps the command's answer alone."""
    async with redis_stack.browser() as browser:
        await redis_stack.login(browser, "contoso", ADELE.username)
    user = f"{CONTOSO_TID}:{ADELE.oid}"
    env = {
        **os.environ,
        "TEST_CONTOSO_SECRET": "x",
        "TEST_FABRIKAM_SECRET": "y",
        "TEST_SESSION_KEY": redis_stack.env["TEST_SESSION_KEY"],
    }
    args = ["sessions", "revoke", "--config", str(redis_stack.config_path), "--user", user]
    command = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "broker", *args, env=env, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(command.communicate(), 60)
    assert command.returncode == 0, err.decode()
    assert out.decode() == f"revoked 1 session(s) of {user}\n"
    lines = [json.loads(line) for line in err.decode().splitlines()]
    audit = next(line for line in lines if line.get("event") == "session_revoked")
    assert audit["logger"] == "broker.audit" and audit["audit"] is True
    assert audit["user"] == user and audit["count"] == 1 and audit["why"].startswith("operator")


def test_a_forked_process_writes_its_own_lines_once(tmp_path: Path) -> None:
    """As a worker after the fork: its own listener thread writes its lines; what the parent had queued
    is written once, by the parent."""
    log_file = tmp_path / "log.jsonl"
    with open(log_file, "a", encoding="utf-8") as stream:
        logs = LogPipeline(JsonFormatter(), stream)
        logs.start()
        logger = logging.getLogger("test.fork")
        logger.propagate = False
        logger.addHandler(logs.handler)
        logger.setLevel(logging.INFO)
        try:
            logger.info("queued before the fork")  # still queued: the listener waits WRITE_INTERVAL
            pid = os.fork()
            if pid == 0:  # the child: never returns into pytest
                code = 1
                try:
                    logs.restart_after_fork()
                    logger.info("from the child")
                    logs.stop(timeout=10)
                    code = 0
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            logger.info("from the parent")
            logs.stop(timeout=10)
        finally:
            logger.removeHandler(logs.handler)
    messages = [json.loads(line)["msg"] for line in log_file.read_text().splitlines()]
    assert sorted(messages) == ["from the child", "from the parent", "queued before the fork"]
