"""Close a week of merchant payouts over N completed orders (default 200,000, 20 merchants),
against a raw COPY of N rows of the payout line's shape into a scratch table, in the same run.
Then cancel 1% of the orders after the close and close the next week (the adjustments), and
re-run the first close (the idempotent no-op).

Run by `make bench` (DATABASE_URL must point at Postgres; the benchmark works in a scratch
database `<name>_bench_payouts` that it creates and drops). Prints one table."""

import io
import os
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse, urlunparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
COUNT = int(os.environ.get("BENCH_PAYOUT_ORDERS", "200000"))
MERCHANTS = 20


def scratch_database_url() -> str:
    url = urlparse(os.environ["DATABASE_URL"])
    return urlunparse(url._replace(path=f"{url.path.rstrip('/')}_bench_payouts"))


def main() -> None:
    import psycopg2

    bench_url = scratch_database_url()
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
    from django.db import connection, transaction
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from campaigns.models import Merchant, Reward
    from campaigns.services.campaigns import campaign_create, campaign_transition
    from orders.models import Order, Payout, PayoutLine
    from orders.services import order_issue, payout_period_containing, payouts_close
    from plum.actors import SYSTEM
    from plum.models import Member
    from plum.services.programmes import programme_create

    programme = programme_create(actor=SYSTEM, name="Bench", slug="bench", currency="INR")
    member = Member.objects.create(programme=programme, external_id="BENCH-1")
    campaign_ids = []
    template = None
    for index in range(MERCHANTS):
        merchant = Merchant.objects.create(
            name=f"Merchant {index}", commission_percent=Decimal("2.35"), payout_period="weekly"
        )
        reward = Reward.objects.create(
            merchant=merchant,
            sku=f"BENCH-{index}",
            name="Bench card",
            kind="gift_card",
            country="IN",
            currency="INR",
            denominations=["333.33"],
        )
        campaign = campaign_create(
            programme=programme,
            actor=SYSTEM,
            name=f"Bench {index}",
            reward=reward,
            value=Decimal("333.33"),
            starts_at=timezone.now() - timedelta(days=1),
        )
        campaign_transition(campaign=campaign, action="activate", actor=SYSTEM)
        campaign_ids.append(campaign.pk)
        template = order_issue(campaign=campaign, member=member, source="api", actor=SYSTEM)
    start, end = payout_period_containing("weekly", timezone.now())
    # N completed orders spread over the week and the merchants, copied from a real order.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM orders_order WHERE id <> %s", [template.pk])
        cursor.execute(
            """
            INSERT INTO orders_order (booking_id, programme_id, campaign_id, member_id, value,
                currency, source, status, approval_state, voucher_id, delivery_status, is_test,
                reference, created_at, completed_at, updated_at)
            SELECT 'B-' || lpad(g::text, 10, '0'), programme_id,
                (%s::bigint[])[1 + g %% %s], member_id, value, currency, source, 'completed',
                approval_state, voucher_id, delivery_status, false, '',
                %s + (g %% 600000) * interval '1 second',
                %s + (g %% 600000) * interval '1 second', now()
            FROM orders_order, generate_series(1, %s) g WHERE id = %s
            """,
            [campaign_ids, MERCHANTS, start, start, COUNT - 1, template.pk],
        )
        cursor.execute(
            "UPDATE orders_order SET completed_at = %s WHERE id = %s", [start, template.pk]
        )
        cursor.execute("ANALYZE orders_order")
    assert Order.objects.filter(status="completed").count() == COUNT

    results = {}
    # Baseline: raw COPY of N rows of the line's shape into a scratch table, no indexes.
    payload = "".join(
        f"1\t{i}\tsale\t{start.isoformat()}\t2.35\t333.33\t7.83\t325.50\n" for i in range(COUNT)
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE bench_scratch "
            "(LIKE orders_payoutline INCLUDING DEFAULTS INCLUDING IDENTITY)"
        )
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.cursor.copy_expert(
            "COPY bench_scratch (payout_id, order_id, kind, occurred_at, commission_percent, "
            "face_value, commission, net) FROM STDIN",
            io.StringIO(payload),
        )
    results["raw COPY of N line rows"] = (time.perf_counter() - started, COUNT)
    del payload

    after = end + timedelta(hours=1)
    started = time.perf_counter()
    closed = payouts_close(period_end=end, now=after)
    results["Plum: close the week (sales)"] = (time.perf_counter() - started, COUNT)
    assert len(closed) == MERCHANTS
    assert PayoutLine.objects.count() == COUNT
    gross = sum(p.gross for p in Payout.objects.all())
    assert gross == Decimal("333.33") * COUNT, gross

    started = time.perf_counter()
    assert payouts_close(period_end=end, now=after) == []
    results["Plum: close the same week again (no-op)"] = (time.perf_counter() - started, COUNT)

    cancelled = COUNT // 100
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE orders_order SET status = 'cancelled', cancelled_at = %s "
            "WHERE id IN (SELECT id FROM orders_order ORDER BY id LIMIT %s)",
            [after, cancelled],
        )
    next_end = end + timedelta(days=7)
    started = time.perf_counter()
    adjusted = payouts_close(period_end=next_end, now=next_end + timedelta(hours=1))
    results["Plum: close next week (1% adjustments)"] = (time.perf_counter() - started, cancelled)
    assert sum(p.adjustment_count for p in adjusted) == cancelled

    baseline = results["raw COPY of N line rows"][0]
    print(
        f"{COUNT:,} orders, {MERCHANTS} merchants, PostgreSQL {connection.pg_version // 10000}, "
        f"{os.cpu_count()} cores"
    )
    print(f"{'what':<42}{'seconds':>10}{'rows/s':>12}{'ratio':>8}")
    for label, (seconds, rows) in results.items():
        print(f"{label:<42}{seconds:>10.2f}{rows / seconds:>12,.0f}{seconds / baseline:>8.2f}")
    connection.close()
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{bench_name}"')


if __name__ == "__main__":
    main()
