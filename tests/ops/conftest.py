"""Portal fixtures: two programmes, each with a campaign, a member and a completed order, and
users of every kind the permission matrix needs. Data is made through the services."""

import uuid
from dataclasses import dataclass

import pytest

from orders.models import Order
from orders.services import order_issue
from plum import roles
from plum.actors import SYSTEM
from plum.models import Member
from tests.campaigns.builders import make_campaign
from tests.factories import MemberFactory
from tests.orders.delivery_stubs import http_providers, provider  # noqa: F401 - fixtures


@pytest.fixture(autouse=True)
def fresh_cache(settings):
    """A cache key prefix per test: the sign-in lockout and the code-lookup limit live there."""
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
    }


@dataclass
class Side:
    programme: object
    campaign: object
    member: Member
    order: Order


def issue(campaign, member, **kwargs) -> Order:
    order = order_issue(campaign=campaign, member=member, source="api", actor=SYSTEM, **kwargs)
    return Order.objects.select_related("voucher", "member").get(pk=order.pk)


@pytest.fixture
def side_a(programme):
    campaign = make_campaign(programme)
    member = MemberFactory(
        programme=programme,
        external_id="EMP-001",
        name="Asha Rao",
        email="asha@example.com",
        phone="+919812345678",
    )
    return Side(programme, campaign, member, issue(campaign, member))


@pytest.fixture
def side_b(other_programme):
    campaign = make_campaign(other_programme)
    member = MemberFactory(
        programme=other_programme,
        external_id="EMP-900",
        name="Bela Das",
        email="bela@example.com",
        phone="+919800000900",
    )
    return Side(other_programme, campaign, member, issue(campaign, member))


@pytest.fixture
def agent_a(make_user, programme):
    return make_user(roles.SUPPORT_AGENT, programme)


@pytest.fixture
def agent_b(make_user, other_programme):
    return make_user(roles.SUPPORT_AGENT, other_programme)


@pytest.fixture
def manager_a(make_user, programme):
    return make_user(roles.PROGRAMME_MANAGER, programme)


@pytest.fixture
def member_user(make_user, programme):
    return make_user(roles.MEMBER, programme)


@pytest.fixture
def as_user(client):
    """as_user(user) -> the test client signed in as `user`."""

    def sign_in(user):
        client.force_login(user)
        return client

    return sign_in
