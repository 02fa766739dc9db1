"""What a call cost, in USD, from genai-prices at the call's timestamp, or from an override.

Rules (SPEC §4, §6):

- An override for the model wins (status ``override``): custom, fine-tuned and self-hosted
  models, in USD per million tokens or as a GPU-hour price with a throughput.
- Else genai-prices prices the call with the price valid at the call's time (status
  ``priced``). It never fetches from the network: tokentrail only reads the price data bundled
  with the installed package (genai-prices fetches only when ``UpdatePrices`` is started,
  which tokentrail never does).
- An unknown model is ``unpriced`` with a NULL cost, never $0.
- ``usage is None`` (the provider said nothing, nothing was counted) is ``no_usage`` with a
  NULL cost. A usage that exists with zero tokens (a cache hit) is a real $0: priced like any
  other, so $0 for a known model, still ``unpriced`` for an unknown one.

Money is Decimal only, quantised to 9 places (the store's Decimal(18, 9)) with half-even
rounding; ``total_usd`` is the quantised exact total (it also holds per-request fees, which are
neither input nor output, so it can exceed input + output).

Speed: the first call of a (model, provider, UTC date) resolves the model and its price for
that day through genai-prices (a few ms); later calls reuse that plan and cost a few µs. The
plan reproduces genai-prices' arithmetic (same unit prices, same tiers, same per-unit
division, via its ``calc_unit_price``); tests check it equals ``calc_price`` for every model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation, localcontext
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from . import clock
from . import semconv as sc
from .errors import ConfigError
from .price_memo import MISS, PlanMemo, custom_prices_active
from .providers import UNKNOWN, genai_prices_provider_id, infer_provider
from .usage import Usage

__all__ = ["Cost", "PriceBook", "PriceOverride", "parse_overrides"]

log = logging.getLogger("tokentrail.pricing")

_Q = Decimal("0.000000001")  # Decimal(18, 9)
# our own context: an application that lowers decimal precision must not change our money
_CTX = Context(prec=28, rounding=ROUND_HALF_EVEN)
_MTOK = Decimal(1_000_000)
_SECONDS_PER_HOUR = Decimal(3600)

# Providers genai-prices has no list price for (local or contract pricing): guessing another
# provider's price from the model name would be wrong, so they stay unpriced unless overridden.
_NO_LIST_PRICE = frozenset({"ollama", "ibm.watsonx.ai"})


def _q(value: Decimal) -> Decimal:
    return value.quantize(_Q, context=_CTX)


@dataclass(frozen=True, slots=True)
class Cost:
    input_usd: Decimal | None
    output_usd: Decimal | None
    total_usd: Decimal | None
    status: str  # semconv.COST_PRICED | COST_OVERRIDE | COST_UNPRICED | COST_NO_USAGE
    source: str = ""  # e.g. "genai-prices openai/gpt-4o" or "override gpt-4o-ft"


def _unpriced(source: str = "") -> Cost:
    return Cost(None, None, None, sc.COST_UNPRICED, source)


_NO_USAGE = Cost(None, None, None, sc.COST_NO_USAGE)


# -- overrides -------------------------------------------------------------------------------


def _decimal(value: Any, field: str, *, positive: bool = False) -> Decimal:
    """A price from config: int, float, numeric string or Decimal, via str() (never float
    arithmetic: 0.1 stays Decimal('0.1'))."""
    what = "a positive number" if positive else "a non-negative number"
    fix = "write a plain number, e.g. 3 or 0.15"
    if isinstance(value, bool) or value is None:
        raise ConfigError(field, f"must be {what}, got {value!r}", fix)
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, (int, float, str)):
        try:
            d = Decimal(str(value).strip())
        except InvalidOperation:
            raise ConfigError(field, f"must be {what}, got {value!r}", fix) from None
    else:
        raise ConfigError(field, f"must be {what}, got {type(value).__name__}", fix)
    if not d.is_finite():
        raise ConfigError(field, f"must be {what}, got {value!r}", fix)
    if d < 0 or (positive and d == 0):
        raise ConfigError(field, f"must be {what}, got {value!r}", fix)
    return d


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """USD per million tokens. GPU pricing: gpu_hour_usd with tokens_per_second turns into per-token price."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cache_read_per_mtok: Decimal | None = None  # default: input price
    cache_write_per_mtok: Decimal | None = None  # default: input price

    def __post_init__(self) -> None:
        # accept ints/strings from code too, but store Decimals only
        for name in ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok"):
            value = getattr(self, name)
            if value is None and name.startswith("cache"):
                continue
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                object.__setattr__(self, name, _decimal(value, f"PriceOverride.{name}"))

    @classmethod
    def from_gpu_hour(
        cls,
        gpu_hour_usd: Decimal | int | float | str,
        tokens_per_second: Decimal | int | float | str,
        *,
        input_tokens_per_second: Decimal | int | float | str | None = None,
        gpu_count: Decimal | int | float | str = 1,
    ) -> PriceOverride:
        """Self-hosted pricing: what ``gpu_count`` GPUs cost an hour, spread over the tokens they
        process in that hour at ``tokens_per_second`` (sustained throughput of the deployment).
        ``input_tokens_per_second`` prices prompt tokens at their own (usually much higher)
        prefill rate; by default input and output cost the same per token.

        per MTok = gpu_hour_usd * gpu_count * 1e6 / (3600 * tokens_per_second)
        """
        hour = _decimal(gpu_hour_usd, "gpu_hour_usd") * _decimal(gpu_count, "gpu_count", positive=True)
        out_tps = _decimal(tokens_per_second, "tokens_per_second", positive=True)
        in_tps = (
            out_tps
            if input_tokens_per_second is None
            else _decimal(input_tokens_per_second, "input_tokens_per_second", positive=True)
        )
        with localcontext(_CTX):
            per_in = hour * _MTOK / (_SECONDS_PER_HOUR * in_tps)
            per_out = hour * _MTOK / (_SECONDS_PER_HOUR * out_tps)
        return cls(input_per_mtok=per_in, output_per_mtok=per_out)


