"""Mass assignment: every write operation of the API, sent a valid body plus the fields a client
must never set (ids, programme, statuses, counters, balances, booking ids, timestamps, secrets).

The write operations come from the OpenAPI schema, so a new one fails
`test_every_write_operation_has_a_case` until it gets a body here. For each, the forbidden fields
are those its request schema does not accept. The request is either refused (4xx, nothing
changed), or it succeeds and none of the injected values is stored anywhere or answered back."""

import json
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from drf_spectacular.generators import SchemaGenerator

from campaigns.models import Campaign, Voucher
from orders.models import Delivery, Order, Upload
from plum.models import Job, Member, Programme, WebhookEndpoint
from support.models import Ticket, TicketMessage
from tests.security.conftest import state
from wallets.models import Account, LedgerTransaction

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_cache")]

SENTINEL = 987654
INJECT = {
    "id": SENTINEL,
    "pk": SENTINEL,
    "programme": "beta",
    "status": "cancelled",
    "approval_state": "approved",
    "issued_count": SENTINEL,
    "issued_value": f"{SENTINEL}.00",
    "redeemed_value": f"{SENTINEL}.00",
    "balance": SENTINEL,
    "booking_id": "PLM-HACK-0000",
    "created_at": "2000-01-01T00:00:00Z",
    "updated_at": "2000-01-01T00:00:00Z",
    "is_test": True,
    "secret": "injected-secret",
    "failure_count": SENTINEL,
    "attempts": SENTINEL,
    "counts": {"rows": SENTINEL},
    "created_by_client": SENTINEL,
}
LATER = "2031-01-01T00:00:00Z"

# operationId -> (path, body, content type); `w` is the world (tests/security/conftest.py).
CASES = {
    "campaigns_create": (
        "/api/v1/campaigns",
        lambda w: {
            "name": "New",
            "reward": w["campaign"].reward_id,
            "value": "500.00",
            "starts_at": LATER,
        },
    ),
    "campaigns_update": (
        "/api/v1/campaigns/{campaign}",
        lambda w: {"name": "Renamed"},
    ),
    "campaigns_activate": ("/api/v1/campaigns/{draft}/activate", lambda w: {}),
    "campaigns_pause": ("/api/v1/campaigns/{campaign}/pause", lambda w: {}),
    "campaigns_resume": ("/api/v1/campaigns/{paused}/resume", lambda w: {}),
    "campaigns_end": ("/api/v1/campaigns/{campaign}/end", lambda w: {}),
    "campaigns_codes_generate": ("/api/v1/campaigns/{campaign}/codes", lambda w: {"count": 1}),
    "campaigns_codes_import": (
        "/api/v1/campaigns/{campaign}/codes/import",
        lambda w: {"file": ("codes.csv", b"code\nMASS-1\n")},
    ),
    "deliveries_resend": ("/api/v1/deliveries/{delivery}/resend", lambda w: {}),
    "events_create": (
        "/api/v1/events",
        lambda w: {
            "event_id": "E-MASS",
            "type": "purchase",
            "occurred_at": "2026-11-30T10:00:00Z",
            "member": {"external_id": "EMP-A1"},
            "data": {},
        },
    ),
    "issuances_create": (
        "/api/v1/issuances",
        lambda w: {
            "campaign": w["campaign"].pk,
            "recipient": {"external_id": "EMP-A1", "email": "a@example.com"},
        },
    ),
    "issuances_batch_create": (
        "/api/v1/issuances/batch",
        lambda w: {
            "items": [
                {
                    "campaign": w["campaign"].pk,
                    "recipient": {"external_id": "EMP-A1", "email": "a@example.com"},
                }
            ]
        },
    ),
    "members_upsert": ("/api/v1/members", lambda w: {"external_id": "EMP-A9", "name": "New"}),
    "members_points_earn": (
        "/api/v1/members/EMP-A1/points",
        lambda w: {"points": 10, "reference": "Bonus"},
    ),
    "orders_approve": ("/api/v1/orders/{held}/approve", lambda w: {}),
    "orders_cancel": ("/api/v1/orders/{order}/cancel", lambda w: {"reason": "Test"}),
    "orders_reject": ("/api/v1/orders/{held}/reject", lambda w: {"reason": "Test"}),
    "redemptions_create": (
        "/api/v1/redemptions",
        lambda w: {"campaign": w["storefront"].pk, "member": "EMP-A1"},
    ),
    "tickets_create": (
        "/api/v1/tickets",
        lambda w: {"member": "EMP-A1", "category": "other", "description": "Help, please."},
    ),
    "tickets_transition": (
        "/api/v1/tickets/{ticket}/transition",
        lambda w: {"status": "in_progress"},
    ),
    "tickets_messages_create": (
        "/api/v1/tickets/{ticket}/messages",
        lambda w: {"kind": "note", "body": "Checked the shop's logs."},
    ),
    "uploads_create": (
        "/api/v1/uploads",
        lambda w: {"campaign": w["campaign"].pk, "file_name": "a.csv", "rows": [_row()]},
    ),
    "uploads_confirm": ("/api/v1/uploads/{upload}/confirm", lambda w: {}),
    "vouchers_flag": ("/api/v1/vouchers/{code}/flag", lambda w: {"reason": "Check"}),
    "vouchers_redeem": (
        "/api/v1/vouchers/{code}/redeem",
        lambda w: {"amount": "10.00", "reference": "POS-1"},
    ),
    "vouchers_unflag": ("/api/v1/vouchers/{flagged}/unflag", lambda w: {}),
    "vouchers_extend": (
        "/api/v1/vouchers/extend",
        lambda w: {"codes": [w["voucher"].code], "expires_at": LATER},
    ),
    "vouchers_recover": ("/api/v1/vouchers/recover", lambda w: {"codes": [w["voucher"].code]}),
    "webhooks_create": (
        "/api/v1/webhooks",
        lambda w: {"url": "https://crm.example.com/new", "event_types": ["*"]},
    ),
    "webhooks_update": ("/api/v1/webhooks/{webhook}", lambda w: {"description": "CRM"}),
    "webhooks_deactivate": ("/api/v1/webhooks/{webhook}", lambda w: {}),
    "webhooks_rotate_secret": ("/api/v1/webhooks/{webhook}/rotate-secret", lambda w: {}),
}
NOT_CLIENT_WRITES = {
    "delivery_receipts_create": "sent by a delivery provider, signed with its HMAC secret; the "
    "body names only the message and its outcome (tests/orders/test_delivery_api.py)",
}


