from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from campaigns.codes import is_well_formed
from campaigns.errors import (
    BudgetExhaustedError,
    CampaignExhaustedError,
    CampaignNotActiveError,
    MemberCapReachedError,
    PoolExhaustedError,
    ReferenceReusedError,
    VoucherCodeMistypedError,
    VoucherExpiredError,
    VoucherFlaggedError,
    VoucherInsufficientBalanceError,
    VoucherNotFoundError,
    VoucherNotRedeemableError,
)
from campaigns.models import Campaign, Redemption, Voucher
from campaigns.services.campaigns import campaign_transition
from campaigns.services.vouchers import (
    campaign_counters_from_vouchers,
    voucher_cancel,
    voucher_find,
    voucher_flag,
    voucher_redeem,
    voucher_reveal,
    voucher_unflag,
    vouchers_expire_lapsed,
    vouchers_extend,
    vouchers_recover,
)
from plum.actors import SYSTEM
from plum.errors import InvalidInputError, InvalidTransitionError
from plum.models import AuditEvent, OutboxMessage
from tests.campaigns.builders import fill_pool, issue, make_campaign
from tests.factories import MemberFactory

D = Decimal
pytestmark = pytest.mark.django_db


@pytest.fixture
def member(programme):
    return MemberFactory(programme=programme)


def _counters(campaign):
    campaign.refresh_from_db()
    return campaign.issued_count, campaign.issued_value


def _assert_counters_match_rows(campaign):
    assert _counters(campaign) == campaign_counters_from_vouchers(campaign)


# --- issue ------------------------------------------------------------------------------


def test_issue_generates_a_checked_code_counts_it_and_sets_expiry(programme, member):
    # given
    campaign = make_campaign(programme, expiry_days=30)
    # when
    voucher = issue(campaign, member)
    # then
    assert (voucher.status, voucher.member_id, voucher.balance) == ("active", member.pk, D("500"))
    assert is_well_formed(voucher.code) and len(voucher.code) == 14
    assert voucher.expires_at - voucher.issued_at == timedelta(days=30)
    assert _counters(campaign) == (1, D("500.00"))
    assert AuditEvent.objects.filter(action="voucher.issue", object_id=str(voucher.pk)).count() == 1


def test_issue_claims_pooled_codes_in_order(programme, member):
    # given
    campaign = make_campaign(programme)
    fill_pool(campaign, 3)
    first_pooled = Voucher.objects.filter(campaign=campaign).order_by("id").first()
    # when
    voucher = issue(campaign, member)
    # then
    assert voucher.pk == first_pooled.pk
    assert Voucher.objects.filter(campaign=campaign, status="available").count() == 2


def test_pool_campaign_refuses_when_the_pool_is_empty_and_changes_nothing(programme, member):
    # given
    campaign = make_campaign(programme, code_source=Campaign.CodeSource.POOL)
    # when / then
    with pytest.raises(PoolExhaustedError):
        issue(campaign, member)
    assert _counters(campaign) == (0, D("0"))


@pytest.mark.parametrize(
    ("limits", "error"),
    [
        ({"max_rewards": 2}, CampaignExhaustedError),
        ({"budget": D("1000.00")}, BudgetExhaustedError),
        ({"per_member_cap": 2}, MemberCapReachedError),
    ],
)
def test_each_limit_refuses_the_third_reward_and_counts_nothing_for_it(
    programme, member, limits, error
):
    # given
    campaign = make_campaign(programme, **limits)
    issue(campaign, member)
    issue(campaign, member)
    # when / then
    with pytest.raises(error):
        issue(campaign, member)
    assert _counters(campaign) == (2, D("1000.00"))
    assert Voucher.objects.filter(campaign=campaign).count() == 2


def test_member_cap_is_per_member(programme, member):
    campaign = make_campaign(programme, per_member_cap=1)
    issue(campaign, member)
    other = MemberFactory(programme=programme)
    assert issue(campaign, other).member_id == other.pk
    assert _counters(campaign) == (2, D("1000.00"))


@pytest.mark.parametrize("action", ["pause", "end"])
def test_paused_or_ended_campaign_issues_nothing(programme, member, action):
    campaign = make_campaign(programme)
    campaign_transition(campaign=campaign, action=action, actor=SYSTEM)
    with pytest.raises(CampaignNotActiveError):
        issue(campaign, member)
    assert _counters(campaign) == (0, D("0"))


