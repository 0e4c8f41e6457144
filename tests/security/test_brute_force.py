"""Brute force: code guessing and password guessing.

Proven elsewhere, not repeated here:
- voucher-code guessing through the API (detail, redeem, flag, bulk extend/recover): 30 unknown
  codes a minute per client, an atomic counter (a parallel burst cannot pass it), every failure
  audited — tests/campaigns/test_api_lookup_throttle.py;
- code search in the ops portal, same guarded lookup — tests/ops/test_search.py
  (test_guessing_codes_is_limited_and_says_so, test_an_unknown_code_is_audited_...);
- the storefront sign-in lockout, per (account, IP), atomic under 20 parallel failures and
  audited — tests/orders/test_store.py (test_lockout_*).

Added here: every code lookup in a view goes through the guarded lookup (a new unguarded one
fails), and the ops portal's and the admin's sign-ins lock out like the storefront's."""

import ast
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from orders.services.storefront import LOGIN_MAX_FAILURES
from plum import roles
from plum.models import AuditEvent
from tests.stubs import free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct-horse-battery"

pytestmark = pytest.mark.usefixtures("fresh_cache")


def test_every_code_lookup_outside_the_services_is_the_guarded_one():
    """API views and portal selectors find vouchers by code only through
    campaigns.services.lookups (counted, limited, audited), never voucher_find directly."""
    # given
    direct = []
    for app in ["plum", "campaigns", "wallets", "orders", "support", "ops"]:
        for path in (ROOT / app).rglob("*.py"):
            name = path.relative_to(ROOT).as_posix()
            if "/services" in name or "migrations" in name:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("voucher_find"):
                    direct.append(name)
    # then
    assert direct == []


@pytest.fixture
def staff(make_user, programme):
    user = make_user(roles.SUPPORT_AGENT, programme, username="agent1")
    user.is_staff = True
    user.set_password(PASSWORD)
    user.save()
    return user


@pytest.mark.django_db
@pytest.mark.parametrize("login", ["ops:login", "admin:login"])
def test_a_sign_in_locks_after_repeated_failures_even_for_the_right_password(staff, login):
    # given
    client = Client()
    url = reverse(login)
    # when
    failures = [
        client.post(url, {"username": "agent1", "password": f"guess-{n}"}).status_code
        for n in range(LOGIN_MAX_FAILURES)
    ]
    right = client.post(url, {"username": "agent1", "password": PASSWORD})
    # then
    assert failures[:-1] == [200] * (LOGIN_MAX_FAILURES - 1)
    assert failures[-1] == 429
    assert right.status_code == 429
    assert "_auth_user_id" not in client.session
    assert b"paused for 15 minutes" in right.content
    actions = list(
        AuditEvent.objects.filter(object_type="store.login").values_list("action", flat=True)
    )
    assert actions.count("store.login_failed") == LOGIN_MAX_FAILURES - 1
    assert actions.count("store.login_locked") == 1


@pytest.mark.django_db
@pytest.mark.parametrize(("login", "home"), [("ops:login", "/ops/"), ("admin:login", "/admin/")])
def test_the_right_password_before_the_limit_signs_in_and_clears_the_count(staff, login, home):
    # given: failures just under the limit
    client = Client()
    url = reverse(login)
    for n in range(LOGIN_MAX_FAILURES - 1):
        client.post(url, {"username": "agent1", "password": f"guess-{n}"})
    # when
    signed_in = client.post(url, {"username": "agent1", "password": PASSWORD})
    client.logout()
    again = client.post(url, {"username": "agent1", "password": "guess-again"})
    # then
    assert signed_in.status_code == 302
    assert signed_in["Location"] == home
    assert again.status_code == 200  # the count started over


@pytest.mark.django_db
def test_the_admin_login_is_the_locked_one(staff):
    """/admin/login/ resolves to the view with the lockout, not Django's bare admin login."""
    from django.urls import resolve

    from orders.views.accounts import AdminLoginView

    assert resolve("/admin/login/").func.view_class is AdminLoginView
    assert reverse("admin:login") == "/admin/login/"
    # an anonymous admin page still sends to it
    response = Client().get("/admin/")
    assert response["Location"].startswith("/admin/login/?next=/admin/")


@pytest.mark.django_db
@pytest.mark.parametrize("login", ["store:login", "ops:login", "admin:login"])
def test_a_sign_in_is_refused_in_words_while_the_lockout_counter_is_unreachable(
    staff, login, settings
):
    """Without Redis the failure count cannot be kept: a sign-in is refused with a 503 and a
    sentence (the password is not even checked), never a 500 and never an unguarded check."""
    # given: the cache (the lockout counter) unreachable
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    client = Client()
    # when
    response = client.post(reverse(login), {"username": "agent1", "password": PASSWORD})
    # then
    assert response.status_code == 503
    assert "Sign-in is paused for a moment" in response.content.decode()
    assert "_auth_user_id" not in client.session
