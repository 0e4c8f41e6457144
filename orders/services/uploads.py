"""IPA uploads: validate a recipient file in full, then dispatch its valid rows as orders.

Invariants:
- nothing is issued before confirmation, and nothing from a file with invalid rows unless the
  confirmer chose `send_only_valid`; a file whose valid rows exceed the campaign's remaining
  count or budget is rejected (and checked again at confirmation);
- exactly one order per row, whatever is retried: each row is claimed with
  `SELECT ... FOR UPDATE SKIP LOCKED` (status valid) and its order is created, and the row
  linked to it (`UploadRow.order`, unique), in one transaction. A second delivery of a chunk,
  a re-confirmation or a worker killed mid-chunk finds the row issued (or locked, or rolled
  back to valid) and never issues it twice;
- completion is counted in Postgres: each row's transaction adds to the upload's counters with
  a conditional-free `UPDATE ... SET n = n + 1` (the row lock makes it exact); a chunk is marked
  done by a conditional UPDATE (`status <> 'done'`) once no valid row is left in its range, and
  the transaction that marks the last chunk done moves the upload to completed or
  partially_failed (conditional on dispatching);
- a chunk whose worker died (heartbeat older than UPLOAD_CHUNK_STALE_SECONDS), or a pending
  chunk of an upload that made no progress for that long, is sent again by
  `upload_dispatch_sweep` (beat); re-sending is always safe.

Lock order per row: upload row (SKIP LOCKED) -> member -> campaign counters -> member counter
-> voucher (the issuing order, inside `_issue`) -> upload (counters)."""

import csv
import io
import json
import logging
import time
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from campaigns.errors import CampaignNotActiveError
from campaigns.models import MONEY_MAX, Campaign, CampaignMemberCounter
from orders.models import UPLOAD_TRANSITIONS, Order, Upload, UploadChunk, UploadRow
from orders.services.issuance import _issue, recipient_upsert
from orders.uploads.errors import (
    UploadExceedsCampaignError,
    UploadHasInvalidRowsError,
    UploadHasNoValidRowsError,
    UploadTooLargeError,
)
from orders.uploads.validation import (
    CheckedRow,
    ParsedRows,
    Rules,
    check_rows,
    decode,
    parse_csv,
    parse_json_rows,
)
from plum.actors import SYSTEM, Actor
from plum.errors import PlumError
from plum.models import ApiClient
from plum.services.audit import audit_log
from plum.services.events import event_emit
from plum.services.jobs import job_close, job_open, job_progress

logger = logging.getLogger(__name__)

UPLOAD_JOB = "upload.dispatch"
_HEARTBEAT_SECONDS = 2.0  # between a chunk's heartbeats (and job progress reports)


# --- validation --------------------------------------------------------------------------


def upload_rules(campaign: Campaign) -> Rules:
    reward = campaign.reward
    return Rules(
        default_channel=campaign.default_channel or campaign.programme.default_channel,
        campaign_value=campaign.value,
        denominations=frozenset(Decimal(str(d)) for d in reward.denominations or []),
        min_value=reward.min_value,
        max_value=reward.max_value,
        per_member_cap=campaign.per_member_cap,
    )


def _members_at_cap(campaign: Campaign, external_ids: list[str]) -> set[str]:
    """External ids (of the file) whose member already holds the campaign's per-member cap:
    one query over all of them."""
    cap = campaign.per_member_cap
    if not cap or not external_ids:
        return set()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT m.external_id FROM campaigns_campaignmembercounter c "
                "JOIN plum_member m ON m.id = c.member_id "
                "WHERE c.campaign_id = %s AND c.issued >= %s AND m.programme_id = %s "
                "AND m.external_id = ANY(%s)",
                [campaign.pk, cap, campaign.programme_id, external_ids],
            )
            return {row[0] for row in cursor.fetchall()}
    # SQLite (development): the campaign's capped members, intersected here.
    wanted = set(external_ids)
    capped = CampaignMemberCounter.objects.filter(campaign=campaign, issued__gte=cap).values_list(
        "member__external_id", flat=True
    )
    return wanted.intersection(capped)


