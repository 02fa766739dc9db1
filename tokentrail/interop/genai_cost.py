"""Cost attributes for the backends people already run, beside tokentrail's exact strings.

`gen_ai.usage.cost` (USD as a double) is what OpenLIT and LiteLLM emit and Langfuse, Opik and
Laminar read. semantic-conventions-genai PR #443 proposes `gen_ai.usage.cost.amount`,
`.currency` and `.source`; until it merges they are emitted only with
`cost_attributes_draft=True` (Langfuse reads every `gen_ai.usage.*` key other than
`gen_ai.usage.cost` as a usage count, so the draft keys would show there as usage).
The float is for display only: the ledger keeps `tokentrail.cost.usd`, a decimal string.
"""

from __future__ import annotations

from typing import Any

from ..semconv import (
    GEN_AI_USAGE_COST,
    GEN_AI_USAGE_COST_AMOUNT,
    GEN_AI_USAGE_COST_CURRENCY,
    GEN_AI_USAGE_COST_SOURCE,
)
from ..semconv import GEN_AI_USAGE_COST_DERIVED as DERIVED

__all__ = ["DERIVED", "attributes", "set_draft"]

_draft = False  # set from the default instance's settings (runtime.Tokentrail)


def set_draft(enabled: bool) -> None:
    global _draft
    _draft = bool(enabled)


def attributes(total_usd: Any) -> dict[str, Any]:
    """The attributes for a known total cost (a Decimal); nothing for an unknown one (an
    unpriced call has no cost, not a cost of 0)."""
    if total_usd is None:
        return {}
    usd = float(total_usd)
    if not _draft:
        return {GEN_AI_USAGE_COST: usd}
    return {
        GEN_AI_USAGE_COST: usd,
        GEN_AI_USAGE_COST_AMOUNT: usd,
        GEN_AI_USAGE_COST_CURRENCY: "USD",
        GEN_AI_USAGE_COST_SOURCE: "local",  # computed here from tokens and prices
    }
