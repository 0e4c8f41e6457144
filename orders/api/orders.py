"""The orders API under /api/v1/: issuance, storefront redemptions (points), the order list and
detail, and the approval and cancellation actions.

Views validate the wire format, find what the principal may see through the selectors (404
for anything outside scope) and call one service. Test API keys create and see test orders
only, with test codes that touch no live counter."""

import threading
from decimal import Decimal

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status
from rest_framework.response import Response

from campaigns.api import NamedChoiceField, voucher_status_field
from campaigns.selectors import campaign_get_for
from orders import selectors
from orders.errors import OrderNotFoundError, RedemptionTestModeError
from orders.models import Order
from orders.services import (
    order_approve,
    order_cancel,
    order_issue_to_recipient,
    order_redeem_points,
    order_reject,
)
from plum import roles
from plum import selectors as plum_selectors
from plum.api.base import PlumApiView, PlumListApiView, StrictSerializer
from plum.errors import NotFoundError
from plum.models import Channel

ORDER_ACTIONS = ("cancel", "approve", "reject")


# --- output ----------------------------------------------------------------------------------


class OrderVoucherOutput(serializers.Serializer):
    """The voucher of a fulfilled order, whole: the issuing system delivers it or shows it."""

    code = serializers.CharField(read_only=True)
    expires_at = serializers.DateTimeField(read_only=True)
    status = voucher_status_field(read_only=True)


class OrderOutput(serializers.ModelSerializer):
    programme = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    campaign = serializers.PrimaryKeyRelatedField(read_only=True)
    member = serializers.SlugRelatedField(
        slug_field="external_id", read_only=True, help_text="The member's external id."
    )
    status = NamedChoiceField(
        enum_name="OrderStatusEnum", choices=Order.Status.choices, read_only=True
    )
    approval_state = NamedChoiceField(
        enum_name="OrderApprovalStateEnum", choices=Order.ApprovalState.choices, read_only=True
    )
    source = NamedChoiceField(
        enum_name="OrderSourceEnum", choices=Order.Source.choices, read_only=True
    )
    delivery_status = NamedChoiceField(
        enum_name="OrderDeliveryStatusEnum", choices=Order.DeliveryStatus.choices, read_only=True
    )
    voucher = OrderVoucherOutput(read_only=True, allow_null=True)
    points = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="Points paid, for a storefront redemption."
    )

    class Meta:
        model = Order
        fields = [
            "booking_id",
            "status",
            "approval_state",
            "programme",
            "campaign",
            "member",
            "value",
            "currency",
            "source",
            "delivery_status",
            "reference",
            "is_test",
            "points",
            "voucher",
            "created_at",
            "approved_at",
            "completed_at",
            "cancelled_at",
        ]
        read_only_fields = fields


# --- issuance --------------------------------------------------------------------------------


class RecipientInput(serializers.Serializer):
    """Contact details are checked by the member rules (E.164 phone, ISO country, e-mail):
    what they refuse is answered as invalid_recipient (422) with the fields named."""

    external_id = serializers.CharField(max_length=120)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    email = serializers.CharField(max_length=254, required=False, allow_blank=True)
    phone = serializers.CharField(max_length=32, required=False, allow_blank=True)
    country = serializers.CharField(max_length=8, required=False, allow_blank=True)
    preferred_channel = serializers.ChoiceField(
        choices=Channel.choices, required=False, allow_blank=True
    )

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class IssuanceInput(StrictSerializer):
    campaign = serializers.IntegerField(min_value=1, help_text="Campaign id.")
    recipient = RecipientInput()
    value = serializers.DecimalField(
        max_digits=14,
        decimal_places=2,
        min_value=Decimal("0.01"),
        required=False,
        help_text="For variable-value campaigns; the campaign's value by default.",
    )
    reference = serializers.CharField(
        max_length=120, required=False, allow_blank=True, help_text="The caller's own id."
    )


