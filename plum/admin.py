"""Django admin for the kernel. Every list is scoped through `plum.selectors.programmes_for`;
every change goes through a service, so it is validated, audited and permission-checked once."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from plum import event_catalog, roles, selectors
from plum.errors import PlumError
from plum.models import (
    ApiClient,
    ApiScope,
    AuditEvent,
    Delivery,
    DeliveryAttempt,
    Job,
    Member,
    NotificationChannel,
    OutboxMessage,
    Programme,
    WebhookEndpoint,
)
from plum.services.api_clients import api_client_create, api_client_revoke
from plum.services.deliveries import deliveries_replay_failed, delivery_replay
from plum.services.notifications import (
    notification_channel_create,
    notification_channel_update,
)
from plum.services.outbox import outbox_retry
from plum.services.programmes import (
    MEMBER_FIELDS,
    PROGRAMME_FIELDS,
    member_upsert,
    programme_create,
    programme_update,
)
from plum.services.webhooks import (
    validate_event_types,
    validate_target_url,
    webhook_endpoint_create,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
)

admin.site.site_header = "Plum administration"
admin.site.site_title = "Plum admin"


class PlumModelAdmin(admin.ModelAdmin):
    """Django's admin answers an object outside `get_queryset` with a redirect to the index and
    a "doesn't exist" message; Plum answers 404, exactly as for an object that does not exist,
    so a change, history or delete URL never tells a user what another programme holds."""

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404(f"No {self.opts.verbose_name} with this ID.")
        return obj


class ProgrammeScopedAdmin(PlumModelAdmin):
    """Rows of programmes the user holds `view_perm` on; changes need `change_perm` on the
    row's programme. Objects outside scope are simply not found (404)."""

    view_perm = roles.VIEW
    change_perm = roles.MANAGE
    programme_field = "programme"

    def get_queryset(self, request):
        return selectors.scoped(
            super().get_queryset(request), request.user, self.view_perm, field=self.programme_field
        )

    def _programme_id(self, obj):
        if isinstance(obj, Programme):
            return obj.pk
        return getattr(obj, f"{self.programme_field}_id")

    def _may_change(self, request, obj) -> bool:
        if obj is None:
            return selectors.programmes_for(request.user, self.change_perm).exists()
        return (
            selectors.programmes_for(request.user, self.change_perm)
            .filter(pk=self._programme_id(obj))
            .exists()
        )

    def get_list_filter(self, request):
        # The stock related-field filter lists every programme in the database; list only the
        # programmes of rows the user may see.
        return [
            (item, admin.RelatedOnlyFieldListFilter) if item == self.programme_field else item
            for item in super().get_list_filter(request)
        ]

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and self._may_change(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(PlumModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _raise_as_form_errors(form, exc: PlumError):
    for field, errors in exc.fields.items():
        target = field if field in form.fields else None
        for error in errors:
            form.add_error(target, error)
    if not exc.fields:
        form.add_error(None, exc.message)


@admin.register(Programme)
class ProgrammeAdmin(ProgrammeScopedAdmin):
    list_display = ["name", "slug", "currency", "timezone", "default_channel", "is_active"]
    list_filter = ["is_active", "currency"]
    search_fields = ["name", "slug"]
    fields = PROGRAMME_FIELDS
    programme_field = "pk"

    def get_queryset(self, request):
        return admin.ModelAdmin.get_queryset(self, request).filter(
            pk__in=selectors.programmes_for(request.user, self.view_perm).values("pk")
        )

    def has_module_permission(self, request):
        return (
            request.user.is_active
            and request.user.is_staff
            and (selectors.programmes_for(request.user).exists())
        )

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def has_change_permission(self, request, obj=None):
        return request.user.is_staff and self._may_change(request, obj)

    def has_add_permission(self, request):
        return request.user.has_perm("plum.add_programme")

    def save_model(self, request, obj, form, change):
        data = {name: form.cleaned_data[name] for name in form.changed_data}
        if change:
            programme_update(
                programme=Programme.objects.get(pk=obj.pk), actor=request.user, data=data
            )
        else:
            created = programme_create(actor=request.user, **form.cleaned_data)
            obj.pk = created.pk


class MemberAdminForm(forms.ModelForm):
    class Meta:
        model = Member
        fields = ["programme", "external_id", *MEMBER_FIELDS]


@admin.register(Member)
class MemberAdmin(ProgrammeScopedAdmin):
    form = MemberAdminForm
    list_display = ["external_id", "name", "email", "phone", "programme", "preferred_channel"]
    list_filter = ["programme", "preferred_channel", "country"]
    search_fields = ["external_id", "email", "phone", "name"]
    list_select_related = ["programme"]
    change_perm = roles.SUPPORT

    def _may_change(self, request, obj) -> bool:
        # Managers and support agents both correct member details.
        allowed = selectors.programmes_for(request.user, roles.MANAGE) | selectors.programmes_for(
            request.user, roles.SUPPORT
        )
        if obj is None:
            return allowed.exists()
        return allowed.filter(pk=obj.programme_id).exists()

    def get_readonly_fields(self, request, obj=None):
        return ["programme", "external_id", "audit_log"] if obj else []

    @admin.display(description="audit log")
    def audit_log(self, obj):
        # The page lives with the app that serves it (wallets); named, not imported.
        try:
            url = reverse("admin:wallets_member_audit", args=[obj.pk])
        except NoReverseMatch:
            return "-"
        return format_html('<a href="{}">Every action taken against this member</a>', url)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "programme":
            kwargs["queryset"] = selectors.programmes_for(request.user, roles.MANAGE)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        programme = obj.programme
        if not self._may_change(request, obj):
            raise PermissionDenied
        member, _ = member_upsert(
            programme=programme,
            external_id=obj.external_id,
            actor=request.user,
            data={
                name: form.cleaned_data[name] for name in MEMBER_FIELDS if name in form.cleaned_data
            },
        )
        obj.pk = member.pk


class ApiClientAddForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiScope.choices,
        initial=list(ApiScope.values),
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = ApiClient
        fields = ["name", "programmes", "scopes", "is_test"]


@admin.register(ApiClient)
class ApiClientAdmin(PlumModelAdmin):
    list_display = ["name", "key_prefix", "is_test", "scope_list", "created_at", "revoked_at"]
    list_filter = ["is_test"]
    search_fields = ["name", "key_prefix"]
    actions = ["revoke"]
    form = ApiClientAddForm

    def get_queryset(self, request):
        visible = selectors.programmes_for(request.user, roles.MANAGE)
        return super().get_queryset(request).filter(programmes__in=visible.values("pk")).distinct()

    def get_readonly_fields(self, request, obj=None):
        if obj:
            return ["name", "programmes", "scopes", "is_test", "key_prefix", "revoked_at"]
        return []

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "programmes":
            kwargs["queryset"] = selectors.programmes_for(request.user, roles.MANAGE)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    @admin.display(description="scopes")
    def scope_list(self, obj):
        return ", ".join(obj.scopes)

    def save_model(self, request, obj, form, change):
        if change:
            return
        client, key = api_client_create(
            name=form.cleaned_data["name"],
            programmes=list(form.cleaned_data["programmes"]),
            scopes=form.cleaned_data["scopes"],
            is_test=form.cleaned_data["is_test"],
            actor=request.user,
        )
        obj.pk = client.pk
        messages.warning(
            request,
            f"The key for {client.name} is shown only now; store it safely: {key}",
        )

    def save_related(self, request, form, formsets, change):
        pass  # the service bound the programmes

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke the selected clients' keys")
    def revoke(self, request, queryset):
        count = sum(api_client_revoke(client=client, actor=request.user) for client in queryset)
        self.message_user(request, f"Revoked {count} client(s).")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "occurred_at", "actor_label", "action", "object_type", "object_id"]
    list_filter = ["action", "actor_type", "object_type"]
    search_fields = ["object_id", "actor_label", "request_id"]
    date_hierarchy = "occurred_at"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if selectors.is_platform_admin(request.user):
            return queryset  # including events of no programme (users, system tasks)
        return queryset.filter(programme_id__in=selectors.programmes_for(request.user).values("pk"))


def _progress_bar(job: Job):
    return format_html(
        '<progress max="100" value="{}" aria-label="progress">{}%</progress> {} / {}',
        job.percent,
        job.percent,
        job.done,
        job.total,
    )


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "programme", "status", "progress", "created_at", "finished_at"]
    list_filter = ["status", "kind"]
    list_select_related = ["programme"]
    readonly_fields = ["progress"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .filter(pk__in=selectors.job_list_for(principal=request.user).values("pk"))
        )

    @admin.display(description="progress")
    def progress(self, obj):
        return _progress_bar(obj)


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "status", "attempts", "next_attempt_at", "created_at"]
    list_filter = ["status", "kind"]
    actions = ["retry"]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if selectors.is_platform_admin(request.user):
            return queryset  # including messages of no programme
        return selectors.scoped(queryset, request.user, roles.MANAGE)

    @admin.action(description="Retry the selected failed or dead messages")
    def retry(self, request, queryset):
        count = sum(outbox_retry(message=message, actor=request.user) for message in queryset)
        self.message_user(request, f"{count} message(s) queued again.")


