"""A real local HTTP provider for the delivery tests: it speaks the provider contract of
orders.delivery.http (POST /messages) and answers as told, one scripted answer per request:
"200", "500", "400:<code>", "429:<retry-after>", "timeout" (answers after the client gave up).
With nothing scripted it accepts. Every request is recorded (headers and JSON body)."""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.stubs import HttpStub


@dataclass
class ProviderRecorder:
    script: list[str] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    timeout_sleep: float = 1.5
    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: int = 0


class _Handler(BaseHTTPRequestHandler):
    recorder: ProviderRecorder

    def log_message(self, *args):
        pass

    def _answer(self, status: int, body: dict, headers: dict | None = None):
        raw = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the timeout case)

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        recorder = self.recorder
        with recorder.lock:
            recorder.counter += 1
            command = recorder.script.pop(0) if recorder.script else "200"
            recorder.requests.append(
                {"path": self.path, "headers": dict(self.headers), "body": body, "answer": command}
            )
            provider_id = f"prov-{recorder.counter:05d}"
        kind, _, arg = command.partition(":")
        if kind == "timeout":
            time.sleep(recorder.timeout_sleep)
            self._answer(200, {"id": provider_id})
        elif kind == "500":
            self._answer(500, {"error": {"code": "internal", "message": "try later"}})
        elif kind == "429":
            self._answer(429, {"error": {"code": "rate_limited"}}, {"Retry-After": arg or "1"})
        elif kind == "400":
            self._answer(
                400, {"error": {"code": arg or "invalid_number", "message": "Not a mobile number"}}
            )
        else:
            self._answer(200, {"id": provider_id, "status": "accepted"})


class ProviderServer(HttpStub):
    def __init__(self):
        self.recorder = ProviderRecorder()
        super().__init__(_Handler, recorder=self.recorder)

    @property
    def requests(self) -> list[dict]:
        return self.recorder.requests

    def answer(self, *commands: str) -> None:
        with self.recorder.lock:
            self.recorder.script.extend(commands)


# --- fixtures and helpers the delivery tests share (imported by each test module) --------------

import pytest  # noqa: E402
from django.utils import timezone  # noqa: E402

SMS_PROVIDER = "acme-sms"
WHATSAPP_PROVIDER = "acme-wa"
TOKEN = "tok-secret-123"


@pytest.fixture
def provider():
    with ProviderServer() as server:
        yield server


@pytest.fixture
def http_providers(settings, provider):
    """SMS and WhatsApp through the real HTTP backend to the local provider; short timeout."""
    for channel, name in (("SMS", SMS_PROVIDER), ("WHATSAPP", WHATSAPP_PROVIDER)):
        setattr(settings, f"PLUM_{channel}_BACKEND", "orders.delivery.http.HttpProviderBackend")
        setattr(
            settings,
            f"PLUM_{channel}_PROVIDER",
            {
                "name": name,
                "base_url": provider.base_url,
                "token": TOKEN,
                "sender": "PLUM",
                "timeout": 0.5,
            },
        )
    settings.OUTBOX_BACKOFF_BASE_SECONDS = 1
    settings.OUTBOX_BACKOFF_MAX_SECONDS = 4
    return provider


def deliver(delivery):
    """One attempt of the delivery's outbox message, made due first (retries are scheduled in
    the future by the backoff)."""
    from plum.models import OutboxMessage
    from plum.services.outbox import outbox_deliver

    OutboxMessage.objects.filter(pk=delivery.outbox_message_id, status="pending").update(
        next_attempt_at=timezone.now()
    )
    outbox_deliver(message_id=delivery.outbox_message_id)
    delivery.refresh_from_db()
    return delivery
