"""Exceptions a user can see. Everything else tokentrail raises internally is logged, never raised."""

from __future__ import annotations

from decimal import Decimal


class TokentrailError(Exception):
    """Base class for tokentrail's user-facing errors."""


class ConfigError(TokentrailError, ValueError):
    """A configuration value is wrong. The message is one line: the field, the problem, the fix."""

    def __init__(self, field: str, problem: str, fix: str) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(f"tokentrail: {field}: {problem}; {fix}")


class BudgetExceeded(TokentrailError):
    """Raised before a provider is called when the call would break a budget whose action is block."""

    def __init__(
        self,
        budget: str,
        *,
        scope_value: str | None = None,
        spent_usd: Decimal = Decimal(0),
        limit_usd: Decimal = Decimal(0),
        estimated_cost_usd: Decimal | None = None,
    ) -> None:
        self.budget = budget
        self.scope_value = scope_value
        self.spent_usd = spent_usd
        self.limit_usd = limit_usd
        self.estimated_cost_usd = estimated_cost_usd
        scope = f" [{scope_value}]" if scope_value else ""
        est = f", this call up to ${estimated_cost_usd}" if estimated_cost_usd is not None else ""
        super().__init__(
            f"budget {budget!r}{scope} exceeded: spent ${spent_usd} of ${limit_usd}{est}"
        )
