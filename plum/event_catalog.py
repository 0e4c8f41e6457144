"""Every domain event type Plum emits, with the JSON schema of its `data`.

This module is pure data (no Django import): settings read it to put the catalogue into the
OpenAPI description, `event_emit` refuses a type that is not here (in DEBUG and tests), and the
Slack / Teams formatter takes each event's title, summary and admin link from it.

An event's envelope, as webhooks receive it, is
`{"id", "type", "occurred_at", "programme": {"id", "slug"}, "data": {...}}`; the schemas below
describe `data`. `status` is "emitted" when code in this repository emits the event today and
"planned" when its feature is not built yet (its schema is the intended one and is not enforced).
Bulk operations emit one event per operation (per programme), never one per code."""

from dataclasses import dataclass, field

INT = {"type": "integer"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
MONEY = {"type": "string", "description": 'decimal amount, e.g. "500.00"'}
TIME = {"type": "string", "format": "date-time"}
INTS = {"type": "array", "items": INT}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}


@dataclass(frozen=True)
class EventType:
    name: str
    description: str
    properties: dict
    required: tuple[str, ...]
    title: str
    summary: str  # str.format_map over data; unknown keys render as "?"
    link: str = ""  # admin path, formatted like `summary`
    status: str = "emitted"
    example: dict = field(default_factory=dict)

    @property
    def schema(self) -> dict:
        return {
            "type": "object",
            "properties": self.properties,
            "required": list(self.required),
        }


ORDER_PROPERTIES = {
    "booking_id": STR,
    "order_id": INT,
    "campaign_id": INT,
    "member_external_id": STR,
    "value": MONEY,
    "currency": STR,
    "source": STR,
    "status": STR,
    "approval_state": STR,
    "is_test": BOOL,
    "reference": STR,
}
ORDER_REQUIRED = ("booking_id", "order_id", "campaign_id", "value", "currency", "status")
ORDER_LINK = "/admin/orders/order/{order_id}/change/"
CAMPAIGN_LINK = "/admin/campaigns/campaign/{campaign_id}/change/"
VOUCHER_LINK = "/admin/campaigns/voucher/{voucher_id}/change/"
VOUCHERS_LINK = "/admin/campaigns/voucher/"
TICKET_LINK = "/admin/support/ticket/{ticket_id}/change/"
NULLABLE_STR = {"type": ["string", "null"]}
# The common part of the ticket.* events after ticket.opened (support.services._event_data).
TICKET_PROPERTIES = {
    "ticket_id": INT,
    "status": STR,
    "priority": STR,
    "member_external_id": STR,
    "booking_id": NULLABLE_STR,
    "assignee": {"type": ["string", "null"], "description": "the agent's username"},
}
TICKET_REQUIRED = ("ticket_id", "status", "priority")


def _campaign_status(status: str, verb: str) -> EventType:
    return EventType(
        name=f"campaign.{status}",
        description=f"A campaign was {verb}.",
        properties={"campaign_id": INT, "status": STR},
        required=("campaign_id", "status"),
        title=f"Campaign {verb}",
        summary=f"Campaign #{{campaign_id}} was {verb}.",
        link=CAMPAIGN_LINK,
    )


