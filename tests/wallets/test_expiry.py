"""Points expiry: N months after they were earned, oldest points first, once per wallet and
day, only in programmes with an expiry policy."""

from datetime import UTC, datetime

import pytest

from plum.actors import SYSTEM
from plum.errors import InvalidInputError
from plum.models import AuditEvent
from tests.wallets.conftest import next_key
from wallets.models import Account, AccountKind, LedgerTransaction, PointsPolicy
from wallets.selectors import ledger_problems
from wallets.services import (
    points_burn,
    points_expire,
    points_expire_due,
    points_policy_set,
    transaction_reverse,
)

pytestmark = pytest.mark.django_db


def at(month, day=1, year=2026):
    return datetime(year, month, day, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch):
    """clock(moment): from now on, rows are stamped at `moment` (auto_now_add reads
    django.utils.timezone.now)."""

    def set_to(moment):
        monkeypatch.setattr("django.utils.timezone.now", lambda: moment)

    return set_to


@pytest.fixture
def wallet_of():
    return lambda member: Account.objects.get(member=member)


def test_points_expire_months_after_they_were_earned(member, earn, clock, wallet_of):
    # given: 100 earned in January, 50 in March; six months' expiry
    clock(at(1))
    earn(member, 100)
    clock(at(3))
    earn(member, 50)
    # when: early July, January's points are due; March's are not
    txn = points_expire(wallet=wallet_of(member), months=6, as_of=at(7, 2))
    # then
    assert (txn.kind, txn.reason, txn.reference) == ("expiry", "points_expiry", "expiry 2026-07-02")
    assert txn.idempotency_key == f"expiry:{wallet_of(member).pk}:2026-07-02"
    assert wallet_of(member).balance == 50
    assert Account.objects.get(kind=AccountKind.EXPIRY).balance == 100
    assert ledger_problems() == []


def test_spending_consumes_the_oldest_points_first(member, earn, clock, wallet_of):
    # given: 100 in January, 50 in March, 120 spent in April (all of January's and 20 of March's)
    clock(at(1))
    earn(member, 100)
    clock(at(3))
    earn(member, 50)
    clock(at(4))
    points_burn(member=member, points=120, idempotency_key="b", actor=SYSTEM)
    # when
    in_july = points_expire(wallet=wallet_of(member), months=6, as_of=at(7, 2))
    in_september = points_expire(wallet=wallet_of(member), months=6, as_of=at(9, 2))
    # then: nothing of January's is left; 30 of March's expire in September
    assert in_july is None
    assert in_september.postings.get(account__kind="member_wallet").amount == -30
    assert wallet_of(member).balance == 0


def test_a_reversed_earn_neither_expires_nor_shields_older_points(member, earn, clock, wallet_of):
    # given: January's 100 stays; March's 50 is reversed in April
    clock(at(1))
    earn(member, 100)
    clock(at(3))
    march = earn(member, 50)
    clock(at(4))
    transaction_reverse(transaction=march, actor=SYSTEM)
    # when
    txn = points_expire(wallet=wallet_of(member), months=6, as_of=at(7, 2))
    # then
    assert txn.postings.get(account__kind="member_wallet").amount == -100
    assert wallet_of(member).balance == 0


def test_expiry_runs_once_per_wallet_and_day(member, earn, clock, wallet_of):
    # given
    clock(at(1))
    earn(member, 100)
    first = points_expire(wallet=wallet_of(member), months=6, as_of=at(7, 2))
    clock(at(7, 2))
    earn(member, 5)  # would be due, were it earned in January: the same day's run is done
    # when
    again = points_expire(wallet=wallet_of(member), months=6, as_of=at(7, 2))
    next_day = points_expire(wallet=wallet_of(member), months=6, as_of=at(7, 3))
    # then
    assert (first is not None, again, next_day) == (True, None, None)
    assert LedgerTransaction.objects.filter(kind="expiry").count() == 1
    assert wallet_of(member).balance == 5


def test_nothing_due_posts_nothing(member, earn, clock, wallet_of):
    # given
    clock(at(5))
    earn(member, 100)
    # when
    txn = points_expire(wallet=wallet_of(member), months=6, as_of=at(7, 2))
    # then
    assert txn is None
    assert LedgerTransaction.objects.filter(kind="expiry").count() == 0
    assert not Account.objects.filter(kind=AccountKind.EXPIRY).exists()


def test_the_beat_run_expires_only_where_a_policy_says_so(
    member, other_member, earn, clock, programme
):
    # given: alpha expires after 3 months, beta never
    clock(at(1))
    earn(member, 100)
    earn(other_member, 200)
    points_policy_set(programme=programme, expiry_months=3, actor=SYSTEM)
    # when
    posted = points_expire_due(as_of=at(6))
    again = points_expire_due(as_of=at(6))
    # then
    assert (posted, again) == (1, 0)
    balances = dict(
        Account.objects.filter(kind=AccountKind.MEMBER_WALLET).values_list(
            "programme__slug", "balance"
        )
    )
    assert balances == {"alpha": 0, "beta": 200}
    assert ledger_problems() == []


@pytest.mark.parametrize("month", [(1, 31), (3, 31)])
def test_month_ends_are_clamped(member, earn, clock, wallet_of, month):
    # given: earned on the last day of February; one month's expiry
    clock(datetime(2026, 2, 28, 12, 0, tzinfo=UTC))
    earn(member, 10)
    # when: 31 March less one month is 28 February (clamped), and then the points are due
    txn = points_expire(wallet=wallet_of(member), months=1, as_of=at(*month))
    # then
    assert (txn is not None) is (month == (3, 31))


def test_policy_changes_are_audited(programme):
    # when
    policy = points_policy_set(programme=programme, expiry_months=12, actor=SYSTEM)
    points_policy_set(programme=programme, expiry_months=12, actor=SYSTEM)
    points_policy_set(programme=programme, expiry_months=None, actor=SYSTEM)
    # then
    policy.refresh_from_db()
    assert policy.expiry_months is None
    changes = list(
        AuditEvent.objects.filter(action="points_policy.update")
        .order_by("pk")
        .values_list("changes", flat=True)
    )
    assert changes == [{"expiry_months": [None, 12]}, {"expiry_months": [12, None]}]


@pytest.mark.parametrize("months", [0, 121, -1, 1.5, True])
def test_policy_refuses_bad_months(programme, months):
    with pytest.raises(InvalidInputError) as refused:
        points_policy_set(programme=programme, expiry_months=months, actor=SYSTEM)
    assert list(refused.value.fields) == ["expiry_months"]
    assert PointsPolicy.objects.count() == 0


def test_an_expired_wallet_can_earn_and_spend_again(member, earn, clock, wallet_of):
    # given
    clock(at(1))
    earn(member, 100)
    points_expire(wallet=wallet_of(member), months=1, as_of=at(3))
    # when
    clock(at(3, 5))
    earn(member, 40)
    points_burn(member=member, points=40, idempotency_key=next_key(), actor=SYSTEM)
    # then
    assert wallet_of(member).balance == 0
    assert ledger_problems() == []
