"""The campaigns API under /api/v1/: the reward catalog, campaigns and their codes, and the
voucher lifecycle (status, redemption, flags, bulk extend and recover).

Views validate the wire format, find what the principal may see through the selectors (404
for anything outside scope) and call one service; they write nothing themselves. Test API
keys act on test data only: they see and redeem test vouchers, generate and import test codes,
and may not change live campaign set-up."""

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.urls import reverse
from django.utils.http import parse_header_parameters
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent, build_choice_field
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, mixins, parsers, serializers, status
from rest_framework.response import Response

from campaigns import selectors
from campaigns.models import Campaign, Merchant, Redemption, Reward, Voucher, VoucherStatus
from campaigns.services.campaigns import (
    campaign_create,
    campaign_transition,
    campaign_update,
)
from campaigns.services.codes import MAX_GENERATE, codes_generate, codes_import
from campaigns.services.lookups import voucher_get_guarded, vouchers_get_guarded
from campaigns.services.vouchers import (
    voucher_flag,
    voucher_redeem,
    voucher_unflag,
    vouchers_extend,
    vouchers_extend_campaign,
    vouchers_recover,
)
from plum import roles
from plum import selectors as plum_selectors
from plum.api.base import PlumApiView, PlumListApiView, StrictSerializer
from plum.api.views import JobOutput, programme_for_write
from plum.errors import InvalidInputError, NotFoundError, PlumError
from plum.models import ApiClient, Channel, Job

# Codes one bulk request may name.
MAX_CODES_PER_REQUEST = 1000
# A campaign-wide extension touches the codes members hold unless the caller says otherwise:
# pool codes and expired codes are extended only when asked for by status.
DEFAULT_EXTEND_STATUSES = [VoucherStatus.ACTIVE, VoucherStatus.PARTIALLY_REDEEMED]


class TestKeyLiveDataError(PlumError):
    code = "permission_denied"
    status = 403
    message = "A test API key acts on test data only."


# --- shared fields and helpers -------------------------------------------------------------


class NamedChoiceField(serializers.ChoiceField):
    """A choice field documented as one named enum component, so that fields called `status`
    of different entities (jobs, campaigns, vouchers) do not collide in the schema."""

    def __init__(self, *, enum_name: str, **kwargs):
        self.enum_name = enum_name
        super().__init__(**kwargs)


class NamedChoiceFieldExtension(OpenApiSerializerFieldExtension):
    target_class = NamedChoiceField
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        field = self.target
        schema = build_choice_field(field)
        schema.pop("x-spec-enum-id", None)
        component = ResolvedComponent(
            name=field.enum_name, type=ResolvedComponent.SCHEMA, object=field.enum_name
        )
        component.schema = schema
        auto_schema.registry.register_on_missing(component)
        return component.ref


def voucher_status_field(**kwargs) -> NamedChoiceField:
    return NamedChoiceField(enum_name="VoucherStatusEnum", choices=VoucherStatus.choices, **kwargs)


def campaign_status_field(**kwargs) -> NamedChoiceField:
    return NamedChoiceField(
        enum_name="CampaignStatusEnum", choices=Campaign.Status.choices, **kwargs
    )


def _refuse_test_key(principal, message: str) -> None:
    if plum_selectors.is_test_principal(principal):
        raise TestKeyLiveDataError(message)


def _code_mode(principal, requested: bool | None) -> bool:
    """Whether new codes are test codes: what the caller asked, by default its key's mode. A
    test key may not put live codes into a pool."""
    is_test_key = plum_selectors.is_test_principal(principal)
    if requested is None:
        return is_test_key
    if is_test_key and not requested:
        raise TestKeyLiveDataError(
            "A test API key generates and imports test codes only.",
            fields={"test": ["Must be true with a test API key."]},
        )
    return requested


def _campaign_for(principal, campaign_id, perm: str) -> Campaign:
    campaign = selectors.campaign_get_for(principal=principal, campaign_id=campaign_id, perm=perm)
    if campaign is None:
        raise NotFoundError("No such campaign.")
    return campaign


