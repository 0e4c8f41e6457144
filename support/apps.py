from django.apps import AppConfig


class SupportConfig(AppConfig):
    name = "support"

    def ready(self):
        from plum import roles
        from plum.demo import register_demo_seeder
        from support.demo import seed_support

        register_demo_seeder(seed_support)

        roles.register_role_perms(roles.SUPPORT_AGENT, {"support.view_ticket"})
        roles.register_role_perms(
            roles.PROGRAMME_MANAGER,
            {
                "support.view_ticket",
                "support.view_slapolicy",
                "support.add_slapolicy",
                "support.change_slapolicy",
            },
        )