# --- bulk actions through services ----------------------------------------------------------

MAX_LISTED = 20  # names listed in one message; the rest are counted


def listing(items: list[str], limit: int = MAX_LISTED) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


def managed_selection(modeladmin, request, queryset, noun: str):
    """The selected rows in programmes the user manages; a message about the others."""
    manageable = selectors.scoped(queryset, request.user, roles.MANAGE)
    outside = queryset.count() - manageable.count()
    if outside:
        modeladmin.message_user(
            request,
            f"{outside} selected {noun}(s) belong to programmes you do not manage; "
            "they were left unchanged.",
            messages.WARNING,
        )
    return manageable


def act_on_each(objects, act, label, describe=lambda exc: exc.message):
    """Call `act(obj)` (a service, one transaction each) for every object; collect the labels
    of those done and of those refused with the reason."""
    done: list[str] = []
    refused: list[str] = []
    for obj in objects:
        try:
            act(obj)
        except PlumError as exc:
            refused.append(f"{label(obj)} ({describe(exc)})")
        else:
            done.append(label(obj))
    return done, refused


def report_outcomes(modeladmin, request, *, done, refused, noun, done_verb, refused_verb):
    if done:
        modeladmin.message_user(
            request, f"{done_verb} {len(done)} {noun}(s): {listing(done)}.", messages.SUCCESS
        )
    if refused:
        modeladmin.message_user(
            request,
            f"Could not {refused_verb} {len(refused)} {noun}(s): {listing(refused)}.",
            messages.WARNING,
        )