def _vouchers_for(principal, *perms: str):
    """Vouchers the principal may act on with any of `perms` (API clients: their programmes;
    staff: the programmes where their role grants one of them)."""
    vouchers = selectors.voucher_list_for(principal=principal, perm=perms[0])
    if not isinstance(principal, ApiClient):
        for perm in perms[1:]:
            vouchers = vouchers | selectors.voucher_list_for(principal=principal, perm=perm)
    return vouchers.select_related("member")


# --- catalog ---------------------------------------------------------------------------------


class MerchantOutput(serializers.ModelSerializer):
    class Meta:
        model = Merchant
        fields = ["id", "name"]


class RewardOutput(serializers.ModelSerializer):
    merchant = MerchantOutput(read_only=True)
    denominations = serializers.ListField(
        child=serializers.DecimalField(max_digits=14, decimal_places=2), read_only=True
    )

    class Meta:
        model = Reward
        fields = [
            "id",
            "sku",
            "name",
            "description",
            "kind",
            "merchant",
            "country",
            "currency",
            "denominations",
            "min_value",
            "max_value",
            "points_price",
            "is_active",
        ]


class RewardFilter(serializers.Serializer):
    country = serializers.CharField(required=False, min_length=2, max_length=2)
    kind = serializers.ChoiceField(choices=Reward.Kind.choices, required=False)
    merchant = serializers.IntegerField(required=False, min_value=1, help_text="Merchant id.")
    q = serializers.CharField(required=False, max_length=100, help_text="Name or merchant.")


