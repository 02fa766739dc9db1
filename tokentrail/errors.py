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


def one_line(e: BaseException, limit: int = 500) -> str:
    """An exception as one plain line (its type when it says nothing), for logs and status."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:limit]


class MissingExtra(TokentrailError, ImportError):
    """An optional integration's package is not installed. One line: what needs it, and the
    tokentrail extra that installs it."""

    def __init__(self, what: str, package: str, extra: str, module: str | None = None) -> None:
        self.package = package
        self.extra = extra
        super().__init__(f"tokentrail: {what} needs {package}, which is not installed: pip install 'tokentrail[{extra}]'")
        self.name = module or package


def format_usd(d: Decimal) -> str:
    """Dollars for a message: cents when exact to the cent, else up to 6 places."""
    if d == d.quantize(Decimal("0.01")):
        return f"{d:.2f}"
    return f"{d.quantize(Decimal('0.000001')).normalize():f}"


class BudgetExceeded(TokentrailError):
    """Raised before a provider is called when the call would break a budget whose action is block.

    Attributes: budget (name), scope_value (the user, team... of a per-value budget, else None),
    spent_usd (spend plus reservations in flight when the call was checked), limit_usd,
    estimated_cost_usd (the call's worst case; None for an unpriced model), reason ("limit", or
    "unpriced" when the budget refuses models without a price), model.
    """

    def __init__(
        self,
        budget: str,
        *,
        scope_value: str | None = None,
        spent_usd: Decimal = Decimal(0),
        limit_usd: Decimal = Decimal(0),
        estimated_cost_usd: Decimal | None = None,
        reason: str = "limit",
        model: str | None = None,
    ) -> None:
        self.budget = budget
        self.scope_value = scope_value
        self.spent_usd = spent_usd
        self.limit_usd = limit_usd
        self.estimated_cost_usd = estimated_cost_usd
        self.reason = reason
        self.model = model
        scope = f" [{scope_value}]" if scope_value else ""
        if reason == "unpriced":
            msg = (
                f"budget {budget!r}{scope} refuses model {model or '(unknown)'!r}: it has no price "
                "(unpriced='block'); add a price override for it"
            )
        else:
            est = f", this call up to ${format_usd(estimated_cost_usd)}" if estimated_cost_usd is not None else ""
            msg = f"budget {budget!r}{scope} exceeded: spent ${format_usd(spent_usd)} of ${format_usd(limit_usd)}{est}"
        super().__init__(msg)

    def __reduce__(self) -> tuple[object, ...]:
        # keyword-only arguments: rebuild through a helper so the exception pickles (multiprocessing)
        return (
            _rebuild_budget_exceeded,
            (self.budget, self.scope_value, self.spent_usd, self.limit_usd, self.estimated_cost_usd, self.reason, self.model),
        )


def _rebuild_budget_exceeded(
    budget: str,
    scope_value: str | None,
    spent_usd: Decimal,
    limit_usd: Decimal,
    estimated_cost_usd: Decimal | None,
    reason: str,
    model: str | None,
) -> BudgetExceeded:
    return BudgetExceeded(
        budget,
        scope_value=scope_value,
        spent_usd=spent_usd,
        limit_usd=limit_usd,
        estimated_cost_usd=estimated_cost_usd,
        reason=reason,
        model=model,
    )


class AllowanceExceeded(BudgetExceeded):
    """A call past a budget's included allowance (`allowance_usd`) where `overage` is "block"
    or "downgrade": raised before the provider is called, with the price it would have cost.

    Attributes (besides BudgetExceeded's; limit_usd is the period's allowance with its carry):
    overage_usd (the call's worst case beyond the allowance, at the budget's overage_rate),
    overage_rate, downgrade_to (the model to use instead, for overage="downgrade"; else None).
    """

    def __init__(
        self,
        budget: str,
        *,
        scope_value: str | None = None,
        spent_usd: Decimal = Decimal(0),
        limit_usd: Decimal = Decimal(0),
        estimated_cost_usd: Decimal | None = None,
        model: str | None = None,
        overage_usd: Decimal = Decimal(0),
        overage_rate: Decimal = Decimal(1),
        downgrade_to: str | None = None,
    ) -> None:
        super().__init__(
            budget, scope_value=scope_value, spent_usd=spent_usd, limit_usd=limit_usd,
            estimated_cost_usd=estimated_cost_usd, reason="allowance", model=model,
        )  # fmt: skip
        self.overage_usd = overage_usd
        self.overage_rate = overage_rate
        self.downgrade_to = downgrade_to
        scope = f" [{scope_value}]" if scope_value else ""
        then = f"; use {downgrade_to!r} instead" if downgrade_to else ""
        self.args = (
            f"budget {budget!r}{scope}: the included ${format_usd(limit_usd)} is used up (${format_usd(spent_usd)} committed); "
            f"this call would cost up to ${format_usd(overage_usd)} in overage (x{overage_rate} the price){then}",
        )

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_allowance_exceeded,
            (self.budget, self.scope_value, self.spent_usd, self.limit_usd, self.estimated_cost_usd, self.model,
             self.overage_usd, self.overage_rate, self.downgrade_to),
        )  # fmt: skip


def _rebuild_allowance_exceeded(
    budget: str, scope_value: str | None, spent_usd: Decimal, limit_usd: Decimal, estimated_cost_usd: Decimal | None,
    model: str | None, overage_usd: Decimal, overage_rate: Decimal, downgrade_to: str | None,
) -> AllowanceExceeded:  # fmt: skip
    return AllowanceExceeded(
        budget, scope_value=scope_value, spent_usd=spent_usd, limit_usd=limit_usd, estimated_cost_usd=estimated_cost_usd,
        model=model, overage_usd=overage_usd, overage_rate=overage_rate, downgrade_to=downgrade_to,
    )  # fmt: skip
