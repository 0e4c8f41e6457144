"""GET /api/v1/payouts: read-only, scoped to the key's programmes (or the user's Finance
programmes), never to a test key."""

import pytest
from rest_framework.test import APIClient

from orders.services import payout_approve, payouts_close
from plum import roles
from plum.actors import SYSTEM
from tests.orders.payout_builders import (
    after,
    make_merchant,
    merchant_campaign,
    sell,
    weekly_period,
)

pytestmark = pytest.mark.django_db
URL = "/api/v1/payouts"


@pytest.fixture
def payouts(programme, other_programme):
    merchant = make_merchant(commission="2.50", name="Jewels")
    sell(merchant_campaign(programme, merchant))
    sell(merchant_campaign(programme, make_merchant(name="Books")))
    sell(merchant_campaign(other_programme, merchant))
    _, end = weekly_period()
    closed = payouts_close(period_end=end, now=after(end))
    by_key = {(p.programme.slug, p.merchant.name): p for p in closed}
    payout_approve(payout=by_key["alpha", "Books"], actor=SYSTEM)
    return by_key


def ids(response):
    assert response.status_code == 200, response.content
    return sorted(p["id"] for p in response.json()["results"])


def test_anonymous_is_401(payouts):
    response = APIClient().get(URL)
    assert (response.status_code, response.json()["error"]["code"]) == (401, "not_authenticated")


def test_a_key_without_the_read_scope_is_403(payouts, make_api, programme):
    response = make_api([programme], scopes=["issue", "manage"]).get(URL)
    assert (response.status_code, response.json()["error"]["code"]) == (403, "permission_denied")


def test_a_key_lists_its_programmes_payouts_only(payouts, make_api, programme):
    response = make_api([programme], scopes=["read"]).get(URL)
    assert ids(response) == sorted([payouts["alpha", "Jewels"].pk, payouts["alpha", "Books"].pk])
    jewels = next(p for p in response.json()["results"] if p["merchant"] == "Jewels")
    assert {k: jewels[k] for k in ("programme", "currency", "status", "gross", "net")} == {
        "programme": "alpha",
        "currency": "INR",
        "status": "closed",
        "gross": "500.00",
        "net": "487.50",
    }
    assert jewels["order_count"] == 1


def test_a_test_key_sees_no_payouts(payouts, make_api, programme):
    assert ids(make_api([programme], scopes=["read"], is_test=True).get(URL)) == []


def test_filters(payouts, make_api, programme):
    api = make_api([programme], scopes=["read"])
    books, jewels = payouts["alpha", "Books"], payouts["alpha", "Jewels"]
    assert ids(api.get(URL, {"status": "approved"})) == [books.pk]
    assert ids(api.get(URL, {"merchant": jewels.merchant_id})) == [jewels.pk]
    assert ids(api.get(URL, {"currency": "USD"})) == []
    assert ids(api.get(URL, {"programme": "beta"})) == []


@pytest.mark.parametrize(
    "params", [{"status": "draft"}, {"currency": "inr"}, {"merchant": "x"}, {"status": "nope"}]
)
def test_bad_filters_are_400(payouts, make_api, programme, params):
    response = make_api([programme], scopes=["read"]).get(URL, params)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid")


@pytest.mark.parametrize(
    "role, sees",
    [
        (roles.FINANCE, ["Books", "Jewels"]),
        (roles.PROGRAMME_MANAGER, []),
        (roles.SUPPORT_AGENT, []),
    ],
)
def test_a_staff_session_sees_its_finance_programmes(payouts, make_user, programme, role, sees):
    api = APIClient()
    api.force_login(make_user(role, programme))
    response = api.get(URL)
    assert sorted(p["merchant"] for p in response.json()["results"]) == sees
