"""BOLA matrix for the Django admin, generated from the admin site's registry.

Every registered model admin is either programme-scoped, and then checked here, or named in
GLOBAL with the reason it is not. For each scoped admin, a staff user holding every programme
role (manager, finance, support agent) on programme B asks for programme A's object through
every object URL the admin has (change, history, delete and each custom `<id>` view, GET and
POST): the answer is "not found" (404, or the admin's own redirect to the index for a missing
object), never the object, never 403, and nothing changes. The same user holding those roles
on programme A gets the page (so "not found" comes from scoping, not from a wrong URL), and A's
object is not in B's changelist. A new model admin, or a new `<id>` URL on one, fails
`test_every_admin_is_classified` / `test_every_object_url_has_a_case` until it is covered."""

import re
from datetime import timedelta

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import URLPattern, reverse
from django.utils import timezone

from orders.models import Payout, WorkflowRule
from orders.services import order_issue, payouts_close, rule_save
from plum import roles
from plum.actors import SYSTEM
from plum.models import ApiClient, AuditEvent, OutboxMessage, Programme, WebhookEndpoint
from plum.models import Delivery as EventDelivery
from plum.services.notifications import notification_channel_create
from plum.services.programmes import role_grant
from support.services import sla_policy_set
from tests.orders.payout_builders import after, make_merchant, merchant_campaign, weekly_period
from tests.security.conftest import state
from wallets.services import points_policy_set

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_cache")]

ROLES = (roles.PROGRAMME_MANAGER, roles.FINANCE, roles.SUPPORT_AGENT)

# Registered admins that are not programme-scoped, and why.
GLOBAL = {
    "auth.user": "sign-in accounts: platform admins only (no programme role grants auth perms)",
    "auth.group": "permission groups: platform admins only",
    "campaigns.merchant": "the merchant catalogue is shared by every programme",
    "campaigns.reward": "the reward catalogue is shared by every programme",
}

# Scoped admins that no programme role opens (only platform admins, who see every programme):
# programme staff get 403 (the kind of thing is refused) or "not found" on every URL of them.
PLATFORM_ONLY = {
    "plum.apiclient": "API keys are issued by platform admins",
    "plum.outboxmessage": "the outbox is an operations view for platform admins",
}

# The URLs Django's ModelAdmin gives every admin, and each custom `<id>` URL (by its pattern
# suffix) with the method that does something there.
STANDARD = {
    "<path:object_id>/",
    "<path:object_id>/change/",
    "<path:object_id>/history/",
    "<path:object_id>/delete/",
}
CUSTOM = {
    ("campaigns.campaign", "<path:object_id>/generate-codes/"): ("GET", "POST"),
    ("campaigns.campaign", "<path:object_id>/import-codes/"): ("GET", "POST"),
    ("campaigns.voucher", "<path:object_id>/reveal/"): ("GET", "POST"),
    ("wallets.account", "<path:object_id>/adjust/"): ("GET", "POST"),
    ("wallets.ledgertransaction", "member/<int:member_id>/audit/"): ("GET",),
    ("orders.delivery", "<int:delivery_id>/resend/"): ("GET", "POST"),
    ("orders.payout", "<path:object_id>/statement.csv"): ("GET",),
    ("orders.upload", "<int:upload_id>/errors/"): ("GET",),
    ("orders.upload", "<int:upload_id>/confirm/"): ("GET", "POST"),
}
# The custom URL whose id is not the admin's own model's.
OTHER_OBJECT = {("wallets.ledgertransaction", "member/<int:member_id>/audit/"): "plum.member"}


def _label(model) -> str:
    return model._meta.label_lower


def _object_urls(model_admin) -> list[str]:
    return [
        str(p.pattern)
        for p in model_admin.get_urls()
        if isinstance(p, URLPattern) and "<" in str(p.pattern)
    ]


def _scoped_admins():
    return {
        _label(model): model_admin
        for model, model_admin in admin.site._registry.items()
        if _label(model) not in GLOBAL
    }


def test_every_admin_is_classified():
    """Scoped admins are the ones this matrix checks; everything else says why it is global."""
    registered = {_label(model) for model in admin.site._registry}
    assert set(GLOBAL) <= registered, set(GLOBAL) - registered
    for label, model_admin in _scoped_admins().items():
        # A scoped admin narrows its queryset by programme; this is asserted for real below.
        assert type(model_admin).get_queryset is not admin.ModelAdmin.get_queryset, label


def test_every_object_url_has_a_case():
    missing = [
        (label, url)
        for label, model_admin in _scoped_admins().items()
        for url in _object_urls(model_admin)
        if url not in STANDARD and (label, url) not in CUSTOM
    ]
    assert not missing, f"admin URLs with an id but no BOLA case: {missing}"


