"""The kernel's endpoints: programmes, members and jobs."""

from django.db.models import Q
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.response import Response

from plum import selectors
from plum.api.base import PlumApiView, PlumListApiView, StrictSerializer
from plum.errors import InvalidInputError, NotFoundError
from plum.models import Channel, Job, Member, Programme
from plum.services.programmes import member_upsert


class ProgrammeOutput(serializers.ModelSerializer):
    class Meta:
        model = Programme
        fields = ["id", "name", "slug", "currency", "timezone", "default_channel", "is_active"]


class ProgrammeListApi(mixins.ListModelMixin, PlumListApiView):
    """The programmes this API key (or user) may act on."""

    serializer_class = ProgrammeOutput

    def get_queryset(self):
        return selectors.programmes_for(self.request.user).order_by("id")

    @extend_schema(operation_id="programmes_list")
    def get(self, request):
        return self.list(request)


class MemberOutput(serializers.ModelSerializer):
    programme = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    # Contact details may be blank (a member known by external id only): the output schema
    # carries no input format, so "" conforms.
    email = serializers.CharField(read_only=True, help_text="E-mail address, or blank.")
    phone = serializers.CharField(read_only=True, help_text="E.164 number, or blank.")
    country = serializers.CharField(read_only=True, help_text="ISO 3166-1 alpha-2, or blank.")

    class Meta:
        model = Member
        fields = [
            "id",
            "programme",
            "external_id",
            "name",
            "email",
            "phone",
            "country",
            "preferred_channel",
            "created_at",
            "updated_at",
        ]


class MemberInput(StrictSerializer):
    programme = serializers.SlugField(required=False, help_text="Needed when the key has several.")
    external_id = serializers.CharField(max_length=120)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    email = serializers.EmailField(required=False, allow_blank=True)
    phone = serializers.CharField(max_length=16, required=False, allow_blank=True)
    country = serializers.CharField(max_length=2, required=False, allow_blank=True)
    preferred_channel = serializers.ChoiceField(
        choices=Channel.choices, required=False, allow_blank=True
    )


def programme_for_write(principal, slug: str | None, perm: str) -> Programme:
    """The programme a write names, or the principal's only one; 404 outside scope."""
    programmes = selectors.programmes_for(principal, perm)
    if slug:
        programme = programmes.filter(slug=slug).first()
        if programme is None:
            raise NotFoundError("No such programme.", fields={"programme": ["Not found."]})
        return programme
    candidates = list(programmes[:2])
    if not candidates:
        # A principal that may write to no programme (a staff session without the role).
        raise NotFoundError("No such programme.", fields={"programme": ["Not found."]})
    if len(candidates) > 1:
        raise InvalidInputError(
            "Name the programme: this key is bound to several.",
            fields={"programme": ["This field is required."]},
        )
    return candidates[0]


class MemberListCreateApi(mixins.ListModelMixin, PlumListApiView):
    """Members of the key's programmes: list and search them, or create/update one by its
    external id (an upsert: 201 when created, 200 when updated)."""

    serializer_class = MemberOutput
    required_scope = {"GET": "read", "POST": "manage"}

    def get_queryset(self):
        queryset = selectors.member_list_for(principal=self.request.user)
        params = self.request.query_params
        if params.get("programme"):
            queryset = queryset.filter(programme__slug=params["programme"])
        if params.get("q"):
            q = params["q"]
            queryset = queryset.filter(
                Q(external_id=q) | Q(email__iexact=q) | Q(phone=q) | Q(name__icontains=q)
            )
        return queryset

    @extend_schema(
        operation_id="members_list",
        parameters=[
            OpenApiParameter("programme", str, description="Programme slug."),
            OpenApiParameter("q", str, description="External id, e-mail, phone or name."),
        ],
    )
    def get(self, request):
        return self.list(request)

    @extend_schema(
        operation_id="members_upsert",
        request=MemberInput,
        responses={200: MemberOutput, 201: MemberOutput},
    )
    def post(self, request):
        data = MemberInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        programme = programme_for_write(
            request.user, fields.pop("programme", None), "plum.manage_programme"
        )
        member, created = member_upsert(
            programme=programme,
            external_id=fields.pop("external_id"),
            actor=request.user,
            data=fields,
        )
        return Response(
            MemberOutput(member).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class MemberDetailApi(PlumApiView):
    """One member by external id (add ?programme=<slug> if the id exists in several)."""

    @extend_schema(
        operation_id="members_retrieve",
        responses=MemberOutput,
        parameters=[OpenApiParameter("programme", str, description="Programme slug.")],
    )
    def get(self, request, external_id: str):
        members = selectors.member_list_for(principal=request.user).filter(external_id=external_id)
        if request.query_params.get("programme"):
            members = members.filter(programme__slug=request.query_params["programme"])
        found = list(members[:2])
        if not found:
            raise NotFoundError("No such member.")
        if len(found) > 1:
            raise InvalidInputError(
                "This external id exists in several programmes: add ?programme=<slug>.",
                fields={"programme": ["This field is required."]},
            )
        return Response(MemberOutput(found[0]).data)


class JobOutput(serializers.ModelSerializer):
    programme = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    percent = serializers.IntegerField(read_only=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "programme",
            "status",
            "total",
            "done",
            "percent",
            "result",
            "errors",
            "created_at",
            "started_at",
            "finished_at",
        ]


class JobDetailApi(PlumApiView):
    """A long-running job (code generation, uploads, bulk actions): status and progress."""

    @extend_schema(operation_id="jobs_retrieve", responses=JobOutput)
    def get(self, request, job_id):
        job = selectors.job_get_for(principal=request.user, job_id=job_id)
        if job is None:
            raise NotFoundError("No such job.")
        return Response(JobOutput(job).data)
