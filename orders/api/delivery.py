"""Deliveries under /api/v1/: the list (failed ones first of all, filtered by programme,
campaign, channel and reason), resend (with corrected contact details and channel), and the
providers' signed delivery receipts."""

import json

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from campaigns.api import NamedChoiceField
from orders import selectors
from orders.delivery.receipts import (
    ReceiptSignatureInvalidError,
    ReceiptSignatureMissingError,
    receipt_secret,
    receipt_verify,
)
from orders.errors import DeliveryNotFoundError
from orders.models import Delivery
from orders.services import delivery_receipt_record, delivery_resend
from plum.api.base import PlumApiView, PlumListApiView, StrictSerializer
from plum.errors import NotFoundError, PlumError
from plum.models import Channel


class DeliveryOutput(serializers.ModelSerializer):
    booking_id = serializers.CharField(source="order.booking_id", read_only=True)
    programme = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    campaign = serializers.PrimaryKeyRelatedField(read_only=True)
    member = serializers.CharField(
        source="order.member.external_id", read_only=True, help_text="The member's external id."
    )
    status = NamedChoiceField(
        enum_name="DeliveryStatusEnum", choices=Delivery.Status.choices, read_only=True
    )
    channel = serializers.ChoiceField(choices=Channel.choices, read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "booking_id",
            "programme",
            "campaign",
            "member",
            "channel",
            "destination",
            "status",
            "reason",
            "reason_detail",
            "provider",
            "provider_message_id",
            "attempts",
            "is_resend",
            "previous",
            "resent_by_label",
            "is_test",
            "created_at",
            "delivered_at",
            "failed_at",
        ]
        read_only_fields = fields


class DeliveryFilter(serializers.Serializer):
    status = serializers.ChoiceField(choices=Delivery.Status.choices, required=False)
    programme = serializers.SlugField(required=False, help_text="Programme slug.")
    campaign = serializers.IntegerField(required=False, min_value=1, help_text="Campaign id.")
    channel = serializers.ChoiceField(choices=Channel.choices, required=False)
    reason = serializers.CharField(required=False, max_length=64)
    booking_id = serializers.CharField(required=False, max_length=16)


class DeliveryListApi(mixins.ListModelMixin, PlumListApiView):
    """Deliveries of the key's programmes, newest first. `?status=failed` is the failed list a
    person works through: correct the member's details and resend."""

    serializer_class = DeliveryOutput
    required_scope = "read"

    def get_queryset(self):
        filters = DeliveryFilter(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        deliveries = selectors.delivery_list_for(principal=self.request.user)
        for name in ("status", "channel", "reason"):
            if f.get(name):
                deliveries = deliveries.filter(**{name: f[name]})
        if f.get("campaign"):
            deliveries = deliveries.filter(campaign_id=f["campaign"])
        if f.get("programme"):
            deliveries = deliveries.filter(programme__slug=f["programme"])
        if f.get("booking_id"):
            deliveries = deliveries.filter(order__booking_id=f["booking_id"].strip().upper())
        return deliveries

    @extend_schema(operation_id="deliveries_list", parameters=[DeliveryFilter])
    def get(self, request):
        return self.list(request)


class DeliveryResendInput(StrictSerializer):
    channel = serializers.ChoiceField(choices=Channel.choices, required=False)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    email = serializers.CharField(max_length=254, required=False, allow_blank=True)
    phone = serializers.CharField(max_length=32, required=False, allow_blank=True)
    country = serializers.CharField(max_length=8, required=False, allow_blank=True)


class DeliveryResendApi(PlumApiView):
    """Send the delivery's order again, as a new delivery: the corrected contact details given
    update the member first (audited), then the voucher goes to the member's address for the
    channel (`channel`, else the previous delivery's). 201 with the new delivery. Refusals
    change nothing: 409 delivery_in_progress, order_not_deliverable; 422 invalid_recipient,
    missing_contact."""

    required_scope = ("manage", "support")

    @extend_schema(
        operation_id="deliveries_resend",
        request=DeliveryResendInput,
        responses={201: DeliveryOutput},
    )
    def post(self, request, delivery_id: int):
        data = DeliveryResendInput(data=request.data or {})
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        delivery = (
            selectors.delivery_resendable_for(principal=request.user).filter(pk=delivery_id).first()
        )
        if delivery is None:
            raise DeliveryNotFoundError()
        channel = fields.pop("channel", None)
        new = delivery_resend(
            order=delivery.order, channel=channel, contact=fields or None, actor=request.user
        )
        new = selectors.delivery_list_for(principal=request.user).filter(pk=new.pk).first() or new
        return Response(DeliveryOutput(new).data, status=201)


class DeliveryReceiptInput(StrictSerializer):
    message_id = serializers.CharField(max_length=128, help_text="The provider's message id.")
    status = serializers.ChoiceField(choices=["delivered", "failed"])
    reason = serializers.RegexField(r"^[A-Za-z0-9_.-]{1,64}$", required=False)
    detail = serializers.CharField(max_length=500, required=False, allow_blank=True)
    occurred_at = serializers.DateTimeField(required=False)


class ReceiptNotAuthenticatedError(PlumError):
    code = "signature_missing"
    status = 401
    message = "Send X-Plum-Timestamp and X-Plum-Signature headers."


class ReceiptSignatureError(PlumError):
    code = "signature_invalid"
    status = 403
    message = "The signature is wrong or its timestamp is outside the tolerance."


class ReceiptMalformedError(PlumError):
    code = "malformed_json"
    status = 400
    message = "The body is not JSON."


class DeliveryReceiptApi(PlumApiView):
    """A provider's delivery receipt, signed with its shared secret (docs/delivery.md). 200 with
    the delivery's status; the same receipt again changes nothing. 401 without a signature, 403
    with a bad or stale one, 404 for an unknown provider or message id."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="delivery_receipts_create",
        request=DeliveryReceiptInput,
        responses={200: DeliveryOutput},
    )
    def post(self, request, provider: str):
        secret = receipt_secret(provider)
        if secret is None:
            raise NotFoundError("No such provider.")
        raw = request._request.body  # the signed bytes, before any parsing
        try:
            receipt_verify(
                secret=secret,
                timestamp=request.headers.get("X-Plum-Timestamp"),
                signature=request.headers.get("X-Plum-Signature"),
                body=raw,
            )
        except ReceiptSignatureMissingError as exc:
            raise ReceiptNotAuthenticatedError() from exc
        except ReceiptSignatureInvalidError as exc:
            raise ReceiptSignatureError() from exc
        try:
            body = json.loads(raw or b"null")
        except ValueError as exc:
            raise ReceiptMalformedError() from exc
        data = DeliveryReceiptInput(data=body if isinstance(body, dict) else {})
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        delivery = delivery_receipt_record(
            provider=provider,
            provider_message_id=fields["message_id"],
            status=fields["status"],
            reason=fields.get("reason", ""),
            detail=fields.get("detail", ""),
        )
        if delivery is None:
            raise NotFoundError("No delivery of this provider has that message id.")
        return Response({"id": delivery.pk, "status": delivery.status})