# --- notifications and webhooks -------------------------------------------------------------

EVENT_TYPE_CHOICES = [(event_catalog.ALL_EVENTS, "All events")] + [
    (name, name) for name in event_catalog.EVENT_TYPE_NAMES
]


class _TargetForm(forms.ModelForm):
    """Validates URL and event types with the services' own rules, so a refusal is a form
    error, never a 500; the URL field is write-only (never rendered back)."""

    url_field = "url"
    url = forms.CharField(
        max_length=500,
        required=False,
        widget=forms.TextInput(attrs={"size": 80, "autocomplete": "off"}),
    )
    event_types = forms.MultipleChoiceField(
        choices=EVENT_TYPE_CHOICES, widget=forms.CheckboxSelectMultiple
    )

    def clean(self):
        cleaned = super().clean()
        url = cleaned.get("url")
        try:
            if url or self.instance.pk is None:
                cleaned["url"] = validate_target_url(url or "")
            if "event_types" in cleaned:
                cleaned["event_types"] = validate_event_types(cleaned["event_types"])
        except PlumError as exc:
            _raise_as_form_errors(self, exc)
        return cleaned


class NotificationChannelForm(_TargetForm):
    class Meta:
        model = NotificationChannel
        fields = ["programme", "name", "kind", "url", "event_types", "is_active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["url"].help_text = (
            "Slack or Teams incoming-webhook URL (https). Stored encrypted and never shown "
            "again; leave blank to keep the current one."
            if self.instance.pk
            else "Slack or Teams incoming-webhook URL (https). Stored encrypted."
        )