_PER_MTOK_KEYS = ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok")
_GPU_KEYS = ("gpu_hour_usd", "tokens_per_second", "input_tokens_per_second", "gpu_count")
_ALL_KEYS = _PER_MTOK_KEYS + _GPU_KEYS


def _field(model: str, key: str | None = None) -> str:
    # TOML-style path; quote names a bare TOML key could not hold (dots, spaces, colons)
    name = model if model and all(c.isalnum() or c in "-_" for c in model) else f'"{model}"'
    return f"prices.{name}" + (f".{key}" if key else "")


def _parse_one(model: str, table: Any) -> PriceOverride:
    if isinstance(table, PriceOverride):
        return table
    if not isinstance(table, Mapping):
        raise ConfigError(
            _field(model),
            f"must be a table of prices, got {type(table).__name__}",
            "give input_per_mtok and output_per_mtok, or gpu_hour_usd and tokens_per_second",
        )
    for key in table:
        if key not in _ALL_KEYS:
            raise ConfigError(_field(model, str(key)), "unknown key", f"use one of: {', '.join(_ALL_KEYS)}")
    per_mtok = [k for k in _PER_MTOK_KEYS if k in table]
    gpu = [k for k in _GPU_KEYS if k in table]
    if gpu and per_mtok:
        raise ConfigError(
            _field(model, gpu[0]),
            f"cannot be combined with {per_mtok[0]}",
            "price the model either per million tokens or per GPU hour",
        )
    if gpu:
        for required in ("gpu_hour_usd", "tokens_per_second"):
            if required not in table:
                raise ConfigError(
                    _field(model, required),
                    "is missing",
                    "GPU pricing needs both gpu_hour_usd and tokens_per_second",
                )
        # validate here so the error names the model's field, not a bare key
        values = {k: table[k] for k in gpu}
        _decimal(values["gpu_hour_usd"], _field(model, "gpu_hour_usd"))
        for k in ("tokens_per_second", "input_tokens_per_second", "gpu_count"):
            if k in values:
                _decimal(values[k], _field(model, k), positive=True)
        return PriceOverride.from_gpu_hour(
            values["gpu_hour_usd"],
            values["tokens_per_second"],
            input_tokens_per_second=values.get("input_tokens_per_second"),
            gpu_count=values.get("gpu_count", 1),
        )
    for required in ("input_per_mtok", "output_per_mtok"):
        if required not in table:
            raise ConfigError(
                _field(model, required),
                "is missing",
                "give both input_per_mtok and output_per_mtok (0 for an embedding model's output)",
            )
    return PriceOverride(
        input_per_mtok=_decimal(table["input_per_mtok"], _field(model, "input_per_mtok")),
        output_per_mtok=_decimal(table["output_per_mtok"], _field(model, "output_per_mtok")),
        cache_read_per_mtok=(
            _decimal(table["cache_read_per_mtok"], _field(model, "cache_read_per_mtok"))
            if table.get("cache_read_per_mtok") is not None
            else None
        ),
        cache_write_per_mtok=(
            _decimal(table["cache_write_per_mtok"], _field(model, "cache_write_per_mtok"))
            if table.get("cache_write_per_mtok") is not None
            else None
        ),
    )


