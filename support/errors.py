from plum.errors import PlumError


class TicketOrderMismatchError(PlumError):
    code = "ticket_order_mismatch"
    status = 404
    message = "No such order."
