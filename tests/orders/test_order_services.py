import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns.errors import (
    BudgetExhaustedError,
    CampaignExhaustedError,
    CampaignNotActiveError,
    MemberCapReachedError,
    PoolExhaustedError,
)
from campaigns.models import CampaignMemberCounter, Voucher
from campaigns.services.campaigns import campaign_transition
from campaigns.services.vouchers import (
    campaign_counters_from_vouchers,
    voucher_redeem,
    vouchers_expire_lapsed,
    vouchers_recover,
)
from orders.errors import (
    OrderNotAwaitingApprovalError,
    OrderVoucherUsedError,
    RecipientInvalidError,
)
from orders.models import ORDER_TRANSITIONS, Order
from orders.services import issuance as services
from orders.services import (
    order_approve,
    order_cancel,
    order_issue,
    order_issue_to_recipient,
    order_reject,
)
from plum.actors import SYSTEM
from plum.errors import InvalidInputError, InvalidTransitionError
from plum.models import AuditEvent, Member, OutboxMessage
from tests.factories import MemberFactory

D = Decimal
pytestmark = pytest.mark.django_db


def issue(campaign, member, **kwargs):
    return order_issue(
        campaign=campaign, member=member, source="api", actor=SYSTEM, **{"reference": "", **kwargs}
    )


def counters(campaign):
    campaign.refresh_from_db()
    return campaign.issued_count, campaign.issued_value


def member_counter(campaign, member):
    row = CampaignMemberCounter.objects.filter(campaign=campaign, member=member).first()
    return row.issued if row else None


def events_of(order):
    return [
        m.payload["type"]
        for m in OutboxMessage.objects.filter(kind="event").order_by("created_at", "pk")
        if m.payload["data"].get("booking_id") == order.booking_id
    ]


def audit_actions(order):
    return list(
        AuditEvent.objects.filter(object_type="orders.order", object_id=str(order.pk))
        .order_by("pk")
        .values_list("action", flat=True)
    )


# --- issue -----------------------------------------------------------------------------------


def test_issue_fulfils_at_once_and_counts_once(campaign, member):
    # when
    order = issue(campaign, member, reference="crm-1")
    # then
    order.refresh_from_db()
    assert re.fullmatch(r"PLM-[A-HJKMNP-Z2-9]{4}-[A-HJKMNP-Z2-9]{4}", order.booking_id)
    assert (order.status, order.approval_state, order.source) == (
        "completed",
        "not_required",
        "api",
    )
    assert (order.value, order.currency, order.reference, order.is_test) == (
        D("500.00"),
        "INR",
        "crm-1",
        False,
    )
    assert (order.voucher.status, order.voucher.member_id) == ("active", member.pk)
    assert order.completed_at is not None and order.cancelled_at is None
    assert counters(campaign) == (1, D("500.00"))
    assert audit_actions(order) == ["order.create"]
    assert events_of(order) == ["order.created", "order.completed"]


def test_issue_held_for_approval_takes_no_counter(programme, make_campaign, member):
    # given
    campaign = make_campaign(programme, approval_mode="manual", max_rewards=1)
    # when
    order = issue(campaign, member)
    # then
    order.refresh_from_db()
    assert (order.status, order.approval_state, order.voucher_id) == ("pending", "pending", None)
    assert counters(campaign) == (0, D("0"))
    assert Voucher.objects.count() == 0
    assert events_of(order) == ["order.created", "order.pending_approval"]


def test_test_issue_makes_a_test_order_and_code_touching_no_counter(
    programme, make_campaign, member
):
    campaign = make_campaign(programme, max_rewards=1, per_member_cap=1)
    first = issue(campaign, member, is_test=True)
    second = issue(campaign, member, is_test=True)
    assert [o.is_test for o in (first, second)] == [True, True]
    assert [o.voucher.is_test for o in (first, second)] == [True, True]
    assert counters(campaign) == (0, D("0"))
    assert member_counter(campaign, member) is None


