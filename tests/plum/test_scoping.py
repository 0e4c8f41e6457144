"""Programme scoping (ARCHITECTURE.md, "Programme scoping and permissions"): the selectors that
turn a principal into programmes, and the API's view of them. Nobody sees a row of a programme
they hold no permission on; objects outside scope are 404, never 403."""

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from plum import roles, selectors
from plum.actors import SYSTEM
from plum.errors import InvalidInputError
from plum.models import AuditEvent, Member
from plum.services.api_clients import api_client_revoke
from plum.services.programmes import role_grant, role_revoke
from tests.factories import MemberFactory, ProgrammeFactory, UserFactory

ALL_PERMS = [roles.VIEW, roles.MANAGE, roles.SUPPORT, roles.FINANCE_PERM]


def slugs(queryset) -> list[str]:
    return sorted(queryset.values_list("slug", flat=True))


def api_for(key: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return api


# programmes_for: one role on programme A ------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "perm", "expected"),
    [
        (roles.PROGRAMME_MANAGER, roles.VIEW, ["alpha"]),
        (roles.PROGRAMME_MANAGER, roles.MANAGE, ["alpha"]),
        (roles.PROGRAMME_MANAGER, roles.SUPPORT, []),
        (roles.PROGRAMME_MANAGER, roles.FINANCE_PERM, []),
        (roles.SUPPORT_AGENT, roles.VIEW, ["alpha"]),
        (roles.SUPPORT_AGENT, roles.MANAGE, []),
        (roles.SUPPORT_AGENT, roles.SUPPORT, ["alpha"]),
        (roles.SUPPORT_AGENT, roles.FINANCE_PERM, []),
        (roles.FINANCE, roles.VIEW, ["alpha"]),
        (roles.FINANCE, roles.MANAGE, []),
        (roles.FINANCE, roles.SUPPORT, []),
        (roles.FINANCE, roles.FINANCE_PERM, ["alpha"]),
        (roles.MEMBER, roles.VIEW, []),
        (roles.MEMBER, roles.MANAGE, []),
        (roles.MEMBER, roles.SUPPORT, []),
        (roles.MEMBER, roles.FINANCE_PERM, []),
    ],
)
def test_programmes_for_a_role_held_on_one_programme(
    make_user, programme, other_programme, role, perm, expected
):
    # given
    user = make_user(role, programme)
    # when
    visible = selectors.programmes_for(user, perm)
    # then
    assert slugs(visible) == expected


@pytest.mark.django_db
@pytest.mark.parametrize("perm", ALL_PERMS)
def test_programmes_for_a_platform_admin_is_every_programme(
    make_user, programme, other_programme, perm
):
    # given
    admin = make_user(roles.PLATFORM_ADMIN)
    ProgrammeFactory(slug="gamma")
    # when
    visible = selectors.programmes_for(admin, perm)
    # then
    assert slugs(visible) == ["alpha", "beta", "gamma"]


@pytest.mark.django_db
@pytest.mark.parametrize("perm", ALL_PERMS)
def test_programmes_for_a_superuser_is_every_programme(programme, other_programme, perm):
    # given
    superuser = UserFactory(is_superuser=True, is_staff=True)
    # when
    visible = selectors.programmes_for(superuser, perm)
    # then
    assert slugs(visible) == ["alpha", "beta"]


@pytest.mark.django_db
@pytest.mark.parametrize("perm", ALL_PERMS)
@pytest.mark.parametrize(
    "make_principal",
    [
        pytest.param(lambda: None, id="none"),
        pytest.param(AnonymousUser, id="anonymous"),
        pytest.param(lambda: UserFactory(), id="user-without-role"),
        pytest.param(lambda: UserFactory(is_staff=True), id="staff-without-role"),
    ],
)
def test_programmes_for_a_principal_without_a_role_is_empty(
    programme, other_programme, perm, make_principal
):
    # given
    principal = make_principal()
    # when
    visible = selectors.programmes_for(principal, perm)
    # then
    assert slugs(visible) == []


def on_programme(programme):
    return programme


