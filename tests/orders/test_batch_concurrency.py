"""Batch issuance races on Postgres with real parallel connections: parallel batches, and
batches mixed with single issuances, never overshoot a limit, and counters equal the rows."""

from collections import Counter
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from campaigns.errors import BudgetExhaustedError, CampaignExhaustedError, MemberCapReachedError
from campaigns.models import CampaignMemberCounter, Voucher
from campaigns.services.vouchers import campaign_counters_from_vouchers
from orders.models import Order
from orders.services import IssuanceRequest, order_issue, order_issue_batch
from plum.actors import SYSTEM
from tests.campaigns.builders import fill_pool
from tests.factories import MemberFactory
from tests.orders.test_order_concurrency import run_in_parallel

D = Decimal
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def batch_call(campaign, external_ids):
    requests = [
        IssuanceRequest(campaign=campaign, recipient={"external_id": e}) for e in external_ids
    ]
    return lambda: order_issue_batch(requests=requests, source="api", actor=SYSTEM)


def tally(results):
    """Every item's outcome across every batch: {"order": n, error code: n}."""
    counts = Counter()
    for result in results:
        assert isinstance(result, list), result  # a batch never fails as a whole
        counts.update("order" if isinstance(r, Order) else r.code for r in result)
    return dict(counts)


def assert_counters_match_rows(campaign, count):
    campaign.refresh_from_db()
    value = D("500.00") * count
    assert (campaign.issued_count, campaign.issued_value) == (count, value)
    assert campaign_counters_from_vouchers(campaign) == (count, value)
    assert Order.objects.filter(campaign=campaign, status="completed").count() == count
    assert Order.objects.filter(campaign=campaign).count() == count


def test_8_parallel_batches_of_25_against_max_50(programme, make_campaign):
    # given
    campaign = make_campaign(programme, max_rewards=50)
    # when
    results = run_in_parallel(
        [batch_call(campaign, [f"B{b}-{i}" for i in range(25)]) for b in range(8)], workers=8
    )
    # then
    assert tally(results) == {"order": 50, CampaignExhaustedError.code: 150}
    assert_counters_match_rows(campaign, 50)
    # each batch got a prefix of its items: refusals only after its last acceptance
    for result in results:
        accepted = [isinstance(r, Order) for r in result]
        assert accepted == sorted(accepted, reverse=True)


def test_8_parallel_batches_against_a_budget_of_50_rewards(programme, make_campaign):
    campaign = make_campaign(programme, budget=D("25000.00"))
    results = run_in_parallel(
        [batch_call(campaign, [f"B{b}-{i}" for i in range(25)]) for b in range(8)], workers=8
    )
    assert tally(results) == {"order": 50, BudgetExhaustedError.code: 150}
    assert_counters_match_rows(campaign, 50)


def test_8_parallel_batches_to_one_member_against_a_cap_of_50(programme, make_campaign):
    campaign = make_campaign(programme, per_member_cap=50)
    MemberFactory(programme=programme, external_id="EMP-1")
    results = run_in_parallel([batch_call(campaign, ["EMP-1"] * 25) for _ in range(8)], workers=8)
    assert tally(results) == {"order": 50, MemberCapReachedError.code: 150}
    assert_counters_match_rows(campaign, 50)
    assert CampaignMemberCounter.objects.get(campaign=campaign).issued == 50


def test_batches_and_single_issuances_mixed_against_max_50(programme, make_campaign):
    # given: 4 batches of 25 new recipients and 100 single issuances, all at once
    campaign = make_campaign(programme, max_rewards=50, per_member_cap=3)
    members = [MemberFactory(programme=programme) for _ in range(100)]
    batches = [batch_call(campaign, [f"B{b}-{i}" for i in range(25)]) for b in range(4)]
    singles = [
        (lambda m=m: order_issue(campaign=campaign, member=m, source="api", actor=SYSTEM))
        for m in members
    ]
    calls = batches + singles
    # when
    results = run_in_parallel(calls, workers=16)
    # then: no deadlock, no other error; exactly 50 rewards between them
    batch_counts = tally(results[:4])
    single_orders = [r for r in results[4:] if isinstance(r, Order)]
    single_refused = [r for r in results[4:] if isinstance(r, CampaignExhaustedError)]
    assert len(single_orders) + len(single_refused) == 100
    assert batch_counts.get("order", 0) + len(single_orders) == 50
    assert batch_counts.get(CampaignExhaustedError.code, 0) + len(single_refused) == 150
    assert_counters_match_rows(campaign, 50)
    assert sum(CampaignMemberCounter.objects.values_list("issued", flat=True)) == 50


def test_parallel_batches_share_a_pool_without_giving_a_code_twice(programme, make_campaign):
    # given: a pool-only campaign with 30 codes
    campaign = make_campaign(programme, code_source="pool")
    fill_pool(campaign, 30)
    # when
    results = run_in_parallel(
        [batch_call(campaign, [f"B{b}-{i}" for i in range(10)]) for b in range(6)], workers=6
    )
    # then
    assert tally(results) == {"order": 30, "pool_exhausted": 30}
    assert_counters_match_rows(campaign, 30)
    assert Voucher.objects.filter(campaign=campaign, status="active").count() == 30
    assert Order.objects.values("voucher").distinct().count() == 30


def test_parallel_same_key_batch_requests_issue_once(programme, make_campaign, make_api_client):
    # given
    campaign = make_campaign(programme)
    _, key = make_api_client([programme])
    body = {
        "items": [
            {"campaign": campaign.pk, "recipient": {"external_id": f"EMP-{i}"}} for i in range(20)
        ]
    }

    def call():
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        return api.post(
            "/api/v1/issuances/batch", body, format="json", HTTP_IDEMPOTENCY_KEY="cycle-1"
        )

    # when
    responses = run_in_parallel([call] * 10, workers=10)
    # then: one batch ran; the others were told it is in flight, or replayed it
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 409}
    assert Order.objects.count() == 20
    assert_counters_match_rows(campaign, 20)
    bodies = {r.content for r in responses if r.status_code == 200}
    assert len(bodies) == 1


def test_a_member_changed_while_the_batch_runs_is_audited_from_its_committed_values(
    programme, make_campaign, monkeypatch
):
    """The batch reads its members unlocked, then locks the ones it will update and reads
    them again: a change committed in between is the audited "before", never a stale read."""
    import threading

    from django.db import connection

    from orders.services import batch
    from plum.models import AuditEvent, Member

    campaign = make_campaign(programme)
    member = MemberFactory(programme=programme, external_id="EMP-9", email="old@example.com")
    real_read = batch._members_read

    def read_then_someone_else_writes(programme_id, external_ids=None, *, pks=None):
        read = real_read(programme_id, external_ids, pks=pks)
        if pks is None:  # the unlocked read: another connection commits a change now

            def write():
                Member.objects.filter(pk=member.pk).update(email="other@example.com")
                connection.close()

            thread = threading.Thread(target=write)
            thread.start()
            thread.join(timeout=30)
        return read

    monkeypatch.setattr(batch, "_members_read", read_then_someone_else_writes)
    request = IssuanceRequest(
        campaign=campaign, recipient={"external_id": "EMP-9", "email": "new@example.com"}
    )
    (order,) = order_issue_batch(requests=[request], source="api", actor=SYSTEM)
    assert isinstance(order, Order)
    assert Member.objects.get(pk=member.pk).email == "new@example.com"
    event = AuditEvent.objects.get(action="member.update", object_id=str(member.pk))
    assert event.changes == {"email": ["other@example.com", "new@example.com"]}
