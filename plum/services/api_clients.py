"""API clients: an external system's identity and its key."""

import hashlib
import secrets

from django.db import connection, transaction
from django.utils import timezone

from plum import sql as raw
from plum.actors import Actor
from plum.errors import InvalidInputError
from plum.models import ApiClient, ApiScope, Programme
from plum.services.audit import audit_log

KEY_PREFIXES = {False: "plum_live_", True: "plum_test_"}


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_client_create(
    *,
    name: str,
    programmes: list[Programme],
    scopes: list[str] | None = None,
    is_test: bool = False,
    actor: Actor,
    key: str | None = None,
) -> tuple[ApiClient, str]:
    """Create a client and return it with its key. The key is returned only here: Plum keeps
    only its hash. `key` may be given only to recreate a known demo key."""
    scopes = list(ApiScope.values) if scopes is None else scopes
    unknown = sorted(set(scopes) - set(ApiScope.values))
    if unknown:
        raise InvalidInputError(
            f"Unknown scopes: {', '.join(unknown)}.",
            fields={"scopes": [f"Choose from {', '.join(ApiScope.values)}."]},
        )
    if not name.strip():
        raise InvalidInputError(fields={"name": ["A client needs a name."]})
    if not programmes:
        raise InvalidInputError(fields={"programmes": ["Bind the client to a programme."]})
    key = key or KEY_PREFIXES[is_test] + secrets.token_urlsafe(32)
    with transaction.atomic():
        client = ApiClient.objects.create(
            name=name.strip(),
            scopes=sorted(set(scopes)),
            is_test=is_test,
            key_prefix=key[:14],
            key_hash=hash_key(key),
        )
        client.programmes.set(programmes)
        for programme in programmes:
            audit_log(
                actor=actor,
                action="api_client.create",
                obj=client,
                programme_id=programme.pk,
                changes={
                    "name": [None, client.name],
                    "scopes": [None, client.scopes],
                    "is_test": [None, is_test],
                },
            )
    return client, key


def api_client_revoke(*, client: ApiClient, actor: Actor) -> bool:
    with transaction.atomic():
        revoked = ApiClient.objects.filter(pk=client.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if revoked:
            for programme_id in client.programmes.values_list("pk", flat=True):
                audit_log(
                    actor=actor,
                    action="api_client.revoke",
                    obj=client,
                    programme_id=programme_id,
                    changes={"revoked": [False, True]},
                )
    client.refresh_from_db(fields=["revoked_at"])
    return bool(revoked)


_CLIENT_NAMES = raw.attnames(ApiClient)
# Every API request runs this: written by hand, not compiled by the ORM each time. No cache:
# a revoked key is refused from the next request on.
_ACTIVE_CLIENT = (
    f"SELECT {raw.select_list(ApiClient)} FROM {raw.table(ApiClient)} "  # noqa: S608 - own names
    f"WHERE {raw.column(ApiClient, 'key_hash')} = %s "
    f"AND {raw.column(ApiClient, 'revoked_at')} IS NULL LIMIT 1"
)


def _active_client_by_hash(key_hash: str) -> ApiClient | None:
    with connection.cursor() as cursor:
        cursor.execute(_ACTIVE_CLIENT, [key_hash])
        row = cursor.fetchone()
    return None if row is None else raw.from_row(ApiClient, _CLIENT_NAMES, row)


def api_client_authenticate(*, key: str) -> ApiClient | None:
    """The active client holding `key`, or None."""
    # The key's programmes are not loaded here: every scoped read asks for them in its own
    # query (plum.selectors.programmes_for, a subquery), so loading them was a wasted query on
    # every API request.
    client = _active_client_by_hash(hash_key(key))
    if client is not None:
        now = timezone.now()
        # Touch at most once a minute: no write on every request.
        if client.last_used_at is None or (now - client.last_used_at).total_seconds() > 60:
            ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)
    return client
