"""Merchant payouts in the admin, for Finance: a list scoped to the programmes the user holds
the finance permission on, a read-only statement with its lines, approve / mark paid as actions
through the services, and CSV exports (one statement, or the filtered list) through
`plum.csvexport`: streamed, formula-injection safe. Payouts are never edited or deleted here."""

from datetime import UTC, date, datetime, time

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.forms.models import BaseInlineFormSet
from django.http import HttpResponseBadRequest
from django.urls import path, reverse
from django.utils.html import format_html

from orders.models import Payout, PayoutLine
from orders.services import payout_approve, payout_mark_paid
from plum import roles, selectors
from plum.admin import ProgrammeScopedAdmin, act_on_each, report_outcomes
from plum.csvexport import csv_response

# One transaction per payout: there are a few per merchant and period, never thousands.
MAX_ONE_BY_ONE = 500
PERIODS_LISTED = 26
# Lines shown on the statement page; the CSV statement has every line.
LINES_SHOWN = 500

STATEMENT_HEADER = [
    "programme",
    "merchant",
    "currency",
    "period_start",
    "period_end",
    "payout_status",
    "booking_id",
    "kind",
    "order_date",
    "commission_percent",
    "face_value",
    "commission",
    "net",
]

LIST_HEADER = [
    "payout_id",
    "programme",
    "merchant",
    "currency",
    "period_kind",
    "period_start",
    "period_end",
    "status",
    "order_count",
    "adjustment_count",
    "gross",
    "commission",
    "net",
    "closed_at",
    "approved_at",
    "approved_by",
    "paid_at",
    "paid_by",
    "paid_reference",
]


def _iso(value):
    return value.isoformat() if value else ""


def statement_rows(payout: Payout):
    """One row per line, then a TOTAL row equal to the payout's totals."""
    head = [
        payout.programme.name,
        payout.merchant.name,
        payout.currency,
        _iso(payout.period_start),
        _iso(payout.period_end),
        payout.status,
    ]
    lines = payout.lines.select_related("order").order_by("id").iterator(chunk_size=2000)
    for line in lines:
        yield [
            *head,
            line.order.booking_id,
            line.kind,
            _iso(line.occurred_at),
            line.commission_percent,
            line.face_value,
            line.commission,
            line.net,
        ]
    yield [*head, "TOTAL", "", "", "", payout.gross, payout.commission, payout.net]


def list_rows(queryset):
    rows = queryset.select_related("programme", "merchant", "approved_by", "paid_by")
    for p in rows.order_by("-period_start", "merchant__name", "id").iterator(chunk_size=2000):
        yield [
            p.pk,
            p.programme.name,
            p.merchant.name,
            p.currency,
            p.period_kind,
            _iso(p.period_start),
            _iso(p.period_end),
            p.status,
            p.order_count,
            p.adjustment_count,
            p.gross,
            p.commission,
            p.net,
            _iso(p.closed_at),
            _iso(p.approved_at),
            p.approved_by.get_username() if p.approved_by_id else "",
            _iso(p.paid_at),
            p.paid_by.get_username() if p.paid_by_id else "",
            p.paid_reference,
        ]


class PeriodFilter(admin.SimpleListFilter):
    title = "period"
    parameter_name = "period"

    def lookups(self, request, model_admin):
        periods = (
            model_admin.get_queryset(request)
            .order_by("-period_start", "period_end")
            .values_list("period_start", "period_end")
            .distinct()[:PERIODS_LISTED]
        )
        return [
            (f"{start:%Y-%m-%d}/{end:%Y-%m-%d}", f"{start:%Y-%m-%d} – {end:%Y-%m-%d}")
            for start, end in periods
        ]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        try:
            start, end = (date.fromisoformat(part) for part in self.value().split("/"))
        except ValueError:
            return queryset.none()
        return queryset.filter(
            period_start=datetime.combine(start, time.min, tzinfo=UTC),
            period_end=datetime.combine(end, time.min, tzinfo=UTC),
        )


class PayoutActionForm(ActionForm):
    reference = forms.CharField(
        required=False,
        max_length=120,
        label="Payment reference",
        help_text="For “mark paid”: the bank transfer's reference.",
    )


class FirstLinesFormSet(BaseInlineFormSet):
    def get_queryset(self):
        if not hasattr(self, "_first_lines"):
            self._first_lines = super().get_queryset()[:LINES_SHOWN]
        return self._first_lines


