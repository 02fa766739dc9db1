"""PriceBook: what a call cost, in USD, from an override or from genai-prices at the call's time.

Rules (README.md, "Prices: two ledgers"):

- An override for the model wins (status ``override``): custom, fine-tuned and self-hosted
  models. ``"<model>@<tier>"`` overrides only calls in that service tier (overrides.py).
- Else genai-prices prices the call with the price valid at the call's time (status
  ``priced``), in the service tier the response reported (its price variants: batch, flex,
  priority), with its long-context tiers, one-hour cache writes, web searches and per-request
  fees. It never fetches from the network (tokentrail never starts ``UpdatePrices``).
- An unknown model is ``unpriced`` with a NULL cost, never $0.
- ``usage is None`` is ``no_usage`` with a NULL cost; a zero usage (a cache hit) is a real $0.

Money is Decimal only, quantised to 9 places (half-even); ``total_usd`` holds the fees too, so
it can exceed input + output (``fees_usd`` says by how much).

Speed: the first call of a (model, provider, UTC date) resolves the model through genai-prices
(a few ms); later calls reuse its plan (plan.py) and cost a few µs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import localcontext
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import clock
from .. import semconv as sc
from ..price_memo import MISS, PlanMemo, custom_prices_active
from ..providers import UNKNOWN, genai_prices_provider_id, infer_provider
from ..usage import Usage
from .ids import (
    STANDARD,
    breakpoints,
    genai_price_id,
    genai_version,
    override_price_id,
    period_start,
    tier_of,
)
from .money import CTX, NO_USAGE, Cost, q, unpriced
from .overrides import PriceOverride, override_cost
from .plan import Plan, genai_usage, make_plan, plan_cost, price_context, units

__all__ = ["PriceBook"]

log = logging.getLogger("tokentrail.pricing")

# Providers genai-prices has no list price for (local or contract pricing): guessing another
# provider's price from the model name would be wrong, so they stay unpriced unless overridden.
_NO_LIST_PRICE = frozenset({"ollama", "ibm.watsonx.ai"})


@lru_cache(maxsize=1)
def _genai_provider_ids() -> frozenset[str]:
    from genai_prices.data import providers

    return frozenset(p.id for p in providers)


def _has_time_of_day(model_info: Any) -> bool:
    from genai_prices.types import TimeOfDateConstraint

    prices = getattr(model_info, "prices", None)
    if not isinstance(prices, list):
        return False
    return any(isinstance(getattr(c, "constraint", None), TimeOfDateConstraint) for c in prices)


@dataclass(slots=True)
class _Entry:
    model_info: Any
    provider_id: str
    source: str
    plan: Plan | None  # the standard plan of the day; None for time-of-day prices (deepseek off-peak)
    breaks: tuple[date, ...] = ()
    tiers: frozenset[str] = frozenset()  # the tiers the model has variant prices for


def _utc(when: datetime) -> datetime:
    # naive timestamps are UTC, as in genai-prices
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def overrides_version(overrides: Mapping[str, PriceOverride]) -> str:
    """The version of a set of overrides: a digest of their prices (table.py stores it)."""
    import hashlib

    text = repr(sorted((k, repr(v)) for k, v in overrides.items()))
    return f"overrides {hashlib.sha256(text.encode()).hexdigest()[:12]}"


class PriceBook:
    """Prices calls: overrides first, then genai-prices at the call's time. Thread-safe."""

    _MAX_ENTRIES = 8192

    def __init__(self, overrides: Mapping[str, PriceOverride] | None = None, *, memo_dir: Path | None = None) -> None:
        """memo_dir: where to remember resolved plans for the next process (price_memo.py)."""
        self._overrides: dict[str, PriceOverride] = dict(overrides or {})
        # overrides match the model name exactly, then case-insensitively
        self._overrides_lower = {k.lower(): k for k in self._overrides}
        self._overrides_version = overrides_version(self._overrides) if self._overrides else ""
        self._entries: dict[tuple[str, str | None, date], _Entry | None] = {}
        self._plans: dict[Any, tuple[Any, Plan]] = {}
        self._snapshot: Any = None
        self._memo: Any = None
        if memo_dir is not None:
            self._memo = PlanMemo(Path(memo_dir) / "cache" / "prices.json")

    @property
    def overrides(self) -> Mapping[str, PriceOverride]:
        return self._overrides

    @property
    def overrides_version(self) -> str:
        return self._overrides_version

    def preload(self) -> None:
        """Import genai-prices' bundled data now (~0.1 s) rather than on the first priced call;
        safe to run in a background thread."""
        units()
        _genai_provider_ids()

    def warm_in_background(self) -> None:
        """Start `preload` in a background thread when no plan is remembered for this home (a
        fresh one): a first call made a little later then finds the data loaded."""
        if self._memo is not None and self._memo.known:
            return
        import threading

        threading.Thread(target=self.preload, name="tokentrail-prices", daemon=True).start()

    def override(self, model: str, tier: str = "") -> tuple[str, PriceOverride] | None:
        """(the override's name, its prices) for a model in a service tier, or None."""
        names = (f"{model}@{tier}", model) if tier else (model,)
        for name in names:
            ov = self._overrides.get(name)
            if ov is not None:
                return name, ov
            key = self._overrides_lower.get(name.lower())
            if key is not None:
                return key, self._overrides[key]
        return None

    def provider_id(self, provider: str | None) -> tuple[str | None, bool]:
        """(genai-prices provider id or None, whether to price at all)."""
        if not provider or provider == UNKNOWN:
            return None, True
        p = provider.strip().lower()
        if p in _NO_LIST_PRICE:
            return None, False
        pid = genai_prices_provider_id(p)
        if pid is None and p in _genai_provider_ids():
            pid = p  # already a genai-prices id ("google", "aws")
        return pid, True

    def entry(self, model: str, pid: str | None, when: datetime) -> _Entry | None:
        from genai_prices import data_snapshot

        snapshot = data_snapshot.get_snapshot()
        if snapshot is not self._snapshot:  # prices were updated (UpdatePrices): start over
            self._entries = {}
            self._plans = {}
            self._snapshot = snapshot
        key = (model, pid, when.date())
        try:
            return self._entries[key]
        except KeyError:
            pass
        entry = self._resolve(model, pid, when)
        if len(self._entries) >= self._MAX_ENTRIES:
            self._entries = {}
        self._entries[key] = entry
        return entry

    def _resolve(self, model: str, pid: str | None, when: datetime) -> _Entry | None:
        from genai_prices import Usage as GPUsage
        from genai_prices import calc_price

        try:
            calc = calc_price(GPUsage(), model_ref=model, provider_id=pid, genai_request_timestamp=when)
        except LookupError:
            # An OpenAI-compatible client in front of a proxy (LiteLLM, a gateway) reports
            # "openai" for "claude-3-5-sonnet": when the model name itself names another
            # provider, price it there. A name that names nobody ("llama3") stays unpriced.
            alt = genai_prices_provider_id(infer_provider(model))
            if pid is None or alt is None or alt == pid:
                return None
            try:
                calc = calc_price(GPUsage(), model_ref=model, provider_id=alt, genai_request_timestamp=when)
            except LookupError:
                return None
        info, provider = calc.model, calc.provider
        source = f"genai-prices {provider.id}/{info.id}"
        breaks = breakpoints(info)
        tiers = frozenset(tier_of(v.when) for v in info.price_variants or ())
        if _has_time_of_day(info):
            return _Entry(info, provider.id, source, None, breaks, tiers)
        start = period_start(breaks, when.date())
        plan = make_plan(calc.model_price, genai_price_id(provider.id, info.id, start))
        return _Entry(info, provider.id, source, plan, breaks, tiers)

    def _plan_for(self, entry: _Entry, when: datetime, tier: str) -> Plan:
        if entry.plan is not None and tier == STANDARD:
            return entry.plan
        ctx = None if tier == STANDARD else price_context(Usage(service_tier=tier))
        model_price = entry.model_info.get_prices(when, ctx)
        key = (id(model_price), tier) if entry.plan is None else (id(entry), tier, when.date())
        cached = self._plans.get(key)
        owner = model_price if entry.plan is None else entry
        if cached is not None and cached[0] is owner:
            return cached[1]
        start = period_start(entry.breaks, when.date())
        plan = make_plan(model_price, genai_price_id(entry.provider_id, entry.model_info.id, start, tier))
        if len(self._plans) >= self._MAX_ENTRIES:
            self._plans = {}
        self._plans[key] = (owner, plan)
        return plan

    def cost(self, usage: Usage | None, model: str | None, provider: str | None, when: datetime) -> Cost:
        """The cost of one call. Never raises: a failure is logged and the call is unpriced."""
        if usage is None:
            return NO_USAGE
        if not model:
            return unpriced()
        try:
            found = self.override(model, usage.service_tier)
            if found is not None:
                name = found[0]
                return override_cost(found[1], usage, f"override {name}", override_price_id(name), self._overrides_version)
            pid, priceable = self.provider_id(provider)
            if not priceable:
                return unpriced(f"no list price for {provider}: add a price override")
            when = _utc(when or clock.now())
            if usage.service_tier and usage.service_tier != "mixed":
                return self._tier_cost(usage, model, pid, when)
            memo = self._memo if self._memo is not None and not custom_prices_active() else None
            remembered: Any = memo.get((model, pid, when.date())) if memo is not None else MISS
            if remembered is not MISS:
                if remembered is None:
                    return unpriced()
                source, plan = remembered
            else:
                entry = self.entry(model, pid, when)
                if memo is not None and (entry is None or (entry.plan is not None and entry.plan.terms is not None)):
                    memo.put((model, pid, when.date()), None if entry is None else (entry.source, entry.plan))
                if entry is None:
                    return unpriced()
                plan = self._plan_for(entry, when, STANDARD)
                if plan.terms is None:
                    return self._calc_price(usage, model, entry, when, plan, None)
                source = entry.source
            return self._priced(plan, usage, source)
        except Exception:  # instrumentation never raises into the user's program
            log.warning("tokentrail: cannot price model %r (provider %r)", model, provider, exc_info=True)
            return unpriced()

    def _tier_cost(self, usage: Usage, model: str, pid: str | None, when: datetime) -> Cost:
        entry = self.entry(model, pid, when)
        if entry is None:
            return unpriced()
        tier = usage.service_tier
        source = entry.source
        if tier not in entry.tiers:
            # genai-prices has no price for this tier: the standard price, said so in the source
            tier = STANDARD
            source += f" (no {usage.service_tier} price: standard; add a {model}@{usage.service_tier} override)"
        else:
            source += f" {tier}"
        plan = self._plan_for(entry, when, tier)
        if plan.terms is None:
            ctx = None if tier == STANDARD else price_context(usage)
            return self._calc_price(usage, model, entry, when, plan, ctx, source)
        return self._priced(plan, usage, source)

    @staticmethod
    def _priced(plan: Plan, usage: Usage, source: str) -> Cost:
        with localcontext(CTX):
            inp, out, total = plan_cost(plan, usage)
            fees = total - inp - out
        return Cost(q(inp), q(out), q(total), sc.COST_PRICED, source, q(fees), plan.price_id, genai_version())

    def _calc_price(
        self, usage: Usage, model: str, entry: _Entry, when: datetime, plan: Plan, ctx: Any, source: str = ""
    ) -> Cost:
        from genai_prices import calc_price

        calc = calc_price(
            genai_usage(usage), model_ref=model, provider_id=entry.provider_id, genai_request_timestamp=when,
            price_context=ctx,
        )  # fmt: skip
        fees = calc.total_price - calc.input_price - calc.output_price
        return Cost(
            q(calc.input_price), q(calc.output_price), q(calc.total_price), sc.COST_PRICED, source or entry.source,
            q(fees), plan.price_id, genai_version(),
        )  # fmt: skip

    def describe(self, model: str, provider: str | None = None, when: datetime | None = None) -> dict[str, Any]:
        """The prices that would be used for ``model`` at ``when`` (default now), for
        ``tokentrail prices MODEL`` (describe.py)."""
        from .describe import describe

        return describe(self, model, provider, _utc(when or clock.now()))
