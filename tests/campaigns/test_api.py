"""The catalog and campaign endpoints: GET /rewards, GET /rewards/{id}, GET|POST /campaigns,
GET|PATCH /campaigns/{id} and the status transitions. Scoping, scopes and anonymous callers
for every endpoint are in test_api_matrix.py."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.api import CampaignUpdateInput
from campaigns.models import Campaign, Reward
from campaigns.services.campaigns import CAMPAIGN_UPDATE_FIELDS, campaign_transition
from plum.actors import SYSTEM
from plum.models import AuditEvent, OutboxMessage
from tests.campaigns.factories import RewardFactory

pytestmark = pytest.mark.usefixtures("fresh_cache")

CAMPAIGNS = "/api/v1/campaigns"


def iso(value) -> str:
    return value.isoformat().replace("+00:00", "Z")


def campaign_body(campaign: Campaign) -> dict:
    campaign.refresh_from_db()
    return {
        "id": campaign.pk,
        "programme": campaign.programme.slug,
        "name": campaign.name,
        "reward": campaign.reward_id,
        "value": f"{campaign.value:.2f}",
        "currency": campaign.currency,
        "starts_at": iso(campaign.starts_at),
        "ends_at": iso(campaign.ends_at) if campaign.ends_at else None,
        "status": campaign.status,
        "max_rewards": campaign.max_rewards,
        "budget": f"{campaign.budget:.2f}" if campaign.budget is not None else None,
        "per_member_cap": campaign.per_member_cap,
        "approval_mode": campaign.approval_mode,
        "code_source": campaign.code_source,
        "code_prefix": campaign.code_prefix,
        "code_length": campaign.code_length,
        "expiry_days": campaign.expiry_days,
        "expiry_date": iso(campaign.expiry_date) if campaign.expiry_date else None,
        "default_channel": campaign.default_channel,
        "in_storefront": campaign.in_storefront,
        "issued_count": campaign.issued_count,
        "issued_value": f"{campaign.issued_value:.2f}",
        "created_at": iso(campaign.created_at),
        "updated_at": iso(campaign.updated_at),
    }


# --- rewards ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_reward_list_shows_the_active_catalog_newest_first(client_api):
    # given
    first = RewardFactory(
        name="Cinema night",
        merchant__name="PVR",
        kind=Reward.Kind.EXPERIENCE,
        denominations=["500.00", "1000.00"],
        points_price=10,
        description="Two tickets",
    )
    second = RewardFactory(name="Headphones", merchant__name="Boat", min_value=100, max_value=900)
    RewardFactory(name="Retired", is_active=False)
    # when
    response = client_api.get("/api/v1/rewards")
    # then
    assert response.status_code == 200
    assert response.json() == {
        "next": None,
        "previous": None,
        "results": [
            {
                "id": second.pk,
                "sku": second.sku,
                "name": "Headphones",
                "description": "",
                "kind": "gift_card",
                "merchant": {"id": second.merchant_id, "name": "Boat"},
                "country": "IN",
                "currency": "INR",
                "denominations": [],
                "min_value": "100.00",
                "max_value": "900.00",
                "points_price": None,
                "is_active": True,
            },
            {
                "id": first.pk,
                "sku": first.sku,
                "name": "Cinema night",
                "description": "Two tickets",
                "kind": "experience",
                "merchant": {"id": first.merchant_id, "name": "PVR"},
                "country": "IN",
                "currency": "INR",
                "denominations": ["500.00", "1000.00"],
                "min_value": None,
                "max_value": None,
                "points_price": 10,
                "is_active": True,
            },
        ],
    }


@pytest.fixture
def catalog(db):
    return {
        "amazon_in": RewardFactory(name="Amazon gift card", merchant__name="Amazon"),
        "amazon_sg": RewardFactory(
            name="Amazon SG", merchant__name="Amazon", country="SG", currency="SGD"
        ),
        "spa": RewardFactory(
            name="Spa day", merchant__name="Taj", kind=Reward.Kind.EXPERIENCE, country="IN"
        ),
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("country=SG", ["amazon_sg"]),
        ("country=in", ["spa", "amazon_in"]),
        ("kind=experience", ["spa"]),
        ("q=amazon", ["amazon_sg", "amazon_in"]),
        ("q=taj", ["spa"]),
        ("country=IN&kind=gift_card", ["amazon_in"]),
        ("q=nothing-like-this", []),
        ("country=&kind=", ["spa", "amazon_sg", "amazon_in"]),
    ],
)
def test_reward_list_filters(client_api, catalog, query, expected):
    # when
    response = client_api.get(f"/api/v1/rewards?{query}")
    # then
    assert response.status_code == 200
    assert [r["id"] for r in response.json()["results"]] == [catalog[k].pk for k in expected]


@pytest.mark.django_db
def test_reward_list_filters_by_merchant(client_api, catalog):
    # when
    response = client_api.get(f"/api/v1/rewards?merchant={catalog['spa'].merchant_id}")
    # then
    assert [r["id"] for r in response.json()["results"]] == [catalog["spa"].pk]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ("kind=voucher", {"kind": ['"voucher" is not a valid choice.']}),
        ("merchant=abc", {"merchant": ["A valid integer is required."]}),
        ("country=IND", {"country": ["Ensure this field has no more than 2 characters."]}),
    ],
)
def test_reward_list_refuses_a_bad_filter(client_api, catalog, query, fields):
    # when
    response = client_api.get(f"/api/v1/rewards?{query}")
    # then
    assert response.status_code == 400
    assert response.json() == {
        "error": {"code": "invalid", "message": "The request has invalid fields.", "fields": fields}
    }


@pytest.mark.django_db
def test_reward_list_pages_with_a_cursor(client_api, catalog):
    # when
    first = client_api.get("/api/v1/rewards?page_size=2").json()
    second = client_api.get(first["next"]).json()
    # then
    assert [r["id"] for r in first["results"]] == [catalog["spa"].pk, catalog["amazon_sg"].pk]
    assert [r["id"] for r in second["results"]] == [catalog["amazon_in"].pk]
    assert second["next"] is None


@pytest.mark.django_db
def test_reward_detail_shows_one_reward_even_when_retired(client_api):
    # given
    reward = RewardFactory(name="Retired", merchant__name="Old brand", is_active=False)
    # when
    response = client_api.get(f"/api/v1/rewards/{reward.pk}/")
    # then
    assert response.status_code == 200
    assert response.json()["id"] == reward.pk
    assert response.json()["is_active"] is False
    assert response.json()["merchant"] == {"id": reward.merchant_id, "name": "Old brand"}


@pytest.mark.django_db
def test_reward_detail_of_an_unknown_id_is_404(client_api):
    # when
    response = client_api.get("/api/v1/rewards/999999")
    # then
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_the_catalog_is_the_same_for_every_programme(make_api, programme, other_programme, catalog):
    # given
    alpha = make_api([programme])
    beta = make_api([other_programme])
    # when
    seen_by_alpha = alpha.get("/api/v1/rewards").json()
    seen_by_beta = beta.get("/api/v1/rewards").json()
    # then
    assert seen_by_alpha == seen_by_beta
    assert len(seen_by_beta["results"]) == 3


@pytest.mark.django_db
def test_reward_list_costs_the_same_queries_for_3_and_30_rows(client_api):
    # given
    RewardFactory.create_batch(3)
    client_api.get("/api/v1/rewards")  # the key's first use of the minute writes last_used_at
    with CaptureQueriesContext(connection) as few:
        assert len(client_api.get("/api/v1/rewards").json()["results"]) == 3
    RewardFactory.create_batch(27)
    # when
    with CaptureQueriesContext(connection) as many:
        assert len(client_api.get("/api/v1/rewards").json()["results"]) == 30
    # then
    assert len(many) == len(few)


# --- campaign list and detail ----------------------------------------------------------------


@pytest.mark.django_db
def test_campaign_list_shows_the_clients_programmes_only(
    client_api, campaign, other_campaign, make_voucher
):
    # given
    make_voucher(campaign)
    # when
    response = client_api.get(CAMPAIGNS)
    # then
    assert response.status_code == 200
    assert response.json() == {"next": None, "previous": None, "results": [campaign_body(campaign)]}
    assert response.json()["results"][0]["issued_count"] == 1
    assert response.json()["results"][0]["issued_value"] == "500.00"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=active", ["beta_active", "alpha_active"]),
        ("status=draft", ["alpha_draft"]),
        ("status=ended", []),
        ("programme=beta", ["beta_active"]),
        ("programme=alpha&status=draft", ["alpha_draft"]),
        ("programme=gamma", []),
        ("", ["beta_active", "alpha_draft", "alpha_active"]),
    ],
)
def test_campaign_list_filters_by_status_and_programme(
    make_api, make_campaign, programme, other_programme, query, expected
):
    # given
    campaigns = {
        "alpha_active": make_campaign(programme),
        "alpha_draft": make_campaign(programme, activate=False),
        "beta_active": make_campaign(other_programme),
    }
    api = make_api([programme, other_programme])
    # when
    response = api.get(f"{CAMPAIGNS}?{query}")
    # then
    assert response.status_code == 200
    assert [c["id"] for c in response.json()["results"]] == [campaigns[k].pk for k in expected]


@pytest.mark.django_db
def test_campaign_list_refuses_an_unknown_status(client_api, campaign):
    # when
    response = client_api.get(f"{CAMPAIGNS}?status=running")
    # then
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"status": ['"running" is not a valid choice.']}


@pytest.mark.django_db
def test_campaign_list_costs_the_same_queries_for_3_and_30_rows(
    client_api, make_campaign, programme
):
    # given
    for _ in range(3):
        make_campaign(programme)
    client_api.get(CAMPAIGNS)  # the key's first use of the minute writes last_used_at
    with CaptureQueriesContext(connection) as few:
        assert len(client_api.get(CAMPAIGNS).json()["results"]) == 3
    for _ in range(27):
        make_campaign(programme)
    # when
    with CaptureQueriesContext(connection) as many:
        assert len(client_api.get(CAMPAIGNS).json()["results"]) == 30
    # then
    assert len(many) == len(few)


@pytest.mark.django_db
def test_campaign_detail(client_api, campaign):
    # when
    response = client_api.get(f"{CAMPAIGNS}/{campaign.pk}")
    # then
    assert response.status_code == 200
    assert response.json() == campaign_body(campaign)


# --- create ----------------------------------------------------------------------------------

NEW_CAMPAIGN = {
    "name": "Year-end bonus",
    "value": "500.00",
    "starts_at": "2031-01-01T00:00:00Z",
    "ends_at": "2031-02-01T00:00:00Z",
    "max_rewards": 100,
    "budget": "50000.00",
    "per_member_cap": 1,
    "approval_mode": "manual",
    "code_source": "generated",
    "code_prefix": "ye",
    "code_length": 10,
    "expiry_days": 90,
    "default_channel": "email",
    "in_storefront": True,
}


@pytest.mark.django_db
def test_post_creates_a_draft_campaign(client_api, programme, reward):
    # when
    response = client_api.post(CAMPAIGNS, {**NEW_CAMPAIGN, "reward": reward.pk}, format="json")
    # then
    assert response.status_code == 201
    campaign = Campaign.objects.get()
    assert response.json() == campaign_body(campaign)
    assert response.json() | {"id": 0, "created_at": "", "updated_at": ""} == {
        "id": 0,
        "programme": "alpha",
        "reward": reward.pk,
        **NEW_CAMPAIGN,
        "code_prefix": "YE",
        "currency": "INR",
        "status": "draft",
        "expiry_date": None,
        "issued_count": 0,
        "issued_value": "0.00",
        "created_at": "",
        "updated_at": "",
    }
    event = AuditEvent.objects.get(action="campaign.create")
    assert (event.object_id, event.programme_id, event.actor_client_id) == (
        str(campaign.pk),
        programme.pk,
        client_api.plum_client.pk,
    )
    assert list(OutboxMessage.objects.values_list("payload__type", flat=True)) == [
        "campaign.created"
    ]


@pytest.mark.django_db
def test_post_with_only_the_required_fields_takes_the_defaults(client_api, reward):
    # when
    response = client_api.post(
        f"{CAMPAIGNS}/",
        {
            "name": "Minimal",
            "reward": reward.pk,
            "value": "10",
            "starts_at": "2031-01-01T00:00:00Z",
        },
        format="json",
    )
    # then
    assert response.status_code == 201
    body = response.json()
    assert (
        body["currency"],
        body["approval_mode"],
        body["code_source"],
        body["code_length"],
        body["value"],
        body["max_rewards"],
        body["in_storefront"],
    ) == ("INR", "auto", "generated", 13, "10.00", None, False)


@pytest.mark.django_db
def test_post_names_the_programme_when_the_key_has_several(
    make_api, programme, other_programme, reward
):
    # given
    api = make_api([programme, other_programme])
    body = {**NEW_CAMPAIGN, "reward": reward.pk}
    # when
    unnamed = api.post(CAMPAIGNS, body, format="json")
    named = api.post(CAMPAIGNS, {**body, "programme": "beta"}, format="json")
    # then
    assert unnamed.status_code == 400
    assert unnamed.json()["error"]["fields"] == {"programme": ["This field is required."]}
    assert named.status_code == 201
    assert list(Campaign.objects.values_list("programme__slug", flat=True)) == ["beta"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"status": "active"}, {"status": ["Unknown field."]}),
        ({"issued_count": 5}, {"issued_count": ["Unknown field."]}),
        ({"reward": 999999}, {"reward": ['Invalid pk "999999" - object does not exist.']}),
        ({"value": "0.00"}, {"value": ["Ensure this value is greater than or equal to 0.01."]}),
        (
            {"ends_at": "2030-12-01T00:00:00Z"},
            {"ends_at": ["The end must be after the start."]},
        ),
        (
            {"expiry_date": "2031-06-01T00:00:00Z"},
            {"expiry_date": ["Give expiry in days after issue or a fixed date, not both."]},
        ),
        ({"currency": "USD"}, {"currency": ["The reward is sold in INR."]}),
        (
            {"code_prefix": "0O"},
            {
                "code_prefix": [
                    "Prefix characters must come from ABCDEFGHJKMNPQRSTUVWXYZ23456789 (not 0O)."
                ]
            },
        ),
    ],
)
def test_post_refuses_invalid_or_unknown_fields_and_creates_nothing(
    client_api, reward, snapshot, change, fields
):
    # given
    before = snapshot()
    # when
    response = client_api.post(
        CAMPAIGNS, {**NEW_CAMPAIGN, "reward": reward.pk, **change}, format="json"
    )
    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert response.json()["error"]["fields"] == fields
    assert snapshot() == before


@pytest.mark.django_db
def test_post_refuses_an_inactive_reward(client_api):
    # given
    retired = RewardFactory(is_active=False)
    # when
    response = client_api.post(CAMPAIGNS, {**NEW_CAMPAIGN, "reward": retired.pk}, format="json")
    # then
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "reward": [f'Invalid pk "{retired.pk}" - object does not exist.']
    }
    assert Campaign.objects.count() == 0


@pytest.mark.django_db
def test_post_from_a_test_key_is_refused(make_api, programme, reward, snapshot):
    # given
    api = make_api([programme], is_test=True)
    before = snapshot()
    # when
    response = api.post(CAMPAIGNS, {**NEW_CAMPAIGN, "reward": reward.pk}, format="json")
    # then
    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "code": "permission_denied",
            "message": "A test API key cannot create campaigns.",
            "fields": {},
        }
    }
    assert snapshot() == before


# --- update ----------------------------------------------------------------------------------


def test_the_update_input_takes_exactly_the_services_updatable_fields():
    # then
    assert sorted(CampaignUpdateInput().fields) == sorted(CAMPAIGN_UPDATE_FIELDS)


@pytest.mark.django_db
def test_patch_changes_the_updatable_fields_and_audits_them(client_api, make_campaign, programme):
    # given
    campaign = make_campaign(programme, activate=False)
    # when
    response = client_api.patch(
        f"{CAMPAIGNS}/{campaign.pk}",
        {
            "name": "Renamed",
            "starts_at": "2031-01-01T00:00:00Z",
            "max_rewards": 10,
            "budget": "5000.00",
            "approval_mode": "manual",
            "in_storefront": True,
        },
        format="json",
    )
    # then
    assert response.status_code == 200
    assert response.json() == campaign_body(campaign)
    campaign.refresh_from_db()
    assert (
        campaign.name,
        campaign.starts_at,
        campaign.max_rewards,
        campaign.budget,
        campaign.approval_mode,
        campaign.in_storefront,
    ) == ("Renamed", datetime(2031, 1, 1, tzinfo=UTC), 10, Decimal("5000.00"), "manual", True)
    event = AuditEvent.objects.get(action="campaign.update")
    assert sorted(event.changes) == [
        "approval_mode",
        "budget",
        "in_storefront",
        "max_rewards",
        "name",
        "starts_at",
    ]
    assert event.actor_client_id == client_api.plum_client.pk


@pytest.mark.django_db
def test_patch_can_clear_nullable_limits(client_api, make_campaign, programme):
    # given
    campaign = make_campaign(programme, max_rewards=5, budget=Decimal("1000.00"))
    # when
    response = client_api.patch(
        f"{CAMPAIGNS}/{campaign.pk}/", {"max_rewards": None, "budget": None}, format="json"
    )
    # then
    assert response.status_code == 200
    assert (response.json()["max_rewards"], response.json()["budget"]) == (None, None)
    campaign.refresh_from_db()
    assert (campaign.max_rewards, campaign.budget) == (None, None)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("issued_count", 0),
        ("issued_value", "0.00"),
        ("programme", "beta"),
        ("status", "ended"),
        ("reward", 1),
        ("value", "1.00"),
        ("currency", "USD"),
        ("code_source", "pool"),
        ("code_prefix", "X"),
        ("code_length", 20),
        ("id", 42),
    ],
)
def test_patch_refuses_fields_that_cannot_change_by_name(
    client_api, campaign, make_voucher, snapshot, field, value
):
    # given: mass assignment of a counter, the owner or the status is refused, not ignored
    make_voucher(campaign)
    before = snapshot()
    # when
    response = client_api.patch(
        f"{CAMPAIGNS}/{campaign.pk}", {"name": "New name", field: value}, format="json"
    )
    # then
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid",
        "message": "The request has invalid fields.",
        "fields": {field: ["This field cannot be changed."]},
    }
    assert snapshot() == before


@pytest.mark.django_db
def test_patch_refuses_an_unknown_field(client_api, campaign, snapshot):
    # given
    before = snapshot()
    # when
    response = client_api.patch(f"{CAMPAIGNS}/{campaign.pk}", {"colour": "red"}, format="json")
    # then
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"colour": ["Unknown field."]}
    assert snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"max_rewards": 1}, {"max_rewards": ["2 rewards were already issued."]}),
        ({"budget": "999.99"}, {"budget": ["1000.00 was already issued."]}),
        (
            {"starts_at": "2031-01-01T00:00:00Z"},
            {"starts_at": ["The start can change only while the campaign is a draft."]},
        ),
        (
            {"max_rewards": -1},
            {"max_rewards": ["Ensure this value is greater than or equal to 0."]},
        ),
    ],
)
def test_patch_refuses_what_the_service_refuses(
    client_api, campaign, make_voucher, snapshot, change, fields
):
    # given
    make_voucher(campaign)
    make_voucher(campaign)
    before = snapshot()
    # when
    response = client_api.patch(f"{CAMPAIGNS}/{campaign.pk}", change, format="json")
    # then
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == fields
    assert snapshot() == before


@pytest.mark.django_db
def test_patch_from_a_test_key_is_refused(make_api, programme, campaign, snapshot):
    # given
    api = make_api([programme], is_test=True)
    before = snapshot()
    # when
    response = api.patch(f"{CAMPAIGNS}/{campaign.pk}", {"budget": "1.00"}, format="json")
    # then
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert snapshot() == before


# --- transitions -----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "before", "after"),
    [
        (["activate"], "draft", "active"),
        (["activate", "pause"], "draft", "paused"),
        (["activate", "pause", "resume"], "draft", "active"),
        (["end"], "draft", "ended"),
        (["activate", "end"], "draft", "ended"),
    ],
)
def test_transitions_move_the_campaign_and_audit_each_step(
    client_api, make_campaign, programme, path, before, after
):
    # given
    campaign = make_campaign(programme, activate=False)
    # when
    responses = [client_api.post(f"{CAMPAIGNS}/{campaign.pk}/{step}") for step in path]
    # then
    assert [r.status_code for r in responses] == [200] * len(path)
    assert responses[-1].json() == campaign_body(campaign)
    assert responses[-1].json()["status"] == after
    assert list(
        AuditEvent.objects.filter(action__in=[f"campaign.{s}" for s in path])
        .order_by("pk")
        .values_list("action", "actor_client_id")
    ) == [(f"campaign.{s}", client_api.plum_client.pk) for s in path]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("setup", "action", "status", "code"),
    [
        (["activate"], "activate", 409, "invalid_transition"),
        (["activate", "pause"], "activate", 409, "invalid_transition"),
        (["activate"], "resume", 409, "invalid_transition"),
        ([], "pause", 409, "invalid_transition"),
        (["end"], "resume", 409, "invalid_transition"),
        (["end"], "end", 409, "invalid_transition"),
    ],
)
def test_an_illegal_transition_is_refused_with_its_code_and_changes_nothing(
    client_api, make_campaign, programme, snapshot, setup, action, status, code
):
    # given
    campaign = make_campaign(programme, activate=False)
    for step in setup:
        campaign = campaign_transition(campaign=campaign, action=step, actor=SYSTEM)
    before = snapshot()
    # when
    response = client_api.post(f"{CAMPAIGNS}/{campaign.pk}/{action}/")
    # then
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert snapshot() == before


@pytest.mark.django_db
def test_transition_from_a_test_key_is_refused(make_api, programme, campaign, snapshot):
    # given
    api = make_api([programme], is_test=True)
    before = snapshot()
    # when
    response = api.post(f"{CAMPAIGNS}/{campaign.pk}/pause")
    # then
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert snapshot() == before
