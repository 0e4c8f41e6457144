"""Campaign reads, scoped to what the principal may see. Test-mode API clients see test
vouchers only; live clients live vouchers only; staff see both (test ones marked)."""

from django.db import connection
from django.db.models import Q, QuerySet

from campaigns.models import Campaign, Merchant, Reward, Voucher
from plum import roles
from plum import sql as raw
from plum.models import ApiClient, Programme
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
    if isinstance(principal, ApiClient) and type(campaign_id) is int:
        return _campaign_get_for_client(principal, campaign_id)
    return campaign_list_for(principal=principal, perm=perm).filter(pk=campaign_id).first()


_through = ApiClient.programmes.through
_CAMPAIGN_FOR_CLIENT = (
    f"SELECT {raw.select_list(Campaign)}, {raw.select_list(Programme)}, {raw.select_list(Reward)} "  # noqa: S608 - the models' own names
    f"FROM {raw.table(Campaign)} "
    f"INNER JOIN {raw.table(Programme)} ON {raw.table(Programme)}.{raw.column(Programme, 'id')} "
    f"= {raw.table(Campaign)}.{raw.column(Campaign, 'programme')} "
    f"INNER JOIN {raw.table(Reward)} ON {raw.table(Reward)}.{raw.column(Reward, 'id')} "
    f"= {raw.table(Campaign)}.{raw.column(Campaign, 'reward')} "
    f"WHERE {raw.table(Campaign)}.{raw.column(Campaign, 'id')} = %s "
    f"AND {raw.table(Campaign)}.{raw.column(Campaign, 'programme')} IN ("
    f"SELECT {raw.column(_through, 'programme')} FROM {raw.table(_through)} "
    f"WHERE {raw.column(_through, 'apiclient')} = %s)"
)
_CAMPAIGN_NAMES = raw.attnames(Campaign)
_PROGRAMME_NAMES = raw.attnames(Programme)
_REWARD_NAMES = raw.attnames(Reward)


def _campaign_get_for_client(client: ApiClient, campaign_id: int) -> Campaign | None:
    """`campaign_get_for` for an API client, in one hand-written statement (the same scope as
    `scoped`: the campaign's programme is one the key is bound to; a revoked key sees none),
    with the programme and reward loaded as select_related would."""
    if client.revoked_at is not None or not -(2**63) <= campaign_id < 2**63:
        return None
    with connection.cursor() as cursor:
        cursor.execute(_CAMPAIGN_FOR_CLIENT, [campaign_id, client.pk])
        row = cursor.fetchone()
    if row is None:
        return None
    n_campaign, n_programme = len(_CAMPAIGN_NAMES), len(_PROGRAMME_NAMES)
    campaign = raw.from_row(Campaign, _CAMPAIGN_NAMES, row[:n_campaign])
    programme = raw.from_row(
        Programme, _PROGRAMME_NAMES, row[n_campaign : n_campaign + n_programme]
    )
    reward = raw.from_row(Reward, _REWARD_NAMES, row[n_campaign + n_programme :])
    Campaign.programme.field.set_cached_value(campaign, programme)
    Campaign.reward.field.set_cached_value(campaign, reward)
    return campaign


def voucher_list_for(*, principal: Principal, perm: str = roles.VIEW) -> QuerySet:
    vouchers = scoped(Voucher.objects.select_related("campaign", "programme"), principal, perm)
    if isinstance(principal, ApiClient):
        vouchers = vouchers.filter(is_test=principal.is_test)
    return vouchers
