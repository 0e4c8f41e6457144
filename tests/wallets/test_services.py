"""Earn, burn, adjust and reverse: exact balances, postings, audit events and refusals that
change nothing."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction

from plum.actors import SYSTEM
from plum.errors import InvalidInputError
from plum.models import AuditEvent
from tests.factories import MemberFactory, UserFactory
from tests.wallets.conftest import next_key
from wallets.errors import (
    InsufficientPointsError,
    LedgerKeyReusedError,
    TransactionAlreadyReversedError,
    TransactionNotReversibleError,
)
from wallets.models import Account, AccountKind, LedgerTransaction, Posting
from wallets.selectors import ledger_problems
from wallets.services import (
    points_adjust,
    points_burn,
    points_earn,
    transaction_reverse,
    wallet_get_or_create,
)

pytestmark = pytest.mark.django_db


def _name(account):
    return account.member.external_id if account.member_id else account.kind


def balances(programme):
    """{member external id or counter-account kind: balance} of the programme's accounts."""
    accounts = Account.objects.filter(programme=programme).select_related("member")
    return {_name(account): account.balance for account in accounts}


def legs(txn):
    return sorted(
        (_name(p.account), p.amount) for p in txn.postings.select_related("account__member")
    )


# --- wallets ---------------------------------------------------------------------------------


def test_wallet_get_or_create_makes_one_wallet_and_audits_it_once(member):
    # when
    first = wallet_get_or_create(member=member, actor=SYSTEM)
    second = wallet_get_or_create(member=member, actor=SYSTEM)
    # then
    assert first.pk == second.pk
    assert (first.kind, first.member_id, first.programme_id, first.balance) == (
        AccountKind.MEMBER_WALLET,
        member.pk,
        member.programme_id,
        0,
    )
    assert AuditEvent.objects.filter(action="wallet.create", object_id=str(first.pk)).count() == 1


# --- earn ------------------------------------------------------------------------------------


def test_earn_credits_the_wallet_from_funding(member, programme):
    # when
    txn, created = points_earn(
        member=member,
        points=250,
        reference="HR-42",
        idempotency_key="award-42",
        actor=SYSTEM,
    )
    # then
    assert created is True
    assert (txn.kind, txn.reason, txn.reference, txn.actor_label) == (
        "earn",
        "milestone_award",
        "HR-42",
        "system",
    )
    assert legs(txn) == [("EMP-001", 250), ("funding", -250)]
    assert balances(programme) == {"EMP-001": 250, "funding": -250}
    wallet_posting = txn.postings.get(account__kind=AccountKind.MEMBER_WALLET)
    assert wallet_posting.balance_after == 250
    assert ledger_problems() == []


def test_earn_is_audited_against_the_member_with_the_transaction(member):
    # given
    user = UserFactory(username="hr-admin")
    # when
    txn, _ = points_earn(member=member, points=100, reference="R1", idempotency_key="a", actor=user)
    # then
    event = AuditEvent.objects.get(action="points.earn")
    assert (event.object_type, event.object_id, event.programme_id) == (
        "plum.member",
        str(member.pk),
        member.programme_id,
    )
    assert (event.actor_label, event.actor_user_id) == ("hr-admin", user.pk)
    assert event.changes == {
        "balance": [0, 100],
        "points": [None, 100],
        "transaction": [None, txn.pk],
        "reason": [None, "milestone_award"],
        "reference": [None, "R1"],
    }
    assert (txn.actor_type, txn.actor_user_id, txn.actor_client_id) == ("user", user.pk, None)


def test_the_same_key_twice_is_one_transaction(member, programme):
    # given
    first, _ = points_earn(member=member, points=100, idempotency_key="same", actor=SYSTEM)
    # when
    again, created = points_earn(member=member, points=100, idempotency_key="same", actor=SYSTEM)
    # then
    assert (again.pk, created) == (first.pk, False)
    assert LedgerTransaction.objects.count() == 1
    assert Posting.objects.count() == 2
    assert balances(programme) == {"EMP-001": 100, "funding": -100}


def test_a_key_reused_for_other_points_is_refused_and_changes_nothing(member, ledger_snapshot):
    # given
    points_earn(member=member, points=100, idempotency_key="same", actor=SYSTEM)
    before = ledger_snapshot()
    # when / then
    with pytest.raises(LedgerKeyReusedError):
        points_earn(member=member, points=101, idempotency_key="same", actor=SYSTEM)
    assert ledger_snapshot() == before


def test_keys_are_unique_per_programme_not_globally(member, other_member):
    # when
    points_earn(member=member, points=10, idempotency_key="same", actor=SYSTEM)
    _, created = points_earn(member=other_member, points=20, idempotency_key="same", actor=SYSTEM)
    # then
    assert created is True
    assert LedgerTransaction.objects.count() == 2


