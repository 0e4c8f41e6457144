"""Orders' data, one module per part of the app. Django finds the models through these imports."""

from orders.models.order import ORDER_TRANSITIONS, Order
from orders.models.rules import Event, EventRuleOutcome, RuleCondition, WorkflowRule

__all__ = ["ORDER_TRANSITIONS", "Order"]
__all__ += ["Event", "EventRuleOutcome", "RuleCondition", "WorkflowRule"]