def _target_actions_report(modeladmin, request, done, refused, verb):
    report_outcomes(
        modeladmin,
        request,
        done=done,
        refused=refused,
        noun="target",
        done_verb=verb,
        refused_verb=verb.lower(),
    )


@admin.register(NotificationChannel)
class NotificationChannelAdmin(ProgrammeScopedAdmin):
    form = NotificationChannelForm
    list_display = [
        "name",
        "programme",
        "kind",
        "url_hint",
        "events",
        "is_active",
        "consecutive_failures",
        "disabled_reason",
    ]
    list_filter = ["kind", "is_active", "programme"]
    list_select_related = ["programme"]
    search_fields = ["name"]
    readonly_fields = ["url_hint", "consecutive_failures", "disabled_at", "disabled_reason"]
    actions = ["enable", "replay_failed"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "programme", "kind"] if obj else self.readonly_fields

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "programme":
            kwargs["queryset"] = selectors.programmes_for(request.user, roles.MANAGE)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_add_permission(self, request):
        return super().has_add_permission(request) and self._may_change(request, None)

    @admin.display(description="events")
    def events(self, obj):
        return ", ".join(obj.event_types)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            changed = {
                name: data[name]
                for name in ("name", "event_types", "is_active")
                if name in form.changed_data
            }
            if data.get("url"):
                changed["url"] = data["url"]
            notification_channel_update(
                channel=NotificationChannel.objects.get(pk=obj.pk), actor=request.user, data=changed
            )
        else:
            if not self._may_change(request, data["programme"]):
                raise PermissionDenied
            created = notification_channel_create(
                programme=data["programme"],
                name=data["name"],
                kind=data["kind"],
                url=data["url"],
                event_types=data["event_types"],
                actor=request.user,
            )
            obj.pk = created.pk
            if not data["is_active"]:
                notification_channel_update(
                    channel=created, actor=request.user, data={"is_active": False}
                )

    @admin.action(description="Enable the selected channels (clears the failure run)")
    def enable(self, request, queryset):
        done, refused = act_on_each(
            managed_selection(self, request, queryset, "channel"),
            lambda c: notification_channel_update(
                channel=c, actor=request.user, data={"is_active": True}
            ),
            str,
        )
        _target_actions_report(self, request, done, refused, "Enabled")

    @admin.action(description="Replay the failed deliveries of the selected channels")
    def replay_failed(self, request, queryset):
        counts = []
        done, refused = act_on_each(
            managed_selection(self, request, queryset, "channel"),
            lambda c: counts.append(deliveries_replay_failed(target=c, actor=request.user)),
            str,
        )
        self.message_user(request, f"{sum(counts)} failed delivery(ies) queued again.")
        _target_actions_report(self, request, done, refused, "Replayed")


