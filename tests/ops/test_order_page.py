"""The order page: the whole story in one timeline (audit log + delivery records, oldest
first), the member and their wallet, the masked code; reveal (audited, POST only); resend to
corrected details through the real delivery path, refusals in words with nothing changed."""

from decimal import Decimal

import pytest
from django.urls import reverse

from campaigns.services.vouchers import voucher_redeem
from orders.models import Delivery, Order
from orders.services import order_cancel
from plum.actors import SYSTEM
from plum.models import AuditEvent, Member, OutboxMessage
from support.services import ticket_open
from tests.factories import MemberFactory
from tests.ops.conftest import issue
from tests.orders.delivery_stubs import deliver
from wallets.services import points_earn

pytestmark = pytest.mark.django_db

QUERIES = 13  # session, user, 2 permission reads, scope check, order, deliveries, attempts,
# tickets, other holders of the voucher, redemptions, audit events, wallet: fixed


def _page(client, order):
    return client.get(reverse("ops:order", args=[order.booking_id]))


def _resend(client, order, **data):
    return client.post(reverse("ops:resend", args=[order.booking_id]), data)


def _first_delivery(order) -> Delivery:
    return Delivery.objects.get(order=order, is_resend=False)


def _state():
    return {
        "audit": list(AuditEvent.objects.order_by("pk").values_list("pk", flat=True)),
        "members": list(Member.objects.order_by("pk").values()),
        "deliveries": list(Delivery.objects.order_by("pk").values_list("pk", "status")),
        "outbox": OutboxMessage.objects.count(),
    }


# --- the page and its timeline -----------------------------------------------------------------


def test_the_order_page_shows_member_wallet_and_masked_code_only(as_user, agent_a, side_a):
    # given
    points_earn(
        member=side_a.member, points=750, reference="Welcome", idempotency_key="w1", actor=SYSTEM
    )
    # when
    response = _page(as_user(agent_a), side_a.order)
    # then
    page = response.content.decode()
    assert response.status_code == 200
    assert side_a.order.voucher.code not in page
    assert f'data-testid="masked-code">{side_a.order.voucher.masked_code}<' in page
    assert 'data-testid="wallet-balance">750 points<' in page
    assert 'data-testid="member-email">asha@example.com<' in page
    assert "revealed_code" not in response.context or not response.context["revealed_code"]
    assert not AuditEvent.objects.filter(action="voucher.reveal").exists()


def test_a_lower_case_booking_id_redirects_to_the_canonical_page(as_user, agent_a, side_a):
    # when
    response = as_user(agent_a).get(
        reverse("ops:order", args=[side_a.order.booking_id.lower().replace("-", "")])
    )
    # then
    assert response.status_code == 302
    assert response["Location"] == reverse("ops:order", args=[side_a.order.booking_id])


def test_the_timeline_tells_the_whole_story_in_order(
    as_user, agent_a, side_a, smtp_server, programme
):
    # given: delivered, partly redeemed, a ticket, a reveal, a resend that also gets delivered
    order = side_a.order
    deliver(_first_delivery(order))
    voucher_redeem(voucher=order.voucher, amount=Decimal("100.00"), reference="POS-1", actor=SYSTEM)
    ticket = ticket_open(
        member=side_a.member,
        order=order,
        category="code_not_working",
        description="The shop says the code is invalid.",
        actor=SYSTEM,
    )
    client = as_user(agent_a)
    client.post(reverse("ops:reveal", args=[order.booking_id]))
    _resend(client, order, channel="email", email="asha.rao@example.com")
    deliver(Delivery.objects.get(order=order, is_resend=True))
    # when
    response = _page(client, order)
    # then
    timeline = response.context["story"].timeline
    assert [(e.kind, e.title) for e in timeline] == [
        ("order", "Order created"),
        ("voucher", "Fulfilled: voucher issued"),
        ("delivery", "Delivery queued: E-mail to asha@example.com"),
        ("attempt", "Delivery attempt (E-mail to asha@example.com): success"),
        ("delivery", "Delivered: E-mail to asha@example.com"),
        ("redemption", "Redeemed 100.00 INR"),
        ("ticket", f"Ticket #{ticket.pk} opened"),
        ("voucher", "Voucher code revealed"),
        ("resend", "Resent"),
        ("attempt", "Delivery attempt (E-mail to asha.rao@example.com): success"),
        ("delivery", "Delivered: E-mail to asha.rao@example.com"),
    ]
    assert [e.at for e in timeline[2:]] == sorted(e.at for e in timeline[2:])
    by_title = {e.title: e for e in timeline}
    assert by_title["Voucher code revealed"].actor == agent_a.username
    assert by_title["Resent"].actor == agent_a.username
    assert by_title["Resent"].detail == "email to asha.rao@example.com; corrected email"
    assert by_title["Redeemed 100.00 INR"].detail == "reference POS-1; balance after 400.00"
    assert [t.pk for t in response.context["story"].tickets] == [ticket.pk]
    assert f"Ticket #{ticket.pk} opened" in response.content.decode()


