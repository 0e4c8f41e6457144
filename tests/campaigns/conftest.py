"""Campaign fixtures: the catalog is created directly (set-up data); campaigns, codes and
vouchers only through the services, as production creates them."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.models import Campaign, CampaignMemberCounter, Redemption, Voucher
from campaigns.services.campaigns import campaign_create, campaign_transition
from campaigns.services.codes import codes_generate
from campaigns.services.vouchers import voucher_issue
from plum.actors import SYSTEM
from plum.models import AuditEvent, Job, OutboxMessage
from plum.services.jobs import job_run
from tests.campaigns.factories import RewardFactory
from tests.factories import MemberFactory


@pytest.fixture
def fresh_cache(settings):
    """An empty cache: the API's failed-lookup counters live there, keyed by client id, and ids
    repeat across tests and runs. A key prefix of its own per test, rather than clear(), which
    on Redis would also flush the Celery broker sharing the database. The API tests use it
    (`pytestmark`)."""
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
    }
    yield


@pytest.fixture
def reward(db):
    return RewardFactory(name="Shopping voucher", merchant__name="Amazon")


@pytest.fixture
def make_campaign(reward):
    """make_campaign(programme, activate=True, **fields) -> a campaign made by campaign_create
    (value 500.00, started yesterday), activated unless told otherwise."""

    def make(programme, *, activate=True, **fields):
        data = {
            "name": "Diwali bonus",
            "reward": reward,
            "value": Decimal("500.00"),
            "starts_at": timezone.now() - timedelta(days=1),
            **fields,
        }
        campaign = campaign_create(programme=programme, actor=SYSTEM, **data)
        if activate:
            campaign = campaign_transition(campaign=campaign, action="activate", actor=SYSTEM)
        return campaign

    return make


@pytest.fixture
def campaign(make_campaign, programme):
    return make_campaign(programme)


@pytest.fixture
def other_campaign(make_campaign, other_programme):
    return make_campaign(other_programme, name="Beta promo")


@pytest.fixture
def member(programme):
    return MemberFactory(programme=programme, external_id="EMP-001")


@pytest.fixture
def make_voucher():
    """make_voucher(campaign, member=None, is_test=False) -> a voucher issued by voucher_issue."""

    def make(campaign, member=None, *, is_test=False):
        member = member or MemberFactory(programme=campaign.programme)
        with transaction.atomic():
            return voucher_issue(campaign=campaign, member=member, actor=SYSTEM, is_test=is_test)

    return make


@pytest.fixture
def make_pool():
    """make_pool(campaign, count, is_test=False) -> the campaign's available codes, generated
    by the code-generation job (run here: Celery is not eager when REDIS_URL is set)."""

    def make(campaign, count, *, is_test=False):
        job = codes_generate(campaign=campaign, count=count, is_test=is_test, actor=SYSTEM)
        job_run(job_id=job.pk)
        return list(
            Voucher.objects.filter(campaign=campaign, status="available", is_test=is_test).order_by(
                "id"
            )
        )

    return make


@pytest.fixture
def make_api(make_api_client):
    """make_api(programmes, scopes=None, is_test=False) -> an APIClient sending that key."""

    def make(programmes, scopes=None, *, is_test=False, name="Test client"):
        api_client, key = make_api_client(programmes, scopes=scopes, is_test=is_test, name=name)
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        api.plum_client = api_client
        return api

    return make


@pytest.fixture
def snapshot():
    """snapshot() -> every row the campaigns API could change, to prove a refusal changed
    nothing. Failed lookups are audited on purpose, so those audit events are left out."""

    def take():
        return {
            "campaigns": list(Campaign.objects.order_by("pk").values()),
            "vouchers": list(Voucher.objects.order_by("pk").values()),
            "redemptions": list(Redemption.objects.order_by("pk").values()),
            "member_counters": list(CampaignMemberCounter.objects.order_by("pk").values()),
            "jobs": list(Job.objects.order_by("pk").values("pk", "status", "done")),
            "outbox": list(OutboxMessage.objects.order_by("pk").values_list("pk", flat=True)),
            "audit": list(
                AuditEvent.objects.exclude(action="voucher.lookup_failed")
                .order_by("pk")
                .values_list("pk", flat=True)
            ),
        }

    return take
