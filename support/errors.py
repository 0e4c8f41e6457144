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


class TicketTestModeError(PlumError):
    code = "tickets_test_mode_unsupported"
    status = 403
    message = "Test-mode API keys cannot open or change tickets: tickets have no test mode."


class TicketMemberAmbiguousError(PlumError):
    code = "member_ambiguous"
    status = 400
    message = "This member id exists in more than one of your programmes: name the programme."
