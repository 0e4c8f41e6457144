"""Workflow rules: save them (validated, audited), and ingest events through them.

Invariants:
- one event per (API client, event id), forever: a unique constraint decides. A repeated id
  (sequential, or racing in parallel) gets the stored event and its outcomes, and changes
  nothing: not the member, not the campaign, not the wallet. The 24-hour Idempotency-Key
  store plays no part in this, so a replay a month later is answered the same way;
- one transaction per event: the member upsert, the event row, one outcome row per rule
  considered, the orders and points the rules caused, their audit events and outbox messages
  commit together or not at all. A governance refusal of one action (campaign_exhausted, ...)
  rolls back that action's savepoint only and is recorded with its code; anything unexpected
  rolls the whole event back (nothing is stored, and the caller may retry);
- a rule's conditions are evaluated on the event's data alone; a missing field or a value of
  another type is "not matched", with the reason recorded, never an error;
- points are awarded through `wallets.services.points_earn` with the key
  `event:<event pk>:rule:<rule pk>`, so one event earns once per rule.

Lock order inside an event's transaction: the member row (upsert), the event row (unique
key), then the campaigns' counters in campaign id order, then the ledger accounts. Conditions
are all evaluated before any action runs, and actions run in that lock order (reward actions
by campaign id, then points), whatever the rules' priorities — so two events whose rules
touch the same campaigns and wallets in different priority orders cannot deadlock. Outcome
rows keep the priority order."""

import json
import operator as op
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from orders.errors import RecipientInvalidError
from orders.models import Event, EventRuleOutcome, Order, RuleCondition, WorkflowRule
from orders.models.rules import Operator, ValueType, parse_condition_value
from orders.services.issuance import _issue, recipient_upsert
from plum.actors import Actor
from plum.errors import InvalidInputError, PlumError
from plum.models import ApiClient, Programme
from plum.services.audit import audit_log
from plum.services.events import event_emit
from wallets.errors import PointsTestModeError
from wallets.services import points_earn

Outcome = EventRuleOutcome.Outcome
ReasonCode = EventRuleOutcome.ReasonCode
RULE_FIELDS = [
    "programme",
    "name",
    "event_type",
    "is_active",
    "priority",
    "stop_after",
    "action",
    "campaign",
    "points",
    "points_reason",
    "description",
]
CONDITION_FIELDS = ["field", "operator", "value_type", "value"]
MAX_DETAIL = 500


# --- conditions -------------------------------------------------------------------------------


_MISMATCH = object()
_COMPARE = {
    Operator.EQ: op.eq,
    Operator.NE: op.ne,
    Operator.GT: op.gt,
    Operator.GE: op.ge,
    Operator.LT: op.lt,
    Operator.LE: op.le,
}


def _lookup(data, path: str):
    """(present, value) of a dotted path through nested objects."""
    current = data
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            return False, None
        current = current[part]
    return True, current


def _typed(value_type: str, value):
    """The event's value as the condition compares it, or _MISMATCH. JSON numbers only for
    numbers (never booleans, never numeric strings): a type mismatch is a non-match."""
    if value_type == ValueType.NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _MISMATCH
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        return number if number.is_finite() else _MISMATCH
    if value_type == ValueType.STRING:
        return value if isinstance(value, str) else _MISMATCH
    return value if isinstance(value, bool) else _MISMATCH


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _show(value) -> str:
    shown = json.dumps(value, default=str, ensure_ascii=False)
    return shown if len(shown) <= 80 else f"{shown[:77]}..."


@dataclass(frozen=True)
class Check:
    holds: bool
    reason_code: str = ""
    detail: str = ""


