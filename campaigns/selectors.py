"""Campaign reads, scoped to what the principal may see. Test-mode API clients see test
vouchers only; live clients live vouchers only; staff see both (test ones marked)."""

from django.db.models import Q, QuerySet

from campaigns.models import Campaign, Merchant, Reward, Voucher
from plum import roles
from plum.models import ApiClient
from plum.selectors import Principal, scoped


def reward_list(*, country=None, kind=None, merchant_id=None, q=None, active_only=True) -> QuerySet:
    rewards = Reward.objects.select_related("merchant")
    if active_only:
        rewards = rewards.filter(is_active=True)
    if country:
        rewards = rewards.filter(country=country.upper())
    if kind:
        rewards = rewards.filter(kind=kind)
    if merchant_id:
        rewards = rewards.filter(merchant_id=merchant_id)
    if q:
        # A subquery, not an OR across the join: each side can use its trigram index.
        rewards = rewards.filter(
            Q(name__icontains=q)
            | Q(merchant__in=Merchant.objects.filter(name__icontains=q).values("pk"))
        )
    return rewards


def campaign_list_for(*, principal: Principal, perm: str = roles.VIEW) -> QuerySet:
    return scoped(Campaign.objects.select_related("programme", "reward"), principal, perm)


def campaign_get_for(
    *, principal: Principal, campaign_id, perm: str = roles.VIEW
) -> Campaign | None:
    return campaign_list_for(principal=principal, perm=perm).filter(pk=campaign_id).first()


def voucher_list_for(*, principal: Principal, perm: str = roles.VIEW) -> QuerySet:
    vouchers = scoped(Voucher.objects.select_related("campaign", "programme"), principal, perm)
    if isinstance(principal, ApiClient):
        vouchers = vouchers.filter(is_test=principal.is_test)
    return vouchers