def test_issue_a_variable_value(programme, make_campaign, member):
    campaign = make_campaign(programme, value=D("500.00"))
    order = issue(campaign, member, value=D("1000.00"))
    assert (order.value, order.voucher.face_value) == (D("1000.00"), D("1000.00"))
    assert counters(campaign) == (1, D("1000.00"))


def _exhausted(programme, make_campaign, member):
    campaign = make_campaign(programme, max_rewards=1)
    issue(campaign, MemberFactory(programme=programme))
    return campaign


def _over_budget(programme, make_campaign, member):
    campaign = make_campaign(programme, budget=D("700.00"))
    issue(campaign, MemberFactory(programme=programme))
    return campaign


def _capped(programme, make_campaign, member):
    campaign = make_campaign(programme, per_member_cap=1)
    issue(campaign, member)
    return campaign


def _paused(programme, make_campaign, member):
    campaign = make_campaign(programme)
    return campaign_transition(campaign=campaign, action="pause", actor=SYSTEM)


def _draft(programme, make_campaign, member):
    return make_campaign(programme, active=False)


def _empty_pool(programme, make_campaign, member):
    return make_campaign(programme, code_source="pool")


def _held_but_paused(programme, make_campaign, member):
    campaign = make_campaign(programme, approval_mode="manual")
    return campaign_transition(campaign=campaign, action="pause", actor=SYSTEM)


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (_exhausted, CampaignExhaustedError),
        (_over_budget, BudgetExhaustedError),
        (_capped, MemberCapReachedError),
        (_paused, CampaignNotActiveError),
        (_draft, CampaignNotActiveError),
        (_empty_pool, PoolExhaustedError),
        (_held_but_paused, CampaignNotActiveError),
    ],
)
def test_a_refused_issue_changes_nothing(programme, make_campaign, member, snapshot, build, error):
    # given
    campaign = build(programme, make_campaign, member)
    before = snapshot()
    # when
    with pytest.raises(error) as refused:
        issue(campaign, member)
    # then
    assert refused.value.status == 409
    assert snapshot() == before


def test_a_refused_issue_to_a_new_recipient_creates_no_member(programme, make_campaign, snapshot):
    campaign = make_campaign(programme, max_rewards=0)
    before = snapshot()
    with pytest.raises(CampaignExhaustedError):
        order_issue_to_recipient(
            campaign=campaign,
            recipient={"external_id": "NEW-1", "email": "new@example.com"},
            source="api",
            actor=SYSTEM,
        )
    assert snapshot() == before
    assert not Member.objects.filter(external_id="NEW-1").exists()


def test_issue_to_a_recipient_creates_then_updates_the_member(programme, campaign):
    first = order_issue_to_recipient(
        campaign=campaign,
        recipient={"external_id": "EMP-9", "name": "Asha", "phone": "+919800000001"},
        source="api",
        actor=SYSTEM,
    )
    second = order_issue_to_recipient(
        campaign=campaign,
        recipient={"external_id": "EMP-9", "email": "asha@example.com"},
        source="api",
        actor=SYSTEM,
    )
    member = Member.objects.get(programme=programme, external_id="EMP-9")
    assert first.member_id == second.member_id == member.pk
    assert (member.name, member.phone, member.email) == (
        "Asha",
        "+919800000001",
        "asha@example.com",
    )


def test_an_invalid_recipient_is_refused_with_its_fields(programme, campaign, snapshot):
    before = snapshot()
    with pytest.raises(RecipientInvalidError) as refused:
        order_issue_to_recipient(
            campaign=campaign,
            recipient={"external_id": "EMP-9", "phone": "98000", "country": "india"},
            source="api",
            actor=SYSTEM,
        )
    assert (refused.value.code, refused.value.status) == ("invalid_recipient", 422)
    assert sorted(refused.value.fields) == ["recipient.country", "recipient.phone"]
    assert snapshot() == before


