"""The tickets API under /api/v1/: list (filters), create from an external system (with an
Idempotency-Key), detail with messages, transition and messages (reply / note).

Scopes: `read` or `support` to read, `support` to write. A key sees the tickets of its
programmes only: another programme's ticket is a 404 like a missing one. Tickets have no test
mode: a test key lists nothing and may not write (403 tickets_test_mode_unsupported). Views
validate the wire format, find through the selectors and call one service."""

from django.db.models import Q
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status
from rest_framework.response import Response

from campaigns.api import NamedChoiceField
from orders.selectors import order_get_for
from plum import roles
from plum import selectors as plum_selectors
from plum.api.base import PlumApiView, PlumListApiView, StrictSerializer
from plum.errors import NotFoundError
from support.errors import TicketMemberAmbiguousError, TicketNotFoundError, TicketTestModeError
from support.models import Ticket, TicketMessage
from support.selectors import ticket_list_for, ticket_messages, ticket_programmes_for
from support.services import ticket_note, ticket_open, ticket_reply, ticket_transition

READ = {"GET": ("read", "support"), "POST": "support"}


# --- output ----------------------------------------------------------------------------------


class TicketMessageOutput(serializers.ModelSerializer):
    kind = NamedChoiceField(
        enum_name="TicketMessageKindEnum", choices=TicketMessage.Kind.choices, read_only=True
    )
    author = serializers.CharField(source="author_label", read_only=True)

    class Meta:
        model = TicketMessage
        fields = ["id", "kind", "author", "body", "created_at"]
        read_only_fields = fields


class TicketOutput(serializers.ModelSerializer):
    programme = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    member = serializers.SlugRelatedField(
        slug_field="external_id", read_only=True, help_text="The member's external id."
    )
    booking_id = serializers.SerializerMethodField()
    assignee = serializers.SerializerMethodField(help_text="The agent's username, or null.")
    category = NamedChoiceField(
        enum_name="TicketCategoryEnum", choices=Ticket.Category.choices, read_only=True
    )
    priority = NamedChoiceField(
        enum_name="TicketPriorityEnum", choices=Ticket.Priority.choices, read_only=True
    )
    status = NamedChoiceField(
        enum_name="TicketStatusEnum", choices=Ticket.Status.choices, read_only=True
    )
    is_breached = serializers.BooleanField(read_only=True)

    class Meta:
        model = Ticket
        fields = [
            "id",
            "programme",
            "member",
            "booking_id",
            "category",
            "description",
            "priority",
            "status",
            "assignee",
            "created_at",
            "updated_at",
            "first_response_due_at",
            "resolution_due_at",
            "first_responded_at",
            "resolved_at",
            "closed_at",
            "paused_at",
            "paused_seconds",
            "first_response_breached_at",
            "resolution_breached_at",
            "is_breached",
            "escalated",
        ]
        read_only_fields = fields

    def get_booking_id(self, ticket) -> str | None:
        return ticket.order.booking_id if ticket.order_id else None

    def get_assignee(self, ticket) -> str | None:
        return ticket.assignee.get_username() if ticket.assignee_id else None


class TicketDetailOutput(TicketOutput):
    messages = serializers.SerializerMethodField()

    class Meta(TicketOutput.Meta):
        fields = [*TicketOutput.Meta.fields, "messages"]
        read_only_fields = fields

    @extend_schema_field(TicketMessageOutput(many=True))
    def get_messages(self, ticket) -> list[dict]:
        return TicketMessageOutput(ticket_messages(ticket=ticket), many=True).data


# --- list and create ---------------------------------------------------------------------------


class TicketFilter(serializers.Serializer):
    status = serializers.ChoiceField(choices=Ticket.Status.choices, required=False)
    priority = serializers.ChoiceField(choices=Ticket.Priority.choices, required=False)
    assignee = serializers.CharField(
        required=False, max_length=150, help_text='An agent\'s username, or "none".'
    )
    breached = serializers.BooleanField(required=False, allow_null=True, default=None)
    member = serializers.CharField(required=False, max_length=120, help_text="External id.")
    booking_id = serializers.CharField(required=False, max_length=40)
    programme = serializers.SlugField(required=False, help_text="Programme slug.")


class TicketCreateInput(StrictSerializer):
    member = serializers.CharField(max_length=120, help_text="The member's external id.")
    programme = serializers.SlugField(
        required=False, help_text="Programme slug; needed only when the member id is ambiguous."
    )
    booking_id = serializers.CharField(
        max_length=40, required=False, allow_blank=True, help_text="One of the member's orders."
    )
    category = serializers.ChoiceField(choices=Ticket.Category.choices)
    description = serializers.CharField(max_length=4000)
    priority = serializers.ChoiceField(
        choices=Ticket.Priority.choices,
        required=False,
        help_text="Defaults from the category (high for a reward problem, else normal).",
    )


def _no_test_writes(principal) -> None:
    if plum_selectors.is_test_principal(principal):
        raise TicketTestModeError()


def _tickets(principal):
    if plum_selectors.is_test_principal(principal):
        return Ticket.objects.none()
    return ticket_list_for(principal=principal)


