"""Every campaigns endpoint against the same matrix: anonymous (401), a client of another
programme (404 for anything of this programme), a key without the scope (403), the right key
(success); staff sessions by role. Every refusal changes nothing."""

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.test import Client
from rest_framework.test import APIClient

from campaigns.services.campaigns import campaign_transition
from campaigns.services.vouchers import voucher_flag
from plum import roles
from plum.actors import SYSTEM
from plum.models import ApiScope, Programme
from tests.factories import UserFactory

pytestmark = pytest.mark.usefixtures("fresh_cache")

ALL_SCOPES = set(ApiScope.values)
LATER = "2031-01-01T00:00:00Z"


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    success: int
    opened_by: tuple[str, ...]
    body: Callable[[dict], dict | str] | None = None
    csv: bool = False
    # What a client bound to another programme gets: 404 for this programme's objects; lists
    # and bulk requests by code answer normally, without this programme's rows.
    other_programme: int = 404
    other_programme_code: str | None = "not_found"  # None: a normal answer, no error

    def __str__(self) -> str:
        return self.name


ENDPOINTS = [
    Endpoint(
        "reward-list",
        "GET",
        "/api/v1/rewards",
        200,
        ("read",),
        other_programme=200,
        other_programme_code=None,
    ),
    Endpoint(
        "reward-detail",
        "GET",
        "/api/v1/rewards/{reward}",
        200,
        ("read",),
        other_programme=200,
        other_programme_code=None,
    ),
    Endpoint(
        "campaign-list",
        "GET",
        "/api/v1/campaigns",
        200,
        ("read",),
        other_programme=200,
        other_programme_code=None,
    ),
    Endpoint(
        "campaign-create",
        "POST",
        "/api/v1/campaigns",
        201,
        ("manage",),
        body=lambda w: {
            "programme": "alpha",
            "name": "New",
            "reward": w["reward"],
            "value": "500.00",
            "starts_at": LATER,
        },
    ),
    Endpoint("campaign-detail", "GET", "/api/v1/campaigns/{campaign}", 200, ("read",)),
    Endpoint(
        "campaign-update",
        "PATCH",
        "/api/v1/campaigns/{campaign}",
        200,
        ("manage",),
        body=lambda w: {"name": "Renamed", "max_rewards": 50},
    ),
    Endpoint("campaign-activate", "POST", "/api/v1/campaigns/{draft}/activate", 200, ("manage",)),
    Endpoint("campaign-pause", "POST", "/api/v1/campaigns/{campaign}/pause", 200, ("manage",)),
    Endpoint("campaign-resume", "POST", "/api/v1/campaigns/{paused}/resume", 200, ("manage",)),
    Endpoint("campaign-end", "POST", "/api/v1/campaigns/{campaign}/end", 200, ("manage",)),
    Endpoint(
        "codes-generate",
        "POST",
        "/api/v1/campaigns/{campaign}/codes",
        202,
        ("manage",),
        body=lambda w: {"count": 2},
    ),
    Endpoint(
        "codes-import",
        "POST",
        "/api/v1/campaigns/{campaign}/codes/import",
        201,
        ("manage",),
        body=lambda w: "code\nIMPORTED-1\n",
        csv=True,
    ),
    Endpoint(
        "voucher-list",
        "GET",
        "/api/v1/vouchers",
        200,
        ("read",),
        other_programme=200,
        other_programme_code=None,
    ),
    Endpoint(
        "voucher-detail",
        "GET",
        "/api/v1/vouchers/{code}",
        200,
        ("read",),
        other_programme_code="voucher_not_found",
    ),
    Endpoint(
        "voucher-redeem",
        "POST",
        "/api/v1/vouchers/{code}/redeem",
        201,
        ("redeem",),
        body=lambda w: {"amount": "10.00", "reference": "POS-1"},
        other_programme_code="voucher_not_found",
    ),
    Endpoint(
        "voucher-flag",
        "POST",
        "/api/v1/vouchers/{code}/flag",
        200,
        ("manage", "support"),
        body=lambda w: {"reason": "Suspicious"},
        other_programme_code="voucher_not_found",
    ),
    Endpoint(
        "voucher-unflag",
        "POST",
        "/api/v1/vouchers/{flagged}/unflag",
        200,
        ("manage", "support"),
        other_programme_code="voucher_not_found",
    ),
    Endpoint(
        "vouchers-extend-codes",
        "POST",
        "/api/v1/vouchers/extend",
        200,
        ("manage",),
        body=lambda w: {"codes": [w["code"]], "expires_at": LATER},
        other_programme=200,
        other_programme_code=None,
    ),
    Endpoint(
        "vouchers-extend-campaign",
        "POST",
        "/api/v1/vouchers/extend",
        200,
        ("manage",),
        body=lambda w: {"campaign": w["campaign"], "expires_at": LATER},
    ),
    Endpoint(
        "vouchers-recover",
        "POST",
        "/api/v1/vouchers/recover",
        200,
        ("manage",),
        body=lambda w: {"codes": [w["code"]]},
        other_programme=200,
        other_programme_code=None,
    ),
]


@pytest.fixture
def world(programme, other_programme, reward, make_campaign, make_voucher):
    campaign = make_campaign(programme)
    draft = make_campaign(programme, activate=False, name="Draft")
    paused = campaign_transition(
        campaign=make_campaign(programme, name="Paused"), action="pause", actor=SYSTEM
    )
    voucher = make_voucher(campaign)
    flagged = make_voucher(campaign)
    voucher_flag(voucher=flagged, actor=SYSTEM, reason="Check")
    return {
        "reward": reward.pk,
        "campaign": campaign.pk,
        "draft": draft.pk,
        "paused": paused.pk,
        "code": voucher.code,
        "flagged": flagged.code,
    }