class IssuanceCreateApi(PlumApiView):
    """Issue one reward to one recipient (created or updated by external_id). 201 with the
    completed order and its voucher; 202 with the pending order when the campaign holds
    rewards for approval. Refusals: 409 campaign_not_active, campaign_exhausted,
    budget_exhausted, member_cap_reached, pool_exhausted; 422 invalid_recipient. Send an
    Idempotency-Key: a retry answers with the first response and issues nothing."""

    required_scope = "issue"

    @extend_schema(
        operation_id="issuances_create",
        request=IssuanceInput,
        responses={201: OrderOutput, 202: OrderOutput},
    )
    def post(self, request):
        fields = _issuance_validate(request.data)
        campaign = campaign_get_for(
            principal=request.user, campaign_id=fields["campaign"], perm=roles.MANAGE
        )
        if campaign is None:
            raise NotFoundError("No such campaign.", fields={"campaign": ["Not found."]})
        responses = []

        def respond(order: Order) -> None:
            # Rendered from the rows just written (the order with its campaign, programme,
            # member and voucher in hand, as the batch endpoint does), not read back, and
            # stored under the Idempotency-Key in the issuing transaction.
            completed = order.status == Order.Status.COMPLETED
            response = Response(
                _order_render(order),
                status=status.HTTP_201_CREATED if completed else status.HTTP_202_ACCEPTED,
            )
            responses.append(self.respond_in_transaction(response))

        order_issue_to_recipient(
            campaign=campaign,
            recipient=dict(fields["recipient"]),
            value=fields.get("value"),
            source=Order.Source.API,
            reference=fields.get("reference", ""),
            actor=request.user,
            is_test=plum_selectors.is_test_principal(request.user),
            on_issued=respond,
        )
        return responses[0]


# A serializer deep-copies its declared fields for every instance (about 0.4 ms each for the
# issuance input and for the order output): the issuance endpoint keeps one of each per thread
# (gunicorn's gthread workers serve requests on several threads) and reuses it, as the batch
# endpoint reuses one for its items.
_serializers = threading.local()


def _issuance_validate(data) -> dict:
    validator = getattr(_serializers, "issuance_input", None)
    if validator is None:
        validator = _serializers.issuance_input = IssuanceInput()
    validator.initial_data = data
    try:
        return validator.run_validation(data)
    except serializers.ValidationError as exc:
        raise serializers.ValidationError(exc.detail) from None
    finally:
        del validator.initial_data


def _order_render(order: Order) -> dict:
    renderer = getattr(_serializers, "order_render", None)
    if renderer is None:
        renderer = _serializers.order_render = OrderRenderer()
    return renderer.render(order)


class OrderRenderer:
    """What `OrderOutput(order).data` gives, without DRF's per-field machinery for each order
    (attribute lookup through `source`, the related-object checks, the nested serializer): the
    value conversions are OrderOutput's own bound fields, so the output cannot drift from it;
    tests compare the two. For the issuance endpoints, which render orders they just wrote (a
    batch renders a thousand). Not thread-safe to share: one per thread or per request."""

    _RELATED = {"programme": "slug", "member": "external_id"}

    def __init__(self):
        fields = OrderOutput().fields
        self.names = list(fields)
        self.convert = {}
        for name, field in fields.items():
            if name in self._RELATED or name in ("campaign", "voucher"):
                continue
            kind = type(field)
            if kind in (serializers.CharField, serializers.BooleanField):
                continue  # the model's value as it is (str, bool)
            self.convert[name] = field.to_representation
        voucher = fields["voucher"].fields
        self.voucher_convert = {n: f.to_representation for n, f in voucher.items()}

    def render(self, order: Order) -> dict:
        out = {}
        for name in self.names:
            if name in self._RELATED:
                related = getattr(order, name)
                out[name] = None if related is None else getattr(related, self._RELATED[name])
            elif name == "campaign":
                out[name] = order.campaign_id
            elif name == "voucher":
                voucher = order.voucher if order.voucher_id is not None else None
                out[name] = (
                    None
                    if voucher is None
                    else {
                        n: None if (v := getattr(voucher, n)) is None else convert(v)
                        for n, convert in self.voucher_convert.items()
                    }
                )
            else:
                value = getattr(order, name)
                convert = self.convert.get(name)
                out[name] = value if value is None or convert is None else convert(value)
        return out


