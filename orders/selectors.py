"""Order reads, scoped to what the principal may see. Test-mode API clients see test orders
only, live clients live orders only; staff see both (test ones marked)."""

from django.db.models import Count, Q, QuerySet

from orders.models import Event, Order, Payout
from plum import roles
from plum.models import ApiClient
from plum.selectors import Principal, programmes_for, scoped


def order_list_for(*, principal: Principal, perm: str = roles.VIEW) -> QuerySet:
    orders = scoped(
        Order.objects.select_related("programme", "campaign", "member", "voucher"),
        principal,
        perm,
    )
    if isinstance(principal, ApiClient):
        orders = orders.filter(is_test=principal.is_test)
    return orders


def order_get_for(*, principal: Principal, booking_id: str, perm: str = roles.VIEW) -> Order | None:
    """One order by booking id; None for a missing order and one outside scope alike."""
    booking_id = (booking_id or "").strip().upper()
    return order_list_for(principal=principal, perm=perm).filter(booking_id=booking_id).first()


def order_approval_queue_for(*, principal: Principal, perm: str = roles.MANAGE) -> QuerySet:
    return order_list_for(principal=principal, perm=perm).filter(
        status=Order.Status.PENDING, approval_state=Order.ApprovalState.PENDING
    )


def order_counts_by_campaign_for(*, principal: Principal, perm: str = roles.VIEW) -> QuerySet:
    """Orders per campaign by status, read live from the table (one grouped query): rows of
    campaign_id, pending, awaiting_approval, completed, cancelled, total."""
    pending = Q(status=Order.Status.PENDING)
    return (
        order_list_for(principal=principal, perm=perm)
        .select_related(None)
        .order_by("campaign_id")
        .values("campaign_id")
        .annotate(
            pending=Count("id", filter=pending),
            awaiting_approval=Count(
                "id", filter=pending & Q(approval_state=Order.ApprovalState.PENDING)
            ),
            completed=Count("id", filter=Q(status=Order.Status.COMPLETED)),
            cancelled=Count("id", filter=Q(status=Order.Status.CANCELLED)),
            total=Count("id"),
        )
    )


def payout_list_for(*, principal: Principal, perm: str = roles.FINANCE_PERM) -> QuerySet:
    """Payouts of the programmes the principal holds `perm` on (Finance). Payouts are live
    money: a test-mode API client sees none."""
    if isinstance(principal, ApiClient) and principal.is_test:
        return Payout.objects.none()
    return scoped(
        Payout.objects.select_related("programme", "merchant").exclude(status=Payout.Status.DRAFT),
        principal,
        perm,
    )


def delivery_list_for(*, principal: Principal, perm: str = roles.VIEW) -> QuerySet:
    """Deliveries of the principal's programmes; API clients see their mode's (test/live) only."""
    from orders.models import Delivery

    deliveries = scoped(
        Delivery.objects.select_related("order", "order__member", "campaign", "programme"),
        principal,
        perm,
    )
    if isinstance(principal, ApiClient):
        deliveries = deliveries.filter(is_test=principal.is_test)
    return deliveries


def delivery_resendable_for(*, principal: Principal) -> QuerySet:
    """Deliveries a principal may resend: programmes it manages or supports."""
    from orders.models import Delivery

    if isinstance(principal, ApiClient):
        return delivery_list_for(principal=principal)
    programmes = programmes_for(principal, roles.MANAGE) | programmes_for(principal, roles.SUPPORT)
    return Delivery.objects.select_related("order", "programme").filter(
        programme__in=programmes.values("pk")
    )


def event_list_for(*, principal: Principal, perm: str = roles.VIEW) -> QuerySet:
    """Events of the principal's programmes; an API client sees the events it sent only."""
    events = scoped(Event.objects.select_related("programme", "member"), principal, perm)
    if isinstance(principal, ApiClient):
        events = events.filter(api_client=principal)
    return events


