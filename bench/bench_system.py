"""The whole system under load: one command that builds a scratch database, loads a realistic
data set, starts gunicorn, a Celery worker, Celery beat and a local SMS provider stub against
local Postgres and Redis, runs every scenario from a separate load generator (Debian's wrk, Lua
scripts for POST bodies and unique idempotency keys), and prints one table (also written as
markdown to bench/out/system.md, for docs/performance.md).

    python bench/bench_system.py [--scale 0.01] [--seconds 15] [--keep]

DATABASE_URL must point at Postgres (the scratch database `<name>_system` is created next to it
and dropped at the end); REDIS_URL (or BENCH_REDIS_URL) names the Redis database the worker and
the cache use: its queue is purged before and after. `make bench` runs it at BENCH_SYSTEM_SCALE
(default 1).

Data set at --scale 1 (every count but the programmes is multiplied by the scale): 10
programmes, 1,000 campaigns (one reward each, all listed in the storefront), 100,000 members,
1,000,000 issued vouchers with their 1,000,000 completed orders, 100,000 wallets and 500,000
balanced two-leg ledger transactions = 1,000,000 postings. Loaded set-based (INSERT ... SELECT
from generate_series, every index and constraint in place; the ledger in chunks whose every
`balance_after` is a window sum). The ledger's deferred balance trigger is the one thing the
default loader switches off: see `ledger_load` for that documented bulk path, which checks the
same three rules set-based before it commits and is then verified by check_ledger's
`ledger_problems()`; `--ledger-triggers` keeps the trigger on instead (slow: one check per row).

Every load figure is printed with a raw COPY rate of the same number of rows (an unindexed
scratch table) and the ratio; every HTTP figure with the same-run `pgbench -N` TPS (32 clients,
run before and after the scenarios; the baseline is their mean) and the ratio. Everything this
script starts is stopped on exit, on Ctrl-C and on failure."""

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
import common  # noqa: E402 - bench/common.py, next to this script

PROGRAMMES = 10
FULL = {"campaigns": 1000, "members": 100_000, "vouchers": 1_000_000, "postings": 1_000_000}
UPLOAD_ROWS = 100_000
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "32"))
PAGE_CLIENTS = int(os.environ.get("BENCH_PAGE_CLIENTS", "20"))
BATCH_CLIENTS = int(os.environ.get("BENCH_BATCH_CLIENTS", "2"))
BATCH_SIZE = int(os.environ.get("BENCH_BATCH_SIZE", "1000"))
WORKERS = int(os.environ.get("BENCH_WORKERS", str(2 * (os.cpu_count() or 1) + 1)))
THREADS = int(os.environ.get("BENCH_THREADS", "4"))
CELERY_CONCURRENCY = int(os.environ.get("BENCH_CELERY_CONCURRENCY", "2"))
PGBENCH_SCALE = 10
STORE_MEMBERS = 8
PASSWORD = "bench-system-password-2026"  # noqa: S105 - throwaway accounts, scratch database
EARN, BURN = 100, 150  # a member's every 4th ledger step is a burn: wallets never go below 0
DAYS = 180
LEDGER_CHUNK = 100_000  # transactions per loading transaction

# Pages under load: (label, path). Adding a page is one line; a path may hold one "%07d",
# filled with a random member number (1..members) per request.
STORE_PAGES = [
    ("storefront: dashboard", "/store/"),
    ("storefront: catalog", "/store/rewards/"),
    ("storefront: catalog search", "/store/rewards/?q=coffee"),
    ("storefront: order history", "/store/orders/"),
]
OPS_PAGES = [
    ("ops portal: home", "/ops/"),
]


def sizes(scale: float) -> dict:
    """The counts at `scale`: members a multiple of the programmes, campaigns at least one per
    programme, postings even (two legs a transaction)."""
    campaigns = max(PROGRAMMES, round(FULL["campaigns"] * scale / PROGRAMMES) * PROGRAMMES)
    members = max(PROGRAMMES, round(FULL["members"] * scale / PROGRAMMES) * PROGRAMMES)
    return {
        "programmes": PROGRAMMES,
        "campaigns": campaigns,
        "members": members,
        "vouchers": max(campaigns, round(FULL["vouchers"] * scale)),
        "transactions": max(members, round(FULL["postings"] * scale / 2)),
        "upload_rows": max(100, round(UPLOAD_ROWS * scale)),
    }


# --- loading -----------------------------------------------------------------------------


@dataclass
class Step:
    label: str
    rows: int
    seconds: float


@dataclass
class Loaded:
    size: dict
    steps: list[Step] = field(default_factory=list)
    programme_ids: list[int] = field(default_factory=list)  # by programme number 1..P
    campaign_ids: list[int] = field(default_factory=list)  # by campaign number 1..C


def _timed(loaded: Loaded, label: str, rows: int, fn) -> None:
    started = time.perf_counter()
    fn()
    loaded.steps.append(Step(label, rows, time.perf_counter() - started))


