"""POST /api/v1/issuances/batch: up to 1,000 issuances in one request, one result per item.

The view checks each item's wire format (the single endpoint's IssuanceInput), finds the
campaigns the key may issue from with one query, and hands the rest to
`orders.services.order_issue_batch`, which decides every item in one set-based transaction.

Two shortcuts keep the per-item cost low, each proven equal to what it stands for by tests
(tests/orders/test_batch_fast_paths.py):
- `issuance_fast`: the common well-formed item checked by hand, as strictly as IssuanceInput
  (the same limits, trimming and character rules; the value through IssuanceInput's own field);
  any item it does not accept goes through IssuanceInput, which words the refusal;
- `BatchOrderRenderer`: OrderRenderer with each field's conversion remembered per value (the
  orders of a batch share most values: status, campaign, value, timestamps)."""

import re

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
from plum.models import Channel

# --- the fast path for well-formed items -----------------------------------------------------

# (max_length, allow_blank) of RecipientInput's character fields and IssuanceInput.reference;
# preferred_channel is a choice field (no trimming).
_RECIPIENT_CHARS = {
    "external_id": (120, False),
    "name": (200, True),
    "email": (254, True),
    "phone": (32, True),
    "country": (8, True),
}
_REFERENCE_MAX = 120
_ITEM_KEYS = frozenset(("campaign", "recipient", "value", "reference"))
_RECIPIENT_KEYS = frozenset((*_RECIPIENT_CHARS, "preferred_channel"))
_CHANNELS = frozenset(Channel.values)
# What DRF's CharField validators refuse: NUL, and surrogate code points.
_PROHIBITED = re.compile("[\x00\ud800-\udfff]")


def issuance_fast(raw, value_field) -> dict | None:
    """IssuanceInput's validated data for an item it accepts, checked by hand: a dict with only
    known keys; campaign an int >= 1; recipient a dict of known keys whose values are strings,
    trimmed as DRF trims them, within the same lengths, without NUL or surrogates, external_id
    not blank, preferred_channel blank or a channel; reference likewise; value through
    IssuanceInput's own DecimalField (`value_field`). None when any check fails: the caller
    then runs IssuanceInput, which refuses or accepts it and words the refusal."""
    if type(raw) is not dict or not raw.keys() <= _ITEM_KEYS:
        return None
    campaign = raw.get("campaign")
    recipient = raw.get("recipient")
    if type(campaign) is not int or campaign < 1 or type(recipient) is not dict:
        return None
    if not recipient.keys() <= _RECIPIENT_KEYS:
        return None
    out = {}
    for name, v in recipient.items():
        if type(v) is not str:
            return None
        if name == "preferred_channel":
            if v and v not in _CHANNELS:
                return None
            out[name] = v
            continue
        v = v.strip()
        limit, allow_blank = _RECIPIENT_CHARS[name]
        if (not v and not allow_blank) or len(v) > limit or _PROHIBITED.search(v):
            return None
        out[name] = v
    if "external_id" not in out:
        return None
    fields = {"campaign": campaign, "recipient": out}
    if "reference" in raw:
        reference = raw["reference"]
        if type(reference) is not str:
            return None
        reference = reference.strip()
        if len(reference) > _REFERENCE_MAX or _PROHIBITED.search(reference):
            return None
        fields["reference"] = reference
    if "value" in raw:
        try:
            fields["value"] = value_field.run_validation(raw["value"])
        except exceptions.ValidationError:
            return None
    return fields


class BatchOrderRenderer(OrderRenderer):
    """OrderRenderer's output, with each conversion (OrderOutput's own bound fields) computed
    once per distinct value of the request: keyed by type and value, so equal values of
    different types never share an answer. One per request."""

    _PLAIN, _CONVERTED, _RELATION, _CAMPAIGN, _VOUCHER = range(5)

    def __init__(self):
        super().__init__()
        self.plan = []
        for name in self.names:
            if name in self._RELATED:
                self.plan.append((name, self._RELATION, self._RELATED[name], None))
            elif name == "campaign":
                self.plan.append((name, self._CAMPAIGN, None, None))
            elif name == "voucher":
                self.plan.append((name, self._VOUCHER, None, None))
            elif name in self.convert:
                self.plan.append((name, self._CONVERTED, self.convert[name], {}))
            else:
                self.plan.append((name, self._PLAIN, None, None))
        self.voucher_plan = [(n, c, {}) for n, c in self.voucher_convert.items()]

    def render(self, order: Order) -> dict:
        out = {}
        values = order.__dict__
        for name, kind, how, memo in self.plan:
            if kind == self._PLAIN:
                out[name] = values[name] if name in values else getattr(order, name)
            elif kind == self._CONVERTED:
                value = values[name] if name in values else getattr(order, name)
                if value is None:
                    out[name] = None
                    continue
                key = (type(value), value)
                converted = memo.get(key, _MISSING)
                if converted is _MISSING:
                    converted = memo[key] = how(value)
                out[name] = converted
            elif kind == self._RELATION:
                related = getattr(order, name)
                out[name] = None if related is None else getattr(related, how)
            elif kind == self._CAMPAIGN:
                out[name] = order.campaign_id
            else:
                voucher = order.voucher if order.voucher_id is not None else None
                if voucher is None:
                    out[name] = None
                    continue
                rendered = {}
                for n, convert, vmemo in self.voucher_plan:
                    v = getattr(voucher, n)
                    rendered[n] = None if v is None else _memo(vmemo, convert, v)
                out[name] = rendered
        return out


_MISSING = object()


def _memo(memo: dict, convert, value):
    key = (type(value), value)
    try:
        return memo[key]
    except KeyError:
        out = memo[key] = convert(value)
        return out


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
        value_field = validator.fields["value"]
        for index, raw in enumerate(raw_items):
            fields = issuance_fast(raw, value_field)
            if fields is not None:
                parsed[index] = fields
                continue
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
        renderer = BatchOrderRenderer()
        errors: dict[int, tuple[int, dict]] = {}  # the service refuses a group with one error
        for index, outcome in zip(positions, outcomes, strict=True):
            if isinstance(outcome, Order):
                status = 201 if outcome.status == Order.Status.COMPLETED else 202
                results[index] = (status, renderer.render(outcome))
            else:
                error = errors.get(id(outcome))
                if error is None:
                    error = errors[id(outcome)] = _error(outcome)
                results[index] = error
        body = []
        for index, (status, payload) in enumerate(results):
            key = "order" if status < 300 else "error"
            body.append({"index": index, "status": status, key: payload})
        accepted = sum(1 for status, _ in results if status < 300)
        return Response({"results": body, "accepted": accepted, "refused": len(body) - accepted})
