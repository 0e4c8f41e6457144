"""Merchant payouts in the API, read-only: GET /api/v1/payouts for finance systems that
reconcile transfers. Closing, approving and paying happen in the admin and the beat task."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers

from campaigns.api import NamedChoiceField
from orders import selectors
from orders.models import Payout
from plum.api.base import PlumListApiView


class PayoutOutput(serializers.ModelSerializer):
    programme = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    merchant = serializers.CharField(source="merchant.name", read_only=True)
    merchant_id = serializers.IntegerField(read_only=True)
    status = NamedChoiceField(
        enum_name="PayoutStatusEnum", choices=Payout.Status.choices, read_only=True
    )

    class Meta:
        model = Payout
        fields = [
            "id",
            "programme",
            "merchant",
            "merchant_id",
            "currency",
            "period_kind",
            "period_start",
            "period_end",
            "status",
            "gross",
            "commission",
            "net",
            "order_count",
            "adjustment_count",
            "closed_at",
            "approved_at",
            "paid_at",
            "paid_reference",
        ]
        read_only_fields = fields


class PayoutFilter(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=[c for c in Payout.Status.choices if c[0] != "draft"], required=False
    )
    merchant = serializers.IntegerField(required=False, min_value=1, help_text="Merchant id.")
    programme = serializers.SlugField(required=False, help_text="Programme slug.")
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False)
    period_start_after = serializers.DateTimeField(required=False, help_text="Inclusive.")
    period_start_before = serializers.DateTimeField(required=False, help_text="Exclusive.")


class PayoutListApi(mixins.ListModelMixin, PlumListApiView):
    """Payouts of the key's programmes, newest first (a test key: none, payouts are live)."""

    serializer_class = PayoutOutput
    required_scope = "read"

    def get_queryset(self):
        filters = PayoutFilter(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        payouts = selectors.payout_list_for(principal=self.request.user)
        if f.get("status"):
            payouts = payouts.filter(status=f["status"])
        if f.get("merchant"):
            payouts = payouts.filter(merchant_id=f["merchant"])
        if f.get("programme"):
            payouts = payouts.filter(programme__slug=f["programme"])
        if f.get("currency"):
            payouts = payouts.filter(currency=f["currency"])
        if f.get("period_start_after"):
            payouts = payouts.filter(period_start__gte=f["period_start_after"])
        if f.get("period_start_before"):
            payouts = payouts.filter(period_start__lt=f["period_start_before"])
        return payouts

    @extend_schema(operation_id="payouts_list", parameters=[PayoutFilter])
    def get(self, request):
        return self.list(request)
