"""Ledger lists for programme staff, and the one write they offer: a manual adjustment of a
member's wallet by a programme manager, through `points_adjust`. Nothing here adds, edits or
deletes a ledger row directly. Scoped like every admin list: rows of the user's programmes,
anything else 404."""

import uuid

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from plum import roles, selectors
from plum.admin import ProgrammeScopedAdmin
from plum.errors import PlumError
from wallets.admin_reports import WalletReportViews
from wallets.models import (
    MAX_POINTS,
    Account,
    AccountKind,
    LedgerTransaction,
    PointsPolicy,
    Posting,
)
from wallets.services import points_adjust, points_policy_set


class ReadOnlyMixin:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AdjustForm(forms.Form):
    points = forms.IntegerField(
        min_value=-MAX_POINTS,
        max_value=MAX_POINTS,
        help_text="Positive to credit, negative to debit. A debit cannot take the wallet below 0.",
    )
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=1000,
        help_text="Why: it is kept on the transaction and in the member's audit log.",
    )
    reference = forms.CharField(max_length=120, required=False, help_text="A ticket id, say.")
    # Drawn when the form is shown: submitting the same form twice adjusts once.
    token = forms.UUIDField(widget=forms.HiddenInput)

    def clean_points(self):
        points = self.cleaned_data["points"]
        if points == 0:
            raise forms.ValidationError("Give a non-zero number of points.")
        return points


@admin.register(Account)
class AccountAdmin(ReadOnlyMixin, ProgrammeScopedAdmin):
    list_display = ["id", "programme", "kind", "member", "balance", "created_at"]
    list_filter = ["kind", "programme"]
    list_select_related = ["programme", "member__programme"]
    search_fields = ["member__external_id", "member__email"]
    search_help_text = "A member's external id or e-mail."
    show_full_result_count = False
    readonly_fields = ["programme", "kind", "member", "balance", "created_at", "adjust"]

    def get_urls(self):
        return [
            path(
                "<path:object_id>/adjust/",
                self.admin_site.admin_view(self.adjust_view),
                name="wallets_account_adjust",
            ),
            *super().get_urls(),
        ]

    def _may_adjust(self, request, account) -> bool:
        return account.kind == AccountKind.MEMBER_WALLET and self._may_change(request, account)

    @admin.display(description="manual adjustment")
    def adjust(self, obj):
        if obj.kind != AccountKind.MEMBER_WALLET:
            return "-"
        url = reverse("admin:wallets_account_adjust", args=[obj.pk])
        return format_html('<a href="{}">Adjust points</a> (programme managers)', url)

    def adjust_view(self, request, object_id):
        account = self.get_object(request, object_id)  # 404 outside the user's programmes
        if not self._may_adjust(request, account):
            raise PermissionDenied
        if request.method == "POST":
            form = AdjustForm(request.POST)
        else:
            form = AdjustForm(initial={"token": uuid.uuid4()})
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                txn, created = points_adjust(
                    member=account.member,
                    points=data["points"],
                    note=data["note"],
                    reference=data["reference"],
                    idempotency_key=f"admin:{data['token']}",
                    actor=request.user,
                )
            except PlumError as exc:
                form.add_error("points" if "balance" in exc.extra else None, exc.message)
            else:
                if created:
                    self.message_user(
                        request,
                        f"Adjusted by {data['points']:+d} points (transaction {txn.pk}).",
                        messages.SUCCESS,
                    )
                return redirect(reverse("admin:wallets_account_change", args=[account.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": account,
            "title": f"Adjust the points of {account.member}",
            "form": form,
        }
        return TemplateResponse(request, "admin/wallets/account/adjust.html", context)


class PostingInline(ReadOnlyMixin, admin.TabularInline):
    model = Posting
    fields = ["account", "amount", "balance_after"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("account__member")


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(WalletReportViews, ReadOnlyMixin, ProgrammeScopedAdmin):
    """The ledger's transactions, and the wallet reports (wallets.admin_reports) under its
    URLs: reports/, statement/, member/<id>/audit/."""

    list_display = [
        "id",
        "programme",
        "kind",
        "reason",
        "reference",
        "actor_label",
        "reverses",
        "created_at",
    ]
    list_filter = ["kind", "reason", "programme"]
    list_select_related = ["programme", "reverses"]
    search_fields = ["=reference"]
    search_help_text = "An exact reference (order or booking id, the caller's reference)."
    date_hierarchy = "created_at"
    inlines = [PostingInline]
    show_full_result_count = False


@admin.register(PointsPolicy)
class PointsPolicyAdmin(ProgrammeScopedAdmin):
    """Saved through `points_policy_set`, which validates and audits the change."""

    list_display = ["programme", "expiry_months", "updated_at"]
    list_select_related = ["programme"]
    fields = ["programme", "expiry_months"]

    def get_readonly_fields(self, request, obj=None):
        return ["programme"] if obj else []

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "programme":
            kwargs["queryset"] = selectors.programmes_for(request.user, roles.MANAGE)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_add_permission(self, request):
        return super().has_add_permission(request) and self._may_change(request, None)

    def save_model(self, request, obj, form, change):
        policy = points_policy_set(
            programme=obj.programme,
            expiry_months=form.cleaned_data["expiry_months"],
            actor=request.user,
        )
        obj.pk = policy.pk
        obj._state.adding = False
