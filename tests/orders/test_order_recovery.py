"""Recovering a voucher (campaigns.vouchers_recover) cancels the order holding it, in the
recovery's transaction, through the hook orders registers in OrdersConfig.ready()."""

import itertools
from decimal import Decimal

import pytest
from django.core.management import call_command

from campaigns.models import CampaignMemberCounter, Voucher
from campaigns.services.vouchers import (
    campaign_counters_from_vouchers,
    voucher_redeem,
    vouchers_recover,
)
from orders.models import Order
from orders.services import order_cancel, order_issue, order_redeem_points
from plum.actors import SYSTEM
from plum.errors import InvalidTransitionError
from plum.models import AuditEvent, OutboxMessage
from tests.campaigns.builders import make_reward
from tests.factories import MemberFactory
from tests.orders.test_order_concurrency import run_in_parallel
from wallets.models import LedgerTransaction, TransactionKind
from wallets.selectors import wallet_get
from wallets.services import points_earn

D = Decimal
pytestmark = pytest.mark.django_db
_keys = itertools.count(1)


def issue(campaign, member):
    return order_issue(campaign=campaign, member=member, source="api", actor=SYSTEM)


def counters(campaign):
    campaign.refresh_from_db()
    return campaign.issued_count, campaign.issued_value


def cancelled_events(order):
    return [
        m.payload["data"]
        for m in OutboxMessage.objects.filter(kind="event").order_by("created_at")
        if m.payload["type"] == "order.cancelled" and m.payload["data"]["order_id"] == order.pk
    ]


def test_recovering_an_issued_voucher_to_the_pool_cancels_its_order(programme, make_campaign):
    # given
    campaign = make_campaign(programme, per_member_cap=3)
    member = MemberFactory(programme=programme)
    order = issue(campaign, member)
    voucher_id = order.voucher_id
    # when
    result = vouchers_recover(vouchers=Voucher.objects.filter(pk=voucher_id), actor=SYSTEM)
    # then: the order is cancelled and lets go of the pool code; the counts came back once
    order.refresh_from_db()
    assert result == {"recovered": 1, "refused": []}
    assert (order.status, order.voucher_id) == ("cancelled", None)
    assert order.cancelled_at is not None
    assert Voucher.objects.get(pk=voucher_id).status == "available"
    assert counters(campaign) == (0, D("0"))
    assert CampaignMemberCounter.objects.get(campaign=campaign, member=member).issued == 0
    assert campaign_counters_from_vouchers(campaign) == (0, D("0"))
    audit = AuditEvent.objects.get(action="order.cancel", object_id=str(order.pk))
    assert audit.changes == {
        "status": ["completed", "cancelled"],
        "voucher_status": [None, "available"],
        "reason": [None, "voucher_recovered"],
        "cancelled_by": [None, "voucher_recovery"],
        "voucher": [voucher_id, None],
    }
    [event] = cancelled_events(order)
    assert (event["reason"], event["rejected"], event["status"]) == (
        "voucher_recovered",
        False,
        "cancelled",
    )


def test_retiring_a_voucher_cancels_its_order_and_keeps_the_code_on_it(programme, make_campaign):
    # given
    campaign = make_campaign(programme)
    order = issue(campaign, MemberFactory(programme=programme))
    # when
    vouchers_recover(
        vouchers=Voucher.objects.filter(pk=order.voucher_id), actor=SYSTEM, to_pool=False
    )
    # then: a retired code is never issued again, so the order keeps it
    order.refresh_from_db()
    assert order.status == "cancelled"
    assert order.voucher.status == "recovered"
    assert counters(campaign) == (0, D("0"))
    assert AuditEvent.objects.get(action="order.cancel").changes["cancelled_by"] == [
        None,
        "voucher_recovery",
    ]


def test_a_recovered_order_cannot_be_cancelled_again_and_nothing_changes(
    programme, make_campaign, snapshot
):
    # given
    campaign = make_campaign(programme)
    order = issue(campaign, MemberFactory(programme=programme))
    vouchers_recover(vouchers=Voucher.objects.filter(pk=order.voucher_id), actor=SYSTEM)
    before = snapshot()
    # when / then
    with pytest.raises(InvalidTransitionError):
        order_cancel(order=order, actor=SYSTEM)
    assert snapshot() == before
    assert counters(campaign) == (0, D("0"))


def test_a_pool_code_reissued_after_recovery_is_not_shown_on_the_old_order(
    programme, make_campaign
):
    # given: an order's code recovered to the pool, then issued to another member
    campaign = make_campaign(programme)
    first_member, second_member = MemberFactory.create_batch(2, programme=programme)
    first = issue(campaign, first_member)
    code_id = first.voucher_id
    vouchers_recover(vouchers=Voucher.objects.filter(pk=code_id), actor=SYSTEM)
    # when
    second = issue(campaign, second_member)
    # then
    first.refresh_from_db()
    assert second.voucher_id == code_id
    assert (first.status, first.voucher_id) == ("cancelled", None)
    assert list(Order.objects.filter(voucher_id=code_id)) == [second]
    assert counters(campaign) == (1, D("500.00"))
    # and cancelling the new holder cancels the code and releases its count
    assert order_cancel(order=second, actor=SYSTEM).voucher.status == "cancelled"
    assert counters(campaign) == (0, D("0"))


