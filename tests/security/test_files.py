"""Files in and out: every CSV export goes through the formula-safe writer (plum.csvexport), and
uploaded files are parsed into rows, never stored as files, never served back raw and never run.

Behaviour of each export is proven next to it: plum/csvexport (tests/plum/test_csvexport.py),
wallet report (tests/wallets/test_reports.py::test_csv_cells_cannot_run_as_formulas), payout
statement (tests/orders/test_payouts_admin.py::test_the_statement_csv_is_formula_safe_and_adds_up),
upload error report (tests/orders/test_upload_api.py::test_the_error_report_is_a_csv). This file
makes sure no export bypasses the writer, and covers the remaining ones end to end."""

import ast
import csv
import io
from pathlib import Path

import pytest
from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import models
from django.urls import URLPattern, URLResolver, get_resolver
from django.views.static import serve

from tests.orders.upload_helpers import csv_bytes, row

ROOT = Path(__file__).resolve().parents[2]
APPS = ["plum", "campaigns", "wallets", "orders", "support", "ops"]
# csv.writer outside the export module: rows COPY'd into Postgres, never sent to a person.
INTERNAL_WRITERS = {"orders/services/uploads.py"}
EXPORT_HELPERS = {"csv_lines", "csv_response", "csv_download"}


def _sources():
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path.relative_to(ROOT).as_posix(), path.read_text()


def test_no_module_writes_csv_around_the_formula_safe_writer():
    # given
    bypass = []
    for name, source in _sources():
        if name == "plum/csvexport.py":
            continue
        tree = ast.parse(source)
        calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
        if "csv.writer" in calls and name not in INTERNAL_WRITERS:
            bypass.append(f"{name}: csv.writer")
        sends_csv = '"text/csv"' in source and (
            "HttpResponse(" in source or "StreamingHttpResponse(" in source
        )
        if sends_csv and not (EXPORT_HELPERS & calls or "csv_lines" in source):
            bypass.append(f"{name}: a text/csv response not built by plum.csvexport")
    # then
    assert bypass == []


def test_every_csv_export_in_the_code_is_one_of_the_known_ones():
    """A new export shows up here: add its formula test and list it."""
    # given
    found = set()
    for name, source in _sources():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in {
                "csv_response",
                "csv_download",
            }:
                found.add(name)
    # then
    assert found == {
        "orders/admin/payouts.py",
        "orders/admin/uploads.py",
        "orders/api/uploads.py",
        "wallets/admin_reports.py",
    }


def test_no_model_stores_an_uploaded_file():
    # given
    file_fields = [
        f"{model._meta.label}.{field.name}"
        for model in apps.get_models()
        for field in model._meta.get_fields()
        if isinstance(field, models.FileField)
    ]
    # then
    assert file_fields == []


def _callbacks(resolver):
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            yield from _callbacks(pattern)
        elif isinstance(pattern, URLPattern):
            yield pattern.callback


def test_no_url_serves_files_from_disk():
    assert serve not in set(_callbacks(get_resolver()))


@pytest.mark.django_db
def test_an_uploaded_html_file_comes_back_only_as_rows_in_a_safe_download(
    programme, client_api, settings
):
    # given: a file named like a page, with markup and formulas in its cells
    from tests.campaigns.builders import make_campaign

    campaign = make_campaign(programme)
    raw = csv_bytes(
        row(1, name="<script>alert(1)</script>", email='=HYPERLINK("http://x")'),
        row(2, email="@SUM(1)", phone="+1;rm -rf /"),
    )
    upload = client_api.post(
        "/api/v1/uploads",
        {"campaign": campaign.pk, "file": SimpleUploadedFile("page.html", raw, "text/html")},
        format="multipart",
    )
    assert upload.status_code == 201, upload.content
    upload_id = upload.json()["id"]
    # when
    detail = client_api.get(f"/api/v1/uploads/{upload_id}")
    errors = client_api.get(f"/api/v1/uploads/{upload_id}/errors")
    # then: the detail is JSON about the file, not the file
    assert detail["Content-Type"] == "application/json"
    assert b"<script>" not in detail.content
    # the error report is a download under our own name, never sniffed as a page
    assert errors["Content-Type"] == "text/csv"
    assert errors["Content-Disposition"] == f'attachment; filename="upload-{upload_id}-errors.csv"'
    assert errors["X-Content-Type-Options"] == "nosniff"
    text = b"".join(errors.streaming_content).decode()
    cells = [cell for line in csv.reader(io.StringIO(text)) for cell in line]
    assert not [c for c in cells if c[:1] in {"=", "+", "-", "@", "\t", "\r"}]
    assert '\'=HYPERLINK("http://x")' in cells
    assert "'@SUM(1)" in cells


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "/store/orders/PLM%00X/report/",
        "/store/orders/PLM%00X/",
        "/ops/orders/PLM%00X/",
        "/ops/tickets/new/?order=PLM%00X",
        "/ops/?q=a%00b",
    ],
)
def test_a_nul_character_in_a_page_address_is_a_400_not_a_500(client, make_user, programme, url):
    """Postgres refuses NUL in text: pages (storefront, portal) answer 400 before any query."""
    # given: signed in as an agent and a member of the programme, as the page needs
    from plum import roles

    client.force_login(make_user(roles.SUPPORT_AGENT, programme))
    # when
    response = client.get(url)
    # then
    assert response.status_code == 400
    assert b"not allowed" in response.content
