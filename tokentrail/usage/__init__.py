"""Token usage, normalised from whatever a provider or framework reports.

One `Usage` shape for every provider, with OTel GenAI semantics:

- ``input_tokens`` includes cached tokens (cache reads and cache writes),
- ``output_tokens`` includes reasoning tokens,
- ``cache_read_tokens``, ``cache_write_tokens`` and ``reasoning_tokens`` are subsets of those.

Providers disagree about what their counts include (Anthropic and Bedrock leave cache tokens
out of their input count, Gemini and xAI leave reasoning out of their output count). Each
reader in `shapes` adds what its provider leaves out, so nothing is counted twice or lost.
Where a ``total`` is reported it is used to tell the two conventions apart.

Values are made safe here, where they enter (`model`): a count that is negative, non-finite,
not a number (a bool, a nested object, text) or absurd (above MAX_TOKENS) is dropped to 0, and
the Usage lists it in ``invalid`` ("key=raw value"), which becomes the span attribute
``tokentrail.usage.invalid``. Costs are bounded to what the store's Decimal(18, 9) columns hold
(``cost_or_none``).

No framework is read here: each integration's readers live in it
(tokentrail/instrumentation/langchain/readers.py, .../llamaindex/readers.py).
"""

from __future__ import annotations

from .model import (
    MAX_COST_USD,
    MAX_TOKENS,
    Usage,
    cost_or_none,
    count_or_none,
    raw_text,
    usage_attributes,
)
from .shapes import count_web_searches, from_mapping, with_response_fees

__all__ = [
    "MAX_COST_USD",
    "MAX_TOKENS",
    "Usage",
    "cost_or_none",
    "count_or_none",
    "count_web_searches",
    "from_mapping",
    "raw_text",
    "usage_attributes",
    "with_response_fees",
]

# the LangChain readers moved into the integration (the core imports no framework)
_MOVED = {
    "from_langchain_message": "tokentrail.instrumentation.langchain.readers",
    "from_langchain_result": "tokentrail.instrumentation.langchain.readers",
    "is_langchain_cache_hit": "tokentrail.instrumentation.langchain.readers",
}


def __getattr__(name: str) -> object:
    where = _MOVED.get(name)
    if where is not None:
        raise AttributeError(f"tokentrail.usage.{name} moved: from {where} import {name}")
    raise AttributeError(f"module 'tokentrail.usage' has no attribute {name!r}")
