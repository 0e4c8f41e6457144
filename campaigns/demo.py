"""Demo campaigns for `make run`: the sample catalog, an active campaign in programme `acme`
with a pool of codes, three vouchers issued and one partly redeemed, and two storefront
campaigns members can redeem points for. Idempotent."""

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from campaigns.models import Campaign, Reward
from campaigns.services.campaigns import campaign_create, campaign_transition, catalog_import
from campaigns.services.codes import codes_generate
from campaigns.services.vouchers import voucher_issue, voucher_redeem
from plum.actors import SystemActor
from plum.models import Member
from plum.services.jobs import job_run

ACTOR = SystemActor("manage.py seed_demo")
SAMPLE_CATALOG = Path(settings.BASE_DIR) / "docs" / "samples" / "catalog.csv"
CAMPAIGN_NAME = "Diwali bonus (demo)"


def seed_campaigns(programmes) -> list[str]:
    acme = programmes["acme"]
    if not Reward.objects.exists():
        catalog_import(text=SAMPLE_CATALOG.read_text(encoding="utf-8"), actor=ACTOR)
    campaign = Campaign.objects.filter(programme=acme, name=CAMPAIGN_NAME).first()
    if campaign is None:
        reward = (
            Reward.objects.filter(currency=acme.currency, is_active=True)
            .exclude(denominations=[])
            .first()
        )
        if reward is None:
            return ["No INR reward with fixed denominations in the catalog: no demo campaign."]
        campaign = campaign_create(
            programme=acme,
            actor=ACTOR,
            name=CAMPAIGN_NAME,
            reward=reward,
            value=Decimal(str(reward.denominations[0])),
            starts_at=timezone.now() - timedelta(days=1),
            max_rewards=1000,
            per_member_cap=2,
            expiry_days=90,
            code_prefix="DVW",
        )
        campaign = campaign_transition(campaign=campaign, action="activate", actor=ACTOR)
        job = codes_generate(campaign=campaign, count=100, is_test=False, actor=ACTOR)
        job_run(job_id=job.pk)  # a no-op where the eager task already ran it
        members = Member.objects.filter(programme=acme).order_by("external_id")[:3]
        vouchers = []
        for member in members:
            with transaction.atomic():
                vouchers.append(voucher_issue(campaign=campaign, member=member, actor=ACTOR))
        voucher_redeem(
            voucher=vouchers[0],
            amount=vouchers[0].face_value / 2,
            reference="DEMO-POS-1",
            actor=ACTOR,
        )
    _seed_store_campaigns(acme)
    issued = campaign.vouchers.exclude(member=None).order_by("id").first()
    return [
        f"Demo campaign: {campaign.name!r} (id {campaign.pk}) in acme;"
        f" try GET /api/v1/vouchers/{issued.code}"
        if issued
        else "Demo campaign ready."
    ]


# Storefront campaigns (priced in points through the reward's points_price): the demo member
# (750 points after the wallet demo) can afford the first and is refused the second.
STORE_CAMPAIGNS = [
    ("WALLET-IN", Decimal("50"), "Prepaid wallet top-up (demo store)", "DWS"),
    ("BREW-GC-IN", Decimal("100"), "Coffee card (demo store)", "DCS"),
]


def _seed_store_campaigns(acme) -> None:
    for sku, value, name, prefix in STORE_CAMPAIGNS:
        reward = Reward.objects.filter(sku=sku, is_active=True).first()
        if reward is None or Campaign.objects.filter(programme=acme, name=name).exists():
            continue
        campaign = campaign_create(
            programme=acme,
            actor=ACTOR,
            name=name,
            reward=reward,
            value=value,
            starts_at=timezone.now() - timedelta(days=1),
            max_rewards=500,
            per_member_cap=3,
            expiry_days=180,
            code_prefix=prefix,
            in_storefront=True,
        )
        campaign_transition(campaign=campaign, action="activate", actor=ACTOR)