class RewardListApi(mixins.ListModelMixin, PlumListApiView):
    """The catalog: active rewards, shared by every programme."""

    serializer_class = RewardOutput
    required_scope = "read"

    def get_queryset(self):
        filters = RewardFilter(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        return selectors.reward_list(
            country=f.get("country"),
            kind=f.get("kind"),
            merchant_id=f.get("merchant"),
            q=f.get("q"),
        )

    @extend_schema(operation_id="rewards_list", parameters=[RewardFilter])
    def get(self, request):
        return self.list(request)


class RewardDetailApi(PlumApiView):
    """One reward of the catalog, retired ones included (campaigns may still name them)."""

    required_scope = "read"

    @extend_schema(operation_id="rewards_retrieve", responses=RewardOutput)
    def get(self, request, reward_id: int):
        reward = selectors.reward_list(active_only=False).filter(pk=reward_id).first()
        if reward is None:
            raise NotFoundError("No such reward.")
        return Response(RewardOutput(reward).data)


# --- campaigns -------------------------------------------------------------------------------


class CampaignOutput(serializers.ModelSerializer):
    programme = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    reward = serializers.PrimaryKeyRelatedField(read_only=True)
    status = campaign_status_field(read_only=True)
    # Blank means "the programme's default"; declared so the schema allows "".
    default_channel = serializers.ChoiceField(
        choices=Channel.choices, allow_blank=True, read_only=True
    )

    class Meta:
        model = Campaign
        fields = [
            "id",
            "programme",
            "name",
            "reward",
            "value",
            "currency",
            "starts_at",
            "ends_at",
            "status",
            "max_rewards",
            "budget",
            "per_member_cap",
            "approval_mode",
            "code_source",
            "code_prefix",
            "code_length",
            "expiry_days",
            "expiry_date",
            "default_channel",
            "in_storefront",
            "issued_count",
            "issued_value",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


_MONEY = {"max_digits": 14, "decimal_places": 2}


class CampaignUpdateInput(StrictSerializer):
    """The fields campaign_update may change (CAMPAIGN_UPDATE_FIELDS); any other field of a
    campaign is refused by name, never ignored."""

    name = serializers.CharField(max_length=200)
    starts_at = serializers.DateTimeField(help_text="Only while the campaign is a draft.")
    ends_at = serializers.DateTimeField(allow_null=True)
    max_rewards = serializers.IntegerField(allow_null=True, min_value=0)
    budget = serializers.DecimalField(**_MONEY, allow_null=True, min_value=Decimal("0"))
    per_member_cap = serializers.IntegerField(allow_null=True, min_value=0)
    approval_mode = serializers.ChoiceField(choices=Campaign.ApprovalMode.choices)
    expiry_days = serializers.IntegerField(allow_null=True, min_value=1)
    expiry_date = serializers.DateTimeField(allow_null=True)
    default_channel = serializers.ChoiceField(choices=Channel.choices, allow_blank=True)
    in_storefront = serializers.BooleanField()

    def validate(self, attrs):
        if isinstance(self.initial_data, dict):
            extra = sorted(set(self.initial_data) - set(self.fields))
            if extra:
                raise serializers.ValidationError(
                    {
                        name: [
                            "This field cannot be changed."
                            if name in CampaignOutput.Meta.fields
                            else "Unknown field."
                        ]
                        for name in extra
                    }
                )
        return attrs


class CampaignCreateInput(StrictSerializer):
    programme = serializers.SlugField(required=False, help_text="Needed when the key has several.")
    name = serializers.CharField(max_length=200)
    reward = serializers.PrimaryKeyRelatedField(queryset=Reward.objects.filter(is_active=True))
    value = serializers.DecimalField(**_MONEY, min_value=Decimal("0.01"))
    currency = serializers.CharField(
        max_length=3, required=False, help_text="Defaults to the reward's."
    )
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField(required=False, allow_null=True)
    max_rewards = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    budget = serializers.DecimalField(
        **_MONEY, required=False, allow_null=True, min_value=Decimal("0")
    )
    per_member_cap = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    approval_mode = serializers.ChoiceField(choices=Campaign.ApprovalMode.choices, required=False)
    code_source = serializers.ChoiceField(choices=Campaign.CodeSource.choices, required=False)
    code_prefix = serializers.CharField(max_length=12, required=False, allow_blank=True)
    code_length = serializers.IntegerField(required=False, min_value=8, max_value=32)
    expiry_days = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    expiry_date = serializers.DateTimeField(required=False, allow_null=True)
    default_channel = serializers.ChoiceField(
        choices=Channel.choices, required=False, allow_blank=True
    )
    in_storefront = serializers.BooleanField(required=False)


class CampaignFilter(serializers.Serializer):
    status = campaign_status_field(required=False)
    programme = serializers.SlugField(required=False, help_text="Programme slug.")


class CampaignListCreateApi(mixins.ListModelMixin, PlumListApiView):
    """Campaigns of the key's programmes; POST creates a draft (not with a test key)."""

    serializer_class = CampaignOutput
    required_scope = {"GET": "read", "POST": "manage"}

    def get_queryset(self):
        filters = CampaignFilter(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        campaigns = selectors.campaign_list_for(principal=self.request.user)
        if f.get("status"):
            campaigns = campaigns.filter(status=f["status"])
        if f.get("programme"):
            campaigns = campaigns.filter(programme__slug=f["programme"])
        return campaigns

    @extend_schema(operation_id="campaigns_list", parameters=[CampaignFilter])
    def get(self, request):
        return self.list(request)

    @extend_schema(
        operation_id="campaigns_create",
        request=CampaignCreateInput,
        responses={201: CampaignOutput},
    )
    def post(self, request):
        data = CampaignCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        _refuse_test_key(request.user, "A test API key cannot create campaigns.")
        fields = dict(data.validated_data)
        programme = programme_for_write(request.user, fields.pop("programme", None), roles.MANAGE)
        campaign = campaign_create(programme=programme, actor=request.user, **fields)
        return Response(CampaignOutput(campaign).data, status=status.HTTP_201_CREATED)


class CampaignDetailApi(PlumApiView):
    """One campaign with its live counters. PATCH changes governance and dates only; any other
    field (counters, programme, status, value, reward, code format) is refused by name."""

    required_scope = {"GET": "read", "PATCH": "manage"}

    @extend_schema(operation_id="campaigns_retrieve", responses=CampaignOutput)
    def get(self, request, campaign_id: int):
        campaign = _campaign_for(request.user, campaign_id, roles.VIEW)
        return Response(CampaignOutput(campaign).data)

    @extend_schema(
        operation_id="campaigns_update", request=CampaignUpdateInput, responses=CampaignOutput
    )
    def patch(self, request, campaign_id: int):
        data = CampaignUpdateInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        campaign = _campaign_for(request.user, campaign_id, roles.MANAGE)
        _refuse_test_key(request.user, "A test API key cannot change a campaign.")
        campaign = campaign_update(
            campaign=campaign, data=dict(data.validated_data), actor=request.user
        )
        return Response(CampaignOutput(campaign).data)


class _TransitionSchema(AutoSchema):
    def get_operation_id(self):
        return f"campaigns_{self.view.transition}"


class CampaignTransitionApi(PlumApiView):
    """Start (activate), pause, resume or end a campaign; an ended or paused campaign issues
    nothing. A move the status table does not allow is refused with its error code."""

    transition = ""  # set per route: activate, pause, resume or end
    required_scope = "manage"
    schema = _TransitionSchema()

    @extend_schema(request=None, responses=CampaignOutput)
    def post(self, request, campaign_id: int):
        campaign = _campaign_for(request.user, campaign_id, roles.MANAGE)
        _refuse_test_key(request.user, "A test API key cannot change a campaign.")
        campaign = campaign_transition(
            campaign=campaign, action=self.transition, actor=request.user
        )
        return Response(CampaignOutput(campaign).data)


# --- codes -----------------------------------------------------------------------------------


class CodesGenerateInput(StrictSerializer):
    count = serializers.IntegerField(min_value=1, max_value=MAX_GENERATE)
    test = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Test codes. Defaults to the key's mode; a test key must not ask for false.",
    )


class CampaignCodesGenerateApi(PlumApiView):
    """Generate `count` codes into the campaign's pool, as a Job (202; follow its Location)."""

    required_scope = "manage"

    @extend_schema(
        operation_id="campaigns_codes_generate",
        request=CodesGenerateInput,
        responses={202: JobOutput},
    )
    def post(self, request, campaign_id: int):
        data = CodesGenerateInput(data=request.data)
        data.is_valid(raise_exception=True)
        campaign = _campaign_for(request.user, campaign_id, roles.MANAGE)
        is_test = _code_mode(request.user, data.validated_data["test"])
        job = codes_generate(
            campaign=campaign,
            count=data.validated_data["count"],
            is_test=is_test,
            actor=request.user,
        )
        # Read it again: where Celery runs eagerly the job has already run by now.
        job = plum_selectors.job_get_for(principal=request.user, job_id=job.pk) or job
        return Response(
            JobOutput(job).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": reverse("api:job-detail", kwargs={"job_id": job.pk})},
        )


class CsvTextParser(parsers.BaseParser):
    """text/csv bodies, handed to the view as text (in the charset the Content-Type names,
    UTF-8 by default)."""

    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None):
        _, params = parse_header_parameters(media_type or self.media_type)
        return _read_text(stream, params.get("charset") or "utf-8")


def _read_text(stream, charset: str) -> str:
    limit = settings.API_UPLOAD_MAX_BYTES
    raw = stream.read(limit + 1)
    if len(raw) > limit:
        raise RequestDataTooBig(f"The CSV is larger than {limit} bytes.")
    try:
        return raw.decode(charset)
    except (LookupError, UnicodeDecodeError) as exc:
        raise exceptions.ParseError(
            f"The CSV is not valid {charset} text.", code="malformed_csv"
        ) from exc


class CodesImportQuery(serializers.Serializer):
    test = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Test codes. Defaults to the key's mode; a test key must not ask for false.",
    )