@pytest.mark.parametrize(
    ("points", "field"),
    [(0, "points"), (-5, "points"), (1.5, "points"), (True, "points"), (10**12 + 1, "points")],
)
def test_earn_refuses_bad_points(member, ledger_snapshot, points, field):
    # given
    before = ledger_snapshot()
    # when
    with pytest.raises(InvalidInputError) as refused:
        points_earn(member=member, points=points, idempotency_key="k", actor=SYSTEM)
    # then
    assert list(refused.value.fields) == [field]
    assert ledger_snapshot() == before


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"reference": "x" * 121}, "reference"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "k" * 256}, "idempotency_key"),
        ({"reason": "because"}, "reason"),
    ],
)
def test_earn_refuses_bad_text_and_posts_nothing(member, fields, field):
    # given
    args = {"idempotency_key": "k", **fields}
    # when
    with pytest.raises(InvalidInputError) as refused:
        points_earn(member=member, points=5, actor=SYSTEM, **args)
    # then
    assert list(refused.value.fields) == [field]
    assert (LedgerTransaction.objects.count(), Posting.objects.count()) == (0, 0)


# --- burn ------------------------------------------------------------------------------------


def test_burn_debits_the_wallet_to_redemption(member, programme, earn):
    # given
    earn(member, 500)
    # when
    txn, created = points_burn(
        member=member, points=120, reference="ORD-7", idempotency_key="burn-7", actor=SYSTEM
    )
    # then
    assert created is True
    assert (txn.kind, txn.reason, txn.reference) == ("burn", "redemption", "ORD-7")
    assert legs(txn) == [("EMP-001", -120), ("redemption", 120)]
    assert balances(programme) == {"EMP-001": 380, "funding": -500, "redemption": 120}
    assert txn.postings.get(account__member=member).balance_after == 380
    assert ledger_problems() == []


def test_burning_exactly_the_balance_leaves_zero(member, earn):
    # given
    earn(member, 50)
    # when
    points_burn(member=member, points=50, idempotency_key="all", actor=SYSTEM)
    # then
    assert Account.objects.get(member=member).balance == 0


def test_burning_more_than_the_balance_is_refused_with_the_balance(member, earn, ledger_snapshot):
    # given
    earn(member, 50)
    before = ledger_snapshot()
    audit_count = AuditEvent.objects.count()
    # when
    with pytest.raises(InsufficientPointsError) as refused:
        points_burn(member=member, points=51, idempotency_key="too-much", actor=SYSTEM)
    # then
    assert (refused.value.code, refused.value.status) == ("insufficient_points", 409)
    assert refused.value.extra == {"balance": 50}
    assert ledger_snapshot() == before
    assert AuditEvent.objects.count() == audit_count


def test_burning_from_a_member_without_a_wallet_is_refused_and_creates_nothing(member):
    # when
    with pytest.raises(InsufficientPointsError) as refused:
        points_burn(member=member, points=1, idempotency_key="none", actor=SYSTEM)
    # then
    assert refused.value.extra == {"balance": 0}
    assert Account.objects.count() == 0


def test_a_burn_replayed_after_the_balance_is_spent_returns_the_first(member, earn):
    # given
    earn(member, 10)
    first, _ = points_burn(member=member, points=10, idempotency_key="b", actor=SYSTEM)
    # when
    again, created = points_burn(member=member, points=10, idempotency_key="b", actor=SYSTEM)
    # then
    assert (again.pk, created) == (first.pk, False)
    assert Account.objects.get(member=member).balance == 0


# --- adjust ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("points", "balance"), [(30, 130), (-30, 70), (-100, 0)])
def test_adjust_moves_points_either_way_with_a_note(member, programme, earn, points, balance):
    # given
    earn(member, 100)
    # when
    txn, _ = points_adjust(
        member=member,
        points=points,
        note="  goodwill after ticket 12  ",
        idempotency_key="adj",
        actor=SYSTEM,
    )
    # then
    assert (txn.kind, txn.reason, txn.note) == (
        "adjustment",
        "manual_adjustment",
        "goodwill after ticket 12",
    )
    assert legs(txn) == sorted([("EMP-001", points), ("adjustments", -points)])
    assert balances(programme) == {"EMP-001": balance, "funding": -100, "adjustments": -points}
    event = AuditEvent.objects.get(action="points.adjustment")
    assert event.changes["note"] == [None, "goodwill after ticket 12"]


@pytest.mark.parametrize("note", ["", "   "])
def test_adjust_without_a_note_is_refused(member, note):
    with pytest.raises(InvalidInputError) as refused:
        points_adjust(member=member, points=5, note=note, idempotency_key="a", actor=SYSTEM)
    assert list(refused.value.fields) == ["note"]
    assert LedgerTransaction.objects.count() == 0


def test_a_negative_adjustment_cannot_take_the_wallet_below_zero(member, earn, ledger_snapshot):
    # given
    earn(member, 10)
    before = ledger_snapshot()
    # when
    with pytest.raises(InsufficientPointsError):
        points_adjust(member=member, points=-11, note="typo", idempotency_key="a", actor=SYSTEM)
    # then
    assert ledger_snapshot() == before


# --- reverse ---------------------------------------------------------------------------------