def everywhere(programme):
    return None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "where"),
    [
        (roles.PROGRAMME_MANAGER, on_programme),
        (roles.SUPPORT_AGENT, on_programme),
        (roles.FINANCE, on_programme),
        (roles.PLATFORM_ADMIN, everywhere),
    ],
)
def test_programmes_for_an_inactive_user_is_empty(make_user, programme, role, where):
    # given
    user = make_user(role, where(programme))
    user.is_active = False
    user.save(update_fields=["is_active"])
    # when
    visible = selectors.programmes_for(user)
    # then
    assert slugs(visible) == []


@pytest.mark.django_db
def test_programmes_for_a_role_held_on_two_programmes(make_user, programme, other_programme):
    # given
    user = make_user(roles.SUPPORT_AGENT, programme)
    role_grant(user=user, role=roles.SUPPORT_AGENT, programme=other_programme, actor=SYSTEM)
    ProgrammeFactory(slug="gamma")
    # when
    visible = selectors.programmes_for(user, roles.SUPPORT)
    # then
    assert slugs(visible) == ["alpha", "beta"]


def fresh(user):
    """The user as a new request would load it: no cached permissions."""
    return type(user).objects.get(pk=user.pk)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "role", [roles.PROGRAMME_MANAGER, roles.SUPPORT_AGENT, roles.FINANCE, roles.MEMBER]
)
def test_programmes_for_after_the_only_role_is_revoked(make_user, programme, role):
    # given
    user = make_user(role, programme)
    # when
    role_revoke(user=user, role=role, programme=programme, actor=SYSTEM)
    # then
    user = fresh(user)
    assert [slugs(selectors.programmes_for(user, perm)) for perm in ALL_PERMS] == [[], [], [], []]


@pytest.mark.django_db
def test_revoking_one_role_keeps_what_another_role_on_the_programme_grants(make_user, programme):
    # given
    user = make_user(roles.PROGRAMME_MANAGER, programme)
    role_grant(user=user, role=roles.SUPPORT_AGENT, programme=programme, actor=SYSTEM)
    # when
    role_revoke(user=user, role=roles.SUPPORT_AGENT, programme=programme, actor=SYSTEM)
    # then
    user = fresh(user)
    assert [slugs(selectors.programmes_for(user, perm)) for perm in ALL_PERMS] == [
        ["alpha"],
        ["alpha"],
        [],
        [],
    ]


@pytest.mark.django_db
def test_revoking_a_role_on_one_programme_keeps_it_on_another(
    make_user, programme, other_programme
):
    # given
    user = make_user(roles.FINANCE, programme)
    role_grant(user=user, role=roles.FINANCE, programme=other_programme, actor=SYSTEM)
    # when
    role_revoke(user=user, role=roles.FINANCE, programme=programme, actor=SYSTEM)
    # then
    user = fresh(user)
    assert slugs(selectors.programmes_for(user, roles.FINANCE_PERM)) == ["beta"]
    assert slugs(selectors.programmes_for(user)) == ["beta"]


