"""Issuance through real HTTP against gunicorn on Postgres, each figure as a ratio to `pgbench -N`
TPS on the same database server in the same run:

(a) `pgbench -N` (simple-update, no branch/teller hot rows), BENCH_CLIENTS clients, run before
    and after the HTTP runs (the baseline is their mean; both are printed);
(b) single issuances, POST /api/v1/issuances, at BENCH_CLIENTS (32) concurrent connections:
    requests/s, p50, p99;
(b') the same spread over BENCH_SPREAD (32) campaigns: every issuance of one campaign
    updates that campaign's counter row, so (b) measures the hot row, (b') the rest;
(c) batch issuances, POST /api/v1/issuances/batch, 1,000 items a request at BENCH_BATCH_CLIENTS
    (2) connections: rewards/s.

Every request has its own Idempotency-Key and new recipients (external ids unique per
connection and request). The load comes from wrk (a separate C process, Lua scripts below), so
the client's cost is not charged to Plum and does not share the server's interpreter.

Run by `make bench` (DATABASE_URL must point at Postgres). The script works in a scratch
database `<name>_issbench` that it creates and drops, with pgbench's tables inside it. Outbox
deliveries are queued to the Redis in REDIS_URL (BENCH_REDIS_URL overrides) and not delivered
during the run (no worker competes for the CPU); the queued tasks are purged at the end.
Prints one table."""

import os
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import common  # noqa: E402 - bench/common.py, next to this script

CLIENTS = int(os.environ.get("BENCH_CLIENTS", "32"))
BATCH_CLIENTS = int(os.environ.get("BENCH_BATCH_CLIENTS", "2"))
BATCH_SIZE = int(os.environ.get("BENCH_BATCH_SIZE", "1000"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "20"))
# A batch request takes seconds on a busy machine: a longer run counts more of them.
BATCH_SECONDS = int(os.environ.get("BENCH_BATCH_SECONDS", str(2 * SECONDS)))
WORKERS = int(os.environ.get("BENCH_WORKERS", str(2 * (os.cpu_count() or 1) + 1)))
THREADS = int(os.environ.get("BENCH_THREADS", "4"))
SPREAD = int(os.environ.get("BENCH_SPREAD", "32"))
PGBENCH_SCALE = int(os.environ.get("BENCH_PGBENCH_SCALE", "10"))

LUA_SINGLE = (
    common.LUA_COMMON
    + """
local campaigns = {}
for c in string.gmatch(os.getenv("BENCH_CAMPAIGNS"), "[^,]+") do table.insert(campaigns, c) end
local auth = "Bearer " .. os.getenv("BENCH_KEY")

request = function()
  local id = next_id()
  local campaign = campaigns[(counter + tid) % #campaigns + 1]
  local body = '{"campaign": ' .. campaign .. ', "recipient": {"external_id": "' .. id ..
    '", "email": "m' .. counter .. '@example.com"}, "reference": "' .. id .. '"}'
  return wrk.format("POST", "/api/v1/issuances", {
    ["Authorization"] = auth, ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = id}, body)
end
"""
)

LUA_BATCH = (
    common.LUA_COMMON
    + """
local campaign = os.getenv("BENCH_CAMPAIGN")
local size = tonumber(os.getenv("BENCH_BATCH_SIZE"))
local auth = "Bearer " .. os.getenv("BENCH_KEY")

request = function()
  local id = next_id()
  local items = {}
  for i = 1, size do
    items[i] = '{"campaign": ' .. campaign .. ', "recipient": {"external_id": "' .. id .. '-' ..
      i .. '", "email": "m' .. i .. '@example.com"}, "reference": "' .. id .. '-' .. i .. '"}'
  end
  local body = '{"items": [' .. table.concat(items, ", ") .. ']}'
  return wrk.format("POST", "/api/v1/issuances/batch", {
    ["Authorization"] = auth, ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = id}, body)
end
"""
)


def seed() -> tuple[str, list[int]]:
    """A programme, a live API key with the issue scope, and SPREAD + 2 uncapped campaigns that
    generate their codes: one for singles, one for batches, SPREAD for singles spread over many
    campaigns. Returns (key, campaign ids)."""
    from django.utils import timezone

    from campaigns.models import Merchant, Reward
    from campaigns.services.campaigns import campaign_create, campaign_transition
    from plum.actors import SYSTEM
    from plum.services.api_clients import api_client_create
    from plum.services.programmes import programme_create

    programme = programme_create(actor=SYSTEM, name="Bench", slug="bench", currency="INR")
    reward = Reward.objects.create(
        merchant=Merchant.objects.create(name="Bench merchant"),
        sku="BENCH-1",
        name="Bench card",
        kind="gift_card",
        country="IN",
        currency="INR",
        denominations=["500.00"],
    )
    ids = []
    for name in ["Single", "Batch", *(f"Spread {i}" for i in range(SPREAD))]:
        campaign = campaign_create(
            programme=programme,
            actor=SYSTEM,
            name=name,
            reward=reward,
            value=Decimal("500.00"),
            starts_at=timezone.now() - timedelta(days=1),
            expiry_days=365,
        )
        campaign_transition(campaign=campaign, action="activate", actor=SYSTEM)
        ids.append(campaign.pk)
    _, key = api_client_create(
        name="Bench HRIS", programmes=[programme], scopes=["issue", "read"], actor=SYSTEM
    )
    return key, ids


