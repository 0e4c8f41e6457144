"""IPA uploads in the admin: upload a file for a campaign, read the validation preview
(counts, first errors, the full error report), confirm (optionally the valid rows only) and
watch the progress bar. Every write calls `orders.services.uploads`."""

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from campaigns.models import Campaign
from campaigns.selectors import campaign_list_for
from orders.models import Upload
from orders.services.uploads import upload_confirm, upload_create_from_csv
from orders.uploads import selectors
from orders.uploads.validation import COLUMNS, REQUIRED_COLUMNS
from plum import roles
from plum.admin import ProgrammeScopedAdmin
from plum.csvexport import csv_response
from plum.errors import PlumError

SHOWN_ERRORS = 20


class UploadForm(forms.Form):
    campaign = forms.ModelChoiceField(queryset=Campaign.objects.none())
    file = forms.FileField(
        help_text=f"CSV, UTF-8; columns {', '.join(COLUMNS)}; at most "
        f"{settings.UPLOAD_MAX_ROWS:,} rows and {settings.API_UPLOAD_MAX_BYTES // 1048576} MB."
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["campaign"].queryset = (
            campaign_list_for(principal=user, perm=roles.MANAGE)
            .exclude(status=Campaign.Status.ENDED)
            .order_by("programme__name", "name")
        )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        limit = settings.API_UPLOAD_MAX_BYTES
        if upload.size > limit:
            raise forms.ValidationError(
                f"The file is {upload.size:,} bytes; the limit is {limit:,} bytes "
                f"({limit / 1048576:g} MB) per upload."
            )
        return upload


def _progress(upload: Upload) -> str:
    return format_html(
        '<progress max="100" value="{}" aria-label="progress">{}%</progress> {} / {}',
        upload.percent,
        upload.percent,
        upload.dispatched_count,
        upload.valid_count,
    )


@admin.register(Upload)
class UploadAdmin(ProgrammeScopedAdmin):
    list_display = [
        "id",
        "file_name",
        "campaign",
        "status",
        "row_count",
        "valid_count",
        "invalid_count",
        "issued_count",
        "refused_count",
        "progress",
        "created_at",
    ]
    list_filter = ["status", "source", "is_test", "programme"]
    list_select_related = ["campaign", "programme"]
    search_fields = ["=id", "file_name"]
    show_full_result_count = False

    @admin.display(description="progress")
    def progress(self, obj):
        return _progress(obj)

    def has_add_permission(self, request):
        return super().has_add_permission(request) and self._may_change(request, None)

    def get_urls(self):
        def view(func):
            return self.admin_site.admin_view(func)

        return [
            path("template/", view(self.template_view), name="orders_upload_template"),
            path("<int:upload_id>/errors/", view(self.errors_view), name="orders_upload_errors"),
            path("<int:upload_id>/confirm/", view(self.confirm_view), name="orders_upload_confirm"),
            *super().get_urls(),
        ]

    def _context(self, request, title, **extra):
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            **extra,
        }

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = UploadForm(
            request.POST if request.method == "POST" else None,
            request.FILES if request.method == "POST" else None,
            user=request.user,
        )
        if request.method == "POST" and form.is_valid():
            uploaded = form.cleaned_data["file"]
            try:
                upload = upload_create_from_csv(
                    campaign=form.cleaned_data["campaign"],
                    raw=uploaded.read(),
                    file_name=uploaded.name or "",
                    source=Upload.Source.ADMIN,
                    actor=request.user,
                )
            except PlumError as exc:
                form.add_error("file", f"{exc.message} ({exc.code})")
            else:
                return redirect(reverse("admin:orders_upload_change", args=[upload.pk]))
        context = self._context(
            request,
            "Upload recipients",
            form=form,
            columns=COLUMNS,
            required_columns=REQUIRED_COLUMNS,
        )
        return TemplateResponse(request, "admin/orders/upload/add.html", context)

    def _upload(self, request, upload_id) -> Upload:
        return self.get_object(request, str(upload_id))  # 404 outside the user's programmes

    def change_view(self, request, object_id, form_url="", extra_context=None):
        upload = self._upload(request, object_id)
        context = self._context(
            request,
            str(upload),
            original=upload,
            errors=selectors.upload_first_errors(upload, SHOWN_ERRORS),
            may_confirm=(
                upload.status == Upload.Status.VALIDATED
                and self.has_change_permission(request, upload)
            ),
            may_resume=(
                upload.status == Upload.Status.DISPATCHING
                and self.has_change_permission(request, upload)
            ),
            has_errors=bool(upload.invalid_count or upload.refused_count or upload.file_errors),
            refreshing=upload.status == Upload.Status.DISPATCHING,
        )
        return TemplateResponse(request, "admin/orders/upload/detail.html", context)

    def confirm_view(self, request, upload_id):
        upload = self._upload(request, upload_id)
        if request.method != "POST":
            return redirect(reverse("admin:orders_upload_change", args=[upload.pk]))
        if not self.has_change_permission(request, upload):
            raise PermissionDenied
        try:
            upload = upload_confirm(
                upload=upload,
                send_only_valid=bool(request.POST.get("send_only_valid")),
                actor=request.user,
            )
        except PlumError as exc:
            self.message_user(request, f"Not confirmed: {exc.message}", messages.ERROR)
        else:
            self.message_user(
                request,
                f"Sending {upload.valid_count:,} row(s) as orders in {upload.chunks_total} "
                "chunk(s).",
                messages.SUCCESS,
            )
        return redirect(reverse("admin:orders_upload_change", args=[upload.pk]))

    def errors_view(self, request, upload_id):
        upload = self._upload(request, upload_id)
        return csv_response(
            f"upload-{upload.pk}-errors.csv",
            selectors.ERROR_REPORT_HEADER,
            selectors.upload_error_rows(upload),
        )

    def template_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        header, rows = selectors.template_rows()
        return csv_response("ipa_template.csv", header, rows)
