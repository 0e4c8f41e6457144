"""Upload reads, scoped to what the principal may see (404 outside scope). A test-mode API
client sees test uploads only, a live client live ones."""

from django.db.models import QuerySet

from orders.models import Upload, UploadRow
from orders.uploads.validation import COLUMNS
from plum import roles
from plum.models import ApiClient
from plum.selectors import Principal, scoped

ERROR_REPORT_HEADER = ["row", "column", "message", "value", "external_id"]


def upload_list_for(*, principal: Principal, perm: str = roles.VIEW) -> QuerySet:
    uploads = scoped(Upload.objects.select_related("programme", "campaign", "job"), principal, perm)
    if isinstance(principal, ApiClient):
        uploads = uploads.filter(is_test=principal.is_test)
    return uploads


def upload_get_for(*, principal: Principal, upload_id: int, perm: str = roles.VIEW):
    """One upload; None for a missing one and one outside scope alike."""
    return upload_list_for(principal=principal, perm=perm).filter(pk=upload_id).first()


def upload_error_rows(upload: Upload):
    """The error report, row by row: (row, column, message, value, external_id) for every
    problem of the file as a whole (row empty), every invalid row and every row refused at
    dispatch. Streams: the rows come from a server-side iterator."""
    for problem in upload.file_errors:
        yield ["", problem.get("column", ""), problem["message"], "", ""]
    rows = (
        UploadRow.objects.filter(
            upload=upload, status__in=[UploadRow.Status.INVALID, UploadRow.Status.REFUSED]
        )
        .order_by("row_number")
        .values_list("row_number", "external_id", "errors", "refusal_code", "refusal_message")
    )
    for number, external_id, errors, code, message in rows.iterator(chunk_size=2000):
        for error in errors:
            yield [number, error["column"], error["message"], error.get("value", ""), external_id]
        if code:
            yield [number, "", f"Refused at dispatch ({code}): {message}", "", external_id]


def upload_first_errors(upload: Upload, limit: int = 20) -> list[dict]:
    out = []
    for row in upload_error_rows(upload):
        out.append(dict(zip(ERROR_REPORT_HEADER, row, strict=True)))
        if len(out) >= limit:
            break
    return out


def template_rows():
    """The template: the header and nothing else."""
    return list(COLUMNS), []
