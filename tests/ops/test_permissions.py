"""The permission matrix for every portal page and action: anonymous → sign-in; a member (or
any non-agent) → the 403 page; an agent of programme B → 404 for programme A's order, member
and actions, with nothing changed; an agent or a manager of A → in."""

import pytest
from django.urls import reverse

from orders.models import Delivery
from plum.models import AuditEvent, Member, OutboxMessage

pytestmark = pytest.mark.django_db

ACTIONS = {
    "order page": ("get", lambda a: reverse("ops:order", args=[a.order.booking_id]), {}),
    "reveal": ("post", lambda a: reverse("ops:reveal", args=[a.order.booking_id]), {}),
    "resend": (
        "post",
        lambda a: reverse("ops:resend", args=[a.order.booking_id]),
        {"channel": "email", "email": "new@example.com"},
    ),
    "member page": ("get", lambda a: reverse("ops:member", args=[a.member.pk]), {}),
    "contact": (
        "post",
        lambda a: reverse("ops:member_contact", args=[a.member.pk]),
        {"email": "new@example.com"},
    ),
}


def _state():
    return {
        "audit": list(AuditEvent.objects.order_by("pk").values_list("pk", flat=True)),
        "members": list(Member.objects.order_by("pk").values()),
        "deliveries": list(Delivery.objects.order_by("pk").values_list("pk", "status")),
        "outbox": OutboxMessage.objects.count(),
    }


def _call(client, name, side):
    method, url, data = ACTIONS[name]
    return getattr(client, method)(url(side), data)


@pytest.mark.parametrize("name", ACTIONS)
def test_anonymous_is_sent_to_sign_in_and_nothing_changes(client, side_a, name):
    # given
    before = _state()
    # when
    response = _call(client, name, side_a)
    # then
    assert response.status_code == 302
    assert response["Location"].startswith(f"{reverse('ops:login')}?next=%2Fops%2F")
    assert _state() == before


@pytest.mark.parametrize("name", ACTIONS)
def test_a_member_user_gets_the_403_page_and_nothing_changes(as_user, member_user, side_a, name):
    # given
    client = as_user(member_user)
    before = _state()
    # when
    response = _call(client, name, side_a)
    # then
    assert response.status_code == 403
    assert b"for support agents" in response.content
    assert _state() == before


@pytest.mark.parametrize("name", ACTIONS)
def test_an_agent_of_another_programme_gets_404_and_nothing_changes(
    as_user, agent_b, side_a, side_b, name
):
    # given
    client = as_user(agent_b)
    before = _state()
    # when
    response = _call(client, name, side_a)
    # then
    assert response.status_code == 404
    assert side_a.order.booking_id.encode() not in response.content
    assert _state() == before


@pytest.mark.parametrize("user", ["agent_a", "manager_a"])
@pytest.mark.parametrize("name", ["order page", "member page"])
def test_an_agent_or_manager_of_the_programme_opens_the_pages(
    request, as_user, side_a, side_b, user, name
):
    # given
    client = as_user(request.getfixturevalue(user))
    # when
    response = _call(client, name, side_a)
    # then
    assert response.status_code == 200
    assert side_b.member.email.encode() not in response.content


@pytest.mark.parametrize("user", ["agent_a", "manager_a"])
def test_an_agent_or_manager_of_the_programme_reveals(request, as_user, side_a, user):
    # given
    client = as_user(request.getfixturevalue(user))
    # when
    response = _call(client, "reveal", side_a)
    # then
    assert response.status_code == 200
    assert response.context["revealed_code"] == side_a.order.voucher.code


@pytest.mark.parametrize("user", ["agent_a", "manager_a"])
def test_an_agent_or_manager_of_the_programme_resends_and_corrects(request, as_user, side_a, user):
    # given: the first delivery settled (failed), so a resend may go
    Delivery.objects.filter(order=side_a.order).update(
        status="failed", reason="bounced", failed_at=side_a.order.created_at
    )
    client = as_user(request.getfixturevalue(user))
    # when
    resent = _call(client, "resend", side_a)
    corrected = client.post(
        reverse("ops:member_contact", args=[side_a.member.pk]), {"name": "Asha R."}
    )
    # then
    assert resent.status_code == 302
    assert corrected.status_code == 302
    side_a.member.refresh_from_db()
    assert (side_a.member.email, side_a.member.name) == ("new@example.com", "Asha R.")


@pytest.mark.parametrize("user", ["agent_a", "agent_b", "manager_a"])
def test_every_agent_opens_the_search_page(request, as_user, side_a, user):
    # when
    response = as_user(request.getfixturevalue(user)).get(reverse("ops:home"))
    # then
    assert response.status_code == 200
    assert 'role="search"' in response.content.decode()
