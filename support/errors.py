from plum.errors import PlumError


class TicketOrderMismatchError(PlumError):
    code = "ticket_order_mismatch"
    status = 404
    message = "No such order."


class TicketNotFoundError(PlumError):
    code = "ticket_not_found"
    status = 404
    message = "No such ticket."


class TicketClosedError(PlumError):
    code = "ticket_closed"
    status = 409
    message = "This ticket is closed; reopen it first."


class TicketReopenWindowClosedError(PlumError):
    code = "ticket_reopen_window_closed"
    status = 409
    message = "This ticket was resolved or closed too long ago to be reopened; open a new one."


class TicketAssigneeInvalidError(PlumError):
    code = "ticket_assignee_invalid"
    status = 400
    message = "The assignee must be an active agent of the ticket's programme."