# --- redemptions -----------------------------------------------------------------------------


class RedemptionInput(StrictSerializer):
    member = serializers.CharField(
        max_length=120, help_text="The member's external id, in the campaign's programme."
    )
    campaign = serializers.IntegerField(min_value=1, help_text="Campaign id.")
    value = serializers.DecimalField(
        max_digits=14,
        decimal_places=2,
        min_value=Decimal("0.01"),
        required=False,
        help_text="For variable-value campaigns; the campaign's value by default.",
    )
    reference = serializers.CharField(
        max_length=120, required=False, allow_blank=True, help_text="The caller's own id."
    )


class RedemptionCreateApi(PlumApiView):
    """A member spends points on a storefront campaign's reward: the points (value x the
    reward's points price, rounded up) are burned and the order fulfilled in one transaction.
    201 with the completed order. Refusals change nothing: 409 insufficient_points (with the
    balance), campaign_not_in_storefront, campaign_not_priced_in_points,
    campaign_approval_required and the issuance codes (campaign_not_active,
    campaign_exhausted, ...); 403 for a test-mode key (the ledger has no test mode). Send an
    Idempotency-Key: a retry answers with the first response and burns nothing."""

    required_scope = "redeem"

    @extend_schema(
        operation_id="redemptions_create", request=RedemptionInput, responses={201: OrderOutput}
    )
    def post(self, request):
        if plum_selectors.is_test_principal(request.user):
            # Test keys act on test data only, and points are real: refuse before anything.
            raise RedemptionTestModeError()
        data = RedemptionInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        campaign = campaign_get_for(
            principal=request.user, campaign_id=fields["campaign"], perm=roles.MANAGE
        )
        if campaign is None:
            raise NotFoundError("No such campaign.", fields={"campaign": ["Not found."]})
        member = (
            plum_selectors.member_list_for(principal=request.user, perm=roles.MANAGE)
            .filter(programme_id=campaign.programme_id, external_id=fields["member"])
            .first()
        )
        if member is None:
            raise NotFoundError("No such member.", fields={"member": ["Not found."]})
        order = order_redeem_points(
            campaign=campaign,
            member=member,
            value=fields.get("value"),
            reference=fields.get("reference", ""),
            actor=request.user,
        )
        order = selectors.order_list_for(principal=request.user, perm=roles.MANAGE).get(pk=order.pk)
        return Response(OrderOutput(order).data, status=status.HTTP_201_CREATED)


# --- orders ----------------------------------------------------------------------------------


class OrderFilter(serializers.Serializer):
    status = serializers.ChoiceField(choices=Order.Status.choices, required=False)
    approval_state = serializers.ChoiceField(choices=Order.ApprovalState.choices, required=False)
    campaign = serializers.IntegerField(required=False, min_value=1, help_text="Campaign id.")
    source = serializers.ChoiceField(choices=Order.Source.choices, required=False)
    delivery_status = serializers.ChoiceField(choices=Order.DeliveryStatus.choices, required=False)
    member = serializers.CharField(required=False, max_length=120, help_text="External id.")
    programme = serializers.SlugField(required=False, help_text="Programme slug.")
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)


