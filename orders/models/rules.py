"""Workflow rules and the events they act on.

A `WorkflowRule` (per programme, configured in the admin) maps an event type plus ANDed
`RuleCondition`s on the event's data to one action: send a reward from a campaign, or award
points. An `Event` is what an external system posted (unique per API client and event id,
forever); an `EventRuleOutcome` row per rule considered records what that rule did and why.
Events and outcomes are written once, by `orders.services.rules.event_ingest`, and never
changed."""

from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

from campaigns.models import Campaign
from orders.models.order import Order
from plum.models import ApiClient, Member, Programme
from wallets.models import MAX_POINTS, LedgerTransaction, Reason

EVENT_TYPE_RE = r"^[a-z0-9][a-z0-9_.\-]{0,63}$"
event_type_validator = RegexValidator(
    EVENT_TYPE_RE, "Lower-case letters, digits, '.', '_' and '-', up to 64 characters."
)
FIELD_RE = r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$"
field_validator = RegexValidator(
    FIELD_RE, "A key of the event's data, or a dotted path into nested objects (store.region)."
)
# The reasons a rule may give its points (wallets.models.Reason): what an earn is for.
RULE_POINTS_REASONS = [Reason.PROGRAMME_RULE, Reason.MILESTONE_AWARD]


class Operator(models.TextChoices):
    EQ = "==", "== equals"
    NE = "!=", "!= differs from"
    GT = ">", "> greater than"
    GE = ">=", ">= at least"
    LT = "<", "< less than"
    LE = "<=", "<= at most"
    IN = "in", "in one of (comma-separated)"
    CONTAINS = "contains", "contains (text contains, or list has the item)"


class ValueType(models.TextChoices):
    NUMBER = "number"
    STRING = "string", "text"
    BOOLEAN = "boolean"


# Which operators make sense for which kind of value; anything else is refused on save.
OPERATORS_FOR = {
    ValueType.NUMBER: set(Operator.values),
    ValueType.STRING: set(Operator.values),
    ValueType.BOOLEAN: {Operator.EQ, Operator.NE},
}


def parse_condition_value(value_type: str, operator: str, raw: str):
    """The condition's value as it is compared: a Decimal, a str or a bool (a list of them for
    `in`). Raises ValidationError naming what is wrong."""
    if value_type not in ValueType.values:
        raise ValidationError({"value_type": f"Unknown value type {value_type!r}."})
    if operator not in Operator.values:
        raise ValidationError({"operator": f"Unknown operator {operator!r}."})
    if operator not in OPERATORS_FOR[value_type]:
        raise ValidationError(
            {"operator": f"The operator {operator} cannot compare a {value_type} value."}
        )
    raw = raw if isinstance(raw, str) else ""
    items = [item.strip() for item in raw.split(",")] if operator == Operator.IN else [raw]
    if operator == Operator.IN and not all(items):
        raise ValidationError({"value": "List every value, separated by commas, none empty."})
    parsed = [_parse_one(value_type, item) for item in items]
    return parsed if operator == Operator.IN else parsed[0]


def _parse_one(value_type: str, raw: str):
    if value_type == ValueType.NUMBER:
        try:
            number = Decimal(raw.strip())
        except InvalidOperation:
            raise ValidationError({"value": f"{raw!r} is not a number."}) from None
        if not number.is_finite():
            raise ValidationError({"value": f"{raw!r} is not a finite number."})
        return number
    if value_type == ValueType.BOOLEAN:
        lowered = raw.strip().lower()
        if lowered not in ("true", "false"):
            raise ValidationError({"value": "A boolean value is true or false."})
        return lowered == "true"
    if raw == "":
        raise ValidationError({"value": "The value cannot be empty."})
    return raw


