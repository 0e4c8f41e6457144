"""`manage.py seed_demo`: SLA policies for every demo programme (idempotent: a policy that
exists is left alone)."""

from plum.actors import SYSTEM
from support.models import SlaPolicy
from support.services import sla_policy_set

# priority: (first response hours, resolution hours)
DEMO_SLA = {"low": (24, 120), "normal": (8, 48), "high": (2, 24), "urgent": (1, 8)}


def seed_support(programmes) -> list[str]:
    created = 0
    for programme in programmes.values():
        for priority, (first, resolution) in DEMO_SLA.items():
            if SlaPolicy.objects.filter(programme=programme, priority=priority).exists():
                continue
            sla_policy_set(
                programme=programme,
                priority=priority,
                first_response_hours=first,
                resolution_hours=resolution,
                actor=SYSTEM,
            )
            created += 1
    return [f"Support: {created} SLA policies created; tickets at /ops/tickets/."]