_TYPES = [
    # --- vouchers -------------------------------------------------------------------------
    EventType(
        name="voucher.generated",
        description="A code generation job finished: one event per job, not per code.",
        properties={"campaign_id": INT, "count": INT, "is_test": BOOL, "job_id": STR},
        required=("campaign_id", "count", "job_id"),
        title="Codes generated",
        summary="{count} codes were generated for campaign #{campaign_id}.",
        link=CAMPAIGN_LINK,
        example={"campaign_id": 12, "count": 100000, "is_test": False, "job_id": "…"},
    ),
    EventType(
        name="voucher.imported",
        description="Codes were imported into a campaign's pool: one event per import.",
        properties={"campaign_id": INT, "count": INT, "is_test": BOOL},
        required=("campaign_id", "count"),
        title="Codes imported",
        summary="{count} codes were imported into campaign #{campaign_id}.",
        link=CAMPAIGN_LINK,
    ),
    EventType(
        name="voucher.extended",
        description="Vouchers' expiry was extended: one event per operation and programme.",
        properties={"count": INT, "campaign_ids": INTS, "expires_at": TIME, "job_id": STR},
        required=("count", "campaign_ids", "expires_at"),
        title="Vouchers extended",
        summary="{count} vouchers now expire at {expires_at}.",
        link=VOUCHERS_LINK,
    ),
    EventType(
        name="voucher.recovered",
        description="Unused vouchers were recovered (to the pool or retired): one event per "
        "operation and programme.",
        properties={"count": INT, "campaign_ids": INTS, "to_pool": BOOL},
        required=("count", "campaign_ids", "to_pool"),
        title="Vouchers recovered",
        summary="{count} vouchers were recovered (back to the pool: {to_pool}).",
        link=VOUCHERS_LINK,
    ),
    EventType(
        name="voucher.redeemed",
        description="A voucher was redeemed, fully or partly.",
        properties={
            "voucher_id": INT,
            "campaign_id": INT,
            "amount": MONEY,
            "balance": MONEY,
            "reference": STR,
        },
        required=("voucher_id", "campaign_id", "amount", "balance", "reference"),
        title="Voucher redeemed",
        summary="Voucher #{voucher_id} was redeemed for {amount} (balance {balance}).",
        link=VOUCHER_LINK,
    ),
    EventType(
        name="voucher.flagged",
        description="A voucher was flagged (suspected fraud or error); it cannot be redeemed.",
        properties={"voucher_id": INT, "campaign_id": INT, "reason": STR},
        required=("voucher_id", "campaign_id"),
        title="Voucher flagged",
        summary="Voucher #{voucher_id} was flagged: {reason}",
        link=VOUCHER_LINK,
    ),
    EventType(
        name="voucher.unflagged",
        description="A flagged voucher was released back to its previous state.",
        properties={"voucher_id": INT, "campaign_id": INT, "status": STR},
        required=("voucher_id", "campaign_id", "status"),
        title="Voucher unflagged",
        summary="Voucher #{voucher_id} was unflagged (now {status}).",
        link=VOUCHER_LINK,
    ),
    # --- campaigns ------------------------------------------------------------------------
    EventType(
        name="campaign.created",
        description="A campaign was created.",
        properties={"campaign_id": INT, "name": STR},
        required=("campaign_id", "name"),
        title="Campaign created",
        summary="Campaign {name} (#{campaign_id}) was created.",
        link=CAMPAIGN_LINK,
    ),
    EventType(
        name="campaign.updated",
        description="A campaign's governance changed; `fields` names what changed.",
        properties={"campaign_id": INT, "fields": {"type": "array", "items": STR}},
        required=("campaign_id", "fields"),
        title="Campaign updated",
        summary="Campaign #{campaign_id} was updated: {fields}.",
        link=CAMPAIGN_LINK,
    ),
    _campaign_status("active", "activated"),
    _campaign_status("paused", "paused"),
    _campaign_status("resumed", "resumed"),
    _campaign_status("ended", "ended"),
    EventType(
        name="campaign.budget_threshold",
        description="A campaign used 80% or 100% of its budget (`kind` budget) or of its "
        "maximum number of rewards (`kind` count). Each (threshold, kind) fires once per "
        "campaign, even if counts are given back and used again.",
        properties={
            "campaign_id": INT,
            "kind": {"type": "string", "enum": ["budget", "count"]},
            "threshold": {"type": "integer", "enum": [80, 100]},
            "used": STR,
            "limit": STR,
        },
        required=("campaign_id", "kind", "threshold", "used", "limit"),
        title="Campaign limit threshold reached",
        summary="Campaign #{campaign_id} has used {threshold}% of its {kind} ({used} of {limit}).",
        link=CAMPAIGN_LINK,
    ),
    # --- orders ---------------------------------------------------------------------------
    EventType(
        name="order.created",
        description="An order was created (completed at once, or waiting for approval).",
        properties=ORDER_PROPERTIES,
        required=ORDER_REQUIRED,
        title="Order created",
        summary="Order {booking_id} for {value} {currency} was created ({status}).",
        link=ORDER_LINK,
    ),
    EventType(
        name="order.completed",
        description="An order was fulfilled: its voucher was issued.",
        properties={**ORDER_PROPERTIES, "voucher_id": INT},
        required=(*ORDER_REQUIRED, "voucher_id"),
        title="Order completed",
        summary="Order {booking_id} for {value} {currency} was completed.",
        link=ORDER_LINK,
    ),
    EventType(
        name="order.pending_approval",
        description="An order waits for a person's approval (manual-approval campaign).",
        properties=ORDER_PROPERTIES,
        required=ORDER_REQUIRED,
        title="Order waiting for approval",
        summary="Order {booking_id} for {value} {currency} waits for approval.",
        link=ORDER_LINK,
    ),
    EventType(
        name="order.cancelled",
        description="An order was cancelled, or rejected (`rejected` true) while pending.",
        properties={**ORDER_PROPERTIES, "reason": STR, "rejected": BOOL},
        required=(*ORDER_REQUIRED, "rejected"),
        title="Order cancelled",
        summary="Order {booking_id} was cancelled: {reason}",
        link=ORDER_LINK,
    ),
    # --- deliveries, uploads, events, tickets, payouts ------------------------------------
    EventType(
        name="delivery.failed",
        description="A reward message (e-mail, SMS, WhatsApp) could not be delivered and "
        "needs a person to correct the address and resend.",
        properties={
            "delivery_id": INT,
            "order_id": INT,
            "booking_id": STR,
            "campaign_id": INT,
            "channel": STR,
            "reason": STR,
            "detail": STR,
            "is_resend": BOOL,
            "is_test": BOOL,
        },
        required=("delivery_id", "order_id", "booking_id", "channel", "reason"),
        title="Delivery failed",
        summary="Delivery of order {booking_id} by {channel} failed: {reason}",
        link=ORDER_LINK,
    ),
    EventType(
        name="upload.completed",
        description="A recipient upload finished dispatching: one event per upload.",
        properties={
            "upload_id": INT,
            "campaign_id": INT,
            "status": STR,
            "rows": INT,
            "succeeded": INT,
            "failed": INT,
            "is_test": BOOL,
        },
        required=("upload_id", "campaign_id", "status", "succeeded", "failed"),
        title="Upload completed",
        summary="Upload #{upload_id} finished: {succeeded} issued, {failed} refused.",
        link="/admin/orders/upload/{upload_id}/change/",
    ),
    EventType(
        name="event.processed",
        description="An external event (POST /api/v1/events) was stored and the workflow "
        "rules ran on it: the result and each rule's outcome.",
        properties={
            "event": INT,
            "event_id": STR,
            "type": STR,
            "member_external_id": STR,
            "is_test": BOOL,
            "result": STR,
            "outcomes": {"type": "array", "items": {"type": "object"}},
        },
        required=("event", "event_id", "type", "result"),
        title="Event processed",
        summary="Event {event_id} ({type}) for {member_external_id}: {result}.",
        link="/admin/orders/event/{event}/change/",
    ),
    EventType(
        name="ticket.opened",
        description="A complaint ticket was opened (storefront, agent or API).",
        properties={
            "ticket_id": INT,
            "category": STR,
            "priority": STR,
            "member_external_id": STR,
            "booking_id": {"type": ["string", "null"]},
        },
        required=("ticket_id", "category", "priority"),
        title="Ticket opened",
        summary="Ticket #{ticket_id} ({category}, {priority}) opened for {member_external_id}.",
        link=TICKET_LINK,
    ),
    EventType(
        name="ticket.sla_breached",
        description="A running support ticket passed a due time (first response or resolution) "
        "of its programme's SLA policy. Sent once per ticket and kind of breach; the ticket's "
        "priority was raised one step (capped at urgent).",
        properties={
            **TICKET_PROPERTIES,
            "breach": {"type": "string", "enum": ["first_response", "resolution"]},
            "due_at": TIME,
            "previous_priority": STR,
        },
        required=(*TICKET_REQUIRED, "breach", "due_at", "previous_priority"),
        title="Ticket SLA breached",
        summary="Ticket #{ticket_id} breached its {breach} SLA (due {due_at}); "
        "priority now {priority}.",
        link=TICKET_LINK,
    ),
    EventType(
        name="ticket.status_changed",
        description="A support ticket moved in its lifecycle (open, in progress, awaiting "
        "member, resolved, closed; reopened).",
        properties={**TICKET_PROPERTIES, "previous_status": STR},
        required=(*TICKET_REQUIRED, "previous_status"),
        title="Ticket status changed",
        summary="Ticket #{ticket_id} went from {previous_status} to {status}.",
        link=TICKET_LINK,
    ),
    EventType(
        name="ticket.assigned",
        description="A support ticket was assigned to an agent (or unassigned: assignee null).",
        properties={**TICKET_PROPERTIES, "previous_assignee": NULLABLE_STR},
        required=TICKET_REQUIRED,
        title="Ticket assigned",
        summary="Ticket #{ticket_id} is now assigned to {assignee}.",
        link=TICKET_LINK,
    ),
    EventType(
        name="ticket.replied",
        description="A message was added to a ticket: an agent's reply to the member (kind "
        "`reply`, also e-mailed to the member) or the member's reply (`member_reply`). "
        "Internal notes emit nothing.",
        properties={
            **TICKET_PROPERTIES,
            "message_id": INT,
            "kind": {"type": "string", "enum": ["reply", "member_reply"]},
        },
        required=(*TICKET_REQUIRED, "message_id", "kind"),
        title="Ticket reply",
        summary="Ticket #{ticket_id}: new {kind}.",
        link=TICKET_LINK,
    ),
    EventType(
        name="payout.created",
        description="A merchant payout statement was created for a period.",
        properties={"payout_id": INT, "merchant_id": INT, "amount": MONEY, "currency": STR},
        required=("payout_id",),
        title="Payout created",
        summary="Payout #{payout_id} of {amount} {currency} was created.",
        status="planned",
    ),
    # --- the notifications feature itself -------------------------------------------------
    EventType(
        name="webhook.endpoint_disabled",
        description="An outbound webhook endpoint was disabled automatically after a run of "
        "consecutive failed deliveries.",
        properties={"endpoint_id": INT, "url": STR, "failures": INT, "api_client": STR},
        required=("endpoint_id", "url", "failures"),
        title="Webhook endpoint disabled",
        summary="Webhook endpoint {url} was disabled after {failures} consecutive failures.",
        link="/admin/plum/webhookendpoint/{endpoint_id}/change/",
    ),
    EventType(
        name="notification.channel_disabled",
        description="A Slack or Teams channel was disabled automatically after a run of "
        "consecutive failed deliveries.",
        properties={"channel_id": INT, "name": STR, "kind": STR, "failures": INT},
        required=("channel_id", "name", "kind", "failures"),
        title="Notification channel disabled",
        summary="The {kind} channel {name} was disabled after {failures} consecutive failures.",
        link="/admin/plum/notificationchannel/{channel_id}/change/",
    ),
]

