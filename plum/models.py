"""The shared kernel's data: programmes, members, API clients, idempotency keys, the audit log,
the outbox and jobs. Rules that hold for one row live here as constraints; every write goes
through `plum.services`."""

import uuid
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinLengthValidator, RegexValidator
from django.db import models
from django.db.models import Q
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

E164_REGEX = r"^\+[1-9][0-9]{6,14}$"  # the database's CHECK (Postgres: $ is the very end)
# Python's $ also matches before a trailing newline: the validators end in \Z, so a value the
# validator passes is one the CHECK passes too (never an IntegrityError mid-transaction).
e164_validator = RegexValidator(
    r"^\+[1-9][0-9]{6,14}\Z",
    "Enter a phone number in E.164 format, e.g. +14155550123.",
    code="invalid_phone",
)
country_validator = RegexValidator(
    r"^[A-Z]{2}\Z", "Enter an ISO 3166-1 alpha-2 country code, e.g. IN.", code="invalid_country"
)
currency_validator = RegexValidator(
    r"^[A-Z]{3}\Z", "Enter an ISO 4217 currency code, e.g. INR.", code="invalid_currency"
)
slug_validator = RegexValidator(
    r"^[a-z0-9]+(?:-[a-z0-9]+)*\Z", "Use lowercase letters, digits and single hyphens."
)


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"Unknown time zone {value!r}.", code="invalid_timezone")


class Channel(models.TextChoices):
    EMAIL = "email", "E-mail"
    SMS = "sms", "SMS"
    WHATSAPP = "whatsapp", "WhatsApp"