def _load_toml(path: Path) -> Mapping[str, Any]:
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ModuleNotFoundError:
            raise ConfigError(
                "prices", f"cannot read {path} on Python 3.10 without tomli", "pip install tomli"
            ) from None
    try:
        with path.open("rb") as f:
            data: Mapping[str, Any] = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("prices", f"file {str(path)!r} not found", "give the path of a TOML file with [prices.\"<model>\"] tables") from None
    except OSError as e:
        raise ConfigError("prices", f"cannot read {str(path)!r}: {e.strerror}", "check the path and its permissions") from None
    except tomllib.TOMLDecodeError as e:
        problem = str(e).replace("\n", " ")
        raise ConfigError("prices", f"{path} is not valid TOML ({problem})", "fix the file's syntax") from None
    return data


def parse_overrides(value: Mapping[str, Any] | str | os.PathLike[str] | None) -> dict[str, PriceOverride]:
    """Price overrides from a mapping ``{"my-ft-model": {"input_per_mtok": 3, "output_per_mtok":
    15}}`` / ``{"llama-70b-selfhosted": {"gpu_hour_usd": 2.5, "tokens_per_second": 1500}}`` (or
    PriceOverride values), or from the path of a TOML file holding ``[prices."<model>"]``
    tables. Raises ConfigError naming the field (``prices.my-model.input_per_mtok``)."""
    if value is None:
        return {}
    if isinstance(value, (str, os.PathLike)):
        if isinstance(value, str) and not value.strip():
            return {}
        data = _load_toml(Path(value).expanduser())
        value = data.get("prices", {})
        if not isinstance(value, Mapping):
            raise ConfigError("prices", "must be a table of models", 'write [prices."<model>"] tables')
    if not isinstance(value, Mapping):
        raise ConfigError(
            "prices",
            f"must be a mapping of model -> prices or a TOML path, got {type(value).__name__}",
            'pass {"my-model": {"input_per_mtok": 3, "output_per_mtok": 15}} or a path',
        )
    out: dict[str, PriceOverride] = {}
    for model, table in value.items():
        if not isinstance(model, str) or not model.strip():
            raise ConfigError("prices", f"model name {model!r} is not a non-empty string", "key each price table by model name")
        out[model.strip()] = _parse_one(model.strip(), table)
    return out


def _override_cost(ov: PriceOverride, usage: Usage, source: str) -> Cost:
    cache_read_price = ov.cache_read_per_mtok if ov.cache_read_per_mtok is not None else ov.input_per_mtok
    cache_write_price = ov.cache_write_per_mtok if ov.cache_write_per_mtok is not None else ov.input_per_mtok
    uncached = max(usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens, 0)
    with localcontext(_CTX):
        inp = (
            uncached * ov.input_per_mtok
            + usage.cache_read_tokens * cache_read_price
            + usage.cache_write_tokens * cache_write_price
        ) / _MTOK
        out = usage.output_tokens * ov.output_per_mtok / _MTOK
        return Cost(_q(inp), _q(out), _q(inp + out), sc.COST_OVERRIDE, source)


# -- genai-prices ----------------------------------------------------------------------------

# The usage genai-prices sees: its input_tokens includes cached tokens like ours, its
# output_reasoning_tokens is a part of output_tokens (priced apart by a few models).
_INPUT, _OUTPUT, _CACHE_READ, _CACHE_WRITE, _REASONING, _REQUESTS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_reasoning_tokens",
    "requests",
)


