"""Payout services: closing a period (totals, rounding, currencies, programmes, test orders,
idempotency, adjustments), approving and marking paid. Runs on SQLite and on Postgres."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from orders.errors import PayoutPeriodInvalidError, PayoutPeriodNotOverError
from orders.models import Order, Payout, PayoutLine
from orders.services import (
    order_cancel,
    payout_approve,
    payout_mark_paid,
    payout_period_containing,
    payouts_close,
)
from orders.services.payouts import payout_period_last_closed
from plum import roles
from plum.actors import SYSTEM
from plum.errors import InvalidInputError, InvalidTransitionError
from plum.models import AuditEvent
from tests.orders.payout_builders import (
    after,
    commission_of,
    make_merchant,
    merchant_campaign,
    sell,
    weekly_period,
)

D = Decimal
pytestmark = pytest.mark.django_db


def lines_of(payout):
    return list(
        payout.lines.order_by("id").values_list(
            "order__booking_id", "kind", "face_value", "commission", "net"
        )
    )


def totals(payout):
    return (
        payout.gross,
        payout.commission,
        payout.net,
        payout.order_count,
        payout.adjustment_count,
    )


def close_week(end):
    return payouts_close(period_end=end, now=after(end))


@pytest.mark.parametrize(
    "kind, at, period",
    [
        ("weekly", datetime(2026, 12, 2, 13, tzinfo=UTC), ("2026-11-30", "2026-12-07")),
        ("weekly", datetime(2026, 11, 30, 0, tzinfo=UTC), ("2026-11-30", "2026-12-07")),
        ("weekly", datetime(2026, 12, 6, 23, 59, tzinfo=UTC), ("2026-11-30", "2026-12-07")),
        ("monthly", datetime(2026, 12, 31, 23, 59, tzinfo=UTC), ("2026-12-01", "2027-01-01")),
        ("monthly", datetime(2026, 2, 1, tzinfo=UTC), ("2026-02-01", "2026-03-01")),
    ],
)
def test_periods_are_utc_weeks_from_monday_and_calendar_months(kind, at, period):
    start, end = payout_period_containing(kind, at)
    assert (start.date().isoformat(), end.date().isoformat()) == period
    assert start.tzinfo == UTC and start.hour == 0


def test_totals_on_a_mixed_data_set(programme, other_programme):
    # given: two weekly merchants, a monthly one, two currencies, two programmes, a held order,
    # a test order, and an order cancelled before the period ended
    jewels = make_merchant(commission="2.50", name="Jewels")
    books = make_merchant(commission="10.00", name="Books")
    spa = make_merchant(commission="5.00", period="monthly", name="Spa")
    jewels_inr = merchant_campaign(programme, jewels, denominations=("500.00", "0.20"))
    jewels_usd = merchant_campaign(programme, jewels, currency="USD", denominations=("25.00",))
    jewels_beta = merchant_campaign(other_programme, jewels)
    books_inr = merchant_campaign(programme, books, denominations=("333.33",))
    spa_inr = merchant_campaign(programme, spa)
    held = merchant_campaign(programme, books, approval_mode="manual", denominations=("333.33",))
    sold = [
        sell(jewels_inr),
        sell(jewels_inr),
        sell(jewels_inr, "0.20"),
        sell(jewels_inr, "0.20"),
        sell(jewels_inr, "0.20"),
        sell(jewels_usd),
        sell(jewels_beta),
        sell(books_inr),
        sell(books_inr),
    ]
    sell(spa_inr)  # paid monthly: not in a weekly close
    sell(held)  # pending approval: not sold
    sell(jewels_inr, is_test=True)  # never counts
    order_cancel(order=sell(books_inr), actor=SYSTEM)  # cancelled before the period's end
    _, end = weekly_period()
    # when
    payouts = close_week(end)
    # then: one payout per (programme, merchant, currency)
    keyed = {(p.programme.slug, p.merchant.name, p.currency): p for p in payouts}
    assert sorted(keyed) == [
        ("alpha", "Books", "INR"),
        ("alpha", "Jewels", "INR"),
        ("alpha", "Jewels", "USD"),
        ("beta", "Jewels", "INR"),
    ]
    # commission per line, half up: 500.00 * 2.5% = 12.50; 0.20 * 2.5% = 0.005 -> 0.01;
    # 333.33 * 10% = 33.333 -> 33.33
    assert commission_of("0.20", "2.50") == D("0.01")
    assert totals(keyed["alpha", "Jewels", "INR"]) == (D("1000.60"), D("25.03"), D("975.57"), 5, 0)
    assert totals(keyed["alpha", "Jewels", "USD"]) == (D("25.00"), D("0.63"), D("24.37"), 1, 0)
    assert totals(keyed["beta", "Jewels", "INR"]) == (D("500.00"), D("12.50"), D("487.50"), 1, 0)
    assert totals(keyed["alpha", "Books", "INR"]) == (D("666.66"), D("66.66"), D("600.00"), 2, 0)
    # rounding per payout would have said 25.015 -> 25.02: the statement adds up, per line
    jewels_lines = lines_of(keyed["alpha", "Jewels", "INR"])
    assert sum(line[3] for line in jewels_lines) == D("25.03")
    assert sum(line[4] for line in jewels_lines) == D("975.57")
    # every sold order exactly once, nothing else
    assert sorted(PayoutLine.objects.values_list("order_id", flat=True)) == sorted(
        o.pk for o in sold
    )
    assert all(p.status == "closed" and p.closed_at == after(end) for p in payouts)


def test_closing_a_period_again_changes_nothing(programme):
    # given
    merchant = make_merchant()
    campaign = merchant_campaign(programme, merchant)
    sell(campaign)
    sell(campaign)
    _, end = weekly_period()
    first = close_week(end)
    before = list(Payout.objects.values()), list(PayoutLine.objects.values())
    audit_count = AuditEvent.objects.count()
    # when
    again = close_week(end)
    again_later = payouts_close(period_end=end, now=end + timedelta(days=3))
    # then
    assert len(first) == 1 and again == [] and again_later == []
    assert (list(Payout.objects.values()), list(PayoutLine.objects.values())) == before
    assert AuditEvent.objects.count() == audit_count


def test_the_default_period_is_the_last_one_that_ended(programme):
    merchant = make_merchant()
    order = sell(merchant_campaign(programme, merchant))
    start, end = weekly_period()
    # when: the beat task's call, a day after the week ended
    payouts = payouts_close(now=end + timedelta(days=1))
    # then
    assert [(p.period_kind, p.period_start, p.period_end) for p in payouts] == [
        ("weekly", start, end)
    ]
    assert list(payouts[0].lines.values_list("order_id", flat=True)) == [order.pk]


def test_an_order_cancelled_after_its_payout_closed_is_adjusted_in_the_next_payout(programme):
    # given: two orders paid out in a closed, approved payout
    merchant = make_merchant(commission="2.50")
    campaign = merchant_campaign(programme, merchant)
    kept, cancelled = sell(campaign), sell(campaign)
    _, end = weekly_period()
    [closed] = close_week(end)
    closed = payout_approve(payout=closed, actor=SYSTEM)
    closed_before = (totals(closed), lines_of(closed))
    # when: one is cancelled, a new one sold, and the next week closes
    order_cancel(order=cancelled, actor=SYSTEM)
    fresh = sell(campaign)
    next_end = end + timedelta(days=7)
    [following] = close_week(next_end)
    # then: the closed payout is as it was; the next one takes the sale back
    closed.refresh_from_db()
    assert (totals(closed), lines_of(closed)) == closed_before
    assert closed.status == "approved"
    assert lines_of(following) == [
        (cancelled.booking_id, "adjustment", D("-500.00"), D("-12.50"), D("-487.50")),
        (fresh.booking_id, "sale", D("500.00"), D("12.50"), D("487.50")),
    ]
    assert totals(following) == (D("0.00"), D("0.00"), D("0.00"), 1, 1)
    assert kept.pk not in following.lines.values_list("order_id", flat=True)
    # and once only: a week later nothing more
    assert close_week(next_end + timedelta(days=7)) == []


def test_an_adjustment_alone_makes_a_negative_payout(programme):
    merchant = make_merchant(commission="10.00")
    order = sell(merchant_campaign(programme, merchant))
    _, end = weekly_period()
    close_week(end)
    order_cancel(order=order, actor=SYSTEM)
    # when
    [payout] = close_week(end + timedelta(days=7))
    # then: the merchant owes the sale back
    assert totals(payout) == (D("-500.00"), D("-50.00"), D("-450.00"), 0, 1)


def test_an_order_cancelled_before_the_period_ended_is_not_paid_out(programme):
    merchant = make_merchant()
    order = sell(merchant_campaign(programme, merchant))
    order_cancel(order=order, actor=SYSTEM)
    _, end = weekly_period()
    assert close_week(end) == []
    assert close_week(end + timedelta(days=7)) == []
    assert PayoutLine.objects.count() == 0


def test_test_orders_never_count(programme):
    merchant = make_merchant()
    campaign = merchant_campaign(programme, merchant)
    test_order = sell(campaign, is_test=True)
    assert test_order.status == "completed"
    _, end = weekly_period()
    assert close_week(end) == []
    assert Payout.objects.count() == 0


def test_a_late_order_is_taken_by_the_next_close(programme):
    # given: the week closed with one order; another one of that week was not taken (as when
    # its transaction committed after the close)
    merchant = make_merchant()
    campaign = merchant_campaign(programme, merchant)
    start, end = weekly_period()
    sell(campaign)
    [first] = close_week(end)
    late = sell(campaign)
    # when
    again = close_week(end)
    [following] = close_week(end + timedelta(days=7))
    # then: the closed week is not rewritten; the late order is paid next week, once
    assert again == []
    assert first.lines.count() == 1
    assert lines_of(following) == [(late.booking_id, "sale", D("500.00"), D("12.50"), D("487.50"))]


def test_orders_of_a_later_period_wait_for_it(programme):
    merchant = make_merchant()
    sell(merchant_campaign(programme, merchant))
    start, _ = weekly_period()
    # the week before the orders' week
    assert close_week(start) == []
    assert PayoutLine.objects.count() == 0


@pytest.mark.parametrize(
    "period_end, error",
    [
        (datetime(2026, 12, 2, tzinfo=UTC), PayoutPeriodInvalidError),  # a Wednesday
        (datetime(2026, 12, 7, 1, tzinfo=UTC), PayoutPeriodInvalidError),  # not midnight
        (datetime(2026, 12, 7), PayoutPeriodInvalidError),  # naive  # noqa: DTZ001
    ],
)
def test_a_period_end_that_ends_no_period_is_refused(programme, period_end, error):
    with pytest.raises(error) as caught:
        payouts_close(period_end=period_end, now=datetime(2027, 1, 1, tzinfo=UTC))
    assert caught.value.code == "payout_period_invalid"
    assert Payout.objects.count() == 0


def test_a_period_that_has_not_ended_is_refused(programme):
    merchant = make_merchant()
    sell(merchant_campaign(programme, merchant))
    _, end = weekly_period()
    with pytest.raises(PayoutPeriodNotOverError):
        payouts_close(period_end=end, now=end - timedelta(seconds=1))
    assert Payout.objects.count() == 0


def test_a_month_end_closes_monthly_merchants_and_a_monday_1st_both(programme):
    # 2027-03-01 is a Monday: both a weekly and a monthly boundary
    monthly = make_merchant(period="monthly")
    weekly = make_merchant(period="weekly")
    sell(merchant_campaign(programme, monthly))
    sell(merchant_campaign(programme, weekly))
    end = datetime(2027, 3, 1, tzinfo=UTC)
    payouts = payouts_close(period_end=end, now=after(end))
    assert sorted(
        (p.merchant.payout_period, p.period_start.date().isoformat()) for p in payouts
    ) == [
        ("monthly", "2027-02-01"),
        ("weekly", "2027-02-22"),
    ]


# --- approve and mark paid ----------------------------------------------------------------


@pytest.fixture
def closed_payout(programme):
    merchant = make_merchant()
    sell(merchant_campaign(programme, merchant))
    _, end = weekly_period()
    [payout] = close_week(end)
    return payout


def test_approve_then_mark_paid_records_who_and_audits(closed_payout, make_user):
    # given
    finance = make_user(roles.FINANCE, closed_payout.programme)
    # when
    approved = payout_approve(payout=closed_payout, actor=finance)
    paid = payout_mark_paid(payout=approved, actor=finance, reference="NEFT-123")
    # then
    assert (paid.status, paid.approved_by, paid.paid_by, paid.paid_reference) == (
        "paid",
        finance,
        finance,
        "NEFT-123",
    )
    assert paid.approved_at is not None and paid.paid_at is not None
    events = AuditEvent.objects.filter(object_type="orders.payout", object_id=str(paid.pk))
    assert list(events.order_by("id").values_list("action", "actor_label")) == [
        ("payout.close", "system"),
        ("payout.approve", finance.username),
        ("payout.mark_paid", finance.username),
    ]
    assert events.order_by("id").last().changes["status"] == ["approved", "paid"]


@pytest.mark.parametrize(
    "steps, refused",
    [
        ([], payout_mark_paid),  # closed -> paid skips approval
        ([payout_approve], payout_approve),  # approved twice
        ([payout_approve, payout_mark_paid], payout_mark_paid),  # paid twice
        ([payout_approve, payout_mark_paid], payout_approve),  # paid -> approved
    ],
)
def test_transitions_outside_the_table_are_refused_and_change_nothing(
    closed_payout, steps, refused
):
    for step in steps:
        step(payout=closed_payout, actor=SYSTEM)
    before = Payout.objects.filter(pk=closed_payout.pk).values().get()
    audit_count = AuditEvent.objects.count()
    with pytest.raises(InvalidTransitionError) as caught:
        refused(payout=closed_payout, actor=SYSTEM)
    assert caught.value.code == "invalid_transition"
    assert Payout.objects.filter(pk=closed_payout.pk).values().get() == before
    assert AuditEvent.objects.count() == audit_count


def test_a_too_long_payment_reference_is_refused(closed_payout):
    approved = payout_approve(payout=closed_payout, actor=SYSTEM)
    with pytest.raises(InvalidInputError) as caught:
        payout_mark_paid(payout=approved, actor=SYSTEM, reference="x" * 121)
    assert caught.value.code == "invalid"
    approved.refresh_from_db()
    assert approved.status == "approved"


def test_a_payout_states_the_period_as_of_its_end(programme):
    # given: an order completed last week (set-up moves its completion back), cancelled now,
    # after last week ended but before anyone closed it
    merchant = make_merchant(commission="2.50")
    order = sell(merchant_campaign(programme, merchant))
    start, end = payout_period_last_closed("weekly", timezone.now())
    Order.objects.filter(pk=order.pk).update(completed_at=start + timedelta(hours=1))
    order_cancel(order=Order.objects.get(pk=order.pk), actor=SYSTEM)
    # when: last week closes late, then this week
    [last_week] = close_week(end)
    [this_week] = close_week(end + timedelta(days=7))
    # then: at last week's end the order was sold; this week takes it back
    assert lines_of(last_week) == [(order.booking_id, "sale", D("500.00"), D("12.50"), D("487.50"))]
    assert lines_of(this_week) == [
        (order.booking_id, "adjustment", D("-500.00"), D("-12.50"), D("-487.50"))
    ]