def event_get_for(*, principal: Principal, event_id: str) -> Event | None:
    """An event by the caller's event id; None for a missing one and one outside scope alike.
    Event ids are unique per API client: a staff user gets the earliest event with this id."""
    return event_list_for(principal=principal).filter(event_id=event_id).order_by("id").first()


# --- storefront reads: a member sees only their own wallet and orders ------------------------

STORE_PAGE_SIZE = 24


def store_catalog_for(
    *,
    member,
    now,
    country: str = "",
    kind: str = "",
    merchant_id: int | None = None,
    q: str = "",
    sort: str = "points",
    after: tuple | None = None,
    limit: int = STORE_PAGE_SIZE,
) -> list:
    """The storefront campaigns of the member's programme that are issuing now and priced in
    points, with the reward and merchant, each annotated with `points_cost` (value x price,
    rounded up, as `redemption_points` charges). Keyset pages: `after` is the (sort key, id) of
    the previous page's last row; one query per page whatever the page number, and `limit + 1`
    rows are read so the caller knows whether there is a next page.

    On Postgres the page is picked from `StoreListing` (kept by triggers), see
    `_store_catalog_from_listing`; elsewhere the keys are computed live (fine for an embedded
    demo's catalog)."""
    from django.db import connection
    from django.db.models import DecimalField, ExpressionWrapper, F
    from django.db.models.functions import Ceil

    from campaigns.models import Campaign, Merchant, Reward

    if connection.vendor == "postgresql":
        return _store_catalog_from_listing(
            member=member,
            now=now,
            country=country,
            kind=kind,
            merchant_id=merchant_id,
            q=q,
            sort=sort,
            after=after,
            limit=limit,
        )
    campaigns = (
        Campaign.objects.issuing(now)
        .filter(
            programme_id=member.programme_id,
            in_storefront=True,
            approval_mode=Campaign.ApprovalMode.AUTO,
            reward__points_price__isnull=False,
            reward__is_active=True,
        )
        .select_related("reward", "reward__merchant")
        .annotate(
            points_cost=Ceil(
                ExpressionWrapper(
                    F("value") * F("reward__points_price"),
                    output_field=DecimalField(max_digits=24, decimal_places=2),
                )
            )
        )
    )
    if country:
        campaigns = campaigns.filter(reward__country=country)
    if kind:
        campaigns = campaigns.filter(reward__kind=kind)
    if merchant_id:
        campaigns = campaigns.filter(reward__merchant_id=merchant_id)
    if q:
        campaigns = campaigns.filter(
            Q(reward__in=Reward.objects.filter(name__icontains=q).values("pk"))
            | Q(reward__merchant__in=Merchant.objects.filter(name__icontains=q).values("pk"))
        )
    key = {"points": "points_cost", "name": "reward__name"}[sort.lstrip("-")]
    campaigns = _keyset(campaigns, key=key, id_field="id", sort=sort, after=after)
    return list(campaigns[: limit + 1])


def _keyset(rows, *, key: str, id_field: str, sort: str, after: tuple | None):
    descending = sort.startswith("-")
    if after is not None:
        value, last_id = after
        # The bound alone is an index condition; the OR only sorts out ties on the bound.
        if descending:
            rows = rows.filter(**{f"{key}__lte": value}).filter(
                Q(**{f"{key}__lt": value}) | Q(**{f"{id_field}__lt": last_id})
            )
        else:
            rows = rows.filter(**{f"{key}__gte": value}).filter(
                Q(**{f"{key}__gt": value}) | Q(**{f"{id_field}__gt": last_id})
            )
    order = [f"-{key}", f"-{id_field}"] if descending else [key, id_field]
    return rows.order_by(*order)


