"""Issuance measured in-process: what one single issuance and one batch reward cost in Python
CPU and in SQL statements, through the Django test client against Postgres (no HTTP server,
no load generator: the figure is the request path itself).

    DATABASE_URL=postgres://... REDIS_URL=redis://... python bench/profile_issuance.py [--profile]

Works in a scratch database `<name>_issprof` that it creates and drops. Prints statements per
single issuance (and per transaction), CPU ms per single issuance, CPU ms per batch reward.
Prints the statements of one batch too; with `--statements`, lists them with their times. With
`--profile`, prints the top of a cProfile (CPU time, not wall time: waits on Postgres and Redis
are not counted) of the single path and of the batch path.
PROFILE_SINGLES (200) and PROFILE_BATCHES (3 of PROFILE_BATCH_SIZE 1,000) set the sizes."""

import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import common  # noqa: E402 - bench/common.py, next to this script

SINGLES = int(os.environ.get("PROFILE_SINGLES", "200"))
BATCHES = int(os.environ.get("PROFILE_BATCHES", "3"))
BATCH_SIZE = int(os.environ.get("PROFILE_BATCH_SIZE", "1000"))


def _stats(profiler: cProfile.Profile, title: str) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("cumulative")
    stats.print_stats(45)
    print(f"--- {title}: cumulative ---")
    print(out.getvalue())
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime").print_stats(30)
    print(f"--- {title}: own time ---")
    print(out.getvalue())


def main() -> None:
    profile = "--profile" in sys.argv
    admin_url = os.environ["DATABASE_URL"]
    url = common.scratch_url("issprof")
    common.database_recreate(url, admin_url)
    os.environ.update(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": os.environ.get("SECRET_KEY", "bench"),
            "DEBUG": "0",
            "STATIC_MANIFEST": "0",
            "API_THROTTLE_RATE": "100000000/min",
            "DJANGO_SETTINGS_MODULE": "plum.settings",
        }
    )
    import django

    django.setup()
    import bench_issuance
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)
    key, ids = bench_issuance.seed()
    single_id, batch_id = ids[0], ids[1]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    counter = iter(range(10**9))

    def single() -> int:
        n = next(counter)
        body = {
            "campaign": single_id,
            "recipient": {"external_id": f"s-{n}", "email": f"m{n}@example.com"},
            "reference": f"s-{n}",
        }
        response = client.post(
            "/api/v1/issuances",
            json.dumps(body),
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=f"s-{n}",
        )
        assert response.status_code == 201, response.content
        return response

    def batch() -> None:
        n = next(counter)
        items = [
            {
                "campaign": batch_id,
                "recipient": {"external_id": f"b-{n}-{i}", "email": f"m{i}@example.com"},
                "reference": f"b-{n}-{i}",
            }
            for i in range(BATCH_SIZE)
        ]
        response = client.post(
            "/api/v1/issuances/batch",
            json.dumps({"items": items}),
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=f"b-{n}",
        )
        assert response.status_code in (200, 201), response.content[:500]

    for _ in range(20):  # warm-up: imports, connections, caches
        single()
    with CaptureQueriesContext(connection) as queries:
        single()
    sqls = [q["sql"] for q in queries.captured_queries]
    savepoints = sum(1 for s in sqls if "SAVEPOINT" in s)
    print(f"single issuance: {len(sqls)} statements ({savepoints} savepoint statements)")
    for sql in sqls:
        print("   ", sql[:150])

    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(SINGLES):
        single()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(
        f"single issuance: {SINGLES} in {wall:.2f} s wall, {cpu:.2f} s CPU: "
        f"{1000 * cpu / SINGLES:.2f} ms CPU each"
    )

    batch()  # warm-up
    with CaptureQueriesContext(connection) as queries:
        batch()
    sqls = [q["sql"] for q in queries.captured_queries]
    print(f"batch of {BATCH_SIZE}: {len(sqls)} statements")
    if "--statements" in sys.argv:
        for q in queries.captured_queries:
            print(f"    {q['time']:>6}s  {q['sql'][:150]}")
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(BATCHES):
        batch()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    rewards = BATCHES * BATCH_SIZE
    print(
        f"batch: {BATCHES} x {BATCH_SIZE} in {wall:.2f} s wall, {cpu:.2f} s CPU: "
        f"{1000 * cpu / rewards:.3f} ms CPU a reward"
    )
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")

    if profile:
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        for _ in range(100):
            single()
        profiler.disable()
        _stats(profiler, "100 single issuances")
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        batch()
        profiler.disable()
        _stats(profiler, f"1 batch of {BATCH_SIZE}")

    connection.close()
    common.database_drop(url, admin_url)


if __name__ == "__main__":
    main()