def test_a_member_of_another_programme_is_refused(campaign, other_programme, snapshot):
    stranger = MemberFactory(programme=other_programme)
    before = snapshot()
    with pytest.raises(RecipientInvalidError):
        issue(campaign, stranger)
    assert snapshot() == before


def test_a_value_the_reward_is_not_sold_at_is_refused(campaign, member, snapshot):
    before = snapshot()
    with pytest.raises(InvalidInputError) as refused:
        issue(campaign, member, value=D("123.00"))
    assert list(refused.value.fields) == ["value"]
    assert snapshot() == before


def test_a_booking_id_collision_draws_again(campaign, member, monkeypatch):
    # given: an order holding PLM-AAAA-AAAA, and a generator that offers it first
    taken = issue(campaign, member)
    drawn = iter([taken.booking_id, "PLM-BBBB-BBBB"])
    monkeypatch.setattr(services, "booking_id_new", lambda: next(drawn))
    # when
    order = issue(campaign, MemberFactory(programme=campaign.programme))
    # then
    assert order.booking_id == "PLM-BBBB-BBBB"
    assert Order.objects.count() == 2


def test_a_voucher_code_collision_draws_again_in_the_same_transaction(
    campaign, member, monkeypatch
):
    # given: a voucher holding a code, and a generator that offers that code first
    from campaigns.codes import CodeGenerator

    taken = issue(campaign, member)
    real = CodeGenerator.generate
    offered = iter([[taken.voucher.code]])
    monkeypatch.setattr(
        CodeGenerator, "generate", lambda self, n: next(offered, None) or real(self, n)
    )
    # when
    order = issue(campaign, MemberFactory(programme=campaign.programme))
    # then: a second code was drawn, and the issuing transaction went on to the end
    assert order.voucher.code != taken.voucher.code
    assert Voucher.objects.filter(code=taken.voucher.code).count() == 1
    assert Voucher.objects.get(pk=order.voucher.pk).member_id == order.member_id
    assert Order.objects.filter(status="completed").count() == 2
    campaign.refresh_from_db()
    assert campaign.issued_count == 2


# --- approve and reject ----------------------------------------------------------------------


@pytest.fixture
def held(programme, make_campaign):
    return make_campaign(programme, approval_mode="manual", max_rewards=1, per_member_cap=1)


def test_approve_fulfils_and_counts(held, member):
    order = issue(held, member)
    approved = order_approve(order=order, actor=SYSTEM)
    assert (approved.status, approved.approval_state) == ("completed", "approved")
    assert approved.voucher.status == "active"
    assert approved.approved_at == approved.completed_at is not None
    assert counters(held) == (1, D("500.00"))
    assert member_counter(held, member) == 1
    assert audit_actions(order) == ["order.create", "order.approve"]
    assert events_of(order) == ["order.created", "order.pending_approval", "order.completed"]


def test_approve_refused_by_governance_leaves_the_order_pending(held, member, snapshot):
    # given: two held orders, one reward left
    first = issue(held, member)
    second = issue(held, MemberFactory(programme=held.programme))
    order_approve(order=first, actor=SYSTEM)
    before = snapshot()
    # when
    with pytest.raises(CampaignExhaustedError):
        order_approve(order=second, actor=SYSTEM)
    # then
    assert snapshot() == before
    second.refresh_from_db()
    assert (second.status, second.approval_state) == ("pending", "pending")


def test_approving_twice_is_refused(held, member, snapshot):
    order = issue(held, member)
    order_approve(order=order, actor=SYSTEM)
    before = snapshot()
    with pytest.raises(InvalidTransitionError):
        order_approve(order=order, actor=SYSTEM)
    assert snapshot() == before


def test_an_order_that_needed_no_approval_cannot_be_approved_or_rejected(campaign, member):
    order = issue(campaign, member)
    with pytest.raises(InvalidTransitionError):
        order_approve(order=order, actor=SYSTEM)
    with pytest.raises(InvalidTransitionError):
        order_reject(order=order, actor=SYSTEM)