def main() -> None:
    import psycopg2

    bench_url = common.scratch_url("issbench")
    bench_name = urlparse(bench_url).path.lstrip("/")
    admin = psycopg2.connect(os.environ["DATABASE_URL"])
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{bench_name}"')
        cursor.execute(f'CREATE DATABASE "{bench_name}"')
    redis_url = os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL", "")
    env = common.server_env(bench_url)
    if redis_url:
        env["REDIS_URL"] = redis_url
    else:
        env.pop("REDIS_URL", None)
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from campaigns.models import Campaign
    from campaigns.services.vouchers import campaign_counters_from_vouchers
    from orders.models import Order

    call_command("migrate", verbosity=0)
    key, campaign_ids = seed()
    single_id, batch_id, spread_ids = campaign_ids[0], campaign_ids[1], campaign_ids[2:]
    common.pgbench(bench_url, "-i", "-q", "-s", str(PGBENCH_SCALE))
    port = common.free_port()
    server = common.start_gunicorn(env, port, workers=WORKERS, threads=THREADS)
    try:
        base = f"http://127.0.0.1:{port}"
        tps_before = common.pgbench_tps(bench_url, clients=CLIENTS, seconds=SECONDS)
        shared = {"BENCH_KEY": key, "BENCH_BATCH_SIZE": str(BATCH_SIZE)}
        single = common.wrk(
            LUA_SINGLE,
            base,
            CLIENTS,
            {**shared, "BENCH_CAMPAIGNS": str(single_id), "BENCH_TAG": "s"},
            SECONDS,
        )
        spread = None
        if spread_ids:
            spread = common.wrk(
                LUA_SINGLE,
                base,
                CLIENTS,
                {
                    **shared,
                    "BENCH_CAMPAIGNS": ",".join(map(str, spread_ids)),
                    "BENCH_TAG": "m",
                },
                SECONDS,
            )
        batch = common.wrk(
            LUA_BATCH,
            base,
            BATCH_CLIENTS,
            {**shared, "BENCH_CAMPAIGN": str(batch_id), "BENCH_TAG": "b"},
            BATCH_SECONDS,
        )
        tps_after = common.pgbench_tps(bench_url, clients=CLIENTS, seconds=SECONDS)
    finally:
        common.stop(server)

    # What the HTTP runs claim is what the database holds.
    for campaign_id in campaign_ids:
        campaign = Campaign.objects.get(pk=campaign_id)
        orders = Order.objects.filter(campaign=campaign, status="completed").count()
        assert (campaign.issued_count, campaign.issued_value) == campaign_counters_from_vouchers(
            campaign
        )
        assert campaign.issued_count == orders, (campaign.issued_count, orders)
    single_orders = Order.objects.filter(campaign_id=single_id).count()
    batch_orders = Order.objects.filter(campaign_id=batch_id).count()
    assert single["errors_status"] == 0 and batch["errors_status"] == 0, (single, batch)
    assert spread is None or spread["errors_status"] == 0, spread

    baseline = (tps_before + tps_after) / 2
    single_rps = single["requests"] / single["seconds"]
    rewards = batch["requests"] * BATCH_SIZE / batch["seconds"]
    load = os.getloadavg()
    print(
        f"PostgreSQL {connection.pg_version // 10000}, {os.cpu_count()} cores, load average "
        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the end; gunicorn {WORKERS} gthread "
        f"workers x {THREADS} threads; {SECONDS} s per run ({BATCH_SECONDS} s for batches)"
    )
    print(f"{'what':<52}{'per second':>12}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>8}")
    rows = [
        (f"pgbench -N, {CLIENTS} clients (before)", tps_before, None, None),
        (f"pgbench -N, {CLIENTS} clients (after)", tps_after, None, None),
        ("pgbench -N baseline (mean)", baseline, None, None),
        (
            f"single issuance, {CLIENTS} conns ({single['requests']:,} orders)",
            single_rps,
            single["p50_ms"],
            single["p99_ms"],
        ),
        *(
            [
                (
                    f"single issuance, {CLIENTS} conns, {SPREAD} campaigns",
                    spread["requests"] / spread["seconds"],
                    spread["p50_ms"],
                    spread["p99_ms"],
                )
            ]
            if spread
            else []
        ),
        (
            f"batch of {BATCH_SIZE:,}, {BATCH_CLIENTS} conns: rewards/s ({batch['requests']} req)",
            rewards,
            batch["p50_ms"],
            batch["p99_ms"],
        ),
    ]
    for label, rate, p50, p99 in rows:
        p50s = f"{p50:>9.1f}" if p50 is not None else f"{'':>9}"
        p99s = f"{p99:>9.1f}" if p99 is not None else f"{'':>9}"
        print(f"{label:<52}{rate:>12,.0f}{p50s}{p99s}{rate / baseline:>8.2f}")
    verdict = {True: "met", False: "MISSED"}
    print(
        f"targets: single >= 0.35 x pgbench ({verdict[single_rps >= 0.35 * baseline]}), "
        f"p99 < 150 ms ({verdict[single['p99_ms'] < 150]}); "
        f"batch >= 2 x pgbench ({verdict[rewards >= 2 * baseline]})"
    )
    print(f"orders in the database: single {single_orders:,}, batch {batch_orders:,}")

    connection.close()
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{bench_name}"')
    if redis_url:
        _purge_queued_tasks(redis_url)


def _purge_queued_tasks(redis_url: str) -> None:
    """The outbox tasks the run queued (no worker consumed them)."""
    from plum.celery import app

    app.conf.broker_url = redis_url
    with app.connection_for_write() as conn:
        app.control.purge(connection=conn)


if __name__ == "__main__":
    main()
