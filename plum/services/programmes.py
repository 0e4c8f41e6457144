"""Programmes, members and role grants."""

from django.contrib.auth.models import AbstractBaseUser, Group
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from guardian.shortcuts import assign_perm, get_user_perms, remove_perm

from plum import roles
from plum import sql as raw
from plum.actors import Actor
from plum.errors import InvalidInputError
from plum.models import Member, Programme
from plum.services.audit import audit_log, model_update

PROGRAMME_FIELDS = ["name", "slug", "currency", "timezone", "default_channel", "is_active"]
MEMBER_FIELDS = ["name", "email", "phone", "country", "preferred_channel"]


def _full_clean(instance, *, exclude=None, validate_constraints: bool = True) -> None:
    try:
        instance.full_clean(exclude=exclude, validate_constraints=validate_constraints)
    except ValidationError as exc:
        raise InvalidInputError(fields=exc.message_dict) from exc


def programme_create(*, actor: Actor, **data) -> Programme:
    programme = Programme(**{k: v for k, v in data.items() if k in PROGRAMME_FIELDS})
    _full_clean(programme)
    with transaction.atomic():
        programme.save(force_insert=True)
        audit_log(
            actor=actor,
            action="programme.create",
            obj=programme,
            programme_id=programme.pk,
            changes={f: [None, getattr(programme, f)] for f in PROGRAMME_FIELDS},
        )
    return programme


def programme_update(*, programme: Programme, actor: Actor, data: dict) -> Programme:
    with transaction.atomic():
        try:
            programme, changes = model_update(
                instance=programme, fields=PROGRAMME_FIELDS, data=data
            )
        except ValidationError as exc:
            raise InvalidInputError(fields=exc.message_dict) from exc
        if changes:
            audit_log(
                actor=actor,
                action="programme.update",
                obj=programme,
                programme_id=programme.pk,
                changes=changes,
            )
    return programme


def _insert_unless_taken(member: Member) -> bool:
    """Insert the member unless its (programme, external id) exists: False when a concurrent
    upsert inserted it first (it is then updated instead). On Postgres one `INSERT ... ON
    CONFLICT DO NOTHING RETURNING`, with no savepoint around it."""
    if connection.vendor == "postgresql":
        return raw.row_insert(member, conflict=("programme", "external_id"))
    try:
        with transaction.atomic():
            member.save(force_insert=True)
    except IntegrityError:
        return False
    return True


_MEMBER_NAMES = raw.attnames(Member)
# select_for_update(no_key=True, of=("self",)) by hand: the ORM compiled it on every upsert.
_MEMBER_LOCK = (
    f"SELECT {raw.select_list(Member)} FROM {raw.table(Member)} "  # noqa: S608 - the models' own names
    f"WHERE {raw.column(Member, 'programme')} = %s AND {raw.column(Member, 'external_id')} = %s "
    f"LIMIT 1 FOR NO KEY UPDATE OF {raw.table(Member)}"
)


def _member_lock(programme: Programme, external_id: str) -> Member | None:
    with connection.cursor() as cursor:
        cursor.execute(_MEMBER_LOCK, [programme.pk, external_id])
        row = cursor.fetchone()
    if row is None:
        return None
    member = raw.from_row(Member, _MEMBER_NAMES, row)
    Member.programme.field.set_cached_value(member, programme)
    return member


def member_upsert(
    *, programme: Programme, external_id: str, actor: Actor, data: dict, savepoint: bool = True
) -> tuple[Member, bool]:
    """Create the member with this external id in the programme, or update the given fields.
    Two concurrent upserts of one new member cannot both insert: the unique constraint on
    (programme, external_id) decides, and the loser updates instead.

    `savepoint=False` is for a caller whose whole transaction fails with any error raised here
    (the single issuance): no savepoint is set around the upsert."""
    data = {k: v for k, v in data.items() if k in MEMBER_FIELDS}
    with transaction.atomic(savepoint=savepoint):
        member = _member_lock(programme, external_id)
        if member is None:
            candidate = raw.new(Member, programme_id=programme.pk, external_id=external_id, **data)
            Member.programme.field.set_cached_value(candidate, programme)
            # The member's CHECK constraints (E.164 phone, external id set) repeat its field
            # validators, which full_clean runs in Python; validating the constraints too would
            # ask the database (a savepoint and a SELECT each) what the validators already
            # refused. The database still enforces them on the INSERT.
            _full_clean(candidate, exclude=["programme", "user"], validate_constraints=False)
            if _insert_unless_taken(candidate):
                audit_log(
                    actor=actor,
                    action="member.create",
                    obj=candidate,
                    changes={
                        "external_id": [None, external_id],
                        **{f: [None, getattr(candidate, f)] for f in data},
                    },
                )
                return candidate, True
            member = _member_lock(programme, external_id)
            if member is None:  # pragma: no cover - the conflicting row is committed
                raise Member.DoesNotExist(external_id)
        try:
            member, changes = model_update(instance=member, fields=MEMBER_FIELDS, data=data)
        except ValidationError as exc:
            raise InvalidInputError(fields=exc.message_dict) from exc
        if changes:
            audit_log(actor=actor, action="member.update", obj=member, changes=changes)
        return member, False