def _staff(make_user, programme) -> Client:
    user = make_user(ROLES[0], programme)
    for role in ROLES[1:]:
        role_grant(user=user, role=role, programme=programme, actor=SYSTEM)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_world(world, programme, other_programme, make_user, settings):
    """`world` plus what it lacks for the admin, all in programme A: a closed payout, a
    workflow rule, an SLA policy, a points policy, a notification channel and an event
    delivery to the world's webhook."""
    merchant = make_merchant(commission="2.50", name="Merchant A")
    campaign = merchant_campaign(programme, merchant)
    order_issue(campaign=campaign, member=world["member"], source="api", actor=SYSTEM)
    _, end = weekly_period()
    payouts_close(period_end=end, now=after(end))
    assert Payout.objects.filter(programme=programme).exists()
    rule_save(
        rule=WorkflowRule(
            programme=programme, name="Big spend", event_type="purchase", action="points", points=5
        ),
        conditions=[{"field": "spend", "operator": ">=", "value_type": "number", "value": "1"}],
        actor=SYSTEM,
    )
    sla_policy_set(
        programme=programme,
        priority="normal",
        first_response_hours=4,
        resolution_hours=24,
        actor=SYSTEM,
    )
    points_policy_set(programme=programme, expiry_months=12, actor=SYSTEM)
    notification_channel_create(
        programme=programme,
        name="Ops room",
        kind="slack",
        url="https://chat.example.com/hook/a",
        event_types=["*"],
        actor=SYSTEM,
    )
    EventDelivery.objects.create(
        event=OutboxMessage.objects.filter(programme=programme).order_by("created_at").first(),
        event_type="order.created",
        programme=programme,
        endpoint=WebhookEndpoint.objects.get(pk=world["webhook_id"]),
        expires_at=timezone.now() + timedelta(days=1),
    )
    return {
        **world,
        "owner": _staff(make_user, programme),
        "intruder": _staff(make_user, other_programme),
    }


def _object_of_a(label: str, programme: Programme):
    model = next(m for m in admin.site._registry if _label(m) == label)
    if model is Programme:
        return programme
    if model is ApiClient:
        return ApiClient.objects.filter(programmes=programme).order_by("pk").first()
    if model is WebhookEndpoint:
        return WebhookEndpoint.objects.filter(client__programmes=programme).order_by("pk").first()
    if model is AuditEvent:
        return AuditEvent.objects.filter(programme_id=programme.pk).order_by("pk").first()
    return model._default_manager.filter(programme=programme).order_by("pk").first()


def _cases():
    cases = []
    for label, model_admin in sorted(_scoped_admins().items()):
        app, model = label.split(".")
        for url in _object_urls(model_admin):
            if url in STANDARD:
                name = {
                    "<path:object_id>/": None,  # Django's redirect to the change page
                    "<path:object_id>/change/": "change",
                    "<path:object_id>/history/": "history",
                    "<path:object_id>/delete/": "delete",
                }[url]
                if name:
                    cases += [
                        (label, url, f"admin:{app}_{model}_{name}", m) for m in ("GET", "POST")
                    ]
            else:
                for method in CUSTOM[(label, url)]:
                    cases.append((label, url, None, method))
    return cases


def _url_for(label: str, pattern: str, url_name: str | None, obj) -> str:
    if url_name:
        return reverse(url_name, args=[obj.pk])
    app, model = label.split(".")
    base = reverse(f"admin:{app}_{model}_changelist")
    return base + re.sub(r"<[^>]+>", str(obj.pk), pattern)


def _not_found(response) -> bool:
    if response.status_code == 404:
        return True
    # ModelAdmin answers a missing object with a redirect to the admin index and a message.
    return response.status_code == 302 and response["Location"] == reverse("admin:index")


@pytest.mark.parametrize("label", sorted(_scoped_admins()))
def test_another_programmes_object_is_not_found_and_unchanged(admin_world, programme, label):
    """Every object URL of the admin, GET and POST, as B's staff: not found, nothing changed;
    as A's staff (GET): found. Failures are collected so one run names them all."""
    wrong = []
    platform_only = label in PLATFORM_ONLY
    for _, pattern, url_name, method in [c for c in _cases() if c[0] == label]:
        target_label = OTHER_OBJECT.get((label, pattern), label)
        obj = _object_of_a(target_label, programme)
        assert obj is not None, f"the security world has no {target_label} of programme A"
        url = _url_for(label, pattern, url_name, obj)
        before = state()
        intruder = admin_world["intruder"]
        response = intruder.get(url) if method == "GET" else intruder.post(url, {"reason": "x"})
        if platform_only:
            if response.status_code != 403 and not _not_found(response):
                wrong.append(("intruder", method, url, response.status_code))
        elif not _not_found(response):
            wrong.append(("intruder", method, url, response.status_code, response.get("Location")))
        if state() != before:
            wrong.append(("intruder changed something", method, url))
        if method == "GET" and not platform_only:
            owner = admin_world["owner"].get(url)
            if _not_found(owner):
                wrong.append(("owner", method, url, owner.status_code, owner.get("Location")))
    assert not wrong, wrong


@pytest.mark.parametrize("label", sorted(_scoped_admins()))
def test_another_programmes_object_is_not_in_the_changelist(admin_world, programme, label):
    obj = _object_of_a(label, programme)
    assert obj is not None, f"the security world has no {label} of programme A"
    app, model = label.split(".")
    url = reverse(f"admin:{app}_{model}_changelist")
    for who, expected in (("intruder", False), ("owner", True)):
        response = admin_world[who].get(url)
        if label in PLATFORM_ONLY:
            assert response.status_code == 403, (who, url, response.status_code)
            continue
        assert response.status_code == 200, (who, url, response.status_code)
        listed = response.context["cl"].queryset.filter(pk=obj.pk).exists()
        assert listed is expected, (who, label)
