from django.apps import AppConfig


class WalletsConfig(AppConfig):
    name = "wallets"

    def ready(self):
        from plum import roles
        from plum.demo import register_demo_seeder
        from wallets.demo import seed_wallets

        register_demo_seeder(seed_wallets)

        ledger_views = {
            "wallets.view_account",
            "wallets.view_ledgertransaction",
            "wallets.view_posting",
        }
        policy = {"wallets.view_pointspolicy"}
        roles.register_role_perms(
            roles.PROGRAMME_MANAGER,
            ledger_views | policy | {"wallets.add_pointspolicy", "wallets.change_pointspolicy"},
        )
        roles.register_role_perms(roles.SUPPORT_AGENT, ledger_views)
        roles.register_role_perms(roles.FINANCE, ledger_views | policy)