def role_grant(
    *, user: AbstractBaseUser, role: str, programme: Programme | None, actor: Actor
) -> None:
    """Give `user` a role. Platform admins hold it everywhere (programme must be None); every
    other role is held on one programme."""
    if role not in roles.ALL_ROLES:
        raise InvalidInputError(f"Unknown role {role!r}.", fields={"role": ["Unknown role."]})
    if (role == roles.PLATFORM_ADMIN) != (programme is None):
        raise InvalidInputError(
            "Platform admin is granted without a programme; every other role on one."
        )
    with transaction.atomic():
        user.groups.add(Group.objects.get(name=role))
        if role == roles.PLATFORM_ADMIN:
            for perm in roles.PROGRAMME_PERMS:
                assign_perm(perm, user)
        else:
            for perm in roles.ROLE_PROGRAMME_PERMS[role]:
                assign_perm(perm, user, programme)
        if role != roles.MEMBER and not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        audit_log(
            actor=actor,
            action="role.grant",
            object_type="auth.user",
            object_id=user.pk,
            programme_id=programme.pk if programme else None,
            changes={"role": [None, role]},
        )


def role_revoke(
    *, user: AbstractBaseUser, role: str, programme: Programme | None, actor: Actor
) -> None:
    """Take a role back: Platform admin everywhere (programme must be None), any other role on
    one programme. Permissions are held per user, not per role, so the view permission every
    role shares stays while another role the user holds on the programme still grants it."""
    if role not in roles.ALL_ROLES:
        raise InvalidInputError(f"Unknown role {role!r}.", fields={"role": ["Unknown role."]})
    if (role == roles.PLATFORM_ADMIN) != (programme is None):
        raise InvalidInputError(
            "Platform admin is revoked without a programme; every other role on one."
        )
    with transaction.atomic():
        if role == roles.PLATFORM_ADMIN:
            # The group carries the global model permissions, view_programme among them.
            user.groups.remove(Group.objects.get(name=role))
            for perm in roles.PROGRAMME_PERMS:
                remove_perm(perm, user)
        else:
            granted = roles.ROLE_PROGRAMME_PERMS[role]
            for perm in granted:
                if perm != roles.VIEW:
                    remove_perm(perm, user, programme)
            still_held = set(get_user_perms(user, programme)) - {roles.VIEW.split(".")[1]}
            if roles.VIEW in granted and not still_held:
                remove_perm(roles.VIEW, user, programme)
        audit_log(
            actor=actor,
            action="role.revoke",
            object_type="auth.user",
            object_id=user.pk,
            programme_id=programme.pk if programme else None,
            changes={"role": [role, None]},
        )


def user_create(
    *, username: str, email: str, password: str, actor: Actor, is_superuser: bool = False
) -> AbstractBaseUser:
    from django.contrib.auth import get_user_model

    with transaction.atomic():
        user = get_user_model().objects.create_user(
            username=username,
            email=email,
            password=password,
            is_superuser=is_superuser,
            is_staff=is_superuser,
        )
        audit_log(
            actor=actor,
            action="user.create",
            obj=user,
            changes={"username": [None, username], "is_superuser": [None, is_superuser]},
        )
    return user


def member_link_user(*, member: Member, user: AbstractBaseUser, actor: Actor) -> Member:
    with transaction.atomic():
        before = member.user_id
        Member.objects.filter(pk=member.pk).update(user=user)
        member.user = user
        audit_log(
            actor=actor, action="member.link_user", obj=member, changes={"user": [before, user.pk]}
        )
    return member
