"""The wallet report pages of the admin (custom views on the ledger transaction admin):
the posting report with totals, chart and CSV; the month-end statement and its CSV; and a
member's audit log. Read-only. Reports are for the programmes where the user holds the finance
or manage permission; the member audit log for anyone who may see the member. A programme or
member outside that scope is 404, as if it did not exist."""

from datetime import date
from itertools import islice

from django import forms
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from plum import selectors
from plum.csvexport import csv_lines
from plum.models import Member, Programme
from wallets.models import Reason, TransactionKind
from wallets.reports import (
    CSV_HEADER,
    STATEMENT_HEADER,
    ReportFilter,
    chart_bars,
    chart_svg,
    earn_burn_per_day,
    month_start,
    report_csv_rows,
    report_filter_resolve,
    report_programme_ids,
    report_rows,
    report_totals,
    statement_csv_rows,
    statement_months,
)
from wallets.selectors import member_audit_log

AUDIT_PAGE_SIZE = 50
CSV_LINES_PER_CHUNK = 500


def csv_download(filename: str, header, rows) -> StreamingHttpResponse:
    """The kernel's streamed, formula-safe CSV (plum.csvexport.csv_lines), sent in chunks of
    CSV_LINES_PER_CHUNK lines rather than one line at a time: the response encodes each chunk
    once, which is most of the cost of a million-row export. Memory stays one chunk."""
    lines = csv_lines(header, rows)

    def chunks():
        while batch := list(islice(lines, CSV_LINES_PER_CHUNK)):
            yield "".join(batch)

    response = StreamingHttpResponse(chunks(), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class ReportForm(forms.Form):
    programme = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)
    date_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    member = forms.CharField(required=False, max_length=100, help_text="External id")
    kind = forms.ChoiceField(required=False, choices=[("", "Any kind"), *TransactionKind.choices])
    reason = forms.ChoiceField(required=False, choices=[("", "Any reason"), *Reason.choices])
    page = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, *args, programmes, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["programme"].choices = [("", "All my programmes")] + [
            (p.pk, p.name) for p in programmes
        ]

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise forms.ValidationError("The date range ends before it starts.")
        return data


