"""Dashboard, catalog, redeem, order history and voucher reveal."""

from decimal import Decimal, InvalidOperation

from django.core.cache import cache
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from campaigns.errors import (
    BudgetExhaustedError,
    CampaignExhaustedError,
    CampaignNotActiveError,
    MemberCapReachedError,
    PoolExhaustedError,
)
from campaigns.models import Campaign
from campaigns.services.vouchers import voucher_reveal
from orders.errors import (
    CampaignApprovalRequiredError,
    CampaignNotInStorefrontError,
    CampaignNotPricedInPointsError,
)
from orders.selectors import (
    STORE_PAGE_SIZE,
    store_activity_for,
    store_campaign_get,
    store_catalog_facets,
    store_catalog_for,
    store_order_get_for,
    store_order_list_for,
    store_redeem_token_get,
)
from orders.services import redemption_points
from orders.services.storefront import (
    StoreTokenInFlightError,
    StoreTokenInvalidError,
    store_redeem,
    store_redeem_token_issue,
)
from orders.views.access import member_required
from orders.views.forms import CatalogFilterForm
from plum.errors import InvalidInputError, PlumError
from wallets.errors import InsufficientPointsError
from wallets.selectors import wallet_get

FACETS_TTL = 300


def _balance(member) -> int:
    wallet = wallet_get(member=member)
    return wallet.balance if wallet else 0


def refusal_in_words(exc: PlumError, *, cost: int | None = None, balance: int | None = None):
    """What a member reads when a redemption is refused."""
    if isinstance(exc, InsufficientPointsError):
        if cost is not None and balance is not None:
            return (
                f"You do not have enough points for this reward: it costs {cost:,} points and "
                f"your balance is {balance:,} points. Nothing was charged."
            )
        return "You do not have enough points for this reward. Nothing was charged."
    if isinstance(exc, CampaignNotActiveError):
        return "This offer has ended or is paused, so it cannot be redeemed. Nothing was charged."
    if isinstance(exc, CampaignExhaustedError | BudgetExhaustedError | PoolExhaustedError):
        return "This reward is sold out. Nothing was charged."
    if isinstance(exc, MemberCapReachedError):
        return (
            "You have already redeemed this reward as many times as the offer allows. "
            "Nothing was charged."
        )
    if isinstance(
        exc,
        CampaignNotInStorefrontError
        | CampaignNotPricedInPointsError
        | CampaignApprovalRequiredError,
    ):
        return "This reward cannot be bought with points. Nothing was charged."
    if isinstance(exc, InvalidInputError):
        return "That value is not offered for this reward. Please choose another."
    return f"{exc.message} Nothing was charged."


def _denominations(campaign: Campaign) -> list[tuple[Decimal, int]]:
    """The values a member may choose, with their points cost."""
    values = [Decimal(str(d)) for d in campaign.reward.denominations] or [campaign.value]
    return [(v, redemption_points(campaign=campaign, value=v)) for v in sorted(set(values))]


def _availability(campaign: Campaign, now) -> tuple[bool, str]:
    if campaign.status != Campaign.Status.ACTIVE or campaign.starts_at > now:
        return False, "Not available now"
    if campaign.ends_at and campaign.ends_at <= now:
        return False, "Offer ended"
    if campaign.max_rewards is not None:
        left = campaign.max_rewards - campaign.issued_count
        if left <= 0:
            return False, "Sold out"
        if left <= 20:
            return True, f"Only {left} left"
    if campaign.budget is not None and campaign.budget - campaign.issued_value < campaign.value:
        return False, "Sold out"
    return True, "Available"


@require_GET
@member_required
def dashboard(request, *, member):
    wallet = wallet_get(member=member)
    context = {
        "member": member,
        "balance": wallet.balance if wallet else 0,
        "activity": store_activity_for(wallet=wallet, limit=10) if wallet else [],
        "orders": store_order_list_for(member=member, limit=5)[:5],
        "nav": "home",
    }
    return render(request, "store/dashboard.html", context)


@require_GET
@member_required
def catalog(request, *, member):
    now = timezone.now()
    facets_key = f"store:facets:{member.programme_id}"
    facets = cache.get(facets_key)
    if facets is None:
        facets = store_catalog_facets(member=member)
        cache.set(facets_key, facets, FACETS_TTL)
    form = CatalogFilterForm(request.GET or None, **facets)
    filters = form.cleaned_data if form.is_valid() else {}
    sort = filters.get("sort") or "points"
    after = None
    cursor = request.GET.get("after", "")
    if cursor:
        try:
            raw_key, raw_id = cursor.rsplit("~", 1)
            after = (raw_key if sort == "name" else Decimal(raw_key), int(raw_id))
        except (ValueError, InvalidOperation):
            after = None
    rows = store_catalog_for(
        member=member,
        now=now,
        country=filters.get("country") or "",
        kind=filters.get("kind") or "",
        merchant_id=filters.get("brand"),
        q=(filters.get("q") or "").strip(),
        sort=sort,
        after=after,
    )
    has_next = len(rows) > STORE_PAGE_SIZE
    rows = rows[:STORE_PAGE_SIZE]
    items = [
        {
            "campaign": c,
            "denominations": _denominations(c),
            "availability": _availability(c, now),
        }
        for c in rows
    ]
    next_url = None
    if has_next:
        last = rows[-1]
        key = last.reward.name if sort == "name" else last.points_cost
        params = request.GET.copy()
        params["after"] = f"{key}~{last.pk}"
        next_url = f"{request.path}?{params.urlencode()}"
    first_url = None
    if after is not None:
        params = request.GET.copy()
        params.pop("after", None)
        first_url = f"{request.path}?{params.urlencode()}"
    return render(
        request,
        "store/catalog.html",
        {
            "member": member,
            "form": form,
            "filters": {
                "q": filters.get("q") or "",
                "country": filters.get("country") or "",
                "kind": filters.get("kind") or "",
                "brand": str(filters.get("brand") or ""),
                "sort": sort,
            },
            "items": items,
            "next_url": next_url,
            "first_url": first_url,
            "nav": "catalog",
        },
    )