class PayoutLineInline(admin.TabularInline):
    model = PayoutLine
    formset = FirstLinesFormSet
    verbose_name_plural = f"lines (the first {LINES_SHOWN}; the CSV statement has all)"
    fields = [
        "booking_id",
        "kind",
        "occurred_at",
        "commission_percent",
        "face_value",
        "commission",
        "net",
    ]
    readonly_fields = fields
    can_delete = False
    extra = 0
    ordering = ["id"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("order")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="booking id")
    def booking_id(self, line):
        return line.order.booking_id


@admin.register(Payout)
class PayoutAdmin(ProgrammeScopedAdmin):
    view_perm = roles.FINANCE_PERM
    change_perm = roles.FINANCE_PERM
    list_display = [
        "id",
        "merchant",
        "programme",
        "currency",
        "period_kind",
        "period_start",
        "period_end",
        "status",
        "order_count",
        "adjustment_count",
        "gross",
        "commission",
        "net",
    ]
    list_filter = [
        "status",
        ("merchant", admin.RelatedOnlyFieldListFilter),
        PeriodFilter,
        "period_kind",
        "currency",
        "programme",
    ]
    list_select_related = ["merchant", "programme"]
    search_fields = ["merchant__name"]
    fields = [
        "programme",
        "merchant",
        "currency",
        "period_kind",
        "period_start",
        "period_end",
        "status",
        "order_count",
        "adjustment_count",
        "gross",
        "commission",
        "net",
        "closed_at",
        "approved_at",
        "approved_by",
        "paid_at",
        "paid_by",
        "paid_reference",
        "statement",
    ]
    readonly_fields = fields
    inlines = [PayoutLineInline]
    actions = ["approve", "mark_paid"]
    action_form = PayoutActionForm
    change_list_template = "admin/orders/payout/change_list.html"

    def has_add_permission(self, request):
        return False  # payouts are closed by the beat task (payouts_close)

    def has_change_permission(self, request, obj=None):
        if obj is not None:
            return False  # the statement is read-only; actions need the model-level answer
        return super().has_change_permission(request)

    @admin.display(description="statement")
    def statement(self, obj):
        return format_html(
            '<a href="{}">Download the statement (CSV)</a>',
            reverse("admin:orders_payout_statement", args=[obj.pk]),
        )

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("export.csv", view(self.export_view), name="orders_payout_export"),
            path(
                "<path:object_id>/statement.csv",
                view(self.statement_view),
                name="orders_payout_statement",
            ),
            *super().get_urls(),
        ]

    def statement_view(self, request, object_id):
        # 404 outside the user's programmes, as the change page answers; then the role.
        payout = self.get_object(request, object_id)
        if not self.has_view_permission(request, payout):
            raise PermissionDenied
        payout = Payout.objects.select_related("programme", "merchant").get(pk=payout.pk)
        name = f"payout-{payout.pk}-{payout.period_start:%Y%m%d}-{payout.currency}.csv"
        return csv_response(name, STATEMENT_HEADER, statement_rows(payout))

    def export_view(self, request):
        """The list as filtered on the page (the same query string)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseBadRequest("Unknown filter.")
        return csv_response("payouts.csv", LIST_HEADER, list_rows(changelist.queryset))

    def _each(self, request, queryset, act, done_verb: str, refused_verb: str):
        allowed = selectors.scoped(queryset, request.user, self.change_perm)
        if allowed.count() > MAX_ONE_BY_ONE:
            self.message_user(
                request,
                f"Select at most {MAX_ONE_BY_ONE} payouts at once; nothing was changed.",
                messages.ERROR,
            )
            return
        done, refused = act_on_each(
            allowed.select_related("merchant").order_by("pk"),
            act,
            label=lambda payout: f"#{payout.pk} {payout.merchant.name}",
            describe=lambda exc: f"{exc.code}: {exc.message}",
        )
        report_outcomes(
            self,
            request,
            done=done,
            refused=refused,
            noun="payout",
            done_verb=done_verb,
            refused_verb=refused_verb,
        )

    @admin.action(description="Approve the selected closed payouts", permissions=["change"])
    def approve(self, request, queryset):
        self._each(
            request,
            queryset,
            lambda payout: payout_approve(payout=payout, actor=request.user),
            "Approved",
            "approve",
        )

    @admin.action(
        description="Mark the selected approved payouts paid (with the payment reference)",
        permissions=["change"],
    )
    def mark_paid(self, request, queryset):
        reference = request.POST.get("reference", "")
        self._each(
            request,
            queryset,
            lambda payout: payout_mark_paid(payout=payout, actor=request.user, reference=reference),
            "Marked paid",
            "mark paid",
        )