def condition_check(condition: dict, data: dict) -> Check:
    """Does one condition ({field, operator, value_type, value}) hold on the event's data?"""
    name, operator, value_type = condition["field"], condition["operator"], condition["value_type"]
    try:
        expected = parse_condition_value(value_type, operator, condition["value"])
    except ValidationError:
        # Rules are validated on save; a row written around the service is not trusted.
        return Check(False, ReasonCode.TYPE_MISMATCH, f"The condition on {name} is invalid.")
    present, actual = _lookup(data, name)
    if not present:
        return Check(False, ReasonCode.MISSING_FIELD, f"{name} is missing from the event's data.")
    mismatch = Check(
        False,
        ReasonCode.TYPE_MISMATCH,
        f"{name} is {_kind(actual)} ({_show(actual)}); the condition compares {value_type}s.",
    )
    if operator == Operator.CONTAINS:
        if isinstance(actual, list):
            holds = any(_typed(value_type, item) == expected for item in actual)
        elif value_type == ValueType.STRING and isinstance(actual, str):
            holds = expected in actual
        else:
            return mismatch
    else:
        value = _typed(value_type, actual)
        if value is _MISMATCH:
            return mismatch
        holds = (
            value in expected if operator == Operator.IN else _COMPARE[operator](value, expected)
        )
    if holds:
        return Check(True)
    return Check(
        False,
        ReasonCode.CONDITION_FALSE,
        f"{name} is {_show(actual)}: not {operator} {condition['value']}.",
    )


@dataclass
class Match:
    matched: bool
    reason_code: str = ""
    failed_condition: int | None = None
    detail: str = ""
    conditions: list = field(default_factory=list)


def rule_match(rule: WorkflowRule, data: dict) -> Match:
    """All of the rule's conditions (ANDed, in order) on the event's data; the first that
    fails names the reason."""
    conditions = [c.snapshot() for c in rule.conditions.all()]
    for index, condition in enumerate(conditions):
        check = condition_check(condition, data)
        if not check.holds:
            return Match(False, check.reason_code, index, check.detail, conditions)
    return Match(True, conditions=conditions)


# --- rules --------------------------------------------------------------------------------


def _as_input_error(exc: ValidationError, prefix: str = "") -> InvalidInputError:
    fields = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
    return InvalidInputError(fields={f"{prefix}{name}": msgs for name, msgs in fields.items()})


def rule_validate(*, rule: WorkflowRule, conditions: list[dict]) -> list[RuleCondition]:
    """Raise InvalidInputError naming every wrong field (conditions as `conditions.<i>.<f>`);
    return the condition rows to write."""
    try:
        rule.full_clean(exclude=["programme"] if rule.programme_id else None)
    except ValidationError as exc:
        raise _as_input_error(exc) from exc
    rows, errors = [], {}
    for index, data in enumerate(conditions):
        row = RuleCondition(**{name: data.get(name, "") for name in CONDITION_FIELDS})
        try:
            row.full_clean(exclude=["rule"])
        except ValidationError as exc:
            errors.update(_as_input_error(exc, f"conditions.{index}.").fields)
        rows.append(row)
    if errors:
        raise InvalidInputError(fields=errors)
    return rows


def _rule_state(rule: WorkflowRule | None) -> dict:
    if rule is None:
        return {}
    state = {
        name: getattr(rule, f"{name}_id" if name in ("programme", "campaign") else name)
        for name in RULE_FIELDS
    }
    state["conditions"] = [c.snapshot() for c in rule.conditions.order_by("id")]
    return state


def rule_save(*, rule: WorkflowRule, conditions: list[dict], actor: Actor) -> WorkflowRule:
    """Create or update a rule and replace its conditions, validated (campaign of the same
    programme, action fields, operator fit for the value, numbers that parse) and audited
    with before/after, in one transaction."""
    rows = rule_validate(rule=rule, conditions=conditions)
    # Not durable: the admin saves inside its own transaction around the change form.
    with transaction.atomic():
        before = None
        if rule.pk is not None:
            before = WorkflowRule.objects.select_for_update(no_key=True).get(pk=rule.pk)
            if before.programme_id != rule.programme_id:
                raise InvalidInputError(fields={"programme": ["A rule cannot change programme."]})
        old = _rule_state(before)
        if before is None:
            rule.save(force_insert=True)
        else:
            rule.save(update_fields=[*RULE_FIELDS[1:], "updated_at"])
        RuleCondition.objects.filter(rule=rule).delete()
        for row in rows:
            row.rule = rule
        RuleCondition.objects.bulk_create(rows)
        new = _rule_state(rule)
        changes = {k: [old.get(k), v] for k, v in new.items() if old.get(k) != v}
        audit_log(
            actor=actor,
            action="rule.update" if before is not None else "rule.create",
            obj=rule,
            changes=changes,
        )
        return rule


