"""BOLA (broken object-level authorisation) matrix, generated from the URL conf.

Every API, ops-portal and storefront URL pattern that takes a parameter is found by walking the
resolver; each must have a case in CASES (or a reason in NOT_OBJECTS), so a new URL with an id
fails `test_every_url_with_a_parameter_has_a_case` until it gets one. For each case, a principal
of programme B (an API key of B with every scope, a support agent of B, a member of B) and, on
the member's own order pages, another member of programme A, asks for programme A's object:
the answer is 404 (never 403, never 200) and nothing changes. The owner asking for the same URL
is not 404, so the 404 comes from scoping, not from a wrong URL."""

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from campaigns.models import Campaign, Voucher
from orders.models import Delivery, Order, Upload
from orders.services import order_issue
from plum import roles
from plum.actors import SYSTEM
from plum.models import AuditEvent, Job, Member, OutboxMessage, WebhookEndpoint
from plum.services.programmes import member_link_user
from tests.campaigns.builders import make_campaign, make_reward
from tests.factories import MemberFactory, UserFactory
from tests.orders.upload_helpers import csv_bytes, row
from wallets.models import Account
from wallets.services import points_earn

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_cache")]

PREFIXES = ("api/", "ops/", "store/")


def _walk(resolver, prefix="", namespace=""):
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            ns = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _walk(pattern, prefix + str(pattern.pattern), ns)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield namespace + pattern.name, prefix + str(pattern.pattern)


def urls_with_parameters() -> dict[str, str]:
    """{namespaced url name: route} for every API/ops/store pattern with a path parameter."""
    return {
        name: route
        for name, route in _walk(get_resolver())
        if route.startswith(PREFIXES) and re.search(r"<[^>]+>", route)
    }


@dataclass(frozen=True)
class Case:
    method: str
    args: Callable[[dict], list]
    body: Callable[[dict], dict] | None = None
    # Who asks: "client_b" (API key of B), "agent_b" (support agent of B), "member_b" (member
    # user of B), "member_a2" (another member of A).
    intruders: tuple[str, ...] = ()
    owner: str = ""
    fmt: str = "json"
    headers: dict = field(default_factory=dict)


def api(method, args, body=None):
    return Case(method, args, body, intruders=("client_b",), owner="client_a")


def ops(method, args, body=None):
    return Case(method, args, body, intruders=("agent_b",), owner="agent_a", fmt="form")


def store(method, args, body=None, *, same_programme=False):
    intruders = ("member_b", "member_a2") if same_programme else ("member_b",)
    return Case(method, args, body, intruders=intruders, owner="member_a", fmt="form")


def _booking(w):
    return [w["order"].booking_id]


def _campaign(w):
    return [w["campaign"].pk]


def _code(w):
    return [w["voucher"].code]


def _member(w):
    return [w["member"].external_id]


LATER = "2031-01-01T00:00:00Z"

CASES: dict[str, Case] = {
    # plum
    "api:member-detail": api("GET", _member),
    "api:job-detail": api("GET", lambda w: [w["job_id"]]),
    "api:webhook-detail": api("GET", lambda w: [w["webhook_id"]]),
    "api:webhook-detail#patch": api(
        "PATCH", lambda w: [w["webhook_id"]], lambda w: {"url": "https://evil.example.com/x"}
    ),
    "api:webhook-detail#delete": api("DELETE", lambda w: [w["webhook_id"]]),
    "api:webhook-rotate-secret": api("POST", lambda w: [w["webhook_id"]]),
    # campaigns
    "campaigns-api:campaign-detail": api("GET", _campaign),
    "campaigns-api:campaign-detail#patch": api(
        "PATCH", _campaign, lambda w: {"name": "Taken", "max_rewards": 1}
    ),
    "campaigns-api:campaign-activate": api("POST", lambda w: [w["draft"].pk]),
    "campaigns-api:campaign-pause": api("POST", _campaign),
    "campaigns-api:campaign-resume": api("POST", lambda w: [w["paused"].pk]),
    "campaigns-api:campaign-end": api("POST", _campaign),
    "campaigns-api:campaign-codes-generate": api("POST", _campaign, lambda w: {"count": 2}),
    "campaigns-api:campaign-codes-import": api("POST", _campaign, lambda w: "code\nBOLA-1\n"),
    "campaigns-api:voucher-detail": api("GET", _code),
    "campaigns-api:voucher-redeem": api(
        "POST", _code, lambda w: {"amount": "10.00", "reference": "POS-1"}
    ),
    "campaigns-api:voucher-flag": api("POST", _code, lambda w: {"reason": "Mine now"}),
    "campaigns-api:voucher-unflag": api("POST", lambda w: [w["flagged"].code]),
    # wallets
    "wallets-api:member-points-earn": Case(
        "POST",
        _member,
        lambda w: {"points": 100, "reference": "Stolen"},
        intruders=("client_b",),
        owner="client_a",
        headers={"HTTP_IDEMPOTENCY_KEY": "bola-earn"},
    ),
    "wallets-api:member-wallet": api("GET", _member),
    # orders
    "orders-api:event-detail": api("GET", lambda w: [w["event_id"]]),
    "orders-api:order-detail": api("GET", _booking),
    "orders-api:order-cancel": api("POST", _booking, lambda w: {"reason": "Mine now"}),
    "orders-api:order-approve": api("POST", lambda w: [w["held"].booking_id]),
    "orders-api:order-reject": api(
        "POST", lambda w: [w["held"].booking_id], lambda w: {"reason": "No"}
    ),
    "orders-api:delivery-resend": api("POST", lambda w: [w["delivery"].pk], lambda w: {}),
    "orders-api:upload-detail": api("GET", lambda w: [w["upload_id"]]),
    "orders-api:upload-errors": api("GET", lambda w: [w["upload_id"]]),
    "orders-api:upload-confirm": api("POST", lambda w: [w["upload_id"]]),
    # ops portal
    "ops:order": ops("GET", _booking),
    "ops:reveal": ops("POST", _booking),
    "ops:resend": ops("POST", _booking, lambda w: {"channel": "email", "email": "x@example.com"}),
    "ops:member": ops("GET", lambda w: [w["member"].pk]),
    "ops:member_contact": ops(
        "POST", lambda w: [w["member"].pk], lambda w: {"email": "x@example.com"}
    ),
    # storefront
    "store:reward": store("GET", lambda w: [w["storefront"].pk]),
    "store:confirm": store("GET", lambda w: [w["storefront"].pk], lambda w: {"value": "500.00"}),
    "store:order": store("GET", _booking, same_programme=True),
    "store:reveal": store("POST", _booking, same_programme=True),
    "store_support:report": store("GET", _booking, same_programme=True),
    "store_support:report#post": store(
        "POST",
        _booking,
        lambda w: {"category": "other", "description": "This order is mine now"},
        same_programme=True,
    ),
}

