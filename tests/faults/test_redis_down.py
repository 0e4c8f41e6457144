"""Redis (broker and cache) stopped while the API keeps taking issuances over real HTTP, then
started again. gunicorn and a Celery worker run on a redis-server of this test alone; the
shared Redis is never touched. While Redis is down every issuance still succeeds, quickly (the
order and its delivery's outbox message commit in Postgres; publishing the task fails fast and
leaves the message to the sweeper); once Redis is back the sweeper delivers what the broker
never saw, and every order's voucher reaches the SMTP server exactly once."""

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter

import pytest

from orders.models import Delivery, Order
from plum.models import OutboxMessage
from plum.services.outbox import outbox_sweep
from tests.campaigns.builders import make_campaign
from tests.faults.checks import assert_system_consistent
from tests.faults.procs import PrivateRedis, kill_group, start_gunicorn, start_worker, wait_until

pytestmark = [
    pytest.mark.fault,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]

BEFORE, DURING, AFTER = 10, 40, 10
CLIENTS = 4
SLOW_REQUEST_SECONDS = 8.0  # the 2 s broker and cache timeouts, on a loaded machine


@pytest.fixture
def private_redis():
    redis = PrivateRedis()
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


def _issue(base: str, key: str, campaign_id: int, n: int) -> tuple[int, float, dict]:
    body = {
        "campaign": campaign_id,
        "recipient": {
            "external_id": f"R-{n:04d}",
            "name": f"Recipient {n}",
            "email": f"r{n}@example.com",
            "preferred_channel": "email",
        },
        "reference": f"redis-fault-{n}",
    }
    request = urllib.request.Request(  # noqa: S310 - local gunicorn
        f"{base}/api/v1/issuances",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {key}",
            "Idempotency-Key": str(uuid.uuid4()),
        },
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    seconds = time.monotonic() - started
    try:
        payload = json.loads(raw or b"{}")
    except ValueError:
        payload = {"raw": raw[:500].decode(errors="replace")}
    return status, seconds, payload


def _issue_many(base, key, campaign_id, numbers) -> list[tuple[int, float, dict]]:
    """`numbers` issued by CLIENTS threads at once."""
    results: list = []
    lock = threading.Lock()
    todo = list(numbers)

    def client():
        while True:
            with lock:
                if not todo:
                    return
                n = todo.pop(0)
            outcome = _issue(base, key, campaign_id, n)
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _delivered() -> int:
    return Delivery.objects.filter(order__source="api", status="delivered").count()


def test_the_api_keeps_issuing_while_redis_is_down_and_every_voucher_goes_out_once(
    programme, make_api_client, services_env, smtp_server, private_redis, tmp_path
):
    # given: gunicorn and a worker whose broker and cache are this test's own redis-server
    campaign = make_campaign(programme)
    _, key = make_api_client([programme])
    env = {
        **services_env,
        "REDIS_URL": private_redis.url,
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp_server.port),
        "API_THROTTLE_RATE": "100000/min",
    }
    server, base = start_gunicorn(env, log_path=tmp_path / "gunicorn.log")
    worker = start_worker(env)
    try:
        before = _issue_many(base, key, campaign.pk, range(BEFORE))
        assert wait_until(lambda: _delivered() == BEFORE, timeout=120), "worker did not deliver"

        # when: Redis stops, and the API keeps taking issuances
        private_redis.stop()
        during = _issue_many(base, key, campaign.pk, range(BEFORE, BEFORE + DURING))
        pending_while_down = OutboxMessage.objects.filter(kind="delivery", status="pending").count()

        # and Redis comes back (empty: it keeps nothing), and issuances go on
        private_redis.start()
        after = _issue_many(base, key, campaign.pk, range(BEFORE + DURING, BEFORE + DURING + AFTER))
        # the sweeper (what beat runs every 30 s) delivers what the broker never saw
        total = BEFORE + DURING + AFTER

        def swept():
            outbox_sweep(limit=200)
            return _delivered() == total

        assert wait_until(swept, timeout=180, interval=1), f"{_delivered()} of {total} delivered"
    finally:
        kill_group(worker)
        kill_group(server)

    # then: the API never failed, nor hung, while Redis was down
    statuses = Counter(status for status, _, _ in before + during + after)
    assert statuses == {201: total}, [p for s, _, p in before + during + after if s != 201][:3]
    slowest = max(seconds for _, seconds, _ in during)
    assert slowest < SLOW_REQUEST_SECONDS, f"a request took {slowest:.1f} s with Redis down"
    assert pending_while_down == DURING  # the worker never heard of them
    # and every order has one delivered delivery, its message sent once, received once
    orders = Order.objects.filter(source="api")
    assert orders.count() == total
    deliveries = Delivery.objects.filter(order__in=orders)
    assert deliveries.count() == total
    assert deliveries.filter(status="delivered").count() == total
    messages = OutboxMessage.objects.filter(pk__in=deliveries.values("outbox_message_id"))
    assert set(messages.values_list("status", "attempts")) == {("sent", 1)}
    received = Counter(m["Message-ID"] for m in smtp_server.messages)
    expected = {f"<{pk}@plum.delivery>" for pk in messages.values_list("pk", flat=True)}
    assert set(received) == expected
    assert set(received.values()) == {1}
    assert_system_consistent()
    print(
        f"redis-down: {total} issuances, {DURING} while down, slowest while down "
        f"{slowest:.2f} s, {pending_while_down} left to the sweeper, "
        f"{len(smtp_server.messages)} e-mails received"
    )
