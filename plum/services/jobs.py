"""Jobs: long work (code generation, uploads, bulk actions) with progress a person can watch.

A job kind maps to a handler `handler(job, progress)`; it runs in a Celery task, reports
progress with `progress(done)` (a plain UPDATE, visible at once to readers), and returns the
result dict. Errors the handler raises end the job failed with the message kept."""

import logging
from collections.abc import Callable
from datetime import timedelta
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Least
from django.utils import timezone

from plum.actors import Actor
from plum.errors import PlumError
from plum.models import ApiClient, Job, Programme
from plum.services.audit import audit_log

logger = logging.getLogger(__name__)

JobHandler = Callable[[Job, Callable[[int], None]], dict]
_handlers: dict[str, JobHandler] = {}
_resumed_by_owner: set[str] = set()


def register_job_handler(kind: str):
    def decorator(func: JobHandler) -> JobHandler:
        _handlers[kind] = func
        return func

    return decorator


def register_resumable_job_kind(kind: str) -> None:
    """Jobs of `kind` (opened with `job_open`) are resumed by their owner's own sweep after a
    lost worker (an upload's dispatch sweep), so the stale-job sweep leaves them running."""
    _resumed_by_owner.add(kind)


def job_create(
    *, kind: str, programme: Programme | None, total: int, params: dict, actor: Actor
) -> Job:
    """Create a queued job in the caller's transaction; it starts once that commits."""
    if kind not in _handlers:
        raise ValueError(f"No job handler is registered for {kind!r}")
    job = Job.objects.create(
        kind=kind,
        programme=programme,
        total=total,
        params=params,
        created_by_user=actor if isinstance(actor, AbstractBaseUser) else None,
        created_by_client=actor if isinstance(actor, ApiClient) else None,
    )
    audit_log(actor=actor, action="job.create", obj=job, changes={"kind": [None, kind]})

    def enqueue():
        from plum.tasks import job_run_task

        try:
            job_run_task.apply_async(args=[str(job.pk)], retry=False)
        except Exception:  # noqa: BLE001
            logger.warning("Broker unavailable; job %s stays queued until re-run", job.pk)

    transaction.on_commit(enqueue)
    return job


def job_actor(job: Job) -> Actor:
    """Who a job acts for: its creator, or the system."""
    from plum.actors import SYSTEM

    return job.created_by_user or job.created_by_client or SYSTEM


def job_progress(*, job_id: UUID, done: int) -> None:
    Job.objects.filter(pk=job_id).update(done=Least(done, F("total")), heartbeat_at=timezone.now())


def job_fail_stale(*, stale_after: timedelta | None = None) -> int:
    """Fail running jobs whose heartbeat (start or last progress) is older than `stale_after`:
    their worker died (a kill, a lost machine) and the redelivered task will not run them
    again, since handlers are not resumable. Failing them says so, and a person re-runs the
    work. Kinds whose owner resumes them (`register_resumable_job_kind`) are left alone: their
    work finishes after all. Returns how many were failed."""
    cutoff = timezone.now() - (stale_after or settings.JOB_STALE_AFTER)
    stale = Job.objects.filter(status=Job.Status.RUNNING, heartbeat_at__lt=cutoff).exclude(
        kind__in=_resumed_by_owner
    )
    failed = 0
    for job in stale.only("pk", "errors"):
        failed += Job.objects.filter(
            pk=job.pk, status=Job.Status.RUNNING, heartbeat_at__lt=cutoff
        ).update(
            status=Job.Status.FAILED,
            finished_at=timezone.now(),
            errors=[
                *job.errors,
                {"message": "The worker running this job was lost; run it again."},
            ],
        )
    return failed


def job_run(*, job_id: UUID | str) -> Job | None:
    """Run a queued job once: the conditional UPDATE to running decides which worker runs it,
    so a task delivered twice does the work once."""
    started = Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
        status=Job.Status.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now()
    )
    if not started:
        return None
    job = Job.objects.get(pk=job_id)
    handler = _handlers.get(job.kind)
    try:
        if handler is None:
            raise PlumError(f"No handler for job kind {job.kind!r}")
        result = handler(job, lambda done: job_progress(job_id=job.pk, done=done))
    except Exception as exc:
        logger.exception("Job %s failed", job.pk)
        message = exc.message if isinstance(exc, PlumError) else f"{type(exc).__name__}: {exc}"
        Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(
            status=Job.Status.FAILED,
            finished_at=timezone.now(),
            errors=[*job.errors, {"message": message}],
        )
    else:
        result = dict(result or {})
        Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(
            status=Job.Status.SUCCEEDED,
            finished_at=timezone.now(),
            done=F("total"),
            errors=result.pop("errors", []),
            result=result,
        )
    job.refresh_from_db()
    return job


def job_open(
    *, kind: str, programme: Programme | None, total: int, params: dict, actor: Actor
) -> Job:
    """A job whose work runs in its owner's own tasks (an upload's chunks), not in a handler:
    created running in the caller's transaction, moved by `job_progress`, ended by
    `job_close`."""
    now = timezone.now()
    job = Job.objects.create(
        kind=kind,
        programme=programme,
        total=total,
        params=params,
        status=Job.Status.RUNNING,
        started_at=now,
        heartbeat_at=now,
        created_by_user=actor if isinstance(actor, AbstractBaseUser) else None,
        created_by_client=actor if isinstance(actor, ApiClient) else None,
    )
    audit_log(actor=actor, action="job.create", obj=job, changes={"kind": [None, kind]})
    return job


def job_close(*, job_id: UUID | str, result: dict, errors: list | None = None) -> bool:
    """End a running job opened with `job_open` as succeeded (done = total). A job the stale
    sweep already failed stays failed. Returns whether this call ended it."""
    return bool(
        Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(
            status=Job.Status.SUCCEEDED,
            finished_at=timezone.now(),
            heartbeat_at=timezone.now(),
            done=F("total"),
            errors=errors or [],
            result=result,
        )
    )
