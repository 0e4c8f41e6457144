"""POST /vouchers/extend (a list of codes, or a campaign filter) and POST /vouchers/recover.
Codes outside the caller's scope are reported as not found and never touched."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns.models import Campaign, CampaignMemberCounter, Voucher
from campaigns.services.vouchers import (
    campaign_counters_from_vouchers,
    voucher_flag,
    voucher_redeem,
    vouchers_expire_lapsed,
)
from plum.actors import SYSTEM
from plum.models import AuditEvent

pytestmark = pytest.mark.usefixtures("fresh_cache")

EXTEND = "/api/v1/vouchers/extend"
RECOVER = "/api/v1/vouchers/recover"


def iso(value) -> str:
    return value.isoformat().replace("+00:00", "Z")


def masked(voucher) -> str:
    return f"…{voucher.code[-4:]}"


def state(*vouchers) -> list[tuple]:
    return [
        Voucher.objects.filter(pk=v.pk).values_list("status", "expires_at", "member_id").get()
        for v in vouchers
    ]


def with_dates(filters: dict, **dates: str) -> dict:
    """The filters with date placeholders ("{in_20_days}") filled in."""
    return {k: v.format(**dates) if isinstance(v, str) else v for k, v in filters.items()}


@pytest.fixture
def new_expiry():
    return (timezone.now() + timedelta(days=60)).replace(microsecond=0)


# --- extend by codes -------------------------------------------------------------------------


@pytest.mark.django_db
def test_extend_by_codes_moves_the_expiry_and_reports_the_rest(
    client_api, campaign, other_campaign, make_voucher, new_expiry
):
    # given
    active = make_voucher(campaign)
    redeemed = make_voucher(campaign)
    voucher_redeem(voucher=redeemed, amount=Decimal("500.00"), reference="R", actor=SYSTEM)
    theirs = make_voucher(other_campaign)
    their_state = state(theirs)
    # when
    response = client_api.post(
        EXTEND,
        {
            "codes": [active.code.lower(), redeemed.code, theirs.code, "NOPE-1234"],
            "expires_at": iso(new_expiry),
        },
        format="json",
    )
    # then
    assert response.status_code == 200
    assert response.json() == {
        "extended": 1,
        "skipped": [{"code": masked(redeemed), "status": "redeemed"}],
        "not_found": [theirs.code, "NOPE-1234"],
    }
    active.refresh_from_db()
    assert (active.expires_at, active.status) == (new_expiry, "active")
    assert state(theirs) == their_state
    event = AuditEvent.objects.get(action="voucher.extend")
    assert (event.actor_client_id, event.programme_id) == (
        client_api.plum_client.pk,
        campaign.programme_id,
    )


@pytest.mark.django_db
def test_extend_revives_an_expired_voucher(
    client_api, make_campaign, programme, make_voucher, new_expiry
):
    # given
    voucher = make_voucher(make_campaign(programme, expiry_days=1))
    Voucher.objects.filter(pk=voucher.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    vouchers_expire_lapsed()
    # when
    response = client_api.post(
        EXTEND, {"codes": [voucher.code], "expires_at": iso(new_expiry)}, format="json"
    )
    # then
    assert response.json() == {"extended": 1, "skipped": [], "not_found": []}
    voucher.refresh_from_db()
    assert (voucher.status, voucher.expires_at) == ("active", new_expiry)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "fields", "message"),
    [
        (
            {"codes": ["X"], "expires_at": "2001-01-01T00:00:00Z"},
            {"expires_at": ["The new expiry must be in the future."]},
            "The request has invalid fields.",
        ),
        (
            {"expires_at": "2031-01-01T00:00:00Z"},
            {},
            "Give either `codes` or a `campaign`, not both.",
        ),
        (
            {"codes": ["X"], "campaign": 1, "expires_at": "2031-01-01T00:00:00Z"},
            {},
            "Give either `codes` or a `campaign`, not both.",
        ),
        (
            {"codes": ["X"], "status": ["active"], "expires_at": "2031-01-01T00:00:00Z"},
            {"status": ["Only with a campaign."]},
            "The request has invalid fields.",
        ),
        (
            {"codes": [], "expires_at": "2031-01-01T00:00:00Z"},
            {"codes": ["Ensure this field has at least 1 elements."]},
            "The request has invalid fields.",
        ),
        (
            {"codes": ["X"] * 1001, "expires_at": "2031-01-01T00:00:00Z"},
            {"codes": ["Ensure this field has no more than 1000 elements."]},
            "The request has invalid fields.",
        ),
        (
            {"codes": ["X"]},
            {"expires_at": ["This field is required."]},
            "The request has invalid fields.",
        ),
        (
            {"campaign": 1, "status": ["gone"], "expires_at": "2031-01-01T00:00:00Z"},
            {"status": {"0": ['"gone" is not a valid choice.']}},
            "The request has invalid fields.",
        ),
        (
            {"codes": ["X"], "expires_at": "2031-01-01T00:00:00Z", "member": "EMP-1"},
            {"member": ["Unknown field."]},
            "The request has invalid fields.",
        ),
    ],
)
def test_extend_refuses_bad_input_and_changes_nothing(
    client_api, campaign, make_voucher, snapshot, body, fields, message
):
    # given
    make_voucher(campaign)
    before = snapshot()
    # when
    response = client_api.post(EXTEND, body, format="json")
    # then
    assert response.status_code == 400
    assert response.json()["error"] == {"code": "invalid", "message": message, "fields": fields}
    assert snapshot() == before


# --- extend a campaign -----------------------------------------------------------------------


@pytest.fixture
def campaign_vouchers(make_campaign, programme, make_voucher, make_pool):
    campaign = make_campaign(programme, expiry_days=10)
    active = make_voucher(campaign)
    partly = make_voucher(campaign)
    voucher_redeem(voucher=partly, amount=Decimal("1.00"), reference="R", actor=SYSTEM)
    flagged = make_voucher(campaign)
    voucher_flag(voucher=flagged, actor=SYSTEM, reason="check")
    expired = make_voucher(campaign)
    Voucher.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    vouchers_expire_lapsed()
    late = make_voucher(campaign)
    Voucher.objects.filter(pk=late.pk).update(expires_at=timezone.now() + timedelta(days=40))
    (pooled,) = make_pool(campaign, 1)
    return {
        "campaign": campaign,
        "active": active,
        "partly": partly,
        "flagged": flagged,
        "expired": expired,
        "late": late,
        "pooled": pooled,
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("filters", "extended"),
    [
        ({}, ["active", "partly", "late"]),
        ({"status": ["expired"]}, ["expired"]),
        ({"status": ["available", "flagged"]}, ["flagged", "pooled"]),
        ({"expires_before": "{in_20_days}"}, ["active", "partly"]),
        (
            {"status": ["active", "expired"], "expires_before": "{in_20_days}"},
            ["active", "expired"],
        ),
    ],
)
def test_extend_a_campaign_with_filters(
    client_api, campaign_vouchers, new_expiry, filters, extended
):
    # given
    filters = with_dates(filters, in_20_days=iso(timezone.now() + timedelta(days=20)))
    untouched = [k for k in campaign_vouchers if k != "campaign" and k not in extended]
    before = {k: state(campaign_vouchers[k]) for k in untouched}
    # when
    response = client_api.post(
        EXTEND,
        {"campaign": campaign_vouchers["campaign"].pk, "expires_at": iso(new_expiry), **filters},
        format="json",
    )
    # then
    assert response.status_code == 200
    assert response.json() == {"extended": len(extended), "skipped": [], "not_found": []}
    for key in extended:
        campaign_vouchers[key].refresh_from_db()
        assert campaign_vouchers[key].expires_at == new_expiry
    assert {k: state(campaign_vouchers[k]) for k in untouched} == before


@pytest.mark.django_db
def test_extend_a_campaign_reports_the_vouchers_it_cannot_extend(
    client_api, campaign, make_voucher, new_expiry
):
    # given
    redeemed = make_voucher(campaign)
    voucher_redeem(voucher=redeemed, amount=Decimal("500.00"), reference="R", actor=SYSTEM)
    # when
    response = client_api.post(
        EXTEND,
        {"campaign": campaign.pk, "status": ["redeemed"], "expires_at": iso(new_expiry)},
        format="json",
    )
    # then
    assert response.json() == {
        "extended": 0,
        "skipped": [{"code": masked(redeemed), "status": "redeemed"}],
        "not_found": [],
    }


@pytest.mark.django_db
def test_extend_a_campaign_of_another_programme_is_404(
    client_api, other_campaign, make_voucher, snapshot, new_expiry
):
    # given
    make_voucher(other_campaign)
    before = snapshot()
    # when
    response = client_api.post(
        EXTEND, {"campaign": other_campaign.pk, "expires_at": iso(new_expiry)}, format="json"
    )
    # then
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert snapshot() == before


@pytest.mark.django_db
def test_a_test_key_extends_only_the_campaigns_test_vouchers(
    make_api, programme, campaign, make_voucher, new_expiry
):
    # given
    api = make_api([programme], is_test=True)
    live = make_voucher(campaign)
    test = make_voucher(campaign, is_test=True)
    live_before = state(live)
    # when
    response = api.post(
        EXTEND, {"campaign": campaign.pk, "expires_at": iso(new_expiry)}, format="json"
    )
    # then
    assert response.json() == {"extended": 1, "skipped": [], "not_found": []}
    test.refresh_from_db()
    assert test.expires_at == new_expiry
    assert state(live) == live_before


# --- recover ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_recover_to_the_pool_frees_the_code_and_gives_the_counts_back(
    client_api, make_campaign, programme, member, make_voucher
):
    # given
    campaign = make_campaign(programme, per_member_cap=2)
    first = make_voucher(campaign, member)
    second = make_voucher(campaign, member)
    # when
    response = client_api.post(RECOVER, {"codes": [first.code]}, format="json")
    # then
    assert response.status_code == 200
    assert response.json() == {"recovered": 1, "refused": [], "not_found": []}
    first.refresh_from_db()
    assert (first.status, first.member_id, first.issued_at, first.expires_at) == (
        "available",
        None,
        None,
        None,
    )
    campaign.refresh_from_db()
    assert (campaign.issued_count, campaign.issued_value) == (1, Decimal("500.00"))
    assert campaign_counters_from_vouchers(campaign) == (1, Decimal("500.00"))
    assert CampaignMemberCounter.objects.get(campaign=campaign, member=member).issued == 1
    second.refresh_from_db()
    assert second.status == "active"
    assert AuditEvent.objects.get(action="voucher.recover").actor_client_id == (
        client_api.plum_client.pk
    )


@pytest.mark.django_db
def test_recover_without_the_pool_retires_the_voucher(client_api, campaign, make_voucher):
    # given
    voucher = make_voucher(campaign)
    # when
    response = client_api.post(RECOVER, {"codes": [voucher.code], "to_pool": False}, format="json")
    # then
    assert response.json() == {"recovered": 1, "refused": [], "not_found": []}
    voucher.refresh_from_db()
    assert voucher.status == "recovered"
    campaign.refresh_from_db()
    assert (campaign.issued_count, campaign.issued_value) == (0, Decimal("0.00"))


@pytest.mark.django_db
def test_recover_refuses_redeemed_vouchers_and_ignores_other_programmes(
    client_api, campaign, other_campaign, make_voucher, make_pool
):
    # given
    partly = make_voucher(campaign)
    voucher_redeem(voucher=partly, amount=Decimal("1.00"), reference="R", actor=SYSTEM)
    (pooled,) = make_pool(campaign, 1)
    theirs = make_voucher(other_campaign)
    untouched = state(partly, pooled, theirs)
    their_campaign = Campaign.objects.filter(pk=other_campaign.pk).values().get()
    # when
    response = client_api.post(
        RECOVER, {"codes": [partly.code, pooled.code, theirs.code]}, format="json"
    )
    # then
    assert response.status_code == 200
    assert response.json() == {
        "recovered": 0,
        "refused": [
            {"code": masked(partly), "status": "partially_redeemed"},
            {"code": masked(pooled), "status": "available"},
        ],
        "not_found": [theirs.code],
    }
    assert state(partly, pooled, theirs) == untouched
    assert Campaign.objects.filter(pk=other_campaign.pk).values().get() == their_campaign


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"codes": ["This field is required."]}),
        ({"codes": []}, {"codes": ["Ensure this field has at least 1 elements."]}),
        ({"codes": ["X"], "to_pool": "sometimes"}, {"to_pool": ["Must be a valid boolean."]}),
        ({"codes": ["X"], "campaign": 1}, {"campaign": ["Unknown field."]}),
    ],
)
def test_recover_refuses_bad_input(client_api, campaign, make_voucher, snapshot, body, fields):
    # given
    make_voucher(campaign)
    before = snapshot()
    # when
    response = client_api.post(RECOVER, body, format="json")
    # then
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == fields
    assert snapshot() == before
