"""Orders in the admin: a scoped, filterable list and the approval queue. Orders are never
edited here: approve, reject and cancel are actions that call the services, one order at a
time, and report every refusal by booking id."""

from django.contrib import admin, messages
from django.utils import timezone
from django.utils.timesince import timesince

from orders.models import Order
from orders.services import order_approve, order_cancel, order_reject
from plum.admin import (
    ProgrammeScopedAdmin,
    act_on_each,
    managed_selection,
    report_outcomes,
)

# One transaction per order: a larger selection belongs in the API.
MAX_ONE_BY_ONE = 500


class ApprovalQueueFilter(admin.SimpleListFilter):
    title = "approval queue"
    parameter_name = "queue"

    def lookups(self, request, model_admin):
        return [("awaiting", "Awaiting approval")]

    def queryset(self, request, queryset):
        if self.value() == "awaiting":
            return queryset.filter(
                status=Order.Status.PENDING, approval_state=Order.ApprovalState.PENDING
            )
        return queryset


@admin.register(Order)
class OrderAdmin(ProgrammeScopedAdmin):
    list_display = [
        "booking_id",
        "status",
        "approval_state",
        "campaign",
        "member",
        "value",
        "currency",
        "source",
        "delivery_status",
        "is_test",
        "created_at",
        "age",
    ]
    list_filter = [
        ApprovalQueueFilter,
        "status",
        "approval_state",
        "source",
        "delivery_status",
        "is_test",
        "programme",
        ("campaign", admin.RelatedOnlyFieldListFilter),
        ("created_at", admin.DateFieldListFilter),
    ]
    list_select_related = ["campaign", "member__programme", "programme"]
    search_fields = ["=booking_id", "=member__external_id", "=reference"]
    search_help_text = "An exact booking id, member external id or reference."
    show_full_result_count = False
    date_hierarchy = "created_at"
    fields = [
        "booking_id",
        "programme",
        "campaign",
        "member",
        "value",
        "currency",
        "source",
        "status",
        "approval_state",
        "voucher_masked",
        "delivery_status",
        "is_test",
        "points",
        "points_transaction",
        "reference",
        "created_at",
        "approved_at",
        "completed_at",
        "cancelled_at",
    ]
    readonly_fields = fields
    actions = ["approve", "reject", "cancel"]

    def has_add_permission(self, request):
        return False  # orders come from issuance, events, uploads and the storefront

    def has_change_permission(self, request, obj=None):
        if obj is not None:
            return False  # the change page is read-only; actions need the model-level answer
        return super().has_change_permission(request)

    @admin.display(description="voucher")
    def voucher_masked(self, obj):
        return obj.voucher.masked_code if obj.voucher_id else "—"

    @admin.display(description="age")
    def age(self, obj):
        return timesince(obj.created_at, timezone.now())

    def _each(self, request, queryset, service, done_verb: str, refused_verb: str):
        manageable = managed_selection(self, request, queryset, "order")
        if manageable.count() > MAX_ONE_BY_ONE:
            self.message_user(
                request,
                f"Select at most {MAX_ONE_BY_ONE} orders at once; nothing was changed.",
                messages.ERROR,
            )
            return
        done, refused = act_on_each(
            manageable.order_by("pk"),
            lambda order: service(order=order, actor=request.user),
            label=lambda order: order.booking_id,
            describe=lambda exc: f"{exc.code}: {exc.message}",
        )
        report_outcomes(
            self,
            request,
            done=done,
            refused=refused,
            noun="order",
            done_verb=done_verb,
            refused_verb=refused_verb,
        )

    @admin.action(description="Approve the selected held orders (fulfil)", permissions=["change"])
    def approve(self, request, queryset):
        self._each(request, queryset, order_approve, "Approved", "approve")

    @admin.action(description="Reject the selected held orders", permissions=["change"])
    def reject(self, request, queryset):
        self._each(request, queryset, order_reject, "Rejected", "reject")

    @admin.action(
        description="Cancel the selected orders (unredeemed vouchers are cancelled)",
        permissions=["change"],
    )
    def cancel(self, request, queryset):
        self._each(request, queryset, order_cancel, "Cancelled", "cancel")
