"""`campaign.budget_threshold` fires once per (campaign, kind, threshold): the once-key row
decides, even with parallel issuances on Postgres and counts given back and used again."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from campaigns.services.campaigns import campaign_create, campaign_transition
from orders.models import Order
from orders.services import order_cancel, order_issue
from plum.actors import SYSTEM
from plum.models import EventOnce, OutboxMessage
from tests.campaigns.factories import RewardFactory
from tests.factories import MemberFactory


def make_campaign(programme, **limits):
    campaign = campaign_create(
        programme=programme,
        actor=SYSTEM,
        name="Thresholds",
        reward=RewardFactory(),
        value=Decimal("100.00"),
        starts_at=timezone.now() - timedelta(days=1),
        **limits,
    )
    return campaign_transition(campaign=campaign, action="activate", actor=SYSTEM)


def threshold_events():
    return sorted(
        (m.payload["data"]["kind"], m.payload["data"]["threshold"], m.payload["data"]["used"])
        for m in OutboxMessage.objects.filter(
            kind="event", payload__type="campaign.budget_threshold"
        )
    )


def issue(campaign, member):
    return order_issue(campaign=campaign, member=member, source="api", actor=SYSTEM)


@pytest.mark.django_db
def test_thresholds_fire_at_80_and_100_percent_of_count_and_budget_once(programme):
    # given: 10 rewards of 100.00, budget 1,250.00 (80% = 1,000.00; 100% not reachable)
    campaign = make_campaign(programme, max_rewards=10, budget=Decimal("1250.00"))
    members = [MemberFactory(programme=programme) for _ in range(10)]
    # when: 7 issues, then the 8th, 9th, 10th
    for member in members[:7]:
        issue(campaign, member)
    assert threshold_events() == []
    for member in members[7:]:
        issue(campaign, member)
    # then
    assert threshold_events() == [
        ("budget", 80, "1000.00"),
        ("count", 80, "8"),
        ("count", 100, "10"),
    ]
    # when: an order is cancelled (counts given back) and the 10th is issued again
    order_cancel(order=Order.objects.order_by("-id").first(), actor=SYSTEM, reason="test")
    issue(campaign, MemberFactory(programme=programme))
    # then: nothing fires twice
    assert len(threshold_events()) == 3
    assert EventOnce.objects.count() == 3


@pytest.mark.django_db
def test_a_campaign_without_limits_emits_no_threshold_event(programme):
    campaign = make_campaign(programme)
    issue(campaign, MemberFactory(programme=programme))
    assert threshold_events() == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_issuances_fire_each_threshold_exactly_once(programme):
    # given: max 20 rewards and a budget of 2,000.00; 60 parallel issuances
    campaign = make_campaign(programme, max_rewards=20, budget=Decimal("2000.00"))
    members = [MemberFactory(programme=programme) for _ in range(60)]
    barrier = threading.Barrier(12)
    outcomes = []

    def worker(chunk):
        try:
            barrier.wait(timeout=30)
            for member in chunk:
                try:
                    outcomes.append(issue(campaign, member))
                except Exception as exc:  # the refusals under test
                    outcomes.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(members[i::12],)) for i in range(12)]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    # then
    assert sum(isinstance(o, Order) for o in outcomes) == 20
    assert threshold_events() == [
        ("budget", 80, "1600.00"),
        ("budget", 100, "2000.00"),
        ("count", 80, "16"),
        ("count", 100, "20"),
    ]