def _capacity_errors(campaign: Campaign, *, count: int, value: Decimal) -> list[dict]:
    """What the valid rows need beyond the campaign's remaining count and budget."""
    campaign = Campaign.objects.get(pk=campaign.pk)  # the counters now
    errors = []
    if campaign.max_rewards is not None:
        left = campaign.max_rewards - campaign.issued_count
        if count > left:
            errors.append(
                {
                    "column": "",
                    "message": f"The file's {count:,} valid rows exceed the campaign's "
                    f"remaining count of {left:,} rewards.",
                }
            )
    budget = MONEY_MAX if campaign.budget is None else campaign.budget
    left = budget - campaign.issued_value
    if value > left:
        what = "budget" if campaign.budget is not None else "value it can record"
        errors.append(
            {
                "column": "",
                "message": f"The file's valid rows total {value} {campaign.currency}, "
                f"more than the campaign's remaining {what} of {left} {campaign.currency}.",
            }
        )
    return errors


_COPY_COLUMNS = (
    "upload_id",
    "row_number",
    "external_id",
    "name",
    "email",
    "phone",
    "country",
    "channel",
    "channel_from_file",
    "value",
    "reference",
    "errors",
    "status",
    "refusal_code",
    "refusal_message",
)
# In COPY's CSV format an unquoted empty field is NULL: these text columns read it as "".
_COPY_NOT_NULL = (
    "external_id",
    "name",
    "email",
    "phone",
    "country",
    "channel",
    "reference",
    "refusal_code",
    "refusal_message",
)


def _store_rows(upload: Upload, rows: list[CheckedRow]) -> None:
    """Every row, in the caller's transaction: COPY (CSV, written by the C csv writer) on
    Postgres, bulk inserts elsewhere."""
    if connection.vendor == "postgresql":
        buffer = io.StringIO()
        uid = upload.pk
        csv.writer(buffer, lineterminator="\n").writerows(
            (
                uid,
                r.row_number,
                r.external_id,
                r.name,
                r.email,
                r.phone,
                r.country,
                r.channel,
                "t" if r.channel_from_file else "f",
                r.value,  # None: an empty field, NULL
                r.reference,
                json.dumps(r.errors) if r.errors else "[]",
                "invalid" if r.errors else "valid",
                "",
                "",
            )
            for r in rows
        )
        buffer.seek(0)
        with connection.cursor() as cursor:
            cursor.cursor.copy_expert(
                f"COPY {UploadRow._meta.db_table} ({', '.join(_COPY_COLUMNS)}) FROM STDIN "
                f"WITH (FORMAT csv, FORCE_NOT_NULL ({', '.join(_COPY_NOT_NULL)}))",
                buffer,
                size=1 << 20,
            )
        return
    UploadRow.objects.bulk_create(
        (
            UploadRow(
                upload=upload,
                row_number=r.row_number,
                external_id=r.external_id,
                name=r.name,
                email=r.email,
                phone=r.phone,
                country=r.country,
                channel=r.channel,
                channel_from_file=r.channel_from_file,
                value=r.value,
                reference=r.reference,
                errors=r.errors,
                status=UploadRow.Status.INVALID if r.errors else UploadRow.Status.VALID,
            )
            for r in rows
        ),
        batch_size=2000,
    )


def upload_validate(*, upload: Upload, parsed: ParsedRows) -> Upload:
    """Check every row of a validating upload, store them all and move it to validated (some
    rows valid, the file fits the campaign) or rejected, with the counts."""
    campaign = upload.campaign
    rules = upload_rules(campaign)
    at_cap: set[str] = set()
    if not upload.is_test:  # test issues count nothing, so no cap applies to them
        at_cap = _members_at_cap(campaign, list({cells[0] for _, cells, _ in parsed.rows}))
    checked = check_rows(parsed, rules=rules, at_cap=at_cap)
    valid = [r for r in checked if not r.errors]
    file_errors = []
    if valid and not upload.is_test:
        total = sum((r.value or campaign.value for r in valid), Decimal("0"))
        file_errors = _capacity_errors(campaign, count=len(valid), value=total)
    target = Upload.Status.VALIDATED if valid and not file_errors else Upload.Status.REJECTED
    UPLOAD_TRANSITIONS.check(upload.status, target)
    with transaction.atomic(durable=True):
        _store_rows(upload, checked)
        updated = Upload.objects.filter(pk=upload.pk, status=Upload.Status.VALIDATING).update(
            status=target,
            row_count=len(checked),
            valid_count=len(valid),
            invalid_count=len(checked) - len(valid),
            file_errors=file_errors,
            validated_at=timezone.now(),
            updated_at=timezone.now(),
        )
        if updated != 1:
            raise RuntimeError(f"Upload {upload.pk} left validating while it was checked")
        audit_log(
            actor=_actor_of(upload),
            action="upload.validate",
            obj=upload,
            programme_id=upload.programme_id,
            changes={
                "status": [Upload.Status.VALIDATING, target],
                "rows": [None, len(checked)],
                "valid": [None, len(valid)],
                "invalid": [None, len(checked) - len(valid)],
            },
        )
    upload.refresh_from_db()
    return upload