class WebhookEndpointForm(_TargetForm):
    class Meta:
        model = WebhookEndpoint
        fields = ["client", "url", "description", "event_types", "is_active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["url"] = self.instance.url
        self.fields["url"].help_text = "The receiver's https URL."


def _endpoint_programmes_filter(request):
    return selectors.programmes_for(request.user, roles.MANAGE).values("pk")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(PlumModelAdmin):
    """Endpoints of the API clients bound to programmes the user manages."""

    form = WebhookEndpointForm
    list_display = [
        "url",
        "client",
        "events",
        "secret_hint",
        "is_active",
        "consecutive_failures",
        "disabled_reason",
    ]
    list_filter = ["is_active"]
    list_select_related = ["client"]
    search_fields = ["url", "description"]
    readonly_fields = [
        "secret_hint",
        "previous_secret_expires_at",
        "consecutive_failures",
        "disabled_at",
        "disabled_reason",
    ]
    actions = ["rotate_secret", "enable", "replay_failed"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .filter(client__programmes__in=_endpoint_programmes_filter(request))
            .distinct()
        )

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "client"] if obj else self.readonly_fields

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "client":
            kwargs["queryset"] = ApiClient.objects.filter(
                revoked_at__isnull=True, programmes__in=_endpoint_programmes_filter(request)
            ).distinct()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="events")
    def events(self, obj):
        return ", ".join(obj.event_types)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            changed = {
                name: data[name]
                for name in ("url", "description", "event_types", "is_active")
                if name in form.changed_data
            }
            webhook_endpoint_update(
                endpoint=WebhookEndpoint.objects.get(pk=obj.pk), actor=request.user, data=changed
            )
            return
        endpoint, secret = webhook_endpoint_create(
            client=data["client"],
            url=data["url"],
            event_types=data["event_types"],
            description=data.get("description", ""),
            actor=request.user,
        )
        obj.pk = endpoint.pk
        if not data["is_active"]:
            webhook_endpoint_update(
                endpoint=endpoint, actor=request.user, data={"is_active": False}
            )
        messages.warning(
            request,
            f"The signing secret of {endpoint.url} is shown only now; store it safely: {secret}",
        )

    @admin.action(description="Rotate the signing secret (the old one signs for 24 h more)")
    def rotate_secret(self, request, queryset):
        for endpoint in queryset:
            endpoint, secret = webhook_endpoint_rotate_secret(endpoint=endpoint, actor=request.user)
            messages.warning(
                request,
                f"New signing secret of {endpoint.url}, shown only now: {secret}",
            )

    @admin.action(description="Enable the selected endpoints (clears the failure run)")
    def enable(self, request, queryset):
        done, refused = act_on_each(
            queryset,
            lambda e: webhook_endpoint_update(
                endpoint=e, actor=request.user, data={"is_active": True}
            ),
            str,
        )
        _target_actions_report(self, request, done, refused, "Enabled")

    @admin.action(description="Replay the failed deliveries of the selected endpoints")
    def replay_failed(self, request, queryset):
        counts = []
        done, refused = act_on_each(
            queryset,
            lambda e: counts.append(deliveries_replay_failed(target=e, actor=request.user)),
            str,
        )
        self.message_user(request, f"{sum(counts)} failed delivery(ies) queued again.")
        _target_actions_report(self, request, done, refused, "Replayed")


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fields = ["attempted_at", "succeeded", "status_code", "latency_ms", "error", "response_excerpt"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Delivery)
class DeliveryAdmin(ProgrammeScopedAdmin, ReadOnlyAdmin):
    """The delivery log: every notification and webhook delivery with its attempts."""

    list_display = [
        "created_at",
        "event_type",
        "target_label",
        "status",
        "attempts",
        "last_status_code",
        "delivered_at",
        "event_id",
    ]
    list_filter = ["status", "event_type", "programme"]
    list_select_related = ["programme", "channel", "endpoint"]
    search_fields = ["=event__id", "=id"]
    inlines = [DeliveryAttemptInline]
    actions = ["replay"]
    fields = [
        "event_id",
        "event_type",
        "programme",
        "channel",
        "endpoint",
        "status",
        "attempts",
        "replays",
        "last_status_code",
        "last_error",
        "expires_at",
        "created_at",
        "delivered_at",
    ]
    readonly_fields = fields

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="to")
    def target_label(self, obj):
        if obj.channel_id:
            return f"{obj.channel.get_kind_display()}: {obj.channel.name}"
        return f"webhook: {obj.endpoint.url}"

    @admin.action(description="Replay the selected failed or dead deliveries")
    def replay(self, request, queryset):
        done, refused = act_on_each(
            managed_selection(self, request, queryset, "delivery"),
            lambda d: delivery_replay(delivery=d, actor=request.user),
            lambda d: f"{d.event_type} {str(d.pk)[:8]}",
        )
        report_outcomes(
            self,
            request,
            done=done,
            refused=refused,
            noun="delivery",
            done_verb="Replayed",
            refused_verb="replay",
        )