def test_a_failed_attempt_and_a_cancellation_are_on_the_timeline(
    as_user, agent_a, side_a, smtp_server
):
    # given: the mail server refuses the recipient, then the order is cancelled
    smtp_server.recorder.rcpt_reply = "550 5.1.1 No such user"
    deliver(_first_delivery(side_a.order))
    order_cancel(order=side_a.order, actor=SYSTEM, reason="member left")
    # when
    timeline = _page(as_user(agent_a), side_a.order).context["story"].timeline
    # then
    titles = [(e.kind, e.title, e.tone) for e in timeline]
    assert titles[3][0:2] == ("attempt", "Delivery attempt (E-mail to asha@example.com): permanent")
    assert titles[3][2] == "bad"
    assert titles[4][0:2] == ("delivery", "Delivery failed: E-mail to asha@example.com")
    assert ("order", "Cancelled", "bad") in titles
    assert ("voucher", "Voucher cancelled", "bad") in titles
    assert timeline[-1].title in {"Cancelled", "Voucher cancelled"}


def test_the_order_page_costs_the_same_queries_for_a_short_or_long_story(
    as_user, agent_a, side_a, smtp_server, django_assert_num_queries
):
    # given
    client = as_user(agent_a)
    order = side_a.order
    _page(client, order)
    with django_assert_num_queries(QUERIES):
        _page(client, order)
    # a long story: deliveries, resends, redemptions, tickets, reveals
    deliver(_first_delivery(order))
    for n in range(4):
        voucher_redeem(
            voucher=order.voucher, amount=Decimal("10.00"), reference=f"R{n}", actor=SYSTEM
        )
        ticket_open(
            member=side_a.member, order=order, category="other", description="x", actor=SYSTEM
        )
        client.post(reverse("ops:reveal", args=[order.booking_id]))
        _resend(client, order, channel="email")
        deliver(Delivery.objects.filter(order=order).latest("pk"))
    # then
    with django_assert_num_queries(QUERIES):
        response = _page(client, order)
    assert len(response.context["story"].timeline) > 20


# --- reveal ------------------------------------------------------------------------------------


def test_reveal_shows_the_code_and_is_audited_with_the_agent(as_user, agent_a, side_a):
    # when
    response = as_user(agent_a).post(reverse("ops:reveal", args=[side_a.order.booking_id]))
    # then
    assert response.status_code == 200
    code = side_a.order.voucher.code
    assert f'data-testid="voucher-code">{code}<' in response.content.decode()
    assert response["Cache-Control"].startswith("max-age=0")
    event = AuditEvent.objects.get(action="voucher.reveal")
    assert (event.actor_user_id, event.object_id, event.programme_id, event.member_id) == (
        agent_a.pk,
        str(side_a.order.voucher_id),
        side_a.programme.pk,
        side_a.member.pk,
    )


def test_get_never_reveals(as_user, agent_a, side_a):
    # when
    response = as_user(agent_a).get(reverse("ops:reveal", args=[side_a.order.booking_id]))
    # then
    assert response.status_code == 405
    assert side_a.order.voucher.code.encode() not in response.content
    assert not AuditEvent.objects.filter(action="voucher.reveal").exists()


def test_an_order_without_voucher_has_nothing_to_reveal(as_user, agent_a, side_a, programme):
    # given
    from tests.campaigns.builders import make_campaign

    held = issue(make_campaign(programme, approval_mode="manual"), side_a.member)
    # when
    response = as_user(agent_a).post(reverse("ops:reveal", args=[held.booking_id]), follow=True)
    # then
    assert "no voucher yet" in response.content.decode()
    assert not AuditEvent.objects.filter(action="voucher.reveal").exists()


# --- resend ------------------------------------------------------------------------------------


