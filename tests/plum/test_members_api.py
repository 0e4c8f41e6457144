"""POST /api/v1/members upserts a member by external id (201 created, 200 updated), audited;
GET lists (cursor-paginated, searchable) and looks up one member."""

import pytest
from rest_framework.test import APIClient

from plum.models import AuditEvent, Member
from tests.factories import MemberFactory

URL = "/api/v1/members"

NEW_MEMBER = {
    "external_id": "EMP-001",
    "name": "Asha Rao",
    "email": "asha@example.com",
    "phone": "+919800000001",
    "country": "IN",
    "preferred_channel": "whatsapp",
}


def api_for(key: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return api


def without_timestamps(body: dict) -> dict:
    return {k: v for k, v in body.items() if k not in ("id", "created_at", "updated_at")}


def member_events():
    return AuditEvent.objects.filter(action__startswith="member.").order_by("id")


def member_state() -> list[dict]:
    return list(Member.objects.order_by("pk").values())


# create and update ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_post_creates_a_member(client_api, programme):
    # when
    response = client_api.post(URL, NEW_MEMBER, format="json")
    # then
    assert response.status_code == 201
    member = Member.objects.get()
    assert response.json() == {
        "id": member.pk,
        "programme": "alpha",
        **NEW_MEMBER,
        "created_at": member.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": member.updated_at.isoformat().replace("+00:00", "Z"),
    }
    assert (member.programme_id, member.external_id, member.name, member.phone) == (
        programme.pk,
        "EMP-001",
        "Asha Rao",
        "+919800000001",
    )


@pytest.mark.django_db
def test_post_create_is_audited_with_every_field(client_api, programme):
    # when
    client_api.post(URL, NEW_MEMBER, format="json")
    # then
    member = Member.objects.get()
    event = member_events().get()
    assert (
        event.action,
        event.actor_type,
        event.actor_client_id,
        event.actor_label,
        event.object_type,
        event.object_id,
        event.programme_id,
    ) == (
        "member.create",
        "api_client",
        client_api.plum_client.pk,
        "api:Test client",
        "plum.member",
        str(member.pk),
        programme.pk,
    )
    assert event.changes == {
        "external_id": [None, "EMP-001"],
        "name": [None, "Asha Rao"],
        "email": [None, "asha@example.com"],
        "phone": [None, "+919800000001"],
        "country": [None, "IN"],
        "preferred_channel": [None, "whatsapp"],
    }
    assert len(event.request_id) == 32


@pytest.mark.django_db
def test_post_with_an_existing_external_id_updates_and_audits_the_change(client_api, programme):
    # given
    client_api.post(URL, NEW_MEMBER, format="json")
    member = Member.objects.get()
    # when
    response = client_api.post(
        URL, {"external_id": "EMP-001", "name": "Asha R.", "country": "SG"}, format="json"
    )
    # then
    assert response.status_code == 200
    assert without_timestamps(response.json()) == {
        "programme": "alpha",
        **NEW_MEMBER,
        "name": "Asha R.",
        "country": "SG",
    }
    assert response.json()["id"] == member.pk
    assert Member.objects.count() == 1
    member.refresh_from_db()
    assert (member.name, member.country, member.email) == ("Asha R.", "SG", "asha@example.com")
    event = AuditEvent.objects.get(action="member.update")
    assert (event.object_id, event.programme_id, event.actor_client_id) == (
        str(member.pk),
        programme.pk,
        client_api.plum_client.pk,
    )
    assert event.changes == {"name": ["Asha Rao", "Asha R."], "country": ["IN", "SG"]}


@pytest.mark.django_db
def test_post_without_a_change_updates_nothing_and_audits_nothing(client_api):
    # given
    client_api.post(URL, NEW_MEMBER, format="json")
    before = member_state()
    # when
    response = client_api.post(URL, NEW_MEMBER, format="json")
    # then
    assert response.status_code == 200
    assert member_state() == before
    assert list(member_events().values_list("action", flat=True)) == ["member.create"]


@pytest.mark.django_db
def test_post_with_only_an_external_id_creates_a_bare_member(client_api):
    # when
    response = client_api.post(URL, {"external_id": "EMP-002"}, format="json")
    # then
    assert response.status_code == 201
    assert without_timestamps(response.json()) == {
        "programme": "alpha",
        "external_id": "EMP-002",
        "name": "",
        "email": "",
        "phone": "",
        "country": "",
        "preferred_channel": "",
    }
    assert member_events().get().changes == {"external_id": [None, "EMP-002"]}


@pytest.mark.django_db
def test_same_external_id_in_two_programmes_is_two_members(
    make_api_client, programme, other_programme
):
    # given
    _, key = make_api_client([programme, other_programme])
    api = api_for(key)
    # when
    first = api.post(URL, {"programme": "alpha", "external_id": "EMP-001"}, format="json")
    second = api.post(URL, {"programme": "beta", "external_id": "EMP-001"}, format="json")
    # then
    assert (first.status_code, second.status_code) == (201, 201)
    assert sorted(Member.objects.values_list("programme__slug", "external_id")) == [
        ("alpha", "EMP-001"),
        ("beta", "EMP-001"),
    ]


# invalid input ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"name": "No id"}, {"external_id": ["This field is required."]}),
        ({"external_id": ""}, {"external_id": ["This field may not be blank."]}),
        (
            {"external_id": "E-1", "email": "not-an-email"},
            {"email": ["Enter a valid email address."]},
        ),
        (
            {"external_id": "E-1", "phone": "98000"},
            {"phone": ["Enter a phone number in E.164 format, e.g. +14155550123."]},
        ),
        (
            {"external_id": "E-1", "country": "in"},
            {"country": ["Enter an ISO 3166-1 alpha-2 country code, e.g. IN."]},
        ),
        (
            {"external_id": "E-1", "preferred_channel": "pigeon"},
            {"preferred_channel": ['"pigeon" is not a valid choice.']},
        ),
        ({"external_id": "E-1", "shoe_size": 42}, {"shoe_size": ["Unknown field."]}),
    ],
)
def test_post_with_invalid_fields_is_400_and_creates_nothing(client_api, body, fields):
    # when
    response = client_api.post(URL, body, format="json")
    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert response.json()["error"]["fields"] == fields
    assert Member.objects.count() == 0
    assert member_events().count() == 0


