"""The member storefront under 20 concurrent members: dashboard, catalog (100,000 rewards) and
order history (500 orders each), served by gunicorn on Postgres; p50/p95/p99 per page, against
a same-run `pgbench -N` (TPS) baseline.

Run by `make bench` (DATABASE_URL must point at Postgres). Works in a scratch database
`<name>_bench_store` that it creates and drops. Set-up rows (catalog, campaigns, orders) are
bulk-inserted as fixtures; the pages under test run the real views. Environment knobs:
BENCH_STORE_REWARDS (100000), BENCH_STORE_ORDERS (500 per member), BENCH_STORE_MEMBERS (20),
BENCH_STORE_ROUNDS (25 rounds of every page per member), BENCH_STORE_WORKERS (gunicorn, 4)."""

import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import common  # noqa: E402 - bench/common.py, next to this script

REWARDS = int(os.environ.get("BENCH_STORE_REWARDS", "100000"))
ORDERS = int(os.environ.get("BENCH_STORE_ORDERS", "500"))
MEMBERS = int(os.environ.get("BENCH_STORE_MEMBERS", "20"))
ROUNDS = int(os.environ.get("BENCH_STORE_ROUNDS", "25"))
WORKERS = int(os.environ.get("BENCH_STORE_WORKERS", "4"))
PASSWORD = "bench-store-password-2026"  # noqa: S105 - a throwaway account, scratch database
PAGES = {
    "dashboard": "/store/",
    "catalog (sort by points)": "/store/rewards/",
    "catalog (country + kind)": "/store/rewards/?country=IN&kind=gift_card",
    "catalog (search 'coffee')": "/store/rewards/?q=coffee",
    "order history": "/store/orders/",
}


