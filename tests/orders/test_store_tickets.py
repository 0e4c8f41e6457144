"""Report a problem: the ticket core of the support issue (#8), opened from the storefront."""

import pytest
from django.test import Client
from django.urls import reverse

from orders.services import order_redeem_points
from plum.actors import SYSTEM
from plum.errors import InvalidInputError, InvalidTransitionError
from plum.models import AuditEvent, OutboxMessage
from support.errors import TicketOrderMismatchError
from support.models import TICKET_TRANSITIONS, Ticket
from support.services import ticket_open
from tests.orders import test_store as store

# The storefront tests' fixtures, shared by name.
browser = store.browser
make_member_user = store.make_member_user
make_storefront = store.make_storefront
shopper = store.shopper
storefront = store.storefront
earn = store.earn


@pytest.fixture
def bought(shopper, storefront):
    earn(shopper[0], 5000)
    return order_redeem_points(campaign=storefront, member=shopper[0], actor=SYSTEM)


def nothing_written():
    return {
        "tickets": Ticket.objects.count(),
        "audit": AuditEvent.objects.filter(action="ticket.open").count(),
        "outbox": OutboxMessage.objects.count(),
    }


@pytest.mark.django_db
def test_member_reports_a_problem_and_sees_its_status(browser, shopper, bought):
    # given
    url = reverse("store_support:report", args=[bought.booking_id])
    assert browser.get(url).status_code == 200
    # when
    response = browser.post(
        url, {"category": "code_not_working", "description": "The shop says the code is invalid."}
    )
    # then
    ticket = Ticket.objects.get()
    assert response.status_code == 302
    assert (ticket.member, ticket.order, ticket.programme_id) == (
        shopper[0],
        bought,
        bought.programme_id,
    )
    assert (ticket.category, ticket.priority, ticket.status) == ("code_not_working", "high", "open")
    audit = AuditEvent.objects.get(action="ticket.open")
    assert audit.actor_label == "asha" and audit.object_id == str(ticket.pk)
    event = OutboxMessage.objects.get(payload__type="ticket.opened")
    assert event.payload["data"]["booking_id"] == bought.booking_id
    page = browser.get(response["Location"]).content.decode()
    assert f"Your report #{ticket.pk} is with our support team" in page
    assert 'data-testid="ticket-status">Open<' in page
    assert "The code does not work" in browser.get(url).content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"category": "other", "description": "   "}, "Tell us what happened"),
        ({"category": "bogus", "description": "x"}, "Select a valid choice"),
        ({"category": "other", "description": "x" * 4001}, "at most 4000 characters"),
    ],
)
def test_bad_reports_are_refused_in_words_and_change_nothing(browser, bought, data, words):
    before = nothing_written()
    response = browser.post(reverse("store_support:report", args=[bought.booking_id]), data)
    assert response.status_code == 400
    assert words in response.content.decode()
    assert nothing_written() == before


@pytest.mark.django_db
def test_ticket_open_refuses_another_members_order(bought, programme, make_member_user):
    other, _ = make_member_user(programme, "ravi")
    before = nothing_written()
    with pytest.raises(TicketOrderMismatchError):
        ticket_open(member=other, order=bought, category="other", description="x", actor=SYSTEM)
    with pytest.raises(InvalidInputError):
        ticket_open(member=other, order=None, category="nope", description="x", actor=SYSTEM)
    assert nothing_written() == before


def test_ticket_transitions_are_one_declared_table():
    assert TICKET_TRANSITIONS.allowed("open", "in_progress")
    assert TICKET_TRANSITIONS.allowed("in_progress", "awaiting_member")
    assert TICKET_TRANSITIONS.allowed("awaiting_member", "resolved")
    assert TICKET_TRANSITIONS.allowed("resolved", "closed")
    # closed is reopenable (within SUPPORT_REOPEN_DAYS: support.services.ticket_reopen)
    assert TICKET_TRANSITIONS.allowed("closed", "open")
    with pytest.raises(InvalidTransitionError):
        TICKET_TRANSITIONS.check("closed", "resolved")
    with pytest.raises(InvalidTransitionError):
        TICKET_TRANSITIONS.check("open", "awaiting_member")


@pytest.mark.django_db
def test_tickets_admin_is_read_only_and_scoped(
    bought, shopper, make_user, programme, other_programme
):
    ticket = ticket_open(
        member=shopper[0], order=bought, category="other", description="hello", actor=SYSTEM
    )
    agent = Client()
    agent.force_login(make_user("Support agent", programme))
    outsider = Client()
    outsider.force_login(make_user("Support agent", other_programme))
    changelist = reverse("admin:support_ticket_changelist")
    assert bought.booking_id in agent.get(changelist).content.decode()
    assert bought.booking_id not in outsider.get(changelist).content.decode()
    change = reverse("admin:support_ticket_change", args=[ticket.pk])
    assert outsider.get(change).status_code == 404
    agent.post(change, {"status": "closed"})
    ticket.refresh_from_db()
    assert ticket.status == "open"


@pytest.mark.django_db
def test_anonymous_report_goes_to_sign_in(bought):
    response = Client().post(reverse("store_support:report", args=[bought.booking_id]), {})
    assert response.status_code == 302
    assert Ticket.objects.count() == 0