def load(scale: float, *, ledger_triggers: bool = False) -> Loaded:
    """Load the data set at `scale` into the database of Django's default connection. Rows are
    numbered so that a load generator can name them without asking: member n is external id
    SYS-<n, 7 digits> in programme (n - 1) % P + 1; campaign c is in programme (c - 1) % P + 1;
    voucher v is code SYSV<v, 9 digits> of campaign (v - 1) % C + 1, issued to a member of that
    campaign's programme."""
    from django.db import connection, transaction

    from campaigns.models import Reward
    from plum.actors import SYSTEM
    from plum.services.programmes import programme_create

    size = sizes(scale)
    loaded = Loaded(size=size)
    P, C, M, V = size["programmes"], size["campaigns"], size["members"], size["vouchers"]  # noqa: N806
    sql_params = {"P": P, "C": C, "M": M, "V": V, "days": DAYS}

    def run(sql: str, params: dict | None = None) -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql, {**sql_params, **(params or {})})

    def programmes():
        with transaction.atomic():
            for p in range(1, P + 1):
                programme = programme_create(
                    actor=SYSTEM,
                    name=f"System {p:02d}",
                    slug=f"sys-{p:02d}",
                    currency="INR",
                    default_channel="sms",
                )
                loaded.programme_ids.append(programme.pk)
        run("DROP TABLE IF EXISTS sys_programme")
        run("CREATE TEMP TABLE sys_programme (num int PRIMARY KEY, id bigint)")
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO sys_programme VALUES (%s, %s)",
                list(enumerate(loaded.programme_ids, start=1)),
            )

    def catalog():
        kinds = [k for k, _ in Reward.Kind.choices]
        with transaction.atomic():
            run(
                "INSERT INTO campaigns_merchant (name, commission_percent, payout_period, "
                "is_active) SELECT 'System brand ' || lpad(n::text, 2, '0'), 2.50, 'weekly', "
                "true FROM generate_series(1, 20) n"
            )
            run(
                "INSERT INTO campaigns_reward (sku, name, description, kind, country, currency, "
                "denominations, min_value, max_value, points_price, is_active, updated_at, "
                "merchant_id) "
                "SELECT 'SYS-R' || lpad(n::text, 5, '0'), "
                "(ARRAY['Coffee', 'Books', 'Travel', 'Spa', 'Cinema', 'Grocery', 'Fuel', "
                "'Fashion', 'Music'])[n %% 9 + 1] || ' card ' || n, '', "
                "(%(kinds)s::text[])[n %% %(nkinds)s + 1], 'IN', 'INR', '[\"500.00\"]', NULL, "
                "NULL, 1 + n %% 5, true, now(), m.id "
                "FROM generate_series(1, %(C)s) n JOIN (SELECT id, row_number() OVER "
                "(ORDER BY id) AS k FROM campaigns_merchant WHERE name LIKE 'System brand %%') "
                "m ON m.k = n %% 20 + 1",
                {"kinds": kinds, "nkinds": len(kinds)},
            )
            run(
                "INSERT INTO campaigns_campaign (name, value, currency, starts_at, ends_at, "
                "status, max_rewards, budget, per_member_cap, approval_mode, code_source, "
                "code_prefix, code_length, expiry_days, expiry_date, default_channel, "
                "in_storefront, issued_count, issued_value, created_at, updated_at, "
                "programme_id, reward_id) "
                "SELECT 'System campaign ' || lpad(n::text, 4, '0'), 500, 'INR', "
                "now() - interval '200 days', NULL, 'active', NULL, NULL, NULL, 'auto', "
                "'generated', '', 13, 365, NULL, '', true, 0, 0, now(), now(), p.id, r.id "
                "FROM generate_series(1, %(C)s) n "
                "JOIN sys_programme p ON p.num = (n - 1) %% %(P)s + 1 "
                "JOIN campaigns_reward r ON r.sku = 'SYS-R' || lpad(n::text, 5, '0') "
                "ORDER BY n"
            )
        run("DROP TABLE IF EXISTS sys_campaign")
        run(
            "CREATE TEMP TABLE sys_campaign AS SELECT substring(name from 17)::int AS num, id, "
            "programme_id, (substring(name from 17)::int - 1) %% %(P)s + 1 AS pn "
            "FROM campaigns_campaign WHERE name LIKE 'System campaign %%'"
        )
        run("ALTER TABLE sys_campaign ADD PRIMARY KEY (num)")
        with connection.cursor() as cursor:
            cursor.execute("SELECT id FROM sys_campaign ORDER BY num")
            loaded.campaign_ids = [row[0] for row in cursor.fetchall()]

    def members():
        with transaction.atomic():
            run(
                "INSERT INTO plum_member (external_id, name, email, phone, country, "
                "preferred_channel, created_at, updated_at, programme_id) "
                "SELECT 'SYS-' || lpad(n::text, 7, '0'), 'Member ' || n, "
                "'m' || n || '@example.com', '+9198' || lpad(n::text, 8, '0'), 'IN', '', "
                "now(), now(), p.id FROM generate_series(1, %(M)s) n "
                "JOIN sys_programme p ON p.num = (n - 1) %% %(P)s + 1"
            )
        run("DROP TABLE IF EXISTS sys_member")
        run(
            "CREATE TEMP TABLE sys_member AS SELECT substring(external_id from 5)::int AS num, id, "
            "programme_id FROM plum_member WHERE external_id LIKE 'SYS-%%'"
        )
        run("ALTER TABLE sys_member ADD PRIMARY KEY (num)")

    def vouchers():
        with transaction.atomic():
            run(
                "INSERT INTO campaigns_voucher (code, face_value, balance, currency, status, "
                "status_before, expires_at, is_test, issued_at, created_at, updated_at, "
                "campaign_id, member_id, programme_id) "
                "SELECT 'SYSV' || lpad(v::text, 9, '0'), 500, 500, 'INR', 'active', '', "
                "t + interval '365 days', false, t, t, t, c.id, m.id, c.programme_id "
                "FROM (SELECT v, now() - %(days)s * interval '1 day' + "
                "v * (%(days)s * interval '1 day' / %(V)s) AS t "
                "FROM generate_series(1, %(V)s) v) g "
                "JOIN sys_campaign c ON c.num = (v - 1) %% %(C)s + 1 "
                "JOIN sys_member m ON m.num = c.pn + %(P)s * ((v - 1) / %(C)s %% (%(M)s / %(P)s))"
            )
            # The campaigns' counters are what their voucher rows say.
            run(
                "UPDATE campaigns_campaign c SET issued_count = c.issued_count + s.n, "
                "issued_value = c.issued_value + s.total FROM (SELECT campaign_id, count(*) AS n, "
                "sum(face_value) AS total FROM campaigns_voucher WHERE code LIKE 'SYSV%%' "
                "GROUP BY campaign_id) s WHERE c.id = s.campaign_id"
            )

    def orders():
        with transaction.atomic():
            run(
                "INSERT INTO orders_order (booking_id, value, currency, source, status, "
                "approval_state, delivery_status, is_test, reference, created_at, approved_at, "
                "completed_at, cancelled_at, updated_at, campaign_id, member_id, programme_id, "
                "voucher_id, points, points_transaction_id) "
                "SELECT 'SYS-' || substring(code from 5), face_value, currency, 'api', "
                "'completed', 'not_required', 'delivered', false, '', issued_at, NULL, "
                "issued_at, NULL, issued_at, campaign_id, member_id, programme_id, id, NULL, NULL "
                "FROM campaigns_voucher WHERE code LIKE 'SYSV%%'"
            )

    _timed(loaded, "programmes (service, audited)", P, programmes)
    _timed(loaded, "rewards + campaigns (storefront listings by trigger)", 2 * C, catalog)
    _timed(loaded, "members", M, members)
    _timed(loaded, "vouchers (+ campaign counters)", V, vouchers)
    _timed(loaded, "orders", V, orders)
    ledger_load(loaded, run, triggers=ledger_triggers)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return loaded


