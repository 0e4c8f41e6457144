"""Storefront redemptions: points burned and the order issued in one transaction, cancellation
reversing the burn once, and POST /api/v1/redemptions."""

import itertools
from decimal import Decimal

import pytest
from django.core.management import call_command

from campaigns.errors import CampaignExhaustedError
from orders.errors import (
    CampaignApprovalRequiredError,
    CampaignNotInStorefrontError,
    CampaignNotPricedInPointsError,
    RedemptionTestModeError,
)
from orders.models import Order
from orders.services import order_cancel, order_redeem_points, redemption_points
from plum import roles
from plum.actors import SYSTEM
from plum.errors import InvalidTransitionError
from tests.campaigns.builders import make_reward
from tests.factories import MemberFactory
from tests.orders.test_order_concurrency import run_in_parallel
from wallets.errors import InsufficientPointsError
from wallets.models import Account, LedgerTransaction, Posting, TransactionKind
from wallets.selectors import wallet_get
from wallets.services import points_earn

D = Decimal
PRICE = 2  # points per rupee: the 500.00 campaign costs 1000 points
COST = 1000
_keys = itertools.count(1)


@pytest.fixture
def earn():
    def make(member, points):
        txn, _ = points_earn(
            member=member,
            points=points,
            reference="award",
            idempotency_key=f"earn-{next(_keys)}",
            actor=SYSTEM,
        )
        return txn

    return make


@pytest.fixture
def make_storefront(make_campaign):
    """make_storefront(programme, points_price=PRICE, **campaign fields): a storefront
    campaign (value 500.00) whose reward costs points_price points per rupee."""

    def make(programme, *, points_price=PRICE, **fields):
        reward = make_reward(currency=programme.currency, points_price=points_price)
        return make_campaign(programme, reward=reward, in_storefront=True, **fields)

    return make


@pytest.fixture
def storefront(programme, make_storefront):
    return make_storefront(programme)


def balance(member) -> int:
    wallet = wallet_get(member=member)
    return wallet.balance if wallet else 0


def ledger():
    return {
        "accounts": list(Account.objects.order_by("pk").values("pk", "balance")),
        "transactions": list(LedgerTransaction.objects.order_by("pk").values_list("pk", flat=True)),
        "postings": list(Posting.objects.order_by("pk").values_list("pk", flat=True)),
    }


def redeem(campaign, member, **kwargs):
    return order_redeem_points(
        campaign=campaign, member=member, reference="shop-1", actor=SYSTEM, **kwargs
    )


# --- service ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("value", "price", "points"),
    [(D("500.00"), 2, 1000), (D("333.33"), 3, 1000), (D("0.01"), 1, 1), (D("10.50"), 7, 74)],
)
def test_redemption_points_is_value_times_price_rounded_up(
    programme, make_storefront, value, price, points
):
    # given
    campaign = make_storefront(programme, points_price=price)
    # when / then
    assert redemption_points(campaign=campaign, value=value) == points


@pytest.mark.django_db
def test_redeem_burns_exactly_the_points_and_completes_one_order(storefront, member, earn):
    # given
    earn(member, 1500)
    # when
    order = redeem(storefront, member)
    # then
    order.refresh_from_db()
    storefront.refresh_from_db()
    assert Order.objects.count() == 1
    assert (order.status, order.source, order.points, order.reference) == (
        "completed",
        "storefront",
        COST,
        "shop-1",
    )
    assert order.voucher is not None
    assert balance(member) == 500
    burn = order.points_transaction
    assert (burn.kind, burn.reason, burn.reference) == (
        TransactionKind.BURN,
        "redemption",
        order.booking_id,
    )
    assert burn.postings.get(account__member=member).amount == -COST
    assert (storefront.issued_count, storefront.issued_value) == (1, D("500.00"))


@pytest.mark.django_db
@pytest.mark.parametrize("points", [0, 999])
def test_insufficient_points_changes_nothing(storefront, member, earn, snapshot, points):
    # given
    if points:
        earn(member, points)
    before, ledger_before = snapshot(), ledger()
    # when
    with pytest.raises(InsufficientPointsError) as caught:
        redeem(storefront, member)
    # then
    assert caught.value.extra == {"balance": points}
    assert (snapshot(), ledger()) == (before, ledger_before)
    assert balance(member) == points


