"""Django admin for the catalog, campaigns and vouchers: the whole voucher lifecycle for
operations teams. As in `plum.admin`, lists are scoped to the user's programmes (objects
outside scope are 404) and every change is a service call, so it is validated, audited and
permission-checked in one place."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html

from campaigns.codes import normalize
from campaigns.models import Campaign, Merchant, Redemption, Reward, Voucher
from campaigns.selectors import campaign_list_for
from campaigns.services.campaigns import (
    CAMPAIGN_CREATE_FIELDS,
    CAMPAIGN_UPDATE_FIELDS,
    campaign_create,
    campaign_transition,
    campaign_update,
)
from campaigns.services.catalog_admin import (
    MERCHANT_FIELDS,
    REWARD_CREATE_FIELDS,
    REWARD_UPDATE_FIELDS,
    merchant_create,
    merchant_update,
    reward_create,
    reward_update,
)
from campaigns.services.codes import (
    GENERATE_JOB,
    MAX_GENERATE,
    codes_generate,
    codes_import,
)
from campaigns.services.vouchers import (
    voucher_flag,
    voucher_reveal,
    voucher_unflag,
    vouchers_extend,
    vouchers_recover,
)
from plum import roles, selectors
from plum.admin import (
    MAX_LISTED,
    PlumModelAdmin,
    ProgrammeScopedAdmin,
    act_on_each,
    listing,
    managed_selection,
    report_outcomes,
)
from plum.errors import PlumError

MAX_IMPORT_BYTES = 10 * 1024 * 1024
MAX_SHOWN_ERRORS = 500
MAX_ONE_BY_ONE = 1000  # vouchers flagged or unflagged in one admin action


def _add_service_errors(form: forms.BaseForm, exc: PlumError) -> None:
    """A service's refusal, shown where the person can fix it: on the field it names, or
    above the form."""
    for field, errors in exc.fields.items():
        target = field if field in form.fields else None
        for error in errors if isinstance(errors, list | tuple) else [errors]:
            form.add_error(target, error if target else f"{field}: {error}")
    if not exc.fields:
        form.add_error(None, exc.message)


class ServiceModelForm(forms.ModelForm):
    """A model form that saves through a service. The call is the last step of validation:
    Django's admin has no later hook where what the service refuses can still re-render the
    form with its errors. The admin's change view wraps validation and save in one
    transaction, so the write commits with the rest of the request or not at all."""

    request = None  # bound per request by ServiceFormAdmin.get_form
    saved = None

    def commit(self, actor):
        raise NotImplementedError

    def _post_clean(self):
        super()._post_clean()
        if self._errors:
            return
        try:
            self.saved = self.commit(self.request.user)
        except PlumError as exc:
            _add_service_errors(self, exc)

    def changed_values(self, fields: list[str]) -> dict:
        return {name: self.cleaned_data[name] for name in self.changed_data if name in fields}


class ServiceFormAdmin:
    """Mixin for a ModelAdmin whose form is a ServiceModelForm: the form did the write."""

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        form.request = request  # get_form builds a new class on every call
        return form

    def save_model(self, request, obj, form, change):
        obj.pk = form.saved.pk

    def save_related(self, request, form, formsets, change):
        pass  # the service wrote everything

    def has_delete_permission(self, request, obj=None):
        return False  # catalog rows and campaigns are retired, never deleted


# --- Catalog ----------------------------------------------------------------------------------


class MerchantForm(ServiceModelForm):
    class Meta:
        model = Merchant
        fields = MERCHANT_FIELDS

    def commit(self, actor):
        if self.instance._state.adding:
            return merchant_create(actor=actor, **self.cleaned_data)
        return merchant_update(
            merchant=self.instance, data=self.changed_values(MERCHANT_FIELDS), actor=actor
        )


@admin.register(Merchant)
class MerchantAdmin(ServiceFormAdmin, PlumModelAdmin):
    form = MerchantForm
    list_display = ["name", "commission_percent", "payout_period", "is_active"]
    list_filter = ["payout_period", "is_active"]
    search_fields = ["name"]


class RewardForm(ServiceModelForm):
    class Meta:
        model = Reward
        fields = REWARD_CREATE_FIELDS

    def clean_country(self):
        return self.cleaned_data["country"].strip().upper()

    def clean_currency(self):
        return self.cleaned_data["currency"].strip().upper()

    def commit(self, actor):
        if self.instance._state.adding:
            return reward_create(actor=actor, **self.cleaned_data)
        return reward_update(
            reward=self.instance, data=self.changed_values(REWARD_UPDATE_FIELDS), actor=actor
        )


@admin.register(Reward)
class RewardAdmin(ServiceFormAdmin, PlumModelAdmin):
    form = RewardForm
    list_display = [
        "sku",
        "name",
        "merchant",
        "kind",
        "country",
        "currency",
        "values",
        "points_price",
        "is_active",
    ]
    list_filter = ["kind", "country", "merchant", "is_active"]
    list_select_related = ["merchant"]
    search_fields = ["name", "sku", "merchant__name"]
    search_help_text = "An exact SKU, or part of a reward's or merchant's name."
    autocomplete_fields = ["merchant"]
    show_full_result_count = False  # catalogs reach 100k rows: one count per page is enough
    show_facets = admin.ShowFacets.NEVER

    def get_readonly_fields(self, request, obj=None):
        return ["sku"] if obj else []

    def get_search_results(self, request, queryset, search_term):
        # Merchant names through a subquery rather than a join, so that each side can use its
        # own (trigram) index on Postgres.
        term = search_term.strip()
        if not term:
            return queryset, False
        merchants = Merchant.objects.filter(name__icontains=term).values("pk")
        return (
            queryset.filter(Q(sku=term) | Q(name__icontains=term) | Q(merchant__in=merchants)),
            False,
        )

    @admin.display(description="values")
    def values(self, obj):
        if obj.denominations:
            return ", ".join(str(d) for d in obj.denominations)
        if obj.min_value is not None:
            return f"{obj.min_value}–{obj.max_value}"
        return "any"


# --- Campaigns --------------------------------------------------------------------------------


class CampaignAddForm(ServiceModelForm):
    class Meta:
        model = Campaign
        fields = ["programme", *[f for f in CAMPAIGN_CREATE_FIELDS if f != "currency"]]

    def clean(self):
        cleaned = super().clean()
        reward = cleaned.get("reward")
        if reward is not None:
            # A campaign is always in its reward's currency (Campaign.clean checks it).
            self.instance.currency = reward.currency
        return cleaned

    def commit(self, actor):
        data = {f: self.cleaned_data[f] for f in CAMPAIGN_CREATE_FIELDS if f in self.cleaned_data}
        return campaign_create(programme=self.cleaned_data["programme"], actor=actor, **data)


class CampaignChangeForm(ServiceModelForm):
    class Meta:
        model = Campaign
        fields = CAMPAIGN_UPDATE_FIELDS

    def commit(self, actor):
        data = self.changed_values(CAMPAIGN_UPDATE_FIELDS)
        if not data:
            return self.instance
        return campaign_update(campaign=self.instance, data=data, actor=actor)


CAMPAIGN_FIELDSETS = [
    (None, ["programme", "name", "reward", "value", "currency", "starts_at", "ends_at"]),
    ("Governance", ["max_rewards", "budget", "per_member_cap", "approval_mode"]),
    ("Codes", ["code_source", "code_prefix", "code_length", "expiry_days", "expiry_date"]),
    ("Delivery", ["default_channel", "in_storefront"]),
]
CAMPAIGN_LIVE_FIELDS = ["status", "issued", "issued_value_of_budget", "pool"]
# Fixed once the campaign exists (campaign_update refuses them).
CAMPAIGN_FIXED_FIELDS = ["programme", "reward", "value", "currency", "code_source"]


class GenerateCodesForm(forms.Form):
    count = forms.IntegerField(min_value=1, max_value=MAX_GENERATE, initial=1000)
    is_test = forms.BooleanField(
        required=False,
        label="Test codes",
        help_text="For UAT and QA: redeemable only by test API clients and staff, never "
        "counted in caps, budgets, payouts or reports.",
    )


class ImportCodesForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="A header row with `code`, optionally `value` and `expires_at` (ISO 8601 with "
        "a time zone).",
    )
    is_test = forms.BooleanField(required=False, label="Test codes")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_IMPORT_BYTES:
            raise ValidationError(f"A file may be at most {MAX_IMPORT_BYTES // 1024 // 1024} MB.")
        try:
            return upload.read().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValidationError("The file is not UTF-8 text.") from exc


@admin.register(Campaign)
class CampaignAdmin(ServiceFormAdmin, ProgrammeScopedAdmin):
    list_display = [
        "name",
        "programme",
        "reward",
        "status",
        "value",
        "issued",
        "issued_value_of_budget",
        "starts_at",
        "ends_at",
    ]
    list_filter = ["status", "programme"]
    list_select_related = ["programme", "reward"]
    search_fields = ["name"]
    autocomplete_fields = ["reward"]
    actions = ["activate", "pause", "resume", "end"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = CampaignChangeForm if obj else CampaignAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        fieldsets = [
            (title, {"fields": [f for f in fields if obj or f != "currency"]})
            for title, fields in CAMPAIGN_FIELDSETS
        ]
        if obj:
            fieldsets.insert(1, ("Status", {"fields": CAMPAIGN_LIVE_FIELDS}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        fixed = [*CAMPAIGN_FIXED_FIELDS, "code_prefix", "code_length", *CAMPAIGN_LIVE_FIELDS]
        if obj.status != Campaign.Status.DRAFT:
            fixed.append("starts_at")
        return fixed

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "programme":
            kwargs["queryset"] = selectors.programmes_for(request.user, roles.MANAGE)
        if db_field.name == "reward":
            kwargs["queryset"] = Reward.objects.filter(is_active=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        programmes = list(selectors.programmes_for(request.user, roles.MANAGE)[:2])
        if len(programmes) == 1:
            initial.setdefault("programme", programmes[0].pk)
        return initial

    def has_add_permission(self, request):
        return (
            super().has_add_permission(request)
            and selectors.programmes_for(request.user, roles.MANAGE).exists()
        )

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.status == Campaign.Status.ENDED:
            return False  # an ended campaign is a record: view only
        return super().has_change_permission(request, obj)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["may_manage_codes"] = obj is not None and self.has_change_permission(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    # list columns

    @admin.display(description="issued")
    def issued(self, obj):
        limit = "no limit" if obj.max_rewards is None else obj.max_rewards
        return f"{obj.issued_count} / {limit}"

    @admin.display(description="issued value / budget")
    def issued_value_of_budget(self, obj):
        budget = "no budget" if obj.budget is None else obj.budget
        return f"{obj.issued_value} / {budget} {obj.currency}"

    @admin.display(description="codes")
    def pool(self, obj):
        counts = {
            (row["status"], row["is_test"]): row["n"]
            for row in obj.vouchers.values("status", "is_test").annotate(n=Count("id"))
        }
        live_pool = counts.get(("available", False), 0)
        test_pool = counts.get(("available", True), 0)
        total = sum(counts.values())
        url = reverse("admin:campaigns_voucher_changelist") + f"?campaign={obj.pk}"
        return format_html(
            '{} in the pool ({} test), {} in all. <a href="{}">See the vouchers</a>',
            live_pool + test_pool,
            test_pool,
            total,
            url,
        )

    # actions: start, pause, resume, end

    def _transition(self, request, queryset, action: str, done_verb: str):
        manageable = set(
            selectors.scoped(queryset, request.user, roles.MANAGE).values_list("pk", flat=True)
        )

        def act(campaign):
            if campaign.pk not in manageable:
                raise PlumError("you do not manage its programme")
            campaign_transition(campaign=campaign, action=action, actor=request.user)

        done, refused = act_on_each(
            queryset.order_by("pk"), act, label=lambda campaign: f"“{campaign.name}”"
        )
        report_outcomes(
            self,
            request,
            done=done,
            refused=refused,
            noun="campaign",
            done_verb=done_verb,
            refused_verb=action,
        )

    @admin.action(
        description="Activate (start) the selected draft campaigns", permissions=["change"]
    )
    def activate(self, request, queryset):
        self._transition(request, queryset, "activate", "Activated")

    @admin.action(description="Pause the selected active campaigns", permissions=["change"])
    def pause(self, request, queryset):
        self._transition(request, queryset, "pause", "Paused")

    @admin.action(description="Resume the selected paused campaigns", permissions=["change"])
    def resume(self, request, queryset):
        self._transition(request, queryset, "resume", "Resumed")

    @admin.action(description="End the selected campaigns for good", permissions=["change"])
    def end(self, request, queryset):
        self._transition(request, queryset, "end", "Ended")

    # code generation and import

    def get_urls(self):
        return [
            path(
                "<path:object_id>/generate-codes/",
                self.admin_site.admin_view(self.generate_codes_view),
                name="campaigns_campaign_generate_codes",
            ),
            path(
                "<path:object_id>/import-codes/",
                self.admin_site.admin_view(self.import_codes_view),
                name="campaigns_campaign_import_codes",
            ),
            *super().get_urls(),
        ]

    def _campaign_for_codes(self, request, object_id) -> Campaign:
        campaign = self.get_object(request, object_id)  # 404 outside the user's programmes
        if not self.has_change_permission(request, campaign):
            raise PermissionDenied
        return campaign

    def _codes_context(self, request, campaign, title, **extra):
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": campaign,
            "title": title,
            **extra,
        }

    def generate_codes_view(self, request, object_id):
        campaign = self._campaign_for_codes(request, object_id)
        form = GenerateCodesForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                job = codes_generate(
                    campaign=campaign,
                    count=form.cleaned_data["count"],
                    is_test=form.cleaned_data["is_test"],
                    actor=request.user,
                )
            except PlumError as exc:
                _add_service_errors(form, exc)
            else:
                kind = "test " if form.cleaned_data["is_test"] else ""
                self.message_user(
                    request,
                    format_html(
                        'Generating {} {}code(s) for “{}”: <a href="{}">job {}</a>.',
                        f"{job.total:,}",
                        kind,
                        campaign.name,
                        reverse("admin:plum_job_change", args=[job.pk]),
                        job.pk,
                    ),
                    messages.SUCCESS,
                )
                return redirect(request.path)
        jobs = list(
            selectors.job_list_for(principal=request.user)
            .filter(kind=GENERATE_JOB, params__campaign_id=campaign.pk)
            .order_by("-created_at")[:10]
        )
        context = self._codes_context(
            request,
            campaign,
            f"Generate codes for {campaign.name}",
            form=form,
            jobs=jobs,
            jobs_running=any(job.status in ("queued", "running") for job in jobs),
        )
        return TemplateResponse(request, "admin/campaigns/campaign/generate_codes.html", context)

    def import_codes_view(self, request, object_id):
        campaign = self._campaign_for_codes(request, object_id)
        form = (
            ImportCodesForm(request.POST, request.FILES)
            if request.method == "POST"
            else ImportCodesForm()
        )
        result = None
        if request.method == "POST" and form.is_valid():
            try:
                result = codes_import(
                    campaign=campaign,
                    text=form.cleaned_data["file"],
                    is_test=form.cleaned_data["is_test"],
                    actor=request.user,
                )
            except PlumError as exc:
                _add_service_errors(form, exc)
            else:
                level = messages.WARNING if result["errors"] else messages.SUCCESS
                self.message_user(
                    request,
                    f"Imported {result['imported']} code(s) into “{campaign.name}”; "
                    f"{len(result['errors'])} row(s) refused.",
                    level,
                )
        context = self._codes_context(
            request,
            campaign,
            f"Import codes into {campaign.name}",
            form=form,
            result=result,
            shown_errors=result["errors"][:MAX_SHOWN_ERRORS] if result else [],
            hidden_errors=max(0, len(result["errors"]) - MAX_SHOWN_ERRORS) if result else 0,
        )
        return TemplateResponse(request, "admin/campaigns/campaign/import_codes.html", context)


# --- Vouchers ---------------------------------------------------------------------------------


class CampaignListFilter(admin.SimpleListFilter):
    """The campaigns the user may see (the stock related filter would scan every voucher)."""

    title = "campaign"
    parameter_name = "campaign"

    def lookups(self, request, model_admin):
        return [
            (str(pk), name)
            for pk, name in campaign_list_for(principal=request.user)
            .order_by("name", "pk")
            .values_list("pk", "name")
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(campaign_id=int(value))
        if value:
            return queryset.none()
        return queryset


class ExpiryWindowListFilter(admin.DateFieldListFilter):
    """Expiry looks forward: what lapses soon, what already has, what never does."""

    def __init__(self, field, request, params, model, model_admin, field_path):
        super().__init__(field, request, params, model, model_admin, field_path)
        self.title = "expiry window"
        today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
        since, until = self.lookup_kwarg_since, self.lookup_kwarg_until
        self.links = (
            ("Any expiry", {}),
            ("Before today", {until: today}),
            ("Within 7 days", {since: today, until: today + timedelta(days=8)}),
            ("Within 30 days", {since: today, until: today + timedelta(days=31)}),
            ("Within 90 days", {since: today, until: today + timedelta(days=91)}),
            ("No expiry", {self.lookup_kwarg_isnull: True}),
        )


class IsTestListFilter(admin.BooleanFieldListFilter):
    def __init__(self, field, request, params, model, model_admin, field_path):
        super().__init__(field, request, params, model, model_admin, field_path)
        self.title = "test codes"


class RedemptionInline(admin.TabularInline):
    model = Redemption
    fields = ["redeemed_at", "amount", "balance_after", "reference", "actor_label"]
    readonly_fields = fields
    ordering = ["-id"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ExtendExpiryForm(forms.Form):
    expires_on = forms.DateField(
        label="New expiry date", widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args, zone: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.zone = ZoneInfo(zone)

    def clean_expires_on(self):
        day = self.cleaned_data["expires_on"]
        if day < timezone.localdate(timezone=self.zone):
            raise ValidationError("The new expiry date is in the past.")
        return day

    @property
    def expires_at(self) -> datetime:
        """The end of the chosen day, where the programme is."""
        return datetime.combine(self.cleaned_data["expires_on"], time(23, 59, 59), self.zone)


@admin.register(Voucher)
class VoucherAdmin(ProgrammeScopedAdmin):
    """Vouchers are never edited: their state moves only through the actions (services). Full
    codes appear nowhere but on the reveal page, which is audited."""

    list_display = [
        "code_masked",
        "campaign",
        "status",
        "balance_of_face_value",
        "expires_at",
        "test_marker",
        "member_id_display",
    ]
    list_display_links = ["code_masked"]
    list_filter = [
        CampaignListFilter,
        "status",
        ("is_test", IsTestListFilter),
        ("expires_at", ExpiryWindowListFilter),
    ]
    list_select_related = ["campaign", "member"]
    search_fields = ["code"]  # replaced by the exact-code search below
    search_help_text = "An exact code (spaces, dashes and case do not matter)."
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a count per filter choice over millions of rows
    fields = [
        "code_masked",
        "campaign",
        "programme",
        "status",
        "test_marker",
        "balance_of_face_value",
        "expires_at",
        "member",
        "issued_at",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields
    inlines = [RedemptionInline]
    actions = ["flag", "unflag", "extend_expiry", "recover_to_pool", "recover_and_retire"]

    def get_search_results(self, request, queryset, search_term):
        # An exact match only: a partial code must find nothing, or the search box would be a
        # way to enumerate codes.
        code = normalize(search_term)
        if not code:
            return queryset, False
        return queryset.filter(code=code), False

    def has_add_permission(self, request):
        return False  # vouchers come from generation, import and issuing

    def has_change_permission(self, request, obj=None):
        if obj is not None:
            return False  # the change page is read-only; actions need the model-level answer
        return super().has_change_permission(request)

    def _may_reveal(self, request, voucher) -> bool:
        # Managers, and support agents who read a code to a member on the phone.
        return (
            (
                selectors.programmes_for(request.user, roles.MANAGE)
                | selectors.programmes_for(request.user, roles.SUPPORT)
            )
            .filter(pk=voucher.programme_id)
            .exists()
        )

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["may_reveal"] = obj is not None and self._may_reveal(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    # columns

    @admin.display(description="code", ordering="id")
    def code_masked(self, obj):
        return obj.masked_code

    @admin.display(description="balance / face value")
    def balance_of_face_value(self, obj):
        return f"{obj.balance} / {obj.face_value} {obj.currency}"

    @admin.display(description="test", ordering="is_test")
    def test_marker(self, obj):
        if not obj.is_test:
            return ""
        return format_html(
            '<span class="plum-test-badge" style="background:{};color:#fff;'
            'font-weight:bold;padding:1px 6px;border-radius:3px">TEST</span>',
            "#ba2121",
        )

    @admin.display(description="member", ordering="member__external_id")
    def member_id_display(self, obj):
        return obj.member.external_id if obj.member_id else "—"

    # reveal

    def get_urls(self):
        return [
            path(
                "<path:object_id>/reveal/",
                self.admin_site.admin_view(self.reveal_view),
                name="campaigns_voucher_reveal",
            ),
            *super().get_urls(),
        ]

    def reveal_view(self, request, object_id):
        """GET asks for confirmation; POST reveals the code once, audited, never cached."""
        voucher = self.get_object(request, object_id)  # 404 outside the user's programmes
        if not self._may_reveal(request, voucher):
            raise PermissionDenied
        code = None
        if request.method == "POST":
            code = voucher_reveal(voucher=voucher, actor=request.user)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": voucher,
            "title": f"Reveal the code of voucher {voucher.masked_code}",
            "code": code,
        }
        response = TemplateResponse(request, "admin/campaigns/voucher/reveal.html", context)
        add_never_cache_headers(response)
        return response

    # actions

    def _split(self, request, queryset):
        """The selected vouchers the user may change, and a message about the others."""
        return managed_selection(self, request, queryset, "voucher")

    def _each(self, request, queryset, service, done_verb: str, refused_verb: str):
        manageable = self._split(request, queryset)
        if manageable.count() > MAX_ONE_BY_ONE:
            # One transaction per voucher: a whole-campaign selection belongs in the API.
            self.message_user(
                request,
                f"Select at most {MAX_ONE_BY_ONE:,} vouchers to {refused_verb} at once; "
                "nothing was changed.",
                messages.ERROR,
            )
            return
        done, refused = act_on_each(
            manageable.order_by("pk"),
            lambda voucher: service(voucher=voucher, actor=request.user),
            label=lambda voucher: voucher.masked_code,
        )
        report_outcomes(
            self,
            request,
            done=done,
            refused=refused,
            noun="voucher",
            done_verb=done_verb,
            refused_verb=refused_verb,
        )

    @admin.action(
        description="Flag the selected vouchers (block redemption)", permissions=["change"]
    )
    def flag(self, request, queryset):
        def flag_one(*, voucher, actor):
            return voucher_flag(voucher=voucher, actor=actor, reason="flagged in the admin")

        self._each(request, queryset, flag_one, "Flagged", "flag")

    @admin.action(description="Unflag the selected vouchers", permissions=["change"])
    def unflag(self, request, queryset):
        self._each(request, queryset, voucher_unflag, "Unflagged", "unflag")

    def _report_refused(self, request, verb: str, refused: list[dict]) -> None:
        if refused:
            listed = [f"{row['code']} ({row['status']})" for row in refused]
            self.message_user(
                request,
                f"Could not {verb} {len(refused)} voucher(s): {listing(listed)}.",
                messages.WARNING,
            )

    @admin.action(description="Extend the expiry of the selected vouchers…", permissions=["change"])
    def extend_expiry(self, request, queryset):
        zones = list(
            selectors.programmes_for(request.user)
            .filter(pk__in=queryset.order_by().values("programme_id"))
            .order_by()
            .values_list("timezone", flat=True)
            .distinct()[:2]
        )
        zone = zones[0] if len(zones) == 1 else settings.TIME_ZONE
        if "apply" in request.POST:
            form = ExtendExpiryForm(request.POST, zone=zone)
            if not form.is_valid():
                errors = "; ".join(e for errs in form.errors.values() for e in errs)
                self.message_user(request, f"Nothing was extended: {errors}", messages.ERROR)
                return None
            manageable = self._split(request, queryset)
            try:
                result = vouchers_extend(
                    vouchers=manageable, expires_at=form.expires_at, actor=request.user
                )
            except PlumError as exc:
                self.message_user(request, f"Nothing was extended: {exc.message}", messages.ERROR)
                return None
            if result["extended"]:
                self.message_user(
                    request,
                    f"Extended {result['extended']} voucher(s) to "
                    f"{form.expires_at:%Y-%m-%d %H:%M} ({zone}).",
                    messages.SUCCESS,
                )
            self._report_refused(request, "extend", result["skipped"])
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Extend the expiry of vouchers",
            "form": ExtendExpiryForm(zone=zone),
            "zone": zone,
            "count": queryset.count(),
            "sample": [v.masked_code for v in queryset[:MAX_LISTED]],
            "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action": "extend_expiry",
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/campaigns/voucher/extend_expiry.html", context)

    def _recover(self, request, queryset, *, to_pool: bool):
        result = vouchers_recover(
            vouchers=self._split(request, queryset), actor=request.user, to_pool=to_pool
        )
        if result["recovered"]:
            where = "back to the pool" if to_pool else "and retired them"
            self.message_user(
                request, f"Recovered {result['recovered']} voucher(s) {where}.", messages.SUCCESS
            )
        self._report_refused(request, "recover", result["refused"])

    @admin.action(description="Recover the selected vouchers to the pool", permissions=["change"])
    def recover_to_pool(self, request, queryset):
        self._recover(request, queryset, to_pool=True)

    @admin.action(description="Recover and retire the selected vouchers", permissions=["change"])
    def recover_and_retire(self, request, queryset):
        self._recover(request, queryset, to_pool=False)