def ledger_load(loaded: Loaded, run, *, triggers: bool) -> None:
    """Wallets for every member, the programmes' funding and redemption accounts, and
    `transactions` two-leg transactions: member n's k-th transaction (t = (k - 1) * M + n) is
    an earn of EARN points from the programme's funding account, or every 4th one a burn of
    BURN points to its redemption account. Counter leg first (lower account id, as the
    services order legs), then the wallet leg. Each chunk is one INSERT ... SELECT for the
    transactions and one for the postings, whose `balance_after` is the account's balance
    before the chunk plus the window sum of its postings in id order; the accounts' balances
    are then moved by the chunk's sums.

    The bulk path (triggers=False): the deferred constraint trigger that checks each
    transaction at commit (`wallets_posting_balanced`, `wallets_transaction_balanced`: two or
    more postings, summing to zero, all on accounts of the transaction's programme) is
    disabled inside each chunk's transaction only, which instead checks the same three rules
    for the chunk's transactions in one query before it re-enables the trigger and commits; a
    violation aborts the chunk (nothing is committed). The append-only triggers, the foreign
    keys and every CHECK stay on. check_ledger (`ledger_problems`) verifies the result after
    the load (bench_system.main and tests/bench do)."""
    from django.db import connection, transaction

    size = loaded.size
    M, T = size["members"], size["transactions"]  # noqa: N806

    def accounts():
        with transaction.atomic():
            for kind in ("funding", "redemption"):
                run(
                    "INSERT INTO wallets_account (kind, balance, created_at, member_id, "
                    "programme_id) SELECT %(kind)s, 0, now(), NULL, p.id FROM sys_programme p "
                    "WHERE NOT EXISTS (SELECT 1 FROM wallets_account a WHERE "
                    "a.programme_id = p.id AND a.kind = %(kind)s)",
                    {"kind": kind},
                )
            run(
                "INSERT INTO wallets_account (kind, balance, created_at, member_id, "
                "programme_id) SELECT 'member_wallet', 0, now(), m.id, m.programme_id "
                "FROM sys_member m ORDER BY m.num"
            )
        run("DROP TABLE IF EXISTS sys_account")
        run(
            "CREATE TEMP TABLE sys_account AS SELECT m.num, w.id AS wallet, f.id AS funding, "
            "r.id AS redemption FROM sys_member m "
            "JOIN wallets_account w ON w.member_id = m.id "
            "JOIN wallets_account f ON f.programme_id = m.programme_id AND f.kind = 'funding' "
            "JOIN wallets_account r ON r.programme_id = m.programme_id "
            "AND r.kind = 'redemption'"
        )
        run("ALTER TABLE sys_account ADD PRIMARY KEY (num)")

    _timed(loaded, "wallets + system accounts", M + 2 * PROGRAMMES, accounts)

    def postings():
        with connection.cursor() as cursor:
            cursor.execute("SELECT coalesce(max(id), 0) FROM wallets_ledgertransaction")
            tb = cursor.fetchone()[0]
            cursor.execute("SELECT coalesce(max(id), 0) FROM wallets_posting")
            pb = cursor.fetchone()[0]
        for first in range(1, T + 1, LEDGER_CHUNK):
            last = min(T, first + LEDGER_CHUNK - 1)
            params = {"a": first, "b": last, "tb": tb, "pb": pb, "T": T, "burn": BURN, "earn": EARN}
            with transaction.atomic():
                if not triggers:
                    run("ALTER TABLE wallets_posting DISABLE TRIGGER wallets_posting_balanced")
                    run(
                        "ALTER TABLE wallets_ledgertransaction "
                        "DISABLE TRIGGER wallets_transaction_balanced"
                    )
                run(
                    "INSERT INTO wallets_ledgertransaction (id, programme_id, kind, reason, "
                    "reference, note, actor_type, actor_label, idempotency_key, created_at) "
                    "SELECT %(tb)s + t, m.programme_id, "
                    "CASE WHEN ((t - 1) / %(M)s + 1) %% 4 = 0 THEN 'burn' ELSE 'earn' END, "
                    "CASE WHEN ((t - 1) / %(M)s + 1) %% 4 = 0 THEN 'redemption' "
                    "ELSE 'milestone_award' END, 'SYS-L' || t, '', 'system', 'bench loader', "
                    "'sys-' || t, now() - %(days)s * interval '1 day' + "
                    "t * (%(days)s * interval '1 day' / %(T)s) "
                    "FROM generate_series(%(a)s, %(b)s) t "
                    "JOIN sys_member m ON m.num = (t - 1) %% %(M)s + 1",
                    params,
                )
                run(
                    "WITH g AS (SELECT t, (t - 1) %% %(M)s + 1 AS n, "
                    "((t - 1) / %(M)s + 1) %% 4 = 0 AS burn "
                    "FROM generate_series(%(a)s, %(b)s) t), "
                    "legs AS (SELECT %(pb)s + 2 * t - 1 AS id, %(tb)s + t AS txn, "
                    "CASE WHEN burn THEN s.redemption ELSE s.funding END AS account_id, "
                    "CASE WHEN burn THEN %(burn)s ELSE -%(earn)s END AS amount "
                    "FROM g JOIN sys_account s ON s.num = g.n "
                    "UNION ALL SELECT %(pb)s + 2 * t, %(tb)s + t, s.wallet, "
                    "CASE WHEN burn THEN -%(burn)s ELSE %(earn)s END "
                    "FROM g JOIN sys_account s ON s.num = g.n) "
                    "INSERT INTO wallets_posting (id, transaction_id, account_id, amount, "
                    "balance_after) SELECT l.id, l.txn, l.account_id, l.amount, a.balance + "
                    "sum(l.amount) OVER (PARTITION BY l.account_id ORDER BY l.id) "
                    "FROM legs l JOIN wallets_account a ON a.id = l.account_id",
                    params,
                )
                run(
                    "UPDATE wallets_account a SET balance = a.balance + s.total FROM "
                    "(SELECT account_id, sum(amount) AS total FROM wallets_posting "
                    "WHERE id BETWEEN %(pb)s + 2 * %(a)s - 1 AND %(pb)s + 2 * %(b)s "
                    "GROUP BY account_id) s WHERE a.id = s.account_id",
                    params,
                )
                if not triggers:
                    with connection.cursor() as cursor:
                        cursor.execute(
                            "SELECT t.id FROM wallets_ledgertransaction t "
                            "LEFT JOIN wallets_posting p ON p.transaction_id = t.id "
                            "LEFT JOIN wallets_account a ON a.id = p.account_id "
                            "WHERE t.id BETWEEN %(tb)s + %(a)s AND %(tb)s + %(b)s "
                            "GROUP BY t.id, t.programme_id HAVING count(p.id) < 2 "
                            "OR coalesce(sum(p.amount), 0) <> 0 "
                            "OR count(*) FILTER (WHERE a.programme_id <> t.programme_id) > 0 "
                            "LIMIT 5",
                            params,
                        )
                        bad = [row[0] for row in cursor.fetchall()]
                    if bad:
                        raise RuntimeError(f"ledger load: unbalanced transactions {bad}")
                    # The deferred foreign-key checks run now (ALTER TABLE refuses to run
                    # with trigger events pending); then the balance trigger is back on.
                    run("SET CONSTRAINTS ALL IMMEDIATE")
                    run("ALTER TABLE wallets_posting ENABLE TRIGGER wallets_posting_balanced")
                    run(
                        "ALTER TABLE wallets_ledgertransaction "
                        "ENABLE TRIGGER wallets_transaction_balanced"
                    )
            if triggers and first == 1:
                # The trigger's plan is made at its first run: give the planner statistics.
                run("ANALYZE wallets_posting")
                run("ANALYZE wallets_ledgertransaction")
        for table in ("wallets_ledgertransaction", "wallets_posting"):
            run(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                f"(SELECT max(id) FROM {table}))"
            )

    how = "trigger on" if triggers else "bulk path, checked set-based"
    _timed(loaded, f"ledger postings ({how})", 2 * T, postings)