def _upload_start(
    *, campaign: Campaign, source: str, file_name: str, size: int, actor: Actor, is_test: bool
) -> Upload:
    with transaction.atomic(durable=True):
        upload = Upload.objects.create(
            programme_id=campaign.programme_id,
            campaign=campaign,
            source=source,
            file_name=file_name[:255],
            size_bytes=size,
            is_test=is_test,
            created_by_user=actor if isinstance(actor, AbstractBaseUser) else None,
            created_by_client=actor if isinstance(actor, ApiClient) else None,
        )
        audit_log(
            actor=actor,
            action="upload.create",
            obj=upload,
            programme_id=upload.programme_id,
            changes={
                "campaign": [None, campaign.pk],
                "source": [None, source],
                "file_name": [None, upload.file_name],
                "size_bytes": [None, size],
                "is_test": [None, is_test],
            },
        )
    return upload


def _create(*, campaign, parsed, source, file_name, size, actor, is_test) -> Upload:
    upload = _upload_start(
        campaign=campaign,
        source=source,
        file_name=file_name,
        size=size,
        actor=actor,
        is_test=is_test,
    )
    try:
        return upload_validate(upload=upload, parsed=parsed)
    except Exception:
        # Never leave it validating: it is rejected, its rows (if any) were rolled back.
        Upload.objects.filter(pk=upload.pk, status=Upload.Status.VALIDATING).update(
            status=Upload.Status.REJECTED,
            file_errors=[{"column": "", "message": "Validation failed; upload the file again."}],
            updated_at=timezone.now(),
        )
        raise


def upload_create_from_csv(
    *,
    campaign: Campaign,
    raw: bytes,
    file_name: str,
    source: str,
    actor: Actor,
    is_test: bool = False,
) -> Upload:
    """A CSV file for `campaign`: refused whole (specific error, nothing stored) when it is
    too large, not UTF-8, its header is wrong or it has too many rows; otherwise stored row by
    row with each row's problems, validated or rejected. Nothing is issued here."""
    limit = settings.API_UPLOAD_MAX_BYTES
    if len(raw) > limit:
        raise UploadTooLargeError(
            f"The file is {len(raw):,} bytes; the limit is {limit:,} bytes "
            f"({limit / 1048576:g} MB) per upload.",
            limit=limit,
        )
    parsed = parse_csv(decode(raw), max_rows=settings.UPLOAD_MAX_ROWS)
    return _create(
        campaign=campaign,
        parsed=parsed,
        source=source,
        file_name=file_name,
        size=len(raw),
        actor=actor,
        is_test=is_test,
    )


def upload_create_from_rows(
    *, campaign: Campaign, rows: list, file_name: str = "", actor: Actor, is_test: bool = False
) -> Upload:
    """JSON rows (an HR connector) for `campaign`, checked exactly as a CSV file's rows."""
    parsed = parse_json_rows(rows, max_rows=settings.UPLOAD_MAX_ROWS)
    return _create(
        campaign=campaign,
        parsed=parsed,
        source=Upload.Source.API,
        file_name=file_name,
        size=0,
        actor=actor,
        is_test=is_test,
    )


# --- confirmation and dispatch -----------------------------------------------------------


def _actor_of(upload: Upload) -> Actor:
    return upload.created_by_user or upload.created_by_client or SYSTEM


def _enqueue_chunks(chunk_ids: list[int]) -> None:
    from orders.tasks.uploads import upload_chunk_dispatch_task

    for chunk_id in chunk_ids:
        try:
            upload_chunk_dispatch_task.apply_async(args=[chunk_id], retry=False)
        except Exception:  # noqa: BLE001
            logger.warning("Broker unavailable; chunk %s waits for the sweeper", chunk_id)