# --- events -------------------------------------------------------------------------------


@dataclass
class _Plan:
    position: int
    rule: WorkflowRule
    match: Match
    outcome: EventRuleOutcome | None = None


def _refused(plan: _Plan, exc: PlumError) -> None:
    plan.outcome.outcome = Outcome.REFUSED
    plan.outcome.code = exc.code
    plan.outcome.detail = exc.message[:MAX_DETAIL]


def _reward(plan: _Plan, event: Event, actor: Actor) -> None:
    rule, outcome = plan.rule, plan.outcome
    try:
        # A savepoint: a refusal after a counter moved (member cap after max) undoes the move.
        with transaction.atomic():
            order = _issue(
                campaign=rule.campaign,
                member=event.member,
                value=None,
                source=Order.Source.EVENT,
                reference=event.event_id,
                actor=actor,
                is_test=event.is_test,
            )
    except PlumError as exc:
        _refused(plan, exc)
        return
    outcome.order = order
    if order.status == Order.Status.COMPLETED:
        outcome.outcome = Outcome.ISSUED
        outcome.detail = f"Order {order.booking_id} completed."
    else:
        outcome.outcome = Outcome.HELD
        outcome.detail = f"Order {order.booking_id} is pending approval."


def _points(plan: _Plan, event: Event, actor: Actor) -> None:
    rule, outcome = plan.rule, plan.outcome
    if event.is_test:
        # Test keys act on test data only, and the ledger has no test wallets.
        _refused(plan, PointsTestModeError())
        return
    try:
        with transaction.atomic():
            txn, _ = points_earn(
                member=event.member,
                points=rule.points,
                reason=rule.points_reason,
                reference=event.event_id,
                idempotency_key=f"event:{event.pk}:rule:{rule.pk}",
                actor=actor,
                note=f"Rule {rule.pk} ({rule.name[:100]}) on {event.event_type} event {event.pk}",
            )
    except PlumError as exc:
        _refused(plan, exc)
        return
    outcome.outcome = Outcome.POINTS_AWARDED
    outcome.points = rule.points
    outcome.points_transaction = txn
    outcome.detail = f"{rule.points} points, ledger transaction {txn.pk}."


def _result(outcomes: list[EventRuleOutcome]) -> str:
    kinds = {o.outcome for o in outcomes}
    if kinds & {Outcome.ISSUED, Outcome.HELD, Outcome.POINTS_AWARDED}:
        return Event.Result.REWARDED
    if Outcome.REFUSED in kinds:
        return Event.Result.REFUSED
    return Event.Result.NOT_MATCHED if outcomes else Event.Result.NO_RULES


def _evaluate(event: Event, actor: Actor) -> list[EventRuleOutcome]:
    rules = (
        WorkflowRule.objects.filter(
            programme_id=event.programme_id, event_type=event.event_type, is_active=True
        )
        .select_related("campaign__reward", "campaign__programme")
        .prefetch_related("conditions")
        .order_by("priority", "id")
    )
    plans: list[_Plan] = []
    stopped_by: WorkflowRule | None = None
    for position, rule in enumerate(rules, start=1):
        if stopped_by is not None:
            match = Match(
                False,
                ReasonCode.STOPPED,
                detail=f"Not evaluated: rule {stopped_by.pk} ({stopped_by.name}) matched and "
                "stops evaluation.",
                conditions=[c.snapshot() for c in rule.conditions.all()],
            )
        else:
            match = rule_match(rule, event.data)
            if match.matched and rule.stop_after:
                stopped_by = rule
        plan = _Plan(position, rule, match)
        plan.outcome = EventRuleOutcome(
            event=event,
            rule=rule,
            position=position,
            rule_name=rule.name,
            action=rule.action,
            conditions=match.conditions,
            matched=match.matched,
            reason_code=match.reason_code,
            failed_condition=match.failed_condition,
            detail=match.detail[:MAX_DETAIL],
            outcome=(
                Outcome.SKIPPED if match.reason_code == ReasonCode.STOPPED else Outcome.NOT_MATCHED
            ),
        )
        plans.append(plan)
    # Actions in lock order (module docstring): campaigns by id, then the wallet.
    matched = [p for p in plans if p.match.matched]
    rewards = sorted(
        (p for p in matched if p.rule.action == WorkflowRule.Action.REWARD),
        key=lambda p: (p.rule.campaign_id, p.position),
    )
    for plan in rewards:
        _reward(plan, event, actor)
    for plan in matched:
        if plan.rule.action == WorkflowRule.Action.POINTS:
            _points(plan, event, actor)
    return [p.outcome for p in plans]