def raw_copy_rate(rows: int) -> float:
    """Rows/s of a raw COPY of `rows` voucher-shaped CSV lines into an unindexed scratch table
    (the bulk-load baseline), on Django's default connection."""
    from django.db import connection, transaction

    lines = "".join(
        f"{i},SYSX{i:09d},500.00,{i % 1000},2026-01-01 00:00:00+00\n" for i in range(1, rows + 1)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE sys_raw_copy (id bigint, code text, amount numeric, member bigint, "
            "created timestamptz)"
        )
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.cursor.copy_expert(
            "COPY sys_raw_copy FROM STDIN WITH (FORMAT csv)", io.StringIO(lines)
        )
    seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE sys_raw_copy")
    return rows / seconds


def ledger_check() -> tuple[float, int]:
    """check_ledger's three queries over the whole ledger: (seconds, problems)."""
    from wallets.selectors import ledger_problems

    started = time.perf_counter()
    problems = ledger_problems()
    for problem in problems[:5]:
        print(f"  ledger problem: {problem}", file=sys.stderr)
    return time.perf_counter() - started, len(problems)


def counters_mismatched() -> int:
    """Campaigns whose issued count or value is not what their voucher rows say (one query)."""
    from django.db import connection

    from campaigns.services.vouchers import COUNTED_STATUSES

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM campaigns_campaign c LEFT JOIN (SELECT campaign_id, "
            "count(*) AS n, sum(face_value) AS total FROM campaigns_voucher WHERE NOT is_test "
            "AND member_id IS NOT NULL AND status = ANY(%s) GROUP BY campaign_id) v "
            "ON v.campaign_id = c.id WHERE c.issued_count <> coalesce(v.n, 0) "
            "OR c.issued_value <> coalesce(v.total, 0)",
            [list(COUNTED_STATUSES)],
        )
        return cursor.fetchone()[0]


# --- set-up for the scenarios --------------------------------------------------------------


@dataclass
class Actors:
    keys: list[str]  # one API key per programme, by programme number
    admin_cookie: str = ""
    member_cookies: list[str] = field(default_factory=list)
    agent_cookie: str = ""


def actors_create(loaded: Loaded) -> tuple[Actors, list[tuple[str, str]]]:
    """API keys (all scopes, one per programme), two workflow rules per programme (purchase
    >= 100: 10 points; purchase >= 1500: a reward from the programme's first campaign), a
    platform admin, STORE_MEMBERS members with storefront accounts and a support agent of
    programme 1. Returns the keys and the (username, sign-in path) pairs to sign in."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from orders.models import WorkflowRule
    from orders.services.rules import rule_save
    from plum import roles
    from plum.actors import SYSTEM
    from plum.models import Member, Programme
    from plum.services.api_clients import api_client_create
    from plum.services.programmes import member_link_user, role_grant

    keys = []
    for number, programme_id in enumerate(loaded.programme_ids, start=1):
        programme = Programme.objects.get(pk=programme_id)
        _, key = api_client_create(
            name=f"System HRIS {number:02d}", programmes=[programme], actor=SYSTEM
        )
        keys.append(key)
        rule_save(
            rule=WorkflowRule(
                programme=programme,
                name="Purchase points",
                event_type="purchase",
                action="points",
                points=10,
                priority=10,
            ),
            conditions=[
                {"field": "amount", "operator": ">=", "value_type": "number", "value": "100"}
            ],
            actor=SYSTEM,
        )
        rule_save(
            rule=WorkflowRule(
                programme=programme,
                name="Big purchase reward",
                event_type="purchase",
                action="reward",
                campaign_id=loaded.campaign_ids[number - 1],
                priority=20,
            ),
            conditions=[
                {"field": "amount", "operator": ">=", "value_type": "number", "value": "1500"}
            ],
            actor=SYSTEM,
        )
    users = get_user_model().objects
    hashed = make_password(PASSWORD)  # one hash for every account: creating them stays cheap
    users.create_superuser("sysadmin", "sysadmin@example.com", None)
    agent = users.create_user("sysagent", "sysagent@example.com", None)
    role_grant(
        user=agent,
        role=roles.SUPPORT_AGENT,
        programme=Programme.objects.get(pk=loaded.programme_ids[0]),
        actor=SYSTEM,
    )
    sign_ins = [("sysadmin", "/admin/login/"), ("sysagent", "/ops/sign-in/")]
    for n in range(1, STORE_MEMBERS + 1):
        user = users.create_user(f"sysmember{n}", f"sysmember{n}@example.com", None)
        member = Member.objects.get(external_id=f"SYS-{n:07d}")
        member_link_user(member=member, user=user, actor=SYSTEM)
        sign_ins.append((user.username, "/store/sign-in/"))
    users.filter(username__in=[name for name, _ in sign_ins]).update(password=hashed)
    return Actors(keys=keys), sign_ins


def sign_in_all(actors: Actors, sign_ins, port: int) -> None:
    for username, path in sign_ins:
        browser = common.Browser(port)
        browser.sign_in(username, PASSWORD, path=path)
        cookie = browser.cookie_header()
        if username == "sysadmin":
            actors.admin_cookie = cookie
        elif username == "sysagent":
            actors.agent_cookie = cookie
        else:
            actors.member_cookies.append(cookie)


# --- Lua scripts ---------------------------------------------------------------------------

LUA_LISTS = """
local function split(name, sep)
  local out = {}
  for item in string.gmatch(os.getenv(name) or "", "[^" .. sep .. "]+") do
    table.insert(out, item)
  end
  return out
end
local keys = split("BENCH_KEYS", ",")
local P = #keys
local C = tonumber(os.getenv("BENCH_C") or "1")
local M = tonumber(os.getenv("BENCH_M") or "1")
local V = tonumber(os.getenv("BENCH_V") or "1")
local function auth(p) return "Bearer " .. keys[p] end
local function voucher_programme(v) return ((v - 1) % C) % P + 1 end
local function json_headers(p, id)
  return {["Authorization"] = auth(p), ["Content-Type"] = "application/json",
          ["Idempotency-Key"] = id}
end
"""

LUA_SINGLE = (
    common.LUA_COMMON
    + LUA_LISTS
    + """
local campaigns = split("BENCH_CAMPAIGNS", ",")
request = function()
  local id = next_id()
  local i = math.random(#campaigns)
  local body = '{"campaign": ' .. campaigns[i] .. ', "recipient": {"external_id": "' .. id ..
    '", "email": "' .. id .. '@example.com", "phone": "+9197' ..
    string.format("%08d", math.random(0, 99999999)) .. '"}, "reference": "' .. id .. '"}'
  return wrk.format("POST", "/api/v1/issuances", json_headers((i - 1) % P + 1, id), body)
end
"""
)

LUA_BATCH = (
    common.LUA_COMMON
    + LUA_LISTS
    + """
local campaigns = split("BENCH_CAMPAIGNS", ",")
local size = tonumber(os.getenv("BENCH_BATCH_SIZE"))
request = function()
  local id = next_id()
  local i = math.random(#campaigns)
  local items = {}
  for k = 1, size do
    items[k] = '{"campaign": ' .. campaigns[i] .. ', "recipient": {"external_id": "' .. id ..
      '-' .. k .. '", "phone": "+9196' .. string.format("%08d", k) .. '"}, "reference": "' ..
      id .. '-' .. k .. '"}'
  end
  local body = '{"items": [' .. table.concat(items, ", ") .. ']}'
  return wrk.format("POST", "/api/v1/issuances/batch", json_headers((i - 1) % P + 1, id), body)
end
"""
)

LUA_EVENT = (
    common.LUA_COMMON
    + LUA_LISTS
    + """
local occurred = os.getenv("BENCH_OCCURRED_AT")
request = function()
  local id = next_id()
  local n = math.random(M)
  local body = '{"event_id": "' .. id .. '", "type": "purchase", "occurred_at": "' ..
    occurred .. '", "member": {"external_id": "' .. string.format("SYS-%07d", n) ..
    '"}, "data": {"amount": ' .. math.random(1, 2000) .. '}}'
  return wrk.format("POST", "/api/v1/events", json_headers((n - 1) % P + 1, id), body)
end
"""
)

LUA_LOOKUP = (
    common.LUA_COMMON
    + LUA_LISTS
    + """
request = function()
  local v = math.random(V)
  return wrk.format("GET", string.format("/api/v1/vouchers/SYSV%09d", v),
    {["Authorization"] = auth(voucher_programme(v))})
end
"""
)

LUA_REDEEM = (
    common.LUA_COMMON
    + LUA_LISTS
    + """
request = function()
  local id = next_id()
  local v = math.random(V)
  local body = '{"amount": "1.00", "reference": "' .. id .. '"}'
  return wrk.format("POST", string.format("/api/v1/vouchers/SYSV%09d/redeem", v),
    json_headers(voucher_programme(v), id), body)
end
"""
)

LUA_WALLET = (
    common.LUA_COMMON
    + LUA_LISTS
    + """
request = function()
  local n = math.random(M)
  return wrk.format("GET", string.format("/api/v1/members/SYS-%07d/wallet", n),
    {["Authorization"] = auth((n - 1) % P + 1)})
end
"""
)

# Pages: a session cookie per request in turn (BENCH_COOKIES, "|"-separated), a random path of
# BENCH_PATHS ("|"-separated); "%07d" in a path becomes a random member number.
LUA_PAGES = (
    common.LUA_COMMON
    + LUA_LISTS
    + """
local cookies = split("BENCH_COOKIES", "|")
local paths = split("BENCH_PATHS", "|")
request = function()
  local n = next_id()
  local path = paths[math.random(#paths)]
  if string.find(path, "%%07d") then path = string.format(path, math.random(M)) end
  return wrk.format("GET", path, {["Cookie"] = cookies[counter % #cookies + 1]})
end
"""
)


# --- the run -------------------------------------------------------------------------------


@dataclass
class Row:
    label: str
    rate: float
    unit: str
    p50: float | None = None
    p99: float | None = None
    errors: int = 0
    note: str = ""


class LoadSampler(threading.Thread):
    """The 1-minute load average every `every` seconds until the process exits."""

    def __init__(self, every: float = 5):
        super().__init__(daemon=True)
        self.every = every
        self.samples: list[float] = []

    def run(self):
        while True:
            self.samples.append(_loadavg())
            time.sleep(self.every)


class Processes:
    """Everything this script starts, stopped in reverse order by `stop_all` (idempotent)."""

    def __init__(self):
        self.running: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], env: dict, log: Path | None = None):
        """Start `args` in its own process group; its output to `log` (or inherited)."""
        out = open(log, "w") if log else None  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            args, env=env, cwd=ROOT, start_new_session=True, stdout=out, stderr=out
        )
        if out:
            out.close()  # the child holds its own descriptor
        self.running.append((name, process))
        return process

    def add(self, name: str, process: subprocess.Popen) -> None:
        self.running.append((name, process))

    def stop_all(self) -> None:
        while self.running:
            _, process = self.running.pop()
            common.stop(process)


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)


def _loadavg() -> float:
    return os.getloadavg()[0]


def _outbox_pending() -> int:
    from plum.models import OutboxMessage

    return OutboxMessage.objects.filter(status="pending").count()


def _purge_queue(redis_url: str) -> None:
    """The Celery queue and Plum's cache keys (KEY_PREFIX "plum") in that Redis database: a
    run starts and ends with neither (ids repeat from one scratch database to the next)."""
    import redis

    from plum.celery import app

    app.conf.broker_url = redis_url
    with app.connection_for_write() as conn:
        app.control.purge(connection=conn)
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("plum:*", count=1000):
        client.delete(key)


def _multipart(fields: dict, file_name: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        disposition = f'Content-Disposition: form-data; name="{name}"'
        parts.append(f"--{boundary}\r\n{disposition}\r\n\r\n{value}\r\n".encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
        "Content-Type: text/csv\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _api(
    base: str,
    key: str,
    method: str,
    path: str,
    body: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, dict]:
    request = urllib.request.Request(  # noqa: S310 - a local server this script started
        base + path,
        data=body,
        method=method,
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": content_type,
            "Idempotency-Key": uuid.uuid4().hex,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=600) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _upload_file(prefix: str, rows: int) -> bytes:
    lines = ["external_id,name,email,phone,country,channel,value,reference"]
    for n in range(1, rows + 1):
        email = f"{prefix.lower()}{n}@example.com"
        lines.append(f"{prefix}-{n:07d},Person {n},{email},+9195{n:08d},IN,,,{prefix}-ref-{n}")
    return ("\r\n".join(lines) + "\r\n").encode()


def upload_scenario(
    base: str, key: str, campaign_id: int, rows: int, dispatch_rows: int, timeout: float
) -> list[Row]:
    """A `rows`-row file through POST /api/v1/uploads (decode, parse, check every row, store
    the rows) against a raw COPY of the same file; then a `dispatch_rows`-row file uploaded,
    confirmed and dispatched by the Celery worker end to end: every row one order, every order
    one SMS delivered to the provider stub."""
    from django.db import connection, transaction

    from orders.models import Delivery, Upload, UploadRow

    raw = _upload_file("UPV", rows)
    body, content_type = _multipart({"campaign": campaign_id}, "system.csv", raw)
    started = time.perf_counter()
    status, answer = _api(base, key, "POST", "/api/v1/uploads", body, content_type)
    validate = time.perf_counter() - started
    assert status == 201, (status, str(answer)[:500])
    assert answer["counts"]["valid"] == rows, str(answer)[:500]

    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE sys_upload_copy (external_id text, name text, email text, "
            "phone text, country text, channel text, value numeric, reference text)"
        )
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.cursor.copy_expert(
            "COPY sys_upload_copy FROM STDIN WITH (FORMAT csv, HEADER true)", io.BytesIO(raw)
        )
    raw_copy = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE sys_upload_copy")

    small = _upload_file("UPD", dispatch_rows)
    body, content_type = _multipart({"campaign": campaign_id}, "dispatch.csv", small)
    status, answer = _api(base, key, "POST", "/api/v1/uploads", body, content_type)
    assert status == 201, (status, str(answer)[:500])
    upload_id = answer["id"]
    started = time.perf_counter()
    status, answer = _api(base, key, "POST", f"/api/v1/uploads/{upload_id}/confirm", b"{}")
    assert status == 202, (status, str(answer)[:500])
    dispatched = delivered = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        upload = Upload.objects.get(pk=upload_id)
        if dispatched is None and upload.status in (
            Upload.Status.COMPLETED,
            Upload.Status.PARTIALLY_FAILED,
        ):
            dispatched = time.perf_counter() - started
        if dispatched is not None:
            done = Delivery.objects.filter(
                order__upload_row__upload_id=upload_id, status="delivered"
            ).count()
            if done >= dispatch_rows:
                delivered = time.perf_counter() - started
                break
        time.sleep(0.5)
    issued = UploadRow.objects.filter(upload_id=upload_id, order__isnull=False).count()
    deliveries = Delivery.objects.filter(order__upload_row__upload_id=upload_id)
    sent = deliveries.filter(status="delivered").count()
    note_e2e = f"{issued:,} orders, {sent:,} delivered of {deliveries.count():,} deliveries"
    rows_out = [
        Row(
            f"upload {rows:,} rows: validate + store (one POST)",
            rows / validate,
            "rows/s",
            note=(
                f"{validate:.1f} s; raw COPY of the same file {raw_copy:.2f} s "
                f"({rows / raw_copy:,.0f} rows/s): {validate / raw_copy:.1f} x the COPY's time"
            ),
        ),
    ]
    if dispatched is None or delivered is None:
        rows_out.append(
            Row(
                f"upload {dispatch_rows:,} rows: confirm -> all delivered",
                0.0,
                "rows/s",
                errors=dispatch_rows - issued,
                note=f"NOT finished within {timeout:.0f} s: {note_e2e}",
            )
        )
    else:
        rows_out.append(
            Row(
                f"upload {dispatch_rows:,} rows: confirm -> all issued",
                dispatch_rows / dispatched,
                "orders/s",
                note=f"{dispatched:.1f} s, Celery worker x{CELERY_CONCURRENCY}",
            )
        )
        rows_out.append(
            Row(
                f"upload {dispatch_rows:,} rows: confirm -> all delivered",
                dispatch_rows / delivered,
                "rows/s",
                errors=dispatch_rows - issued,
                note=f"{delivered:.1f} s; {note_e2e}",
            )
        )
    return rows_out


def markdown(
    header: list[str], loads: list[tuple], rows: list[Row], baseline: float, checks: list[str]
) -> str:
    out = [*header, ""]
    out.append("| bulk load | rows | seconds | rows/s | ratio to raw COPY (time) |")
    out.append("| --- | ---: | ---: | ---: | ---: |")
    for label, count, seconds, rate, ratio in loads:
        out.append(f"| {label} | {count:,} | {seconds:.1f} | {rate:,.0f} | {ratio} |")
    out.append("")
    out.append("| scenario | per second | p50 ms | p99 ms | errors | ratio to pgbench -N | note |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for row in rows:
        p50 = f"{row.p50:,.0f}" if row.p50 is not None else ""
        p99 = f"{row.p99:,.0f}" if row.p99 is not None else ""
        ratio = f"{row.rate / baseline:.3f}"
        cells = [row.label, f"{row.rate:,.1f} {row.unit}", p50, p99, str(row.errors), ratio]
        out.append(f"| {' | '.join([*cells, row.note])} |")
    out.append("")
    out.extend(f"- {line}" for line in checks)
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale", type=float, default=float(os.environ.get("BENCH_SYSTEM_SCALE", "1"))
    )
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", "15")))
    parser.add_argument(
        "--dispatch-rows",
        type=int,
        default=None,
        help="rows of the end-to-end upload (default 2,000 x scale, at least 50)",
    )
    parser.add_argument(
        "--ledger-triggers",
        action="store_true",
        help="load the ledger with its deferred balance trigger on (slow)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--out", default=str(HERE / "out" / "system.md"))
    args = parser.parse_args(argv)
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("bench_system runs on Postgres: set DATABASE_URL=postgres://...", file=sys.stderr)
        return 2
    redis_url = os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL", "")
    if not redis_url:
        print("bench_system needs Redis (the Celery broker): set REDIS_URL", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_exit)

    size = sizes(args.scale)
    dispatch_rows = args.dispatch_rows or max(50, round(2000 * args.scale))
    server_url = os.environ["DATABASE_URL"]
    bench_url = common.scratch_url("system")
    seconds = args.seconds
    processes = Processes()
    tmp = tempfile.TemporaryDirectory(prefix="bench-system-")
    sampler = LoadSampler()
    sampler.start()
    started_at = datetime.now(UTC)
    common.database_recreate(bench_url, server_url)
    env = common.server_env(
        bench_url,
        REDIS_URL=redis_url,
        SESSION_COOKIE_SECURE="0",
        CSRF_COOKIE_SECURE="0",
        PLUM_SMS_BACKEND="orders.delivery.http.HttpProviderBackend",
        PLUM_SMS_NAME="stub",
        PLUM_SMS_SENDER="PLUM",
    )
    try:
        os.environ.update(env)
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        print(f"scale {args.scale}: {size}", flush=True)
        call_command("migrate", verbosity=0)
        _purge_queue(redis_url)
        common.pgbench(bench_url, "-i", "-q", "-s", str(PGBENCH_SCALE))
        copy_rate = raw_copy_rate(size["vouchers"])
        loaded = load(args.scale, ledger_triggers=args.ledger_triggers)
        for step in loaded.steps:
            print(f"  loaded {step.label}: {step.rows:,} rows in {step.seconds:.1f} s", flush=True)
        check_seconds, problems = ledger_check()
        print(f"  check_ledger: {problems} problems in {check_seconds:.1f} s", flush=True)
        assert problems == 0, "the loaded ledger does not check"
        actors, sign_ins = actors_create(loaded)
        connection.close()

        # The services, each in its own process group.
        provider_port = common.free_port()
        processes.start(
            "provider",
            [sys.executable, "-c", f"import common; common.provider_serve({provider_port})"],
            {**env, "PYTHONPATH": str(HERE)},
        )
        env["PLUM_SMS_BASE_URL"] = f"http://127.0.0.1:{provider_port}/v1"
        port = common.free_port()
        gunicorn = common.start_gunicorn(env, port, workers=WORKERS, threads=THREADS, timeout=600)
        processes.add("gunicorn", gunicorn)
        celery = [sys.executable, "-m", "celery", "-A", "plum"]
        logs = Path(args.out).parent
        logs.mkdir(parents=True, exist_ok=True)
        processes.start(
            "worker",
            [
                *celery,
                "worker",
                f"--concurrency={CELERY_CONCURRENCY}",
                "--loglevel=WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env,
            log=logs / "system-worker.log",
        )
        processes.start(
            "beat",
            [*celery, "beat", "--loglevel=WARNING", "-s", os.path.join(tmp.name, "beat-schedule")],
            env,
            log=logs / "system-beat.log",
        )
        common.wait_http(f"http://127.0.0.1:{provider_port}/", process=processes.running[0][1])
        base = f"http://127.0.0.1:{port}"
        sign_in_all(actors, sign_ins, port)

        lists = {
            "BENCH_KEYS": ",".join(actors.keys),
            "BENCH_C": str(size["campaigns"]),
            "BENCH_M": str(size["members"]),
            "BENCH_V": str(size["vouchers"]),
            "BENCH_CAMPAIGNS": ",".join(map(str, loaded.campaign_ids)),
        }
        from django.urls import reverse

        report = reverse("admin:wallets_report")
        today = datetime.now(UTC).date()
        day_paths = "|".join(
            f"{report}?date_from={d}&date_to={d}&kind=burn"
            for d in (today - timedelta(days=k) for k in range(1, DAYS))
        )
        rows: list[Row] = []

        def scenario(
            label, script, connections, extra=None, run_seconds=seconds, per=1, unit="req/s"
        ):
            before = time.perf_counter()
            result = common.wrk(script, base, connections, {**lists, **(extra or {})}, run_seconds)
            errors = (
                result["errors_status"]
                + result["errors_connect"]
                + result["errors_timeout"]
                + result["errors_read"]
            )
            rate = result["requests"] * per / result["seconds"]
            row = Row(
                label,
                rate,
                unit,
                result["p50_ms"],
                result["p99_ms"],
                errors,
                f"{result['requests']:,} requests, {connections} connections; "
                f"outbox pending after: {_outbox_pending():,}",
            )
            rows.append(row)
            took = time.perf_counter() - before
            print(
                f"  {label}: {rate:,.1f} {unit}, p50 {row.p50:,.0f} ms, p99 {row.p99:,.0f} ms, "
                f"{errors} errors ({took:.0f} s)",
                flush=True,
            )
            return row

        tps_before = common.pgbench_tps(bench_url, clients=CLIENTS, seconds=seconds)
        print(f"  pgbench -N before: {tps_before:,.0f} TPS", flush=True)
        scenario(
            "voucher status lookup (GET /api/v1/vouchers/{code})",
            LUA_LOOKUP,
            CLIENTS,
            {"BENCH_TAG": "l"},
        )
        scenario(
            "member wallet (GET /api/v1/members/{id}/wallet)",
            LUA_WALLET,
            CLIENTS,
            {"BENCH_TAG": "w"},
        )
        scenario(
            "wallet report page, by member",
            LUA_PAGES,
            PAGE_CLIENTS,
            {"BENCH_COOKIES": actors.admin_cookie, "BENCH_PATHS": f"{report}?member=SYS-%07d"},
        )
        scenario(
            "wallet report page, one day of burns",
            LUA_PAGES,
            PAGE_CLIENTS,
            {"BENCH_COOKIES": actors.admin_cookie, "BENCH_PATHS": day_paths},
        )
        for label, path in STORE_PAGES:
            scenario(
                label,
                LUA_PAGES,
                PAGE_CLIENTS,
                {"BENCH_COOKIES": "|".join(actors.member_cookies), "BENCH_PATHS": path},
            )
        for label, path in OPS_PAGES:
            scenario(
                label,
                LUA_PAGES,
                PAGE_CLIENTS,
                {"BENCH_COOKIES": actors.agent_cookie, "BENCH_PATHS": path},
            )
        upload_rows = upload_scenario(
            base,
            actors.keys[0],
            loaded.campaign_ids[0],
            size["upload_rows"],
            dispatch_rows,
            timeout=max(120, dispatch_rows / 5),
        )
        rows.extend(upload_rows)
        for row in upload_rows:
            print(f"  {row.label}: {row.rate:,.1f} {row.unit} ({row.note})", flush=True)
        scenario(f"single issuance, {CLIENTS} clients", LUA_SINGLE, CLIENTS, {"BENCH_TAG": "s"})
        scenario(
            "event ingestion, 2 rules",
            LUA_EVENT,
            CLIENTS,
            {
                "BENCH_TAG": "e",
                "BENCH_OCCURRED_AT": (datetime.now(UTC) - timedelta(hours=1)).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
            },
        )
        scenario(
            "voucher redemption (POST /api/v1/vouchers/{code}/redeem)",
            LUA_REDEEM,
            CLIENTS,
            {"BENCH_TAG": "r"},
        )
        scenario(
            f"batch issuance, {BATCH_SIZE:,} a request, {BATCH_CLIENTS} clients",
            LUA_BATCH,
            BATCH_CLIENTS,
            {"BENCH_TAG": "b", "BENCH_BATCH_SIZE": str(BATCH_SIZE)},
            run_seconds=2 * seconds,
            per=BATCH_SIZE,
            unit="rewards/s",
        )
        tps_after = common.pgbench_tps(bench_url, clients=CLIENTS, seconds=seconds)
        print(f"  pgbench -N after: {tps_after:,.0f} TPS", flush=True)
        processes.stop_all()

        # What the runs claim is what the database holds.
        pending = _outbox_pending()
        check_after, problems_after = ledger_check()
        mismatched = counters_mismatched()
        baseline = (tps_before + tps_after) / 2
        checks = [
            f"check_ledger after the scenarios: {problems_after} problems ({check_after:.1f} s)",
            f"campaigns whose counters differ from their voucher rows: {mismatched}",
            f"outbox messages still pending when the services stopped: {pending:,} "
            "(the worker's backlog, not waited for)",
        ]
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        machine = (
            f"{os.cpu_count()} cores, {memory:.0f} GB, PostgreSQL {connection.pg_version // 10000}"
        )
        sampled = sampler.samples or [_loadavg()]
        header = [
            f"bench/bench_system.py --scale {args.scale}: {started_at:%Y-%m-%d %H:%M} to "
            f"{datetime.now(UTC):%H:%M} UTC",
            "",
            f"- machine: {machine}; load average (1 min) every 5 s during the run: "
            f"{min(sampled):.1f} to {max(sampled):.1f}, mean {sum(sampled) / len(sampled):.1f}",
            f"- data: {PROGRAMMES} programmes, {size['campaigns']:,} campaigns, "
            f"{size['members']:,} members, {size['vouchers']:,} vouchers and as many orders, "
            f"{2 * size['transactions']:,} ledger postings",
            f"- services: gunicorn {WORKERS} gthread workers x {THREADS} threads, Celery worker "
            f"(prefork x{CELERY_CONCURRENCY}) and beat, an SMS provider stub; wrk {seconds} s "
            f"a scenario ({2 * seconds} s for batches)",
            f"- baselines: pgbench -N, {CLIENTS} clients, {seconds} s: {tps_before:,.0f} TPS "
            f"before, {tps_after:,.0f} after, mean {baseline:,.0f}; raw COPY "
            f"{copy_rate:,.0f} rows/s",
        ]
        loads = [
            (
                s.label,
                s.rows,
                s.seconds,
                s.rows / s.seconds,
                f"{s.seconds / (s.rows / copy_rate):.1f}",
            )
            for s in loaded.steps
        ]
        loads.append(
            (
                "check_ledger over the loaded ledger",
                2 * size["transactions"],
                check_seconds,
                2 * size["transactions"] / check_seconds,
                "-",
            )
        )
        text = markdown(header, loads, rows, baseline, checks)
        print()
        print(text)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"written to {out}")
        failed = problems_after or mismatched or any(row.errors for row in rows)
        return 1 if failed else 0
    finally:
        processes.stop_all()
        try:
            _purge_queue(redis_url)
        except Exception as exc:  # noqa: BLE001 - cleanup goes on
            print(f"purging the queue failed: {exc}", file=sys.stderr)
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: BLE001,S110 - Django may not be set up yet
            pass
        if not args.keep:
            common.database_drop(bench_url, server_url)
        tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
