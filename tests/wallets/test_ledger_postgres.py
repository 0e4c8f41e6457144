"""What the database itself guarantees, on Postgres with real commits and real parallel
connections: wallets never overdraw, unbalanced transactions cannot commit, ledger rows cannot
change, and check_ledger names what raw SQL broke."""

import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from plum.actors import SYSTEM
from tests.factories import MemberFactory
from wallets.errors import InsufficientPointsError
from wallets.models import Account, AccountKind, LedgerTransaction, Posting
from wallets.selectors import ledger_problems
from wallets.services import points_burn, points_earn, points_expire

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CONNECTIONS = 20  # the test server is shared: 20 connections, not 100


def run_in_parallel(functions, connections=CONNECTIONS):
    """Run `functions` on `connections` threads, each with its own database connection, all
    released at once by a barrier; return what each function returned or raised, in order."""
    barrier = threading.Barrier(connections)
    results = [None] * len(functions)

    def runner(indexes):
        try:
            barrier.wait(timeout=30)
            for index in indexes:
                try:
                    results[index] = functions[index]()
                except Exception as exc:  # the outcome under test
                    results[index] = exc
        finally:
            connection.close()

    threads = [
        threading.Thread(target=runner, args=(range(i, len(functions), connections),))
        for i in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def _raw(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


@pytest.fixture
def funded(programme):
    """A member whose wallet holds 500 points."""
    member = MemberFactory(programme=programme, external_id="EMP-001")
    points_earn(member=member, points=500, idempotency_key="seed", actor=SYSTEM)
    return member


def test_hundred_parallel_burns_of_ten_from_five_hundred_exactly_fifty_succeed(funded):
    # when
    results = run_in_parallel(
        [
            lambda i=i: points_burn(
                member=funded, points=10, idempotency_key=f"burn-{i}", actor=SYSTEM
            )
            for i in range(100)
        ]
    )
    # then
    won = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, InsufficientPointsError)]
    assert (len(won), len(refused)) == (50, 50)
    assert {r.extra["balance"] for r in refused} == {0}
    wallet = Account.objects.get(member=funded)
    assert wallet.balance == 0
    redemption = Account.objects.get(kind=AccountKind.REDEMPTION)
    assert redemption.balance == 500
    # never negative: every balance the wallet passed through is recorded on its postings
    afters = sorted(wallet.postings.values_list("balance_after", flat=True))
    assert afters == list(range(0, 500, 10)) + [500]
    assert LedgerTransaction.objects.filter(kind="burn").count() == 50
    assert ledger_problems() == []


def test_parallel_posts_with_one_key_are_one_transaction(programme):
    # given: no wallet yet, so the threads also race to create it and the funding account
    member = MemberFactory(programme=programme)
    # when
    results = run_in_parallel(
        [
            lambda: points_earn(member=member, points=25, idempotency_key="once", actor=SYSTEM)
            for _ in range(CONNECTIONS)
        ]
    )
    # then
    assert all(isinstance(r, tuple) for r in results), results
    assert sorted(created for _, created in results) == [False] * (CONNECTIONS - 1) + [True]
    assert len({txn.pk for txn, _ in results}) == 1
    assert Account.objects.get(member=member).balance == 25
    assert Account.objects.filter(programme=programme).count() == 2
    assert ledger_problems() == []