def _plan_chunks(upload: Upload) -> list[UploadChunk]:
    ids = list(
        UploadRow.objects.filter(upload=upload, status=UploadRow.Status.VALID)
        .order_by("id")
        .values_list("id", flat=True)
    )
    size = max(1, settings.UPLOAD_CHUNK_ROWS)
    now = timezone.now()
    return UploadChunk.objects.bulk_create(
        [
            UploadChunk(
                upload=upload,
                number=n,
                first_row_id=ids[start],
                last_row_id=ids[min(start + size, len(ids)) - 1],
                rows=min(size, len(ids) - start),
                enqueued_at=now,
            )
            for n, start in enumerate(range(0, len(ids), size), start=1)
        ]
    )


def upload_confirm(*, upload: Upload, send_only_valid: bool, actor: Actor) -> Upload:
    """Confirm a validated upload: its valid rows are dispatched as orders, in chunks, by
    Celery tasks started once this commits. A file with invalid rows needs
    `send_only_valid`. Confirming a dispatching upload again only re-sends its unfinished
    chunks (a resume: rows already issued are never issued again); a finished one refuses."""
    with transaction.atomic(durable=True):
        current = (
            Upload.objects.select_for_update(no_key=True, of=("self",))
            .select_related("campaign")
            .get(pk=upload.pk)
        )
        if current.status == Upload.Status.DISPATCHING:
            pending = list(
                UploadChunk.objects.filter(upload=current)
                .exclude(status=UploadChunk.Status.DONE)
                .values_list("pk", flat=True)
            )
            UploadChunk.objects.filter(pk__in=pending).update(enqueued_at=timezone.now())
            audit_log(
                actor=actor,
                action="upload.resume",
                obj=current,
                programme_id=current.programme_id,
                changes={"chunks_resent": [None, len(pending)]},
            )
            transaction.on_commit(lambda: _enqueue_chunks(pending))
            return current
        UPLOAD_TRANSITIONS.check(current.status, Upload.Status.DISPATCHING)
        if current.valid_count == 0:
            raise UploadHasNoValidRowsError()
        if current.invalid_count and not send_only_valid:
            raise UploadHasInvalidRowsError(invalid=current.invalid_count)
        campaign = current.campaign
        if not Campaign.objects.issuing(timezone.now()).filter(pk=campaign.pk).exists():
            raise CampaignNotActiveError()
        if not current.is_test:
            need = UploadRow.objects.filter(
                upload=current, status=UploadRow.Status.VALID
            ).aggregate(
                total=Coalesce(Sum("value"), Decimal("0")),
                unset=Count("id", filter=Q(value__isnull=True)),
            )
            total = need["total"] + need["unset"] * campaign.value
            problems = _capacity_errors(campaign, count=current.valid_count, value=total)
            if problems:
                raise UploadExceedsCampaignError(
                    " ".join(p["message"] for p in problems),
                    fields={"upload": [p["message"] for p in problems]},
                )
        chunks = _plan_chunks(current)
        job = job_open(
            kind=UPLOAD_JOB,
            programme=current.programme,
            total=current.valid_count,
            params={"upload_id": current.pk, "campaign_id": campaign.pk},
            actor=actor,
        )
        now = timezone.now()
        Upload.objects.filter(pk=current.pk, status=Upload.Status.VALIDATED).update(
            status=Upload.Status.DISPATCHING,
            send_only_valid=send_only_valid,
            chunks_total=len(chunks),
            job=job,
            confirmed_at=now,
            updated_at=now,
        )
        audit_log(
            actor=actor,
            action="upload.confirm",
            obj=current,
            programme_id=current.programme_id,
            changes={
                "status": [Upload.Status.VALIDATED, Upload.Status.DISPATCHING],
                "send_only_valid": [False, send_only_valid],
                "chunks": [None, len(chunks)],
                "job": [None, str(job.pk)],
            },
        )
        chunk_ids = [c.pk for c in chunks]
        transaction.on_commit(lambda: _enqueue_chunks(chunk_ids))
    current.refresh_from_db()
    return current


def _recipient(row: UploadRow) -> dict:
    recipient = {"external_id": row.external_id}
    for name in ("name", "email", "phone", "country"):
        value = getattr(row, name)
        if value:  # a blank cell never wipes what the member already has
            recipient[name] = value
    if row.channel_from_file:
        recipient["preferred_channel"] = row.channel
    return recipient


