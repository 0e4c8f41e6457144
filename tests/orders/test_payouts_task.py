"""The payout beat task: its schedule entry names a registered task, it closes the latest ended
period and is safe to run twice, and a real Celery worker on Redis runs it."""

import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from orders.models import Order, Payout
from orders.services.payouts import payout_period_last_closed
from orders.tasks.payouts import payouts_close_task
from plum.celery import app as celery_app
from tests.orders.payout_builders import make_merchant, merchant_campaign, sell
from tests.stubs import celery_worker

TASK = "orders.tasks.payouts.payouts_close_task"


def sold_last_week(programme):
    """An order completed in the latest ended week. Orders are issued at the real clock, so the
    test moves its completion back a week (set-up only: no service sells in the past)."""
    order = sell(merchant_campaign(programme, make_merchant(commission="2.50")))
    start, _ = payout_period_last_closed("weekly", timezone.now())
    Order.objects.filter(pk=order.pk).update(
        created_at=start + timedelta(hours=1), completed_at=start + timedelta(hours=1)
    )
    return order


def test_the_beat_schedule_runs_the_registered_task_at_least_daily():
    entry = settings.CELERY_BEAT_SCHEDULE["payouts-close"]
    assert entry["task"] == TASK
    assert entry["schedule"] <= timedelta(days=1)
    assert TASK in celery_app.tasks


@pytest.mark.django_db
def test_the_task_closes_the_latest_ended_week_once(programme):
    order = sold_last_week(programme)
    assert payouts_close_task() == 1
    assert payouts_close_task() == 0
    payout = Payout.objects.get()
    assert list(payout.lines.values_list("order_id", flat=True)) == [order.pk]


@pytest.fixture
def celery_worker_process(services_env):
    with celery_worker(services_env) as worker:
        yield worker


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_closes_the_week(programme, celery_worker_process):
    # given
    order = sold_last_week(programme)
    # when: what beat sends
    celery_app.send_task(TASK)
    # then
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not Payout.objects.exists():
        time.sleep(0.3)
    payout = Payout.objects.get()
    assert (payout.status, payout.gross, payout.order_count) == ("closed", order.value, 1)