def test_parallel_earns_and_burns_of_many_members_share_counter_accounts_without_deadlock(
    programme,
):
    # given
    members = [MemberFactory(programme=programme) for _ in range(4)]
    for member in members:
        points_earn(member=member, points=100, idempotency_key=f"seed-{member.pk}", actor=SYSTEM)
    # when
    work = []
    for i in range(80):
        member = members[i % 4]
        if (i // 4) % 2:
            work.append(
                lambda m=member, i=i: points_burn(
                    member=m, points=5, idempotency_key=f"b-{i}", actor=SYSTEM
                )
            )
        else:
            work.append(
                lambda m=member, i=i: points_earn(
                    member=m, points=5, idempotency_key=f"e-{i}", actor=SYSTEM
                )
            )
    results = run_in_parallel(work)
    # then
    assert all(isinstance(r, tuple) for r in results), [
        r for r in results if not isinstance(r, tuple)
    ]
    assert (
        sorted(Account.objects.filter(member__in=members).values_list("balance", flat=True))
        == [100] * 4
    )
    assert Account.objects.get(kind=AccountKind.FUNDING).balance == -600
    assert Account.objects.get(kind=AccountKind.REDEMPTION).balance == 200
    assert ledger_problems() == []


def test_expiry_racing_burns_expires_exactly_what_the_burns_left(funded):
    # given: all 500 points are due (two months on, one month's expiry)
    wallet = Account.objects.get(member=funded)
    as_of = timezone.now() + timedelta(days=62)
    work = [
        lambda i=i: points_burn(member=funded, points=10, idempotency_key=f"b-{i}", actor=SYSTEM)
        for i in range(CONNECTIONS - 1)
    ]
    work.insert(CONNECTIONS // 2, lambda: points_expire(wallet=wallet, months=1, as_of=as_of))
    # when
    results = run_in_parallel(work)
    # then
    expiry = results[CONNECTIONS // 2]
    burned = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, InsufficientPointsError)]
    expired = -expiry.postings.get(account=wallet).amount
    assert len(burned) + len(refused) == CONNECTIONS - 1
    assert len(burned) * 10 + expired == 500
    wallet.refresh_from_db()
    assert wallet.balance == 0
    assert ledger_problems() == []


# --- the deferred balance trigger ------------------------------------------------------------


def _raw_transaction(programme_id, key):
    return _raw(
        "INSERT INTO wallets_ledgertransaction (programme_id, kind, reason, reference, note, "
        "actor_type, actor_label, idempotency_key, created_at) "
        "VALUES (%s, 'adjustment', 'manual_adjustment', '', 'raw', 'system', 'psql', %s, now()) "
        "RETURNING id",
        [programme_id, key],
    )[0][0]


def _raw_posting(txn_id, account_id, amount):
    _raw(
        "INSERT INTO wallets_posting (transaction_id, account_id, amount, balance_after) "
        "VALUES (%s, %s, %s, 0)",
        [txn_id, account_id, amount],
    )


@pytest.mark.parametrize(
    "amounts",
    [[], [7], [7, -6], [7, -7, 1]],
    ids=["no-postings", "one-posting", "unbalanced-pair", "unbalanced-three"],
)
def test_a_transaction_that_does_not_balance_fails_at_commit(funded, amounts):
    # given
    wallet = Account.objects.get(member=funded)
    funding = Account.objects.get(kind=AccountKind.FUNDING)
    accounts = [wallet, funding, wallet]
    before = (LedgerTransaction.objects.count(), Posting.objects.count())
    # when: every statement succeeds; the commit is refused
    with pytest.raises(IntegrityError, match="ledger transaction"), transaction.atomic():
        txn_id = _raw_transaction(funded.programme_id, "raw")
        for account, amount in zip(accounts, amounts, strict=False):
            _raw_posting(txn_id, account.pk, amount)
    # then
    assert (LedgerTransaction.objects.count(), Posting.objects.count()) == before


def test_a_balanced_transaction_through_raw_sql_commits(funded):
    # given
    wallet = Account.objects.get(member=funded)
    funding = Account.objects.get(kind=AccountKind.FUNDING)
    # when
    with transaction.atomic():
        txn_id = _raw_transaction(funded.programme_id, "raw")
        _raw_posting(txn_id, wallet.pk, 7)
        _raw_posting(txn_id, funding.pk, -7)
    # then
    assert Posting.objects.filter(transaction_id=txn_id).count() == 2


def test_a_posting_on_another_programmes_account_fails_at_commit(funded, other_programme):
    # given
    other = MemberFactory(programme=other_programme)
    points_earn(member=other, points=5, idempotency_key="o", actor=SYSTEM)
    foreign = Account.objects.get(member=other)
    funding = Account.objects.get(programme=funded.programme, kind=AccountKind.FUNDING)
    # when / then
    with pytest.raises(IntegrityError, match="another programme"), transaction.atomic():
        txn_id = _raw_transaction(funded.programme_id, "raw")
        _raw_posting(txn_id, foreign.pk, 7)
        _raw_posting(txn_id, funding.pk, -7)


# --- append-only -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE wallets_posting SET amount = amount + 1",
        "UPDATE wallets_posting SET balance_after = 0",
        "DELETE FROM wallets_posting",
        "TRUNCATE wallets_posting CASCADE",
        "UPDATE wallets_ledgertransaction SET reference = 'forged'",
        "DELETE FROM wallets_ledgertransaction",
        "TRUNCATE wallets_ledgertransaction CASCADE",
    ],
)
def test_ledger_rows_cannot_be_changed_or_removed(funded, statement):
    # given
    before = list(Posting.objects.order_by("pk").values())
    # when / then
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        _raw("SET LOCAL plum.allow_truncate = 'off'")
        _raw(statement)
    assert list(Posting.objects.order_by("pk").values()) == before
    assert LedgerTransaction.objects.count() == 1


# --- check_ledger ----------------------------------------------------------------------------


def test_check_ledger_passes_on_a_ledger_built_by_the_services(funded, capsys):
    # given
    points_burn(member=funded, points=120, idempotency_key="b", actor=SYSTEM)
    # when
    call_command("check_ledger")
    # then
    assert capsys.readouterr().out == "Ledger balances: 3 accounts, 2 transactions.\n"


def test_check_ledger_names_a_balance_altered_through_raw_sql(funded):
    # given
    wallet = Account.objects.get(member=funded)
    _raw("UPDATE wallets_account SET balance = balance + 1 WHERE id = %s", [wallet.pk])
    # when / then
    with pytest.raises(CommandError) as failed:
        call_command("check_ledger")
    assert str(failed.value) == (
        f"Ledger does not balance: account {wallet.pk} (member_wallet) has balance 501 but its "
        "postings sum to 500"
    )


def test_check_ledger_exits_non_zero_from_the_shell(funded, services_env):
    # given
    funding = Account.objects.get(kind=AccountKind.FUNDING)
    _raw("UPDATE wallets_account SET balance = 0 WHERE id = %s", [funding.pk])
    # when
    finished = subprocess.run(
        [sys.executable, "manage.py", "check_ledger"],
        env=services_env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    # then
    assert finished.returncode == 1
    assert (
        f"account {funding.pk} (funding) has balance 0 but its postings sum to -500"
        in finished.stderr
    )
