"""Job handlers the kernel ships. Other apps register theirs in their AppConfig.ready()."""

from plum.models import Job
from plum.services.audit import audit_seal
from plum.services.jobs import register_job_handler


@register_job_handler("audit.seal")
def seal_audit_log(job: Job, progress) -> dict:
    """Seal every event not yet sealed (what the beat task does, on demand)."""
    sealed_events = seals = 0
    while (seal := audit_seal()) is not None:
        sealed_events += seal.event_count
        seals += 1
    progress(job.total)
    return {"sealed_events": sealed_events, "seals": seals}
