"""A support ticket worked in a real headless Chromium (as tests/e2e/test_ops_browser.py): an
agent signs in, opens the ticket from the unassigned queue, takes it, replies to the member,
resolves it; the reply goes out over real SMTP through the outbox. Screenshots go to
tests/artifacts/tickets/ (git-ignored)."""

import pytest

from orders.models import Delivery
from orders.services import order_issue
from plum import roles
from plum.actors import SYSTEM
from plum.models import AuditEvent
from plum.services.outbox import outbox_sweep
from plum.services.programmes import role_grant
from support.models import Ticket
from support.services import sla_policy_set, ticket_open
from tests.campaigns.builders import make_campaign
from tests.e2e.conftest import ARTIFACTS_ROOT, DESKTOP
from tests.factories import MemberFactory, UserFactory
from tests.orders.delivery_stubs import deliver

pytestmark = pytest.mark.slow
ARTIFACTS = SHOTS = ARTIFACTS_ROOT / "tickets"


@pytest.fixture
def complaint(programme, smtp_server):
    """An agent of the programme and a member's open ticket about a delivered order."""
    agent = UserFactory(username="agent")
    role_grant(user=agent, role=roles.SUPPORT_AGENT, programme=programme, actor=SYSTEM)
    sla_policy_set(
        programme=programme,
        priority="high",
        first_response_hours=2,
        resolution_hours=8,
        actor=SYSTEM,
    )
    member = MemberFactory(programme=programme, name="Asha Rao", email="asha@example.com")
    order = order_issue(
        campaign=make_campaign(programme), member=member, source="api", actor=SYSTEM
    )
    deliver(Delivery.objects.get(order=order))
    ticket = ticket_open(
        member=member,
        order=order,
        category="code_not_working",
        description="The shop says the code is invalid.",
        actor=SYSTEM,
    )
    return agent, ticket


@pytest.mark.django_db(transaction=True)
def test_agent_opens_a_ticket_from_the_queue_replies_and_resolves_it(
    chromium,
    live_server,
    complaint,
    smtp_server,
):
    agent, ticket = complaint
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = chromium.new_page(viewport=DESKTOP)
    base = live_server.url

    def shot(name):
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    # sign in, straight to the tickets
    page.goto(f"{base}/ops/tickets/")
    assert "/ops/sign-in/" in page.url
    page.get_by_label("Username").fill("agent")
    page.get_by_label("Password").fill("correct-horse-battery")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/ops/tickets/")
    assert page.get_by_test_id("queue-empty").is_visible()  # "My tickets": none yet

    # the unassigned queue lists the ticket with its SLA
    page.get_by_role("link", name="Unassigned").click()
    queue = page.get_by_test_id("ticket-queue")
    queue.wait_for()
    assert page.get_by_test_id("count-open").inner_text() == "1"
    assert "Answer by" in queue.inner_text()
    shot("01-queue")
    queue.get_by_role("link", name=f"#{ticket.pk}").click()

    # the ticket: take it
    page.get_by_test_id("ticket-status").wait_for()
    assert page.get_by_test_id("ticket-status").inner_text() == "Open"
    page.get_by_test_id("assign-me").click()
    page.get_by_text(f"Ticket #{ticket.pk} is assigned to agent.").wait_for()
    assert page.get_by_test_id("ticket-assignee").inner_text() == "agent"
    shot("02-assigned")

    # reply to the member
    page.get_by_role("textbox", name="Reply").fill("We have sent your code again.")
    page.get_by_test_id("send-reply").click()
    page.get_by_text("Reply sent and e-mailed to the member.").wait_for()
    assert page.get_by_test_id("ticket-status").inner_text() == "In progress"
    assert "We have sent your code again." in page.get_by_test_id("ticket-messages").inner_text()
    shot("03-replied")

    # resolve
    page.get_by_test_id("status-resolved").click()
    page.get_by_text(f"Ticket #{ticket.pk} is now resolved.").wait_for()
    assert page.get_by_test_id("ticket-status").inner_text() == "Resolved"
    shot("04-resolved")

    # every step audited with the agent; the reply went out over SMTP to the member
    ticket.refresh_from_db()
    assert (ticket.status, ticket.assignee_id) == ("resolved", agent.pk)
    assert ticket.first_responded_at is not None and not ticket.is_breached
    actions = list(
        AuditEvent.objects.filter(object_type="support.ticket", actor_user_id=agent.pk)
        .order_by("pk")
        .values_list("action", flat=True)
    )
    assert actions == ["ticket.assign", "ticket.reply", "ticket.transition", "ticket.transition"]
    outbox_sweep()
    mails = [m for m in smtp_server.messages if "problem report" in m["Subject"]]
    assert [m["To"] for m in mails] == ["asha@example.com"]
    assert Ticket.objects.count() == 1