class CodesImportUpload(serializers.Serializer):
    file = serializers.FileField(help_text="CSV: `code`, optional `value` and `expires_at`.")


class CodesImportRowError(serializers.Serializer):
    row = serializers.IntegerField()
    column = serializers.CharField()
    message = serializers.CharField()


class CodesImportOutput(serializers.Serializer):
    imported = serializers.IntegerField()
    errors = CodesImportRowError(many=True)


class CampaignCodesImportApi(PlumApiView):
    """Merchant-supplied codes into the campaign's pool: a text/csv body, or a multipart
    upload in `file`. 201 when codes went in, 200 when every row was refused."""

    required_scope = "manage"
    parser_classes = [CsvTextParser, parsers.MultiPartParser]
    max_body_setting = "API_UPLOAD_MAX_BYTES"

    @extend_schema(
        operation_id="campaigns_codes_import",
        parameters=[CodesImportQuery],
        request={"text/csv": OpenApiTypes.STR, "multipart/form-data": CodesImportUpload},
        responses={201: CodesImportOutput, 200: CodesImportOutput},
    )
    def post(self, request, campaign_id: int):
        query = CodesImportQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        campaign = _campaign_for(request.user, campaign_id, roles.MANAGE)
        is_test = _code_mode(request.user, query.validated_data["test"])
        result = codes_import(
            campaign=campaign, text=_csv_body(request), is_test=is_test, actor=request.user
        )
        body = CodesImportOutput(result).data
        return Response(
            body, status=status.HTTP_201_CREATED if result["imported"] else status.HTTP_200_OK
        )


