"""genai-prices' plans remembered in TOKENTRAIL_HOME, so a new process prices its first calls
without importing genai-prices' data (about 0.2 s): the first call of a CLI tool, a cron job
or a fresh worker stays fast.

One small JSON file, `cache/prices.json`: for each (model, provider, UTC day) PriceBook has
resolved, the plan it built (exact Decimal strings) or "no price". It is only read for the
installed genai-prices version (another version starts a new file), never when genai-prices'
prices were replaced at run time (`UpdatePrices`), and keeps the newest week of days. It is read
once, when the PriceBook is made, and written from a background thread, never on a call's path.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
import time
from datetime import date, timedelta
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any

logger = logging.getLogger("tokentrail.pricing")

MISS = object()
_KEEP_DAYS = 7
_COALESCE_S = 0.25  # a writer waits this long for more puts before it writes
_FORMAT = 2  # 2: plans with one-hour cache writes, web searches and their price id
Key = tuple[str, "str | None", date]


def _genai_prices_version() -> str | None:
    try:
        return metadata.version("genai-prices")
    except metadata.PackageNotFoundError:
        return None


def custom_prices_active() -> bool:
    """True when genai-prices' prices were replaced at run time (UpdatePrices): the memo is
    then bypassed. genai-prices not imported yet means nothing replaced them."""
    ds = sys.modules.get("genai_prices.data_snapshot")
    if ds is None:
        return False
    return getattr(ds, "_custom_snapshot", True) is not None


def _key(k: Key) -> str:
    model, pid, day = k
    return f"{model}\t{pid or ''}\t{day.isoformat()}"


def _encode_price(price: Any) -> Any:
    from .pricing.plan import Tiers as _Tiers

    if isinstance(price, _Tiers):
        return {"base": str(price.base), "tiers": [[start, str(p)] for start, p in price.tiers]}
    return str(price)


def _decode_price(raw: Any) -> Any:
    from .pricing.plan import Tiers as _Tiers

    if isinstance(raw, dict):
        return _Tiers(Decimal(raw["base"]), tuple((int(start), Decimal(p)) for start, p in raw["tiers"]))
    return Decimal(raw)


def encode(value: tuple[str, Any] | None) -> Any:
    if value is None:
        return None
    source, plan = value
    return {
        "source": source,
        "terms": [[k, d, _encode_price(p), per] for k, d, p, per in plan.terms],
        "tiered": plan.tiered,
        "cache_read": plan.prices_cache_read,
        "cache_write": plan.prices_cache_write,
        "reasoning": plan.prices_reasoning,
        "cache_write_1h": plan.prices_cache_write_1h,
        "price_id": plan.price_id,
    }


def decode(raw: Any) -> tuple[str, Any] | None:
    from .pricing.plan import Plan as _Plan

    if raw is None:
        return None
    plan = _Plan(
        terms=tuple((str(k), str(d), _decode_price(p), int(per)) for k, d, p, per in raw["terms"]),
        tiered=bool(raw["tiered"]),
        prices_cache_read=bool(raw["cache_read"]),
        prices_cache_write=bool(raw["cache_write"]),
        prices_reasoning=bool(raw["reasoning"]),
        prices_cache_write_1h=bool(raw["cache_write_1h"]),
        price_id=str(raw["price_id"]),
    )
    return str(raw["source"]), plan


class PlanMemo:
    """(model, genai-prices provider id, UTC day) -> (source, plan) or None (no price)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.version = _genai_prices_version()
        self._raw: dict[str, Any] = {}
        self._decoded: dict[Key, Any] = {}
        self._lock = threading.Lock()
        self._saving = False
        self._dirty = False
        self._at_exit = False
        if self.version is not None:
            self._raw = self._read()

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("genai_prices") != self.version or data.get("format") != _FORMAT:
            return {}
        plans = data.get("plans")
        return plans if isinstance(plans, dict) else {}

    @property
    def known(self) -> bool:
        """Whether anything is remembered (else this home has priced nothing yet)."""
        return bool(self._raw)

    def get(self, key: Key) -> Any:
        """The remembered value, or MISS."""
        try:
            return self._decoded[key]
        except KeyError:
            pass
        if self.version is None:
            return MISS
        raw = self._raw.get(_key(key), MISS)
        if raw is MISS:
            return MISS
        try:
            value = decode(raw)
        except (KeyError, TypeError, ValueError, ArithmeticError):
            return MISS  # a damaged entry: priced the long way, and written again
        self._decoded[key] = value
        return value

    def put(self, key: Key, value: tuple[str, Any] | None) -> None:
        if self.version is None:
            return
        with self._lock:
            self._raw[_key(key)] = encode(value)
            self._decoded[key] = value
            self._dirty = True
            if self._saving:
                return  # the running writer takes it in its next write
            self._saving = True
            if not self._at_exit:
                self._at_exit = True
                atexit.register(self.flush)  # a short-lived process still leaves its plans
        threading.Thread(target=self._save_loop, name="tokentrail-price-memo", daemon=True).start()

    def _save_loop(self) -> None:
        """One writer at a time, each write taking every put made since the last: thousands of
        new names (a burst) cost a few writes of the file, not one write each (which made
        pricing 5,000 new names ~50x slower: bench/price_memo.py)."""
        while True:
            time.sleep(_COALESCE_S)
            with self._lock:
                if not self._dirty:
                    self._saving = False
                    return
                self._dirty = False
                mine = dict(self._raw)
            self._write(mine)

    def flush(self) -> None:
        """Write what is not written yet, now (at exit)."""
        with self._lock:
            if not self._dirty:
                return
            self._dirty = False
            mine = dict(self._raw)
        self._write(mine)

    def _write(self, mine: dict[str, Any]) -> None:
        try:
            merged = {**self._read(), **mine}  # another process may have added days
            newest = max(k.rsplit("\t", 1)[-1] for k in merged)
            oldest = (date.fromisoformat(newest) - timedelta(days=_KEEP_DAYS)).isoformat()
            merged = {k: v for k, v in merged.items() if k.rsplit("\t", 1)[-1] >= oldest}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_text(json.dumps({"genai_prices": self.version, "format": _FORMAT, "plans": merged}, separators=(",", ":")))
            os.replace(tmp, self.path)
        except Exception as e:  # a cache: pricing works without it
            logger.debug("tokentrail: could not save the price memo at %s: %s", self.path, e)
