"""Slack and Teams messages from the services that emit events: one summary message per bulk
operation, readable text, a link back to the admin page."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns.models import Campaign, Voucher
from campaigns.services.campaigns import campaign_create, campaign_transition
from campaigns.services.codes import codes_generate
from campaigns.services.vouchers import vouchers_extend
from orders.services import order_issue
from plum.actors import SYSTEM
from plum.models import Delivery
from plum.services.jobs import job_run
from plum.services.notifications import notification_channel_create
from tests.campaigns.factories import RewardFactory
from tests.factories import MemberFactory
from tests.plum.test_webhooks import deliver_due
from tests.plum.webhook_receiver import Receiver


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_INSECURE_URLS = True
    settings.PLUM_BASE_URL = "https://plum.example.com"
    with Receiver() as server:
        yield server


@pytest.fixture
def channels(programme, receiver):
    return [
        notification_channel_create(
            programme=programme,
            name=f"#{kind}",
            kind=kind,
            url=receiver.url(f"/{kind}"),
            event_types=["*"],
            actor=SYSTEM,
        )
        for kind in ("slack", "teams")
    ]


@pytest.fixture
def campaign(programme):
    campaign = campaign_create(
        programme=programme,
        actor=SYSTEM,
        name="Diwali bonus",
        reward=RewardFactory(),
        value=Decimal("500.00"),
        starts_at=timezone.now() - timedelta(days=1),
        code_source=Campaign.CodeSource.POOL,
    )
    return campaign_transition(campaign=campaign, action="activate", actor=SYSTEM)


@pytest.mark.django_db
def test_generating_1000_codes_sends_one_summary_message_per_channel(campaign, channels, receiver):
    # given: the campaign's own events are already delivered
    deliver_due()
    receiver.requests.clear()
    # when: a generation job makes 1,000 codes
    job = codes_generate(campaign=campaign, count=1000, is_test=False, actor=SYSTEM)
    job_run(job_id=job.pk)
    deliver_due()
    # then: one Slack and one Teams message, saying how many
    [slack] = receiver.at("/slack")
    [teams] = receiver.at("/teams")
    assert slack.json["blocks"][1]["text"]["text"] == (
        f"1000 codes were generated for campaign #{campaign.pk}."
    )
    link = f"https://plum.example.com/admin/campaigns/campaign/{campaign.pk}/change/"
    assert slack.json["blocks"][3]["elements"][0]["url"] == link
    card = teams.json["attachments"][0]["content"]
    assert card["body"][1]["text"] == f"1000 codes were generated for campaign #{campaign.pk}."
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open in Plum", "url": link}]
    assert Voucher.objects.filter(campaign=campaign).count() == 1000


@pytest.mark.django_db
def test_extending_many_vouchers_sends_one_message(campaign, programme, channels, receiver):
    # given: 30 issued vouchers
    job = codes_generate(campaign=campaign, count=30, is_test=False, actor=SYSTEM)
    job_run(job_id=job.pk)
    for _ in range(30):
        order_issue(
            campaign=campaign,
            member=MemberFactory(programme=programme),
            source="api",
            actor=SYSTEM,
        )
    deliver_due()
    receiver.requests.clear()
    # when
    expires_at = timezone.now() + timedelta(days=90)
    vouchers_extend(
        vouchers=Voucher.objects.filter(campaign=campaign, status="active"),
        expires_at=expires_at,
        actor=SYSTEM,
    )
    deliver_due()
    # then
    [slack] = receiver.at("/slack")
    assert slack.json["blocks"][0]["text"]["text"] == "Vouchers extended"
    assert slack.json["blocks"][1]["text"]["text"] == (
        f"30 vouchers now expire at {expires_at.isoformat()}."
    )
    assert len(receiver.at("/teams")) == 1


@pytest.mark.django_db
def test_an_order_waiting_for_approval_tells_the_approvers(programme, channels, receiver):
    # given: a manual-approval campaign
    campaign = campaign_create(
        programme=programme,
        actor=SYSTEM,
        name="Held rewards",
        reward=RewardFactory(),
        value=Decimal("250.00"),
        starts_at=timezone.now() - timedelta(days=1),
        approval_mode=Campaign.ApprovalMode.MANUAL,
    )
    campaign_transition(campaign=campaign, action="activate", actor=SYSTEM)
    deliver_due()
    receiver.requests.clear()
    # when
    order = order_issue(
        campaign=campaign,
        member=MemberFactory(programme=programme, external_id="emp-9"),
        source="api",
        actor=SYSTEM,
    )
    deliver_due()
    # then: order.created and order.pending_approval, each to both channels
    titles = [r.json["blocks"][0]["text"]["text"] for r in receiver.at("/slack")]
    assert sorted(titles) == ["Order created", "Order waiting for approval"]
    [waiting] = [r for r in receiver.at("/slack") if "approval" in r.json["text"]]
    assert waiting.json["blocks"][1]["text"]["text"] == (
        f"Order {order.booking_id} for 250.00 INR waits for approval."
    )
    assert waiting.json["blocks"][3]["elements"][0]["url"] == (
        f"https://plum.example.com/admin/orders/order/{order.pk}/change/"
    )
    assert Delivery.objects.filter(event_type__startswith="order.", status="succeeded").count() == 4