def _csv_body(request) -> str:
    data = request.data
    if isinstance(data, str):
        return data
    if request.content_type.startswith("multipart/"):
        upload = request.FILES.get("file")
        if upload is None:
            raise InvalidInputError(
                "Upload the CSV in the `file` field.",
                fields={"file": ["This field is required."]},
            )
        return _read_text(upload, upload.charset or "utf-8")
    return ""  # an empty text/csv body: the service says what the header lacks


# --- vouchers --------------------------------------------------------------------------------


class Last4Field(serializers.CharField):
    def to_representation(self, value):
        return value[-4:]


class VoucherOutput(serializers.ModelSerializer):
    """A voucher in a list: the code masked, never whole."""

    code_masked = serializers.CharField(source="masked_code", read_only=True)
    code_last4 = Last4Field(source="code", read_only=True)
    programme = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    campaign = serializers.PrimaryKeyRelatedField(read_only=True)
    member = serializers.SlugRelatedField(
        slug_field="external_id", read_only=True, help_text="The member's external id."
    )
    status = voucher_status_field(read_only=True)

    class Meta:
        model = Voucher
        fields = [
            "id",
            "code_masked",
            "code_last4",
            "programme",
            "campaign",
            "status",
            "face_value",
            "balance",
            "currency",
            "expires_at",
            "is_test",
            "member",
            "issued_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class RedemptionOutput(serializers.ModelSerializer):
    class Meta:
        model = Redemption
        fields = ["id", "amount", "reference", "balance_after", "redeemed_at"]
        read_only_fields = fields


class VoucherDetailOutput(VoucherOutput):
    """One voucher looked up by its code: the caller sent the code, so it comes back whole."""

    redemptions = RedemptionOutput(many=True, read_only=True)

    class Meta(VoucherOutput.Meta):
        fields = ["code", *VoucherOutput.Meta.fields, "redemptions"]
        read_only_fields = fields


class VoucherFilter(serializers.Serializer):
    campaign = serializers.IntegerField(required=False, min_value=1, help_text="Campaign id.")
    status = voucher_status_field(required=False)
    expires_before = serializers.DateTimeField(required=False)
    expires_after = serializers.DateTimeField(required=False)
    test = serializers.BooleanField(required=False, allow_null=True, default=None)


class VoucherListApi(mixins.ListModelMixin, PlumListApiView):
    """Vouchers of the key's programmes (a test key: test vouchers only), codes masked."""

    serializer_class = VoucherOutput
    required_scope = "read"

    def get_queryset(self):
        filters = VoucherFilter(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        vouchers = _vouchers_for(self.request.user, roles.VIEW)
        if f.get("campaign"):
            vouchers = vouchers.filter(campaign_id=f["campaign"])
        if f.get("status"):
            vouchers = vouchers.filter(status=f["status"])
        if f.get("expires_before"):
            vouchers = vouchers.filter(expires_at__lt=f["expires_before"])
        if f.get("expires_after"):
            vouchers = vouchers.filter(expires_at__gt=f["expires_after"])
        if f["test"] is not None:
            vouchers = vouchers.filter(is_test=f["test"])
        return vouchers

    @extend_schema(operation_id="vouchers_list", parameters=[VoucherFilter])
    def get(self, request):
        return self.list(request)


def _detail(voucher: Voucher) -> dict:
    return VoucherDetailOutput(voucher).data


class VoucherDetailApi(PlumApiView):
    """The status query by code. An unknown code and a code of another programme are the same
    404 voucher_not_found; failed lookups are audited and limited per client."""

    required_scope = "read"

    @extend_schema(operation_id="vouchers_retrieve", responses=VoucherDetailOutput)
    def get(self, request, code: str):
        voucher = voucher_get_guarded(
            principal=request.user, code=code, queryset=_vouchers_for(request.user, roles.VIEW)
        )
        return Response(_detail(voucher))


class RedeemInput(StrictSerializer):
    amount = serializers.DecimalField(**_MONEY, min_value=Decimal("0.01"))
    reference = serializers.CharField(
        max_length=120, help_text="The caller's id for this redemption: a retry reuses it."
    )


class RedemptionReceipt(serializers.ModelSerializer):
    """Made from the redemption alone, so a replay answers exactly as the first time."""

    code = serializers.CharField(source="voucher.code", read_only=True)
    currency = serializers.CharField(source="voucher.currency", read_only=True)

    class Meta:
        model = Redemption
        fields = ["id", "code", "amount", "currency", "reference", "balance_after", "redeemed_at"]
        read_only_fields = fields


class VoucherRedeemApi(PlumApiView):
    """201 for a new redemption, 200 with the same body for a replay of its reference."""

    required_scope = "redeem"

    @extend_schema(
        operation_id="vouchers_redeem",
        request=RedeemInput,
        responses={201: RedemptionReceipt, 200: RedemptionReceipt},
    )
    def post(self, request, code: str):
        data = RedeemInput(data=request.data)
        data.is_valid(raise_exception=True)
        vouchers = _vouchers_for(request.user, roles.MANAGE, roles.SUPPORT)
        voucher = voucher_get_guarded(principal=request.user, code=code, queryset=vouchers)
        redemption, created = voucher_redeem(
            voucher=voucher,
            amount=data.validated_data["amount"],
            reference=data.validated_data["reference"],
            actor=request.user,
        )
        return Response(
            RedemptionReceipt(redemption).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class FlagInput(StrictSerializer):
    reason = serializers.CharField(max_length=500)


class UnflagInput(StrictSerializer):
    pass


class VoucherFlagApi(PlumApiView):
    """Flag a voucher (suspected fraud or error): it cannot be redeemed until unflagged."""

    required_scope = ("manage", "support")

    @extend_schema(operation_id="vouchers_flag", request=FlagInput, responses=VoucherDetailOutput)
    def post(self, request, code: str):
        data = FlagInput(data=request.data)
        data.is_valid(raise_exception=True)
        vouchers = _vouchers_for(request.user, roles.MANAGE, roles.SUPPORT)
        voucher = voucher_get_guarded(principal=request.user, code=code, queryset=vouchers)
        voucher = voucher_flag(
            voucher=voucher, actor=request.user, reason=data.validated_data["reason"]
        )
        return Response(_detail(voucher))


class VoucherUnflagApi(PlumApiView):
    """Return a flagged voucher to the state it was flagged from."""

    required_scope = ("manage", "support")

    @extend_schema(
        operation_id="vouchers_unflag", request=UnflagInput, responses=VoucherDetailOutput
    )
    def post(self, request, code: str):
        UnflagInput(data=request.data).is_valid(raise_exception=True)
        vouchers = _vouchers_for(request.user, roles.MANAGE, roles.SUPPORT)
        voucher = voucher_get_guarded(principal=request.user, code=code, queryset=vouchers)
        voucher = voucher_unflag(voucher=voucher, actor=request.user)
        return Response(_detail(voucher))


class VouchersExtendInput(StrictSerializer):
    """Either `codes`, or a `campaign` with optional `status` (default: active and partially
    redeemed) and `expires_before` filters."""

    expires_at = serializers.DateTimeField(help_text="The new expiry; in the future.")
    codes = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        min_length=1,
        max_length=MAX_CODES_PER_REQUEST,
        help_text=f"Voucher codes, at most {MAX_CODES_PER_REQUEST}.",
    )
    campaign = serializers.IntegerField(required=False, min_value=1, help_text="Campaign id.")
    status = serializers.ListField(child=voucher_status_field(), required=False, min_length=1)
    expires_before = serializers.DateTimeField(required=False)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if ("codes" in attrs) == ("campaign" in attrs):
            raise serializers.ValidationError("Give either `codes` or a `campaign`, not both.")
        if "codes" in attrs:
            misplaced = sorted({"status", "expires_before"} & set(attrs))
            if misplaced:
                raise serializers.ValidationError(
                    {name: ["Only with a campaign."] for name in misplaced}
                )
        return attrs


class SkippedVoucher(serializers.Serializer):
    code = serializers.CharField(help_text="Masked: the last 4 characters.")
    status = voucher_status_field()


class VouchersExtendOutput(serializers.Serializer):
    extended = serializers.IntegerField()
    skipped = SkippedVoucher(many=True, help_text="Redeemed, cancelled or recovered.")
    not_found = serializers.ListField(
        child=serializers.CharField(), help_text="Codes as sent that are not yours."
    )


class VouchersExtendApi(PlumApiView):
    """Move the expiry of a list of codes, or of a campaign's vouchers matching filters.
    Redeemed, cancelled and recovered vouchers are skipped and reported."""

    required_scope = "manage"

    @extend_schema(
        operation_id="vouchers_extend",
        request=VouchersExtendInput,
        responses={200: VouchersExtendOutput, 202: JobOutput},
    )
    def post(self, request):
        data = VouchersExtendInput(data=request.data)
        data.is_valid(raise_exception=True)
        f = data.validated_data
        vouchers = _vouchers_for(request.user, roles.MANAGE)
        not_found: list[str] = []
        if "codes" in f:
            vouchers, not_found = vouchers_get_guarded(
                principal=request.user, codes=f["codes"], queryset=vouchers
            )
        else:
            campaign = _campaign_for(request.user, f["campaign"], roles.MANAGE)
            outcome = vouchers_extend_campaign(
                campaign=campaign,
                statuses=f.get("status", DEFAULT_EXTEND_STATUSES),
                expires_before=f.get("expires_before"),
                is_test=request.user.is_test if isinstance(request.user, ApiClient) else None,
                expires_at=f["expires_at"],
                actor=request.user,
            )
            if isinstance(outcome, Job):  # a large selection: follow the job
                return Response(
                    JobOutput(outcome).data,
                    status=status.HTTP_202_ACCEPTED,
                    headers={"Location": reverse("api:job-detail", kwargs={"job_id": outcome.pk})},
                )
            return Response(VouchersExtendOutput({**outcome, "not_found": []}).data)
        result = vouchers_extend(vouchers=vouchers, expires_at=f["expires_at"], actor=request.user)
        return Response(VouchersExtendOutput({**result, "not_found": not_found}).data)


class VouchersRecoverInput(StrictSerializer):
    codes = serializers.ListField(
        child=serializers.CharField(max_length=64),
        min_length=1,
        max_length=MAX_CODES_PER_REQUEST,
        help_text=f"Voucher codes, at most {MAX_CODES_PER_REQUEST}.",
    )
    to_pool = serializers.BooleanField(
        default=True, help_text="Back to the pool (true) or retired as recovered (false)."
    )


class VouchersRecoverOutput(serializers.Serializer):
    recovered = serializers.IntegerField()
    refused = SkippedVoucher(many=True, help_text="Redeemed, partly redeemed or never issued.")
    not_found = serializers.ListField(
        child=serializers.CharField(), help_text="Codes as sent that are not yours."
    )


class VouchersRecoverApi(PlumApiView):
    """Reclaim unused issued vouchers into the pool (or retire them), giving the campaign's
    counts back; redeemed or partly redeemed vouchers are refused and reported."""

    required_scope = "manage"

    @extend_schema(
        operation_id="vouchers_recover",
        request=VouchersRecoverInput,
        responses=VouchersRecoverOutput,
    )
    def post(self, request):
        data = VouchersRecoverInput(data=request.data)
        data.is_valid(raise_exception=True)
        vouchers, not_found = vouchers_get_guarded(
            principal=request.user,
            codes=data.validated_data["codes"],
            queryset=_vouchers_for(request.user, roles.MANAGE),
        )
        result = vouchers_recover(
            vouchers=vouchers, actor=request.user, to_pool=data.validated_data["to_pool"]
        )
        return Response(VouchersRecoverOutput({**result, "not_found": not_found}).data)
