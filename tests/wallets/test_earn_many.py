"""points_earn_many: one balanced transaction crediting many members, written set-based; and
check_ledger's proof that every posting's balance_after is its account's running sum."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from plum.actors import SYSTEM
from plum.errors import InvalidInputError
from plum.models import AuditEvent
from tests.factories import MemberFactory
from wallets.errors import LedgerKeyReusedError
from wallets.models import Account, AccountKind, LedgerTransaction, Posting
from wallets.selectors import ledger_problems
from wallets.services import points_burn, points_earn_many

pytestmark = pytest.mark.django_db


@pytest.fixture
def crew(programme):
    return [MemberFactory(programme=programme, external_id=f"EMP-{i}") for i in range(3)]


def test_a_batch_credits_every_member_in_one_balanced_transaction(programme, crew, earn):
    # given: the first member already holds 10
    earn(crew[0], 10)
    # when
    txn, created = points_earn_many(
        programme=programme,
        awards=[(crew[0], 5), (crew[1], 20), (crew[2], 30)],
        reference="Q4-AWARDS",
        idempotency_key="batch-1",
        actor=SYSTEM,
    )
    # then
    assert created
    legs = {p.account.member_id: (p.amount, p.balance_after) for p in txn.postings.all()}
    funding = Account.objects.get(programme=programme, kind=AccountKind.FUNDING)
    assert legs == {
        crew[0].pk: (5, 15),
        crew[1].pk: (20, 20),
        crew[2].pk: (30, 30),
        None: (-55, -65),
    }
    assert funding.balance == -65
    assert sum(p.amount for p in txn.postings.all()) == 0
    assert AuditEvent.objects.filter(action="points.earn", changes__transaction=[None, txn.pk])
    assert (
        AuditEvent.objects.filter(action="points.earn", member_id__in=[m.pk for m in crew]).count()
        == 4
    )
    assert ledger_problems() == []


def test_a_replay_is_the_same_transaction_and_moves_nothing(programme, crew, ledger_snapshot):
    # given
    awards = [(crew[0], 5), (crew[1], 20)]
    first, _ = points_earn_many(
        programme=programme, awards=awards, idempotency_key="batch-1", actor=SYSTEM
    )
    before = ledger_snapshot()
    # when
    again, created = points_earn_many(
        programme=programme, awards=list(reversed(awards)), idempotency_key="batch-1", actor=SYSTEM
    )
    # then
    assert (again.pk, created) == (first.pk, False)
    assert ledger_snapshot() == before


@pytest.mark.parametrize(
    ("awards", "error"),
    [
        (lambda crew, stranger: [], InvalidInputError),
        (lambda crew, stranger: [(crew[0], 5), (crew[0], 6)], InvalidInputError),
        (lambda crew, stranger: [(crew[0], 5), (stranger, 6)], InvalidInputError),
        (lambda crew, stranger: [(crew[0], 0)], InvalidInputError),
        (lambda crew, stranger: [(crew[0], 6)], LedgerKeyReusedError),
    ],
    ids=["empty", "twice", "other-programme", "zero", "key-reused"],
)
def test_a_refused_batch_changes_nothing(
    programme, other_programme, crew, ledger_snapshot, awards, error
):
    # given
    stranger = MemberFactory(programme=other_programme, external_id="X")
    points_earn_many(
        programme=programme, awards=[(crew[0], 5)], idempotency_key="used", actor=SYSTEM
    )
    before = ledger_snapshot()
    # when
    with pytest.raises(error):
        points_earn_many(
            programme=programme,
            awards=awards(crew, stranger),
            idempotency_key="used" if error is LedgerKeyReusedError else "new",
            actor=SYSTEM,
        )
    # then
    assert ledger_snapshot() == before


def test_check_ledger_names_a_posting_whose_balance_after_is_wrong(programme, crew, earn):
    # given: a balanced transaction inserted beside the services, balances moved to match,
    # but the wallet leg claims a balance after that is not the running sum
    earn(crew[0], 100)
    wallet = Account.objects.get(member=crew[0])
    funding = Account.objects.get(programme=programme, kind=AccountKind.FUNDING)
    txn = LedgerTransaction.objects.create(
        programme=programme,
        kind="earn",
        reason="milestone_award",
        actor_type="system",
        actor_label="raw",
        idempotency_key="raw-1",
    )
    Posting.objects.bulk_create(
        [
            Posting(transaction=txn, account=funding, amount=-10, balance_after=-110),
            Posting(transaction=txn, account=wallet, amount=10, balance_after=999),
        ]
    )
    Account.objects.filter(pk=wallet.pk).update(balance=110)
    Account.objects.filter(pk=funding.pk).update(balance=-110)
    bad = Posting.objects.get(transaction=txn, account=wallet)
    # when / then
    with pytest.raises(CommandError) as failed:
        call_command("check_ledger")
    assert str(failed.value) == (
        f"Ledger does not balance: posting {bad.pk} on account {wallet.pk} says balance after "
        "999 but the account's postings up to it sum to 110"
    )


def test_balance_after_follows_every_posting_of_a_wallet(programme, crew, earn):
    # given
    earn(crew[0], 100)
    points_burn(member=crew[0], points=30, idempotency_key="b", actor=SYSTEM)
    points_earn_many(programme=programme, awards=[(crew[0], 7)], idempotency_key="m", actor=SYSTEM)
    # when
    after = list(
        Posting.objects.filter(account__member=crew[0])
        .order_by("id")
        .values_list("amount", "balance_after")
    )
    # then
    assert after == [(100, 100), (-30, 70), (7, 77)]
    assert ledger_problems() == []
