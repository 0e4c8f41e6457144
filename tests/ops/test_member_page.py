"""The member page: profile, wallet balance and ledger (paged), orders, tickets and the audit
log (paged); the contact correction (name, e-mail, phone only; audited). Agents have no way to
change values, points or campaign settings: no such page, form or URL exists."""

import pytest
from django.urls import get_resolver, reverse

from campaigns.models import Campaign
from ops.views import PAGE_SIZE
from orders.models import Order
from plum.actors import SYSTEM
from plum.models import AuditEvent, Member
from support.services import ticket_open
from tests.ops.conftest import issue
from wallets.models import Account, Posting
from wallets.services import points_earn

pytestmark = pytest.mark.django_db

QUERIES = 14  # session, user, 2 permission reads, scope check, member, wallet, then per list
# (orders, ledger, audit log) a count and a page, tickets: fixed whatever the rows


def _page(client, member, **params):
    return client.get(reverse("ops:member", args=[member.pk]), params)


def _contact(client, member, **data):
    return client.post(reverse("ops:member_contact", args=[member.pk]), data)


def _earn(member, n):
    points_earn(
        member=member, points=10, reference=f"Bonus {n}", idempotency_key=f"k{n}", actor=SYSTEM
    )


def test_the_member_page_shows_profile_wallet_orders_tickets_and_audit(as_user, agent_a, side_a):
    # given
    _earn(side_a.member, 1)
    ticket = ticket_open(
        member=side_a.member, order=side_a.order, category="other", description="?", actor=SYSTEM
    )
    # when
    response = _page(as_user(agent_a), side_a.member)
    # then
    page = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="wallet-balance">10 points<' in page
    assert [o.pk for o in response.context["orders"]] == [side_a.order.pk]
    assert [t.pk for t in response.context["tickets"]] == [ticket.pk]
    assert [p.amount for p in response.context["postings"]] == [10]
    actions = [e.action for e in response.context["events"]]
    assert {"order.create", "voucher.issue", "points.earn", "ticket.open"} <= set(actions)
    assert side_a.order.voucher.code not in page


def test_the_ledger_and_the_audit_log_are_paged(as_user, agent_a, side_a):
    # given
    for n in range(PAGE_SIZE + 3):
        _earn(side_a.member, n)
    client = as_user(agent_a)
    # when
    first = _page(client, side_a.member)
    second = _page(client, side_a.member, ledger=2)
    # then
    assert len(first.context["postings"]) == PAGE_SIZE
    assert [p.transaction.reference for p in second.context["postings"]] == [
        "Bonus 2",
        "Bonus 1",
        "Bonus 0",
    ]
    assert first.context["events"].paginator.count > PAGE_SIZE
    assert 'href="?ledger=2#ledger"' in first.content.decode()


def test_the_member_page_costs_the_same_queries_for_few_or_many_rows(
    as_user, agent_a, side_a, django_assert_num_queries
):
    # given
    client = as_user(agent_a)
    _earn(side_a.member, "first")
    _page(client, side_a.member)
    with django_assert_num_queries(QUERIES):
        _page(client, side_a.member)
    for n in range(30):
        _earn(side_a.member, n)
        issue(side_a.campaign, side_a.member)
        ticket_open(
            member=side_a.member, order=None, category="other", description="x", actor=SYSTEM
        )
    # then
    with django_assert_num_queries(QUERIES):
        response = _page(client, side_a.member)
    assert len(response.context["orders"]) == PAGE_SIZE


# --- contact correction ------------------------------------------------------------------------


def test_correcting_contact_details_is_audited_with_the_agent(as_user, agent_a, side_a):
    # when
    response = _contact(
        as_user(agent_a),
        side_a.member,
        name="Asha Rao",
        email="asha.rao@example.com",
        phone="+91 98000 00002",
    )
    # then
    assert response.status_code == 302
    member = Member.objects.get(pk=side_a.member.pk)
    assert (member.name, member.email, member.phone) == (
        "Asha Rao",
        "asha.rao@example.com",
        "+919800000002",
    )
    event = AuditEvent.objects.get(action="member.update")
    assert (event.actor_user_id, event.member_id, event.changes) == (
        agent_a.pk,
        member.pk,
        {
            "email": ["asha@example.com", "asha.rao@example.com"],
            "phone": ["+919812345678", "+919800000002"],
        },
    )


