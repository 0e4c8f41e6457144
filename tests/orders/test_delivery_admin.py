"""Deliveries in the admin: the failed list filtered by status, channel, reason, campaign and
programme; bulk resend; correct-and-resend one delivery (member updated, audited)."""

import pytest
from django.contrib.messages import get_messages

from orders.models import Delivery
from orders.services import order_issue
from plum import roles
from plum.actors import SYSTEM
from plum.models import AuditEvent, Member
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/orders/delivery/"


def _failed(campaign, **member_fields):
    member = MemberFactory(programme=campaign.programme, **member_fields)
    order = order_issue(campaign=campaign, member=member, source="api", actor=SYSTEM)
    return Delivery.objects.filter(order=order).latest("pk")


@pytest.fixture
def failures(programme, other_programme, make_campaign):
    a = make_campaign(programme, name="A")
    b = make_campaign(programme, name="B")
    c = make_campaign(other_programme, name="C")
    return {
        "sms": _failed(a, preferred_channel="sms", phone=""),
        "email": _failed(b, preferred_channel="email", email=""),
        "pending": _failed(a, preferred_channel="email"),
        "elsewhere": _failed(c, preferred_channel="sms", phone=""),
    }


def _listed(response):
    assert response.status_code == 200
    return sorted(d.pk for d in response.context["cl"].result_list)


@pytest.mark.parametrize("role", [roles.PROGRAMME_MANAGER, roles.SUPPORT_AGENT, roles.FINANCE])
def test_the_failed_list_filters_within_the_users_programme(
    client, make_user, programme, failures, role
):
    client.force_login(make_user(role, programme))
    failed = sorted([failures["sms"].pk, failures["email"].pk])
    assert _listed(client.get(CHANGELIST, {"status__exact": "failed"})) == failed
    assert _listed(
        client.get(CHANGELIST, {"status__exact": "failed", "channel__exact": "sms"})
    ) == [failures["sms"].pk]
    assert _listed(client.get(CHANGELIST, {"reason": "missing_contact"})) == failed
    campaign = failures["email"].campaign_id
    assert _listed(client.get(CHANGELIST, {"campaign__id__exact": campaign})) == [
        failures["email"].pk
    ]


def test_another_programmes_delivery_is_404(client, make_user, programme, failures):
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    assert client.get(f"{CHANGELIST}{failures['elsewhere'].pk}/change/").status_code == 404
    assert client.get(f"{CHANGELIST}{failures['elsewhere'].pk}/resend/").status_code == 404


def test_correct_and_resend_updates_the_member_and_sends_to_the_new_number(
    client, make_user, programme, failures
):
    # given
    user = make_user(roles.SUPPORT_AGENT, programme)
    client.force_login(user)
    failed = failures["sms"]
    # when
    response = client.post(
        f"{CHANGELIST}{failed.pk}/resend/",
        {"channel": "sms", "email": failed.order.member.email, "phone": "+919811111111"},
    )
    # then
    assert response.status_code == 302
    new = Delivery.objects.filter(order=failed.order).latest("pk")
    assert (new.pk != failed.pk, new.destination, new.is_resend, new.resent_by_user_id) == (
        True,
        "+919811111111",
        True,
        user.pk,
    )
    assert Member.objects.get(pk=failed.order.member_id).phone == "+919811111111"
    assert AuditEvent.objects.filter(
        action="member.update", actor_user_id=user.pk, object_id=str(failed.order.member_id)
    ).exists()
    assert AuditEvent.objects.filter(
        action="delivery.resend", actor_user_id=user.pk, object_id=str(new.pk)
    ).exists()


def test_an_invalid_correction_shows_the_error_and_changes_nothing(
    client, make_user, programme, failures
):
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    failed = failures["sms"]
    response = client.post(f"{CHANGELIST}{failed.pk}/resend/", {"channel": "sms", "phone": "12"})
    assert response.status_code == 200
    assert "E.164" in str(response.context["form"].errors)
    assert Delivery.objects.filter(order=failed.order).count() == 1
    assert Member.objects.get(pk=failed.order.member_id).phone == ""


def test_bulk_resend_reports_each_outcome(client, make_user, programme, failures):
    # given: the e-mail member got an address meanwhile; the SMS member still has no phone
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    Member.objects.filter(pk=failures["email"].order.member_id).update(email="fixed@example.com")
    selected = [failures["sms"].pk, failures["email"].pk, failures["pending"].pk]
    # when
    response = client.post(CHANGELIST, {"action": "resend", "_selected_action": selected})
    # then
    assert response.status_code == 302
    messages = [str(m) for m in get_messages(response.wsgi_request)]
    email_booking = failures["email"].order.booking_id
    assert messages[0] == f"Resent 1 order(s): {email_booking}."
    assert "missing_contact" in messages[1] and "delivery_in_progress" in messages[1]
    resent = Delivery.objects.filter(order=failures["email"].order).latest("pk")
    assert (resent.destination, resent.status) == ("fixed@example.com", "pending")
    assert Delivery.objects.count() == 5