@pytest.mark.django_db
def test_revoking_platform_admin_takes_every_programme_away(make_user, programme, other_programme):
    # given
    admin = make_user(roles.PLATFORM_ADMIN)
    # when
    role_revoke(user=admin, role=roles.PLATFORM_ADMIN, programme=None, actor=SYSTEM)
    # then
    admin = fresh(admin)
    assert [slugs(selectors.programmes_for(admin, perm)) for perm in ALL_PERMS] == [[], [], [], []]
    assert selectors.is_platform_admin(admin) is False
    assert list(admin.groups.values_list("name", flat=True)) == []
    event = AuditEvent.objects.filter(action="role.revoke").get()
    assert (event.object_id, event.programme_id, event.changes) == (
        str(admin.pk),
        None,
        {"role": ["Platform admin", None]},
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "where"),
    [
        ("Astronaut", on_programme),
        (roles.PLATFORM_ADMIN, on_programme),
        (roles.PROGRAMME_MANAGER, everywhere),
    ],
)
def test_role_revoke_with_a_wrong_role_or_programme_is_refused(make_user, programme, role, where):
    # given
    user = make_user(roles.PROGRAMME_MANAGER, programme)
    audit_before = AuditEvent.objects.count()
    # when
    with pytest.raises(InvalidInputError):
        role_revoke(user=user, role=role, programme=where(programme), actor=SYSTEM)
    # then
    assert slugs(selectors.programmes_for(fresh(user), roles.MANAGE)) == ["alpha"]
    assert AuditEvent.objects.count() == audit_before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("make_principal", "expected"),
    [
        pytest.param(lambda make_user, p: make_user(roles.PLATFORM_ADMIN), True, id="platform"),
        pytest.param(
            lambda make_user, p: UserFactory(is_superuser=True, is_staff=True),
            True,
            id="superuser",
        ),
        pytest.param(
            lambda make_user, p: make_user(roles.PROGRAMME_MANAGER, p), False, id="manager"
        ),
        pytest.param(lambda make_user, p: make_user(roles.SUPPORT_AGENT, p), False, id="support"),
        pytest.param(lambda make_user, p: make_user(roles.FINANCE, p), False, id="finance"),
        pytest.param(lambda make_user, p: UserFactory(is_staff=True), False, id="no-role"),
        pytest.param(lambda make_user, p: AnonymousUser(), False, id="anonymous"),
        pytest.param(lambda make_user, p: None, False, id="none"),
    ],
)
def test_is_platform_admin(make_user, programme, make_principal, expected):
    # given
    principal = make_principal(make_user, programme)
    # when
    result = selectors.is_platform_admin(principal)
    # then
    assert result is expected


@pytest.mark.django_db
def test_an_api_client_is_never_a_platform_admin(client_api):
    # then
    assert selectors.is_platform_admin(client_api.plum_client) is False


@pytest.mark.django_db
@pytest.mark.parametrize("perm", ALL_PERMS)
def test_programmes_for_an_api_client_is_the_programmes_its_key_is_bound_to(
    make_api_client, programme, other_programme, perm
):
    # given
    ProgrammeFactory(slug="gamma")
    client, _ = make_api_client([programme, other_programme])
    # when
    visible = selectors.programmes_for(client, perm)
    # then
    assert slugs(visible) == ["alpha", "beta"]


@pytest.mark.django_db
def test_programmes_for_a_revoked_api_client_is_empty(make_api_client, programme):
    # given
    client, _ = make_api_client([programme])
    api_client_revoke(client=client, actor=SYSTEM)
    # when
    visible = selectors.programmes_for(client)
    # then
    assert slugs(visible) == []


def _programmes_for_queries(user_pk: int) -> tuple[int, int]:
    user = UserFactory._meta.model.objects.get(pk=user_pk)  # fresh: no permission cache
    with CaptureQueriesContext(connection) as queries:
        visible = list(selectors.programmes_for(user, roles.SUPPORT))
    return len(queries), len(visible)


@pytest.mark.django_db
def test_programmes_for_query_count_does_not_grow_with_programmes(make_user, programme):
    # given
    user = make_user(roles.SUPPORT_AGENT, programme)
    few_queries, few_rows = _programmes_for_queries(user.pk)
    for index in range(20):
        role_grant(
            user=user,
            role=roles.SUPPORT_AGENT,
            programme=ProgrammeFactory(slug=f"p-{index}"),
            actor=SYSTEM,
        )
    # when
    many_queries, many_rows = _programmes_for_queries(user.pk)
    # then
    assert (few_rows, many_rows) == (1, 21)
    assert many_queries == few_queries


# member selectors ----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (roles.PROGRAMME_MANAGER, ["A-1", "A-2"]),
        (roles.SUPPORT_AGENT, ["A-1", "A-2"]),
        (roles.FINANCE, ["A-1", "A-2"]),
        (roles.MEMBER, []),
    ],
)
def test_member_list_for_a_role_on_programme_a(
    make_user, programme, other_programme, role, expected
):
    # given
    MemberFactory(programme=programme, external_id="A-1")
    MemberFactory(programme=programme, external_id="A-2")
    MemberFactory(programme=other_programme, external_id="B-1")
    user = make_user(role, programme)
    # when
    members = selectors.member_list_for(principal=user)
    # then
    assert sorted(members.values_list("external_id", flat=True)) == expected