def test_recovering_a_storefront_redemption_reverses_the_points_once(programme, make_campaign):
    # given: 1,000 points paid for a 500.00 reward
    reward = make_reward(currency=programme.currency, points_price=2)
    campaign = make_campaign(programme, reward=reward, in_storefront=True)
    member = MemberFactory(programme=programme)
    points_earn(
        member=member, points=1500, reference="award", idempotency_key="earn-1", actor=SYSTEM
    )
    order = order_redeem_points(campaign=campaign, member=member, actor=SYSTEM)
    assert wallet_get(member=member).balance == 500
    # when
    vouchers_recover(vouchers=Voucher.objects.filter(pk=order.voucher_id), actor=SYSTEM)
    with pytest.raises(InvalidTransitionError):
        order_cancel(order=order, actor=SYSTEM)
    # then
    order.refresh_from_db()
    assert order.status == "cancelled"
    assert wallet_get(member=member).balance == 1500
    reversal = LedgerTransaction.objects.get(kind=TransactionKind.REVERSAL)
    assert (reversal.reverses_id, reversal.reason) == (
        order.points_transaction_id,
        "order_cancelled",
    )
    audit = AuditEvent.objects.get(action="order.cancel")
    assert audit.changes["points_reversal"] == [None, reversal.pk]
    assert counters(campaign) == (0, D("0"))
    call_command("check_ledger")


def test_campaign_wide_recovery_cancels_every_holding_order_and_spares_the_redeemed(
    programme, make_campaign
):
    # given: four orders; one voucher partly redeemed, one order already cancelled
    campaign = make_campaign(programme)
    members = MemberFactory.create_batch(4, programme=programme)
    orders = [issue(campaign, m) for m in members]
    voucher_redeem(voucher=orders[0].voucher, amount=D("10.00"), reference="pos", actor=SYSTEM)
    order_cancel(order=orders[1], actor=SYSTEM)
    # when
    result = vouchers_recover(vouchers=Voucher.objects.filter(campaign=campaign), actor=SYSTEM)
    # then
    assert result["recovered"] == 2
    assert sorted(r["status"] for r in result["refused"]) == ["cancelled", "partially_redeemed"]
    statuses = list(Order.objects.order_by("pk").values_list("status", flat=True))
    assert statuses == ["completed", "cancelled", "cancelled", "cancelled"]
    assert AuditEvent.objects.filter(action="order.cancel").count() == 3
    assert (
        AuditEvent.objects.filter(
            action="order.cancel", changes__cancelled_by=[None, "voucher_recovery"]
        ).count()
        == 2
    )
    assert counters(campaign) == (1, D("500.00"))
    assert campaign_counters_from_vouchers(campaign) == (1, D("500.00"))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_recover_racing_cancel_releases_exactly_once(programme, make_campaign):
    # given: 12 orders (each member twice, per-member cap 5), each raced by a cancel and a
    # recovery of its voucher on parallel connections
    campaign = make_campaign(programme, per_member_cap=5)
    members = MemberFactory.create_batch(6, programme=programme)
    orders = [issue(campaign, m) for m in members * 2]
    calls = []
    for order in orders:
        calls.append(lambda o=order: order_cancel(order=o, actor=SYSTEM))
        calls.append(
            lambda o=order: vouchers_recover(
                vouchers=Voucher.objects.filter(pk=o.voucher_id), actor=SYSTEM
            )
        )
    # when
    results = run_in_parallel(calls, workers=8)
    # then: every order cancelled once (by one side or the other), counts released once
    cancelled = [r for r in results[0::2] if isinstance(r, Order)]
    recovered = [r["recovered"] for r in results[1::2] if isinstance(r, dict)]
    errors = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(e, InvalidTransitionError) for e in errors), errors
    assert len(cancelled) + sum(recovered) == 12
    assert len(errors) == 12 - len(cancelled)
    assert set(Order.objects.values_list("status", flat=True)) == {"cancelled"}
    assert AuditEvent.objects.filter(action="order.cancel").count() == 12
    assert counters(campaign) == (0, D("0"))
    assert campaign_counters_from_vouchers(campaign) == (0, D("0"))
    assert set(CampaignMemberCounter.objects.values_list("issued", flat=True)) == {0}
    statuses = sorted(Voucher.objects.values_list("status", flat=True))
    assert statuses.count("cancelled") == len(cancelled)
    assert statuses.count("available") == sum(recovered)
