"""Races on Postgres with real parallel connections (one per worker thread).

The server allows 100 connections and other test runs share it, so 200 calls run on
WORKERS connections at once: all workers start together at a barrier and each makes its calls
back to back, so at every moment WORKERS issuances compete for the same counters."""

import threading
from decimal import Decimal

import pytest
from django.db import connection
from rest_framework.test import APIClient

from campaigns.errors import BudgetExhaustedError, CampaignExhaustedError, MemberCapReachedError
from campaigns.models import CampaignMemberCounter, Voucher
from campaigns.services.vouchers import campaign_counters_from_vouchers
from orders.models import Order
from orders.services import order_approve, order_cancel, order_issue
from plum.actors import SYSTEM
from plum.errors import InvalidTransitionError
from plum.models import Member
from tests.factories import MemberFactory

D = Decimal
WORKERS = 32
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def run_in_parallel(functions, workers=WORKERS):
    """Run every function, `workers` at a time on their own connections, all workers starting
    at once; return what each returned or raised, in order."""
    workers = min(workers, len(functions))
    barrier = threading.Barrier(workers)
    results = [None] * len(functions)

    def worker(offset):
        try:
            barrier.wait(timeout=30)
            for index in range(offset, len(functions), workers):
                try:
                    results[index] = functions[index]()
                except Exception as exc:  # the outcome under test
                    results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def issue_call(campaign, member):
    return lambda: order_issue(campaign=campaign, member=member, source="api", actor=SYSTEM)


def outcome(results, error):
    orders = [r for r in results if isinstance(r, Order)]
    refused = [r for r in results if isinstance(r, error)]
    other = [r for r in results if not isinstance(r, Order | error)]
    return len(orders), len(refused), other


def test_200_parallel_issues_against_max_50(programme, make_campaign):
    # given
    campaign = make_campaign(programme, max_rewards=50)
    members = [MemberFactory(programme=programme) for _ in range(200)]
    # when
    results = run_in_parallel([issue_call(campaign, m) for m in members])
    # then
    campaign.refresh_from_db()
    assert outcome(results, CampaignExhaustedError) == (50, 150, [])
    assert Order.objects.filter(campaign=campaign, status="completed").count() == 50
    assert Order.objects.filter(campaign=campaign).count() == 50
    assert (campaign.issued_count, campaign.issued_value) == (50, D("25000.00"))
    assert campaign_counters_from_vouchers(campaign) == (50, D("25000.00"))


def test_200_parallel_issues_against_a_budget_of_50_rewards(programme, make_campaign):
    campaign = make_campaign(programme, budget=D("25000.00"))
    members = [MemberFactory(programme=programme) for _ in range(200)]
    results = run_in_parallel([issue_call(campaign, m) for m in members])
    campaign.refresh_from_db()
    assert outcome(results, BudgetExhaustedError) == (50, 150, [])
    assert Order.objects.filter(campaign=campaign).count() == 50
    assert (campaign.issued_count, campaign.issued_value) == (50, D("25000.00"))
    assert campaign_counters_from_vouchers(campaign) == (50, D("25000.00"))


def test_200_parallel_issues_to_one_member_against_a_cap_of_50(programme, make_campaign):
    campaign = make_campaign(programme, per_member_cap=50)
    member = MemberFactory(programme=programme)
    results = run_in_parallel([issue_call(campaign, member) for _ in range(200)])
    campaign.refresh_from_db()
    assert outcome(results, MemberCapReachedError) == (50, 150, [])
    assert Order.objects.filter(campaign=campaign, member=member).count() == 50
    assert CampaignMemberCounter.objects.get(campaign=campaign, member=member).issued == 50
    assert (campaign.issued_count, campaign.issued_value) == (50, D("25000.00"))


def test_parallel_cancellations_of_one_order_release_once(programme, make_campaign):
    # given
    campaign = make_campaign(programme, max_rewards=10, per_member_cap=5)
    member = MemberFactory(programme=programme)
    order_issue(campaign=campaign, member=member, source="api", actor=SYSTEM)
    order = order_issue(campaign=campaign, member=member, source="api", actor=SYSTEM)
    # when
    results = run_in_parallel([lambda: order_cancel(order=order, actor=SYSTEM)] * 10)
    # then
    campaign.refresh_from_db()
    assert outcome(results, InvalidTransitionError) == (1, 9, [])
    assert (campaign.issued_count, campaign.issued_value) == (1, D("500.00"))
    assert CampaignMemberCounter.objects.get(campaign=campaign, member=member).issued == 1
    assert Voucher.objects.get(pk=order.voucher_id).status == "cancelled"


def test_parallel_approvals_of_one_held_order_fulfil_once(programme, make_campaign):
    campaign = make_campaign(programme, approval_mode="manual")
    order = order_issue(
        campaign=campaign, member=MemberFactory(programme=programme), source="api", actor=SYSTEM
    )
    results = run_in_parallel([lambda: order_approve(order=order, actor=SYSTEM)] * 10)
    campaign.refresh_from_db()
    assert outcome(results, InvalidTransitionError) == (1, 9, [])
    assert Voucher.objects.filter(campaign=campaign).count() == 1
    assert (campaign.issued_count, campaign.issued_value) == (1, D("500.00"))


def test_200_parallel_issuance_requests_against_max_50(programme, make_campaign, make_api_client):
    # given: 200 different recipients, new to the programme, through the whole HTTP path
    campaign = make_campaign(programme, max_rewards=50)
    _, key = make_api_client([programme])

    def post(index):
        def call():
            api = APIClient()
            api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
            return api.post(
                "/api/v1/issuances",
                {"campaign": campaign.pk, "recipient": {"external_id": f"EMP-{index:03d}"}},
                format="json",
                HTTP_IDEMPOTENCY_KEY=f"req-{index}",
            )

        return call

    # when
    responses = run_in_parallel([post(i) for i in range(200)])
    # then
    campaign.refresh_from_db()
    statuses = sorted(r.status_code for r in responses)
    codes = [r.json()["error"]["code"] for r in responses if r.status_code == 409]
    assert statuses == [201] * 50 + [409] * 150
    assert codes == ["campaign_exhausted"] * 150
    assert Order.objects.filter(campaign=campaign, status="completed").count() == 50
    assert (campaign.issued_count, campaign.issued_value) == (50, D("25000.00"))
    # refused requests created no member either
    assert Member.objects.filter(programme=programme).count() == 50
