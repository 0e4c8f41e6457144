"""Security fixtures: a cache key prefix per test (the sign-in lockout, the failed-lookup limit
and the API throttles start empty), and `world`: one object of every kind in programme A, made
through the services and the API, with principals of A and of B."""

import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from campaigns.models import Campaign, Voucher
from orders.models import Delivery, Order, Upload
from orders.services import order_issue
from plum import roles
from plum.actors import SYSTEM
from plum.models import AuditEvent, Job, Member, OutboxMessage, WebhookEndpoint
from plum.services.programmes import member_link_user
from support.models import Ticket, TicketMessage
from support.services import ticket_open
from tests.campaigns.builders import make_campaign, make_reward
from tests.factories import MemberFactory, UserFactory
from tests.orders.upload_helpers import csv_bytes, row
from wallets.models import Account
from wallets.services import points_earn


@pytest.fixture
def fresh_cache(settings):
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
    }


def _api_for(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def _member_user(programme, username, **fields):
    member = MemberFactory(programme=programme, **fields)
    user = UserFactory(username=username, email=member.email)
    member_link_user(member=member, user=user, actor=SYSTEM)
    client = Client()
    client.force_login(user)
    return member, client


@pytest.fixture
def world(programme, other_programme, make_api_client, make_user, settings):
    settings.WEBHOOK_ALLOW_INSECURE_URLS = True
    _, key_a = make_api_client([programme], name="A")
    _, key_b = make_api_client([other_programme], name="B")
    client_a, client_b = _api_for(key_a), _api_for(key_b)

    member, member_a = _member_user(programme, "asha", external_id="EMP-A1", email="a@example.com")
    _, member_a2 = _member_user(programme, "ravi", external_id="EMP-A2")
    _, member_b = _member_user(other_programme, "bela", external_id="EMP-B1")
    points_earn(member=member, points=5000, reference="Bonus", idempotency_key="w", actor=SYSTEM)

    campaign = make_campaign(programme)
    draft = make_campaign(programme, active=False, name="Draft")
    paused = make_campaign(programme, name="Paused")
    client_a.post(f"/api/v1/campaigns/{paused.pk}/pause")
    held = make_campaign(programme, name="Held", approval_mode="manual")
    storefront = make_campaign(
        programme,
        reward=make_reward(currency=programme.currency, points_price=2),
        in_storefront=True,
        name="Store",
    )
    order = order_issue(campaign=campaign, member=member, source="api", actor=SYSTEM)
    held_order = order_issue(campaign=held, member=member, source="api", actor=SYSTEM)
    flagged = order_issue(campaign=campaign, member=member, source="api", actor=SYSTEM).voucher
    client_a.post(f"/api/v1/vouchers/{flagged.code}/flag", {"reason": "Check"}, format="json")
    delivery = Delivery.objects.filter(order=order).first()
    Delivery.objects.filter(pk=delivery.pk).update(
        status="failed", reason="bounced", failed_at=order.created_at
    )

    job = client_a.post(f"/api/v1/campaigns/{campaign.pk}/codes", {"count": 2}, format="json")
    webhook = client_a.post(
        "/api/v1/webhooks", {"url": "https://crm.example.com/a", "event_types": ["*"]}, "json"
    )
    event = client_a.post(
        "/api/v1/events",
        {
            "event_id": "E-A1",
            "type": "purchase",
            "occurred_at": "2026-11-30T10:00:00Z",
            "member": {"external_id": "EMP-A1"},
            "data": {},
        },
        format="json",
    )
    upload = client_a.post(
        "/api/v1/uploads",
        {"campaign": campaign.pk, "file": SimpleUploadedFile("a.csv", csv_bytes(row(1)))},
        format="multipart",
    )
    assert (job.status_code, webhook.status_code, event.status_code, upload.status_code) == (
        202,
        201,
        201,
        201,
    ), (job.content, webhook.content, event.content, upload.content)

    ticket = ticket_open(
        member=member,
        order=order,
        category="code_not_working",
        description="The shop says the code is invalid.",
        actor=SYSTEM,
    )

    return {
        "principals": {
            "client_a": client_a,
            "client_b": client_b,
            "agent_a": _signed_in(make_user(roles.SUPPORT_AGENT, programme)),
            "agent_b": _signed_in(make_user(roles.SUPPORT_AGENT, other_programme)),
            "member_a": member_a,
            "member_a2": member_a2,
            "member_b": member_b,
        },
        "member": member,
        "campaign": campaign,
        "draft": draft,
        "paused": Campaign.objects.get(pk=paused.pk),
        "storefront": storefront,
        "order": order,
        "held": held_order,
        "voucher": order.voucher,
        "flagged": flagged,
        "delivery": delivery,
        "job_id": job.json()["id"],
        "webhook_id": webhook.json()["id"],
        "event_id": "E-A1",
        "upload_id": upload.json()["id"],
        "ticket": ticket,
    }


def _signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def state() -> dict:
    """Every row an intruder could try to change. Failed voucher lookups are audited on purpose
    (brute-force evidence), so those audit events are left out."""
    return {
        "orders": list(Order.objects.order_by("pk").values()),
        "vouchers": list(Voucher.objects.order_by("pk").values()),
        "campaigns": list(Campaign.objects.order_by("pk").values()),
        "members": list(Member.objects.order_by("pk").values()),
        "accounts": list(Account.objects.order_by("pk").values("pk", "balance")),
        "deliveries": list(Delivery.objects.order_by("pk").values()),
        "uploads": list(Upload.objects.order_by("pk").values()),
        "webhooks": list(WebhookEndpoint.objects.order_by("pk").values()),
        "tickets": list(Ticket.objects.order_by("pk").values()),
        "ticket_messages": TicketMessage.objects.count(),
        "jobs": Job.objects.count(),
        "outbox": OutboxMessage.objects.count(),
        "audit": list(
            AuditEvent.objects.exclude(action="voucher.lookup_failed")
            .order_by("pk")
            .values_list("action", flat=True)
        ),
    }
