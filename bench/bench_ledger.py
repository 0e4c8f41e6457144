"""The points ledger at 1,000,000 postings over 10,000 members, on Postgres.

Loads the ledger set-based (500,000 balanced two-leg transactions, each chunk one INSERT ...
SELECT for the transactions and one for the postings, with every balance_after computed in
closed form; the deferred balance trigger and every constraint stay on and check each row at
commit), then measures, in the same run:
- posting throughput: single earns through `points_earn`, and batched earns through
  `points_earn_many` (one transaction of BATCH members), as a ratio to pgbench -N TPS on a
  scratch database of the same server;
- GET /api/v1/members/{id}/wallet and a filtered wallet report page, p95 ms;
- the CSV export of all 1,000,000 postings through the report's streamed response: seconds,
  and the process's peak memory (tracemalloc peak of Python allocations, and ru_maxrss);
- check_ledger over the whole ledger.

Run by `make bench` (DATABASE_URL must point at Postgres). Works in a scratch database
`<name>_ledger_bench` that it creates and drops. Prints one table."""

import os
import random
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
MEMBERS = int(os.environ.get("BENCH_LEDGER_MEMBERS", "10000"))
TXNS_PER_MEMBER = int(os.environ.get("BENCH_LEDGER_TXNS", "50"))  # 2 postings each
SINGLE_EARNS = int(os.environ.get("BENCH_LEDGER_SINGLE", "500"))
BATCH = 1000
BATCHES = 5
SAMPLES = 200
DAYS = 180
EARN, BURN = 100, 150  # every 4th step a burn: balances only grow, never below zero


SERVER_URL = os.environ.get("DATABASE_URL", "")


def scratch_url(suffix: str) -> str:
    url = urlparse(SERVER_URL)
    return urlunparse(url._replace(path=f"{url.path.rstrip('/')}_{suffix}"))


def recreate(url: str) -> None:
    import psycopg2

    name = urlparse(url).path.lstrip("/")
    admin = psycopg2.connect(SERVER_URL)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()


def drop(url: str) -> None:
    import psycopg2

    name = urlparse(url).path.lstrip("/")
    admin = psycopg2.connect(SERVER_URL)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.close()