@pytest.mark.django_db
def test_exhausted_campaign_burns_nothing(programme, make_storefront, member, earn, snapshot):
    # given
    campaign = make_storefront(programme, max_rewards=1)
    earn(member, 3000)
    redeem(campaign, member)
    campaign.refresh_from_db()
    before, ledger_before = snapshot(), ledger()
    # when
    with pytest.raises(CampaignExhaustedError):
        redeem(campaign, member)
    # then
    assert (snapshot(), ledger()) == (before, ledger_before)
    assert balance(member) == 2000


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "points_price", "error"),
    [
        ({"in_storefront": False}, PRICE, CampaignNotInStorefrontError),
        ({}, None, CampaignNotPricedInPointsError),
        ({"approval_mode": "manual"}, PRICE, CampaignApprovalRequiredError),
    ],
)
def test_campaigns_that_cannot_be_bought_refuse_and_burn_nothing(
    programme, make_campaign, member, earn, snapshot, fields, points_price, error
):
    # given
    reward = make_reward(currency=programme.currency, points_price=points_price)
    campaign = make_campaign(programme, reward=reward, **{"in_storefront": True, **fields})
    earn(member, 3000)
    before, ledger_before = snapshot(), ledger()
    # when
    with pytest.raises(error):
        redeem(campaign, member)
    # then
    assert (snapshot(), ledger()) == (before, ledger_before)


@pytest.mark.django_db
def test_test_mode_redemption_refuses(storefront, member, earn, snapshot):
    # given
    earn(member, 3000)
    before, ledger_before = snapshot(), ledger()
    # when
    with pytest.raises(RedemptionTestModeError):
        redeem(storefront, member, is_test=True)
    # then
    assert (snapshot(), ledger()) == (before, ledger_before)


@pytest.mark.django_db
def test_cancel_reverses_the_points_once(storefront, member, earn):
    # given
    earn(member, 1500)
    order = redeem(storefront, member)
    # when
    order_cancel(order=order, actor=SYSTEM, reason="changed mind")
    with pytest.raises(InvalidTransitionError):
        order_cancel(order=order, actor=SYSTEM)
    # then
    order.refresh_from_db()
    storefront.refresh_from_db()
    assert order.status == "cancelled"
    assert balance(member) == 1500
    reversal = LedgerTransaction.objects.get(reverses=order.points_transaction)
    assert (reversal.kind, reversal.reason) == (TransactionKind.REVERSAL, "order_cancelled")
    assert LedgerTransaction.objects.filter(kind=TransactionKind.REVERSAL).count() == 1
    assert (storefront.issued_count, storefront.issued_value) == (0, D("0.00"))
    call_command("check_ledger")  # raises CommandError when the ledger does not balance


# --- API -------------------------------------------------------------------------------------


def body(campaign, member="EMP-001", **extra):
    return {"member": member, "campaign": campaign.pk, "reference": "shop-1", **extra}


@pytest.mark.django_db
def test_api_redeem_answers_201_with_the_order_and_its_points(
    make_api, programme, storefront, member, earn
):
    # given
    earn(member, 1500)
    api = make_api([programme], scopes=["redeem"])
    # when
    response = api.post("/api/v1/redemptions", body(storefront), format="json")
    # then
    assert response.status_code == 201, response.json()
    data = response.json()
    order = Order.objects.get()
    assert (data["booking_id"], data["status"], data["source"], data["points"]) == (
        order.booking_id,
        "completed",
        "storefront",
        COST,
    )
    assert (data["member"], data["campaign"], data["value"]) == ("EMP-001", storefront.pk, "500.00")
    assert data["voucher"]["code"]
    assert balance(member) == 500


@pytest.mark.django_db
def test_api_insufficient_points_is_409_with_the_balance(
    make_api, programme, storefront, member, earn, snapshot
):
    # given
    earn(member, 10)
    api = make_api([programme], scopes=["redeem"])
    before, ledger_before = snapshot(), ledger()
    # when
    response = api.post("/api/v1/redemptions", body(storefront), format="json")
    # then
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "insufficient_points"
    assert error["balance"] == 10
    assert (snapshot(), ledger()) == (before, ledger_before)


