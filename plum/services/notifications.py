"""Slack and Microsoft Teams channels of a programme, and the messages they receive.

A channel is an incoming-webhook URL (a secret: stored encrypted, shown masked) with the event
types it wants. Each event becomes one readable message — Slack Block Kit, or a Teams Adaptive
Card — with a link back to the admin page (PLUM_BASE_URL). Bulk operations emit one event per
operation, so a channel gets one summary message, never one per code."""

import json

from django.conf import settings
from django.db import transaction

from plum import event_catalog, secretbox
from plum.actors import Actor
from plum.errors import InvalidInputError
from plum.models import Delivery, NotificationChannel, Programme
from plum.services.audit import audit_log
from plum.services.webhooks import validate_event_types, validate_target_url

CHANNEL_FIELDS = ["name", "url", "event_types", "is_active"]
MAX_FACTS = 10


def notification_channel_create(
    *,
    programme: Programme,
    name: str,
    kind: str,
    url: str,
    event_types: list[str],
    actor: Actor,
) -> NotificationChannel:
    if kind not in NotificationChannel.Kind.values:
        raise InvalidInputError(fields={"kind": ["Choose slack or teams."]})
    if not name.strip():
        raise InvalidInputError(fields={"name": ["Name the channel."]})
    url = validate_target_url(url)
    event_types = validate_event_types(event_types)
    with transaction.atomic():
        channel = NotificationChannel.objects.create(
            programme=programme,
            name=name.strip()[:200],
            kind=kind,
            url_encrypted=secretbox.encrypt(url),
            url_hint=secretbox.mask_url(url),
            event_types=event_types,
        )
        audit_log(
            actor=actor,
            action="notification.channel.create",
            obj=channel,
            changes={
                "name": [None, channel.name],
                "kind": [None, kind],
                "url": [None, channel.url_hint],
                "event_types": [None, event_types],
            },
        )
    return channel


def notification_channel_update(
    *, channel: NotificationChannel, actor: Actor, data: dict
) -> NotificationChannel:
    """Change name, URL, event types or the active flag; the URL is audited masked.
    Re-activating clears the run of failures that disabled it."""
    unknown = sorted(set(data) - set(CHANNEL_FIELDS))
    if unknown:
        raise InvalidInputError(fields={name: ["Unknown field."] for name in unknown})
    with transaction.atomic():
        current = NotificationChannel.objects.select_for_update().get(pk=channel.pk)
        changes: dict = {}
        fields: list[str] = []
        if "url" in data and data["url"]:
            url = validate_target_url(data["url"])
            if url != secretbox.decrypt(current.url_encrypted):
                hint = secretbox.mask_url(url)
                changes["url"] = [current.url_hint, hint]
                current.url_encrypted = secretbox.encrypt(url)
                current.url_hint = hint
                fields += ["url_encrypted", "url_hint"]
        if "event_types" in data:
            data = {**data, "event_types": validate_event_types(data["event_types"])}
        if "name" in data:
            if not str(data["name"]).strip():
                raise InvalidInputError(fields={"name": ["Name the channel."]})
            data = {**data, "name": str(data["name"]).strip()[:200]}
        for name in ("name", "event_types", "is_active"):
            if name in data and getattr(current, name) != data[name]:
                changes[name] = [getattr(current, name), data[name]]
                setattr(current, name, data[name])
                fields.append(name)
        if changes.get("is_active") == [False, True]:
            current.consecutive_failures = 0
            current.disabled_at = None
            current.disabled_reason = ""
            fields += ["consecutive_failures", "disabled_at", "disabled_reason"]
        if fields:
            current.save(update_fields=fields)
            audit_log(
                actor=actor, action="notification.channel.update", obj=current, changes=changes
            )
    return current


# --- formatting -----------------------------------------------------------------------------


class _Blank(dict):
    def __missing__(self, key):
        return "?"


def _text(value) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "–" if value in (None, "") else str(value)


def describe(*, event_type: str, data: dict, programme: Programme) -> dict:
    """Title, one-line summary, facts and admin link of an event, from the catalogue."""
    entry = event_catalog.CATALOGUE.get(event_type)
    values = _Blank({key: _text(value) for key, value in data.items()})
    title = entry.title if entry else event_type
    summary = entry.summary.format_map(values) if entry else ""
    path = f"/admin/plum/programme/{programme.pk}/change/"
    if entry and entry.link:
        formatted = entry.link.format_map(values)
        if "?" not in formatted.split("/"):
            path = formatted
    if data.get("is_test"):
        title = f"[TEST] {title}"
    facts = [
        (key.replace("_", " "), _text(value))
        for key, value in data.items()
        if not isinstance(value, dict)
    ][:MAX_FACTS]
    return {
        "title": title,
        "summary": summary,
        "facts": facts,
        "link": settings.PLUM_BASE_URL + path,
        "context": f"{programme.name} · {event_type}",
    }


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(described: dict) -> dict:
    """Slack Block Kit: header, summary, up to 10 fields, a button to the admin, context."""
    esc = _slack_escape
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": described["title"][:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": esc(described["summary"])}},
    ]
    if described["facts"]:
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{esc(name)}*\n{esc(value)}"}
                    for name, value in described["facts"]
                ],
            }
        )
    blocks += [
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Open in Plum"},
                    "url": described["link"],
                }
            ],
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": esc(described["context"])}]},
    ]
    return {"text": f"{described['title']}: {described['summary']}", "blocks": blocks}


def teams_message(described: dict) -> dict:
    """A Teams message carrying one Adaptive Card (accepted by Teams incoming webhooks and
    Workflows webhooks)."""
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": described["title"],
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
            },
            {"type": "TextBlock", "text": described["summary"], "wrap": True},
            {
                "type": "FactSet",
                "facts": [{"title": name, "value": value} for name, value in described["facts"]],
            },
            {
                "type": "TextBlock",
                "text": described["context"],
                "isSubtle": True,
                "size": "Small",
                "wrap": True,
            },
        ],
        "actions": [{"type": "Action.OpenUrl", "title": "Open in Plum", "url": described["link"]}],
    }
    return {
        "type": "message",
        "summary": f"{described['title']}: {described['summary']}"[:200],
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def channel_request(delivery: Delivery) -> tuple[str, bytes, dict]:
    channel = delivery.channel
    described = describe(
        event_type=delivery.event_type,
        data=delivery.event.payload.get("data", {}),
        programme=delivery.programme,
    )
    message = slack_message(described) if channel.kind == "slack" else teams_message(described)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Plum-Notifications/1.0",
        "Plum-Event-Id": str(delivery.event_id),
    }
    body = json.dumps(message, separators=(",", ":")).encode()
    return secretbox.decrypt(channel.url_encrypted), body, headers