class TicketListCreateApi(mixins.ListModelMixin, PlumListApiView):
    """GET: the tickets of the key's programmes, newest first, filtered by status, priority,
    assignee (username, or "none" for unassigned), breached (either SLA), member, booking_id,
    programme. POST: open a ticket for a member (by external id), optionally about one of their
    orders; 201 with the ticket. Refusals change nothing: 404 member or order not found (or in
    another programme), 400 invalid / member_ambiguous. Send an Idempotency-Key: a retry
    answers with the first response and opens nothing."""

    serializer_class = TicketOutput
    required_scope = READ

    def get_queryset(self):
        filters = TicketFilter(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        tickets = _tickets(self.request.user)
        for name in ("status", "priority"):
            if f.get(name):
                tickets = tickets.filter(**{name: f[name]})
        if f.get("assignee"):
            if f["assignee"].lower() == "none":
                tickets = tickets.filter(assignee__isnull=True)
            else:
                tickets = tickets.filter(assignee__username=f["assignee"])
        breached = Q(first_response_breached_at__isnull=False) | Q(
            resolution_breached_at__isnull=False
        )
        if f.get("breached") is True:
            tickets = tickets.filter(breached)
        elif f.get("breached") is False:
            tickets = tickets.exclude(breached)
        if f.get("member"):
            tickets = tickets.filter(member__external_id=f["member"])
        if f.get("booking_id"):
            tickets = tickets.filter(order__booking_id=f["booking_id"])
        if f.get("programme"):
            tickets = tickets.filter(programme__slug=f["programme"])
        return tickets

    @extend_schema(operation_id="tickets_list", parameters=[TicketFilter])
    def get(self, request):
        return self.list(request)

    @extend_schema(
        operation_id="tickets_create", request=TicketCreateInput, responses={201: TicketOutput}
    )
    def post(self, request):
        _no_test_writes(request.user)
        data = TicketCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        members = plum_selectors.member_list_for(principal=request.user).filter(
            programme__in=ticket_programmes_for(request.user).values("pk"),
            external_id=fields["member"],
        )
        if fields.get("programme"):
            members = members.filter(programme__slug=fields["programme"])
        found = list(members[:2])
        if not found:
            raise NotFoundError("No such member.", fields={"member": ["Not found."]})
        if len(found) > 1:
            raise TicketMemberAmbiguousError(fields={"programme": ["Required."]})
        member = found[0]
        order = None
        if fields.get("booking_id"):
            order = order_get_for(
                principal=request.user, booking_id=fields["booking_id"], perm=roles.VIEW
            )
            if order is None or order.member_id != member.pk:
                raise NotFoundError("No such order.", fields={"booking_id": ["Not found."]})
        ticket = ticket_open(
            member=member,
            order=order,
            category=fields["category"],
            description=fields["description"],
            priority=fields.get("priority"),
            actor=request.user,
        )
        ticket = ticket_list_for(principal=request.user).get(pk=ticket.pk)
        return Response(TicketOutput(ticket).data, status=status.HTTP_201_CREATED)


# --- one ticket --------------------------------------------------------------------------------


def _ticket_for(principal, ticket_id: int) -> Ticket:
    ticket = _tickets(principal).filter(pk=ticket_id).first()
    if ticket is None:
        raise TicketNotFoundError()
    return ticket


def _detail(principal, ticket_id: int) -> dict:
    return TicketDetailOutput(_ticket_for(principal, ticket_id)).data


class TicketDetailApi(PlumApiView):
    required_scope = READ

    @extend_schema(operation_id="tickets_retrieve", responses=TicketDetailOutput)
    def get(self, request, ticket_id: int):
        return Response(_detail(request.user, ticket_id))


class TicketTransitionInput(StrictSerializer):
    status = serializers.ChoiceField(choices=Ticket.Status.choices)


class TicketTransitionApi(PlumApiView):
    """Move the ticket along its lifecycle (open → in_progress → awaiting_member → resolved →
    closed; resolved or closed → open reopens within SUPPORT_REOPEN_DAYS). 409
    invalid_transition or ticket_reopen_window_closed; nothing changes."""

    required_scope = "support"

    @extend_schema(
        operation_id="tickets_transition",
        request=TicketTransitionInput,
        responses=TicketDetailOutput,
    )
    def post(self, request, ticket_id: int):
        _no_test_writes(request.user)
        data = TicketTransitionInput(data=request.data)
        data.is_valid(raise_exception=True)
        ticket = _ticket_for(request.user, ticket_id)
        ticket_transition(ticket=ticket, status=data.validated_data["status"], actor=request.user)
        return Response(_detail(request.user, ticket_id))


class TicketMessageInput(StrictSerializer):
    kind = serializers.ChoiceField(
        choices=[("reply", "Reply to the member (e-mailed)"), ("note", "Internal note")]
    )
    body = serializers.CharField(max_length=8000)


class TicketMessageCreateApi(PlumApiView):
    """Add a reply to the member (stored, e-mailed to the member through the outbox; the first
    one meets the first-response SLA) or an internal note. 201 with the ticket; 409
    ticket_closed for a reply on a closed ticket."""

    required_scope = "support"

    @extend_schema(
        operation_id="tickets_messages_create",
        request=TicketMessageInput,
        responses={201: TicketDetailOutput},
    )
    def post(self, request, ticket_id: int):
        _no_test_writes(request.user)
        data = TicketMessageInput(data=request.data)
        data.is_valid(raise_exception=True)
        ticket = _ticket_for(request.user, ticket_id)
        service = ticket_reply if data.validated_data["kind"] == "reply" else ticket_note
        service(ticket=ticket, body=data.validated_data["body"], actor=request.user)
        return Response(_detail(request.user, ticket_id), status=status.HTTP_201_CREATED)
