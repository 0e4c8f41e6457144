from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"

    def ready(self):
        from plum import roles

        roles.register_role_perms(
            roles.PROGRAMME_MANAGER, {"orders.view_order", "orders.change_order"}
        )
        roles.register_role_perms(roles.SUPPORT_AGENT, {"orders.view_order"})
        roles.register_role_perms(roles.FINANCE, {"orders.view_order"})
        roles.register_role_perms(
            roles.PROGRAMME_MANAGER,
            {"orders.view_upload", "orders.add_upload", "orders.change_upload"},
        )