def scratch_url(suffix: str) -> str:
    url = urlparse(os.environ["DATABASE_URL"])
    return urlunparse(url._replace(path=f"{url.path.rstrip('/')}{suffix}"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed() -> list[str]:
    """Programme, catalog, campaigns, members with accounts, points and orders."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from campaigns.models import Campaign, Merchant, Reward, Voucher
    from orders.models import Order
    from orders.services import booking_id_new
    from plum.actors import SYSTEM
    from plum.models import Member
    from plum.services.programmes import member_link_user, programme_create
    from wallets.services import points_earn

    now = timezone.now()
    rng = random.Random(7)
    programme = programme_create(actor=SYSTEM, name="Bench", slug="bench", currency="INR")
    merchants = Merchant.objects.bulk_create([Merchant(name=f"Brand {i:03d}") for i in range(300)])
    words = ["Coffee", "Books", "Travel", "Spa", "Cinema", "Grocery", "Fuel", "Fashion", "Music"]
    countries = ["IN", "US", "GB", "AE", "SG"]
    kinds = [k for k, _ in Reward.Kind.choices]
    rewards = Reward.objects.bulk_create(
        [
            Reward(
                merchant=merchants[i % len(merchants)],
                sku=f"BENCH-{i:06d}",
                name=f"{rng.choice(words)} card {i}",
                kind=kinds[i % len(kinds)],
                country=countries[i % len(countries)],
                currency="INR",
                denominations=["500.00", "1000.00"],
                points_price=rng.randint(1, 5),
            )
            for i in range(REWARDS)
        ],
        batch_size=5000,
    )
    campaigns = Campaign.objects.bulk_create(
        [
            Campaign(
                programme=programme,
                name=f"Store {r.pk}",
                reward=r,
                value=Decimal("500.00"),
                currency="INR",
                starts_at=now - timedelta(days=1),
                status=Campaign.Status.ACTIVE,
                in_storefront=True,
                expiry_days=365,
            )
            for r in rewards
        ],
        batch_size=5000,
    )
    user_model = get_user_model()
    usernames = []
    for m in range(MEMBERS):
        member = Member.objects.create(
            programme=programme, external_id=f"B-{m:03d}", name=f"Member {m}", email=f"b{m}@x.io"
        )
        user = user_model.objects.create_user(username=f"bench{m}", password=PASSWORD)
        member_link_user(member=member, user=user, actor=SYSTEM)
        for k in range(12):
            points_earn(
                member=member,
                points=1000 + k,
                reference=f"Award {k}",
                idempotency_key=f"bench-{m}-{k}",
                actor=SYSTEM,
            )
        chosen = rng.sample(campaigns, ORDERS)
        vouchers = Voucher.objects.bulk_create(
            [
                Voucher(
                    code=f"BENCH{m:03d}X{i:05d}",
                    campaign=c,
                    programme=programme,
                    face_value=c.value,
                    balance=c.value,
                    currency="INR",
                    status="active",
                    member=member,
                    issued_at=now,
                    expires_at=now + timedelta(days=365),
                )
                for i, c in enumerate(chosen)
            ],
            batch_size=2000,
        )
        Order.objects.bulk_create(
            [
                Order(
                    booking_id=booking_id_new(),
                    programme=programme,
                    campaign=c,
                    member=member,
                    value=c.value,
                    currency="INR",
                    source="storefront",
                    status="completed",
                    voucher=v,
                    points=1000,
                    completed_at=now,
                )
                for c, v in zip(chosen, vouchers, strict=True)
            ],
            batch_size=2000,
        )
        usernames.append(user.username)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return usernames


def pgbench_tps(url: str) -> float | None:
    if not shutil.which("pgbench"):
        return None
    parsed = urlparse(url)
    env = {**os.environ, "PGPASSWORD": parsed.password or ""}
    args = ["-h", parsed.hostname, "-p", str(parsed.port or 5432), "-U", parsed.username]
    name = parsed.path.lstrip("/")
    subprocess.run(
        ["pgbench", *args, "-i", "-q", "-s", "5", name], env=env, check=True, capture_output=True
    )
    out = subprocess.run(
        ["pgbench", *args, "-N", "-c", "20", "-j", "2", "-T", "15", name],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"tps = ([0-9.]+)", out)
    return float(match.group(1)) if match else None


def main() -> None:
    import psycopg2

    bench_url = scratch_url("_bench_store")
    bench_name = urlparse(bench_url).path.lstrip("/")
    admin = psycopg2.connect(os.environ["DATABASE_URL"])
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{bench_name}"')
        cursor.execute(f'CREATE DATABASE "{bench_name}"')
    env = {
        **os.environ,
        "DATABASE_URL": bench_url,
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-store"),
        "DEBUG": "0",
        "STATIC_MANIFEST": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "DB_CONN_MAX_AGE": "60",
        "DJANGO_SETTINGS_MODULE": "plum.settings",
    }
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    usernames = seed()
    seeded = time.perf_counter() - started
    connection.close()

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "plum.wsgi:application",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(WORKERS),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        browsers = []
        for username in usernames:
            browser = common.Browser(port)
            browser.sign_in(username, PASSWORD)
            browsers.append(browser)
        for browser in browsers[:WORKERS]:  # warm every worker's connection and caches
            for path in PAGES.values():
                browser.request("GET", path)
        timings: dict[str, list[float]] = {name: [] for name in PAGES}
        errors: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(len(browsers))

        def run(browser):
            barrier.wait()
            for _ in range(ROUNDS):
                for name, path in PAGES.items():
                    t0 = time.perf_counter()
                    status, _ = browser.request("GET", path)
                    elapsed = time.perf_counter() - t0
                    with lock:
                        timings[name].append(elapsed)
                        if status != 200:
                            errors.append(f"{name}: {status}")

        load_started = time.perf_counter()
        threads = [threading.Thread(target=run, args=(b,)) for b in browsers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - load_started
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    tps = pgbench_tps(bench_url)
    load = os.getloadavg()
    print(
        f"{REWARDS:,} rewards, {MEMBERS} members x {ORDERS} orders, {MEMBERS} concurrent "
        f"members x {ROUNDS} rounds, gunicorn {WORKERS} sync workers, PostgreSQL "
        f"{connection.pg_version // 10000}, {os.cpu_count()} cores, load average "
        f"{load[0]:.1f}; seeding took {seeded:.0f} s"
    )
    total = sum(len(v) for v in timings.values())
    print(f"throughput {total / wall:.1f} pages/s; pgbench -N (20 clients) {tps or 'n/a'} TPS")
    print(f"{'page':<28}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for name, values in timings.items():
        values.sort()
        q = statistics.quantiles(values, n=100)
        print(
            f"{name:<28}{len(values):>6}{q[49] * 1000:>9.1f}{q[94] * 1000:>9.1f}"
            f"{q[98] * 1000:>9.1f}"
        )
    if errors:
        print(f"{len(errors)} non-200 answers, first: {errors[:5]}")
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{bench_name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