class OrderListApi(mixins.ListModelMixin, PlumListApiView):
    """Orders of the key's programmes (a test key: test orders only), newest first."""

    serializer_class = OrderOutput
    required_scope = "read"

    def get_queryset(self):
        filters = OrderFilter(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        orders = selectors.order_list_for(principal=self.request.user)
        for name in ("status", "approval_state", "source", "delivery_status"):
            if f.get(name):
                orders = orders.filter(**{name: f[name]})
        if f.get("campaign"):
            orders = orders.filter(campaign_id=f["campaign"])
        if f.get("member"):
            orders = orders.filter(member__external_id=f["member"])
        if f.get("programme"):
            orders = orders.filter(programme__slug=f["programme"])
        if f.get("created_after"):
            orders = orders.filter(created_at__gte=f["created_after"])
        if f.get("created_before"):
            orders = orders.filter(created_at__lt=f["created_before"])
        return orders

    @extend_schema(operation_id="orders_list", parameters=[OrderFilter])
    def get(self, request):
        return self.list(request)


class OrderCountsFilter(serializers.Serializer):
    campaign = serializers.IntegerField(required=False, min_value=1, help_text="Campaign id.")
    programme = serializers.SlugField(required=False, help_text="Programme slug.")


class OrderCountsOutput(serializers.Serializer):
    campaign = serializers.IntegerField(source="campaign_id")
    pending = serializers.IntegerField()
    awaiting_approval = serializers.IntegerField()
    completed = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    total = serializers.IntegerField()


class OrderCountsApi(PlumApiView):
    """Orders per campaign by status, counted live (no cache), for dashboards. A test key
    counts test orders only."""

    required_scope = "read"

    @extend_schema(
        operation_id="orders_counts",
        parameters=[OrderCountsFilter],
        responses=inline_serializer(
            name="OrderCountsList", fields={"results": OrderCountsOutput(many=True)}
        ),
    )
    def get(self, request):
        filters = OrderCountsFilter(data=request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        counts = selectors.order_counts_by_campaign_for(principal=request.user)
        if f.get("campaign"):
            counts = counts.filter(campaign_id=f["campaign"])
        if f.get("programme"):
            counts = counts.filter(programme__slug=f["programme"])
        return Response({"results": OrderCountsOutput(counts, many=True).data})


def _order_for(principal, booking_id: str, perm: str) -> Order:
    order = selectors.order_get_for(principal=principal, booking_id=booking_id, perm=perm)
    if order is None:
        raise OrderNotFoundError()
    return order


class OrderDetailApi(PlumApiView):
    required_scope = "read"

    @extend_schema(operation_id="orders_retrieve", responses=OrderOutput)
    def get(self, request, booking_id: str):
        return Response(OrderOutput(_order_for(request.user, booking_id, roles.VIEW)).data)


class OrderActionInput(StrictSerializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True)


class _ActionSchema(AutoSchema):
    def get_operation_id(self):
        return f"orders_{self.view.action_name}"


class OrderActionApi(PlumApiView):
    """Cancel (a pending order, or a completed one whose voucher is unredeemed: the code is
    cancelled and the campaign's counters released), approve (fulfil a held order; governance
    may still refuse, and the order stays pending) or reject (cancel a held order)."""

    action_name = ""  # set per route: cancel, approve or reject
    required_scope = "manage"
    schema = _ActionSchema()

    @extend_schema(request=OrderActionInput, responses=OrderOutput)
    def post(self, request, booking_id: str):
        data = OrderActionInput(data=request.data or {})
        data.is_valid(raise_exception=True)
        order = _order_for(request.user, booking_id, roles.MANAGE)
        reason = data.validated_data.get("reason", "")
        if self.action_name == "approve":
            order = order_approve(order=order, actor=request.user)
        elif self.action_name == "reject":
            order = order_reject(order=order, actor=request.user, reason=reason)
        else:
            order = order_cancel(order=order, actor=request.user, reason=reason)
        order = selectors.order_list_for(principal=request.user, perm=roles.MANAGE).get(pk=order.pk)
        return Response(OrderOutput(order).data)
