"""A local SMS provider for the worker-kill tests that behaves as a real one does about the
Idempotency-Key header (docs/delivery.md): the first request with a key is accepted and its
message goes to the handset (`handset`), a later request with the same key is answered 200 with
the same provider id and sends nothing again (`duplicates`).

`hold(after=n)` makes every request after the first `n` wait, already accepted, before it
answers, until `release()`: a worker killed while it waits has sent a message the provider
took and never learnt that it did."""

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler

from tests.stubs import HttpStub


class _State:
    def __init__(self):
        self.lock = threading.Lock()
        self.accepted: dict[str, str] = {}  # idempotency key -> provider message id
        self.handset: list[dict] = []  # what reached a phone: one per accepted key
        self.requests: list[str] = []  # every request's key, duplicates included
        self.hold_after: int | None = None
        self.held = 0
        self.gate = threading.Event()
        self.gate.set()


class _Handler(BaseHTTPRequestHandler):
    state: _State

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        key = self.headers.get("Idempotency-Key") or ""
        state = self.state
        with state.lock:
            state.requests.append(key)
            if key not in state.accepted:
                state.accepted[key] = f"prov-{len(state.accepted) + 1:06d}"
                state.handset.append({"key": key, "to": body.get("to"), "text": body.get("body")})
            provider_id = state.accepted[key]
            wait = state.hold_after is not None and len(state.requests) > state.hold_after
            if wait:
                state.held += 1
        if wait:
            state.gate.wait(timeout=120)
        raw = json.dumps({"id": provider_id, "status": "accepted"}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
        except OSError:
            pass  # the worker that asked is dead


class DedupProvider(HttpStub):
    def __init__(self):
        self.state = _State()
        super().__init__(_Handler, state=self.state)

    @property
    def held(self) -> int:
        return self.state.held

    def hold(self, *, after: int) -> None:
        with self.state.lock:
            self.state.hold_after = after
            self.state.gate.clear()

    def release(self) -> None:
        with self.state.lock:
            self.state.hold_after = None
        self.state.gate.set()

    def handset_count_by_key(self) -> Counter:
        return Counter(m["key"] for m in self.state.handset)

    def duplicates(self) -> int:
        return len(self.state.requests) - len(self.state.accepted)

    def __exit__(self, *exc):
        self.release()
        super().__exit__(*exc)
