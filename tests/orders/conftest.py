"""Order fixtures: campaigns through the campaign services (tests.campaigns.builders), orders
only through the order services."""

import uuid

import pytest
from rest_framework.test import APIClient

from campaigns.models import Campaign, CampaignMemberCounter, Voucher
from orders.models import Order
from plum.models import AuditEvent, Member, OutboxMessage
from tests.campaigns.builders import make_campaign as build_campaign
from tests.factories import MemberFactory
from tests.orders.delivery_stubs import http_providers, provider  # noqa: F401 - fixtures


@pytest.fixture(autouse=True)
def fresh_cache(settings):
    """A cache key prefix per test: the API's throttles and lookup counters live there."""
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
    }


@pytest.fixture
def make_campaign():
    """make_campaign(programme, active=True, **fields): value 500.00 INR, started yesterday."""
    return build_campaign


@pytest.fixture
def campaign(programme, make_campaign):
    return make_campaign(programme)


@pytest.fixture
def member(programme):
    return MemberFactory(programme=programme, external_id="EMP-001")


@pytest.fixture
def make_api(make_api_client):
    """make_api(programmes, scopes=None, is_test=False) -> an APIClient sending that key."""

    def make(programmes, scopes=None, *, is_test=False):
        api_client, key = make_api_client(programmes, scopes=scopes, is_test=is_test)
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        api.plum_client = api_client
        return api

    return make


@pytest.fixture
def snapshot():
    """snapshot() -> every row an order service could change, to prove a refusal changed
    nothing."""

    def take():
        return {
            "orders": list(Order.objects.order_by("pk").values()),
            "campaigns": list(
                Campaign.objects.order_by("pk").values("pk", "issued_count", "issued_value")
            ),
            "vouchers": list(Voucher.objects.order_by("pk").values()),
            "member_counters": list(CampaignMemberCounter.objects.order_by("pk").values()),
            "members": list(Member.objects.order_by("pk").values()),
            "outbox": list(OutboxMessage.objects.order_by("pk").values_list("pk", flat=True)),
            "audit": list(AuditEvent.objects.order_by("pk").values_list("pk", flat=True)),
        }

    return take
