"""Plain builders for campaign-service tests: set-up data through the services."""

import itertools
from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from campaigns.models import Merchant, Reward
from campaigns.services.campaigns import campaign_create, campaign_transition
from campaigns.services.codes import codes_generate
from campaigns.services.vouchers import voucher_issue
from plum.actors import SYSTEM
from plum.services.jobs import job_run

_skus = itertools.count(1)


def make_reward(*, currency="INR", denominations=("500.00", "1000.00"), **fields):
    merchant, _ = Merchant.objects.get_or_create(name=fields.pop("merchant", "Tanishq"))
    return Reward.objects.create(
        merchant=merchant,
        sku=f"SKU-{next(_skus):06d}",
        name=fields.pop("name", "Gift card"),
        kind=fields.pop("kind", Reward.Kind.GIFT_CARD),
        country=fields.pop("country", "IN"),
        currency=currency,
        denominations=list(denominations),
        **fields,
    )


def make_campaign(programme, *, active=True, reward=None, **fields):
    reward = reward or make_reward(currency=programme.currency)
    defaults = {
        "name": "Diwali bonus",
        "reward": reward,
        "value": Decimal("500.00"),
        "starts_at": timezone.now() - timedelta(days=1),
        "expiry_days": 30,
    }
    campaign = campaign_create(programme=programme, actor=SYSTEM, **{**defaults, **fields})
    if active:
        campaign = campaign_transition(campaign=campaign, action="activate", actor=SYSTEM)
    return campaign


def fill_pool(campaign, count, *, is_test=False):
    job = codes_generate(campaign=campaign, count=count, is_test=is_test, actor=SYSTEM)
    job_run(job_id=job.pk)  # idempotent: a no-op where Celery already ran it eagerly
    job.refresh_from_db()
    assert job.status == "succeeded", job.errors
    return job


def issue(campaign, member, **kwargs):
    with transaction.atomic():
        return voucher_issue(campaign=campaign, member=member, actor=SYSTEM, **kwargs)
