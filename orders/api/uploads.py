"""The uploads API under /api/v1/: IPA recipient files (multipart CSV, or JSON rows from HR
connectors), their validation result, the error report, confirmation and the template.

Views check the wire format, find the campaign and the upload through the scoped selectors
(404 outside the key's programmes) and call one service."""

import re

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, parsers, serializers, status
from rest_framework.response import Response

from campaigns.selectors import campaign_get_for
from orders.models import Upload
from orders.services.uploads import (
    upload_confirm,
    upload_create_from_csv,
    upload_create_from_rows,
)
from orders.uploads import selectors
from orders.uploads.errors import UploadNotFoundError
from orders.uploads.validation import COLUMNS
from plum import roles
from plum import selectors as plum_selectors
from plum.api.base import PlumApiView, PlumListApiView, StrictSerializer
from plum.api.parsers import JSONParser
from plum.csvexport import csv_response
from plum.errors import InvalidInputError, NotFoundError


class UploadCountsOutput(serializers.Serializer):
    rows = serializers.IntegerField(source="row_count")
    valid = serializers.IntegerField(source="valid_count")
    invalid = serializers.IntegerField(source="invalid_count")
    dispatched = serializers.IntegerField(source="dispatched_count")
    issued = serializers.IntegerField(source="issued_count")
    refused = serializers.IntegerField(source="refused_count")


class UploadProgressOutput(serializers.Serializer):
    job = serializers.UUIDField(source="job_id", allow_null=True)
    percent = serializers.IntegerField()
    done = serializers.IntegerField(source="dispatched_count")
    total = serializers.IntegerField(source="valid_count")
    chunks_done = serializers.IntegerField()
    chunks_total = serializers.IntegerField()


class UploadErrorOutput(serializers.Serializer):
    row = serializers.CharField(allow_blank=True)
    column = serializers.CharField(allow_blank=True)
    message = serializers.CharField()
    value = serializers.CharField(allow_blank=True)
    external_id = serializers.CharField(allow_blank=True)