CATALOGUE: dict[str, EventType] = {event.name: event for event in _TYPES}
EVENT_TYPE_NAMES: list[str] = sorted(CATALOGUE)
ALL_EVENTS = "*"


def is_known(event_type: str) -> bool:
    return event_type in CATALOGUE


def missing_fields(event_type: str, data: dict) -> list[str]:
    """Required fields of an emitted event's schema that `data` lacks (planned events are not
    checked: their features are built elsewhere)."""
    event = CATALOGUE[event_type]
    if event.status != "emitted":
        return []
    return [name for name in event.required if name not in data]


def catalogue_markdown() -> str:
    """The catalogue as Markdown, for the OpenAPI description."""
    lines = [
        "## Webhook and notification events",
        "",
        "Each delivery is one JSON envelope `{id, type, occurred_at, programme, data}`, signed "
        '`Plum-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, t + "." + body)>`; '
        "`Plum-Event-Id` is stable across retries and replays (de-duplicate on it).",
        "",
        "| type | data (required fields in bold) | meaning |",
        "| --- | --- | --- |",
    ]
    for name in EVENT_TYPE_NAMES:
        event = CATALOGUE[name]
        fields = ", ".join(
            f"**{key}**" if key in event.required else key for key in event.properties
        )
        planned = " (planned)" if event.status != "emitted" else ""
        lines.append(f"| `{name}`{planned} | {fields} | {event.description} |")
    return "\n".join(lines)