def test_reject_cancels_and_takes_nothing(held, member):
    order = issue(held, member)
    rejected = order_reject(order=order, actor=SYSTEM, reason="duplicate claim")
    assert (rejected.status, rejected.approval_state) == ("cancelled", "rejected")
    assert rejected.cancelled_at is not None
    assert counters(held) == (0, D("0"))
    assert events_of(order)[-1] == "order.cancelled"
    with pytest.raises(InvalidTransitionError):
        order_approve(order=order, actor=SYSTEM)


def test_a_cancelled_held_order_is_no_longer_awaiting_approval(held, member):
    order = issue(held, member)
    order_cancel(order=order, actor=SYSTEM)
    with pytest.raises(InvalidTransitionError):
        order_approve(order=order, actor=SYSTEM)


def test_not_awaiting_approval_is_an_invalid_transition():
    assert issubclass(OrderNotAwaitingApprovalError, InvalidTransitionError)


# --- cancel ----------------------------------------------------------------------------------


def test_cancel_a_pending_order(held, member):
    order = issue(held, member)
    cancelled = order_cancel(order=order, actor=SYSTEM, reason="asked by HR")
    assert (cancelled.status, cancelled.approval_state) == ("cancelled", "pending")
    assert counters(held) == (0, D("0"))
    assert audit_actions(order) == ["order.create", "order.cancel"]


def test_cancelling_releases_exactly_what_fulfilment_took(programme, make_campaign, member):
    # given: a campaign with every limit, one reward already out to someone else
    campaign = make_campaign(
        programme, max_rewards=5, budget=D("5000.00"), per_member_cap=2, value=D("500.00")
    )
    issue(campaign, MemberFactory(programme=programme))
    issue(campaign, member)
    before = (counters(campaign), member_counter(campaign, member))
    order = issue(campaign, member, value=D("1000.00"))
    assert (counters(campaign), member_counter(campaign, member)) == ((3, D("2000.00")), 2)
    # when
    cancelled = order_cancel(order=order, actor=SYSTEM)
    # then
    assert (counters(campaign), member_counter(campaign, member)) == before
    assert cancelled.voucher.status == "cancelled"
    assert counters(campaign) == campaign_counters_from_vouchers(campaign)
    assert events_of(order) == ["order.created", "order.completed", "order.cancelled"]
    # and the released reward can be issued again
    assert issue(campaign, member).status == "completed"


def test_cancelling_a_test_order_touches_no_counter(campaign, member):
    issue(campaign, member)
    order = issue(campaign, member, is_test=True)
    order_cancel(order=order, actor=SYSTEM)
    assert counters(campaign) == (1, D("500.00"))


def test_cancelling_twice_is_refused_and_changes_nothing(campaign, member, snapshot):
    order = issue(campaign, member)
    order_cancel(order=order, actor=SYSTEM)
    before = snapshot()
    with pytest.raises(InvalidTransitionError):
        order_cancel(order=order, actor=SYSTEM)
    assert snapshot() == before
    assert counters(campaign) == (0, D("0"))


def test_an_order_whose_voucher_was_redeemed_cannot_be_cancelled(campaign, member, snapshot):
    order = issue(campaign, member)
    voucher_redeem(voucher=order.voucher, amount=D("10.00"), reference="pos-1", actor=SYSTEM)
    before = snapshot()
    with pytest.raises(OrderVoucherUsedError):
        order_cancel(order=order, actor=SYSTEM)
    assert snapshot() == before


