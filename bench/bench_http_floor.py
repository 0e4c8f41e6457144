"""The floor under an API request on this machine: what gunicorn, Django and Plum's API view
base serve when the view does nothing, beside the real single issuance, each as a ratio to
`pgbench -N` in the same run. It answers one question for issue #4's single-issuance target
(≥ 0.35 × pgbench -N at 32 clients, p99 < 150 ms): how much of that budget the stack spends
before the issuance does any work.

    DATABASE_URL=postgres://... REDIS_URL=redis://... python bench/bench_http_floor.py

Works in a scratch database `<name>_floor` that it creates and drops (pgbench's tables and
Plum's). Every row is wrk at BENCH_CLIENTS (32) keep-alive connections for BENCH_SECONDS (15):

- gunicorn + a bare WSGI app (bench/floor/wsgi_hello.py): the server alone;
- gunicorn + Django: a plain view behind Plum's middleware stack, no DB (floor/urls.py);
- gunicorn + Django + DRF: `PlumApiView` POST with a real API key (authentication, scope,
  throttle) answering 201 with no work;
- the same with an Idempotency-Key (the claim every issuance makes);
- POST /api/v1/issuances (the real single issuance).

Same gunicorn settings as bench_issuance.py (BENCH_WORKERS gthread workers x BENCH_THREADS)."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import common  # noqa: E402 - bench/common.py, next to this script

CLIENTS = int(os.environ.get("BENCH_CLIENTS", "32"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "15"))
WORKERS = int(os.environ.get("BENCH_WORKERS", str(2 * (os.cpu_count() or 1) + 1)))
THREADS = int(os.environ.get("BENCH_THREADS", "4"))

LUA_GET = (
    common.LUA_COMMON
    + """
request = function()
  return wrk.format("GET", os.getenv("BENCH_PATH"))
end
"""
)

LUA_POST = (
    common.LUA_COMMON
    + """
local auth = "Bearer " .. os.getenv("BENCH_KEY")
local keyed = os.getenv("BENCH_IDEMPOTENT") == "1"

request = function()
  local id = next_id()
  local headers = {["Authorization"] = auth, ["Content-Type"] = "application/json"}
  if keyed then headers["Idempotency-Key"] = id end
  return wrk.format("POST", os.getenv("BENCH_PATH"), headers, '{"n": "' .. id .. '"}')
end
"""
)


def main() -> None:
    import bench_issuance

    admin_url = os.environ["DATABASE_URL"]
    url = common.scratch_url("floor")
    common.database_recreate(url, admin_url)
    env = common.server_env(url, DJANGO_SETTINGS_MODULE="floor.settings")
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    key, campaign_ids = bench_issuance.seed()
    common.pgbench(url, "-i", "-q", "-s", "10")
    connection.close()

    def run(app: str, ready: str, script: str, extra: dict) -> dict:
        port = common.free_port()
        server = common.start_gunicorn(
            env, port, workers=WORKERS, threads=THREADS, app=app, ready_path=ready
        )
        try:
            return common.wrk(script, f"http://127.0.0.1:{port}", CLIENTS, extra, SECONDS)
        finally:
            common.stop(server)

    rows = []
    before = common.pgbench_tps(url, clients=CLIENTS, seconds=SECONDS)
    rows.append(
        (
            "gunicorn + bare WSGI app",
            run("floor.wsgi_hello:application", "/", LUA_GET, {"BENCH_PATH": "/"}),
        )
    )
    rows.append(
        (
            "gunicorn + Django view, middleware, no DB",
            run("plum.wsgi", "/floor/django", LUA_GET, {"BENCH_PATH": "/floor/django"}),
        )
    )
    post = {"BENCH_KEY": key, "BENCH_PATH": "/floor/drf"}
    rows.append(
        (
            "+ DRF PlumApiView POST, API key, no work",
            run("plum.wsgi", "/floor/django", LUA_POST, {**post, "BENCH_IDEMPOTENT": "0"}),
        )
    )
    rows.append(
        (
            "+ Idempotency-Key claim",
            run("plum.wsgi", "/floor/django", LUA_POST, {**post, "BENCH_IDEMPOTENT": "1"}),
        )
    )
    rows.append(
        (
            "POST /api/v1/issuances (real)",
            run(
                "plum.wsgi",
                "/floor/django",
                bench_issuance.LUA_SINGLE,
                {"BENCH_KEY": key, "BENCH_CAMPAIGNS": str(campaign_ids[0]), "BENCH_TAG": "s"},
            ),
        )
    )
    after = common.pgbench_tps(url, clients=CLIENTS, seconds=SECONDS)
    baseline = (before + after) / 2

    load = os.getloadavg()
    print(
        f"{os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the "
        f"end; gunicorn {WORKERS} gthread workers x {THREADS} threads; {CLIENTS} connections, "
        f"{SECONDS} s per row"
    )
    print(
        f"pgbench -N, {CLIENTS} clients: before {before:,.0f}, after {after:,.0f}, "
        f"mean {baseline:,.0f} TPS"
    )
    print(f"{'what':<46}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>8}{'errors':>8}")
    for label, result in rows:
        rate = result["requests"] / result["seconds"]
        errors = sum(v for k, v in result.items() if k.startswith("errors_"))
        print(
            f"{label:<46}{rate:>9,.0f}{result['p50_ms']:>9.1f}{result['p99_ms']:>9.1f}"
            f"{rate / baseline:>8.3f}{errors:>8}"
        )
    common.database_drop(url, admin_url)
    if os.environ.get("REDIS_URL"):
        bench_issuance._purge_queued_tasks(os.environ["REDIS_URL"])


if __name__ == "__main__":
    main()
