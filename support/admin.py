"""Tickets and SLA policies in the admin, programme-scoped like the rest of it.

Tickets are read-only here (agents work them in the ops portal, /ops/tickets/): the list shows
status, priority, assignee, SLA due times and breaches, open tickets first, with their
messages (notes included) inline. SLA policies are changed by programme managers, through
`sla_policy_set`, which validates and audits the change."""

from django.contrib import admin
from django.db.models import Q

from plum import roles, selectors
from plum.admin import ProgrammeScopedAdmin
from support.models import SlaPolicy, Ticket, TicketMessage
from support.services import sla_policy_set


class OpenFilter(admin.SimpleListFilter):
    title = "open"
    parameter_name = "open"

    def lookups(self, request, model_admin):
        return [("yes", "Open (not resolved or closed)"), ("no", "Resolved or closed")]

    def queryset(self, request, queryset):
        done = Q(status__in=["resolved", "closed"])
        if self.value() == "yes":
            return queryset.exclude(done)
        if self.value() == "no":
            return queryset.filter(done)
        return queryset


class BreachedFilter(admin.SimpleListFilter):
    title = "SLA breached"
    parameter_name = "breached"

    def lookups(self, request, model_admin):
        return [("yes", "Breached"), ("no", "Not breached")]

    def queryset(self, request, queryset):
        breached = Q(first_response_breached_at__isnull=False) | Q(
            resolution_breached_at__isnull=False
        )
        if self.value() == "yes":
            return queryset.filter(breached)
        if self.value() == "no":
            return queryset.exclude(breached)
        return queryset


class TicketMessageInline(admin.TabularInline):
    model = TicketMessage
    fields = ["created_at", "kind", "author_label", "body"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Ticket)
class TicketAdmin(ProgrammeScopedAdmin):
    view_perm = roles.VIEW
    list_display = [
        "id",
        "status",
        "priority",
        "category",
        "member",
        "order",
        "assignee",
        "first_response_due_at",
        "resolution_due_at",
        "breached",
        "escalated",
        "created_at",
    ]
    list_filter = [OpenFilter, BreachedFilter, "status", "priority", "category", "programme"]
    list_select_related = ["member", "member__programme", "order", "assignee"]
    search_fields = ["order__booking_id", "member__external_id", "member__email"]
    readonly_fields = [f.name for f in Ticket._meta.fields]
    inlines = [TicketMessageInline]

    @admin.display(boolean=True, description="Breached")
    def breached(self, obj):
        return obj.is_breached

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(SlaPolicy)
class SlaPolicyAdmin(ProgrammeScopedAdmin):
    """Saved through `sla_policy_set` (validated, audited). The model's constraints (one policy
    per programme and priority, hours > 0, resolution >= first response) are checked by the
    form before that."""

    list_display = ["programme", "priority", "first_response_hours", "resolution_hours"]
    list_filter = ["programme", "priority"]
    list_select_related = ["programme"]
    fields = ["programme", "priority", "first_response_hours", "resolution_hours"]

    def get_readonly_fields(self, request, obj=None):
        return ["programme", "priority"] if obj else []

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "programme":
            kwargs["queryset"] = selectors.programmes_for(request.user, roles.MANAGE)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_add_permission(self, request):
        return super().has_add_permission(request) and self._may_change(request, None)

    def save_model(self, request, obj, form, change):
        policy = sla_policy_set(
            programme=obj.programme,
            priority=obj.priority,
            first_response_hours=form.cleaned_data["first_response_hours"],
            resolution_hours=form.cleaned_data["resolution_hours"],
            actor=request.user,
        )
        obj.pk = policy.pk
        obj._state.adding = False