@pytest.mark.django_db
def test_api_campaign_not_in_storefront_is_409(make_api, programme, make_campaign, member, earn):
    # given
    campaign = make_campaign(programme, reward=make_reward(currency="INR", points_price=PRICE))
    earn(member, 3000)
    api = make_api([programme], scopes=["redeem"])
    # when
    response = api.post("/api/v1/redemptions", body(campaign), format="json")
    # then
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "campaign_not_in_storefront"
    assert Order.objects.count() == 0
    assert balance(member) == 3000


@pytest.mark.django_db
def test_api_anonymous_is_401(api, storefront, member):
    # when
    response = api.post("/api/v1/redemptions", body(storefront), format="json")
    # then
    assert response.status_code == 401
    assert Order.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("scopes", "is_test", "code"),
    [(["issue", "read"], False, None), (["redeem"], True, "points_test_mode_unsupported")],
)
def test_api_wrong_scope_or_test_key_is_403(
    make_api, programme, storefront, member, earn, scopes, is_test, code
):
    # given
    earn(member, 3000)
    api = make_api([programme], scopes=scopes, is_test=is_test)
    # when
    response = api.post("/api/v1/redemptions", body(storefront), format="json")
    # then
    assert response.status_code == 403
    if code:
        assert response.json()["error"]["code"] == code
    assert Order.objects.count() == 0
    assert balance(member) == 3000


@pytest.mark.django_db
def test_api_other_programmes_member_or_campaign_is_404(
    make_api, programme, other_programme, make_storefront, storefront, member, earn
):
    # given
    other_campaign = make_storefront(other_programme)
    other_member = MemberFactory(programme=other_programme, external_id="EMP-900")
    earn(member, 3000)
    earn(other_member, 3000)
    api = make_api([programme], scopes=["redeem"])
    # when
    foreign_campaign = api.post("/api/v1/redemptions", body(other_campaign), format="json")
    foreign_member = api.post("/api/v1/redemptions", body(storefront, "EMP-900"), format="json")
    # then
    assert (foreign_campaign.status_code, foreign_member.status_code) == (404, 404)
    assert Order.objects.count() == 0
    assert (balance(member), balance(other_member)) == (3000, 3000)


@pytest.mark.django_db
def test_api_idempotency_key_replay_burns_once(make_api, programme, storefront, member, earn):
    # given
    earn(member, 5000)
    api = make_api([programme], scopes=["redeem"])
    # when
    first = api.post(
        "/api/v1/redemptions", body(storefront), format="json", HTTP_IDEMPOTENCY_KEY="r-1"
    )
    again = api.post(
        "/api/v1/redemptions", body(storefront), format="json", HTTP_IDEMPOTENCY_KEY="r-1"
    )
    # then
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert Order.objects.count() == 1
    assert balance(member) == 4000


# --- Postgres: real concurrency --------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_20_parallel_redemptions_from_a_wallet_that_affords_5(programme, make_storefront):
    # given
    campaign = make_storefront(programme)
    member = MemberFactory(programme=programme, external_id="EMP-777")
    points_earn(member=member, points=5 * COST + 999, idempotency_key="earn-par", actor=SYSTEM)
    # when
    results = run_in_parallel([lambda: redeem(campaign, member) for _ in range(20)], workers=20)
    # then
    orders = [r for r in results if isinstance(r, Order)]
    refused = [r for r in results if isinstance(r, InsufficientPointsError)]
    assert (len(orders), len(refused)) == (5, 15), [r for r in results if r not in orders]
    campaign.refresh_from_db()
    assert Order.objects.filter(campaign=campaign, status="completed").count() == 5
    assert Order.objects.filter(campaign=campaign).count() == 5
    assert (campaign.issued_count, campaign.issued_value) == (5, D("2500.00"))
    assert balance(member) == 999
    assert not Posting.objects.filter(account__member=member, balance_after__lt=0).exists()
    assert LedgerTransaction.objects.filter(kind=TransactionKind.BURN).count() == 5
    call_command("check_ledger")


# --- admin -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_order_page_shows_the_points_paid(
    client, make_user, programme, storefront, member, earn
):
    # given
    earn(member, 1500)
    order = redeem(storefront, member)
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    # when
    response = client.get(f"/admin/orders/order/{order.pk}/change/")
    # then
    assert response.status_code == 200
    page = response.content.decode()
    assert '<div class="readonly">1000</div>' in page
    assert "Points transaction" in page
