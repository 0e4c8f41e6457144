"""Reads scoped to what a principal may see.

`programmes_for` is the one place that turns (principal, permission) into programmes: every
list in the admin, the portal, the storefront and the API filters `programme__in=` on it, which
costs a constant number of queries however many rows there are."""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet
from guardian.shortcuts import get_objects_for_user

from plum import roles
from plum.models import ApiClient, Job, Member, Programme

Principal = AbstractBaseUser | AnonymousUser | ApiClient


def programmes_for(principal: Principal | None, perm: str = "plum.view_programme") -> QuerySet:
    """Programmes on which `principal` holds `perm`. An API client holds every permission its
    scopes allow on the programmes its key is bound to (scopes are checked by the API layer)."""
    if principal is None or isinstance(principal, AnonymousUser):
        return Programme.objects.none()
    if isinstance(principal, ApiClient):
        if principal.revoked_at is not None:
            return Programme.objects.none()
        return Programme.objects.filter(api_clients=principal)
    if not principal.is_active:
        return Programme.objects.none()
    return get_objects_for_user(principal, perm, klass=Programme, accept_global_perms=True)


def scoped(
    queryset: QuerySet,
    principal: Principal | None,
    perm: str = "plum.view_programme",
    *,
    field: str = "programme",
) -> QuerySet:
    """Restrict any queryset with a programme foreign key to the principal's programmes."""
    return queryset.filter(**{f"{field}__in": programmes_for(principal, perm).values("pk")})


def is_test_principal(principal: Principal | None) -> bool:
    """Test-mode API clients see and create test data only."""
    return isinstance(principal, ApiClient) and principal.is_test


def member_list_for(*, principal: Principal, perm: str = "plum.view_programme") -> QuerySet:
    return scoped(Member.objects.select_related("programme"), principal, perm)


def member_get_for(*, principal: Principal, programme_slug: str, external_id: str) -> Member | None:
    return (
        member_list_for(principal=principal)
        .filter(programme__slug=programme_slug, external_id=external_id)
        .first()
    )


def is_platform_admin(principal: Principal | None) -> bool:
    """An active user holding the programme view permission globally, not per programme: the
    Platform admin role (plum.roles) and superusers. API clients never are."""
    if principal is None or isinstance(principal, ApiClient | AnonymousUser):
        return False
    return bool(principal.is_active and principal.has_perm(roles.VIEW))


def job_list_for(*, principal: Principal | None) -> QuerySet:
    """Jobs visible to whoever may see their programme; a job without a programme only to its
    creator and platform admins."""
    if is_platform_admin(principal):
        return Job.objects.all()
    if principal is None or isinstance(principal, AnonymousUser) or not principal.is_active:
        return Job.objects.none()
    if isinstance(principal, ApiClient):
        created = Q(created_by_client=principal)
    else:
        created = Q(created_by_user=principal)
    return Job.objects.filter(
        Q(programme__in=programmes_for(principal).values("pk"))
        | (Q(programme__isnull=True) & created)
    )


def job_get_for(*, principal: Principal | None, job_id) -> Job | None:
    return job_list_for(principal=principal).filter(pk=job_id).first()