class WorkflowRule(models.Model):
    class Action(models.TextChoices):
        REWARD = "reward", "Send a reward from a campaign"
        POINTS = "points", "Award points"

    programme = models.ForeignKey(Programme, on_delete=models.PROTECT, related_name="rules")
    name = models.CharField(max_length=200)
    event_type = models.CharField(
        max_length=64,
        validators=[event_type_validator],
        help_text="The event type this rule listens to, e.g. purchase or visit.",
    )
    is_active = models.BooleanField(default=True)
    priority = models.PositiveIntegerField(
        default=100, help_text="Rules run in ascending priority (then in creation order)."
    )
    stop_after = models.BooleanField(
        default=False,
        verbose_name="stop after this rule",
        help_text="When this rule matches an event, later rules are not evaluated for it.",
    )
    action = models.CharField(max_length=16, choices=Action.choices)
    campaign = models.ForeignKey(
        Campaign,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="rules",
        help_text="For a reward: the campaign it is sent from (same programme).",
    )
    points = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="For points: how many to award."
    )
    points_reason = models.CharField(
        max_length=32,
        choices=[(r.value, r.label) for r in RULE_POINTS_REASONS],
        default=Reason.PROGRAMME_RULE,
        blank=True,
    )
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["programme", "event_type", "priority", "id"]
        verbose_name = "workflow rule"
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(action="reward", campaign__isnull=False, points__isnull=True)
                    | Q(action="points", campaign__isnull=True, points__gt=0)
                ),
                name="rule_action_has_its_target",
            ),
            models.CheckConstraint(
                condition=Q(points__isnull=True) | Q(points__lte=MAX_POINTS),
                name="rule_points_within_max",
            ),
        ]
        indexes = [
            # Ingestion: a programme's active rules for one event type, in order.
            models.Index(
                fields=["programme", "event_type", "priority", "id"],
                condition=Q(is_active=True),
                name="rule_active_lookup_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.event_type})"

    def clean(self):
        errors = {}
        if self.action == self.Action.REWARD:
            if self.campaign_id is None:
                errors["campaign"] = "A reward rule needs the campaign it sends from."
            elif self.programme_id is not None and self.campaign.programme_id != self.programme_id:
                errors["campaign"] = "The campaign belongs to another programme."
            if self.points is not None:
                errors["points"] = "A reward rule awards no points; leave this empty."
        elif self.action == self.Action.POINTS:
            if not self.points:
                errors["points"] = "How many points this rule awards (at least 1)."
            elif self.points > MAX_POINTS:
                errors["points"] = f"At most {MAX_POINTS} points."
            if self.campaign_id is not None:
                errors["campaign"] = "A points rule sends no reward; leave this empty."
            if not self.points_reason:
                errors["points_reason"] = "Why the points are given."
        if errors:
            raise ValidationError(errors)


class RuleCondition(models.Model):
    rule = models.ForeignKey(WorkflowRule, on_delete=models.CASCADE, related_name="conditions")
    field = models.CharField(max_length=200, validators=[field_validator])
    operator = models.CharField(max_length=8, choices=Operator.choices)
    value_type = models.CharField(max_length=8, choices=ValueType.choices)
    value = models.CharField(
        max_length=500,
        help_text="For 'in', the values separated by commas. Booleans: true or false.",
    )

    class Meta:
        ordering = ["rule", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(operator__in=Operator.values), name="rule_condition_operator_valid"
            ),
            models.CheckConstraint(
                condition=Q(value_type__in=ValueType.values)
                & (Q(value_type__in=["number", "string"]) | Q(operator__in=["==", "!="])),
                name="rule_condition_operator_fits_type",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.field} {self.operator} {self.value}"

    def clean(self):
        if self.operator in Operator.values and self.value_type in ValueType.values:
            parse_condition_value(self.value_type, self.operator, self.value)

    def snapshot(self) -> dict:
        return {
            "field": self.field,
            "operator": self.operator,
            "value_type": self.value_type,
            "value": self.value,
        }


class Event(models.Model):
    """One event an external system posted. Unique per (API client, event id) forever, so a
    repeated id is answered with this row's outcome however late it comes."""

    class Result(models.TextChoices):
        NO_RULES = "no_rules", "No active rule for this type"
        NOT_MATCHED = "not_matched", "No rule matched"
        REWARDED = "rewarded", "Rewarded (issued, held or points)"
        REFUSED = "refused", "Matched, every action refused"

    programme = models.ForeignKey(Programme, on_delete=models.PROTECT, related_name="events")
    api_client = models.ForeignKey(ApiClient, on_delete=models.PROTECT, related_name="events")
    event_id = models.CharField(max_length=120, help_text="The caller's id for the event.")
    event_type = models.CharField(max_length=64, validators=[event_type_validator])
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="events")
    data = models.JSONField(default=dict, blank=True)
    is_test = models.BooleanField(default=False)
    result = models.CharField(max_length=16, choices=Result.choices, default=Result.NO_RULES)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["api_client", "event_id"], name="event_client_event_id_unique"
            ),
            models.CheckConstraint(
                condition=Q(result__in=["no_rules", "not_matched", "rewarded", "refused"]),
                name="event_result_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["programme", "-id"], name="event_programme_idx"),
            models.Index(
                fields=["programme", "event_type", "-id"], name="event_programme_type_idx"
            ),
            models.Index(fields=["member", "-id"], name="event_member_idx"),
            models.Index(fields=["programme", "received_at"], name="event_programme_received_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"


class EventRuleOutcome(models.Model):
    """What one rule did with one event, and why. Conditions are copied as they were at the
    time, so editing a rule later does not rewrite why an event got what it got."""

    class Outcome(models.TextChoices):
        NOT_MATCHED = "not_matched", "Not matched"
        SKIPPED = "skipped", "Skipped (an earlier rule stopped evaluation)"
        ISSUED = "issued", "Reward issued"
        HELD = "held", "Reward held for approval"
        REFUSED = "refused", "Refused"
        POINTS_AWARDED = "points_awarded", "Points awarded"

    class ReasonCode(models.TextChoices):
        MISSING_FIELD = "missing_field"
        TYPE_MISMATCH = "type_mismatch"
        CONDITION_FALSE = "condition_false"
        STOPPED = "stopped"

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="outcomes")
    rule = models.ForeignKey(WorkflowRule, on_delete=models.PROTECT, related_name="outcomes")
    position = models.PositiveSmallIntegerField(help_text="Evaluation order, from 1.")
    rule_name = models.CharField(max_length=200)
    action = models.CharField(max_length=16, choices=WorkflowRule.Action.choices)
    conditions = models.JSONField(default=list, help_text="The rule's conditions at the time.")
    matched = models.BooleanField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    reason_code = models.CharField(max_length=16, choices=ReasonCode.choices, blank=True)
    failed_condition = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Index (from 0) of the first condition that failed."
    )
    detail = models.CharField(max_length=500, blank=True, help_text="Why, in words.")
    code = models.CharField(max_length=64, blank=True, help_text="The refusal's error code.")
    order = models.ForeignKey(
        Order, null=True, blank=True, on_delete=models.PROTECT, related_name="rule_outcomes"
    )
    points = models.PositiveBigIntegerField(null=True, blank=True)
    points_transaction = models.ForeignKey(
        LedgerTransaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["event", "position"]
        constraints = [
            models.UniqueConstraint(fields=["event", "rule"], name="event_outcome_rule_unique"),
            models.UniqueConstraint(
                fields=["event", "position"], name="event_outcome_position_unique"
            ),
            models.CheckConstraint(
                condition=(
                    Q(outcome__in=["not_matched", "skipped"], matched=False)
                    | Q(outcome__in=["issued", "held", "refused", "points_awarded"], matched=True)
                ),
                name="event_outcome_matches_matched",
            ),
            models.CheckConstraint(
                condition=~Q(outcome__in=["issued", "held"]) | Q(order__isnull=False),
                name="event_outcome_issue_has_order",
            ),
            models.CheckConstraint(
                condition=~Q(outcome="points_awarded") | Q(points_transaction__isnull=False),
                name="event_outcome_points_has_transaction",
            ),
            models.CheckConstraint(
                condition=~Q(outcome="refused") | ~Q(code=""),
                name="event_outcome_refusal_has_code",
            ),
        ]
        indexes = [models.Index(fields=["outcome", "event"], name="event_outcome_kind_idx")]

    def __str__(self) -> str:
        return f"{self.rule_name}: {self.outcome}"
