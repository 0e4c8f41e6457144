"""Events under /api/v1/: an external system posts what happened (a purchase, a visit, a
fuel-up); the programme's workflow rules decide what the member gets, and the answer says
what each rule did and why.

`POST /api/v1/events`: 201 with the stored event and its outcomes; a repeated event id (the
caller's, unique per API client forever) answers 200 with the original event and outcomes and
changes nothing. `GET /api/v1/events/{event_id}`: the stored outcome. Test API keys create test
events: their rewards are test orders, and points rules are refused
(`points_test_mode_unsupported`) because the ledger has no test wallets."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from orders import selectors
from orders.api.orders import RecipientInput
from orders.models import Event, EventRuleOutcome
from orders.models.rules import EVENT_TYPE_RE
from orders.services import event_ingest
from plum import selectors as plum_selectors
from plum.api.base import PlumApiView, StrictSerializer
from plum.errors import InvalidInputError, NotFoundError, PlumError
from plum.models import ApiClient


class EventApiClientRequiredError(PlumError):
    code = "api_client_required"
    status = 403
    message = "Events are posted by API clients (their event ids are unique per client)."


class EventNotFoundError(NotFoundError):
    code = "event_not_found"
    message = "No such event."


# --- output ------------------------------------------------------------------------------


class EventOutcomeOutput(serializers.ModelSerializer):
    """What one rule did with the event. Made from the stored row only, so a replay answers
    exactly as the first time."""

    booking_id = serializers.CharField(
        source="order.booking_id", read_only=True, allow_null=True, default=None
    )
    reason = serializers.CharField(source="reason_code", read_only=True)

    class Meta:
        model = EventRuleOutcome
        fields = [
            "position",
            "rule",
            "rule_name",
            "action",
            "matched",
            "outcome",
            "reason",
            "failed_condition",
            "detail",
            "code",
            "booking_id",
            "points",
            "points_transaction",
            "conditions",
        ]
        read_only_fields = fields


class EventOutput(serializers.ModelSerializer):
    id = serializers.IntegerField(read_only=True, help_text="Plum's id for the event.")
    event_id = serializers.CharField(read_only=True, help_text="The caller's id for the event.")
    type = serializers.CharField(source="event_type", read_only=True)
    programme = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    member = serializers.SlugRelatedField(
        slug_field="external_id", read_only=True, help_text="The member's external id."
    )
    outcomes = EventOutcomeOutput(many=True, read_only=True)

    class Meta:
        model = Event
        fields = [
            "id",
            "event_id",
            "type",
            "occurred_at",
            "received_at",
            "programme",
            "member",
            "data",
            "is_test",
            "result",
            "outcomes",
        ]
        read_only_fields = fields


# --- input -------------------------------------------------------------------------------


class EventInput(StrictSerializer):
    event_id = serializers.CharField(
        max_length=120, help_text="Your id for this event: unique per API key, forever."
    )
    type = serializers.RegexField(
        EVENT_TYPE_RE, max_length=64, help_text="The event type the rules listen to."
    )
    occurred_at = serializers.DateTimeField()
    member = RecipientInput(help_text="Created or updated by external_id, like a recipient.")
    data = serializers.JSONField(required=False, default=dict, help_text="A JSON object.")
    programme = serializers.SlugField(
        required=False, help_text="Programme slug; needed when the key has several."
    )

    def validate_event_id(self, value):
        if not value.isprintable() or value != value.strip():
            raise serializers.ValidationError("Printable characters, no surrounding spaces.")
        return value

    def validate_data(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("A JSON object.")
        return value


def _stored(event: Event) -> Event:
    return (
        Event.objects.select_related("programme", "member")
        .prefetch_related("outcomes__order")
        .get(pk=event.pk)
    )


def _programme_for(client: ApiClient, slug: str | None):
    programmes = plum_selectors.programmes_for(client)
    if slug:
        programme = programmes.filter(slug=slug).first()
        if programme is None:
            raise NotFoundError("No such programme.", fields={"programme": ["Not found."]})
        return programme
    found = list(programmes[:2])
    if len(found) != 1:
        raise InvalidInputError(
            "This key serves several programmes: name the programme.",
            fields={"programme": ["This field is required."]},
        )
    return found[0]


class EventCreateApi(PlumApiView):
    """Post an event. The programme's active rules for its type run in priority order; each
    answers in `outcomes` (matched or not and why; issued with booking id, held for approval,
    refused with a code, or points awarded with the ledger transaction). 201 for a new event;
    200 with the original outcome for an event id this key already sent (nothing changes,
    however late the repeat). 422 invalid_recipient for bad member details (nothing stored)."""

    required_scope = "issue"

    @extend_schema(
        operation_id="events_create",
        request=EventInput,
        responses={201: EventOutput, 200: EventOutput},
    )
    def post(self, request):
        if not isinstance(request.user, ApiClient):
            raise EventApiClientRequiredError()
        data = EventInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        event, created = event_ingest(
            client=request.user,
            programme=_programme_for(request.user, fields.get("programme")),
            event_id=fields["event_id"],
            event_type=fields["type"],
            occurred_at=fields["occurred_at"],
            member=dict(fields["member"]),
            data=fields["data"],
        )
        return Response(
            EventOutput(_stored(event)).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class EventDetailApi(PlumApiView):
    """An event this key sent, by its event id, with what each rule did."""

    required_scope = "read"

    @extend_schema(operation_id="events_retrieve", responses=EventOutput)
    def get(self, request, event_id: str):
        event = selectors.event_get_for(principal=request.user, event_id=event_id)
        if event is None and event_id.endswith("/"):
            # The path route also takes the trailing slash every API path accepts.
            event = selectors.event_get_for(principal=request.user, event_id=event_id[:-1])
        if event is None:
            raise EventNotFoundError()
        return Response(EventOutput(_stored(event)).data)