def send(api: APIClient | Client, endpoint: Endpoint, world: dict, *, slash: str = ""):
    path = endpoint.path.format(**world) + slash
    body = endpoint.body(world) if endpoint.body else None
    if endpoint.method == "GET":
        return api.get(path)
    if endpoint.csv:
        return api.post(path, body, content_type="text/csv")
    return api.generic(
        endpoint.method,
        path,
        "" if body is None else json.dumps(body),
        content_type="application/json",
    )


@pytest.mark.django_db
@pytest.mark.parametrize("slash", ["", "/"], ids=["no-slash", "slash"])
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_success_with_the_scope_that_opens_it_with_or_without_a_slash(
    make_api, programme, world, endpoint, slash
):
    # given
    api = make_api([programme], scopes=list(endpoint.opened_by[:1]))
    # when
    response = send(api, endpoint, world, slash=slash)
    # then
    assert response.status_code == endpoint.success, response.content
    assert response["Content-Type"] == "application/json"


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_anonymous_is_401_and_changes_nothing(api, world, snapshot, endpoint):
    # given
    before = snapshot()
    # when
    response = send(api, endpoint, world)
    # then
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_key_without_the_scope_is_403_and_changes_nothing(
    make_api, programme, world, snapshot, endpoint
):
    # given
    api = make_api([programme], scopes=sorted(ALL_SCOPES - set(endpoint.opened_by)))
    before = snapshot()
    # when
    response = send(api, endpoint, world)
    # then
    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "permission_denied",
        "message": "This API key lacks the scope this endpoint needs: "
        f"{' or '.join(endpoint.opened_by)}.",
        "fields": {},
    }
    assert snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_another_programmes_client_cannot_see_or_touch_this_programme(
    make_api, other_programme, world, snapshot, endpoint
):
    # given: a key with every scope, bound to the other programme
    api = make_api([other_programme])
    before = snapshot()
    # when
    response = send(api, endpoint, world)
    # then
    assert response.status_code == endpoint.other_programme
    assert response.json().get("error", {}).get("code") == endpoint.other_programme_code
    assert snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1/campaigns", {"next": None, "previous": None, "results": []}),
        ("/api/v1/vouchers", {"next": None, "previous": None, "results": []}),
    ],
)
def test_another_programmes_client_lists_nothing_of_this_programme(
    make_api, other_programme, world, path, expected
):
    # given
    api = make_api([other_programme])
    # when
    response = api.get(path)
    # then
    assert response.json() == expected


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "extra", "done"),
    [
        ("/api/v1/vouchers/extend", {"expires_at": LATER}, "extended"),
        ("/api/v1/vouchers/recover", {}, "recovered"),
    ],
)
def test_another_programmes_client_gets_this_programmes_codes_as_not_found(
    make_api, other_programme, world, path, extra, done
):
    # given
    api = make_api([other_programme])
    # when
    response = api.post(path, {"codes": [world["code"]], **extra}, format="json")
    # then
    assert response.status_code == 200
    assert response.json()["not_found"] == [world["code"]]
    assert response.json()[done] == 0


# --- staff sessions --------------------------------------------------------------------------

BY_NAME = {endpoint.name: endpoint for endpoint in ENDPOINTS}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "name"),
    [
        (roles.PROGRAMME_MANAGER, "campaign-create"),
        (roles.PROGRAMME_MANAGER, "campaign-update"),
        (roles.PROGRAMME_MANAGER, "codes-generate"),
        (roles.PROGRAMME_MANAGER, "vouchers-recover"),
        (roles.PROGRAMME_MANAGER, "voucher-redeem"),
        (roles.SUPPORT_AGENT, "voucher-detail"),
        (roles.SUPPORT_AGENT, "voucher-flag"),
        (roles.SUPPORT_AGENT, "voucher-redeem"),
        (roles.FINANCE, "voucher-list"),
        (roles.FINANCE, "campaign-detail"),
    ],
)
def test_staff_sessions_act_where_their_role_allows(
    client, make_user, programme, world, role, name
):
    # given
    client.force_login(make_user(role, programme))
    # when
    response = send(client, BY_NAME[name], world)
    # then
    assert response.status_code == BY_NAME[name].success


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "held_on", "name"),
    [
        (roles.SUPPORT_AGENT, "alpha", "campaign-update"),
        (roles.SUPPORT_AGENT, "alpha", "campaign-create"),
        (roles.SUPPORT_AGENT, "alpha", "vouchers-extend-campaign"),
        (roles.FINANCE, "alpha", "voucher-flag"),
        (roles.FINANCE, "alpha", "voucher-redeem"),
        (roles.FINANCE, "alpha", "campaign-pause"),
        (roles.PROGRAMME_MANAGER, "beta", "voucher-detail"),
        (roles.PROGRAMME_MANAGER, "beta", "campaign-update"),
    ],
)
def test_staff_sessions_get_404_where_their_role_does_not_reach(
    client, make_user, world, snapshot, role, held_on, name
):
    # given
    client.force_login(make_user(role, Programme.objects.get(slug=held_on)))
    before = snapshot()
    # when
    response = send(client, BY_NAME[name], world)
    # then
    assert response.status_code == 404
    assert snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_signed_in_non_staff_user_is_403(client, world, snapshot, endpoint):
    # given
    client.force_login(UserFactory())
    before = snapshot()
    # when
    response = send(client, endpoint, world)
    # then
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert snapshot() == before