def pgbench_tps(seconds: int = 20) -> float:
    """pgbench -N (simple update, no branch/teller contention) TPS, one client, on a scratch
    database of the same server: the machine's baseline for one connection's commits."""
    url = scratch_url("pgbench")
    recreate(url)
    parsed = urlparse(url)
    env = {**os.environ, "PGPASSWORD": parsed.password or ""}
    base = ["-h", parsed.hostname, "-p", str(parsed.port or 5432), "-U", parsed.username]
    name = parsed.path.lstrip("/")
    try:
        subprocess.run(
            ["/usr/bin/pgbench", "-i", "-q", "-s", "10", *base, name],
            env=env,
            check=True,
            capture_output=True,
        )
        out = subprocess.run(
            ["/usr/bin/pgbench", "-N", "-c", "1", "-T", str(seconds), *base, name],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        drop(url)
    for line in out.splitlines():
        if line.startswith("tps"):
            return float(line.split("=")[1].split()[0])
    raise RuntimeError(out)


def load(programme_id: int) -> float:
    """Members, accounts and TXNS_PER_MEMBER transactions per member, set-based. Transaction
    t = (s - 1) * MEMBERS + m is member m's step s (1-based); its postings are 2t - 1 (the
    counter-account: funding for an earn, redemption for a burn; the lower account id, as the
    service orders legs) and 2t (the wallet). Balances after are closed forms of (s, m)."""
    from django.db import connection, transaction

    started = time.perf_counter()
    n = MEMBERS
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO plum_member (id, programme_id, external_id, name, email, phone, "
            "country, preferred_channel, created_at, updated_at) "
            "SELECT m, %s, 'M' || lpad(m::text, 6, '0'), 'Member ' || m, "
            "'m' || m || '@example.com', '', 'IN', '', now(), now() "
            "FROM generate_series(1, %s) m",
            [programme_id, n],
        )
        cursor.execute(
            "INSERT INTO wallets_account (id, programme_id, kind, member_id, balance, "
            "created_at) VALUES (1, %s, 'funding', NULL, 0, now()), "
            "(2, %s, 'redemption', NULL, 0, now())",
            [programme_id, programme_id],
        )
        cursor.execute(
            "INSERT INTO wallets_account (id, programme_id, kind, member_id, balance, "
            "created_at) SELECT 2 + m, %s, 'member_wallet', m, 0, now() "
            "FROM generate_series(1, %s) m",
            [programme_id, n],
        )
    seconds_per_txn = DAYS * 86400 / (n * TXNS_PER_MEMBER)
    for s in range(1, TXNS_PER_MEMBER + 1):
        is_burn = s % 4 == 0
        earns_before = (s - 1) - (s - 1) // 4  # earn steps before step s
        burns_before = (s - 1) // 4
        earns_upto = s - s // 4
        burns_upto = s // 4
        wallet_after = EARN * earns_upto - BURN * burns_upto
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO wallets_ledgertransaction (id, programme_id, kind, reason, "
                "reference, note, actor_type, actor_label, idempotency_key, created_at) "
                "SELECT t, %s, %s, %s, %s || t, '', 'system', 'bench', 'bench-' || t, "
                "now() - %s * interval '1 day' + (t * %s) * interval '1 second' "
                "FROM (SELECT (%s - 1) * %s + m AS t FROM generate_series(1, %s) m) x",
                [
                    programme_id,
                    "burn" if is_burn else "earn",
                    "redemption" if is_burn else "milestone_award",
                    "BK-" if is_burn else "HR-",
                    DAYS,
                    seconds_per_txn,
                    s,
                    n,
                    n,
                ],
            )
            # Counter leg then wallet leg; running balances of the counter-accounts count
            # every earn (burn) of the earlier steps plus members 1..m of this one.
            if is_burn:
                counter = "2, %s, %s * ((%s * %s) + m)"
                counter_params = [BURN, BURN, burns_before, n]
                wallet_amount = -BURN
            else:
                counter = "1, %s, -%s * ((%s * %s) + m)"
                counter_params = [-EARN, EARN, earns_before, n]
                wallet_amount = EARN
            cursor.execute(
                "INSERT INTO wallets_posting (id, transaction_id, account_id, amount, "  # noqa: S608
                "balance_after) "
                f"SELECT 2 * t - 1, t, {counter} FROM "
                "(SELECT (%s - 1) * %s + m AS t, m FROM generate_series(1, %s) m) x "
                "UNION ALL "
                "SELECT 2 * t, t, 2 + m, %s, %s FROM "
                "(SELECT (%s - 1) * %s + m AS t, m FROM generate_series(1, %s) m) y",
                [*counter_params, s, n, n, wallet_amount, wallet_after, s, n, n],
            )
            if s <= 2:
                # The balance trigger's plan is made at its first run (at this commit): give
                # the planner real statistics, or it scans the postings once per row.
                cursor.execute("ANALYZE wallets_posting")
                cursor.execute("ANALYZE wallets_ledgertransaction")
    with transaction.atomic(), connection.cursor() as cursor:
        wallet_final = EARN * (TXNS_PER_MEMBER - TXNS_PER_MEMBER // 4) - BURN * (
            TXNS_PER_MEMBER // 4
        )
        cursor.execute("UPDATE wallets_account SET balance = %s WHERE id > 2", [wallet_final])
        cursor.execute(
            "UPDATE wallets_account SET balance = -%s WHERE id = 1",
            [EARN * n * (TXNS_PER_MEMBER - TXNS_PER_MEMBER // 4)],
        )
        cursor.execute(
            "UPDATE wallets_account SET balance = %s WHERE id = 2",
            [BURN * n * (TXNS_PER_MEMBER // 4)],
        )
        for table in ("plum_member", "wallets_account", "wallets_ledgertransaction"):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                f"(SELECT max(id) FROM {table}))"
            )
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('wallets_posting', 'id'), "
            "(SELECT max(id) FROM wallets_posting))"
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18] * 1000


def main() -> None:
    bench_url = scratch_url("ledger_bench")
    recreate(bench_url)
    os.environ["DATABASE_URL"] = bench_url
    os.environ.setdefault("SECRET_KEY", "bench")
    os.environ["DEBUG"] = "0"
    os.environ["STATIC_MANIFEST"] = "0"
    os.environ["API_THROTTLE_RATE"] = "1000000/min"
    os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "plum.settings"
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from plum.actors import SYSTEM
    from plum.models import Member
    from plum.services.api_clients import api_client_create
    from plum.services.programmes import programme_create
    from wallets.models import Posting
    from wallets.reports import (
        ReportFilter,
        earn_burn_per_day,
        report_filter_resolve,
        report_rows,
        report_totals,
        statement_months,
    )
    from wallets.selectors import ledger_problems
    from wallets.services import points_earn, points_earn_many

    results: list[tuple[str, str]] = []
    try:
        programme = programme_create(actor=SYSTEM, name="Bench", slug="bench", currency="INR")
        load_seconds = load(programme.pk)
        postings = Posting.objects.count()
        results.append(
            (
                f"load {postings:,} postings / {MEMBERS:,} members (set-based, triggers on)",
                f"{load_seconds:.1f} s ({postings / load_seconds:,.0f} postings/s)",
            )
        )

        started = time.perf_counter()
        problems = ledger_problems()
        results.append(
            (
                "check_ledger over the whole ledger",
                f"{time.perf_counter() - started:.1f} s, {len(problems)} problems",
            )
        )

        baseline = pgbench_tps()
        results.append(("pgbench -N, 1 client, 20 s (baseline)", f"{baseline:,.0f} TPS"))

        members = list(Member.objects.filter(programme=programme).order_by("pk"))
        rng = random.Random(6)
        started = time.perf_counter()
        for i in range(SINGLE_EARNS):
            points_earn(
                member=rng.choice(members), points=10, idempotency_key=f"single-{i}", actor=SYSTEM
            )
        single = SINGLE_EARNS / (time.perf_counter() - started)
        results.append(
            (
                f"points_earn, one at a time ({SINGLE_EARNS}, 1 connection)",
                f"{single:,.0f} earns/s = {single / baseline:.2f} x pgbench TPS",
            )
        )
        batch = min(BATCH, len(members) // BATCHES)
        started = time.perf_counter()
        for b in range(BATCHES):
            chunk = members[b * batch : (b + 1) * batch]
            points_earn_many(
                programme=programme,
                awards=[(member, 10) for member in chunk],
                idempotency_key=f"batch-{b}",
                actor=SYSTEM,
            )
        batched = batch * BATCHES / (time.perf_counter() - started)
        results.append(
            (
                f"points_earn_many, {BATCHES} batches of {batch} members",
                f"{batched:,.0f} earns/s = {batched / baseline:.2f} x pgbench TPS",
            )
        )

        _key_client, key = api_client_create(
            name="Bench", programmes=[programme], scopes=None, is_test=False, actor=SYSTEM
        )
        api = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
        timings = []
        for member in rng.sample(members, SAMPLES):
            url = f"/api/v1/members/{member.external_id}/wallet"
            started = time.perf_counter()
            response = api.get(url)
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200, response.content
        results.append(
            (f"GET /api/v1/members/{{id}}/wallet ({SAMPLES} members)", f"p95 {p95(timings):.1f} ms")
        )

        admin = get_user_model().objects.create_superuser("bench", "b@example.com", "x")
        web = Client()
        web.force_login(admin)
        report = reverse("admin:wallets_report")
        today = timezone.localdate()
        for label, make_params in (
            (
                "report page, filtered by member (+ totals, chart)",
                lambda m: {"member": m.external_id},
            ),
            (
                "report page, one day, kind=burn (+ totals, chart)",
                lambda m: {
                    "date_from": str(today - timedelta(days=1 + m.pk % (DAYS - 2))),
                    "date_to": str(today - timedelta(days=1 + m.pk % (DAYS - 2))),
                    "kind": "burn",
                },
            ),
        ):
            timings = []
            for member in rng.sample(members, 50):
                started = time.perf_counter()
                response = web.get(report, make_params(member))
                timings.append(time.perf_counter() - started)
                assert response.status_code == 200
            results.append((label, f"p95 {p95(timings):.1f} ms"))
            # The same filters, the report's own queries only (rows, totals, chart): the part
            # the indexes decide, without the admin page around it.
            timings = []
            for member in rng.sample(members, 50):
                params = make_params(member)
                flt = report_filter_resolve(
                    ReportFilter(
                        programme_ids=[programme.pk],
                        member=params.get("member", ""),
                        kind=params.get("kind", ""),
                        date_from=date.fromisoformat(params["date_from"])
                        if "date_from" in params
                        else None,
                        date_to=date.fromisoformat(params["date_to"])
                        if "date_to" in params
                        else None,
                    )
                )
                started = time.perf_counter()
                report_rows(flt)
                report_totals(flt)
                earn_burn_per_day(flt)
                timings.append(time.perf_counter() - started)
            results.append(
                ("  its queries only (rows, totals, chart)", f"p95 {p95(timings):.1f} ms")
            )  # noqa: E501
        started = time.perf_counter()
        response = web.get(reverse("admin:wallets_statement"), {"programme": programme.pk})
        page_seconds = time.perf_counter() - started
        assert response.status_code == 200 and b"(matches)" in response.content
        this_month = timezone.localdate()
        statement = statement_months(programme_id=programme.pk, first=this_month, last=this_month)
        results.append(
            (
                "month-end statement page, 13 months",
                f"{page_seconds:.2f} s; this month closes at {statement[-1].closing:,} = sum "
                f"of wallets {statement[-1].wallet_balances:,}",
            )
        )

        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        started = time.perf_counter()
        response = web.get(reverse("admin:wallets_report_csv"))
        size = lines = 0
        if os.environ.get("BENCH_PROFILE_CSV"):
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        for chunk in response.streaming_content:
            size += len(chunk)
            lines += chunk.count(b"\n")
        if os.environ.get("BENCH_PROFILE_CSV"):
            profiler.disable()
            profiler.print_stats("tottime")
        seconds = time.perf_counter() - started
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        results.append(
            (
                f"CSV export of {lines - 1:,} rows ({size / 1e6:.0f} MB)",
                f"{seconds:.1f} s ({(lines - 1) / seconds:,.0f} rows/s); Python peak "
                f"{peak / 1e6:.1f} MB; max RSS {rss_before / 1024:.0f} -> "
                f"{rss_after / 1024:.0f} MB",
            )
        )
    finally:
        connection.close()
        drop(bench_url)

    print(
        f"{MEMBERS:,} members, {MEMBERS * TXNS_PER_MEMBER * 2:,} postings loaded; "
        f"PostgreSQL {connection.pg_version // 10000}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    width = max(len(label) for label, _ in results)
    for label, value in results:
        print(f"{label:<{width}}  {value}")


if __name__ == "__main__":
    main()