def _campaign_or_404(member, campaign_id, now) -> Campaign:
    campaign = store_campaign_get(member=member, campaign_id=campaign_id, now=now)
    if campaign is None or not campaign.reward.points_price:
        raise Http404("No such reward.")
    return campaign


@require_GET
@member_required
def reward_detail(request, campaign_id, *, member):
    now = timezone.now()
    campaign = _campaign_or_404(member, campaign_id, now)
    return render(
        request,
        "store/reward.html",
        {
            "member": member,
            "campaign": campaign,
            "denominations": _denominations(campaign),
            "availability": _availability(campaign, now),
            "balance": _balance(member),
        },
    )


def _render_confirm(request, member, campaign, value, *, error=None, status=200):
    now = timezone.now()
    balance = _balance(member)
    cost = redemption_points(campaign=campaign, value=value)
    available, availability = _availability(campaign, now)
    affordable = balance >= cost
    token = None
    if available and affordable and error is None:
        token = store_redeem_token_issue(member=member, campaign=campaign, value=value)
    elif error is None and not available:
        error = f"{availability}: this reward cannot be redeemed now. Nothing was charged."
    elif error is None:
        error = refusal_in_words(InsufficientPointsError(), cost=cost, balance=balance)
    return render(
        request,
        "store/confirm.html",
        {
            "member": member,
            "campaign": campaign,
            "value": value,
            "cost": cost,
            "balance": balance,
            "balance_after": balance - cost,
            "token": token,
            "error": error,
        },
        status=status,
    )


@require_GET
@never_cache
@member_required
def redeem_confirm(request, campaign_id, *, member):
    """Step two: the cost, the balance after, and a one-time token for the confirm button."""
    now = timezone.now()
    campaign = _campaign_or_404(member, campaign_id, now)
    choices = dict(_denominations(campaign))
    try:
        value = Decimal(request.GET.get("value", ""))
    except InvalidOperation:
        value = None
    if value not in choices:
        return render(
            request,
            "store/reward.html",
            {
                "member": member,
                "campaign": campaign,
                "denominations": list(choices.items()),
                "availability": _availability(campaign, now),
                "balance": _balance(member),
                "error": "Choose one of the values offered.",
            },
            status=400,
        )
    return _render_confirm(request, member, campaign, value)


@require_POST
@never_cache
@member_required
def redeem(request, *, member):
    """Step three: claim the page's one-time token, then redeem through the orders service.
    A second submit of the same page lands on the order the first one created."""
    token = request.POST.get("token", "")[:64]
    try:
        order, created = store_redeem(member=member, token=token, actor=request.user)
    except (StoreTokenInvalidError, StoreTokenInFlightError) as exc:
        return render(
            request, "store/message.html", {"member": member, "message": exc.message}, status=409
        )
    except PlumError as exc:
        entry = store_redeem_token_get(member=member, token=token)
        balance = _balance(member)
        cost = redemption_points(campaign=entry.campaign, value=entry.value)
        message = refusal_in_words(exc, cost=cost, balance=balance)
        return _render_confirm(
            request, member, entry.campaign, entry.value, error=message, status=409
        )
    url = reverse("store:order", args=[order.booking_id])
    return HttpResponseRedirect(f"{url}?{'new=1' if created else 'again=1'}")


@require_GET
@member_required
def order_history(request, *, member):
    try:
        before = int(request.GET.get("before", "") or 0) or None
    except ValueError:
        before = None
    rows = store_order_list_for(member=member, before_id=before)
    has_older = len(rows) > STORE_PAGE_SIZE
    rows = rows[:STORE_PAGE_SIZE]
    return render(
        request,
        "store/orders.html",
        {
            "member": member,
            "orders": rows,
            "older_url": f"{request.path}?before={rows[-1].pk}" if has_older else None,
            "is_first_page": before is None,
            "nav": "orders",
        },
    )


def _order_or_404(member, booking_id):
    order = store_order_get_for(member=member, booking_id=booking_id)
    if order is None:
        raise Http404("No such order.")
    return order


@require_GET
@member_required
def order_detail(request, booking_id, *, member):
    order = _order_or_404(member, booking_id)
    context = {
        "member": member,
        "order": order,
        "is_new": request.GET.get("new") == "1",
        "is_again": request.GET.get("again") == "1",
    }
    return render(request, "store/order.html", context)


@require_POST
@never_cache
@member_required
def order_reveal(request, booking_id, *, member):
    """Show the voucher's full code, once per request, audited (voucher.reveal). Only for a
    completed order whose voucher is the member's."""
    order = _order_or_404(member, booking_id)
    voucher = order.voucher
    if order.status != order.Status.COMPLETED or voucher is None or voucher.member_id != member.pk:
        return redirect("store:order", booking_id=order.booking_id)
    code = voucher_reveal(voucher=voucher, actor=request.user)
    return render(
        request, "store/order.html", {"member": member, "order": order, "revealed_code": code}
    )
