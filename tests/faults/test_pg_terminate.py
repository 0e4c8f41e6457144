"""Postgres connections dropped mid-request: while threads issue orders, another thread
terminates their backends (only this test database's, never its own). Every issuance either
happened whole (order + voucher + counters + audit) or not at all."""

import threading
import time

import pytest
from django.db import connection, connections

from orders.models import Order
from orders.services import order_issue, order_redeem_points
from plum.actors import SYSTEM
from tests.campaigns.builders import make_campaign, make_reward
from tests.factories import MemberFactory
from tests.faults.checks import assert_system_consistent
from wallets.selectors import wallet_get
from wallets.services import points_earn

pytestmark = [pytest.mark.fault, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ISSUERS = 4
PER_ISSUER = 60


def _terminate_loop(stop: threading.Event, killed: list[int]) -> None:
    """Every 30 ms, terminate one other backend on this test database (never our own)."""
    try:
        while not stop.is_set():
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM "
                    "pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() ORDER BY random() LIMIT 1) t"
                )
                killed.append(cursor.fetchone()[0])
            time.sleep(0.03)
    finally:
        connection.close()


def _issue_loop(campaign, members, outcomes: list, redeem: bool = False) -> None:
    for member in members:
        try:
            if redeem:
                order_redeem_points(campaign=campaign, member=member, actor=SYSTEM)
            else:
                order_issue(campaign=campaign, member=member, source="api", actor=SYSTEM)
            outcomes.append("ok")
        except Exception as exc:  # the outcome under test: a dropped connection
            outcomes.append(type(exc).__name__)
            connections["default"].close()
    connections["default"].close()


def test_terminated_backends_never_leave_a_half_issued_order(programme):
    # given
    campaign = make_campaign(programme)
    members = [MemberFactory(programme=programme) for _ in range(ISSUERS * PER_ISSUER)]
    stop, killed, outcomes = threading.Event(), [], []
    killer = threading.Thread(target=_terminate_loop, args=(stop, killed))
    issuers = [
        threading.Thread(
            target=_issue_loop,
            args=(campaign, members[i * PER_ISSUER : (i + 1) * PER_ISSUER], outcomes),
        )
        for i in range(ISSUERS)
    ]
    # when
    killer.start()
    for thread in issuers:
        thread.start()
    for thread in issuers:
        thread.join(timeout=120)
    stop.set()
    killer.join(timeout=30)
    connection.close()
    # then: some requests failed, some succeeded, and what succeeded is whole
    ok = outcomes.count("ok")
    assert len(outcomes) == ISSUERS * PER_ISSUER
    assert sum(killed) > 0 and 0 < ok < len(outcomes), (sum(killed), ok)
    orders = Order.objects.filter(campaign=campaign)
    assert orders.count() == orders.filter(status="completed", voucher__isnull=False).count()
    assert orders.count() >= ok  # a commit whose reply was lost still counts once
    campaign.refresh_from_db()
    assert campaign.issued_count == orders.count()
    assert_system_consistent()


def test_terminated_backends_never_leave_a_burn_without_its_order(programme):
    # given: members with 1,000 points each, a storefront reward costing 1,000 points
    reward = make_reward(currency=programme.currency, points_price=2)
    campaign = make_campaign(programme, reward=reward, in_storefront=True)
    members = [MemberFactory(programme=programme) for _ in range(ISSUERS * PER_ISSUER // 2)]
    for member in members:
        points_earn(
            member=member,
            points=1000,
            reference="fault",
            idempotency_key=f"fault-{member.pk}",
            actor=SYSTEM,
        )
    share = len(members) // ISSUERS
    stop, killed, outcomes = threading.Event(), [], []
    killer = threading.Thread(target=_terminate_loop, args=(stop, killed))
    redeemers = [
        threading.Thread(
            target=_issue_loop,
            args=(campaign, members[i * share : (i + 1) * share], outcomes, True),
        )
        for i in range(ISSUERS)
    ]
    # when
    killer.start()
    for thread in redeemers:
        thread.start()
    for thread in redeemers:
        thread.join(timeout=120)
    stop.set()
    killer.join(timeout=30)
    connection.close()
    # then: a member either holds their order and 0 points, or no order and 1,000 points
    ok = outcomes.count("ok")
    assert sum(killed) > 0 and 0 < ok < len(outcomes), (sum(killed), ok)
    with_order = set(Order.objects.filter(campaign=campaign).values_list("member_id", flat=True))
    assert len(with_order) == Order.objects.filter(campaign=campaign).count() >= ok
    balances = {m.pk: wallet_get(member=m).balance for m in members}
    assert {b for pk, b in balances.items() if pk in with_order} <= {0}
    assert {b for pk, b in balances.items() if pk not in with_order} <= {1000}
    assert_system_consistent()