def _outcome_summary(outcomes) -> list[dict]:
    return [
        {
            "rule": o.rule_id,
            "outcome": o.outcome,
            **({"code": o.code} if o.code else {}),
            **({"reason": o.reason_code} if o.reason_code else {}),
            **({"order": o.order_id} if o.order_id else {}),
            **({"booking_id": o.order.booking_id} if o.order_id else {}),
            **({"points_transaction": o.points_transaction_id} if o.points_transaction_id else {}),
        }
        for o in outcomes
    ]


def _member_upsert(*, programme: Programme, member: dict, actor: Actor):
    try:
        return recipient_upsert(programme=programme, recipient=member, actor=actor)
    except RecipientInvalidError as exc:
        raise RecipientInvalidError(
            "The member's details are invalid.",
            fields={
                name.replace("recipient.", "member.", 1): errors
                for name, errors in exc.fields.items()
            },
        ) from exc


def event_get(*, client: ApiClient, event_id: str) -> Event | None:
    return Event.objects.filter(api_client=client, event_id=event_id).first()


def event_ingest(
    *,
    client: ApiClient,
    programme: Programme,
    event_id: str,
    event_type: str,
    occurred_at: datetime,
    member: dict,
    data: dict,
) -> tuple[Event, bool]:
    """Store an event and run the programme's active rules for its type on it, all in one
    transaction (module docstring). Returns (event, created); created is False when the client
    already sent this event id, and then nothing was changed. The API client is the actor."""
    if not isinstance(data, dict):
        raise InvalidInputError(fields={"data": ["A JSON object."]})
    existing = event_get(client=client, event_id=event_id)
    if existing is not None:
        return existing, False
    with transaction.atomic(durable=True):
        try:
            # A savepoint around the upsert and the insert: a concurrent first post of this id
            # holds the unique key (and the member row) until it commits; we then fail here,
            # roll back our upsert, and answer with what it stored.
            with transaction.atomic():
                recipient = _member_upsert(programme=programme, member=member, actor=client)
                event = Event.objects.create(
                    programme=programme,
                    api_client=client,
                    event_id=event_id,
                    event_type=event_type,
                    occurred_at=occurred_at,
                    member=recipient,
                    data=data,
                    is_test=client.is_test,
                )
        except IntegrityError:
            existing = event_get(client=client, event_id=event_id)
            if existing is None:
                raise
            return existing, False
        outcomes = _evaluate(event, client)
        EventRuleOutcome.objects.bulk_create(outcomes)
        event.result = _result(outcomes)
        Event.objects.filter(pk=event.pk).update(result=event.result)
        summary = _outcome_summary(outcomes)
        audit_log(
            actor=client,
            action="event.ingest",
            obj=event,
            changes={
                "event_id": [None, event_id],
                "event_type": [None, event_type],
                "member": [None, recipient.pk],
                "result": [None, event.result],
                "outcomes": [None, summary],
            },
        )
        event_emit(
            event_type="event.processed",
            programme_id=programme.pk,
            data={
                "event": event.pk,
                "event_id": event_id,
                "type": event_type,
                "member_external_id": recipient.external_id,
                "is_test": event.is_test,
                "result": event.result,
                "outcomes": summary,
            },
        )
        return event, True