@pytest.mark.django_db
def test_post_with_an_invalid_update_is_400_and_changes_nothing(client_api):
    # given
    client_api.post(URL, NEW_MEMBER, format="json")
    before = member_state()
    # when
    response = client_api.post(URL, {"external_id": "EMP-001", "phone": "12345"}, format="json")
    # then
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["phone"]
    assert member_state() == before
    assert member_events().count() == 1


@pytest.mark.django_db
def test_post_with_malformed_json_is_400(client_api):
    # when
    response = client_api.post(URL, b'{"external_id": ', content_type="application/json")
    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"
    assert Member.objects.count() == 0


# which programme --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_programme_is_required_when_the_key_is_bound_to_two(
    make_api_client, programme, other_programme
):
    # given
    _, key = make_api_client([programme, other_programme])
    # when
    response = api_for(key).post(URL, {"external_id": "EMP-001"}, format="json")
    # then
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid",
            "message": "Name the programme: this key is bound to several.",
            "fields": {"programme": ["This field is required."]},
        }
    }
    assert Member.objects.count() == 0
    assert member_events().count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("slug", ["alpha", "beta"])
def test_programme_named_by_a_key_bound_to_two_is_used(
    make_api_client, programme, other_programme, slug
):
    # given
    _, key = make_api_client([programme, other_programme])
    # when
    response = api_for(key).post(URL, {"programme": slug, "external_id": "E-1"}, format="json")
    # then
    assert response.status_code == 201
    assert response.json()["programme"] == slug
    assert list(Member.objects.values_list("programme__slug", flat=True)) == [slug]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body", [{"external_id": "E-1"}, {"programme": "alpha", "external_id": "E-1"}]
)
def test_programme_is_optional_when_the_key_is_bound_to_one(client_api, programme, body):
    # when
    response = client_api.post(URL, body, format="json")
    # then
    assert response.status_code == 201
    assert Member.objects.get().programme_id == programme.pk


@pytest.mark.django_db
@pytest.mark.parametrize("scopes", [["read"], ["read", "issue", "redeem", "support"]])
def test_post_without_the_manage_scope_is_403_and_creates_nothing(
    make_api_client, programme, scopes
):
    # given
    _, key = make_api_client([programme], scopes=scopes)
    # when
    response = api_for(key).post(URL, NEW_MEMBER, format="json")
    # then
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert Member.objects.count() == 0


@pytest.mark.django_db
def test_list_without_the_read_scope_is_403(make_api_client, programme):
    # given
    _, key = make_api_client([programme], scopes=["manage"])
    # when
    response = api_for(key).get(URL)
    # then
    assert response.status_code == 403


# list: pagination and search -------------------------------------------------------------------


@pytest.mark.django_db
def test_list_is_cursor_paginated_newest_first(client_api, programme):
    # given
    for n in range(1, 6):
        MemberFactory(programme=programme, external_id=f"E-{n}")
    # when
    first = client_api.get(URL, {"page_size": 2})
    second = client_api.get(first.json()["next"])
    third = client_api.get(second.json()["next"])
    # then
    assert [r["external_id"] for r in first.json()["results"]] == ["E-5", "E-4"]
    assert [r["external_id"] for r in second.json()["results"]] == ["E-3", "E-2"]
    assert [r["external_id"] for r in third.json()["results"]] == ["E-1"]
    assert first.json()["next"].startswith("http://testserver/api/v1/members?cursor=")
    assert "page_size=2" in first.json()["next"]
    assert first.json()["previous"] is None
    assert third.json()["next"] is None
    assert third.json()["previous"] is not None


