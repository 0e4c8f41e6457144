"""Random sequences of issue / redeem / extend / recover / flag / unflag / expire / cancel:
after every step, each voucher moved only along the declared transition table, balances and
redemptions agree, and the campaign and per-member counters equal what the rows say."""

import itertools
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from campaigns.models import VOUCHER_TRANSITIONS, CampaignMemberCounter, Redemption, Voucher
from campaigns.services.vouchers import (
    COUNTED_STATUSES,
    campaign_counters_from_vouchers,
    voucher_cancel,
    voucher_flag,
    voucher_redeem,
    voucher_unflag,
    vouchers_expire_lapsed,
    vouchers_extend,
    vouchers_recover,
)
from plum.actors import SYSTEM
from plum.errors import PlumError
from tests.campaigns.builders import fill_pool, issue, make_campaign
from tests.factories import MemberFactory, ProgrammeFactory

_n = itertools.count()


class VoucherLifecycle(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        programme = ProgrammeFactory(slug=f"sm-{next(_n)}")
        self.campaign = make_campaign(
            programme, max_rewards=6, budget=Decimal("2500.00"), per_member_cap=3
        )
        fill_pool(self.campaign, 3)
        self.members = [MemberFactory(programme=programme) for _ in range(3)]
        self.seen = {}  # voucher id -> last status observed
        self.refs = itertools.count()
        self._snapshot()

    def _snapshot(self):
        self.seen = dict(Voucher.objects.filter(campaign=self.campaign).values_list("id", "status"))

    def _voucher(self, index):
        ids = sorted(self.seen)
        return Voucher.objects.get(pk=ids[index % len(ids)]) if ids else None

    def _attempt(self, action):
        try:
            action()
        except PlumError:
            pass  # a refusal: the invariants below check that it changed nothing wrong

    @rule(member=st.integers(0, 2), is_test=st.booleans())
    def issue(self, member, is_test):
        self._attempt(lambda: issue(self.campaign, self.members[member], is_test=is_test))

    @rule(index=st.integers(0, 50), amount=st.sampled_from(["1", "100", "250", "500", "700"]))
    def redeem(self, index, amount):
        voucher = self._voucher(index)
        if voucher:
            reference = f"r{next(self.refs)}"
            self._attempt(
                lambda: voucher_redeem(
                    voucher=voucher, amount=Decimal(amount), reference=reference, actor=SYSTEM
                )
            )

    @rule(index=st.integers(0, 50), days=st.integers(1, 60))
    def extend(self, index, days):
        voucher = self._voucher(index)
        if voucher:
            self._attempt(
                lambda: vouchers_extend(
                    vouchers=Voucher.objects.filter(pk=voucher.pk),
                    expires_at=timezone.now() + timedelta(days=days),
                    actor=SYSTEM,
                )
            )

    @rule(index=st.integers(0, 50), to_pool=st.booleans())
    def recover(self, index, to_pool):
        voucher = self._voucher(index)
        if voucher:
            self._attempt(
                lambda: vouchers_recover(
                    vouchers=Voucher.objects.filter(pk=voucher.pk), actor=SYSTEM, to_pool=to_pool
                )
            )

    @rule(index=st.integers(0, 50))
    def flag(self, index):
        voucher = self._voucher(index)
        if voucher:
            self._attempt(lambda: voucher_flag(voucher=voucher, actor=SYSTEM))

    @rule(index=st.integers(0, 50))
    def unflag(self, index):
        voucher = self._voucher(index)
        if voucher:
            self._attempt(lambda: voucher_unflag(voucher=voucher, actor=SYSTEM))

    @rule(index=st.integers(0, 50))
    def lapse(self, index):
        voucher = self._voucher(index)
        if voucher:
            Voucher.objects.filter(pk=voucher.pk, expires_at__isnull=False).update(
                expires_at=timezone.now() - timedelta(seconds=1)
            )
            vouchers_expire_lapsed()

    @rule(index=st.integers(0, 50))
    def cancel(self, index):
        voucher = self._voucher(index)
        if voucher:

            def cancel():
                with transaction.atomic():  # cancel runs inside its caller's transaction
                    voucher_cancel(voucher=voucher, actor=SYSTEM)

            self._attempt(cancel)

    @invariant()
    def moves_follow_the_transition_table(self):
        now = dict(Voucher.objects.filter(campaign=self.campaign).values_list("id", "status"))
        for voucher_id, status in now.items():
            before = self.seen.get(voucher_id)
            if before is not None and before != status:
                assert VOUCHER_TRANSITIONS.allowed(before, status), (before, status)
        self.seen = now

    @invariant()
    def balances_and_redemptions_agree(self):
        for voucher in Voucher.objects.filter(campaign=self.campaign):
            redeemed = Redemption.objects.filter(voucher=voucher).aggregate(s=Sum("amount"))["s"]
            assert Decimal("0") <= voucher.balance <= voucher.face_value
            assert (redeemed or Decimal("0")) == voucher.face_value - voucher.balance
            assert voucher.status != "available" or voucher.member_id is None

    @invariant()
    def counters_equal_the_rows(self):
        self.campaign.refresh_from_db()
        counted = campaign_counters_from_vouchers(self.campaign)
        assert (self.campaign.issued_count, self.campaign.issued_value) == counted
        assert self.campaign.issued_count <= self.campaign.max_rewards
        assert self.campaign.issued_value <= self.campaign.budget
        per_member = dict(
            Voucher.objects.filter(
                campaign=self.campaign,
                is_test=False,
                member__isnull=False,
                status__in=COUNTED_STATUSES,
            )
            .values("member_id")
            .annotate(n=Count("id"))
            .values_list("member_id", "n")
        )
        rows = dict(
            CampaignMemberCounter.objects.filter(campaign=self.campaign).values_list(
                "member_id", "issued"
            )
        )
        assert {k: v for k, v in rows.items() if v} == per_member


@pytest.mark.django_db
def test_voucher_lifecycle_state_machine():
    VoucherLifecycle.TestCase.settings = settings(
        max_examples=30,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    VoucherLifecycle.TestCase().runTest()