class Programme(models.Model):
    """The unit of ownership and of object-level permission."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True, validators=[slug_validator])
    currency = models.CharField(max_length=3, validators=[currency_validator])
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    default_channel = models.CharField(
        max_length=16, choices=Channel.choices, default=Channel.EMAIL
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        permissions = [
            ("manage_programme", "Can manage the programme (campaigns, rules, members)"),
            ("support_programme", "Can work the programme's orders and tickets as support"),
            ("finance_programme", "Can read the programme's reports and payouts"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[A-Z]{3}$"), name="programme_currency_iso"
            ),
            models.CheckConstraint(
                condition=Q(default_channel__in=Channel.values), name="programme_channel_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ProgrammeUserObjectPermission(UserObjectPermissionBase):
    """Direct foreign key for guardian: per-programme grants join on an integer column."""

    content_object = models.ForeignKey(Programme, on_delete=models.CASCADE)


class ProgrammeGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Programme, on_delete=models.CASCADE)


class Member(models.Model):
    """A person who receives rewards in one programme."""

    programme = models.ForeignKey(Programme, on_delete=models.PROTECT, related_name="members")
    external_id = models.CharField(max_length=120, validators=[MinLengthValidator(1)])
    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=16, blank=True, validators=[e164_validator])
    country = models.CharField(max_length=2, blank=True, validators=[country_validator])
    preferred_channel = models.CharField(max_length=16, choices=Channel.choices, blank=True)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="member",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["programme_id", "external_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["programme", "external_id"], name="member_external_id_unique"
            ),
            models.CheckConstraint(
                condition=Q(phone="") | Q(phone__regex=E164_REGEX), name="member_phone_e164"
            ),
            models.CheckConstraint(condition=~Q(external_id=""), name="member_external_id_set"),
        ]
        indexes = [
            models.Index(fields=["programme", "email"], name="member_email_idx"),
            models.Index(fields=["programme", "phone"], name="member_phone_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name or self.external_id} ({self.programme.slug})"


class ApiScope(models.TextChoices):
    READ = "read", "Read"
    ISSUE = "issue", "Issue rewards"
    REDEEM = "redeem", "Redeem"
    MANAGE = "manage", "Manage"
    SUPPORT = "support", "Support"


class ApiClient(models.Model):
    """An external system (POS, CRM, HRIS). Its key is shown once and stored as a SHA-256
    digest: keys are 256-bit random, so a fast hash is as strong as a slow one here."""

    name = models.CharField(max_length=200)
    programmes = models.ManyToManyField(Programme, related_name="api_clients")
    scopes = models.JSONField(default=list)
    is_test = models.BooleanField(default=False, help_text="Test keys act on test data only.")
    key_prefix = models.CharField(max_length=24, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({'test' if self.is_test else 'live'})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    # DRF's IsAuthenticated-style checks and templates expect these on request.user-like objects.
    is_authenticated = True
    is_anonymous = False

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class IdempotencyKey(models.Model):
    class State(models.TextChoices):
        IN_FLIGHT = "in_flight"
        COMPLETE = "complete"

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=State.choices, default=State.IN_FLIGHT)
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.BinaryField(null=True)
    response_content_type = models.CharField(max_length=100, blank=True)
    # The request holding the key: its audit events tell whether it committed a change.
    request_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "key"], name="idempotency_key_unique"),
            models.CheckConstraint(
                condition=Q(state="in_flight") | Q(response_status__isnull=False),
                name="idempotency_complete_has_response",
            ),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]

    def __str__(self) -> str:
        return f"{self.key} ({self.state})"


class ActorType(models.TextChoices):
    USER = "user"
    API_CLIENT = "api_client"
    SYSTEM = "system"


class AuditEvent(models.Model):
    """Append-only (a Postgres trigger rejects UPDATE, DELETE and TRUNCATE). `hash` is the
    SHA-256 of the event's canonical content, computed when it is written; the sealer chains
    those hashes so that `verify_audit` can name an altered or missing event."""

    occurred_at = models.DateTimeField()
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_user_id = models.BigIntegerField(null=True, blank=True)
    actor_client_id = models.BigIntegerField(null=True, blank=True)
    actor_label = models.CharField(max_length=200)
    action = models.CharField(max_length=100)
    object_type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=100)
    # No foreign keys: audit rows outlive what they describe and may never be cascaded.
    programme_id = models.BigIntegerField(null=True, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    hash = models.CharField(max_length=64)
    # The member the action was taken against (the object is the member, or belongs to one:
    # an order, a voucher, a wallet), so a member's audit log is one indexed query.
    member_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="audit_object_idx"),
            models.Index(fields=["programme_id", "-occurred_at"], name="audit_programme_idx"),
            models.Index(fields=["actor_user_id"], name="audit_actor_user_idx"),
            models.Index(
                fields=["request_id"], condition=~models.Q(request_id=""), name="audit_request_idx"
            ),
            models.Index(
                fields=["member_id", "-id"],
                condition=models.Q(member_id__isnull=False),
                name="audit_member_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} {self.object_type}:{self.object_id}"


class AuditSeal(models.Model):
    """One link of the hash chain: covers the previous seal's hash and, in event-id order, the
    hashes of the events listed in its items."""

    sealed_at = models.DateTimeField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    event_count = models.PositiveIntegerField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"seal {self.pk} ({self.event_count} events)"


class AuditSealItem(models.Model):
    event_id = models.BigIntegerField(primary_key=True)
    seal = models.ForeignKey(AuditSeal, on_delete=models.PROTECT, related_name="items")
    event_hash = models.CharField(max_length=64)

    class Meta:
        indexes = [models.Index(fields=["seal", "event_id"], name="audit_seal_item_idx")]

    def __str__(self) -> str:
        return f"event {self.event_id} in seal {self.seal_id}"


class OutboxMessage(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"  # permanent failure: a person must correct and resend
        DEAD = "dead"  # transient failures until the attempts ran out

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=100)
    programme = models.ForeignKey(
        Programme, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=8)
    next_attempt_at = models.DateTimeField()
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "sent", "failed", "dead"]),
                name="outbox_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status="sent") | Q(sent_at__isnull=False), name="outbox_sent_has_time"
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="outbox_pending_due_idx",
            ),
            models.Index(fields=["kind", "status"], name="outbox_kind_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.status})"


class Job(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=100)
    programme = models.ForeignKey(
        Programme, null=True, blank=True, on_delete=models.PROTECT, related_name="jobs"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    params = models.JSONField(default=dict, blank=True)
    total = models.PositiveBigIntegerField(default=0)
    done = models.PositiveBigIntegerField(default=0)
    result = models.JSONField(default=dict, blank=True)
    errors = models.JSONField(default=list, blank=True)
    created_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_client = models.ForeignKey(
        ApiClient, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Touched by every progress report: a running job whose heartbeat stops was lost with its
    # worker (see job_fail_stale).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(done__lte=models.F("total")), name="job_done_le_total"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "succeeded", "failed"]),
                name="job_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.status})"

    @property
    def percent(self) -> int:
        if not self.total:
            return 100 if self.status == self.Status.SUCCEEDED else 0
        return int(self.done * 100 / self.total)


# --- notifications and webhooks -------------------------------------------------------------


class EventOnce(models.Model):
    """A key that may fire its event once (e.g. `campaign.budget_threshold:12:budget:80`):
    inserted ON CONFLICT DO NOTHING in the transaction that emits the event, so the primary key
    decides, even between parallel transactions."""

    key = models.CharField(max_length=200, primary_key=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.key


class DeliveryTargetState(models.Model):
    """What Slack/Teams channels and webhook endpoints share: wanted event types, active flag and
    the run of consecutive failed attempts that disables them automatically."""

    event_types = models.JSONField(default=list, help_text='Event types wanted; "*" for all.')
    is_active = models.BooleanField(default=True)
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.CharField(max_length=300, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True

    def wants(self, event_type: str) -> bool:
        return "*" in self.event_types or event_type in self.event_types


class NotificationChannel(DeliveryTargetState):
    """A programme's Slack or Microsoft Teams incoming webhook. The URL is a secret (whoever
    holds it can post to the channel): stored encrypted (plum.secretbox), shown masked."""

    class Kind(models.TextChoices):
        SLACK = "slack", "Slack"
        TEAMS = "teams", "Microsoft Teams"

    programme = models.ForeignKey(
        Programme, on_delete=models.PROTECT, related_name="notification_channels"
    )
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    url_encrypted = models.TextField(editable=False)
    url_hint = models.CharField(max_length=200, editable=False)

    class Meta:
        ordering = ["programme_id", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["slack", "teams"]), name="notification_channel_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class WebhookEndpoint(DeliveryTargetState):
    """An API client's HTTPS endpoint. The signing secret must be kept to sign (HMAC needs the
    raw secret), so it is stored encrypted and shown once; during a rotation's grace period the
    previous secret signs too."""

    client = models.ForeignKey(ApiClient, on_delete=models.PROTECT, related_name="webhooks")
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    secret_encrypted = models.TextField(editable=False)
    secret_hint = models.CharField(max_length=32, editable=False)
    previous_secret_encrypted = models.TextField(blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["client_id", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(previous_secret_encrypted="")
                | Q(previous_secret_expires_at__isnull=False),
                name="webhook_previous_secret_expires",
            ),
        ]

    def __str__(self) -> str:
        return self.url


class Delivery(models.Model):
    """One event to one channel or endpoint. Unique per (event, target), so fanning an event
    out twice cannot deliver it twice; `event_id` (the event's outbox id) travels as
    `Plum-Event-Id` and stays the same across retries and replays."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"  # a permanent refusal (4xx) or a disabled target
        DEAD = "dead"  # transient failures until the retry window closed

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event = models.ForeignKey(OutboxMessage, on_delete=models.PROTECT, related_name="deliveries")
    event_type = models.CharField(max_length=100)
    programme = models.ForeignKey(Programme, on_delete=models.PROTECT, related_name="+")
    channel = models.ForeignKey(
        NotificationChannel,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="deliveries",
    )
    endpoint = models.ForeignKey(
        WebhookEndpoint, null=True, blank=True, on_delete=models.PROTECT, related_name="deliveries"
    )
    message = models.ForeignKey(
        OutboxMessage, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    expires_at = models.DateTimeField(help_text="Retries stop (dead) after this.")
    replays = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "notification delivery"
        verbose_name_plural = "notification deliveries"
        constraints = [
            models.CheckConstraint(
                condition=Q(channel__isnull=True) ^ Q(endpoint__isnull=True),
                name="hook_delivery_one_target",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "succeeded", "failed", "dead"]),
                name="hook_delivery_status_valid",
            ),
            models.UniqueConstraint(
                fields=["event", "channel"],
                condition=Q(channel__isnull=False),
                name="hook_delivery_event_channel_unique",
            ),
            models.UniqueConstraint(
                fields=["event", "endpoint"],
                condition=Q(endpoint__isnull=False),
                name="hook_delivery_event_endpoint_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["endpoint", "status"], name="hookdel_endpoint_status_idx"),
            models.Index(fields=["channel", "status"], name="hookdel_channel_status_idx"),
            models.Index(fields=["programme", "-created_at"], name="hook_delivery_programme_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.channel or self.endpoint} ({self.status})"

    @property
    def target(self):
        return self.channel if self.channel_id else self.endpoint


class DeliveryAttempt(models.Model):
    """One HTTP attempt of a delivery: what the receiver answered and how long it took."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField()
    succeeded = models.BooleanField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField()
    error = models.CharField(max_length=500, blank=True)
    response_excerpt = models.CharField(max_length=1000, blank=True)

    class Meta:
        ordering = ["delivery_id", "attempted_at", "id"]

    def __str__(self) -> str:
        return f"{self.status_code or self.error} in {self.latency_ms} ms"
