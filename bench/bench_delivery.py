"""Dispatch throughput: COUNT completed orders' SMS deliveries sent through the outbox by two
worker processes to a local HTTP provider (the provider contract of orders.delivery.http),
against two same-run baselines: the raw rate at which two processes can POST the same requests
to the same provider (no database), and pgbench -N TPS (2 clients) on the same server.

Run by `make bench` (DATABASE_URL must point at Postgres; the benchmark works in a scratch
database `<name>_bench_delivery` that it creates and drops). Each worker drains the outbox with
`outbox_sweep` (the sweeper's path: SKIP LOCKED, one short transaction per message), so the
figure is Plum's cost per delivery without the Redis hop. Prints one table."""

import json
import multiprocessing
import os
import re
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse, urlunparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402 - bench/common.py, next to this script

COUNT = int(os.environ.get("BENCH_DELIVERIES", "2000"))
WORKERS = 2


def _raw_posts(url: str, count: int) -> None:
    for i in range(count):
        body = json.dumps(
            {"to": "+919800000000", "from": "PLUM", "body": "x" * 160, "message_id": str(i)}
        ).encode()
        request = urllib.request.Request(  # noqa: S310
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": str(i)},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()


def _worker(base_url: str) -> None:
    import django

    django.setup()
    from django.conf import settings

    from plum.services.outbox import outbox_sweep

    settings.PLUM_SMS_BACKEND = "orders.delivery.http.HttpProviderBackend"
    settings.PLUM_SMS_PROVIDER = {"name": "bench", "base_url": base_url, "timeout": 10}
    while outbox_sweep(limit=200):
        pass


def _pgbench_tps(url: str) -> float:
    parsed = urlparse(url)
    env = {**os.environ, "PGPASSWORD": parsed.password or ""}
    args = ["-h", parsed.hostname, "-p", str(parsed.port or 5432), "-U", parsed.username]
    db = parsed.path.lstrip("/")
    subprocess.run(
        ["pgbench", "-i", "-q", "-s", "1", *args, db], env=env, check=True, capture_output=True
    )
    out = subprocess.run(
        ["pgbench", "-N", "-c", "2", "-j", "2", "-T", "10", *args, db],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(re.search(r"tps = ([0-9.]+)", out).group(1))


def main() -> None:
    import psycopg2

    url = urlparse(os.environ["DATABASE_URL"])
    bench_url = urlunparse(url._replace(path=f"{url.path.rstrip('/')}_bench_delivery"))
    bench_name = urlparse(bench_url).path.lstrip("/")
    admin = psycopg2.connect(os.environ["DATABASE_URL"])
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{bench_name}"')
        cursor.execute(f'CREATE DATABASE "{bench_name}"')
    os.environ["DATABASE_URL"] = bench_url
    os.environ.setdefault("SECRET_KEY", "bench")
    os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "plum.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, connections
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from campaigns.models import Merchant, Reward
    from campaigns.services.campaigns import campaign_create, campaign_transition
    from orders.models import Delivery
    from orders.services import order_issue
    from plum.actors import SYSTEM
    from plum.models import Member, OutboxMessage
    from plum.services import outbox
    from plum.services.programmes import programme_create

    # Set-up: the on-commit publish is switched off so that nothing is sent before the clock.
    outbox._schedule_delivery = lambda message_id: None
    programme = programme_create(
        actor=SYSTEM, name="Bench", slug="bench", currency="INR", default_channel="sms"
    )
    reward = Reward.objects.create(
        merchant=Merchant.objects.create(name="Bench merchant"),
        sku="BENCH-1",
        name="Bench card",
        kind="gift_card",
        country="IN",
        currency="INR",
        denominations=["500.00"],
    )
    campaign = campaign_create(
        programme=programme,
        actor=SYSTEM,
        name="Bench",
        reward=reward,
        value=Decimal("500.00"),
        starts_at=timezone.now() - timedelta(days=1),
        expiry_days=30,
    )
    campaign_transition(campaign=campaign, action="activate", actor=SYSTEM)
    members = Member.objects.bulk_create(
        Member(programme=programme, external_id=f"B-{i:06d}", phone=f"+9198{i:08d}")
        for i in range(COUNT)
    )
    for member in members:
        order_issue(campaign=campaign, member=member, source="api", actor=SYSTEM)
    assert Delivery.objects.filter(status="pending").count() == COUNT
    # The orders' own events (order.created, order.completed) are other work: not timed here.
    OutboxMessage.objects.filter(kind="event").update(status="sent", sent_at=timezone.now())

    port = 18000 + os.getpid() % 1000
    server = multiprocessing.Process(target=common.provider_serve, args=(port,), daemon=True)
    server.start()
    time.sleep(0.5)
    base_url = f"http://127.0.0.1:{port}/v1"
    results = {}

    share = [COUNT // WORKERS] * WORKERS
    started = time.perf_counter()
    posters = [
        multiprocessing.Process(target=_raw_posts, args=(f"{base_url}/messages", n)) for n in share
    ]
    for p in posters:
        p.start()
    for p in posters:
        p.join()
    results["raw POSTs to the provider, 2 processes"] = time.perf_counter() - started

    connections.close_all()
    started = time.perf_counter()
    workers = [multiprocessing.Process(target=_worker, args=(base_url,)) for _ in range(WORKERS)]
    for p in workers:
        p.start()
    for p in workers:
        p.join()
    results["Plum: outbox deliveries, 2 workers"] = time.perf_counter() - started
    delivered = Delivery.objects.filter(status="delivered").count()
    assert delivered == COUNT, f"{delivered} of {COUNT} delivered"
    server.terminate()

    tps = _pgbench_tps(bench_url)
    baseline = results["raw POSTs to the provider, 2 processes"]
    print(
        f"{COUNT:,} SMS deliveries on PostgreSQL {connection.pg_version // 10000}, "
        f"{os.cpu_count()} cores; pgbench -N (2 clients, 10 s): {tps:,.0f} TPS"
    )
    print(f"{'what':<42}{'seconds':>9}{'per s':>9}{'ratio':>8}{'/ TPS':>8}")
    for label, seconds in results.items():
        rate = COUNT / seconds
        print(
            f"{label:<42}{seconds:>9.2f}{rate:>9,.0f}{seconds / baseline:>8.2f}{rate / tps:>8.3f}"
        )
    connection.close()
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{bench_name}"')


if __name__ == "__main__":
    main()