def _dispatch_row(upload: Upload, row: UploadRow, actor: Actor) -> bool:
    """Issue one claimed row's order and link it, in the caller's (the row lock's)
    transaction. A governance refusal marks the row refused instead. True when issued."""
    campaign = upload.campaign
    try:
        with transaction.atomic():
            member = recipient_upsert(
                programme=campaign.programme, recipient=_recipient(row), actor=actor
            )
            order = _issue(
                campaign=campaign,
                member=member,
                value=row.value,
                source=Order.Source.UPLOAD,
                reference=row.reference,
                actor=actor,
                is_test=upload.is_test,
            )
    except PlumError as exc:
        UploadRow.objects.filter(pk=row.pk, status=UploadRow.Status.VALID).update(
            status=UploadRow.Status.REFUSED,
            refusal_code=exc.code[:64],
            refusal_message=exc.message[:500],
        )
        Upload.objects.filter(pk=upload.pk).update(
            dispatched_count=F("dispatched_count") + 1, refused_count=F("refused_count") + 1
        )
        return False
    linked = UploadRow.objects.filter(
        pk=row.pk, status=UploadRow.Status.VALID, order__isnull=True
    ).update(status=UploadRow.Status.ISSUED, order=order)
    if linked != 1:  # cannot happen under the row lock; never keep an unlinked order
        raise RuntimeError(f"Upload row {row.pk} changed under its lock")
    Upload.objects.filter(pk=upload.pk).update(
        dispatched_count=F("dispatched_count") + 1, issued_count=F("issued_count") + 1
    )
    return True


def _claim_next(chunk: UploadChunk) -> UploadRow | None:
    return (
        UploadRow.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(
            upload_id=chunk.upload_id,
            status=UploadRow.Status.VALID,
            id__gte=chunk.first_row_id,
            id__lte=chunk.last_row_id,
        )
        .order_by("id")
        .first()
    )


def _report_progress(upload: Upload, chunk_id: int) -> None:
    UploadChunk.objects.filter(pk=chunk_id).exclude(status=UploadChunk.Status.DONE).update(
        heartbeat_at=timezone.now()
    )
    if upload.job_id:
        done = Upload.objects.filter(pk=upload.pk).values_list("dispatched_count", flat=True)[0]
        job_progress(job_id=upload.job_id, done=done)


def upload_chunk_dispatch(*, chunk_id: int) -> int:
    """Dispatch one chunk: claim its valid rows one at a time (SKIP LOCKED) and issue each in
    its own transaction. Safe to run twice, or twice at once: a row is issued once. The run
    that finds the chunk's range empty marks it done; the last chunk done ends the upload.
    Returns how many rows this run dispatched."""
    chunk = (
        UploadChunk.objects.select_related(
            "upload__campaign__programme", "upload__campaign__reward"
        )
        .filter(pk=chunk_id)
        .first()
    )
    if chunk is None or chunk.status == UploadChunk.Status.DONE:
        return 0
    upload = chunk.upload
    if upload.status != Upload.Status.DISPATCHING:
        return 0
    UploadChunk.objects.filter(pk=chunk.pk).exclude(status=UploadChunk.Status.DONE).update(
        status=UploadChunk.Status.RUNNING, attempts=F("attempts") + 1, heartbeat_at=timezone.now()
    )
    actor = _actor_of(upload)
    dispatched = 0
    last_report = time.monotonic()
    while True:
        with transaction.atomic(durable=True):
            row = _claim_next(chunk)
            if row is None:
                break
            _dispatch_row(upload, row, actor)
        dispatched += 1
        if time.monotonic() - last_report >= _HEARTBEAT_SECONDS:
            _report_progress(upload, chunk.pk)
            last_report = time.monotonic()
    _chunk_finish(upload, chunk)
    if upload.job_id:
        _report_progress(upload, chunk.pk)
    return dispatched


