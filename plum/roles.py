"""Roles are Django groups. A role's *model* permissions (what kinds of thing its holders may
open in the admin) belong to the group; *which programmes* they may act on is granted per
programme with guardian object permissions. Programme-level permissions are never granted
globally, except to Platform admins: a global `view_programme` would mean "every programme"."""

from collections import defaultdict

PLATFORM_ADMIN = "Platform admin"
PROGRAMME_MANAGER = "Programme manager"
SUPPORT_AGENT = "Support agent"
FINANCE = "Finance"
MEMBER = "Member"
ALL_ROLES = (PLATFORM_ADMIN, PROGRAMME_MANAGER, SUPPORT_AGENT, FINANCE, MEMBER)

VIEW = "plum.view_programme"
MANAGE = "plum.manage_programme"
SUPPORT = "plum.support_programme"
FINANCE_PERM = "plum.finance_programme"
PROGRAMME_PERMS = (VIEW, MANAGE, SUPPORT, FINANCE_PERM)

# What holding a role on a programme grants on that programme object.
ROLE_PROGRAMME_PERMS: dict[str, tuple[str, ...]] = {
    PLATFORM_ADMIN: PROGRAMME_PERMS,
    PROGRAMME_MANAGER: (VIEW, MANAGE),
    SUPPORT_AGENT: (VIEW, SUPPORT),
    FINANCE: (VIEW, FINANCE_PERM),
    MEMBER: (),
}

# Model permissions per role, extended by each app in its AppConfig.ready().
ROLE_MODEL_PERMS: dict[str, set[str]] = defaultdict(set)
ROLE_MODEL_PERMS[PROGRAMME_MANAGER] |= {
    "plum.view_member",
    "plum.add_member",
    "plum.change_member",
    "plum.view_job",
    "plum.view_auditevent",
}
ROLE_MODEL_PERMS[SUPPORT_AGENT] |= {"plum.view_member", "plum.change_member"}
ROLE_MODEL_PERMS[FINANCE] |= {"plum.view_member", "plum.view_job", "plum.view_auditevent"}


def register_role_perms(role: str, perms: set[str]) -> None:
    if role not in ALL_ROLES:
        raise ValueError(f"Unknown role {role!r}")
    ROLE_MODEL_PERMS[role] |= set(perms)


def sync_roles(apps=None) -> None:
    """Create the role groups and give them their model permissions (idempotent). Runs from
    the plum migration and after every migrate, so later apps' permissions are attached."""
    from django.apps import apps as global_apps

    apps = apps or global_apps
    Group = apps.get_model("auth", "Group")  # noqa: N806
    Permission = apps.get_model("auth", "Permission")  # noqa: N806
    for role in ALL_ROLES:
        group, _ = Group.objects.get_or_create(name=role)
        if role == PLATFORM_ADMIN:
            wanted = Permission.objects.filter(
                content_type__app_label__in=["plum", "campaigns", "wallets", "orders", "support"]
            )
        else:
            wanted = Permission.objects.none()
            for perm in ROLE_MODEL_PERMS.get(role, ()):
                app_label, codename = perm.split(".", 1)
                wanted = wanted | Permission.objects.filter(
                    content_type__app_label=app_label, codename=codename
                )
        group.permissions.add(*wanted)
