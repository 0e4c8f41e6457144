"""The storefront in a real headless Chromium (Debian's package, driven by Playwright; no
browser download) against the app served on localhost by pytest-django's live server: sign in,
see the balance, redeem a reward, find the order with its booking ID and code in the history,
and be refused, in words, a reward beyond the balance. Screenshots of the main pages (phone
sized) go to tests/artifacts/store/ (git-ignored)."""

import re

import pytest

from orders.models import Order
from plum.actors import SYSTEM
from plum.services.programmes import member_link_user
from tests.campaigns.builders import make_campaign, make_reward
from tests.e2e.conftest import ARTIFACTS_ROOT
from tests.factories import MemberFactory, UserFactory
from wallets.services import points_earn

ARTIFACTS = ARTIFACTS_ROOT / "store"
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.slow


@pytest.fixture
def shop(programme):
    """A member with an account and 1,500 points; a storefront reward at 500.00 = 1,000 points
    (also sold at 1000.00 = 2,000 points)."""
    member = MemberFactory(programme=programme, name="Asha")
    user = UserFactory(username="asha", email=member.email)
    member_link_user(member=member, user=user, actor=SYSTEM)
    points_earn(
        member=member,
        points=1500,
        reference="Welcome bonus",
        idempotency_key="e2e-welcome",
        actor=SYSTEM,
    )
    reward = make_reward(
        currency=programme.currency, points_price=2, name="Coffee card", merchant="Brew & Co"
    )
    campaign = make_campaign(programme, reward=reward, in_storefront=True)
    return member, campaign


@pytest.mark.django_db(transaction=True)
def test_member_signs_in_redeems_and_finds_the_code(chromium, live_server, shop):
    member, campaign = shop
    page = chromium.new_page(viewport=PHONE)
    base = live_server.url

    def shot(name):
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    # sign in
    page.goto(f"{base}/store/")
    assert "/store/sign-in/" in page.url
    shot("01-sign-in")
    page.get_by_label("Username").fill("asha")
    page.get_by_label("Password").fill("correct-horse-battery")
    page.get_by_role("button", name="Sign in").click()

    # the balance
    page.wait_for_url(f"{base}/store/")
    assert page.get_by_test_id("balance").inner_text() == "1500 points"
    assert page.get_by_text("Welcome bonus").is_visible()
    shot("02-dashboard")

    # the catalog, the reward, the confirmation
    page.get_by_role("link", name="Rewards", exact=True).click()
    page.get_by_role("heading", name="Coffee card").wait_for()
    shot("03-catalog")
    page.get_by_role("link", name="Coffee card").click()
    page.get_by_label("500.00 INR — 1000 points").check()
    page.get_by_role("button", name="Continue").click()
    assert page.get_by_test_id("cost").inner_text() == "1000 points"
    assert page.get_by_test_id("balance-after").inner_text() == "500 points"
    shot("04-confirm")
    page.get_by_role("button", name="Redeem for 1000 points").click()

    # the order, its booking ID and code
    page.get_by_text("Done! Your reward is ordered").wait_for()
    order = Order.objects.get(member=member)
    assert page.get_by_test_id("booking-id").inner_text() == order.booking_id
    page.get_by_role("link", name="My orders", exact=True).click()
    history = page.locator("table.list")
    assert order.booking_id in history.inner_text()
    shot("05-history")
    page.get_by_role("link", name="Coffee card").click()
    page.get_by_role("button", name="Show my code").click()
    assert page.get_by_test_id("voucher-code").inner_text() == order.voucher.code
    shot("06-order-code")

    # beyond the balance: refused in words, nothing ordered
    page.goto(f"{base}/store/rewards/{campaign.pk}/")
    page.get_by_label("1000.00 INR — 2000 points").check()
    page.get_by_role("button", name="Continue").click()
    refusal = page.get_by_test_id("refusal").inner_text()
    assert re.search(r"it costs 2,000 points and your balance is 500 points", refusal)
    assert page.get_by_role("button", name=re.compile("Redeem")).count() == 0
    shot("07-refused")
    assert Order.objects.filter(member=member).count() == 1

    # a desktop-sized view of the catalog too
    wide = chromium.new_page(viewport={"width": 1280, "height": 900})
    wide.context.add_cookies(page.context.cookies())
    wide.goto(f"{base}/store/rewards/")
    wide.screenshot(path=str(ARTIFACTS / "08-catalog-desktop.png"), full_page=True)


@pytest.mark.django_db(transaction=True)
def test_keyboard_focus_order_on_sign_in(chromium, live_server, shop):
    page = chromium.new_page(viewport=PHONE)
    page.goto(f"{live_server.url}/store/sign-in/")

    def focused():
        return page.evaluate(
            "document.activeElement.id || document.activeElement.textContent.trim()"
        )

    order = [focused()]
    for _ in range(3):
        page.keyboard.press("Tab")
        order.append(focused())
    # the username is focused on load, then the form in reading order
    assert order == ["id_username", "id_password", "Sign in", "Forgot your password?"]
