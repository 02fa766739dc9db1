"""Price overrides: custom, fine-tuned and self-hosted models, and the gaps of genai-prices.

``[prices."<model>"]`` tables (tokentrail.toml or a prices file) in USD per million tokens, or as
a GPU-hour price with a throughput; fees per request and per 1,000 web searches. A key
``"<model>@<tier>"`` (``"claude-sonnet-4-0@batch"``) prices only calls the response reports in
that service tier, and leaves the model's other calls to genai-prices: how a tier genai-prices
lacks is filled in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

from .. import semconv as sc
from ..errors import ConfigError
from ..usage import Usage
from .money import CTX, MTOK, Cost, decimal_of, q

__all__ = ["PriceOverride", "override_cost", "parse_overrides"]

_SECONDS_PER_HOUR = Decimal(3600)
_K = Decimal(1000)
_OPTIONAL = ("cache_read_per_mtok", "cache_write_per_mtok", "cache_write_1h_per_mtok", "web_search_per_k", "request_usd")


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """USD per million tokens. GPU pricing: gpu_hour_usd with tokens_per_second turns into per-token price."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cache_read_per_mtok: Decimal | None = None  # default: input price
    cache_write_per_mtok: Decimal | None = None  # default: input price
    cache_write_1h_per_mtok: Decimal | None = None  # default: the cache write price
    web_search_per_k: Decimal | None = None  # USD per 1,000 server-side web searches
    request_usd: Decimal | None = None  # USD per request
    # how a GPU-hour price was given ((key, value) pairs), kept for the price table
    gpu: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        # accept ints/strings from code too, but store Decimals only
        for name in ("input_per_mtok", "output_per_mtok", *_OPTIONAL):
            value = getattr(self, name)
            if value is None and name in _OPTIONAL:
                continue
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                object.__setattr__(self, name, decimal_of(value, f"PriceOverride.{name}"))

    @property
    def cache_read(self) -> Decimal:
        return self.cache_read_per_mtok if self.cache_read_per_mtok is not None else self.input_per_mtok

    @property
    def cache_write(self) -> Decimal:
        return self.cache_write_per_mtok if self.cache_write_per_mtok is not None else self.input_per_mtok

    @property
    def cache_write_1h(self) -> Decimal:
        return self.cache_write_1h_per_mtok if self.cache_write_1h_per_mtok is not None else self.cache_write

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
        hour = decimal_of(gpu_hour_usd, "gpu_hour_usd") * decimal_of(gpu_count, "gpu_count", positive=True)
        out_tps = decimal_of(tokens_per_second, "tokens_per_second", positive=True)
        in_tps = (
            out_tps
            if input_tokens_per_second is None
            else decimal_of(input_tokens_per_second, "input_tokens_per_second", positive=True)
        )
        with localcontext(CTX):
            per_in = hour * MTOK / (_SECONDS_PER_HOUR * in_tps)
            per_out = hour * MTOK / (_SECONDS_PER_HOUR * out_tps)
        given = {
            "gpu_hour_usd": gpu_hour_usd,
            "tokens_per_second": tokens_per_second,
            "input_tokens_per_second": input_tokens_per_second,
            "gpu_count": gpu_count,
        }
        gpu = tuple((k, str(v)) for k, v in given.items() if v is not None)
        return cls(input_per_mtok=per_in, output_per_mtok=per_out, gpu=gpu)


_PER_MTOK_KEYS = ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok", "cache_write_1h_per_mtok")
_FEE_KEYS = ("web_search_per_k", "request_usd")
_GPU_KEYS = ("gpu_hour_usd", "tokens_per_second", "input_tokens_per_second", "gpu_count")
_ALL_KEYS = _PER_MTOK_KEYS + _FEE_KEYS + _GPU_KEYS


def _field(model: str, key: str | None = None) -> str:
    # TOML-style path; quote names a bare TOML key could not hold (dots, spaces, colons)
    name = model if model and all(c.isalnum() or c in "-_" for c in model) else f'"{model}"'
    return f"prices.{name}" + (f".{key}" if key else "")


def _optional(model: str, table: Mapping[str, Any], key: str) -> Decimal | None:
    return decimal_of(table[key], _field(model, key)) if table.get(key) is not None else None


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
    fees = {k: _optional(model, table, k) for k in _FEE_KEYS}
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
        decimal_of(values["gpu_hour_usd"], _field(model, "gpu_hour_usd"))
        for k in ("tokens_per_second", "input_tokens_per_second", "gpu_count"):
            if k in values:
                decimal_of(values[k], _field(model, k), positive=True)
        base = PriceOverride.from_gpu_hour(
            values["gpu_hour_usd"],
            values["tokens_per_second"],
            input_tokens_per_second=values.get("input_tokens_per_second"),
            gpu_count=values.get("gpu_count", 1),
        )
        return PriceOverride(
            base.input_per_mtok, base.output_per_mtok, web_search_per_k=fees["web_search_per_k"],
            request_usd=fees["request_usd"], gpu=base.gpu,
        )  # fmt: skip
    for required in ("input_per_mtok", "output_per_mtok"):
        if required not in table:
            raise ConfigError(
                _field(model, required),
                "is missing",
                "give both input_per_mtok and output_per_mtok (0 for an embedding model's output)",
            )
    return PriceOverride(
        input_per_mtok=decimal_of(table["input_per_mtok"], _field(model, "input_per_mtok")),
        output_per_mtok=decimal_of(table["output_per_mtok"], _field(model, "output_per_mtok")),
        cache_read_per_mtok=_optional(model, table, "cache_read_per_mtok"),
        cache_write_per_mtok=_optional(model, table, "cache_write_per_mtok"),
        cache_write_1h_per_mtok=_optional(model, table, "cache_write_1h_per_mtok"),
        web_search_per_k=fees["web_search_per_k"],
        request_usd=fees["request_usd"],
    )


def load_toml(path: Path, field: str = "prices") -> Mapping[str, Any]:
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ModuleNotFoundError:
            raise ConfigError(field, f"cannot read {path} on Python 3.10 without tomli", "pip install tomli") from None
    try:
        with path.open("rb") as f:
            data: Mapping[str, Any] = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(field, f"file {str(path)!r} not found", "give the path of a TOML file with [prices.\"<model>\"] tables") from None
    except OSError as e:
        raise ConfigError(field, f"cannot read {str(path)!r}: {e.strerror}", "check the path and its permissions") from None
    except tomllib.TOMLDecodeError as e:
        problem = str(e).replace("\n", " ")
        raise ConfigError(field, f"{path} is not valid TOML ({problem})", "fix the file's syntax") from None
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
        data = load_toml(Path(value).expanduser())
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


def override_cost(ov: PriceOverride, usage: Usage, source: str, price_id: str = "", version: str = "") -> Cost:
    cw_1h = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
    uncached = max(usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens, 0)
    with localcontext(CTX):
        inp = (
            uncached * ov.input_per_mtok
            + usage.cache_read_tokens * ov.cache_read
            + (usage.cache_write_tokens - cw_1h) * ov.cache_write
            + cw_1h * ov.cache_write_1h
        ) / MTOK
        out = usage.output_tokens * ov.output_per_mtok / MTOK
        fees = Decimal(0)
        if ov.web_search_per_k is not None:
            fees += usage.web_search_requests * ov.web_search_per_k / _K
        if ov.request_usd is not None:
            fees += ov.request_usd
        return Cost(q(inp), q(out), q(inp + out + fees), sc.COST_OVERRIDE, source, q(fees), price_id, version)
