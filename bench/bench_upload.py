"""IPA uploads: a 100,000-row file validated (decode, parse, every row checked, the per-member
cap query), its rows stored (COPY) against a raw COPY of the same file into a scratch table in
the same run, and dispatch throughput (orders/s) with two worker processes against a pgbench
-N baseline of the same database in the same run.

Run by `make bench` (DATABASE_URL must point at Postgres; works in a scratch database
`<name>_bench` that it creates and drops). Prints one table. BENCH_UPLOAD_ROWS (100000) and
BENCH_UPLOAD_DISPATCH (2000, the rows dispatched as orders) scale it."""

import io
import os
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse, urlunparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
ROWS = int(os.environ.get("BENCH_UPLOAD_ROWS", "100000"))
DISPATCH = int(os.environ.get("BENCH_UPLOAD_DISPATCH", "2000"))
HEADER = "external_id,name,email,phone,country,channel,value,reference"


def scratch_database_url() -> str:
    url = urlparse(os.environ["DATABASE_URL"])
    return urlunparse(url._replace(path=f"{url.path.rstrip('/')}_bench"))


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("SECRET_KEY", "bench")
    os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "plum.settings"
    import django

    django.setup()
    from django.conf import settings

    # Confirmation publishes chunk tasks (to the in-memory broker, before Celery reads its
    # configuration): the two worker processes below run the chunks, not the confirming call.
    settings.CELERY_TASK_ALWAYS_EAGER = False


def file_bytes(count: int, start: int = 1) -> bytes:
    lines = [HEADER]
    for n in range(start, start + count):
        lines.append(f"EMP-{n:07d},Person {n},person{n}@example.com,+9198{n:08d},IN,,,ref-{n}")
    return ("\r\n".join(lines) + "\r\n").encode()


def worker(upload_id: int, index: int) -> None:
    """One dispatch worker: its half of the chunks first, then any left (SKIP LOCKED)."""
    from orders.models import UploadChunk
    from orders.services.uploads import upload_chunk_dispatch

    ids = list(
        UploadChunk.objects.filter(upload_id=upload_id)
        .order_by("number")
        .values_list("pk", flat=True)
    )
    for chunk_id in ids[index::2] + ids:
        upload_chunk_dispatch(chunk_id=chunk_id)


def pgbench_tps(url: str) -> float:
    env = {**os.environ}
    u = urlparse(url)
    args = ["-h", u.hostname or "127.0.0.1", "-p", str(u.port or 5432), "-U", u.username or ""]
    env["PGPASSWORD"] = u.password or ""
    db = u.path.lstrip("/")
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
    for line in out.splitlines():
        if line.startswith("tps"):
            return float(line.split("=")[1].split()[0])
    raise RuntimeError(out)