def _row():
    return {"external_id": "EMP-U1", "name": "U", "email": "u@example.com", "country": "IN"}


def _schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def _write_operations() -> dict[str, tuple[str, str, set[str]]]:
    """{operationId: (method, path, fields its request body accepts)}."""
    schema = _schema()
    components = schema["components"]["schemas"]
    found = {}
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method not in {"post", "put", "patch", "delete"}:
                continue
            accepted = set()
            for content in operation.get("requestBody", {}).get("content", {}).values():
                ref = content.get("schema", {}).get("$ref")
                if ref:
                    accepted |= set(components[ref.rsplit("/", 1)[1]].get("properties", {}))
            found[operation["operationId"]] = (method.upper(), path, accepted)
    return found


WRITES = _write_operations()


def test_every_write_operation_has_a_case():
    assert set(WRITES) - set(CASES) - set(NOT_CLIENT_WRITES) == set()
    assert set(CASES) - set(WRITES) == set()


def _path(template: str, w: dict) -> str:
    return template.format(
        campaign=w["campaign"].pk,
        draft=w["draft"].pk,
        paused=w["paused"].pk,
        delivery=w["delivery"].pk,
        order=w["order"].booking_id,
        held=w["held"].booking_id,
        upload=w["upload_id"],
        code=w["voucher"].code,
        flagged=w["flagged"].code,
        webhook=w["webhook_id"],
        ticket=w["ticket"].pk,
    )


def _injected_anywhere() -> list[str]:
    """Where an injected value was stored (and how many rows programme B has)."""
    found = []
    models = [Campaign, Voucher, Order, Delivery, Upload, Member, WebhookEndpoint, Job]
    models += [Account, LedgerTransaction, Ticket, TicketMessage]
    for model in models:
        names = {f.name for f in model._meta.concrete_fields}
        if model.objects.filter(pk=SENTINEL).exists():
            found.append(f"{model.__name__}.pk")
        if "created_at" in names and model.objects.filter(created_at__year=2000).exists():
            found.append(f"{model.__name__}.created_at")
        if "updated_at" in names and model.objects.filter(updated_at__year=2000).exists():
            found.append(f"{model.__name__}.updated_at")
        if "programme" in names:
            found.append(
                f"{model.__name__}.beta={model.objects.filter(programme__slug='beta').count()}"
            )
        if "is_test" in names and model.objects.filter(is_test=True).exists():
            found.append(f"{model.__name__}.is_test")
    if Campaign.objects.filter(issued_count=SENTINEL).exists():
        found.append("Campaign.issued_count")
    if Campaign.objects.filter(issued_value=SENTINEL).exists():
        found.append("Campaign.issued_value")
    if Account.objects.filter(balance=SENTINEL).exists():
        found.append("Account.balance")
    if Order.objects.filter(booking_id="PLM-HACK-0000").exists():
        found.append("Order.booking_id")
    return found


def _echoed(value, injected: dict) -> bool:
    text = json.dumps(value)
    return any(
        marker in text
        for marker in (str(SENTINEL), "PLM-HACK-0000", "2000-01-01", "injected-secret")
        if any(marker in json.dumps(v) for v in injected.values())
    )


@pytest.mark.parametrize("operation", sorted(CASES))
def test_read_only_fields_are_refused_or_ignored_and_never_stored(world, operation):
    # given
    method, _, accepted = WRITES[operation]
    template, body = CASES[operation]
    injected = {k: v for k, v in INJECT.items() if k not in accepted}
    client = world["principals"]["client_a"]
    path = _path(template, world)
    before = state()
    stored_before = _injected_anywhere()
    assert Programme.objects.filter(slug="beta").exists()
    # when
    if operation == "campaigns_codes_import":
        name, raw = body(world)["file"]
        data = {"file": SimpleUploadedFile(name, raw, "text/csv"), **_form(injected)}
        response = client.post(path, data, format="multipart")
    else:
        response = client.generic(
            method,
            path,
            json.dumps({**body(world), **injected}),
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex,
        )
    # then
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        assert state() == before, response.content
        fields = response.json()["error"]["fields"]
        assert set(injected) <= set(fields), response.content
    else:
        assert _injected_anywhere() == stored_before
        if response.content:
            assert not _echoed(response.json(), injected), response.content


def _form(injected: dict) -> dict:
    return {k: json.dumps(v) if isinstance(v, dict) else str(v) for k, v in injected.items()}
