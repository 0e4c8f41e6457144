"""Real local stand-ins for the outside world: an SMTP server (aiosmtpd), a local HTTP server
for providers and webhooks, and a real Celery worker process for end-to-end task flows."""

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HttpStub:
    """A real HTTP server on a free local port, serving `handler` (a BaseHTTPRequestHandler
    subclass) from a daemon thread while the `with` block runs. `handler_attrs` become class
    attributes of a subclass of it (the state the stub shares with the test)."""

    path = "/v1"

    def __init__(self, handler: type[BaseHTTPRequestHandler], **handler_attrs):
        self.port = free_port()
        bound = type("Handler", (handler,), handler_attrs)
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), bound)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@dataclass
class SmtpRecorder:
    """Keeps every accepted message; `rcpt_reply` / `data_replies` make it refuse on command."""

    messages: list = field(default_factory=list)
    rcpt_reply: str | None = None
    data_replies: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        with self.lock:
            if self.data_replies:
                return self.data_replies.pop(0)
            self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(self):
        self.recorder = SmtpRecorder()
        self.port = free_port()
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port)

    @property
    def messages(self):
        return self.recorder.messages

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()


@contextmanager
def celery_worker(env: dict) -> Iterator[subprocess.Popen]:
    """A real `celery worker` process (solo pool) with `env` (the test database and Redis: the
    `services_env` fixture), after purging what other tests published without a worker; stopped
    on exit."""
    from plum.celery import app as celery_app

    celery_app.control.purge()
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "plum",
            "worker",
            "--pool=solo",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