def test_an_invalid_correction_is_refused_in_words_and_changes_nothing(as_user, agent_a, side_a):
    # given
    before = Member.objects.filter(pk=side_a.member.pk).values().get()
    # when
    response = _contact(as_user(agent_a), side_a.member, email="nope", phone="123")
    # then
    assert response.status_code == 422
    assert "nothing was changed" in response.content.decode()
    assert set(response.context["contact_form"].errors) == {"email", "phone"}
    assert Member.objects.filter(pk=side_a.member.pk).values().get() == before
    assert not AuditEvent.objects.filter(action="member.update").exists()


def test_fields_other_than_name_email_phone_are_ignored(as_user, agent_a, side_a):
    # given
    before = Member.objects.filter(pk=side_a.member.pk).values().get()
    # when
    response = _contact(
        as_user(agent_a),
        side_a.member,
        external_id="HACKED",
        country="US",
        preferred_channel="sms",
        programme=side_a.programme.pk + 1,
        points="1000000",
        balance="1000000",
    )
    # then
    assert response.status_code == 302
    assert Member.objects.filter(pk=side_a.member.pk).values().get() == before
    assert not AuditEvent.objects.filter(action="member.update").exists()


# --- nothing else can be changed ---------------------------------------------------------------

WRITE_URLS = {
    "ops:login",
    "ops:logout",
    "ops:home",
    "ops:reveal",
    "ops:resend",
    "ops:member_contact",
}


def _ops_url_names():
    resolver = get_resolver()
    ops = resolver.namespace_dict["ops"][1]
    return {f"ops:{name}" for name in ops.reverse_dict if isinstance(name, str)}


def test_the_portal_has_no_page_for_values_points_or_campaign_settings():
    # then: the portal's own URLs are exactly these (ticket pages are support's, under tickets/)
    own = {name for name in _ops_url_names() if not name.startswith("ops:tickets")}
    assert own == WRITE_URLS | {"ops:order", "ops:member"}


@pytest.mark.parametrize(
    "path",
    [
        "/ops/members/{member}/points/",
        "/ops/members/{member}/wallet/",
        "/ops/orders/{booking}/value/",
        "/ops/orders/{booking}/cancel/",
        "/ops/orders/{booking}/approve/",
        "/ops/campaigns/{campaign}/",
        "/ops/vouchers/{voucher}/extend/",
    ],
)
def test_posts_to_value_points_or_campaign_changes_are_impossible(as_user, agent_a, side_a, path):
    # given
    snapshot = (
        list(Order.objects.values()),
        list(Campaign.objects.values()),
        list(Account.objects.values()),
        Posting.objects.count(),
    )
    url = path.format(
        member=side_a.member.pk,
        booking=side_a.order.booking_id,
        campaign=side_a.campaign.pk,
        voucher=side_a.order.voucher_id,
    )
    # when
    response = as_user(agent_a).post(url, {"points": "1000", "value": "9999", "max_rewards": "1"})
    # then
    assert response.status_code == 404
    assert snapshot == (
        list(Order.objects.values()),
        list(Campaign.objects.values()),
        list(Account.objects.values()),
        Posting.objects.count(),
    )


@pytest.mark.parametrize("name", ["ops:order", "ops:member"])
def test_the_read_pages_refuse_posts(as_user, agent_a, side_a, name):
    # given
    arg = side_a.order.booking_id if name == "ops:order" else side_a.member.pk
    # when
    response = as_user(agent_a).post(reverse(name, args=[arg]), {"value": "1"})
    # then
    assert response.status_code == 405


def test_the_pages_hold_no_form_but_reveal_resend_contact_search_and_sign_out(
    as_user, agent_a, side_a
):
    # given
    client = as_user(agent_a)
    pages = [
        client.get(reverse("ops:order", args=[side_a.order.booking_id])),
        client.get(reverse("ops:member", args=[side_a.member.pk])),
        client.get(reverse("ops:home")),
    ]
    # then
    import re

    actions = {
        action
        for response in pages
        for action in re.findall(r'<form[^>]*action="([^"]+)"', response.content.decode())
    }
    assert actions == {
        reverse("ops:reveal", args=[side_a.order.booking_id]),
        reverse("ops:resend", args=[side_a.order.booking_id]),
        reverse("ops:member_contact", args=[side_a.member.pk]),
        reverse("ops:home"),
        reverse("ops:logout"),
    }