@pytest.mark.django_db
def test_list_default_page_size_is_50(client_api, programme):
    # given
    MemberFactory.create_batch(51, programme=programme)
    # when
    response = client_api.get(URL)
    # then
    assert len(response.json()["results"]) == 50
    assert response.json()["next"] is not None


@pytest.mark.django_db
def test_list_page_size_is_capped_at_500(client_api, programme):
    # given
    MemberFactory.create_batch(501, programme=programme)
    # when
    response = client_api.get(URL, {"page_size": 1000})
    # then
    assert len(response.json()["results"]) == 500


@pytest.mark.django_db
def test_a_member_created_between_pages_does_not_shift_the_next_page(client_api, programme):
    # given
    for n in range(1, 5):
        MemberFactory(programme=programme, external_id=f"E-{n}")
    first = client_api.get(URL, {"page_size": 2})
    MemberFactory(programme=programme, external_id="E-NEW")
    # when
    second = client_api.get(first.json()["next"])
    # then
    assert [r["external_id"] for r in second.json()["results"]] == ["E-2", "E-1"]


@pytest.fixture
def searchable(programme, other_programme):
    MemberFactory(
        programme=programme,
        external_id="EMP-7",
        name="Asha Rao",
        email="asha.rao@example.com",
        phone="+919800000007",
    )
    MemberFactory(
        programme=programme,
        external_id="EMP-8",
        name="Ravi Kumar",
        email="ravi@example.com",
        phone="+919800000008",
    )
    MemberFactory(
        programme=other_programme,
        external_id="EMP-9",
        name="Asha Other",
        email="asha.other@example.com",
        phone="+919800000009",
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("EMP-7", ["EMP-7"]),
        ("ASHA.RAO@example.com", ["EMP-7"]),
        ("+919800000008", ["EMP-8"]),
        ("asha", ["EMP-7"]),
        ("a", ["EMP-8", "EMP-7"]),
        ("EMP", []),
        ("EMP-9", []),
        ("nobody", []),
    ],
)
def test_list_searches_with_q_within_scope(client_api, searchable, q, expected):
    # when
    response = client_api.get(URL, {"q": q})
    # then
    assert response.status_code == 200
    assert [r["external_id"] for r in response.json()["results"]] == expected


# detail -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_get_one_member(client_api, programme):
    # given
    client_api.post(URL, NEW_MEMBER, format="json")
    member = Member.objects.get()
    # when
    response = client_api.get(f"{URL}/EMP-001")
    # then
    assert response.status_code == 200
    assert response.json()["id"] == member.pk
    assert without_timestamps(response.json()) == {"programme": "alpha", **NEW_MEMBER}


@pytest.mark.django_db
def test_get_a_missing_member_is_404(client_api):
    # when
    response = client_api.get(f"{URL}/NOPE")
    # then
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_get_an_external_id_in_two_programmes_needs_the_programme(
    make_api_client, programme, other_programme
):
    # given
    _, key = make_api_client([programme, other_programme])
    MemberFactory(programme=programme, external_id="SAME", name="In alpha")
    MemberFactory(programme=other_programme, external_id="SAME", name="In beta")
    api = api_for(key)
    # when
    ambiguous = api.get(f"{URL}/SAME")
    named = api.get(f"{URL}/SAME", {"programme": "beta"})
    # then
    assert ambiguous.status_code == 400
    assert ambiguous.json()["error"]["fields"] == {"programme": ["This field is required."]}
    assert named.status_code == 200
    assert (named.json()["programme"], named.json()["name"]) == ("beta", "In beta")


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["Support agent", "Finance"])
def test_staff_session_without_manage_on_any_programme_cannot_post(api, make_user, programme, role):
    # given
    api.force_authenticate(make_user(role, programme))
    # when
    response = api.post(URL, NEW_MEMBER, format="json")
    # then
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "not_found",
        "message": "No such programme.",
        "fields": {"programme": ["Not found."]},
    }
    assert Member.objects.count() == 0


@pytest.mark.django_db
def test_staff_session_of_a_manager_creates_a_member_audited_as_the_user(api, make_user, programme):
    # given
    user = make_user("Programme manager", programme)
    api.force_authenticate(user)
    # when
    response = api.post(URL, NEW_MEMBER, format="json")
    # then
    assert response.status_code == 201
    event = member_events().get()
    assert (event.action, event.actor_type, event.actor_user_id) == (
        "member.create",
        "user",
        user.pk,
    )