@pytest.mark.django_db
def test_member_get_for_outside_scope_is_none(make_user, programme, other_programme):
    # given
    MemberFactory(programme=other_programme, external_id="B-1")
    MemberFactory(programme=programme, external_id="A-1")
    user = make_user(roles.PROGRAMME_MANAGER, programme)
    # when
    outside = selectors.member_get_for(principal=user, programme_slug="beta", external_id="B-1")
    inside = selectors.member_get_for(principal=user, programme_slug="alpha", external_id="A-1")
    # then
    assert outside is None
    assert inside == Member.objects.get(external_id="A-1")


# the API ---------------------------------------------------------------------------------------


@pytest.fixture
def members_of_both(programme, other_programme):
    return {
        "A-1": MemberFactory(programme=programme, external_id="A-1"),
        "A-2": MemberFactory(programme=programme, external_id="A-2"),
        "B-1": MemberFactory(programme=other_programme, external_id="B-1"),
    }


@pytest.mark.django_db
def test_api_client_of_a_lists_only_a_members(client_api, members_of_both):
    # when
    response = client_api.get("/api/v1/members")
    # then
    assert response.status_code == 200
    assert sorted(row["external_id"] for row in response.json()["results"]) == ["A-1", "A-2"]
    assert {row["programme"] for row in response.json()["results"]} == {"alpha"}


@pytest.mark.django_db
def test_api_client_of_a_filtering_on_b_gets_nothing(client_api, members_of_both):
    # when
    response = client_api.get("/api/v1/members", {"programme": "beta"})
    # then
    assert response.status_code == 200
    assert response.json()["results"] == []


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/members/B-1", "/api/v1/members/B-1/"])
def test_api_client_of_a_gets_404_for_b_member(client_api, members_of_both, path):
    # when
    response = client_api.get(path)
    # then
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "No such member.", "fields": {}}
    }


@pytest.mark.django_db
def test_api_client_of_a_gets_404_for_b_member_named_with_its_programme(
    client_api, members_of_both
):
    # when
    response = client_api.get("/api/v1/members/B-1", {"programme": "beta"})
    # then
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_api_client_of_a_gets_its_own_member(client_api, members_of_both):
    # when
    response = client_api.get("/api/v1/members/A-1")
    # then
    assert response.status_code == 200
    assert response.json()["external_id"] == "A-1"
    assert response.json()["programme"] == "alpha"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        {"programme": "beta", "external_id": "NEW-1", "name": "Intruder"},
        {"programme": "beta", "external_id": "B-1", "name": "Overwritten"},
        {"programme": "no-such-programme", "external_id": "NEW-1"},
    ],
)
def test_api_client_of_a_cannot_write_a_member_of_another_programme(
    client_api, members_of_both, body
):
    # given
    members_before = list(Member.objects.order_by("pk").values())
    audit_before = AuditEvent.objects.count()
    # when
    response = client_api.post("/api/v1/members", body, format="json")
    # then
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "code": "not_found",
            "message": "No such programme.",
            "fields": {"programme": ["Not found."]},
        }
    }
    assert list(Member.objects.order_by("pk").values()) == members_before
    assert AuditEvent.objects.count() == audit_before


@pytest.mark.django_db
def test_api_client_of_a_lists_only_programme_a(client_api, other_programme):
    # when
    response = client_api.get("/api/v1/programmes")
    # then
    assert response.status_code == 200
    assert [row["slug"] for row in response.json()["results"]] == ["alpha"]


