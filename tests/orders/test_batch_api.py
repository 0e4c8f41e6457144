"""POST /api/v1/issuances/batch: one result per item in order, items decided independently,
idempotent as a whole, limited to 1,000 items, a constant number of queries."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.models import CampaignMemberCounter, Voucher
from campaigns.services.vouchers import campaign_counters_from_vouchers
from orders.models import Order
from plum.models import AuditEvent, Member, OutboxMessage
from tests.campaigns.builders import fill_pool
from tests.factories import MemberFactory

D = Decimal
URL = "/api/v1/issuances/batch"
pytestmark = pytest.mark.django_db


def item(campaign, external_id, **extra):
    return {"campaign": campaign.pk, "recipient": {"external_id": external_id}, **extra}


def post(api, items, key=None, url=URL):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return api.post(url, {"items": items}, format="json", **headers)


def codes(response):
    return [r.get("error", {}).get("code", r["status"]) for r in response.json()["results"]]


@pytest.mark.parametrize("url", [URL, URL + "/"])
def test_results_come_one_per_item_in_order(client_api, campaign, url):
    # given
    items = [item(campaign, f"EMP-{i:03d}", reference=f"ref-{i}") for i in range(5)]
    # when
    response = post(client_api, items, url=url)
    # then
    assert response.status_code == 200, response.json()
    data = response.json()
    assert (data["accepted"], data["refused"]) == (5, 0)
    assert [r["index"] for r in data["results"]] == [0, 1, 2, 3, 4]
    assert [r["status"] for r in data["results"]] == [201] * 5
    assert [r["order"]["member"] for r in data["results"]] == [f"EMP-{i:03d}" for i in range(5)]
    assert [r["order"]["reference"] for r in data["results"]] == [f"ref-{i}" for i in range(5)]
    orders = {o.booking_id: o for o in Order.objects.select_related("voucher", "member")}
    for result in data["results"]:
        order = orders[result["order"]["booking_id"]]
        assert result["order"]["status"] == "completed"
        assert result["order"]["voucher"]["code"] == order.voucher.code
        assert order.voucher.member_id == order.member_id
        assert order.member.external_id == result["order"]["member"]
        # rendered as the single endpoint and the order detail render the stored row
        detail = client_api.get(f"/api/v1/orders/{order.booking_id}").json()
        assert result["order"] == detail
    campaign.refresh_from_db()
    assert (campaign.issued_count, campaign.issued_value) == (5, D("2500.00"))
    assert campaign_counters_from_vouchers(campaign) == (5, D("2500.00"))


def test_mixed_items_are_accepted_or_refused_each_with_its_code(
    client_api, programme, other_programme, make_campaign, campaign
):
    # given: a paused campaign, another programme's campaign, bad recipients and values
    paused = make_campaign(programme, active=False)
    foreign = make_campaign(other_programme)
    items = [
        item(campaign, "EMP-001"),
        item(paused, "EMP-002"),
        item(foreign, "EMP-003"),
        {"campaign": campaign.pk, "recipient": {"external_id": "EMP-004", "phone": "12"}},
        item(campaign, "EMP-005", value="777.00"),
        {"campaign": campaign.pk},
        "not an object",
        item(campaign, "EMP-008", surprise=1),
        item(campaign, "EMP-009", value="1000.00"),
    ]
    # when
    response = post(client_api, items)
    # then
    assert response.status_code == 200, response.json()
    results = response.json()["results"]
    assert codes(response) == [
        201,
        "campaign_not_active",
        "not_found",
        "invalid_recipient",
        "invalid",
        "invalid",
        "invalid",
        "invalid",
        201,
    ]
    assert [r["status"] for r in results] == [201, 409, 404, 422, 400, 400, 400, 400, 201]
    assert results[3]["error"]["fields"] == {
        "recipient.phone": ["Enter a phone number in E.164 format, e.g. +14155550123."]
    }
    assert results[4]["error"]["fields"] == {"value": ["The reward is not sold at this value."]}
    assert results[5]["error"]["fields"] == {"recipient": ["This field is required."]}
    assert results[7]["error"]["fields"] == {"surprise": ["Unknown field."]}
    assert results[8]["order"]["value"] == "1000.00"
    assert response.json()["accepted"] == 2
    assert Order.objects.count() == 2
    campaign.refresh_from_db()
    assert (campaign.issued_count, campaign.issued_value) == (2, D("1500.00"))
    assert campaign_counters_from_vouchers(campaign) == (2, D("1500.00"))
    assert Voucher.objects.filter(campaign__in=[paused, foreign]).count() == 0


def test_a_batch_over_max_rewards_accepts_exactly_the_remaining(
    client_api, programme, make_campaign
):
    # given: 3 rewards left
    campaign = make_campaign(programme, max_rewards=5)
    post(client_api, [item(campaign, "EMP-A"), item(campaign, "EMP-B")])
    # when
    response = post(client_api, [item(campaign, f"EMP-{i}") for i in range(6)])
    # then
    assert codes(response) == [201, 201, 201] + ["campaign_exhausted"] * 3
    campaign.refresh_from_db()
    assert (campaign.issued_count, campaign.issued_value) == (5, D("2500.00"))
    assert campaign_counters_from_vouchers(campaign) == (5, D("2500.00"))
    assert Order.objects.filter(campaign=campaign).count() == 5
    # the refused recipients got no order, voucher, audit or outbox row of their own
    assert not Order.objects.filter(member__external_id__in=["EMP-3", "EMP-4", "EMP-5"]).exists()


def test_a_batch_over_the_budget_accepts_the_prefix_that_fits(client_api, programme, make_campaign):
    # given: a budget of 2,000 and values of 500 and 1,000
    campaign = make_campaign(programme, budget=D("2000.00"))
    values = ["500.00", "1000.00", "1000.00", "500.00"]
    # when
    response = post(client_api, [item(campaign, f"EMP-{i}", value=v) for i, v in enumerate(values)])
    # then: 500 + 1,000 fit, the next 1,000 does not, and nothing after it is taken
    assert codes(response) == [201, 201, "budget_exhausted", "budget_exhausted"]
    assert response.json()["results"][2]["error"]["remaining"] == "500.00"
    campaign.refresh_from_db()
    assert (campaign.issued_count, campaign.issued_value) == (2, D("1500.00"))
    assert campaign_counters_from_vouchers(campaign) == (2, D("1500.00"))


def test_a_batch_over_the_per_member_cap(client_api, programme, make_campaign):
    # given: a cap of 2 a member, EMP-A already has one
    campaign = make_campaign(programme, per_member_cap=2)
    post(client_api, [item(campaign, "EMP-A")])
    items = [item(campaign, e) for e in ["EMP-A", "EMP-B", "EMP-A", "EMP-B", "EMP-B", "EMP-C"]]
    # when
    response = post(client_api, items)
    # then
    assert codes(response) == [201, 201, "member_cap_reached", 201, "member_cap_reached", 201]
    counters = dict(
        CampaignMemberCounter.objects.filter(campaign=campaign).values_list(
            "member__external_id", "issued"
        )
    )
    assert counters == {"EMP-A": 2, "EMP-B": 2, "EMP-C": 1}
    campaign.refresh_from_db()
    assert (campaign.issued_count, campaign.issued_value) == (5, D("2500.00"))
    assert campaign_counters_from_vouchers(campaign) == (5, D("2500.00"))


def test_pooled_codes_are_issued_first_and_a_pool_campaign_refuses_past_its_pool(
    client_api, programme, make_campaign
):
    # given: a pool-only campaign with 3 codes
    campaign = make_campaign(programme, code_source="pool", max_rewards=10)
    fill_pool(campaign, 3)
    pooled = set(Voucher.objects.filter(campaign=campaign).values_list("code", flat=True))
    # when
    response = post(client_api, [item(campaign, f"EMP-{i}") for i in range(5)])
    # then: exactly the pool is issued, and what the refused took is given back
    assert codes(response) == [201, 201, 201, "pool_exhausted", "pool_exhausted"]
    issued = {r["order"]["voucher"]["code"] for r in response.json()["results"][:3]}
    assert issued == pooled
    campaign.refresh_from_db()
    assert (campaign.issued_count, campaign.issued_value) == (3, D("1500.00"))
    assert campaign_counters_from_vouchers(campaign) == (3, D("1500.00"))


def test_held_campaign_items_become_pending_orders_taking_no_counter(
    client_api, programme, make_campaign
):
    campaign = make_campaign(programme, approval_mode="manual", max_rewards=1)
    response = post(client_api, [item(campaign, "EMP-1"), item(campaign, "EMP-2")])
    assert [r["status"] for r in response.json()["results"]] == [202, 202]
    assert [r["order"]["approval_state"] for r in response.json()["results"]] == [
        "pending",
        "pending",
    ]
    campaign.refresh_from_db()
    assert (campaign.issued_count, Voucher.objects.count()) == (0, 0)
    assert (
        sorted(
            OutboxMessage.objects.filter(payload__type__startswith="order.").values_list(
                "payload__type", flat=True
            )
        )
        == ["order.created"] * 2 + ["order.pending_approval"] * 2
    )


def test_a_test_key_makes_test_orders_touching_no_live_counter(make_api, programme, make_campaign):
    # given: a live campaign with no reward left
    campaign = make_campaign(programme, max_rewards=1)
    post(make_api([programme]), [item(campaign, "EMP-LIVE")])
    # when
    response = post(
        make_api([programme], is_test=True), [item(campaign, f"T-{i}") for i in range(3)]
    )
    # then
    assert codes(response) == [201, 201, 201]
    assert all(r["order"]["is_test"] for r in response.json()["results"])
    assert Voucher.objects.filter(is_test=True, status="active").count() == 3
    campaign.refresh_from_db()
    assert (campaign.issued_count, campaign.issued_value) == (1, D("500.00"))


def test_members_are_created_and_updated_in_bulk_and_audited(client_api, programme, campaign):
    # given
    MemberFactory(programme=programme, external_id="EMP-OLD", name="Old name", email="")
    items = [
        {"campaign": campaign.pk, "recipient": {"external_id": "EMP-OLD", "name": "New name"}},
        {"campaign": campaign.pk, "recipient": {"external_id": "EMP-NEW", "email": "n@x.org"}},
        {"campaign": campaign.pk, "recipient": {"external_id": "EMP-NEW", "country": "IN"}},
    ]
    # when
    response = post(client_api, items)
    # then
    assert codes(response) == [201, 201, 201]
    old = Member.objects.get(external_id="EMP-OLD")
    new = Member.objects.get(external_id="EMP-NEW")
    assert (old.name, old.email) == ("New name", "")
    assert (new.email, new.country) == ("n@x.org", "IN")
    actions = sorted(AuditEvent.objects.values_list("action", flat=True))
    assert actions.count("member.create") == 1
    assert actions.count("member.update") == 1
    assert actions.count("order.create") == 3
    assert actions.count("voucher.issue") == 3
    assert AuditEvent.objects.get(action="member.update").changes == {
        "name": ["Old name", "New name"]
    }
    events = sorted(
        OutboxMessage.objects.filter(payload__type__startswith="order.").values_list(
            "payload__type", flat=True
        )
    )
    assert events == ["order.completed"] * 3 + ["order.created"] * 3


def test_audit_rows_are_sealed_and_verified_like_any_other(client_api, campaign):
    from plum.services.audit import audit_seal, audit_verify

    post(client_api, [item(campaign, f"EMP-{i}") for i in range(3)])
    audit_seal()
    checked, _, problems = audit_verify()
    assert checked == AuditEvent.objects.count()
    assert problems == []


def test_over_1000_items_is_refused_naming_the_limit(client_api, campaign):
    # when
    response = post(client_api, [item(campaign, f"EMP-{i}") for i in range(1001)])
    # then
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "batch_too_large"
    assert "1,000" in error["message"]
    assert (error["limit"], error["given"]) == (1000, 1001)
    assert Order.objects.count() == Member.objects.count() == 0


@pytest.mark.parametrize(
    "payload",
    [{}, {"items": []}, {"items": "x"}, {"items": [], "extra": 1}, [], "x"],
)
def test_a_malformed_batch_is_400_and_changes_nothing(client_api, payload):
    response = client_api.post(URL, payload, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert Order.objects.count() == 0


def test_same_key_and_body_replays_and_another_body_is_422(client_api, campaign):
    # given
    items = [item(campaign, "EMP-1"), item(campaign, "EMP-2")]
    first = post(client_api, items, key="hr-cycle-2026-12")
    # when
    again = post(client_api, items, key="hr-cycle-2026-12")
    other = post(client_api, [item(campaign, "EMP-3")], key="hr-cycle-2026-12")
    # then
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert Order.objects.count() == 2
    campaign.refresh_from_db()
    assert campaign.issued_count == 2


@pytest.mark.parametrize(
    ("scopes", "status"), [(["read"], 403), (["issue"], 200)], ids=["read-only", "issue"]
)
def test_the_issue_scope_is_required(make_api, programme, campaign, scopes, status):
    response = post(make_api([programme], scopes=scopes), [item(campaign, "EMP-1")])
    assert response.status_code == status


def test_anonymous_is_401(api, campaign):
    assert post(api, [item(campaign, "EMP-1")]).status_code == 401


def statements(captured):
    # The key's last-used stamp is written at most once a minute, whatever the batch.
    return sum(1 for q in captured.captured_queries if "plum_apiclient" not in q["sql"][:30])


@pytest.mark.postgres  # SQLite splits a bulk insert into statements of at most 999 parameters
def test_the_query_count_does_not_grow_with_the_items(client_api, programme, make_campaign):
    # given: two campaigns with caps (the most statements a batch makes), one partly pooled
    capped = make_campaign(programme, max_rewards=1000, per_member_cap=5)
    pooled = make_campaign(programme, budget=D("1000000.00"))
    fill_pool(pooled, 215)  # both batches' items for it come from the pool
    MemberFactory(programme=programme, external_id="EMP-0")

    def batch(n, prefix):
        return [item(capped if i % 2 else pooled, f"{prefix}-{i}") for i in range(n)] + [
            {"campaign": capped.pk, "recipient": {"external_id": "EMP-0", "name": prefix}}
        ]

    # when
    with CaptureQueriesContext(connection) as small:
        assert post(client_api, batch(20, "S")).json()["refused"] == 0
    with CaptureQueriesContext(connection) as large:
        assert post(client_api, batch(400, "L")).json()["refused"] == 0
    # then
    assert statements(large) == statements(small) <= 30
    assert Order.objects.count() == 422
    assert Voucher.objects.filter(campaign=pooled, status="available").count() == 5