def genai_usage(u: Usage) -> Any:
    """Our Usage as a genai_prices.Usage (what tests compare calc_price against)."""
    from genai_prices import Usage as GPUsage

    return GPUsage(
        input_tokens=u.input_tokens,
        cache_read_tokens=u.cache_read_tokens,
        cache_write_tokens=u.cache_write_tokens,
        output_tokens=u.output_tokens,
        output_reasoning_tokens=u.reasoning_tokens,
    )


@lru_cache(maxsize=1)
def _units() -> Mapping[str, Any]:
    from genai_prices.data_units import unit_data

    return {u["price_key"]: (key, u) for key, u in unit_data.items()}


@lru_cache(maxsize=1)
def _genai_provider_ids() -> frozenset[str]:
    from genai_prices.data import providers

    return frozenset(p.id for p in providers)


@lru_cache(maxsize=1)
def _genai_version() -> str:
    import genai_prices

    return str(getattr(genai_prices, "__version__", ""))


@dataclass(frozen=True, slots=True)
class _Plan:
    """One model's prices on one day, as the terms our usage can reach.

    terms: (usage key, direction, price, per). Units our usage never reports (audio, images,
    searches...) count 0 in genai-prices too and are left out. None when a price key is not a
    known unit (a newer data format): then calc_price itself is called.
    """

    terms: tuple[tuple[str, str, Any, int], ...] | None
    tiered: bool
    prices_cache_read: bool
    prices_cache_write: bool
    prices_reasoning: bool


class _Tiers(NamedTuple):
    """genai-prices' TieredPrices as plain values: the price is `base` until the call's input
    tokens exceed a tier's start, then that tier's price (the highest such tier)."""

    base: Decimal
    tiers: tuple[tuple[int, Decimal], ...]


def _plan(model_price: Any) -> _Plan:
    from genai_prices.types import TieredPrices

    units = _units()
    terms: list[tuple[str, str, Any, int]] = []
    keys: set[str] = set()
    known = True
    for price_key, price in vars(model_price).items():
        if price_key.startswith("_") or price is None:
            continue
        unit = units.get(price_key)
        if unit is None:
            known = False
            continue
        usage_key, spec = unit
        keys.add(usage_key)
        if usage_key in (_INPUT, _OUTPUT, _CACHE_READ, _CACHE_WRITE, _REASONING, _REQUESTS):
            direction = spec.get("dimensions", {}).get("direction", "")
            if isinstance(price, TieredPrices):
                price = _Tiers(price.base, tuple((t.start, t.price) for t in price.tiers))
            elif not isinstance(price, Decimal):
                known = False  # a price shape this plan cannot evaluate: calc_price does
                continue
            terms.append((usage_key, direction, price, int(spec["per"])))
    return _Plan(
        terms=tuple(terms) if known else None,
        tiered=any(isinstance(t[2], _Tiers) for t in terms),
        prices_cache_read=_CACHE_READ in keys,
        prices_cache_write=_CACHE_WRITE in keys,
        prices_reasoning=_REASONING in keys,
    )


def _plan_cost(plan: _Plan, u: Usage) -> tuple[Decimal, Decimal, Decimal]:
    """genai-prices' arithmetic for our five counts: each priced unit is charged for its leaf
    count (input minus the cache parts that have their own price, output minus reasoning when
    reasoning has its own price), tiers chosen by total input tokens, price * count / per
    (genai-prices' calc_unit_price, with the same Decimal operations)."""
    assert plan.terms is not None
    cache_read = u.cache_read_tokens if plan.prices_cache_read else 0
    cache_write = u.cache_write_tokens if plan.prices_cache_write else 0
    reasoning = u.reasoning_tokens if plan.prices_reasoning else 0
    counts = {
        _INPUT: max(u.input_tokens - cache_read - cache_write, 0),
        _CACHE_READ: cache_read,
        _CACHE_WRITE: cache_write,
        _OUTPUT: max(u.output_tokens - reasoning, 0),
        _REASONING: reasoning,
        _REQUESTS: 1,
    }
    total_input = u.input_tokens if plan.tiered else 0
    inp = out = total = Decimal(0)
    for usage_key, direction, price, per in plan.terms:
        if type(price) is _Tiers:
            applicable = price.base
            for start, tier_price in reversed(price.tiers):
                if total_input > start:
                    applicable = tier_price
                    break
            price = applicable
        # Decimal * int is exact, as Decimal * Decimal(int) in calc_unit_price
        value = price * counts[usage_key] / per
        total += value
        if direction == "input":
            inp += value
        elif direction == "output":
            out += value
    return inp, out, total


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
    plan: _Plan | None  # None for time-of-day prices (deepseek off-peak): planned per call


