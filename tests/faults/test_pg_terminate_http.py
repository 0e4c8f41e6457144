"""Postgres backends terminated while gunicorn serves issuances over real HTTP: every client
gets a success or an error, and the database never holds a half-applied issuance. Clients then
retry what failed with the same Idempotency-Key: each key ends with at most one order."""

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from orders.models import Delivery, Order
from plum.models import AuditEvent, IdempotencyKey, OutboxMessage
from tests.campaigns.builders import make_campaign
from tests.faults.checks import assert_system_consistent
from tests.faults.procs import kill_group, start_gunicorn

pytestmark = [
    pytest.mark.fault,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]

CLIENTS, PER_CLIENT = 4, 40


def _post(base: str, key: str, idem: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(  # noqa: S310 - local gunicorn
        f"{base}/api/v1/issuances",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {key}",
            "Idempotency-Key": idem,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (ConnectionError, urllib.error.URLError) as exc:
        return 0, {"transport": str(exc)}
    try:
        return status, json.loads(raw or b"{}")
    except ValueError:
        return status, {"raw": raw[:300].decode(errors="replace")}


def _body(campaign_id: int, n: int) -> dict:
    return {
        "campaign": campaign_id,
        "recipient": {"external_id": f"PG-{n:04d}", "email": f"pg{n}@example.com"},
        "reference": f"pg-{n}",
    }


def _terminate_loop(stop, spare: list[int], killed: list[int]) -> None:
    """Every 100 ms, terminate one backend of this test database that is not this test's own."""
    try:
        while not stop.is_set():
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM "
                    "pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND NOT (pid = ANY(%s)) "
                    "AND backend_type = 'client backend' ORDER BY random() LIMIT 1) t",
                    [spare],
                )
                killed.append(cursor.fetchone()[0])
            time.sleep(0.1)
    finally:
        connection.close()


def test_terminated_backends_under_http_requests_leave_no_half_applied_issuance(
    programme, make_api_client, services_env, tmp_path
):
    # given: gunicorn (2 workers x 4 threads) on the test database
    campaign = make_campaign(programme)
    _, key = make_api_client([programme])
    env = {**services_env, "API_THROTTLE_RATE": "100000/min"}
    server, base = start_gunicorn(env, log_path=tmp_path / "gunicorn.log")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        spare = [cursor.fetchone()[0]]
    stop, killed, outcomes, lock = threading.Event(), [], {}, threading.Lock()

    def client(c: int):
        for i in range(PER_CLIENT):
            n = c * PER_CLIENT + i
            status, body = _post(base, key, f"idem-{n}", _body(campaign.pk, n))
            with lock:
                outcomes[n] = (status, body)

    try:
        # when: 4 clients issue 160 rewards while backends are terminated every 100 ms
        killer = threading.Thread(target=_terminate_loop, args=(stop, spare, killed))
        killer.start()
        clients = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        stop.set()
        killer.join()
        # and the clients retry what failed, with the same key
        retries = {
            n: _post(base, key, f"idem-{n}", _body(campaign.pk, n))
            for n, (status, _) in sorted(outcomes.items())
            if status != 201
        }
        # and once more after the in-flight timeout, when a key left by a dead request may be
        # taken over (the keys made older here, as if 5 minutes had passed)
        stuck = [n for n, (status, _) in retries.items() if status == 409]
        IdempotencyKey.objects.filter(key__in=[f"idem-{n}" for n in stuck]).update(
            created_at=timezone.now() - settings.IDEMPOTENCY_IN_FLIGHT_TIMEOUT - timedelta(1)
        )
        late = {n: _post(base, key, f"idem-{n}", _body(campaign.pk, n)) for n in stuck}
    finally:
        stop.set()
        kill_group(server)

    # then: each answer is a success or an error, never anything else
    total = CLIENTS * PER_CLIENT
    statuses = Counter(status for status, _ in outcomes.values())
    assert set(statuses) <= {201, 500, 503}, statuses
    assert statuses[201] > 0 and sum(killed) > 0, (
        statuses,
        sum(killed),
        list(outcomes.values())[:2],
    )
    # a success is a complete issuance: order, voucher, delivery, its outbox message, audit
    orders = {o.reference: o for o in Order.objects.filter(source="api")}
    assert len(orders) <= total
    per_reference = Counter(Order.objects.filter(source="api").values_list("reference", flat=True))
    assert all(n == 1 for n in per_reference.values()), "a key issued twice"
    for n, (status, _) in outcomes.items():
        if status == 201:
            assert f"pg-{n}" in orders
    for order in orders.values():
        assert order.status == "completed" and order.voucher_id is not None
        delivery = Delivery.objects.get(order=order)
        assert OutboxMessage.objects.filter(pk=delivery.outbox_message_id).exists()
        assert AuditEvent.objects.filter(object_id=str(order.pk), action="order.create").exists()
    # a retry with the same key gets a success (the first one replayed, or a new one when
    # the first changed nothing), or "still in flight" while a dead request holds the key
    references = set(per_reference)
    retry_statuses = Counter(status for status, _ in retries.values())
    assert set(retry_statuses) <= {201, 409}, retries
    for n, (status, body) in retries.items():
        if status == 409:
            assert body["error"]["code"] == "idempotency_key_in_use"
        else:
            assert f"pg-{n}" in references
    # after the timeout a key whose request changed nothing is taken over and issues once; a
    # key whose request issued (and lost its answer) is refused: never a second order
    late_codes = Counter(
        "201" if status == 201 else body["error"]["code"] for status, body in late.values()
    )
    assert set(late_codes) <= {"201", "idempotency_key_applied"}, late
    assert {f"pg-{n}" for n in late} <= references
    assert_system_consistent()
    print(
        f"pg-terminate over HTTP: {total} requests, {sum(killed)} backends terminated, "
        f"answers {dict(statuses)}, retries {dict(retry_statuses)}, after the in-flight "
        f"timeout {dict(late_codes)}, {len(references)} orders, none twice"
    )
