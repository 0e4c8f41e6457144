"""Workflow rules and events in the admin.

Rules are edited by programme managers, on their programmes only, with their conditions
inline; saving goes through `orders.services.rule_save` (validated, audited). Events are
read-only: the list filters by type, member, outcome and date, and an event's page shows what
every rule did with it and why — the answer to "why did this customer get nothing?"."""

import json

from django import forms
from django.contrib import admin
from django.db.models import Exists, OuterRef
from django.utils.html import format_html

from campaigns.models import Campaign
from orders.models import Event, EventRuleOutcome, RuleCondition, WorkflowRule
from orders.services import rule_save
from orders.services.rules import CONDITION_FIELDS
from plum import roles, selectors
from plum.admin import ProgrammeScopedAdmin

# --- rules --------------------------------------------------------------------------------


class RuleConditionInline(admin.TabularInline):
    model = RuleCondition
    fields = CONDITION_FIELDS
    extra = 1
    verbose_name = "condition (all must hold)"
    verbose_name_plural = "conditions (all must hold; none: every event of the type matches)"

    # Conditions are part of the rule: whoever may change the rule may change them.
    def _rule_perm(self, request, obj):
        perm = "orders.change_workflowrule" if obj is not None else "orders.add_workflowrule"
        return request.user.has_perm(perm)

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("orders.view_workflowrule")

    def has_add_permission(self, request, obj=None):
        return self._rule_perm(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._rule_perm(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._rule_perm(request, obj)


class WorkflowRuleForm(forms.ModelForm):
    class Meta:
        model = WorkflowRule
        fields = [
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


@admin.register(WorkflowRule)
class WorkflowRuleAdmin(ProgrammeScopedAdmin):
    form = WorkflowRuleForm
    inlines = [RuleConditionInline]
    view_perm = roles.MANAGE
    list_display = [
        "name",
        "programme",
        "event_type",
        "priority",
        "is_active",
        "stop_after",
        "action",
        "target",
        "condition_list",
    ]
    list_filter = ["programme", "event_type", "is_active", "action"]
    list_select_related = ["programme", "campaign"]
    search_fields = ["name", "event_type"]
    ordering = ["programme", "event_type", "priority", "id"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("conditions")

    def get_readonly_fields(self, request, obj=None):
        return ["programme"] if obj is not None else []

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        manageable = selectors.programmes_for(request.user, roles.MANAGE)
        if db_field.name == "programme":
            kwargs["queryset"] = manageable
        elif db_field.name == "campaign":
            kwargs["queryset"] = Campaign.objects.filter(
                programme__in=manageable.values("pk")
            ).select_related("programme")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="sends / awards")
    def target(self, obj):
        if obj.action == WorkflowRule.Action.REWARD:
            return f"campaign {obj.campaign}"
        return f"{obj.points} points"

    @admin.display(description="conditions")
    def condition_list(self, obj):
        return " AND ".join(str(c) for c in obj.conditions.all()) or "(every event)"

    def save_model(self, request, obj, form, change):
        pass  # saved with its conditions by the service, in save_related

    def save_related(self, request, form, formsets, change):
        conditions = [
            {name: row.cleaned_data[name] for name in CONDITION_FIELDS}
            for formset in formsets
            for row in formset.forms
            if row.cleaned_data and not row.cleaned_data.get("DELETE")
        ]
        rule_save(rule=form.instance, conditions=conditions, actor=request.user)
        for formset in formsets:  # the admin's change message reads these; the audit log has all
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []


# --- events -------------------------------------------------------------------------------


class EventRuleOutcomeInline(admin.TabularInline):
    model = EventRuleOutcome
    fields = [
        "position",
        "rule_link",
        "action",
        "matched",
        "outcome",
        "reason_code",
        "failed",
        "detail",
        "code",
        "booking",
        "points",
        "points_transaction",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name = "what a rule did"
    verbose_name_plural = "what each rule did, and why"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("order", "rule")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("orders.view_event")

    @admin.display(description="rule")
    def rule_link(self, obj):
        return f"{obj.rule_name} (#{obj.rule_id})"

    @admin.display(description="failed condition")
    def failed(self, obj):
        if obj.failed_condition is None or obj.failed_condition >= len(obj.conditions):
            return "—"
        c = obj.conditions[obj.failed_condition]
        return f"{c['field']} {c['operator']} {c['value']}"

    @admin.display(description="order")
    def booking(self, obj):
        return obj.order.booking_id if obj.order_id else "—"


class EventTypeFilter(admin.SimpleListFilter):
    """Types of the events the user may see (the stock filter would list every programme's)."""

    title = "type"
    parameter_name = "type"

    def lookups(self, request, model_admin):
        types = (
            model_admin.get_queryset(request)
            .order_by("event_type")
            .values_list("event_type", flat=True)
            .distinct()[:200]
        )
        return [(t, t) for t in types]

    def queryset(self, request, queryset):
        return queryset.filter(event_type=self.value()) if self.value() else queryset


class OutcomeFilter(admin.SimpleListFilter):
    title = "a rule's outcome"
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        return EventRuleOutcome.Outcome.choices

    def queryset(self, request, queryset):
        if self.value() not in EventRuleOutcome.Outcome.values:
            return queryset
        return queryset.filter(
            Exists(EventRuleOutcome.objects.filter(event=OuterRef("pk"), outcome=self.value()))
        )


@admin.register(Event)
class EventAdmin(ProgrammeScopedAdmin):
    inlines = [EventRuleOutcomeInline]
    list_display = [
        "id",
        "event_id",
        "event_type",
        "member",
        "result",
        "outcome_list",
        "is_test",
        "occurred_at",
        "received_at",
    ]
    list_filter = [
        EventTypeFilter,
        "result",
        OutcomeFilter,
        "is_test",
        "programme",
        ("received_at", admin.DateFieldListFilter),
    ]
    list_select_related = ["member", "programme"]
    search_fields = ["=member__external_id", "=event_id"]
    search_help_text = "An exact member external id or event id."
    date_hierarchy = "received_at"
    show_full_result_count = False
    fields = [
        "event_id",
        "event_type",
        "programme",
        "api_client",
        "member",
        "occurred_at",
        "received_at",
        "is_test",
        "result",
        "data_pretty",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("outcomes")

    def has_add_permission(self, request):
        return False  # events come from the API

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="rules")
    def outcome_list(self, obj):
        return ", ".join(f"{o.rule_name}: {o.code or o.outcome}" for o in obj.outcomes.all()) or "—"

    @admin.display(description="data")
    def data_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.data, indent=2, ensure_ascii=False))
