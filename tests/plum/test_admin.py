"""The Django admin is scoped like every other door: a row of a programme the user holds no
permission on is not listed, and its pages are 404 (not a redirect that confirms it exists)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from plum import roles
from plum.models import AuditEvent, Member
from tests.factories import MemberFactory, UserFactory

CHANGELIST = "/admin/plum/member/"


def change_url(member: Member) -> str:
    return f"/admin/plum/member/{member.pk}/change/"


def member_form(**overrides) -> dict:
    data = {
        "name": "Asha Rao",
        "email": "asha@example.com",
        "phone": "+919800000001",
        "country": "IN",
        "preferred_channel": "sms",
        "_save": "Save",
    }
    return {**data, **overrides}


def member_values(member: Member) -> dict:
    return Member.objects.filter(pk=member.pk).values().get()


@pytest.fixture
def member_a(programme):
    return MemberFactory(
        programme=programme, external_id="A-1", name="Alpha One", email="a1@example.com"
    )


@pytest.fixture
def member_b(other_programme):
    return MemberFactory(
        programme=other_programme, external_id="B-1", name="Beta One", email="b1@example.com"
    )


def listed_external_ids(response) -> list[str]:
    return sorted(member.external_id for member in response.context["cl"].result_list)


# changelist -----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("role", [roles.PROGRAMME_MANAGER, roles.SUPPORT_AGENT, roles.FINANCE])
def test_changelist_shows_only_the_members_of_the_users_programme(
    client, make_user, programme, member_a, member_b, role
):
    # given
    client.force_login(make_user(role, programme))
    # when
    response = client.get(CHANGELIST)
    # then
    assert response.status_code == 200
    assert listed_external_ids(response) == ["A-1"]
    assert response.context["cl"].result_count == 1
    assert "B-1" not in response.content.decode()


@pytest.mark.django_db
def test_changelist_filters_do_not_name_other_programmes(
    client, make_user, programme, member_a, member_b
):
    # given
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    # when
    response = client.get(CHANGELIST)
    # then
    content = response.content.decode()
    assert response.status_code == 200
    assert "Alpha" in content
    assert "Beta" not in content


@pytest.mark.django_db
def test_changelist_of_a_platform_admin_shows_every_member(client, make_user, member_a, member_b):
    # given
    client.force_login(make_user(roles.PLATFORM_ADMIN))
    # when
    response = client.get(CHANGELIST)
    # then
    assert response.status_code == 200
    assert listed_external_ids(response) == ["A-1", "B-1"]


@pytest.mark.django_db
def test_changelist_searches_within_scope_only(client, make_user, programme, member_a, member_b):
    # given
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    # when
    response = client.get(CHANGELIST, {"q": "One"})
    # then
    assert response.status_code == 200
    assert listed_external_ids(response) == ["A-1"]


@pytest.mark.django_db
def test_changelist_of_a_staff_user_without_a_role_is_forbidden(client, member_a):
    # given
    client.force_login(UserFactory(is_staff=True))
    # when
    response = client.get(CHANGELIST)
    # then
    assert response.status_code == 403


@pytest.mark.django_db
def test_admin_index_of_a_staff_user_without_a_role_lists_no_model(client, member_a):
    # given
    client.force_login(UserFactory(is_staff=True))
    # when
    response = client.get("/admin/")
    # then
    assert response.status_code == 200
    assert response.context["app_list"] == []


@pytest.mark.django_db
def test_changelist_of_an_anonymous_user_redirects_to_login(client, member_a):
    # when
    response = client.get(CHANGELIST)
    # then
    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={CHANGELIST}"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "make_principal",
    [
        pytest.param(lambda make_user, programme: UserFactory(), id="user-without-role"),
        pytest.param(lambda make_user, programme: make_user(roles.MEMBER, programme), id="member"),
    ],
)
def test_changelist_of_a_non_staff_user_redirects_to_login(
    client, make_user, programme, member_a, make_principal
):
    # given
    client.force_login(make_principal(make_user, programme))
    # when
    response = client.get(CHANGELIST)
    # then
    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={CHANGELIST}"


@pytest.mark.django_db
def test_changelist_query_count_does_not_grow_with_rows(client, make_user, programme):
    # given
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    MemberFactory.create_batch(3, programme=programme)
    with CaptureQueriesContext(connection) as few:
        few_response = client.get(CHANGELIST)
    MemberFactory.create_batch(37, programme=programme)
    # when
    with CaptureQueriesContext(connection) as many:
        many_response = client.get(CHANGELIST)
    # then
    assert (few_response.context["cl"].result_count, many_response.context["cl"].result_count) == (
        3,
        40,
    )
    assert len(many) == len(few)


# change page: outside scope ---------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("role", [roles.PROGRAMME_MANAGER, roles.SUPPORT_AGENT, roles.FINANCE])
@pytest.mark.parametrize("suffix", ["change/", "history/", "delete/"])
def test_pages_of_another_programmes_member_are_404(
    client, make_user, programme, member_b, role, suffix
):
    # given
    client.force_login(make_user(role, programme))
    # when
    response = client.get(f"/admin/plum/member/{member_b.pk}/{suffix}")
    # then
    assert response.status_code == 404
    assert list(response.wsgi_request._messages) == []


@pytest.mark.django_db
@pytest.mark.parametrize("role", [roles.PROGRAMME_MANAGER, roles.SUPPORT_AGENT])
def test_posting_a_change_to_another_programmes_member_is_404_and_changes_nothing(
    client, make_user, programme, member_b, role
):
    # given
    client.force_login(make_user(role, programme))
    before = member_values(member_b)
    audit_before = AuditEvent.objects.count()
    # when
    response = client.post(change_url(member_b), member_form(name="Hijacked"))
    # then
    assert response.status_code == 404
    assert member_values(member_b) == before
    assert AuditEvent.objects.count() == audit_before


@pytest.mark.django_db
@pytest.mark.parametrize("object_id", ["999999", "not-a-number"])
def test_change_page_of_a_missing_member_is_404_too(client, make_user, programme, object_id):
    # given
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    # when
    response = client.get(f"/admin/plum/member/{object_id}/change/")
    # then
    assert response.status_code == 404


# change page: inside scope ---------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("role", [roles.PROGRAMME_MANAGER, roles.SUPPORT_AGENT])
def test_manager_and_support_agent_correct_a_member_of_their_programme(
    client, make_user, programme, member_a, role
):
    # given
    user = make_user(role, programme)
    client.force_login(user)
    before = member_values(member_a)
    # when
    response = client.post(change_url(member_a), member_form())
    # then
    assert response.status_code == 302
    assert response["Location"] == CHANGELIST
    after = member_values(member_a)
    assert {f: after[f] for f in ["name", "email", "phone", "country", "preferred_channel"]} == {
        "name": "Asha Rao",
        "email": "asha@example.com",
        "phone": "+919800000001",
        "country": "IN",
        "preferred_channel": "sms",
    }
    assert (after["external_id"], after["programme_id"]) == ("A-1", programme.pk)
    event = AuditEvent.objects.get(action="member.update")
    assert (event.actor_type, event.actor_user_id, event.object_id, event.programme_id) == (
        "user",
        user.pk,
        str(member_a.pk),
        programme.pk,
    )
    assert event.changes == {
        "name": [before["name"], "Asha Rao"],
        "email": [before["email"], "asha@example.com"],
        "phone": [before["phone"], "+919800000001"],
        "preferred_channel": ["", "sms"],
    }


@pytest.mark.django_db
def test_support_agent_sees_an_editable_change_page(client, make_user, programme, member_a):
    # given
    client.force_login(make_user(roles.SUPPORT_AGENT, programme))
    # when
    response = client.get(change_url(member_a))
    # then
    assert response.status_code == 200
    assert response.context["has_change_permission"] is True
    assert sorted(response.context["adminform"].form.fields) == [
        "country",
        "email",
        "name",
        "phone",
        "preferred_channel",
    ]


@pytest.mark.django_db
def test_correcting_a_member_with_an_invalid_phone_shows_the_error_and_changes_nothing(
    client, make_user, programme, member_a
):
    # given
    client.force_login(make_user(roles.SUPPORT_AGENT, programme))
    before = member_values(member_a)
    audit_before = AuditEvent.objects.count()
    # when
    response = client.post(change_url(member_a), member_form(phone="98000"))
    # then
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["phone"]
    assert member_values(member_a) == before
    assert AuditEvent.objects.count() == audit_before


@pytest.mark.django_db
def test_finance_sees_a_read_only_change_page(client, make_user, programme, member_a):
    # given
    client.force_login(make_user(roles.FINANCE, programme))
    # when
    response = client.get(change_url(member_a))
    # then
    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    assert response.context["has_view_permission"] is True
    assert 'name="_save"' not in response.content.decode()


@pytest.mark.django_db
def test_finance_cannot_change_a_member(client, make_user, programme, member_a):
    # given
    client.force_login(make_user(roles.FINANCE, programme))
    before = member_values(member_a)
    audit_before = AuditEvent.objects.count()
    # when
    response = client.post(change_url(member_a), member_form(name="Changed by finance"))
    # then
    assert response.status_code == 403
    assert member_values(member_a) == before
    assert AuditEvent.objects.count() == audit_before


@pytest.mark.django_db
def test_platform_admin_corrects_a_member_of_any_programme(client, make_user, member_b):
    # given
    client.force_login(make_user(roles.PLATFORM_ADMIN))
    # when
    response = client.post(change_url(member_b), member_form(name="Fixed by admin"))
    # then
    assert response.status_code == 302
    assert member_values(member_b)["name"] == "Fixed by admin"
    assert (
        AuditEvent.objects.filter(action="member.update", object_id=str(member_b.pk)).count() == 1
    )


# add page -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_manager_adds_a_member_to_their_programme(client, make_user, programme):
    # given
    user = make_user(roles.PROGRAMME_MANAGER, programme)
    client.force_login(user)
    # when
    response = client.post(
        "/admin/plum/member/add/",
        member_form(programme=str(programme.pk), external_id="A-NEW"),
    )
    # then
    assert response.status_code == 302
    member = Member.objects.get()
    assert (member.programme_id, member.external_id, member.name) == (
        programme.pk,
        "A-NEW",
        "Asha Rao",
    )
    event = AuditEvent.objects.get(action="member.create")
    assert (event.actor_user_id, event.object_id, event.programme_id) == (
        user.pk,
        str(member.pk),
        programme.pk,
    )


@pytest.mark.django_db
def test_manager_cannot_add_a_member_to_another_programme(
    client, make_user, programme, other_programme
):
    # given
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    audit_before = AuditEvent.objects.count()
    # when
    response = client.post(
        "/admin/plum/member/add/",
        member_form(programme=str(other_programme.pk), external_id="B-NEW"),
    )
    # then
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["programme"]
    assert Member.objects.count() == 0
    assert AuditEvent.objects.count() == audit_before


@pytest.mark.django_db
def test_add_form_offers_only_the_managers_programmes(
    client, make_user, programme, other_programme
):
    # given
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    # when
    response = client.get("/admin/plum/member/add/")
    # then
    assert response.status_code == 200
    field = response.context["adminform"].form.fields["programme"]
    assert list(field.queryset) == [programme]


@pytest.mark.django_db
@pytest.mark.parametrize("role", [roles.SUPPORT_AGENT, roles.FINANCE])
def test_support_and_finance_cannot_add_members(client, make_user, programme, role):
    # given
    client.force_login(make_user(role, programme))
    # when
    response = client.post(
        "/admin/plum/member/add/", member_form(programme=str(programme.pk), external_id="X")
    )
    # then
    assert response.status_code == 403
    assert Member.objects.count() == 0


# other kernel models ----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (roles.PROGRAMME_MANAGER, ["Alpha"]),
        (roles.SUPPORT_AGENT, ["Alpha"]),
        (roles.FINANCE, ["Alpha"]),
    ],
)
def test_programme_changelist_is_scoped(
    client, make_user, programme, other_programme, role, expected
):
    # given
    client.force_login(make_user(role, programme))
    # when
    response = client.get("/admin/plum/programme/")
    # then
    assert response.status_code == 200
    assert [p.name for p in response.context["cl"].result_list] == expected


@pytest.mark.django_db
def test_programme_change_page_of_another_programme_is_404(
    client, make_user, programme, other_programme
):
    # given
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    # when
    response = client.get(f"/admin/plum/programme/{other_programme.pk}/change/")
    # then
    assert response.status_code == 404


@pytest.mark.django_db
def test_audit_changelist_shows_only_events_of_the_users_programme(
    client, make_user, programme, member_a, member_b
):
    # given
    user = make_user(roles.PROGRAMME_MANAGER, programme)
    client.force_login(user)
    client.post(change_url(member_a), member_form(name="Audited A"))
    admin = make_user(roles.PLATFORM_ADMIN)
    client.force_login(admin)
    client.post(change_url(member_b), member_form(name="Audited B"))
    client.force_login(user)
    # when
    response = client.get("/admin/plum/auditevent/", {"action": "member.update"})
    # then
    assert response.status_code == 200
    assert [e.object_id for e in response.context["cl"].result_list] == [str(member_a.pk)]


@pytest.mark.django_db
def test_audit_event_of_another_programme_is_404(client, make_user, programme, member_b):
    # given
    admin = make_user(roles.PLATFORM_ADMIN)
    client.force_login(admin)
    client.post(change_url(member_b), member_form(name="Audited B"))
    event = AuditEvent.objects.get(action="member.update")
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    # when
    response = client.get(f"/admin/plum/auditevent/{event.pk}/change/")
    # then
    assert response.status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("make_viewer", "sees_it"),
    [
        pytest.param(lambda make_user, p: make_user(roles.PLATFORM_ADMIN), True, id="platform"),
        pytest.param(lambda make_user, p: make_user(roles.FINANCE, p), False, id="finance"),
        pytest.param(
            lambda make_user, p: make_user(roles.PROGRAMME_MANAGER, p), False, id="manager"
        ),
    ],
)
def test_audit_events_of_no_programme_are_shown_to_platform_admins_only(
    client, make_user, programme, make_viewer, sees_it
):
    # given: granting Platform admin is audited without a programme
    make_user(roles.PLATFORM_ADMIN, username="granted")
    event = AuditEvent.objects.get(action="role.grant", programme_id=None)
    client.force_login(make_viewer(make_user, programme))
    # when
    response = client.get("/admin/plum/auditevent/")
    # then
    assert response.status_code == 200
    assert (event in response.context["cl"].result_list) is sees_it
