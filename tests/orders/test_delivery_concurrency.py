"""Races on Postgres with real parallel connections: resends of one order, and a resend
against the outbox delivering the same order."""

import pytest

from orders.errors import DeliveryInProgressError
from orders.models import Delivery
from orders.services import delivery_resend, order_issue
from plum.actors import SYSTEM
from tests.factories import MemberFactory
from tests.orders.delivery_stubs import deliver
from tests.orders.test_order_concurrency import run_in_parallel

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_parallel_resends_of_one_failed_order_send_once(programme, make_campaign):
    # given: a delivery failed for want of a phone; the member has one now
    campaign = make_campaign(programme)
    member = MemberFactory(programme=programme, preferred_channel="sms", phone="")
    order = order_issue(campaign=campaign, member=member, source="api", actor=SYSTEM)
    assert Delivery.objects.get(order=order).status == "failed"
    # when: ten people resend it at once, each correcting the phone
    results = run_in_parallel(
        [
            lambda: delivery_resend(order=order, contact={"phone": "+919812340000"}, actor=SYSTEM)
            for _ in range(10)
        ],
        workers=10,
    )
    # then: one new delivery; every other resend is refused
    sent = [r for r in results if isinstance(r, Delivery)]
    refused = [r for r in results if isinstance(r, DeliveryInProgressError)]
    assert (len(sent), len(refused)) == (1, 9), results
    assert Delivery.objects.filter(order=order).count() == 2
    assert Delivery.objects.filter(order=order, status="pending").count() == 1


def test_a_resend_racing_the_delivery_of_the_same_order(http_providers, programme, make_campaign):
    # given: a failed delivery resent; its new delivery is about to be sent
    campaign = make_campaign(programme)
    member = MemberFactory(programme=programme, preferred_channel="sms", phone="")
    order = order_issue(campaign=campaign, member=member, source="api", actor=SYSTEM)
    first = delivery_resend(order=order, contact={"phone": "+919812340001"}, actor=SYSTEM)
    # when: the outbox sends it while five more resends arrive
    results = run_in_parallel(
        [lambda: deliver(first)]
        + [lambda: delivery_resend(order=order, actor=SYSTEM) for _ in range(5)],
        workers=6,
    )
    # then: never two open deliveries; the order follows its latest delivery; no deadlock
    assert not [
        r
        for r in results
        if isinstance(r, Exception) and not isinstance(r, DeliveryInProgressError)
    ], results
    open_count = Delivery.objects.filter(order=order, status__in=["pending", "processing"]).count()
    assert open_count <= 1
    latest = Delivery.objects.filter(order=order).latest("pk")
    order.refresh_from_db()
    assert order.delivery_status == latest.status
