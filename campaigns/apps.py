from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"

    def ready(self):
        from campaigns.demo import seed_campaigns
        from campaigns.services import codes, vouchers  # noqa: F401 - register their jobs
        from plum import roles
        from plum.demo import register_demo_seeder

        register_demo_seeder(seed_campaigns)

        roles.register_role_perms(
            roles.PROGRAMME_MANAGER,
            {
                "campaigns.view_campaign",
                "campaigns.add_campaign",
                "campaigns.change_campaign",
                "campaigns.view_voucher",
                "campaigns.change_voucher",
                "campaigns.view_reward",
                "campaigns.view_merchant",
                "campaigns.view_redemption",
            },
        )
        roles.register_role_perms(
            roles.SUPPORT_AGENT,
            {"campaigns.view_campaign", "campaigns.view_voucher", "campaigns.view_redemption"},
        )
        roles.register_role_perms(
            roles.FINANCE,
            {
                "campaigns.view_campaign",
                "campaigns.view_voucher",
                "campaigns.view_redemption",
                "campaigns.view_merchant",
                "campaigns.view_reward",
            },
        )
