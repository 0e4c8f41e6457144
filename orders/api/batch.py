"""POST /api/v1/issuances/batch: up to 1,000 issuances in one request, one result per item.

The view checks each item's wire format (the single endpoint's IssuanceInput), finds the
campaigns the key may issue from with one query, and hands the rest to
`orders.services.order_issue_batch`, which decides every item in one set-based transaction."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from campaigns.selectors import campaign_list_for
from orders.api.orders import IssuanceInput, OrderOutput, OrderRenderer
from orders.errors import BatchTooLargeError
from orders.models import Order
from orders.services import IssuanceRequest, order_issue_batch
from orders.services.batch import MAX_BATCH
from plum import roles
from plum import selectors as plum_selectors
from plum.api.base import PlumApiView, StrictSerializer
from plum.api.errors import api_exception_handler
from plum.errors import NotFoundError


class IssuanceBatchInput(StrictSerializer):
    items = serializers.ListField(
        child=serializers.JSONField(),
        allow_empty=False,
        help_text=f"1 to {MAX_BATCH:,} issuances, each shaped as POST /api/v1/issuances.",
    )

    def validate_items(self, items):
        if len(items) > MAX_BATCH:
            raise BatchTooLargeError(
                f"A batch holds at most {MAX_BATCH:,} items; this one has {len(items):,}.",
                fields={"items": [f"At most {MAX_BATCH:,} items."]},
                limit=MAX_BATCH,
                given=len(items),
            )
        return items


def _result_schema():
    return inline_serializer(
        "IssuanceBatchResult",
        {
            "index": serializers.IntegerField(),
            "status": serializers.IntegerField(help_text="What the single endpoint answers."),
            "order": OrderOutput(required=False),
            "error": serializers.DictField(required=False, help_text="The API's error shape."),
        },
        many=True,
    )


def _error(exc: Exception) -> tuple[int, dict]:
    response = api_exception_handler(exc, {})
    return response.status_code, response.data["error"]


class IssuanceBatchCreateApi(PlumApiView):
    """Issue up to 1,000 rewards in one request. 200 with `results`, one per item in order:
    `{"index", "status": 201, "order"}` (202 for an order held for approval) or
    `{"index", "status", "error": {"code", "message", "fields"}}` with the single endpoint's
    codes (campaign_not_active, campaign_exhausted, budget_exhausted, member_cap_reached,
    pool_exhausted, invalid_recipient, invalid, not_found). Items are decided independently;
    over 1,000 items is 422 batch_too_large and issues nothing. Send an Idempotency-Key: a
    retry answers with the first response and issues nothing."""

    required_scope = "issue"

    @extend_schema(
        operation_id="issuances_batch_create",
        request=IssuanceBatchInput,
        responses={
            200: inline_serializer(
                "IssuanceBatchOutput",
                {
                    "results": _result_schema(),
                    "accepted": serializers.IntegerField(),
                    "refused": serializers.IntegerField(),
                },
            )
        },
    )
    def post(self, request):
        data = IssuanceBatchInput(data=request.data)
        data.is_valid(raise_exception=True)
        raw_items = data.validated_data["items"]
        results: list[tuple[int, dict] | None] = [None] * len(raw_items)
        parsed: dict[int, dict] = {}
        # One validator for every item: a serializer's fields are deep-copied per instance,
        # which would cost more than the whole issuance of 1,000 items.
        validator = IssuanceInput()
        for index, raw in enumerate(raw_items):
            validator.initial_data = raw
            try:
                parsed[index] = validator.run_validation(raw)
            except exceptions.ValidationError as exc:
                results[index] = _error(exceptions.ValidationError(exc.detail))
        campaigns = campaign_list_for(principal=request.user, perm=roles.MANAGE).in_bulk(
            list({fields["campaign"] for fields in parsed.values()})
        )
        requests, positions = [], []
        for index, fields in parsed.items():
            campaign = campaigns.get(fields["campaign"])
            if campaign is None:
                results[index] = _error(
                    NotFoundError("No such campaign.", fields={"campaign": ["Not found."]})
                )
                continue
            requests.append(
                IssuanceRequest(
                    campaign=campaign,
                    recipient=dict(fields["recipient"]),
                    value=fields.get("value"),
                    reference=fields.get("reference", ""),
                )
            )
            positions.append(index)
        outcomes = order_issue_batch(
            requests=requests,
            source=Order.Source.API,
            actor=request.user,
            is_test=plum_selectors.is_test_principal(request.user),
        )
        # Rendered from the rows just written (one renderer for the list), not read back.
        renderer = OrderRenderer()
        rendered = iter([renderer.render(o) for o in outcomes if isinstance(o, Order)])
        for index, outcome in zip(positions, outcomes, strict=True):
            if isinstance(outcome, Order):
                status = 201 if outcome.status == Order.Status.COMPLETED else 202
                results[index] = (status, next(rendered))
            else:
                results[index] = _error(outcome)
        body = []
        for index, (status, payload) in enumerate(results):
            key = "order" if status < 300 else "error"
            body.append({"index": index, "status": status, key: payload})
        accepted = sum(1 for status, _ in results if status < 300)
        return Response({"results": body, "accepted": accepted, "refused": len(body) - accepted})
