"""A campaign with no budget still cannot record more issued value than its column holds
(numeric(14,2)): the issue that would pass it is refused like a spent budget, never a 500."""

from decimal import Decimal

import pytest

from campaigns.models import Campaign
from tests.campaigns.builders import make_reward
from tests.orders.test_order_api import body

pytestmark = pytest.mark.django_db

CEILING = Decimal("999999999999.99")


@pytest.fixture
def unbounded(programme, make_campaign):
    """Any positive value, no budget: only the column's width limits the total."""
    return make_campaign(programme, reward=make_reward(denominations=()))


def test_single_issue_past_the_ceiling_is_refused(client_api, unbounded, snapshot):
    first = client_api.post("/api/v1/issuances", body(unbounded, value=str(CEILING)), format="json")
    assert first.status_code == 201, first.json()
    before = snapshot()
    response = client_api.post(
        "/api/v1/issuances", body(unbounded, external_id="EMP-2", value="0.01"), format="json"
    )
    assert response.status_code == 409, response.content
    assert response.json()["error"]["code"] == "budget_exhausted"
    assert snapshot() == before


def test_batch_items_past_the_ceiling_are_refused(client_api, unbounded):
    items = [
        {**body(unbounded, external_id=f"EMP-{n}", value=value), "reference": f"r{n}"}
        for n, value in enumerate([str(CEILING - 1), "0.50", "1.00", "0.50"])
    ]
    response = client_api.post(
        "/api/v1/issuances/batch", {"items": items}, format="json", HTTP_IDEMPOTENCY_KEY="b-1"
    )
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    # the batch grants the longest prefix that fits: 999,999,999,998.99 + 0.50; the rest refused
    assert [r.get("error", {}).get("code") for r in results] == [
        None,
        None,
        "budget_exhausted",
        "budget_exhausted",
    ]
    unbounded.refresh_from_db()
    assert (unbounded.issued_count, unbounded.issued_value) == (2, CEILING - Decimal("0.50"))


def test_the_refusal_says_how_much_is_left(client_api, unbounded):
    client_api.post("/api/v1/issuances", body(unbounded, value=str(CEILING - 5)), format="json")
    response = client_api.post(
        "/api/v1/issuances", body(unbounded, external_id="EMP-2", value="6.00"), format="json"
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["remaining"] == "5.00"
    assert "999,999,999,999.99" in error["message"]
    assert Campaign.objects.get(pk=unbounded.pk).issued_value == CEILING - 5
