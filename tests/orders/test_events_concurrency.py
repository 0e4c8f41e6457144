"""Events racing on Postgres, through the whole HTTP path, each request on its own connection."""

import pytest
from rest_framework.test import APIClient

from campaigns.services.vouchers import campaign_counters_from_vouchers
from orders.models import Event, EventRuleOutcome, Order, WorkflowRule
from orders.services import rule_save
from plum.actors import SYSTEM
from plum.models import Member
from tests.orders.test_order_concurrency import run_in_parallel
from wallets.models import Account, LedgerTransaction

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def rule(programme, name, **fields):
    return rule_save(
        rule=WorkflowRule(programme=programme, name=name, event_type="purchase", **fields),
        conditions=[{"field": "spend", "operator": ">=", "value_type": "number", "value": "100"}],
        actor=SYSTEM,
    )


def poster(key, event_id, member):
    def call():
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        return api.post(
            "/api/v1/events",
            {
                "event_id": event_id,
                "type": "purchase",
                "occurred_at": "2026-11-30T10:00:00Z",
                "member": {"external_id": member},
                "data": {"spend": 600},
            },
            format="json",
        )

    return call


def test_20_parallel_posts_of_one_event_id_make_one_event_and_one_order(
    programme, make_campaign, make_api_client
):
    # given: a new member, a reward rule and a points rule
    campaign = make_campaign(programme)
    rule(programme, "Reward", action="reward", campaign=campaign)
    rule(programme, "Points", action="points", points=25)
    _, key = make_api_client([programme])
    # when
    responses = run_in_parallel([poster(key, "E-1", "NEW-1") for _ in range(20)], workers=20)
    # then: one first answer, nineteen replays of it
    assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
    bodies = [r.json() for r in responses]
    assert all(b == bodies[0] for b in bodies)
    assert [o["outcome"] for o in bodies[0]["outcomes"]] == ["issued", "points_awarded"]
    assert Event.objects.count() == 1
    assert EventRuleOutcome.objects.count() == 2
    assert Order.objects.count() == 1
    assert bodies[0]["outcomes"][0]["booking_id"] == Order.objects.get().booking_id
    assert Member.objects.filter(programme=programme, external_id="NEW-1").count() == 1
    assert LedgerTransaction.objects.count() == 1
    assert Account.objects.get(member__external_id="NEW-1").balance == 25
    campaign.refresh_from_db()
    assert campaign.issued_count == 1


def test_20_parallel_events_against_a_campaign_of_5(programme, make_campaign, make_api_client):
    # given
    campaign = make_campaign(programme, max_rewards=5)
    rule(programme, "Reward", action="reward", campaign=campaign)
    _, key = make_api_client([programme])
    # when: 20 distinct events from 20 members
    responses = run_in_parallel([poster(key, f"E-{i}", f"M-{i}") for i in range(20)], workers=20)
    # then: every event stored; exactly 5 issued, 15 refused with the code recorded
    assert [r.status_code for r in responses] == [201] * 20
    outcomes = sorted(
        (r.json()["outcomes"][0]["outcome"], r.json()["outcomes"][0]["code"]) for r in responses
    )
    assert outcomes == [("issued", "")] * 5 + [("refused", "campaign_exhausted")] * 15
    assert Event.objects.count() == 20
    assert (
        EventRuleOutcome.objects.filter(outcome="refused", code="campaign_exhausted").count() == 15
    )
    assert EventRuleOutcome.objects.filter(outcome="issued").count() == 5
    assert Order.objects.filter(campaign=campaign, status="completed").count() == 5
    campaign.refresh_from_db()
    assert campaign.issued_count == 5
    assert campaign_counters_from_vouchers(campaign) == (5, campaign.value * 5)


def test_rules_touching_two_campaigns_in_opposite_priority_orders_do_not_deadlock(
    programme, make_campaign, make_api_client
):
    # given: "purchase" rules send from A then B; "visit" rules from B then A
    first, second = make_campaign(programme, name="A"), make_campaign(programme, name="B")
    for event_type, campaigns in (("purchase", (first, second)), ("visit", (second, first))):
        for priority, campaign in enumerate(campaigns):
            rule_save(
                rule=WorkflowRule(
                    programme=programme,
                    name=f"{event_type}-{campaign.name}",
                    event_type=event_type,
                    action="reward",
                    campaign=campaign,
                    priority=priority,
                ),
                conditions=[],
                actor=SYSTEM,
            )
    _, key = make_api_client([programme])

    def post(index):
        def call():
            api = APIClient()
            api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
            return api.post(
                "/api/v1/events",
                {
                    "event_id": f"E-{index}",
                    "type": "purchase" if index % 2 else "visit",
                    "occurred_at": "2026-11-30T10:00:00Z",
                    "member": {"external_id": f"M-{index}"},
                },
                format="json",
            )

        return call

    # when
    responses = run_in_parallel([post(i) for i in range(40)], workers=20)
    # then: no deadlock (it would be a 500), every event got both rewards
    assert [r.status_code for r in responses] == [201] * 40
    assert Order.objects.count() == 80
