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
