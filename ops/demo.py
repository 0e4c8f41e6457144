"""What `manage.py seed_demo` prints about the ops portal. It writes nothing: the demo's `agent`
user (Support agent on acme) is created by the kernel's seed; this only points at something to
search for."""

from orders.models import Order


def seed_ops(programmes) -> list[str]:
    acme = programmes["acme"]
    order = Order.objects.filter(programme=acme).order_by("-id").first()
    hint = (
        f"search booking ID {order.booking_id}"
        if order
        else "search a member's e-mail, e.g. acme.member1@example.com"
    )
    return [f"Ops portal: /ops/ — sign in as agent (Support agent on acme) and {hint}."]