def main() -> None:
    import psycopg2

    bench_url = scratch_database_url()
    bench_name = urlparse(bench_url).path.lstrip("/")
    admin = psycopg2.connect(os.environ["DATABASE_URL"])
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{bench_name}"')
        cursor.execute(f'CREATE DATABASE "{bench_name}"')
    setup_django(bench_url)
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from campaigns.models import Merchant, Reward
    from campaigns.services.campaigns import campaign_create, campaign_transition
    from orders.models import Order, Upload
    from orders.services.uploads import (
        _members_at_cap,
        _store_rows,
        upload_confirm,
        upload_create_from_csv,
        upload_rules,
    )
    from orders.uploads.validation import check_rows, decode, parse_csv
    from plum.actors import SYSTEM
    from plum.services.programmes import programme_create

    programme = programme_create(actor=SYSTEM, name="Bench", slug="bench", currency="INR")
    reward = Reward.objects.create(
        merchant=Merchant.objects.create(name="Bench merchant"),
        sku="BENCH-UP-1",
        name="Bench card",
        kind="gift_card",
        country="IN",
        currency="INR",
        denominations=["500.00", "1000.00"],
    )
    campaign = campaign_create(
        programme=programme,
        actor=SYSTEM,
        name="Bench",
        reward=reward,
        value=Decimal("500.00"),
        starts_at=timezone.now() - timedelta(days=1),
        per_member_cap=1,  # so the cap query runs over every external id
        expiry_days=30,
    )
    campaign = campaign_transition(campaign=campaign, action="activate", actor=SYSTEM)
    raw = file_bytes(ROWS)
    results: dict[str, tuple[float, int, str]] = {}

    # Validation: plain functions and one set-based query.
    started = time.perf_counter()
    parsed = parse_csv(decode(raw), max_rows=ROWS)
    at_cap = _members_at_cap(campaign, [cells[0] for _, cells, _ in parsed.rows])
    checked = check_rows(parsed, rules=upload_rules(campaign), at_cap=at_cap)
    validation = time.perf_counter() - started
    assert all(not r.errors for r in checked), checked[0].errors

    # Storing the rows (COPY) vs a raw COPY of the same CSV file.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE bench_scratch (external_id text, name text, email text, phone text, "
            "country text, channel text, value numeric, reference text)"
        )
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.cursor.copy_expert(
            "COPY bench_scratch FROM STDIN WITH (FORMAT csv, HEADER true)", io.BytesIO(raw)
        )
    raw_copy = time.perf_counter() - started
    scratch = Upload.objects.create(programme=programme, campaign=campaign, source="admin")
    started = time.perf_counter()
    with transaction.atomic():
        _store_rows(scratch, checked)
    store = time.perf_counter() - started

    # The whole request path: upload_create_from_csv (validate + store + counts).
    started = time.perf_counter()
    upload = upload_create_from_csv(
        campaign=campaign,
        raw=file_bytes(ROWS, start=ROWS + 1),
        file_name="bench.csv",
        source="admin",
        actor=SYSTEM,
    )
    whole = time.perf_counter() - started
    assert upload.valid_count == ROWS, upload.file_errors

    # What the database alone costs for those rows: the same CSV COPY into a copy of the row
    # table with the same indexes and constraints, without Plum's Python around it.
    from orders.services.uploads import _COPY_COLUMNS, _COPY_NOT_NULL

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_rows (LIKE orders_uploadrow INCLUDING ALL)")
    stored = io.StringIO()
    cols, pk = ", ".join(_COPY_COLUMNS), int(scratch.pk)
    sql = f"COPY (SELECT {cols} FROM orders_uploadrow WHERE upload_id = {pk}) TO STDOUT CSV"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.cursor.copy_expert(sql, stored)
    stored.seek(0)
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.cursor.copy_expert(
            f"COPY bench_rows ({', '.join(_COPY_COLUMNS)}) FROM STDIN "
            f"WITH (FORMAT csv, FORCE_NOT_NULL ({', '.join(_COPY_NOT_NULL)}))",
            stored,
        )
    table_copy = time.perf_counter() - started

    results["raw COPY of the file (baseline)"] = (raw_copy, ROWS, "1.00")
    results["raw COPY into the row table's shape"] = (
        table_copy,
        ROWS,
        f"{table_copy / raw_copy:.2f}",
    )
    results["validate (parse, check, cap query)"] = (
        validation,
        ROWS,
        f"{validation / raw_copy:.2f}",
    )
    results["store rows (COPY)"] = (store, ROWS, f"{store / raw_copy:.2f}")
    results["upload_create_from_csv, whole"] = (whole, ROWS, f"{whole / raw_copy:.2f}")

    # Dispatch: DISPATCH rows as orders by two worker processes.
    small = upload_create_from_csv(
        campaign=campaign,
        raw=file_bytes(DISPATCH, start=3 * ROWS + 1),
        file_name="d.csv",
        source="admin",
        actor=SYSTEM,
    )
    upload_confirm(upload=small, send_only_valid=False, actor=SYSTEM)
    connection.close()
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", str(small.pk), str(i)], env={**os.environ}
        )
        for i in range(2)
    ]
    for proc in procs:
        assert proc.wait() == 0
    dispatch = time.perf_counter() - started
    small.refresh_from_db()
    assert (small.status, small.issued_count) == ("completed", DISPATCH), small.status
    assert Order.objects.filter(source="upload").count() == DISPATCH
    tps = pgbench_tps(bench_url)

    print(
        f"{ROWS:,}-row file on PostgreSQL {connection.pg_version // 10000}, {os.cpu_count()} cores"
    )
    print(f"{'what':<38}{'seconds':>9}{'rows/s':>10}{'vs COPY':>9}")
    for label, (seconds, count, ratio) in results.items():
        print(f"{label:<38}{seconds:>9.2f}{count / seconds:>10,.0f}{ratio:>9}")
    rate = DISPATCH / dispatch
    print(
        f"dispatch {DISPATCH:,} orders, 2 worker processes: {dispatch:.1f} s, {rate:,.0f} orders/s"
    )
    print(
        f"pgbench -N (2 clients, same database): {tps:,.0f} TPS; orders/s / TPS = {rate / tps:.3f}"
    )
    connection.close()
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{bench_name}"')


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        setup_django(os.environ["DATABASE_URL"])
        worker(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
