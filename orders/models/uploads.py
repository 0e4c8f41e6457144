"""IPA uploads (Incentive Program Allocation): a recipient file for one campaign, validated in
full before anything is issued, then dispatched as orders in chunks.

`Upload` counts what happened (rows, valid, invalid, dispatched, issued, refused); CHECK
constraints keep the counts coherent. `UploadRow` is one recipient line; its `order` is unique,
so no row can ever be linked to two orders, and the row is linked in the transaction that
creates its order (orders.services.uploads). `UploadChunk` is a slice of valid rows dispatched
by one Celery task; counting finished chunks on the upload row decides completion."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from campaigns.models import MONEY, Campaign
from orders.models.order import Order
from plum.models import ApiClient, Job, Programme
from plum.statemachine import Transitions

# validating -> validated (every row checked, stored) or rejected (nothing can be sent);
# validated -> dispatching (confirmed); dispatching -> completed (every valid row issued) or
# partially_failed (governance refused some rows at dispatch).
UPLOAD_TRANSITIONS = Transitions(
    "upload",
    {
        "validating": ["validated", "rejected"],
        "validated": ["dispatching"],
        "rejected": [],
        "dispatching": ["completed", "partially_failed"],
        "completed": [],
        "partially_failed": [],
    },
)


class Upload(models.Model):
    class Status(models.TextChoices):
        VALIDATING = "validating"
        VALIDATED = "validated"
        REJECTED = "rejected"
        DISPATCHING = "dispatching"
        COMPLETED = "completed"
        PARTIALLY_FAILED = "partially_failed", "Partially failed"

    class Source(models.TextChoices):
        ADMIN = "admin"
        API = "api", "API"

    programme = models.ForeignKey(Programme, on_delete=models.PROTECT, related_name="uploads")
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="uploads")
    source = models.CharField(max_length=8, choices=Source.choices)
    file_name = models.CharField(max_length=255, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.VALIDATING)
    is_test = models.BooleanField(default=False)
    send_only_valid = models.BooleanField(default=False)
    row_count = models.PositiveIntegerField(default=0)
    valid_count = models.PositiveIntegerField(default=0)
    invalid_count = models.PositiveIntegerField(default=0)
    dispatched_count = models.PositiveIntegerField(default=0)
    issued_count = models.PositiveIntegerField(default=0)
    refused_count = models.PositiveIntegerField(default=0)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    # Problems of the file as a whole (it exceeds the campaign's remaining count or budget).
    file_errors = models.JSONField(default=list, blank=True)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_client = models.ForeignKey(
        ApiClient, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    validated_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    status__in=[
                        "validating",
                        "validated",
                        "rejected",
                        "dispatching",
                        "completed",
                        "partially_failed",
                    ]
                ),
                name="upload_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(source__in=["admin", "api"]), name="upload_source_valid"
            ),
            models.CheckConstraint(
                condition=Q(status="validating")
                | Q(row_count=F("valid_count") + F("invalid_count")),
                name="upload_rows_add_up",
            ),
            models.CheckConstraint(
                condition=Q(dispatched_count=F("issued_count") + F("refused_count"))
                & Q(dispatched_count__lte=F("valid_count")),
                name="upload_dispatch_adds_up",
            ),
            models.CheckConstraint(
                condition=Q(chunks_done__lte=F("chunks_total")), name="upload_chunks_within_total"
            ),
        ]
        indexes = [
            models.Index(fields=["programme", "-id"], name="upload_programme_idx"),
            models.Index(
                fields=["id"], condition=Q(status="dispatching"), name="upload_dispatching_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"Upload {self.pk} ({self.file_name or 'rows'})"

    @property
    def percent(self) -> int:
        if not self.valid_count:
            return 0
        return int(self.dispatched_count * 100 / self.valid_count)


class UploadRow(models.Model):
    class Status(models.TextChoices):
        VALID = "valid"  # checked, waiting for dispatch
        INVALID = "invalid"  # refused by validation: never sent
        ISSUED = "issued"  # its order exists (completed, or pending approval)
        REFUSED = "refused"  # governance refused it at dispatch (campaign ran out, ...)

    # Indexed by the unique (upload, row_number) constraint: no second index to maintain.
    upload = models.ForeignKey(
        Upload, on_delete=models.CASCADE, related_name="rows", db_index=False
    )
    # The spreadsheet row (the header is row 1) for a CSV; the 1-based position for JSON rows.
    row_number = models.PositiveIntegerField()
    external_id = models.CharField(max_length=255, blank=True)
    name = models.CharField(max_length=255, blank=True)
    email = models.CharField(max_length=320, blank=True)
    phone = models.CharField(max_length=64, blank=True)
    country = models.CharField(max_length=8, blank=True)
    channel = models.CharField(max_length=16, blank=True)  # resolved: the file's, or the default
    channel_from_file = models.BooleanField(default=False)
    value = models.DecimalField(**MONEY, null=True, blank=True)
    reference = models.CharField(max_length=255, blank=True)
    errors = models.JSONField(default=list, blank=True)  # [{"column", "message", "value"}]
    status = models.CharField(max_length=8, choices=Status.choices)
    order = models.OneToOneField(
        Order, null=True, blank=True, on_delete=models.PROTECT, related_name="upload_row"
    )
    refusal_code = models.CharField(max_length=64, blank=True)
    refusal_message = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["upload_id", "row_number"]
        constraints = [
            models.UniqueConstraint(fields=["upload", "row_number"], name="upload_row_unique"),
            models.CheckConstraint(
                condition=Q(status__in=["valid", "invalid", "issued", "refused"]),
                name="upload_row_status_valid",
            ),
            # Linked exactly when issued: an issued row always names its one order.
            models.CheckConstraint(
                condition=(Q(status="issued") & Q(order__isnull=False))
                | (~Q(status="issued") & Q(order__isnull=True)),
                name="upload_row_issued_has_order",
            ),
        ]
        indexes = [
            # The dispatch claim: a chunk's rows still waiting, in id order.
            models.Index(
                fields=["upload", "id"], condition=Q(status="valid"), name="upload_row_claim_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"Upload {self.upload_id} row {self.row_number}"


class UploadChunk(models.Model):
    """Valid rows with ids first_row_id..last_row_id, dispatched by one task. A task that
    dies leaves the chunk running with an old heartbeat; the sweeper sends it again."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"

    upload = models.ForeignKey(
        Upload, on_delete=models.CASCADE, related_name="chunks", db_index=False
    )
    number = models.PositiveIntegerField()
    first_row_id = models.BigIntegerField()
    last_row_id = models.BigIntegerField()
    rows = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["upload_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["upload", "number"], name="upload_chunk_unique"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "running", "done"]),
                name="upload_chunk_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(last_row_id__gte=F("first_row_id")), name="upload_chunk_range"
            ),
        ]
        indexes = [
            models.Index(
                fields=["upload", "status"],
                condition=~Q(status="done"),
                name="upload_chunk_open_idx",
            )
        ]

    def __str__(self) -> str:
        return f"Upload {self.upload_id} chunk {self.number}"
