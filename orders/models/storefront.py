"""The storefront's one-time redemption tokens: what makes "one click does it once"."""

from django.db import models
from django.db.models import Q

from campaigns.models import MONEY, Campaign
from orders.models.order import Order
from plum.models import Member


class StoreRedeemToken(models.Model):
    """Issued when the member sees the confirmation page, claimed by the confirming POST with one
    conditional UPDATE (`claimed_at IS NULL`): a double submit or a refresh finds the token
    claimed and is shown the order the first submit created, never a second one."""

    token = models.CharField(max_length=64)
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    value = models.DecimalField(**MONEY)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    order = models.ForeignKey(
        Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["token"], name="store_redeem_token_unique"),
            models.CheckConstraint(
                condition=Q(order__isnull=True) | Q(claimed_at__isnull=False),
                name="store_redeem_token_order_claimed",
            ),
        ]
        indexes = [models.Index(fields=["created_at"], name="store_redeem_token_created_idx")]

    def __str__(self) -> str:
        return f"{self.token[:8]}… ({'claimed' if self.claimed_at else 'open'})"


class StoreListing(models.Model):
    """The storefront catalog's sort and filter keys, one row per campaign, kept by Postgres
    triggers on the campaign and reward tables (migration `store_listing`): a campaign's points
    cost (value x the reward's points price, rounded up, as `redemption_points` charges) lives
    on one table with its programme and filters, so a page of 100,000 rewards sorted by points
    is an index range scan of this one table, not a sort of the whole catalog. Never written by
    Python code. On SQLite (no triggers) the catalog selector computes the keys live instead."""

    campaign = models.OneToOneField(
        Campaign,
        primary_key=True,
        on_delete=models.DO_NOTHING,
        related_name="store_listing",
        db_constraint=False,
    )
    programme_id = models.BigIntegerField()
    points_cost = models.BigIntegerField(null=True)
    name = models.CharField(max_length=200)
    country = models.CharField(max_length=2)
    kind = models.CharField(max_length=20)
    merchant_id = models.BigIntegerField()
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True)
    # in the storefront, active, auto approval, reward active and priced in points
    listed = models.BooleanField()

    class Meta:
        indexes = [
            models.Index(
                fields=["programme_id", "points_cost", "campaign"],
                condition=Q(listed=True),
                name="store_listing_points_idx",
            ),
            models.Index(
                fields=["programme_id", "name", "campaign"],
                condition=Q(listed=True),
                name="store_listing_name_idx",
            ),
            models.Index(
                fields=["programme_id", "merchant_id", "points_cost", "campaign"],
                condition=Q(listed=True),
                name="store_listing_brand_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}: {self.points_cost} points"
