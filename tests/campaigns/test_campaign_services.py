from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.services.campaigns import campaign_transition, campaign_update
from plum.actors import SYSTEM
from plum.errors import InvalidInputError, InvalidTransitionError
from plum.models import AuditEvent, OutboxMessage
from tests.campaigns.builders import issue, make_campaign, make_reward
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"value": Decimal("750.00")}, "value"),
        ({"currency": "USD"}, "currency"),
        ({"ends_at": timezone.now() - timedelta(days=2)}, "ends_at"),
        ({"expiry_days": 5, "expiry_date": timezone.now() + timedelta(days=5)}, "expiry_date"),
        ({"code_prefix": "O0"}, "code_prefix"),
        ({"code_length": 40}, "code_length"),
    ],
)
def test_create_refuses_inconsistent_campaigns(programme, fields, bad):
    with pytest.raises(InvalidInputError) as refused:
        make_campaign(programme, active=False, **fields)
    assert bad in refused.value.fields
    assert Campaign.objects.count() == 0


def test_create_is_audited_and_starts_as_a_draft(programme):
    campaign = make_campaign(programme, active=False, reward=make_reward())
    assert campaign.status == "draft"
    assert (
        AuditEvent.objects.filter(action="campaign.create", object_id=str(campaign.pk)).count() == 1
    )


@pytest.mark.parametrize(
    ("steps", "final"),
    [
        (["activate"], "active"),
        (["activate", "pause"], "paused"),
        (["activate", "pause", "resume"], "active"),
        (["activate", "end"], "ended"),
        (["end"], "ended"),
    ],
)
def test_allowed_transitions(programme, steps, final):
    campaign = make_campaign(programme, active=False)
    for step in steps:
        campaign = campaign_transition(campaign=campaign, action=step, actor=SYSTEM)
    assert campaign.status == final
    types = list(
        OutboxMessage.objects.filter(payload__type__startswith="campaign.")
        .order_by("created_at")
        .values_list("payload__type", flat=True)
    )
    assert len(types) == len(steps) + 1


@pytest.mark.parametrize(
    ("steps", "refused"),
    [
        ([], "pause"),
        ([], "resume"),
        (["activate"], "activate"),
        (["end"], "activate"),
        (["activate", "end"], "resume"),
    ],
)
def test_refused_transitions_change_nothing(programme, steps, refused):
    campaign = make_campaign(programme, active=False)
    for step in steps:
        campaign = campaign_transition(campaign=campaign, action=step, actor=SYSTEM)
    with pytest.raises((InvalidTransitionError, InvalidInputError)):
        campaign_transition(campaign=campaign, action=refused, actor=SYSTEM)
    before = campaign.status
    campaign.refresh_from_db()
    assert campaign.status == before


def test_limits_cannot_drop_below_what_was_issued(programme):
    campaign = make_campaign(programme, max_rewards=5, budget=Decimal("5000"))
    member = MemberFactory(programme=programme)
    issue(campaign, member)
    issue(campaign, member)
    with pytest.raises(InvalidInputError) as refused:
        campaign_update(
            campaign=campaign, data={"max_rewards": 1, "budget": Decimal("600")}, actor=SYSTEM
        )
    assert set(refused.value.fields) == {"max_rewards", "budget"}
    campaign.refresh_from_db()
    assert (campaign.max_rewards, campaign.budget) == (5, Decimal("5000.00"))


def test_update_changes_governance_and_audits_before_and_after(programme):
    campaign = make_campaign(programme, max_rewards=5)
    updated = campaign_update(campaign=campaign, data={"max_rewards": 9}, actor=SYSTEM)
    event = AuditEvent.objects.get(action="campaign.update")
    assert updated.max_rewards == 9
    assert event.changes == {"max_rewards": [5, 9]}


@pytest.mark.parametrize("field", ["issued_count", "value", "reward", "programme", "status"])
def test_update_refuses_fields_that_cannot_change(programme, field):
    campaign = make_campaign(programme)
    with pytest.raises(InvalidInputError) as refused:
        campaign_update(campaign=campaign, data={field: 1}, actor=SYSTEM)
    assert refused.value.fields == {field: ["This field cannot be changed."]}


def test_create_refuses_a_reward_no_longer_offered(programme):
    reward = make_reward(is_active=False)
    with pytest.raises(InvalidInputError) as refused:
        make_campaign(programme, active=False, reward=reward)
    assert refused.value.fields == {"reward": ["This reward is no longer offered."]}
    assert Campaign.objects.count() == 0