def _store_catalog_from_listing(
    *, member, now, country, kind, merchant_id, q, sort, after, limit
) -> list:
    """Postgres: one query on `StoreListing` alone picks the page (an index range scan, or for
    a text search a trigram bitmap and a top-N sort of the listing rows only), a second loads
    those campaigns by primary key."""
    from campaigns.models import Campaign, Merchant
    from orders.models import StoreListing

    rows = StoreListing.objects.filter(
        programme_id=member.programme_id, listed=True, starts_at__lte=now
    ).filter(Q(ends_at__isnull=True) | Q(ends_at__gt=now))
    if country:
        rows = rows.filter(country=country)
    if kind:
        rows = rows.filter(kind=kind)
    if merchant_id:
        rows = rows.filter(merchant_id=merchant_id)
    if q:
        # Brands first (a small table): the planner then sees a trigram match OR a short list.
        brand_ids = list(
            Merchant.objects.filter(name__icontains=q).values_list("pk", flat=True)[:200]
        )
        match = Q(name__icontains=q)
        if brand_ids:
            match |= Q(merchant_id__in=brand_ids)
        rows = rows.filter(match)
    key = {"points": "points_cost", "name": "name"}[sort.lstrip("-")]
    rows = _keyset(rows, key=key, id_field="campaign_id", sort=sort, after=after)
    page = list(rows.values_list("campaign_id", "points_cost")[: limit + 1])
    campaigns = Campaign.objects.select_related("reward", "reward__merchant").in_bulk(
        [campaign_id for campaign_id, _ in page]
    )
    result = []
    for campaign_id, points_cost in page:
        campaign = campaigns.get(campaign_id)
        if campaign is not None:
            campaign.points_cost = points_cost
            result.append(campaign)
    return result


def store_catalog_facets(*, member) -> dict:
    """Countries and merchants the member's storefront offers (for the filter lists): two
    grouped queries; the caller caches them."""
    from campaigns.models import Campaign, Merchant

    base = Campaign.objects.filter(
        programme_id=member.programme_id, in_storefront=True, status=Campaign.Status.ACTIVE
    )
    countries = sorted(base.order_by().values_list("reward__country", flat=True).distinct())
    merchants = list(
        Merchant.objects.filter(pk__in=base.order_by().values("reward__merchant_id"))
        .order_by("name")
        .values_list("id", "name")
    )
    return {"countries": countries, "merchants": merchants}


def store_campaign_get(*, member, campaign_id: int, now):
    """One storefront campaign of the member's programme, issuing or not (the redeem page says
    why it cannot be bought); None outside the member's programme or not in the storefront."""
    from campaigns.models import Campaign

    return (
        Campaign.objects.filter(
            pk=campaign_id, programme_id=member.programme_id, in_storefront=True
        )
        .select_related("reward", "reward__merchant")
        .first()
    )


def store_order_list_for(*, member, before_id: int | None = None, limit: int = STORE_PAGE_SIZE):
    """The member's orders, newest first, keyset by id (index order_member_idx); `limit + 1`
    rows so the caller knows whether there is an older page."""
    orders = Order.objects.filter(member=member).select_related(
        "campaign__reward__merchant", "voucher"
    )
    if before_id:
        orders = orders.filter(id__lt=before_id)
    return list(orders.order_by("-id")[: limit + 1])


def store_order_get_for(*, member, booking_id: str) -> Order | None:
    """One of the member's own orders; None for a missing order and another member's alike."""
    booking_id = (booking_id or "").strip().upper()
    return (
        Order.objects.filter(member=member, booking_id=booking_id)
        .select_related("campaign__reward__merchant", "voucher")
        .first()
    )


def store_activity_for(*, wallet, limit: int = 10) -> list:
    """The latest postings on the member's wallet with their transaction (reason, reference)."""
    from wallets.selectors import wallet_posting_list

    return list(wallet_posting_list(wallet=wallet).order_by("-id")[:limit])


def store_redeem_token_get(*, member, token: str):
    """The member's own redemption token with its campaign (for re-showing a refused page)."""
    from orders.models import StoreRedeemToken

    return (
        StoreRedeemToken.objects.filter(token=token, member=member)
        .select_related("campaign__reward__merchant")
        .first()
    )