class StatementForm(forms.Form):
    programme = forms.TypedChoiceField(coerce=int)
    first = forms.DateField(widget=forms.DateInput(attrs={"type": "month"}), required=False)
    last = forms.DateField(widget=forms.DateInput(attrs={"type": "month"}), required=False)

    def __init__(self, *args, programmes, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["programme"].choices = [(p.pk, p.name) for p in programmes]
        for name in ("first", "last"):
            self.fields[name].input_formats = ["%Y-%m", "%Y-%m-%d"]

    def clean(self):
        data = super().clean()
        if data.get("first") and data.get("last") and data["first"] > data["last"]:
            raise forms.ValidationError("The months end before they start.")
        if data.get("first") and data.get("last"):
            span = (data["last"].year - data["first"].year) * 12 + data["last"].month
            if span - data["first"].month >= 36:
                raise forms.ValidationError("At most 36 months at a time.")
        return data


def _scope(request) -> list[Programme]:
    """The programmes whose reports the user may read; none at all is a 403, a programme
    asked for outside them a 404."""
    ids = report_programme_ids(request.user)
    if not ids:
        raise PermissionDenied
    programmes = list(Programme.objects.filter(pk__in=ids).order_by("name"))
    asked = request.GET.get("programme")
    if asked:
        try:
            asked_id = int(asked)
        except ValueError:
            raise Http404("No such programme.") from None
        if asked_id not in ids:
            raise Http404("No such programme.")
    return programmes


class WalletReportViews:
    """Mixed into the ledger transaction admin: its URLs and views."""

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("reports/", view(self.report_view), name="wallets_report"),
            path("reports/export.csv", view(self.report_csv_view), name="wallets_report_csv"),
            path("statement/", view(self.statement_view), name="wallets_statement"),
            path(
                "statement/export.csv",
                view(self.statement_csv_view),
                name="wallets_statement_csv",
            ),
            path(
                "member/<int:member_id>/audit/",
                view(self.member_audit_view),
                name="wallets_member_audit",
            ),
            *super().get_urls(),
        ]

    def _context(self, request, title: str) -> dict:
        # The admin's each_context without the navigation sidebar's app list: building it
        # checks every registered admin's permissions, which costs more than the report.
        site = self.admin_site
        return {
            "site_title": site.site_title,
            "site_header": site.site_header,
            "site_url": site.site_url,
            "has_permission": site.has_permission(request),
            "available_apps": [],
            "is_popup": False,
            "is_nav_sidebar_enabled": False,
            "log_entries": [],
            "opts": self.opts,
            "title": title,
        }

    def _report_filter(self, request):
        programmes = _scope(request)
        form = ReportForm(request.GET or None, programmes=programmes)
        if request.GET and not form.is_valid():
            return programmes, form, None
        data = form.cleaned_data if request.GET else {}
        ids = [p.pk for p in programmes]
        flt = ReportFilter(
            programme_ids=[data["programme"]] if data.get("programme") else ids,
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
            member=(data.get("member") or "").strip(),
            kind=data.get("kind") or "",
            reason=data.get("reason") or "",
        )
        return programmes, form, report_filter_resolve(flt)

    def report_view(self, request):
        programmes, form, flt = self._report_filter(request)
        context = self._context(request, "Reward points & wallet report")
        context.update({"form": form, "programmes": programmes})
        if flt is not None:
            page = (form.cleaned_data.get("page") if request.GET else None) or 1
            rows, has_next = report_rows(flt, page=page)
            query = request.GET.copy()
            query.pop("page", None)
            context.update(
                {
                    "rows": rows,
                    "page": page,
                    "has_next": has_next,
                    "query": query.urlencode(),
                    "totals": report_totals(flt),
                }
            )
            context["chart"] = chart_bars(earn_burn_per_day(flt))
            context["chart_svg"] = chart_svg(context["chart"])
        return TemplateResponse(request, "admin/wallets/report.html", context)

    def report_csv_view(self, request):
        _programmes, form, flt = self._report_filter(request)
        if flt is None:
            return self.report_view(request)
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        return csv_download(f"wallet-report-{stamp}.csv", CSV_HEADER, report_csv_rows(flt))

    def _statement(self, request):
        programmes = _scope(request)
        today = timezone.localdate()
        initial = {
            "programme": programmes[0].pk,
            "first": month_start(date(today.year - 1, today.month, 1)),
            "last": month_start(today),
        }
        data = {**{k: str(v)[:7] if k != "programme" else v for k, v in initial.items()}}
        data.update({k: v for k, v in request.GET.items() if v})
        form = StatementForm(data, programmes=programmes)
        if not form.is_valid():
            return programmes, form, None, None
        programme = next(p for p in programmes if p.pk == form.cleaned_data["programme"])
        lines = statement_months(
            programme_id=programme.pk,
            first=form.cleaned_data.get("first") or initial["first"],
            last=form.cleaned_data.get("last") or initial["last"],
        )
        return programmes, form, programme, lines

    def statement_view(self, request):
        programmes, form, programme, lines = self._statement(request)
        context = self._context(request, "Month-end points statement")
        context.update(
            {
                "form": form,
                "programme": programme,
                "lines": lines,
                "query": request.GET.urlencode(),
            }
        )
        return TemplateResponse(request, "admin/wallets/statement.html", context)

    def statement_csv_view(self, request):
        _programmes, _form, programme, lines = self._statement(request)
        if lines is None:
            return self.statement_view(request)
        return csv_download(
            f"points-statement-{programme.slug}.csv",
            STATEMENT_HEADER,
            statement_csv_rows(lines, programme.slug),
        )

    def member_audit_view(self, request, member_id: int):
        member = selectors.member_list_for(principal=request.user).filter(pk=member_id).first()
        if member is None:
            raise Http404("No such member.")
        paginator = Paginator(member_audit_log(member=member), AUDIT_PAGE_SIZE)
        page = paginator.get_page(request.GET.get("page"))
        context = self._context(request, f"Audit log of {member}")
        context.update({"member": member, "page_obj": page, "member_opts": Member._meta})
        return TemplateResponse(request, "admin/wallets/member_audit.html", context)
