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
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from tests.security.conftest import state

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_cache")]

PREFIXES = ("api/", "ops/", "store/")


def _walk(resolver, prefix="", namespace=""):
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            ns = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _walk(pattern, prefix + str(pattern.pattern), ns)
        elif isinstance(pattern, URLPattern):
            route = prefix + str(pattern.pattern)
            # An unnamed pattern is listed by its route, so it cannot slip past the registry.
            yield (namespace + pattern.name if pattern.name else route), route


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


def _ticket(w):
    return [w["ticket"].pk]


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
    # support
    "support-api:ticket-detail": api("GET", _ticket),
    "support-api:ticket-transition": api("POST", _ticket, lambda w: {"status": "in_progress"}),
    "support-api:ticket-messages": api(
        "POST", _ticket, lambda w: {"kind": "note", "body": "Mine now"}
    ),
    # ops portal
    "ops:order": ops("GET", _booking),
    "ops:reveal": ops("POST", _booking),
    "ops:resend": ops("POST", _booking, lambda w: {"channel": "email", "email": "x@example.com"}),
    "ops:member": ops("GET", lambda w: [w["member"].pk]),
    "ops:member_contact": ops(
        "POST", lambda w: [w["member"].pk], lambda w: {"email": "x@example.com"}
    ),
    "ops:tickets_detail": ops("GET", _ticket),
    "ops:tickets_assign": ops("POST", _ticket, lambda w: {"assignee": "me"}),
    "ops:tickets_status": ops("POST", _ticket, lambda w: {"status": "in_progress"}),
    "ops:tickets_reply": ops("POST", _ticket, lambda w: {"reply-body": "Hello"}),
    "ops:tickets_note": ops("POST", _ticket, lambda w: {"note-body": "Mine now"}),
    # storefront
    "store_support:ticket": store("GET", _ticket, same_programme=True),
    "store_support:ticket#post": store(
        "POST", _ticket, lambda w: {"body": "Answer as someone else"}, same_programme=True
    ),
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