@pytest.mark.django_db
def test_revoked_api_client_is_refused(make_api_client, programme, members_of_both):
    # given
    client, key = make_api_client([programme])
    api_client_revoke(client=client, actor=SYSTEM)
    # when
    response = api_for(key).get("/api/v1/members")
    # then
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/members", "/api/v1/members/A-1", "/api/v1/programmes"])
def test_anonymous_api_request_is_refused(api, members_of_both, path):
    # when
    response = api.get(path)
    # then
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/members", "/api/v1/members/A-1", "/api/v1/programmes"])
def test_api_client_without_the_read_scope_is_refused(
    make_api_client, programme, members_of_both, path
):
    # given
    _, key = make_api_client([programme], scopes=["manage", "issue"])
    # when
    response = api_for(key).get(path)
    # then
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (roles.PROGRAMME_MANAGER, ["A-1", "A-2"]),
        (roles.SUPPORT_AGENT, ["A-1", "A-2"]),
        (roles.FINANCE, ["A-1", "A-2"]),
    ],
)
def test_staff_session_lists_only_its_programmes_members(
    api, make_user, programme, members_of_both, role, expected
):
    # given
    api.force_authenticate(make_user(role, programme))
    # when
    response = api.get("/api/v1/members")
    # then
    assert response.status_code == 200
    assert sorted(row["external_id"] for row in response.json()["results"]) == expected


@pytest.mark.django_db
def test_platform_admin_session_lists_every_member(api, make_user, members_of_both):
    # given
    api.force_authenticate(make_user(roles.PLATFORM_ADMIN))
    # when
    response = api.get("/api/v1/members")
    # then
    assert response.status_code == 200
    assert sorted(row["external_id"] for row in response.json()["results"]) == [
        "A-1",
        "A-2",
        "B-1",
    ]


@pytest.mark.django_db
def test_staff_session_gets_404_for_a_member_of_another_programme(
    api, make_user, programme, members_of_both
):
    # given
    api.force_authenticate(make_user(roles.PROGRAMME_MANAGER, programme))
    # when
    response = api.get("/api/v1/members/B-1")
    # then
    assert response.status_code == 404


@pytest.mark.django_db
def test_session_user_without_staff_is_refused(api, make_user, programme, members_of_both):
    # given: the Member role is not staff
    api.force_authenticate(make_user(roles.MEMBER, programme))
    # when
    response = api.get("/api/v1/members")
    # then
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


# constant query counts -------------------------------------------------------------------------


def _count_queries(api: APIClient, path: str) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries:
        response = api.get(path, {"page_size": 100})
    assert response.status_code == 200
    return len(queries), len(response.json()["results"])


@pytest.mark.django_db
def test_member_list_api_query_count_does_not_grow_with_rows(client_api, programme):
    # given
    MemberFactory.create_batch(3, programme=programme)
    client_api.get("/api/v1/members")  # warm up: the key's last-used stamp is written once
    few_queries, few_rows = _count_queries(client_api, "/api/v1/members")
    MemberFactory.create_batch(37, programme=programme)
    # when
    many_queries, many_rows = _count_queries(client_api, "/api/v1/members")
    # then
    assert (few_rows, many_rows) == (3, 40)
    assert many_queries == few_queries


@pytest.mark.django_db
def test_programme_list_api_query_count_does_not_grow_with_rows(make_api_client):
    # given
    client, key = make_api_client([ProgrammeFactory(slug=f"p-{n}") for n in range(3)])
    api = api_for(key)
    api.get("/api/v1/programmes")  # warm up: the key's last-used stamp is written once
    few_queries, few_rows = _count_queries(api, "/api/v1/programmes")
    client.programmes.add(*[ProgrammeFactory(slug=f"p-{n}") for n in range(3, 40)])
    # when
    many_queries, many_rows = _count_queries(api, "/api/v1/programmes")
    # then
    assert (few_rows, many_rows) == (3, 40)
    assert many_queries == few_queries


@pytest.mark.django_db
def test_member_list_api_for_a_staff_session_query_count_does_not_grow(api, make_user, programme):
    # given: a real session, so each request loads the user (and its permissions) afresh
    api.force_login(make_user(roles.SUPPORT_AGENT, programme))
    MemberFactory.create_batch(3, programme=programme)
    few_queries, few_rows = _count_queries(api, "/api/v1/members")
    MemberFactory.create_batch(37, programme=programme)
    # when
    many_queries, many_rows = _count_queries(api, "/api/v1/members")
    # then
    assert (few_rows, many_rows) == (3, 40)
    assert many_queries == few_queries
