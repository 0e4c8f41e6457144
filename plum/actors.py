"""Who did it: a user, an API client or the system itself (beat tasks, workers)."""

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser

from plum.models import ActorType, ApiClient


@dataclass(frozen=True)
class SystemActor:
    label: str = "system"


SYSTEM = SystemActor()

Actor = AbstractBaseUser | ApiClient | SystemActor


def actor_fields(actor: Actor) -> dict:
    """The audit columns that identify an actor."""
    if isinstance(actor, ApiClient):
        return {
            "actor_type": ActorType.API_CLIENT,
            "actor_client_id": actor.pk,
            "actor_label": client_label(actor),
        }
    if isinstance(actor, SystemActor):
        return {"actor_type": ActorType.SYSTEM, "actor_label": actor.label}
    if isinstance(actor, AbstractBaseUser) and actor.pk is not None:
        return {
            "actor_type": ActorType.USER,
            "actor_user_id": actor.pk,
            "actor_label": actor.get_username(),
        }
    raise TypeError(f"Not an actor: {actor!r}")


# The width of every actor label column (audit events, redemptions, resent deliveries).
LABEL_MAX = 200


def client_label(client: ApiClient) -> str:
    """ "api:<name>", cut to the label columns' width (a client's name may itself be 200
    characters)."""
    return f"api:{client.name}"[:LABEL_MAX]