# Patterns with a parameter that names no object of a programme, and what guards them instead.
NOT_OBJECTS = {
    "campaigns-api:reward-detail": (
        "rewards are the shared catalog, readable by every client (tests/campaigns/"
        "test_api_matrix.py: reward-detail answers 200 to any programme)"
    ),
    "orders-api:delivery-receipt": (
        "the provider's slug; the request is authenticated by the provider's HMAC signature "
        "(tests/orders/test_delivery_api.py)"
    ),
    "store:password_reset_confirm": "a signed one-time token (Django's password reset)",
    "store:invite": "a signed invitation token (tests/orders/test_store.py)",
}


def _base(name: str) -> str:
    return name.removesuffix("-slash")


def test_every_url_with_a_parameter_has_a_case():
    # given
    names = {_base(name) for name in urls_with_parameters()}
    covered = {name.split("#")[0] for name in CASES}
    # then: a new URL with an id fails here until it gets a case or a reason
    assert names - covered - set(NOT_OBJECTS) == set()
    assert covered - names == set(), "a case names a URL that no longer exists"
    assert set(NOT_OBJECTS) <= names


# --- the world -------------------------------------------------------------------------------


def _api_for(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def _member_user(programme, username, **fields):
    member = MemberFactory(programme=programme, **fields)
    user = UserFactory(username=username, email=member.email)
    member_link_user(member=member, user=user, actor=SYSTEM)
    client = Client()
    client.force_login(user)
    return member, client


@pytest.fixture
def world(programme, other_programme, make_api_client, make_user, settings):
    settings.WEBHOOK_ALLOW_INSECURE_URLS = True
    _, key_a = make_api_client([programme], name="A")
    _, key_b = make_api_client([other_programme], name="B")
    client_a, client_b = _api_for(key_a), _api_for(key_b)

    member, member_a = _member_user(programme, "asha", external_id="EMP-A1", email="a@example.com")
    _, member_a2 = _member_user(programme, "ravi", external_id="EMP-A2")
    _, member_b = _member_user(other_programme, "bela", external_id="EMP-B1")
    points_earn(member=member, points=5000, reference="Bonus", idempotency_key="w", actor=SYSTEM)

    campaign = make_campaign(programme)
    draft = make_campaign(programme, active=False, name="Draft")
    paused = make_campaign(programme, name="Paused")
    client_a.post(f"/api/v1/campaigns/{paused.pk}/pause")
    held = make_campaign(programme, name="Held", approval_mode="manual")
    storefront = make_campaign(
        programme,
        reward=make_reward(currency=programme.currency, points_price=2),
        in_storefront=True,
        name="Store",
    )
    order = order_issue(campaign=campaign, member=member, source="api", actor=SYSTEM)
    held_order = order_issue(campaign=held, member=member, source="api", actor=SYSTEM)
    flagged = order_issue(campaign=campaign, member=member, source="api", actor=SYSTEM).voucher
    client_a.post(f"/api/v1/vouchers/{flagged.code}/flag", {"reason": "Check"}, format="json")
    delivery = Delivery.objects.filter(order=order).first()
    Delivery.objects.filter(pk=delivery.pk).update(
        status="failed", reason="bounced", failed_at=order.created_at
    )

    job = client_a.post(f"/api/v1/campaigns/{campaign.pk}/codes", {"count": 2}, format="json")
    webhook = client_a.post(
        "/api/v1/webhooks", {"url": "https://crm.example.com/a", "event_types": ["*"]}, "json"
    )
    event = client_a.post(
        "/api/v1/events",
        {
            "event_id": "E-A1",
            "type": "purchase",
            "occurred_at": "2026-11-30T10:00:00Z",
            "member": {"external_id": "EMP-A1"},
            "data": {},
        },
        format="json",
    )
    upload = client_a.post(
        "/api/v1/uploads",
        {"campaign": campaign.pk, "file": SimpleUploadedFile("a.csv", csv_bytes(row(1)))},
        format="multipart",
    )
    assert (job.status_code, webhook.status_code, event.status_code, upload.status_code) == (
        202,
        201,
        201,
        201,
    ), (job.content, webhook.content, event.content, upload.content)

    return {
        "principals": {
            "client_a": client_a,
            "client_b": client_b,
            "agent_a": _signed_in(make_user(roles.SUPPORT_AGENT, programme)),
            "agent_b": _signed_in(make_user(roles.SUPPORT_AGENT, other_programme)),
            "member_a": member_a,
            "member_a2": member_a2,
            "member_b": member_b,
        },
        "member": member,
        "campaign": campaign,
        "draft": draft,
        "paused": Campaign.objects.get(pk=paused.pk),
        "storefront": storefront,
        "order": order,
        "held": held_order,
        "voucher": order.voucher,
        "flagged": flagged,
        "delivery": delivery,
        "job_id": job.json()["id"],
        "webhook_id": webhook.json()["id"],
        "event_id": "E-A1",
        "upload_id": upload.json()["id"],
    }


def _signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def state() -> dict:
    """Every row an intruder could try to change. Failed voucher lookups are audited on purpose
    (brute-force evidence), so those audit events are left out."""
    return {
        "orders": list(Order.objects.order_by("pk").values()),
        "vouchers": list(Voucher.objects.order_by("pk").values()),
        "campaigns": list(Campaign.objects.order_by("pk").values()),
        "members": list(Member.objects.order_by("pk").values()),
        "accounts": list(Account.objects.order_by("pk").values("pk", "balance")),
        "deliveries": list(Delivery.objects.order_by("pk").values()),
        "uploads": list(Upload.objects.order_by("pk").values()),
        "webhooks": list(WebhookEndpoint.objects.order_by("pk").values()),
        "jobs": Job.objects.count(),
        "outbox": OutboxMessage.objects.count(),
        "audit": list(
            AuditEvent.objects.exclude(action="voucher.lookup_failed")
            .order_by("pk")
            .values_list("action", flat=True)
        ),
    }


def send(case: Case, name: str, world: dict, principal: str, *, slash: bool = False):
    url_name = name.split("#")[0]
    url = reverse(url_name + ("-slash" if slash else ""), args=case.args(world))
    client = world["principals"][principal]
    body = case.body(world) if case.body else None
    if case.method == "GET":
        return client.get(url, body or {})
    if url_name.endswith("codes-import"):
        return client.post(url, body, content_type="text/csv")
    if case.fmt == "form":
        return client.post(url, body or {})
    # A fresh Idempotency-Key per request: the same key on another path is refused (422).
    headers = {k: f"{v}-{uuid.uuid4().hex}" for k, v in case.headers.items()}
    return client.generic(case.method, url, _json(body), content_type="application/json", **headers)


def _json(body) -> str:
    return "" if body is None else json.dumps(body)


GROUPS = {
    "api": [n for n in CASES if n.split(":")[0].endswith("api")],
    "ops": [n for n in CASES if n.startswith("ops:")],
    "store": [n for n in CASES if n.startswith("store")],
}


def test_the_groups_hold_every_case():
    assert sorted(sum(GROUPS.values(), [])) == sorted(CASES)


@pytest.mark.parametrize("group", GROUPS)
def test_a_principal_outside_the_objects_scope_gets_404_and_changes_nothing(world, group):
    """One world per group (a refusal changes nothing, so the cases cannot disturb each other);
    every (case, intruder, slash variant) that is not a clean 404 is listed."""
    # given
    before = state()
    wrong = []
    # when
    for name in GROUPS[group]:
        case = CASES[name]
        for who in case.intruders:
            for slash in (False, True) if group == "api" else (False,):
                response = send(case, name, world, who, slash=slash)
                leaked = world["order"].booking_id.encode() in response.content
                if response.status_code != 404 or leaked:
                    wrong.append((name, who, slash, response.status_code, response.content[:200]))
    # then
    assert wrong == []
    assert state() == before


@pytest.mark.parametrize("group", GROUPS)
def test_the_owner_reaches_the_same_urls(world, group):
    """The control: the 404s above come from scoping, not from URLs that find nothing."""
    # given
    wrong = []
    # when: reads first, then writes, each on its own object where it matters
    names = sorted(GROUPS[group], key=lambda n: CASES[n].method != "GET")
    for name in names:
        case = CASES[name]
        response = send(case, name, world, case.owner)
        if response.status_code == 404 or response.status_code >= 500:
            wrong.append((name, response.status_code, response.content[:200]))
    # then
    assert wrong == []
