"""points_earn_many under real concurrency on Postgres: batches, single earns and burns on the
same wallets in parallel neither deadlock nor lose a point, and one key is one batch."""

import pytest

from plum.actors import SYSTEM
from tests.factories import MemberFactory
from tests.wallets.test_ledger_postgres import run_in_parallel
from wallets.models import Account, LedgerTransaction
from wallets.selectors import ledger_problems
from wallets.services import points_burn, points_earn, points_earn_many

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def crew(programme):
    members = [MemberFactory(programme=programme, external_id=f"EMP-{i}") for i in range(6)]
    for member in members:
        points_earn(member=member, points=100, idempotency_key=f"seed-{member.pk}", actor=SYSTEM)
    return members


def test_parallel_batches_earns_and_burns_on_shared_wallets_keep_every_point(programme, crew):
    # given: batches over overlapping members in opposite orders, singles and burns
    forward, backward = crew, list(reversed(crew))
    work = []
    for i in range(6):
        chosen = forward if i % 2 else backward
        work.append(
            lambda i=i, chosen=chosen: points_earn_many(
                programme=programme,
                awards=[(member, 10) for member in chosen],
                idempotency_key=f"batch-{i}",
                actor=SYSTEM,
            )
        )
    for i, member in enumerate(crew * 2):
        work.append(
            lambda i=i, member=member: points_earn(
                member=member, points=5, idempotency_key=f"single-{i}", actor=SYSTEM
            )
        )
        work.append(
            lambda i=i, member=member: points_burn(
                member=member, points=7, idempotency_key=f"burn-{i}", actor=SYSTEM
            )
        )
    # when
    results = run_in_parallel(work, connections=10)
    # then: nothing failed, and each wallet holds 100 + 6*10 + 2*5 - 2*7
    assert [r for r in results if isinstance(r, Exception)] == []
    balances = set(Account.objects.filter(member__in=crew).values_list("balance", flat=True))
    assert balances == {100 + 60 + 10 - 14}
    assert ledger_problems() == []


def test_the_same_batch_key_in_parallel_is_one_transaction(programme, crew):
    # when
    results = run_in_parallel(
        [
            lambda: points_earn_many(
                programme=programme,
                awards=[(member, 10) for member in crew],
                idempotency_key="once",
                actor=SYSTEM,
            )
            for _ in range(8)
        ],
        connections=8,
    )
    # then
    assert [r for r in results if isinstance(r, Exception)] == []
    assert sorted(created for _, created in results) == [False] * 7 + [True]
    assert len({txn.pk for txn, _ in results}) == 1
    assert LedgerTransaction.objects.filter(idempotency_key="once").count() == 1
    assert set(Account.objects.filter(member__in=crew).values_list("balance", flat=True)) == {110}
    assert ledger_problems() == []


def test_parallel_batches_creating_the_same_wallets_in_opposite_orders(programme):
    # given: members without wallets yet
    fresh = [MemberFactory(programme=programme, external_id=f"NEW-{i}") for i in range(8)]
    # when
    results = run_in_parallel(
        [
            lambda i=i: points_earn_many(
                programme=programme,
                awards=[(member, 3) for member in (fresh if i % 2 else fresh[::-1])],
                idempotency_key=f"fresh-{i}",
                actor=SYSTEM,
            )
            for i in range(8)
        ],
        connections=8,
    )
    # then
    assert [r for r in results if isinstance(r, Exception)] == []
    assert set(Account.objects.filter(member__in=fresh).values_list("balance", flat=True)) == {24}
    assert ledger_problems() == []
