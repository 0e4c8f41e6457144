"""Random sequences of earn / burn / adjust / reverse / expire / replay over three members:
after every step each wallet holds exactly what a plain Python model says, every account's
balance is the sum of its postings, every transaction balances, and no wallet is below zero.
With real commits, so on Postgres the deferred balance trigger checks every transaction too."""

import itertools
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from plum.actors import SYSTEM
from tests.factories import MemberFactory, ProgrammeFactory
from wallets.errors import (
    InsufficientPointsError,
    TransactionAlreadyReversedError,
    TransactionNotReversibleError,
)
from wallets.models import Account, AccountKind, LedgerTransaction
from wallets.selectors import ledger_problems
from wallets.services import (
    points_adjust,
    points_burn,
    points_earn,
    points_expire,
    transaction_reverse,
)

_n = itertools.count()
POINTS = st.sampled_from([1, 5, 10, 50, 100, 250])


class Ledger(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.programme = ProgrammeFactory(slug=f"ledger-sm-{next(_n)}")
        self.members = [MemberFactory(programme=self.programme) for _ in range(3)]
        self.expected = [0, 0, 0]  # the model: each member's balance
        self.posted = []  # (service, kwargs, transaction id) of every created transaction
        self.keys = itertools.count()
        self.days = itertools.count(1)

    def _member_index(self, member_id):
        return [m.pk for m in self.members].index(member_id)

    def _record(self, service, kwargs, result):
        txn, created = result
        assert created is True
        self.posted.append((service, kwargs, txn.pk))
        return txn

    @rule(who=st.integers(0, 2), points=POINTS)
    def earn(self, who, points):
        kwargs = {
            "member": self.members[who],
            "points": points,
            "idempotency_key": f"e{next(self.keys)}",
            "actor": SYSTEM,
        }
        self._record(points_earn, kwargs, points_earn(**kwargs))
        self.expected[who] += points

    @rule(who=st.integers(0, 2), points=POINTS)
    def burn(self, who, points):
        kwargs = {
            "member": self.members[who],
            "points": points,
            "idempotency_key": f"b{next(self.keys)}",
            "actor": SYSTEM,
        }
        try:
            self._record(points_burn, kwargs, points_burn(**kwargs))
        except InsufficientPointsError as refused:
            assert self.expected[who] < points
            assert refused.extra == {"balance": self.expected[who]}
        else:
            self.expected[who] -= points

    @rule(who=st.integers(0, 2), points=POINTS, negative=st.booleans())
    def adjust(self, who, points, negative):
        signed = -points if negative else points
        kwargs = {
            "member": self.members[who],
            "points": signed,
            "note": "state machine",
            "idempotency_key": f"a{next(self.keys)}",
            "actor": SYSTEM,
        }
        try:
            self._record(points_adjust, kwargs, points_adjust(**kwargs))
        except InsufficientPointsError:
            assert self.expected[who] + signed < 0
        else:
            self.expected[who] += signed

    @rule(index=st.integers(0, 200))
    def reverse(self, index):
        if not self.posted:
            return
        _, _, txn_id = self.posted[index % len(self.posted)]
        original = LedgerTransaction.objects.get(pk=txn_id)
        wallet_leg = original.postings.select_related("account").get(
            account__kind=AccountKind.MEMBER_WALLET
        )
        who = self._member_index(wallet_leg.account.member_id)
        already = LedgerTransaction.objects.filter(reverses=original).exists()
        try:
            reversal, created = transaction_reverse(
                transaction=original, actor=SYSTEM, idempotency_key=f"r{next(self.keys)}"
            )
        except TransactionNotReversibleError:
            assert original.kind == "reversal"
        except TransactionAlreadyReversedError:
            assert already
        except InsufficientPointsError:
            assert self.expected[who] - wallet_leg.amount < 0
        else:
            assert (created, already, reversal.reverses_id) == (True, False, original.pk)
            self.expected[who] -= wallet_leg.amount
            self.posted.append((None, {}, reversal.pk))

    @rule(who=st.integers(0, 2))
    def expire(self, who):
        # Two months on, with one month's expiry, everything held so far is due: what is
        # left after FIFO consumption is the whole balance. A new day per run: one run a day.
        wallet = Account.objects.filter(member=self.members[who]).first()
        if wallet is None:
            return
        as_of = timezone.now() + timedelta(days=60 + next(self.days))
        txn = points_expire(wallet=wallet, months=1, as_of=as_of, actor=SYSTEM)
        assert (txn is None) is (self.expected[who] == 0)
        if txn is not None:
            self.posted.append((None, {}, txn.pk))
        self.expected[who] = 0

    @rule(index=st.integers(0, 200))
    def replay(self, index):
        replayable = [entry for entry in self.posted if entry[0] is not None]
        if not replayable:
            return
        service, kwargs, txn_id = replayable[index % len(replayable)]
        before = LedgerTransaction.objects.count()
        txn, created = service(**kwargs)
        assert (txn.pk, created) == (txn_id, False)
        assert LedgerTransaction.objects.count() == before

    @invariant()
    def wallets_hold_what_the_model_says(self):
        held = dict(
            Account.objects.filter(member__in=self.members).values_list("member_id", "balance")
        )
        assert [held.get(m.pk, 0) for m in self.members] == self.expected
        assert all(balance >= 0 for balance in self.expected)

    @invariant()
    def the_books_balance(self):
        assert ledger_problems() == []
        total = sum(
            Account.objects.filter(programme=self.programme).values_list("balance", flat=True)
        )
        assert total == 0


@pytest.mark.django_db(transaction=True)
def test_ledger_state_machine():
    Ledger.TestCase.settings = settings(
        max_examples=25,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    Ledger.TestCase().runTest()