@pytest.mark.parametrize(
    "dates",
    [
        {"starts_at": timezone.now() + timedelta(days=1)},
        {
            "starts_at": timezone.now() - timedelta(days=3),
            "ends_at": timezone.now() - timedelta(days=1),
        },
    ],
)
def test_campaign_outside_its_dates_issues_nothing(programme, member, dates):
    campaign = make_campaign(programme, **dates)
    with pytest.raises(CampaignNotActiveError):
        issue(campaign, member)


def test_test_codes_touch_no_counter_and_live_issues_never_take_them(programme, member):
    # given
    campaign = make_campaign(programme, max_rewards=1)
    fill_pool(campaign, 2, is_test=True)
    # when
    test_voucher = issue(campaign, member, is_test=True)
    live_voucher = issue(campaign, member)
    # then
    assert (test_voucher.is_test, live_voucher.is_test) == (True, False)
    assert Voucher.objects.filter(campaign=campaign, is_test=True, status="available").count() == 1
    assert _counters(campaign) == (1, D("500.00"))


def test_issue_refuses_a_member_of_another_programme(programme, other_programme):
    campaign = make_campaign(programme)
    with pytest.raises(InvalidInputError):
        issue(campaign, MemberFactory(programme=other_programme))
    assert _counters(campaign) == (0, D("0"))


# --- redeem -----------------------------------------------------------------------------


def test_partial_then_full_redemption(programme, member):
    # given
    voucher = issue(make_campaign(programme), member)
    # when
    first, created_first = voucher_redeem(
        voucher=voucher, amount=D("200"), reference="POS-1", actor=SYSTEM
    )
    voucher.refresh_from_db()
    mid = (voucher.status, voucher.balance)
    second, _ = voucher_redeem(voucher=voucher, amount=D("300"), reference="POS-2", actor=SYSTEM)
    voucher.refresh_from_db()
    # then
    assert created_first is True
    assert mid == ("partially_redeemed", D("300.00"))
    assert (voucher.status, voucher.balance) == ("redeemed", D("0.00"))
    assert (first.balance_after, second.balance_after) == (D("300.00"), D("0.00"))
    events = OutboxMessage.objects.filter(kind="event", payload__type="voucher.redeemed")
    assert events.count() == 2


def test_redemption_is_idempotent_on_its_reference(programme, member):
    voucher = issue(make_campaign(programme), member)
    first, _ = voucher_redeem(voucher=voucher, amount=D("100"), reference="R1", actor=SYSTEM)
    again, created = voucher_redeem(voucher=voucher, amount=D("100"), reference="R1", actor=SYSTEM)
    voucher.refresh_from_db()
    assert (again.pk, created, voucher.balance) == (first.pk, False, D("400.00"))
    with pytest.raises(ReferenceReusedError):
        voucher_redeem(voucher=voucher, amount=D("50"), reference="R1", actor=SYSTEM)
    assert Redemption.objects.filter(voucher=voucher).count() == 1


def test_over_balance_is_refused_with_the_remaining_balance(programme, member):
    voucher = issue(make_campaign(programme), member)
    voucher_redeem(voucher=voucher, amount=D("450"), reference="R1", actor=SYSTEM)
    with pytest.raises(VoucherInsufficientBalanceError) as refused:
        voucher_redeem(voucher=voucher, amount=D("60"), reference="R2", actor=SYSTEM)
    voucher.refresh_from_db()
    assert refused.value.extra == {"balance": "50.00"}
    assert voucher.balance == D("50.00")
    assert Redemption.objects.filter(voucher=voucher).count() == 1