def _utc(when: datetime) -> datetime:
    # naive timestamps are UTC, as in genai-prices
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


class PriceBook:
    """Prices calls: overrides first, then genai-prices at the call's time. Thread-safe."""

    _MAX_ENTRIES = 8192

    def __init__(self, overrides: Mapping[str, PriceOverride] | None = None, *, memo_dir: Path | None = None) -> None:
        """memo_dir: where to remember resolved plans for the next process (price_memo.py)."""
        self._overrides: dict[str, PriceOverride] = dict(overrides or {})
        # overrides match the model name exactly, then case-insensitively
        self._overrides_lower = {k.lower(): k for k in self._overrides}
        self._entries: dict[tuple[str, str | None, date], _Entry | None] = {}
        self._plans: dict[int, tuple[Any, _Plan]] = {}
        self._snapshot: Any = None
        self._memo: Any = None
        if memo_dir is not None:
            self._memo = PlanMemo(Path(memo_dir) / "cache" / "prices.json")

    @property
    def overrides(self) -> Mapping[str, PriceOverride]:
        return self._overrides

    def preload(self) -> None:
        """Import genai-prices' bundled data now (~0.1 s) rather than on the first priced call;
        safe to run in a background thread."""
        _units()
        _genai_provider_ids()

    def warm_in_background(self) -> None:
        """Start `preload` in a background thread when no plan is remembered for this home (a
        fresh one): a first call made a little later then finds the data loaded."""
        if self._memo is not None and self._memo.known:
            return
        import threading

        threading.Thread(target=self.preload, name="tokentrail-prices", daemon=True).start()

    def _override(self, model: str) -> tuple[str, PriceOverride] | None:
        ov = self._overrides.get(model)
        if ov is not None:
            return model, ov
        key = self._overrides_lower.get(model.lower())
        if key is not None:
            return key, self._overrides[key]
        return None

    def _provider_id(self, provider: str | None) -> tuple[str | None, bool]:
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

    def _entry(self, model: str, pid: str | None, when: datetime) -> _Entry | None:
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
        if _has_time_of_day(info):
            return _Entry(info, provider.id, source, None)
        return _Entry(info, provider.id, source, _plan(calc.model_price))

    def _day_plan(self, entry: _Entry, when: datetime) -> _Plan:
        if entry.plan is not None:
            return entry.plan
        model_price = entry.model_info.get_prices(when)
        cached = self._plans.get(id(model_price))
        if cached is not None and cached[0] is model_price:
            return cached[1]
        plan = _plan(model_price)
        self._plans[id(model_price)] = (model_price, plan)
        return plan

    def cost(self, usage: Usage | None, model: str | None, provider: str | None, when: datetime) -> Cost:
        """The cost of one call. Never raises: a failure is logged and the call is unpriced."""
        if usage is None:
            return _NO_USAGE
        if not model:
            return _unpriced()
        try:
            found = self._override(model)
            if found is not None:
                return _override_cost(found[1], usage, f"override {found[0]}")
            pid, priceable = self._provider_id(provider)
            if not priceable:
                return _unpriced(f"no list price for {provider}: add a price override")
            when = _utc(when or clock.now())
            memo = self._memo if self._memo is not None and not custom_prices_active() else None
            remembered: Any = memo.get((model, pid, when.date())) if memo is not None else MISS
            if remembered is not MISS:
                if remembered is None:
                    return _unpriced()
                source, plan = remembered
            else:
                entry = self._entry(model, pid, when)
                if memo is not None and (entry is None or (entry.plan is not None and entry.plan.terms is not None)):
                    memo.put((model, pid, when.date()), None if entry is None else (entry.source, entry.plan))
                if entry is None:
                    return _unpriced()
                plan = self._day_plan(entry, when)
                if plan.terms is None:
                    return self._calc_price(usage, model, entry, when)
                source = entry.source
            with localcontext(_CTX):
                inp, out, total = _plan_cost(plan, usage)
            return Cost(_q(inp), _q(out), _q(total), sc.COST_PRICED, source)
        except Exception:  # instrumentation never raises into the user's program
            log.warning("tokentrail: cannot price model %r (provider %r)", model, provider, exc_info=True)
            return _unpriced()

    def _calc_price(self, usage: Usage, model: str, entry: _Entry, when: datetime) -> Cost:
        from genai_prices import calc_price

        calc = calc_price(
            genai_usage(usage), model_ref=model, provider_id=entry.provider_id, genai_request_timestamp=when
        )
        return Cost(
            _q(calc.input_price), _q(calc.output_price), _q(calc.total_price), sc.COST_PRICED, entry.source
        )

    def describe(self, model: str, provider: str | None = None, when: datetime | None = None) -> dict[str, Any]:
        """The price that would be used for ``model`` at ``when`` (default now), for
        ``tokentrail prices MODEL``. Prices are USD per million tokens (Decimal); cache prices
        are the effective ones (the input price when the model has no cache price); ``tiers``
        lists (threshold input tokens, price) cliffs per price; ``other`` holds the model's
        prices for units tokentrail does not count (searches, audio, requests...)."""
        when = _utc(when or clock.now())
        out: dict[str, Any] = {
            "model": model,
            "provider": provider or UNKNOWN,
            "status": sc.COST_UNPRICED,
            "source": "",
            "matched_model": None,
            "matched_provider": None,
            "when": when.isoformat(),
            "input_per_mtok": None,
            "output_per_mtok": None,
            "cache_read_per_mtok": None,
            "cache_write_per_mtok": None,
            "tiers": {},
            "other": {},
        }
        found = self._override(model)
        if found is not None:
            key, ov = found
            out.update(
                status=sc.COST_OVERRIDE,
                source=f"override {key}",
                matched_model=key,
                input_per_mtok=ov.input_per_mtok,
                output_per_mtok=ov.output_per_mtok,
                cache_read_per_mtok=ov.cache_read_per_mtok if ov.cache_read_per_mtok is not None else ov.input_per_mtok,
                cache_write_per_mtok=ov.cache_write_per_mtok if ov.cache_write_per_mtok is not None else ov.input_per_mtok,
            )
            return out
        pid, priceable = self._provider_id(provider)
        if not priceable:
            out["source"] = f"no list price for {provider}: add a price override"
            return out
        entry = self._entry(model, pid, when)
        if entry is None:
            return out
        from genai_prices.types import TieredPrices

        model_price = entry.model_info.get_prices(when)
        prices: dict[str, Decimal] = {}
        tiers: dict[str, list[tuple[int, Decimal]]] = {}
        other: dict[str, Decimal] = {}
        names = {
            "input_mtok": "input_per_mtok",
            "output_mtok": "output_per_mtok",
            "cache_read_mtok": "cache_read_per_mtok",
            "cache_write_mtok": "cache_write_per_mtok",
        }
        for price_key, price in vars(model_price).items():
            if price_key.startswith("_") or price is None:
                continue
            base = price.base if isinstance(price, TieredPrices) else price
            name = names.get(price_key)
            if name is None:
                other[price_key] = base
                continue
            prices[name] = base
            if isinstance(price, TieredPrices):
                tiers[name] = [(t.start, t.price) for t in price.tiers]
        inp = prices.get("input_per_mtok")
        out.update(
            status=sc.COST_PRICED,
            source=f"genai-prices {_genai_version()} {entry.provider_id}/{entry.model_info.id}".replace("  ", " "),
            matched_model=entry.model_info.id,
            matched_provider=entry.provider_id,
            input_per_mtok=inp,
            output_per_mtok=prices.get("output_per_mtok"),
            cache_read_per_mtok=prices.get("cache_read_per_mtok", inp),
            cache_write_per_mtok=prices.get("cache_write_per_mtok", inp),
            tiers=tiers,
            other=other,
        )
        return out