class UploadOutput(serializers.ModelSerializer):
    programme = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    campaign = serializers.PrimaryKeyRelatedField(read_only=True)
    counts = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    first_errors = serializers.SerializerMethodField()
    errors_url = serializers.SerializerMethodField()

    class Meta:
        model = Upload
        fields = [
            "id",
            "status",
            "programme",
            "campaign",
            "source",
            "file_name",
            "size_bytes",
            "is_test",
            "send_only_valid",
            "counts",
            "progress",
            "file_errors",
            "first_errors",
            "errors_url",
            "created_at",
            "validated_at",
            "confirmed_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema(responses=UploadCountsOutput)
    def get_counts(self, obj) -> dict:
        return UploadCountsOutput(obj).data

    @extend_schema(responses=UploadProgressOutput)
    def get_progress(self, obj) -> dict:
        return UploadProgressOutput(obj).data

    @extend_schema(responses=UploadErrorOutput(many=True))
    def get_first_errors(self, obj) -> list:
        if not self.context.get("with_errors"):
            return []
        return UploadErrorOutput(selectors.upload_first_errors(obj), many=True).data

    def get_errors_url(self, obj) -> str:
        return reverse("orders-api:upload-errors", kwargs={"upload_id": obj.pk})


class UploadRowsInput(StrictSerializer):
    campaign = serializers.IntegerField(min_value=1, help_text="Campaign id.")
    # Each row is checked by the upload's plain validation functions, not a serializer per row.
    rows = serializers.ListField(
        allow_empty=False,
        help_text=f"Objects with the columns {', '.join(COLUMNS)}.",
    )
    file_name = serializers.CharField(max_length=255, required=False, allow_blank=True)


class UploadFileInput(serializers.Serializer):
    campaign = serializers.IntegerField(min_value=1, help_text="Campaign id.")
    file = serializers.FileField(help_text="CSV, UTF-8, at most 100,000 rows and 20 MB.")


def _campaign(principal, campaign_id: int):
    campaign = campaign_get_for(principal=principal, campaign_id=campaign_id, perm=roles.MANAGE)
    if campaign is None:
        raise NotFoundError("No such campaign.", fields={"campaign": ["Not found."]})
    return campaign


def _upload_for(principal, upload_id: int, perm: str) -> Upload:
    upload = selectors.upload_get_for(principal=principal, upload_id=upload_id, perm=perm)
    if upload is None:
        raise UploadNotFoundError()
    return upload


def _output(principal, upload: Upload, code=status.HTTP_200_OK) -> Response:
    upload = selectors.upload_list_for(principal=principal).get(pk=upload.pk)
    return Response(UploadOutput(upload, context={"with_errors": True}).data, status=code)


class UploadListCreateApi(mixins.ListModelMixin, PlumListApiView):
    """POST: a recipient file for a campaign, multipart (`campaign`, `file`: CSV) or JSON
    (`campaign`, `rows`). Every row is checked; nothing is issued until the upload is
    confirmed. 201 with the upload (validated, or rejected with the reasons) and its first
    errors; a file refused whole is 400 (upload_encoding_invalid, upload_header_invalid,
    upload_malformed, upload_empty, upload_too_many_rows) or 413 (over 20 MB), and stores
    nothing. Send an Idempotency-Key. GET: the key's uploads, newest first."""

    required_scope = {"GET": "read", "POST": "issue"}
    parser_classes = [JSONParser, parsers.MultiPartParser]
    max_body_setting = "API_UPLOAD_MAX_BYTES"
    serializer_class = UploadOutput

    def get_queryset(self):
        return selectors.upload_list_for(principal=self.request.user)

    @extend_schema(operation_id="uploads_list")
    def get(self, request):
        return self.list(request)

    @extend_schema(
        operation_id="uploads_create",
        request={"application/json": UploadRowsInput, "multipart/form-data": UploadFileInput},
        responses={201: UploadOutput},
    )
    def post(self, request):
        is_test = plum_selectors.is_test_principal(request.user)
        if request.content_type.startswith("multipart/"):
            upload_file = request.FILES.get("file")
            campaign_id = request.data.get("campaign")
            fields = {}
            if upload_file is None:
                fields["file"] = ["This field is required."]
            if not re.fullmatch(r"[0-9]{1,18}", str(campaign_id or "")):
                fields["campaign"] = ["A campaign id is required."]
            if fields:
                raise InvalidInputError(fields=fields)
            campaign = _campaign(request.user, int(campaign_id))
            upload = upload_create_from_csv(
                campaign=campaign,
                raw=upload_file.read(),
                file_name=upload_file.name or "",
                source=Upload.Source.API,
                actor=request.user,
                is_test=is_test,
            )
        else:
            data = UploadRowsInput(data=request.data)
            data.is_valid(raise_exception=True)
            fields = data.validated_data
            campaign = _campaign(request.user, fields["campaign"])
            upload = upload_create_from_rows(
                campaign=campaign,
                rows=fields["rows"],
                file_name=fields.get("file_name", ""),
                actor=request.user,
                is_test=is_test,
            )
        return _output(request.user, upload, status.HTTP_201_CREATED)


class UploadDetailApi(PlumApiView):
    """Status, counts and progress: the numbers the admin shows."""

    required_scope = "read"

    @extend_schema(operation_id="uploads_retrieve", responses=UploadOutput)
    def get(self, request, upload_id: int):
        return _output(request.user, _upload_for(request.user, upload_id, roles.VIEW))


class UploadErrorsApi(PlumApiView):
    """The error report as CSV: row, column, message, the offending value, external id."""

    required_scope = "read"

    @extend_schema(operation_id="uploads_errors", responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request, upload_id: int):
        upload = _upload_for(request.user, upload_id, roles.VIEW)
        return csv_response(
            f"upload-{upload.pk}-errors.csv",
            selectors.ERROR_REPORT_HEADER,
            selectors.upload_error_rows(upload),
        )


class UploadConfirmInput(StrictSerializer):
    send_only_valid = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Send the valid rows of a file that has invalid rows too.",
    )


class UploadConfirmApi(PlumApiView):
    """Dispatch the valid rows as orders (202). Refusals change nothing: 409
    upload_has_invalid_rows (confirm with send_only_valid), upload_has_no_valid_rows,
    upload_exceeds_campaign, campaign_not_active, invalid_transition (already finished).
    Confirming a dispatching upload again resumes its unfinished chunks, issuing nothing
    twice."""

    required_scope = "issue"

    @extend_schema(
        operation_id="uploads_confirm", request=UploadConfirmInput, responses={202: UploadOutput}
    )
    def post(self, request, upload_id: int):
        data = UploadConfirmInput(data=request.data or {})
        data.is_valid(raise_exception=True)
        upload = _upload_for(request.user, upload_id, roles.MANAGE)
        upload = upload_confirm(
            upload=upload,
            send_only_valid=data.validated_data["send_only_valid"],
            actor=request.user,
        )
        return _output(request.user, upload, status.HTTP_202_ACCEPTED)


class UploadTemplateApi(PlumApiView):
    """The CSV template: the header row, columns in order."""

    required_scope = "read"

    @extend_schema(operation_id="uploads_template", responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request):
        header, rows = selectors.template_rows()
        return csv_response("ipa_template.csv", header, rows)
