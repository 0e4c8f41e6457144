"""Deliveries in the admin: the failed list (filter by status, programme, campaign, channel,
reason), each delivery's attempts, and resend: in bulk to the members' current details, or one
at a time with corrected contact details and channel. Every change goes through
orders.services.delivery_resend (member update and resend audited)."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from orders import selectors
from orders.models import Delivery, DeliveryAttempt
from orders.services import delivery_resend
from plum.admin import ProgrammeScopedAdmin, act_on_each, report_outcomes
from plum.errors import PlumError
from plum.models import Channel

MAX_ONE_BY_ONE = 500


class ReasonFilter(admin.SimpleListFilter):
    title = "reason"
    parameter_name = "reason"

    def lookups(self, request, model_admin):
        reasons = (
            model_admin.get_queryset(request)
            .exclude(reason="")
            .order_by("reason")
            .values_list("reason", flat=True)
            .distinct()[:50]
        )
        return [(reason, reason) for reason in reasons]

    def queryset(self, request, queryset):
        return queryset.filter(reason=self.value()) if self.value() else queryset


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = [
        "attempted_at",
        "channel",
        "destination",
        "provider",
        "outcome",
        "http_status",
        "latency_ms",
        "response_excerpt",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class CorrectAndResendForm(forms.Form):
    channel = forms.ChoiceField(choices=Channel.choices)
    email = forms.CharField(max_length=254, required=False)
    phone = forms.CharField(max_length=32, required=False, help_text="E.164, e.g. +919876543210.")


@admin.register(Delivery)
class DeliveryAdmin(ProgrammeScopedAdmin):
    list_display = [
        "id",
        "booking_id",
        "status",
        "channel",
        "destination",
        "reason",
        "attempts",
        "is_resend",
        "campaign",
        "programme",
        "created_at",
        "resend_link",
    ]
    list_filter = [
        "status",
        "channel",
        ReasonFilter,
        "programme",
        ("campaign", admin.RelatedOnlyFieldListFilter),
        "is_resend",
        "is_test",
    ]
    list_select_related = ["order", "campaign", "programme"]
    search_fields = ["=order__booking_id", "=destination", "=provider_message_id"]
    search_help_text = "An exact booking id, address or number, or provider message id."
    show_full_result_count = False
    fields = [
        "order",
        "programme",
        "campaign",
        "channel",
        "destination",
        "status",
        "reason",
        "reason_detail",
        "provider",
        "provider_message_id",
        "outbox_message",
        "attempts",
        "is_resend",
        "previous",
        "resent_by_label",
        "is_test",
        "created_at",
        "delivered_at",
        "failed_at",
    ]
    readonly_fields = fields
    inlines = [DeliveryAttemptInline]
    actions = ["resend"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        if obj is not None:
            return False
        return super().has_change_permission(request)

    def _resendable(self, request):
        return selectors.delivery_resendable_for(principal=request.user)

    @admin.display(description="booking id", ordering="order__booking_id")
    def booking_id(self, obj):
        return obj.order.booking_id

    @admin.display(description="")
    def resend_link(self, obj):
        url = reverse("admin:orders_delivery_resend", args=[obj.pk])
        return format_html('<a href="{}">correct &amp; resend</a>', url)

    @admin.action(description="Resend the selected deliveries to the members' current details")
    def resend(self, request, queryset):
        allowed = queryset.filter(pk__in=self._resendable(request).values("pk"))
        outside = queryset.count() - allowed.count()
        if outside:
            self.message_user(
                request,
                f"{outside} selected deliveries belong to programmes you cannot resend in; "
                "they were left unchanged.",
                messages.WARNING,
            )
        if allowed.count() > MAX_ONE_BY_ONE:
            self.message_user(
                request,
                f"Select at most {MAX_ONE_BY_ONE} deliveries at once; nothing was sent.",
                messages.ERROR,
            )
            return
        done, refused = act_on_each(
            allowed.select_related("order").order_by("pk"),
            lambda delivery: delivery_resend(order=delivery.order, actor=request.user),
            label=lambda delivery: delivery.order.booking_id,
            describe=lambda exc: f"{exc.code}: {exc.message}",
        )
        report_outcomes(
            self,
            request,
            done=done,
            refused=refused,
            noun="order",
            done_verb="Resent",
            refused_verb="resend",
        )

    def get_urls(self):
        return [
            path(
                "<int:delivery_id>/resend/",
                self.admin_site.admin_view(self.correct_and_resend_view),
                name="orders_delivery_resend",
            ),
            *super().get_urls(),
        ]

    def correct_and_resend_view(self, request, delivery_id: int):
        delivery = self.get_queryset(request).filter(pk=delivery_id).first()
        if delivery is None:
            raise Http404("No delivery with this ID.")
        if not self._resendable(request).filter(pk=delivery.pk).exists():
            raise PermissionDenied
        member = delivery.order.member
        initial = {"channel": delivery.channel, "email": member.email, "phone": member.phone}
        form = CorrectAndResendForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            contact = {
                name: form.cleaned_data[name]
                for name in ("email", "phone")
                if form.cleaned_data[name] != initial[name]
            }
            try:
                new = delivery_resend(
                    order=delivery.order,
                    channel=form.cleaned_data["channel"],
                    contact=contact or None,
                    actor=request.user,
                )
            except PlumError as exc:
                for field, errors in exc.fields.items():
                    for error in errors:
                        form.add_error(field if field in form.fields else None, error)
                if not exc.fields:
                    form.add_error(None, exc.message)
            else:
                self.message_user(
                    request,
                    f"Resent {delivery.order.booking_id} by {new.channel} to {new.destination}.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:orders_delivery_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Correct and resend {delivery.order.booking_id}",
            "delivery": delivery,
            "member": member,
            "form": form,
        }
        return TemplateResponse(request, "admin/orders/delivery/resend.html", context)
