"""Payout invariants that Postgres itself enforces, whatever the client: closed payouts and their
lines cannot be rewritten through raw SQL, each order is paid out once even without the service's
lock, and parallel closes of one period give one payout with each order once."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from orders.models import Payout, PayoutLine
from orders.services import order_cancel, payout_approve, payouts_close
from plum.actors import SYSTEM
from tests.orders.payout_builders import (
    after,
    make_merchant,
    merchant_campaign,
    sell,
    weekly_period,
)

D = Decimal
pytestmark = [pytest.mark.postgres]


def _raw(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


@pytest.fixture
def closed(programme):
    """A closed payout of two orders, and the orders."""
    merchant = make_merchant(commission="2.50")
    campaign = merchant_campaign(programme, merchant)
    orders = [sell(campaign), sell(campaign)]
    _, end = weekly_period()
    [payout] = payouts_close(period_end=end, now=after(end))
    return payout, orders


@pytest.mark.django_db
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE orders_payoutline SET face_value = 1, commission = 0, net = 1 WHERE payout_id = %s",
        "UPDATE orders_payoutline SET payout_id = payout_id WHERE payout_id = %s",
        "DELETE FROM orders_payoutline WHERE payout_id = %s",
        "UPDATE orders_payout SET gross = 0, commission = 0, net = 0 WHERE id = %s",
        "UPDATE orders_payout SET order_count = 0 WHERE id = %s",
        "UPDATE orders_payout SET period_end = period_end + interval '1 day' WHERE id = %s",
        "UPDATE orders_payout SET status = 'paid', approved_at = now(), paid_at = now() "
        "WHERE id = %s",
        "UPDATE orders_payout SET status = 'draft' WHERE id = %s",
        "DELETE FROM orders_payout WHERE id = %s",
    ],
)
def test_raw_sql_cannot_rewrite_a_closed_payout_or_its_lines(closed, statement):
    # given
    payout, _ = closed
    before = (
        Payout.objects.filter(pk=payout.pk).values().get(),
        list(PayoutLine.objects.filter(payout=payout).order_by("id").values()),
    )
    # when / then
    with pytest.raises(DatabaseError, match="payout|append-only"), transaction.atomic():
        _raw(statement, [payout.pk])
    assert (
        Payout.objects.filter(pk=payout.pk).values().get(),
        list(PayoutLine.objects.filter(payout=payout).order_by("id").values()),
    ) == before


@pytest.mark.django_db
def test_raw_sql_cannot_add_a_line_to_a_closed_payout(closed, programme):
    payout, _ = closed
    extra = sell(merchant_campaign(programme, payout.merchant))
    with pytest.raises(DatabaseError, match="lines cannot be added"), transaction.atomic():
        _raw(
            "INSERT INTO orders_payoutline (payout_id, order_id, kind, occurred_at, "
            "commission_percent, face_value, commission, net) "
            "VALUES (%s, %s, 'sale', now(), 2.5, 500, 12.5, 487.5)",
            [payout.pk, extra.pk],
        )
    assert payout.lines.count() == 2


@pytest.mark.django_db
def test_raw_sql_may_only_move_status_along_the_table(closed):
    # the trigger mirrors PAYOUT_TRANSITIONS: closed -> approved is a legal move
    payout, _ = closed
    assert (
        _raw(
            "UPDATE orders_payout SET status = 'approved', approved_at = now() WHERE id = %s",
            [payout.pk],
        )
        == 1
    )
    payout.refresh_from_db()
    assert (payout.status, payout.gross) == ("approved", D("1000.00"))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("table", ["orders_payoutline", "orders_payout"])
def test_truncate_is_refused(closed, table):
    # committed rows, so that no deferred check of this transaction is pending
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        _raw("SET LOCAL plum.allow_truncate = 'off'")
        _raw(f"TRUNCATE {table} CASCADE")
    assert (Payout.objects.count(), PayoutLine.objects.count()) == (1, 2)


@pytest.mark.django_db
def test_an_order_is_paid_out_once_even_past_the_service(closed):
    # given: a draft payout written by raw SQL, as a buggy or concurrent writer would
    payout, orders = closed
    with pytest.raises(IntegrityError, match="payout_line_once_per_order"), transaction.atomic():
        _raw(
            "INSERT INTO orders_payout (programme_id, merchant_id, currency, period_kind, "
            "period_start, period_end, status, gross, commission, net, order_count, "
            "adjustment_count, created_at, paid_reference) "
            "SELECT programme_id, merchant_id, currency, period_kind, period_end, "
            "period_end + interval '7 days', 'draft', 0, 0, 0, 0, 0, now(), '' "
            "FROM orders_payout WHERE id = %s",
            [payout.pk],
        )
        draft_id = Payout.objects.get(status="draft").pk
        # when: the same order goes on a second sale line
        _raw(
            "INSERT INTO orders_payoutline (payout_id, order_id, kind, occurred_at, "
            "commission_percent, face_value, commission, net) "
            "VALUES (%s, %s, 'sale', now(), 2.5, 500, 12.5, 487.5)",
            [draft_id, orders[0].pk],
        )


@pytest.mark.django_db
def test_one_payout_per_merchant_and_period_even_past_the_service(closed):
    payout, _ = closed
    with (
        pytest.raises(IntegrityError, match="payout_one_per_merchant_period"),
        transaction.atomic(),
    ):
        _raw(
            "INSERT INTO orders_payout (programme_id, merchant_id, currency, period_kind, "
            "period_start, period_end, status, gross, commission, net, order_count, "
            "adjustment_count, created_at, paid_reference) "
            "SELECT programme_id, merchant_id, currency, period_kind, period_start, period_end, "
            "'draft', 0, 0, 0, 0, 0, now(), '' FROM orders_payout WHERE id = %s",
            [payout.pk],
        )


@pytest.mark.django_db
def test_a_line_whose_net_is_not_face_less_commission_is_refused(closed, programme):
    payout, _ = closed
    extra = sell(merchant_campaign(programme, payout.merchant))
    with (
        pytest.raises(IntegrityError, match="payout_line_net_is_face_less_commission"),
        transaction.atomic(),
    ):
        _raw(
            "INSERT INTO orders_payout (programme_id, merchant_id, currency, period_kind, "
            "period_start, period_end, status, gross, commission, net, order_count, "
            "adjustment_count, created_at, paid_reference) "
            "SELECT programme_id, merchant_id, currency, period_kind, period_end, "
            "period_end + interval '7 days', 'draft', 0, 0, 0, 0, 0, now(), '' "
            "FROM orders_payout WHERE id = %s",
            [payout.pk],
        )
        _raw(
            "INSERT INTO orders_payoutline (payout_id, order_id, kind, occurred_at, "
            "commission_percent, face_value, commission, net) "
            "VALUES ((SELECT id FROM orders_payout WHERE status = 'draft'), %s, 'sale', now(), "
            "2.5, 500, 12.5, 500)",
            [extra.pk],
        )


def _in_parallel(functions):
    barrier = threading.Barrier(len(functions))
    results = [None] * len(functions)

    def run(index):
        try:
            barrier.wait(timeout=30)
            results[index] = functions[index]()
        except Exception as exc:  # the outcome under test
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(functions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


@pytest.mark.django_db(transaction=True)
def test_parallel_closes_of_one_period_give_one_payout_with_each_order_once(programme):
    # given: 30 orders of two merchants
    first, second = make_merchant(commission="2.50"), make_merchant(commission="10.00")
    orders = [sell(merchant_campaign(programme, first)) for _ in range(15)]
    orders += [sell(merchant_campaign(programme, second)) for _ in range(15)]
    _, end = weekly_period()
    # when: six closes of the same week at once
    results = _in_parallel([lambda: payouts_close(period_end=end, now=after(end))] * 6)
    # then: one close created both payouts, the others nothing
    assert sorted(len(r) for r in results) == [0, 0, 0, 0, 0, 2]
    assert Payout.objects.count() == 2
    assert PayoutLine.objects.count() == 30
    assert sorted(PayoutLine.objects.values_list("order_id", flat=True)) == sorted(
        o.pk for o in orders
    )
    assert sorted(Payout.objects.values_list("gross", "order_count")) == [
        (D("7500.00"), 15),
        (D("7500.00"), 15),
    ]


@pytest.mark.django_db(transaction=True)
def test_a_close_racing_cancellations_takes_each_cancelled_order_back_once(programme):
    # given: 10 orders paid out in a closed, approved week
    merchant = make_merchant(commission="2.50")
    campaign = merchant_campaign(programme, merchant)
    orders = [sell(campaign) for _ in range(10)]
    _, end = weekly_period()
    [closed] = payouts_close(period_end=end, now=after(end))
    payout_approve(payout=closed, actor=SYSTEM)
    next_end = end + timedelta(days=7)
    # when: the next week closes (three times) while the orders are being cancelled
    cancels = [lambda o=o: order_cancel(order=o, actor=SYSTEM) for o in orders]
    closes = [lambda: payouts_close(period_end=next_end, now=after(next_end))] * 3
    _in_parallel(cancels + closes)
    payouts_close(period_end=next_end + timedelta(days=7), now=after(next_end + timedelta(days=7)))
    # then: every order taken back exactly once, over the following weeks; the closed week as is
    adjustments = PayoutLine.objects.filter(kind="adjustment")
    assert sorted(adjustments.values_list("order_id", flat=True)) == sorted(o.pk for o in orders)
    assert sum(adjustments.values_list("net", flat=True)) == D("-4875.00")
    closed.refresh_from_db()
    assert (closed.gross, closed.order_count, closed.lines.count()) == (D("5000.00"), 10, 10)