def _chunk_finish(upload: Upload, chunk: UploadChunk) -> None:
    with transaction.atomic(durable=True):
        left = UploadRow.objects.filter(
            upload_id=upload.pk,
            status=UploadRow.Status.VALID,
            id__gte=chunk.first_row_id,
            id__lte=chunk.last_row_id,
        ).exists()
        if left:
            return  # rows another run of this chunk holds; that run finishes the chunk
        now = timezone.now()
        marked = (
            UploadChunk.objects.filter(pk=chunk.pk)
            .exclude(status=UploadChunk.Status.DONE)
            .update(status=UploadChunk.Status.DONE, finished_at=now, heartbeat_at=now)
        )
        if not marked:
            return
        Upload.objects.filter(pk=upload.pk).update(chunks_done=F("chunks_done") + 1)
        counts = Upload.objects.filter(pk=upload.pk).values(
            "chunks_done", "chunks_total", "refused_count", "issued_count", "status"
        )[0]
        if counts["chunks_done"] < counts["chunks_total"]:
            return
        target = (
            Upload.Status.PARTIALLY_FAILED if counts["refused_count"] else Upload.Status.COMPLETED
        )
        UPLOAD_TRANSITIONS.check(counts["status"], target)
        Upload.objects.filter(pk=upload.pk, status=Upload.Status.DISPATCHING).update(
            status=target, finished_at=now, updated_at=now
        )
        audit_log(
            actor=SYSTEM,
            action="upload.finish",
            obj=upload,
            programme_id=upload.programme_id,
            changes={
                "status": [Upload.Status.DISPATCHING, target],
                "issued": [None, counts["issued_count"]],
                "refused": [None, counts["refused_count"]],
            },
        )
        event_emit(
            event_type="upload.completed",
            programme_id=upload.programme_id,
            data={
                "upload_id": upload.pk,
                "campaign_id": upload.campaign_id,
                "status": target,
                "rows": upload.row_count,
                "succeeded": counts["issued_count"],
                "failed": counts["refused_count"],
                "is_test": upload.is_test,
            },
        )
        if upload.job_id:
            job_close(
                job_id=upload.job_id,
                result={
                    "upload_id": upload.pk,
                    "issued": counts["issued_count"],
                    "refused": counts["refused_count"],
                },
            )


def upload_dispatch_sweep(*, stale_after: timedelta | None = None) -> int:
    """Send again the chunks a lost worker left behind: running chunks whose heartbeat is
    older than `stale_after`, and the pending chunks of an upload with no fresh heartbeat at
    all (their message may have been prefetched by the dead worker). Returns how many chunks
    were re-sent. Re-sending a chunk that is in fact still queued is harmless."""
    stale_after = stale_after or timedelta(seconds=settings.UPLOAD_CHUNK_STALE_SECONDS)
    cutoff = timezone.now() - stale_after
    resend: list[int] = []
    for upload_id in Upload.objects.filter(status=Upload.Status.DISPATCHING).values_list(
        "pk", flat=True
    ):
        open_chunks = UploadChunk.objects.filter(upload_id=upload_id).exclude(
            status=UploadChunk.Status.DONE
        )
        fresh = open_chunks.filter(
            Q(heartbeat_at__gte=cutoff)
            | Q(status=UploadChunk.Status.PENDING, enqueued_at__gte=cutoff)
        ).exists()
        stale_running = open_chunks.filter(
            status=UploadChunk.Status.RUNNING, heartbeat_at__lt=cutoff
        )
        ids = set(stale_running.values_list("pk", flat=True))
        if not fresh:
            ids |= set(
                open_chunks.filter(status=UploadChunk.Status.PENDING).values_list("pk", flat=True)
            )
        if not ids:
            continue
        # The next sweep waits a full period before sending these again.
        now = timezone.now()
        UploadChunk.objects.filter(pk__in=ids, status=UploadChunk.Status.PENDING).update(
            enqueued_at=now
        )
        UploadChunk.objects.filter(pk__in=ids, status=UploadChunk.Status.RUNNING).update(
            enqueued_at=now, heartbeat_at=now
        )
        resend.extend(sorted(ids))
    if resend:
        logger.warning("Re-sending %d upload chunk(s) left by a lost worker", len(resend))
        _enqueue_chunks(resend)
    return len(resend)


def upload_fail_stuck_validations(*, older_than: timedelta = timedelta(minutes=30)) -> int:
    """An upload left validating (its request died mid-check) is rejected: upload it again."""
    return Upload.objects.filter(
        status=Upload.Status.VALIDATING, created_at__lt=timezone.now() - older_than
    ).update(
        status=Upload.Status.REJECTED,
        file_errors=[{"column": "", "message": "Validation was interrupted; upload it again."}],
        updated_at=timezone.now(),
    )
