"""Points API: award points to a member (HR systems' milestone awards), and read a member's
wallet with its ledger. A member of a programme the caller may not act on is 404, exactly as
one that does not exist."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from plum import roles, selectors
from plum.api.base import PlumApiView, PlumListApiView, StrictSerializer
from plum.api.pagination import PlumCursorPagination
from plum.errors import InvalidIdempotencyKeyError, InvalidInputError, NotFoundError
from plum.models import ApiClient, Member
from wallets.errors import PointsTestModeError
from wallets.models import MAX_POINTS, LedgerTransaction, Posting, Reason
from wallets.selectors import wallet_get, wallet_posting_list
from wallets.services import points_earn

API_EARN_REASONS = [Reason.MILESTONE_AWARD, Reason.PROGRAMME_RULE]
MAX_API_KEY = 200  # the ledger key adds the caller's tag, within the column's 255


programme_param = OpenApiParameter(
    "programme", str, description="Programme slug, when the external id exists in several."
)


def member_get_guarded(*, principal, external_id: str, programme: str | None, perm: str) -> Member:
    """The member with this external id among the programmes where `principal` holds `perm`;
    404 for a missing member and a forbidden one alike."""
    members = selectors.member_list_for(principal=principal, perm=perm).filter(
        external_id=external_id
    )
    if programme:
        members = members.filter(programme__slug=programme)
    found = list(members[:2])
    if not found:
        raise NotFoundError("No such member.")
    if len(found) > 1:
        raise InvalidInputError(
            "This external id exists in several programmes: name the programme.",
            fields={"programme": ["This field is required."]},
        )
    return found[0]


class PointsInput(StrictSerializer):
    programme = serializers.SlugField(required=False, help_text="Needed when the key has several.")
    points = serializers.IntegerField(min_value=1, max_value=MAX_POINTS)
    reason = serializers.ChoiceField(choices=API_EARN_REASONS, default=Reason.MILESTONE_AWARD)
    reference = serializers.CharField(
        max_length=120, help_text="What the award is for (the HR system's id): searchable."
    )
    note = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")


class PointsReceipt(serializers.Serializer):
    """Made from the transaction alone, so a replay answers exactly as the first time."""

    transaction = serializers.IntegerField()
    member = serializers.CharField()
    programme = serializers.CharField()
    kind = serializers.CharField()
    reason = serializers.CharField()
    reference = serializers.CharField()
    points = serializers.IntegerField()
    balance_after = serializers.IntegerField()
    created_at = serializers.DateTimeField()


def _receipt(txn: LedgerTransaction, member: Member) -> dict:
    leg = txn.postings.get(account__member=member)
    return PointsReceipt(
        {
            "transaction": txn.pk,
            "member": member.external_id,
            "programme": member.programme.slug,
            "kind": txn.kind,
            "reason": txn.reason,
            "reference": txn.reference,
            "points": leg.amount,
            "balance_after": leg.balance_after,
            "created_at": txn.created_at,
        }
    ).data


def _ledger_key(request) -> str:
    """The ledger's idempotency key for this request: the caller's Idempotency-Key, scoped to
    the caller, so two systems' keys never meet."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        raise InvalidInputError(
            "Send an Idempotency-Key header: a retry with the same key awards the points once.",
            fields={"Idempotency-Key": ["This header is required."]},
        )
    if not 1 <= len(key) <= MAX_API_KEY or not all(32 < ord(ch) < 127 for ch in key):
        raise InvalidIdempotencyKeyError(
            f"The Idempotency-Key header must be 1 to {MAX_API_KEY} printable ASCII characters."
        )
    principal = request.user
    tag = f"c{principal.pk}" if isinstance(principal, ApiClient) else f"u{principal.pk}"
    return f"api:{tag}:{key}"


class PointsEarnApi(PlumApiView):
    """Award points to a member: 201 with the receipt; the same Idempotency-Key again answers
    the first receipt and awards nothing more."""

    required_scope = ("issue", "manage")

    @extend_schema(
        operation_id="members_points_earn",
        request=PointsInput,
        responses={201: PointsReceipt, 200: PointsReceipt},
    )
    def post(self, request, external_id: str):
        if selectors.is_test_principal(request.user):
            # Test keys act on test data only, and points are real: refuse before anything.
            raise PointsTestModeError()
        data = PointsInput(data=request.data)
        data.is_valid(raise_exception=True)
        f = data.validated_data
        key = _ledger_key(request)
        member = member_get_guarded(
            principal=request.user,
            external_id=external_id,
            programme=f.get("programme"),
            perm=roles.MANAGE,
        )
        txn, created = points_earn(
            member=member,
            points=f["points"],
            reason=f["reason"],
            reference=f["reference"],
            note=f["note"],
            idempotency_key=key,
            actor=request.user,
        )
        return Response(
            _receipt(txn, member),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class LedgerEntryOutput(serializers.ModelSerializer):
    transaction = serializers.IntegerField(source="transaction_id")
    kind = serializers.CharField(source="transaction.kind")
    reason = serializers.CharField(source="transaction.reason")
    reference = serializers.CharField(source="transaction.reference")
    reverses = serializers.IntegerField(source="transaction.reverses_id", allow_null=True)
    points = serializers.IntegerField(source="amount")
    created_at = serializers.DateTimeField(source="transaction.created_at")

    class Meta:
        model = Posting
        fields = [
            "id",
            "transaction",
            "kind",
            "reason",
            "reference",
            "reverses",
            "points",
            "balance_after",
            "created_at",
        ]
        read_only_fields = fields


class WalletPagination(PlumCursorPagination):
    ordering = "-id"


class WalletApi(PlumListApiView):
    """A member's balance and ledger, newest first, paged with a cursor (`next`)."""

    required_scope = "read"
    serializer_class = LedgerEntryOutput
    pagination_class = WalletPagination

    @extend_schema(
        operation_id="members_wallet_retrieve",
        parameters=[programme_param],
        responses=inline_serializer(
            "WalletOutput",
            {
                "member": serializers.CharField(),
                "programme": serializers.CharField(),
                "balance": serializers.IntegerField(),
                "next": serializers.URLField(allow_null=True),
                "previous": serializers.URLField(allow_null=True),
                "ledger": LedgerEntryOutput(many=True),
            },
        ),
    )
    def get(self, request, external_id: str):
        member = member_get_guarded(
            principal=request.user,
            external_id=external_id,
            programme=request.query_params.get("programme"),
            perm=roles.VIEW,
        )
        wallet = wallet_get(member=member)
        page = self.paginate_queryset(wallet_posting_list(wallet=wallet))
        return Response(
            {
                "member": member.external_id,
                "programme": member.programme.slug,
                "balance": wallet.balance if wallet else 0,
                "next": self.paginator.get_next_link(),
                "previous": self.paginator.get_previous_link(),
                "ledger": LedgerEntryOutput(page, many=True).data,
            }
        )