def test_reversing_a_burn_gives_the_points_back_and_names_the_burn(member, programme, earn):
    # given
    earn(member, 100)
    burn, _ = points_burn(
        member=member, points=40, reference="ORD-1", idempotency_key="b", actor=SYSTEM
    )
    # when
    reversal, created = transaction_reverse(
        transaction=burn, actor=SYSTEM, reason="order_cancelled"
    )
    # then
    assert created is True
    assert (reversal.kind, reversal.reason, reversal.reference, reversal.reverses_id) == (
        "reversal",
        "order_cancelled",
        "ORD-1",
        burn.pk,
    )
    assert reversal.idempotency_key == f"reversal-of:{burn.pk}"
    assert legs(reversal) == [("EMP-001", 40), ("redemption", -40)]
    assert balances(programme) == {"EMP-001": 100, "funding": -100, "redemption": 0}
    assert burn.reversed_by == reversal
    assert ledger_problems() == []


def test_reversing_twice_returns_the_first_reversal(member, earn):
    # given
    txn = earn(member, 100)
    first, _ = transaction_reverse(transaction=txn, actor=SYSTEM)
    # when
    again, created = transaction_reverse(transaction=txn, actor=SYSTEM)
    # then
    assert (again.pk, created) == (first.pk, False)
    assert Account.objects.get(member=member).balance == 0


def test_reversing_twice_under_another_key_is_refused(member, earn, ledger_snapshot):
    # given
    txn = earn(member, 100)
    first, _ = transaction_reverse(transaction=txn, actor=SYSTEM)
    before = ledger_snapshot()
    # when
    with pytest.raises(TransactionAlreadyReversedError) as refused:
        transaction_reverse(transaction=txn, actor=SYSTEM, idempotency_key="another")
    # then
    assert refused.value.extra == {"reversal": first.pk}
    assert ledger_snapshot() == before


def test_a_reversal_cannot_be_reversed(member, earn):
    # given
    reversal, _ = transaction_reverse(transaction=earn(member, 5), actor=SYSTEM)
    # when / then
    with pytest.raises(TransactionNotReversibleError):
        transaction_reverse(transaction=reversal, actor=SYSTEM)
    assert LedgerTransaction.objects.count() == 2


def test_reversing_an_earn_that_was_spent_is_refused(member, earn, ledger_snapshot):
    # given
    txn = earn(member, 100)
    points_burn(member=member, points=70, idempotency_key=next_key(), actor=SYSTEM)
    before = ledger_snapshot()
    # when
    with pytest.raises(InsufficientPointsError) as refused:
        transaction_reverse(transaction=txn, actor=SYSTEM)
    # then
    assert refused.value.extra == {"balance": 30}
    assert ledger_snapshot() == before


# --- accounts stay per programme -------------------------------------------------------------


def test_each_programme_has_its_own_counter_accounts(member, other_member, earn):
    # when
    earn(member, 10)
    earn(other_member, 20)
    # then
    funding = dict(
        Account.objects.filter(kind=AccountKind.FUNDING).values_list("programme__slug", "balance")
    )
    assert funding == {"alpha": -10, "beta": -20}


def test_a_second_member_shares_the_programme_funding_account(member, programme, earn):
    # given
    second = MemberFactory(programme=programme, external_id="EMP-002")
    # when
    earn(member, 10)
    earn(second, 15)
    # then
    assert balances(programme) == {"EMP-001": 10, "EMP-002": 15, "funding": -25}
    assert Account.objects.filter(programme=programme, kind=AccountKind.FUNDING).count() == 1


# --- check_ledger ----------------------------------------------------------------------------


def test_check_ledger_names_a_transaction_that_does_not_sum_to_zero(member, earn):
    # given: inside an open transaction the deferred trigger has not run yet, so an unbalanced
    # posting is visible to the check, as it would be on a database without the trigger
    txn = earn(member, 10)
    with transaction.atomic():
        Posting.objects.create(
            transaction=txn, account=Account.objects.get(member=member), amount=3, balance_after=13
        )
        Account.objects.filter(member=member).update(balance=13)
        # when / then
        with pytest.raises(CommandError) as failed:
            call_command("check_ledger")
        # rolled back: on Postgres the trigger would refuse this transaction at commit
        transaction.set_rollback(True)
    assert str(failed.value) == (
        f"Ledger does not balance: transaction {txn.pk} has 3 posting(s) summing to 3"
    )


def test_check_ledger_names_the_first_account_that_does_not_match(member, other_member, earn):
    # given
    earn(member, 10)
    earn(other_member, 10)
    wallets = list(Account.objects.filter(kind=AccountKind.MEMBER_WALLET).order_by("pk"))
    for wallet in wallets:
        Account.objects.filter(pk=wallet.pk).update(balance=99)
    # when / then
    with pytest.raises(CommandError) as failed:
        call_command("check_ledger")
    assert str(failed.value) == (
        f"Ledger does not balance: account {wallets[0].pk} (member_wallet) has balance 99 but "
        "its postings sum to 10"
    )
