from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"

    def ready(self):
        import orders.services.delivery  # noqa: F401 - registers the "delivery" outbox sender
        from campaigns.hooks import register_voucher_recovery_hook
        from orders.services.issuance import OrderVoucherRecoveryHook
        from orders.services.uploads import UPLOAD_JOB
        from plum import roles
        from plum.services.jobs import register_resumable_job_kind

        # An upload's dispatch sweep resumes it after a lost worker: its job is not stale.
        register_resumable_job_kind(UPLOAD_JOB)

        # Recovering a voucher cancels the order holding it, in the same transaction.
        register_voucher_recovery_hook(OrderVoucherRecoveryHook())

        roles.register_role_perms(
            roles.PROGRAMME_MANAGER, {"orders.view_order", "orders.change_order"}
        )
        roles.register_role_perms(roles.SUPPORT_AGENT, {"orders.view_order"})
        roles.register_role_perms(roles.FINANCE, {"orders.view_order"})
        roles.register_role_perms(
            roles.FINANCE,
            {"orders.view_payout", "orders.change_payout", "orders.view_payoutline"},
        )
        delivery_perms = {"orders.view_delivery", "orders.view_deliveryattempt"}
        roles.register_role_perms(roles.PROGRAMME_MANAGER, delivery_perms)
        roles.register_role_perms(roles.SUPPORT_AGENT, delivery_perms)
        roles.register_role_perms(roles.FINANCE, delivery_perms)
        # Workflow rules and events: managers configure rules; everyone who sees the
        # programme's orders may read its events and why each rule did what it did.
        roles.register_role_perms(
            roles.PROGRAMME_MANAGER,
            {
                "orders.view_workflowrule",
                "orders.add_workflowrule",
                "orders.change_workflowrule",
                "orders.view_rulecondition",
                "orders.add_rulecondition",
                "orders.change_rulecondition",
                "orders.delete_rulecondition",
                "orders.view_event",
                "orders.view_eventruleoutcome",
            },
        )
        for role in (roles.SUPPORT_AGENT, roles.FINANCE):
            roles.register_role_perms(role, {"orders.view_event", "orders.view_eventruleoutcome"})
        roles.register_role_perms(
            roles.PROGRAMME_MANAGER,
            {"orders.view_upload", "orders.add_upload", "orders.change_upload"},
        )
