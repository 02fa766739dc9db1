"""What tokentrail's tables hold: the public spans columns, the rollups, and a store's state."""

from __future__ import annotations

from dataclasses import dataclass

# the columns of `spans` that are public (README.md, "Where the spans go"; more may be added)
SPANS_COLUMNS: dict[str, str] = {
    "timestamp": "DateTime64(6, 'UTC')",
    "duration_ms": "Float64",
    "trace_id": "String",
    "span_id": "String",
    "parent_span_id": "String",
    "name": "LowCardinality(String)",
    "operation": "LowCardinality(String)",
    "framework": "LowCardinality(String)",
    "service_name": "LowCardinality(String)",
    "project": "LowCardinality(String)",
    "environment": "LowCardinality(String)",
    "team": "LowCardinality(String)",
    "feature": "LowCardinality(String)",
    "user_id": "String",
    "session_id": "String",
    "tags": "Array(String)",
    "provider": "LowCardinality(String)",
    "request_model": "LowCardinality(String)",
    "response_model": "LowCardinality(String)",
    "input_tokens": "UInt64",
    "output_tokens": "UInt64",
    "cache_read_tokens": "UInt64",
    "cache_write_tokens": "UInt64",
    "reasoning_tokens": "UInt64",
    "usage_estimated": "Bool",
    "input_cost_usd": "Nullable(Decimal(18, 9))",
    "output_cost_usd": "Nullable(Decimal(18, 9))",
    "cost_usd": "Nullable(Decimal(18, 9))",
    "cost_status": "LowCardinality(String)",
    "status": "LowCardinality(String)",
    "error_type": "String",
    "time_to_first_token_ms": "Nullable(Float64)",
    "attributes": "Map(String, String)",
}

# migration 5: the price that charged the span, and the fee counts a re-pricing needs
PRICE_COLUMNS: dict[str, str] = {
    "cache_write_1h_tokens": "UInt64",
    "web_search_requests": "UInt64",
    "service_tier": "LowCardinality(String)",
    "fees_usd": "Nullable(Decimal(18, 9))",
    "price_id": "LowCardinality(String)",
    "price_version": "LowCardinality(String)",
}

# The migration that creates the rollups: a reader uses them only once it is recorded.
ROLLUPS = 3

# The input-token thresholds the rollups' `input_tier` counts (the views' SQL lists the same):
# every genai-prices tier threshold at the time, and the round numbers providers use. A question
# that needs tiers reads the rollups only while genai-prices' thresholds are all in this list.
ROLLUP_TIERS: tuple[int, ...] = (
    32000, 32768, 64000, 65536, 100000, 128000, 131072, 199999, 200000,
    256000, 262144, 272000, 500000, 512000, 524288, 1000000, 1048576,
)  # fmt: skip

# the dimensions of each spend rollup (besides its time bucket); sums are by these
_MODEL_DIMS = (
    "project", "environment", "operation", "provider", "request_model", "response_model", "status",
    "cost_status", "error_type", "framework", "service_name", "usage_estimated", "has_cost", "input_tier",
)  # fmt: skip
SPEND_ROLLUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (time bucket, dimensions); smallest first
    "spend_hourly": ("hour", _MODEL_DIMS),
    "spend_daily": ("day", ("team", "feature", "tags", *_MODEL_DIMS)),
}
SPEND_METRICS = (
    "spans", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
    "uncached_input_tokens", "output_or_reasoning_tokens", "cache_read_calls", "cost_usd", "min_timestamp",
)  # fmt: skip


@dataclass(frozen=True)
class Schema:
    """A store's schema as this process found (and left) it."""

    database: str
    cluster: str | None
    applied: frozenset[int]
    views: bool = True  # the store has the rollups (a server; the embedded store has none)

    @property
    def rollups(self) -> bool:
        return self.views and ROLLUPS in self.applied

    @property
    def complete(self) -> bool:
        from .migrations import MIGRATIONS

        return all(m.number in self.applied for m in MIGRATIONS)

    def table(self, name: str) -> str:
        """The qualified name to read (and insert into): the Distributed table on a cluster."""
        return f"{self.database}.{name}"
