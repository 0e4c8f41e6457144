"""Generate 1,000,000 voucher codes into one campaign's pool, against a raw COPY of 1,000,000
rows of the same shape into a scratch table in the same database, in the same run.

Run by `make bench` (DATABASE_URL must point at Postgres; the benchmark works in a scratch
database `<name>_bench` that it creates and drops). Prints one table."""

import io
import os
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse, urlunparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
COUNT = int(os.environ.get("BENCH_CODES", "1000000"))


def scratch_database_url() -> str:
    url = urlparse(os.environ["DATABASE_URL"])
    return urlunparse(url._replace(path=f"{url.path.rstrip('/')}_bench"))


def main() -> None:
    import psycopg2

    base = urlparse(os.environ["DATABASE_URL"])
    bench_url = scratch_database_url()
    bench_name = urlparse(bench_url).path.lstrip("/")
    admin = psycopg2.connect(os.environ["DATABASE_URL"])
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{bench_name}"')
        cursor.execute(f'CREATE DATABASE "{bench_name}"')
    os.environ["DATABASE_URL"] = bench_url
    os.environ.setdefault("SECRET_KEY", "bench")
    os.environ.pop("REDIS_URL", None)  # the job runs in-process: we time the work, not a queue
    os.environ["DJANGO_SETTINGS_MODULE"] = "plum.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from campaigns.models import Merchant, Reward, Voucher
    from campaigns.services.campaigns import campaign_create, campaign_transition
    from campaigns.services.codes import GENERATE_JOB
    from plum.actors import SYSTEM
    from plum.models import Job
    from plum.services.jobs import job_run
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
    campaign = campaign_create(
        programme=programme,
        actor=SYSTEM,
        name="Bench",
        reward=reward,
        value=Decimal("500.00"),
        starts_at=timezone.now() - timedelta(days=1),
    )
    campaign_transition(campaign=campaign, action="activate", actor=SYSTEM)

    # Baseline: raw COPY of the same rows into a scratch table of the same shape.
    from campaigns.codes import CodeGenerator

    codes = CodeGenerator(length=campaign.code_length).generate(COUNT)
    now = timezone.now().isoformat()
    constant = (
        f"\t{campaign.pk}\t{programme.pk}\t500.00\t500.00\tINR\tavailable\t\tf\t{now}\t{now}\n"
    )
    payload = "".join(code + constant for code in codes)
    columns = (
        "code, campaign_id, programme_id, face_value, balance, currency, status, "
        "status_before, is_test, created_at, updated_at"
    )
    results = {}
    for label, ddl in (
        ("COPY, no indexes", "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY"),
        ("COPY, same indexes", "INCLUDING ALL"),
    ):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS bench_scratch")
            cursor.execute(f"CREATE TABLE bench_scratch (LIKE campaigns_voucher {ddl})")
        started = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.cursor.copy_expert(
                f"COPY bench_scratch ({columns}) FROM STDIN", io.StringIO(payload)
            )
        results[label] = time.perf_counter() - started
    del payload, codes

    job = Job.objects.create(
        kind=GENERATE_JOB,
        programme=programme,
        total=COUNT,
        params={"campaign_id": campaign.pk, "count": COUNT, "is_test": False},
    )
    started = time.perf_counter()
    job_run(job_id=job.pk)
    results["Plum: generate codes (job)"] = time.perf_counter() - started
    job.refresh_from_db()
    assert job.status == "succeeded", job.errors
    assert Voucher.objects.filter(campaign=campaign).count() == COUNT

    baseline = results["COPY, no indexes"]
    print(f"{COUNT:,} codes on PostgreSQL {connection.pg_version // 10000}, {os.cpu_count()} cores")
    print(f"{'what':<32}{'seconds':>10}{'rows/s':>12}{'ratio':>8}")
    for label, seconds in results.items():
        print(f"{label:<32}{seconds:>10.2f}{COUNT / seconds:>12,.0f}{seconds / baseline:>8.2f}")
    connection.close()
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{bench_name}"')
    assert base


if __name__ == "__main__":
    main()