def test_expiry_is_enforced_by_the_clock_before_the_beat_task_runs(programme, member):
    voucher = issue(make_campaign(programme), member)
    Voucher.objects.filter(pk=voucher.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(VoucherExpiredError):
        voucher_redeem(voucher=voucher, amount=D("10"), reference="R", actor=SYSTEM)
    voucher.refresh_from_db()
    assert (voucher.status, voucher.balance) == ("active", D("500.00"))


def test_flagged_voucher_is_refused_until_unflagged(programme, member):
    voucher = issue(make_campaign(programme), member)
    voucher_redeem(voucher=voucher, amount=D("100"), reference="R0", actor=SYSTEM)
    voucher_flag(voucher=voucher, actor=SYSTEM, reason="chargeback")
    with pytest.raises(VoucherFlaggedError):
        voucher_redeem(voucher=voucher, amount=D("10"), reference="R1", actor=SYSTEM)
    unflagged = voucher_unflag(voucher=voucher, actor=SYSTEM)
    assert (unflagged.status, unflagged.status_before) == ("partially_redeemed", "")
    voucher_redeem(voucher=voucher, amount=D("10"), reference="R1", actor=SYSTEM)


@pytest.mark.parametrize("status", ["available", "cancelled", "recovered", "redeemed"])
def test_vouchers_not_in_circulation_cannot_be_redeemed(programme, member, status):
    voucher = issue(make_campaign(programme), member)
    Voucher.objects.filter(pk=voucher.pk).update(
        status=status, member=None if status == "available" else member
    )
    with pytest.raises(VoucherNotRedeemableError):
        voucher_redeem(voucher=voucher, amount=D("10"), reference="R", actor=SYSTEM)


@pytest.mark.parametrize(("amount", "reference"), [(D("0"), "R"), (D("-5"), "R"), (D("1"), "")])
def test_redeem_rejects_bad_input(programme, member, amount, reference):
    voucher = issue(make_campaign(programme), member)
    with pytest.raises(InvalidInputError):
        voucher_redeem(voucher=voucher, amount=amount, reference=reference, actor=SYSTEM)


# --- find / reveal ----------------------------------------------------------------------


def test_find_tells_a_mistyped_code_from_an_unknown_one(programme, member):
    voucher = issue(make_campaign(programme), member)
    typo = voucher.code[:3] + ("A" if voucher.code[3] != "A" else "B") + voucher.code[4:]
    scope = Voucher.objects.all()
    assert voucher_find(code=voucher.code.lower(), queryset=scope).pk == voucher.pk
    with pytest.raises(VoucherCodeMistypedError):
        voucher_find(code=typo, queryset=scope)
    with pytest.raises(VoucherNotFoundError):
        voucher_find(code=voucher.code, queryset=Voucher.objects.none())


def test_reveal_is_audited(programme, member):
    voucher = issue(make_campaign(programme), member)
    assert voucher_reveal(voucher=voucher, actor=SYSTEM) == voucher.code
    assert (
        AuditEvent.objects.filter(action="voucher.reveal", object_id=str(voucher.pk)).count() == 1
    )


# --- extend / expire --------------------------------------------------------------------


def test_lapsed_vouchers_expire_and_an_extension_revives_them(programme, member):
    # given
    campaign = make_campaign(programme)
    voucher = issue(campaign, member)
    voucher_redeem(voucher=voucher, amount=D("100"), reference="R", actor=SYSTEM)
    Voucher.objects.filter(pk=voucher.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    # when
    expired = vouchers_expire_lapsed()
    again = vouchers_expire_lapsed()
    voucher.refresh_from_db()
    lapsed = (voucher.status, voucher.status_before)
    new_expiry = timezone.now() + timedelta(days=10)
    result = vouchers_extend(
        vouchers=Voucher.objects.filter(pk=voucher.pk), expires_at=new_expiry, actor=SYSTEM
    )
    voucher.refresh_from_db()
    # then
    assert (expired, again) == (1, 0)
    assert lapsed == ("expired", "partially_redeemed")
    assert result == {"extended": 1, "skipped": []}
    assert (voucher.status, voucher.expires_at) == ("partially_redeemed", new_expiry)
    _assert_counters_match_rows(campaign)


def test_extend_skips_redeemed_and_refuses_the_past(programme, member):
    campaign = make_campaign(programme)
    done, live = issue(campaign, member), issue(campaign, member)
    voucher_redeem(voucher=done, amount=D("500"), reference="R", actor=SYSTEM)
    with pytest.raises(InvalidInputError):
        vouchers_extend(
            vouchers=Voucher.objects.all(),
            expires_at=timezone.now() - timedelta(days=1),
            actor=SYSTEM,
        )
    target = timezone.now() + timedelta(days=90)
    result = vouchers_extend(vouchers=Voucher.objects.all(), expires_at=target, actor=SYSTEM)
    done.refresh_from_db()
    live.refresh_from_db()
    assert result == {"extended": 1, "skipped": [{"code": done.masked_code, "status": "redeemed"}]}
    assert live.expires_at == target
    assert done.expires_at != target


# --- recover / cancel -------------------------------------------------------------------


@pytest.mark.parametrize(("to_pool", "status"), [(True, "available"), (False, "recovered")])
def test_recover_returns_counts_and_refuses_redeemed_vouchers(programme, member, to_pool, status):
    # given
    campaign = make_campaign(programme, per_member_cap=5)
    unused, used = issue(campaign, member), issue(campaign, member)
    voucher_redeem(voucher=used, amount=D("1"), reference="R", actor=SYSTEM)
    # when
    result = vouchers_recover(vouchers=Voucher.objects.all(), actor=SYSTEM, to_pool=to_pool)
    # then
    unused.refresh_from_db()
    used.refresh_from_db()
    assert result == {
        "recovered": 1,
        "refused": [{"code": used.masked_code, "status": "partially_redeemed"}],
    }
    assert (unused.status, used.status) == (status, "partially_redeemed")
    assert _counters(campaign) == (1, D("500.00"))
    _assert_counters_match_rows(campaign)


def test_a_recovered_pool_code_is_issued_again(programme, member):
    campaign = make_campaign(programme, max_rewards=1)
    voucher = issue(campaign, member)
    vouchers_recover(vouchers=Voucher.objects.filter(pk=voucher.pk), actor=SYSTEM)
    other = MemberFactory(programme=programme)
    again = issue(campaign, other)
    assert (again.pk, again.member_id, again.status) == (voucher.pk, other.pk, "active")
    _assert_counters_match_rows(campaign)


def test_cancel_releases_counts_and_is_final(programme, member):
    campaign = make_campaign(programme, max_rewards=1)
    voucher = issue(campaign, member)
    with transaction.atomic():
        cancelled = voucher_cancel(voucher=voucher, actor=SYSTEM)
    assert cancelled.status == "cancelled"
    assert _counters(campaign) == (0, D("0"))
    with pytest.raises(InvalidTransitionError), transaction.atomic():
        voucher_cancel(voucher=voucher, actor=SYSTEM)


def test_a_pooled_codes_own_earlier_expiry_survives_its_issue(programme, member):
    # given: an imported code expiring before the campaign's 30-day rule would
    from campaigns.services.codes import codes_import

    campaign = make_campaign(programme, code_source=Campaign.CodeSource.POOL, expiry_days=30)
    soon = timezone.now() + timedelta(days=3)
    codes_import(
        campaign=campaign,
        text=f"code,expires_at\nMERCH-1,{soon.isoformat()}",
        is_test=False,
        actor=SYSTEM,
    )
    # when
    voucher = issue(campaign, member)
    # then
    assert (voucher.code, voucher.expires_at) == ("MERCH1", soon)


def test_a_large_campaign_extension_runs_as_a_job_with_one_summary_event(
    programme, member, monkeypatch
):
    # given: more vouchers than are extended inline
    from campaigns.services import vouchers as voucher_services
    from plum.models import Job
    from plum.services.jobs import job_run

    monkeypatch.setattr(voucher_services, "EXTEND_INLINE_LIMIT", 2)
    monkeypatch.setattr(voucher_services, "EXTEND_CHUNK", 2)
    campaign = make_campaign(programme)
    issued = [issue(campaign, member) for _ in range(5)]
    voucher_redeem(voucher=issued[0], amount=D("500"), reference="R", actor=SYSTEM)
    target = timezone.now() + timedelta(days=120)
    # when
    job = voucher_services.vouchers_extend_campaign(
        campaign=campaign,
        statuses=["active", "partially_redeemed"],
        expires_before=None,
        is_test=None,
        expires_at=target,
        actor=SYSTEM,
    )
    job_run(job_id=job.pk)
    # then
    job.refresh_from_db()
    assert isinstance(job, Job)
    assert (job.status, job.total, job.done, job.result) == (
        "succeeded",
        4,
        4,
        {"extended": 4, "skipped": 0},
    )
    assert set(Voucher.objects.filter(status="active").values_list("expires_at", flat=True)) == {
        target
    }
    events = OutboxMessage.objects.filter(payload__type="voucher.extended")
    assert [e.payload["data"]["count"] for e in events] == [4]