def test_a_recovered_voucher_reissued_to_a_later_order_stays_with_it(campaign, member):
    # given: an order whose unused voucher went back to the pool (which cancelled the order)
    # and out again, same member
    first = issue(campaign, member)
    code_id = first.voucher_id
    vouchers_recover(vouchers=Voucher.objects.filter(pk=code_id), actor=SYSTEM)
    assert counters(campaign) == (0, D("0"))
    second = issue(campaign, member)
    assert second.voucher_id == code_id
    # when: the first order is cancelled again
    with pytest.raises(InvalidTransitionError):
        order_cancel(order=first, actor=SYSTEM)
    # then: the first order was cancelled by the recovery and let go of the code; the code
    # stays with the order holding it now
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.voucher_id, second.status) == ("cancelled", None, "completed")
    assert second.voucher.status == "active"
    assert counters(campaign) == (1, D("500.00"))
    # and cancelling the holder cancels the code and releases the count
    assert order_cancel(order=second, actor=SYSTEM).voucher.status == "cancelled"
    assert counters(campaign) == (0, D("0"))


def test_recovering_an_orders_voucher_cancels_the_order_and_leaves_the_pool_code_alone(
    campaign, member
):
    order = issue(campaign, member)
    code_id = order.voucher_id
    vouchers_recover(vouchers=Voucher.objects.filter(pk=code_id), actor=SYSTEM)
    order.refresh_from_db()
    assert (order.status, order.voucher_id) == ("cancelled", None)
    assert Voucher.objects.get(pk=code_id).status == "available"
    assert counters(campaign) == (0, D("0"))


# --- the transition table --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    [
        ("pending", "completed", True),
        ("pending", "cancelled", True),
        ("completed", "cancelled", True),
        ("completed", "pending", False),
        ("cancelled", "pending", False),
        ("cancelled", "completed", False),
    ],
)
def test_order_transitions(source, target, allowed):
    assert ORDER_TRANSITIONS.allowed(source, target) is allowed


def test_a_completed_order_without_a_voucher_is_refused_by_the_database(campaign, member):
    with pytest.raises(IntegrityError), transaction.atomic():
        Order.objects.create(
            booking_id="PLM-TEST-0001",
            programme=campaign.programme,
            campaign=campaign,
            member=member,
            value=D("500.00"),
            currency="INR",
            source="api",
            status="completed",
        )


def test_an_order_whose_voucher_lapsed_unused_can_be_cancelled(campaign, member):
    # given
    order = issue(campaign, member)
    vouchers_expire_lapsed(now=timezone.now() + timedelta(days=31))
    # when
    cancelled = order_cancel(order=order, actor=SYSTEM)
    # then
    campaign.refresh_from_db()
    assert cancelled.status == "cancelled"
    assert Voucher.objects.get(pk=order.voucher_id).status == "cancelled"
    assert (campaign.issued_count, campaign.issued_value) == (0, D("0"))


# --- what leaves the system ------------------------------------------------------------------


def test_the_completed_event_and_the_audit_record_say_exactly_what_happened(campaign, member):
    order = issue(campaign, member, reference="crm-7")
    message = OutboxMessage.objects.get(kind="event", payload__type="order.completed")
    event = AuditEvent.objects.get(action="order.create")
    assert message.programme_id == campaign.programme_id
    assert message.payload["data"] == {
        "booking_id": order.booking_id,
        "order_id": order.pk,
        "campaign_id": campaign.pk,
        "member_external_id": "EMP-001",
        "value": "500.00",
        "currency": "INR",
        "source": "api",
        "status": "completed",
        "approval_state": "not_required",
        "is_test": False,
        "reference": "crm-7",
        "voucher_id": order.voucher_id,
    }
    assert (event.actor_label, event.programme_id, event.object_id) == (
        "system",
        campaign.programme_id,
        str(order.pk),
    )
    assert event.changes == {
        "booking_id": [None, order.booking_id],
        "status": [None, "completed"],
        "approval_state": [None, "not_required"],
        "campaign": [None, campaign.pk],
        "member": [None, member.pk],
        "value": [None, "500.00"],
        "source": [None, "api"],
        "voucher": [None, order.voucher_id],
        "is_test": [None, False],
    }
