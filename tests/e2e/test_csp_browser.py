"""The Content-Security-Policy holds on every kind of page, in a real headless Chromium: the
admin (index, lists, change pages, a custom view), the API docs (Swagger UI), the ops portal
and the storefront, each signed in as its user. Chromium reports every blocked script, style
or frame as a console error; a page that needs an inline script would break under the policy
and fail here."""

import pytest
from django.conf import settings
from django.test import Client

from orders.services import order_issue
from plum import roles
from plum.actors import SYSTEM
from plum.services.programmes import member_link_user, role_grant
from tests.campaigns.builders import make_campaign, make_reward
from tests.e2e.conftest import DESKTOP
from tests.factories import MemberFactory, UserFactory
from wallets.services import points_earn

pytestmark = pytest.mark.slow


@pytest.fixture
def site(programme):
    member = MemberFactory(programme=programme, name="Asha")
    member_user = UserFactory(username="asha", email=member.email)
    member_link_user(member=member, user=member_user, actor=SYSTEM)
    points_earn(member=member, points=1500, reference="Bonus", idempotency_key="csp", actor=SYSTEM)
    store = make_campaign(
        programme,
        reward=make_reward(currency=programme.currency, points_price=2, name="Coffee card"),
        in_storefront=True,
    )
    campaign = make_campaign(programme)
    order = order_issue(campaign=campaign, member=member, source="api", actor=SYSTEM)
    agent = UserFactory(username="agent")
    role_grant(user=agent, role=roles.SUPPORT_AGENT, programme=programme, actor=SYSTEM)
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    return {
        "root": root,
        "agent": agent,
        "member": member_user,
        "order": order,
        "campaign": campaign,
        "store": store,
    }


def _pages(site) -> dict[str, list[str]]:
    order, campaign, store = site["order"], site["campaign"], site["store"]
    return {
        "root": [
            "/admin/",
            "/admin/orders/order/",
            f"/admin/orders/order/{order.pk}/change/",
            "/admin/campaigns/campaign/",
            f"/admin/campaigns/campaign/{campaign.pk}/change/",
            f"/admin/campaigns/campaign/{campaign.pk}/generate-codes/",
            f"/admin/campaigns/voucher/{order.voucher_id}/change/",
            "/admin/plum/member/",
            "/admin/wallets/ledgertransaction/reports/",
            "/admin/orders/upload/add/",
            "/api/docs/",
        ],
        "agent": ["/ops/", f"/ops/orders/{order.booking_id}/"],
        "member": [
            "/store/",
            "/store/rewards/",
            f"/store/rewards/{store.pk}/",
            f"/store/rewards/{store.pk}/confirm/?value={store.value}",
            "/store/orders/",
            f"/store/orders/{order.booking_id}/",
        ],
    }


@pytest.mark.django_db(transaction=True)
def test_no_page_breaks_the_content_security_policy(chromium, live_server, site):
    violations, visited = [], []
    current = {"path": ""}
    for who, paths in _pages(site).items():
        client = Client()
        client.force_login(site[who])
        context = chromium.new_context(viewport=DESKTOP)
        context.add_cookies(
            [
                {
                    "name": settings.SESSION_COOKIE_NAME,
                    "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                    "url": live_server.url,
                }
            ]
        )
        page = context.new_page()
        page.on(
            "console",
            lambda message: (
                violations.append((current["path"], message.text))
                if "Content Security Policy" in message.text
                else None
            ),
        )
        for path in paths:
            current["path"] = path
            response = page.goto(live_server.url + path)
            assert response.status == 200, (who, path, response.status)
            assert response.headers["content-security-policy"] == settings.CONTENT_SECURITY_POLICY
            if path == "/api/docs/":
                # Swagger UI builds the page with its scripts: wait until it has rendered.
                page.locator(".swagger-ui .info").wait_for(timeout=15000)
            page.wait_for_load_state("networkidle")
            visited.append(path)
        context.close()
    assert not violations, violations
    assert len(visited) == sum(len(p) for p in _pages(site).values())


def test_every_response_carries_the_policy(client, settings):
    response = client.get("/healthz")
    assert response["Content-Security-Policy"] == settings.CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in response["Content-Security-Policy"]
    script_src = response["Content-Security-Policy"].split("script-src")[1].split(";")[0]
    assert "unsafe" not in script_src