def test_resend_after_correcting_the_address_reaches_the_new_address(
    as_user, agent_a, side_a, smtp_server
):
    # given: the first e-mail went to the old address
    order = side_a.order
    deliver(_first_delivery(order))
    client = as_user(agent_a)
    # when
    response = _resend(client, order, channel="email", email="asha.new@example.com")
    # then: PRG with a message
    assert response.status_code == 302
    assert response["Location"] == reverse("ops:order", args=[order.booking_id])
    follow = client.get(response["Location"])
    assert "Resent by E-mail to asha.new@example.com" in follow.content.decode()
    # the member is corrected, audited with the agent
    update = AuditEvent.objects.get(action="member.update")
    assert (update.actor_user_id, update.changes) == (
        agent_a.pk,
        {"email": ["asha@example.com", "asha.new@example.com"]},
    )
    resend = Delivery.objects.get(order=order, is_resend=True)
    audit = AuditEvent.objects.get(action="delivery.resend")
    assert (audit.actor_user_id, audit.object_id) == (agent_a.pk, str(resend.pk))
    assert resend.resent_by_user_id == agent_a.pk
    # the real delivery path: the outbox message goes out over SMTP to the new address
    delivered = deliver(resend)
    assert delivered.status == "delivered"
    assert [m["To"] for m in smtp_server.messages] == ["asha@example.com", "asha.new@example.com"]
    bodies = [
        part.get_payload(decode=True).decode()
        for part in smtp_server.messages[-1].walk()
        if not part.is_multipart()
    ]
    assert all(order.voucher.code in body for body in bodies)


def test_resend_on_another_channel_to_a_corrected_phone(
    as_user, agent_a, side_a, smtp_server, http_providers
):
    # given
    order = side_a.order
    deliver(_first_delivery(order))
    # when
    response = _resend(
        as_user(agent_a), order, channel="sms", phone="+91 98000 00001", name="Asha Rao"
    )
    # then: only the phone really changed, and the SMS goes to it
    assert response.status_code == 302
    assert AuditEvent.objects.get(action="member.update").changes == {
        "phone": ["+919812345678", "+919800000001"]
    }
    delivered = deliver(Delivery.objects.get(order=order, is_resend=True))
    assert (delivered.status, delivered.channel) == ("delivered", "sms")
    assert http_providers.requests[-1]["body"]["to"] == "+919800000001"


@pytest.mark.parametrize(
    ("setup", "data", "status", "words"),
    [
        (
            "in_flight",
            {"channel": "email", "email": "x@example.com"},
            409,
            "still in progress",
        ),
        ("cancelled", {"channel": "email"}, 409, "Only a completed order"),
        ("settled", {"channel": "email", "email": "not-an-address"}, 422, "not valid"),
        ("settled_no_phone", {"channel": "sms"}, 422, "The member has no phone for SMS"),
    ],
)
def test_resend_refusals_are_in_words_and_change_nothing(
    as_user, agent_a, side_a, smtp_server, setup, data, status, words
):
    # given
    order = side_a.order
    if setup.startswith("settled"):
        deliver(_first_delivery(order))
    if setup == "settled_no_phone":
        Member.objects.filter(pk=side_a.member.pk).update(phone="")
    if setup == "cancelled":
        deliver(_first_delivery(order))
        order_cancel(order=order, actor=SYSTEM)
    before = _state()
    # when
    response = _resend(as_user(agent_a), order, **data)
    # then
    assert response.status_code == status
    page = response.content.decode()
    assert words in page
    assert _state() == before


def test_a_refused_resend_names_the_bad_field(as_user, agent_a, side_a, smtp_server):
    # given
    deliver(_first_delivery(side_a.order))
    # when
    response = _resend(as_user(agent_a), side_a.order, channel="sms", phone="12")
    # then
    assert response.status_code == 422
    assert response.context["resend_form"].errors["phone"] == [
        "Enter a phone number in E.164 format, e.g. +14155550123."
    ]


def test_an_unknown_channel_is_refused_by_the_form(as_user, agent_a, side_a, smtp_server):
    # given
    deliver(_first_delivery(side_a.order))
    before = _state()
    # when
    response = _resend(as_user(agent_a), side_a.order, channel="pigeon")
    # then
    assert response.status_code == 400
    assert "channel" in response.context["resend_form"].errors
    assert _state() == before


def test_a_test_order_is_marked(as_user, agent_a, side_a):
    # given
    order = issue(side_a.campaign, MemberFactory(programme=side_a.programme), is_test=True)
    # when
    page = _page(as_user(agent_a), order).content.decode()
    # then
    assert '<span class="badge wait">test</span>' in page
    assert Order.objects.get(pk=order.pk).is_test
