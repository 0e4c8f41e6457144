"""The ops portal in a real headless Chromium (Debian's package, driven by Playwright; no
browser download) against the app on pytest-django's live server: an agent signs in, searches
a booking ID, opens the order, reveals the code, resends it to a corrected e-mail address and
sees the success message; the resend then goes out over real SMTP to the new address.
Screenshots go to tests/artifacts/ops/ (git-ignored)."""

import pytest

from orders.models import Delivery, Order
from orders.services import order_issue
from plum import roles
from plum.actors import SYSTEM
from plum.models import AuditEvent
from plum.services.programmes import role_grant
from tests.campaigns.builders import make_campaign
from tests.e2e.conftest import ARTIFACTS_ROOT, DESKTOP
from tests.factories import MemberFactory, UserFactory
from tests.orders.delivery_stubs import deliver

ARTIFACTS = ARTIFACTS_ROOT / "ops"

pytestmark = pytest.mark.slow


@pytest.fixture
def desk(programme, smtp_server):
    """An agent of the programme, and a completed order whose e-mail went to a typo'd address."""
    agent = UserFactory(username="agent")
    role_grant(user=agent, role=roles.SUPPORT_AGENT, programme=programme, actor=SYSTEM)
    member = MemberFactory(programme=programme, name="Asha Rao", email="asha@exmaple.com")
    order = order_issue(
        campaign=make_campaign(programme), member=member, source="api", actor=SYSTEM
    )
    deliver(Delivery.objects.get(order=order))
    return agent, Order.objects.select_related("voucher").get(pk=order.pk)


@pytest.mark.django_db(transaction=True)
def test_agent_finds_an_order_reveals_the_code_and_resends(
    chromium, live_server, desk, smtp_server
):
    agent, order = desk
    page = chromium.new_page(viewport=DESKTOP)
    base = live_server.url

    def shot(name):
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    # sign in
    page.goto(f"{base}/ops/")
    assert "/ops/sign-in/" in page.url
    page.get_by_label("Username").fill("agent")
    page.get_by_label("Password").fill("correct-horse-battery")
    shot("01-sign-in")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/ops/")

    # search by booking ID, typed in lower case without dashes
    page.get_by_label("Booking ID, voucher code, member ID, e-mail or phone").fill(
        order.booking_id.lower().replace("-", "")
    )
    page.get_by_role("button", name="Search").click()
    results = page.get_by_test_id("order-results")
    results.wait_for()
    assert "?q=" not in page.url  # a POST: nothing searched lands in a URL
    shot("02-search")
    results.get_by_role("link", name=order.booking_id).click()

    # the order: masked code, timeline
    page.get_by_test_id("booking-id").wait_for()
    assert page.get_by_test_id("masked-code").inner_text() == order.voucher.masked_code
    assert "Delivered: E-mail to asha@exmaple.com" in page.get_by_test_id("timeline").inner_text()
    assert order.voucher.code not in page.content()
    shot("03-order")

    # reveal (audited)
    page.get_by_role("button", name="Reveal the full code").click()
    assert page.get_by_test_id("voucher-code").inner_text() == order.voucher.code
    assert AuditEvent.objects.filter(action="voucher.reveal", actor_user_id=agent.pk).count() == 1
    shot("04-revealed")

    # resend to the corrected address
    page.get_by_role("radio", name="E-mail").check()
    page.get_by_role("textbox", name="E-mail address").fill("asha@example.com")
    page.get_by_role("button", name="Resend").click()
    page.get_by_text("Resent by E-mail to asha@example.com").wait_for()
    assert page.url == f"{base}/ops/orders/{order.booking_id}/"
    assert page.get_by_test_id("member-email").inner_text() == "asha@example.com"
    assert "Resent" in page.get_by_test_id("timeline").inner_text()
    assert order.voucher.code not in page.content()  # the redirect shows no code again
    shot("05-resent")

    # the resend goes out through the real delivery path, to the new address
    delivered = deliver(Delivery.objects.get(order=order, is_resend=True))
    assert delivered.status == "delivered"
    assert [m["To"] for m in smtp_server.messages] == ["asha@exmaple.com", "asha@example.com"]
    page.reload()
    assert "Delivered: E-mail to asha@example.com" in page.get_by_test_id("timeline").inner_text()
    shot("06-delivered")
