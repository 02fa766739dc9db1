"""Acme's LlamaIndex features, run as real LlamaIndex pipelines on offline models.

Two features of the demo world (`content`), instrumented with `tokentrail.instrument_llamaindex()`
and attributed with `tokentrail.attributes(...)` (LlamaIndex calls carry no metadata):

    doc-search     VectorStoreIndex over the product docs -> query engine -> gpt-4o-mini
                   (a third of the queries stream their answer)
    support-chat   condense-plus-context chat engine over the support policy -> claude-3-5-haiku,
                   multi-turn sessions, the long policy system prompt cached by the provider

The models are real LlamaIndex `LLM`s (callbacks, streaming, chat engines work as with
llama-index-llms-openai / -anthropic) that answer offline with each provider's own usage shape
in `ChatResponse.raw`: OpenAI's `prompt_tokens` (cached included, `prompt_tokens_details.
cached_tokens` for a prefix of 1,024+ tokens seen in the last ten minutes, in 128-token steps)
and, streaming, a last chunk with `choices: []` and the usage; Anthropic's `input_tokens`
without the `cache_read_input_tokens` / `cache_creation_input_tokens` of a five-minute prompt
cache. The embedding model is a deterministic bag-of-words vector (retrieval really ranks the
chunks) named text-embedding-3-small; like llama-index-embeddings-openai it reports no tokens,
so tokentrail counts them (flagged estimated). Latency advances the DemoClock, never sleeps.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import re
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING, Any

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.chat_engine import CondensePlusContextChatEngine
from llama_index.core.llms import LLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.memory import ChatMemoryBuffer
from llama_index.core.node_parser import SentenceSplitter
from pydantic import PrivateAttr

import tokentrail

from .. import tokens
from . import content
from .clock import DemoClock
from .models import RateLimitError, Simulator

__all__ = ["DemoAnthropic", "DemoEmbedding", "DemoOpenAI", "run"]

# feature -> share of requests
MIX: dict[str, float] = {"doc-search": 0.6, "support-chat": 0.4}
_WORD = re.compile(r"[a-z0-9]+")


def _text(rng: random.Random, n_tokens: int) -> str:
    bank = content.sentences("docs") + content.sentences("policy")
    out: list[str] = []
    size = 0
    while size < n_tokens * 4:
        s = rng.choice(bank)
        out.append(s)
        size += len(s) + 1
    return " ".join(out)


def _key(*parts: str) -> str:
    return hashlib.sha1("\x00".join(parts).encode()).hexdigest()


class _DemoLLM(LLM):
    """An offline chat model; subclasses shape `raw` like their provider."""

    model: str
    response_model: str
    max_tokens: int = 1024
    output_tokens: tuple[int, int] = (80, 300)
    ttft_ms: float = 400.0
    ms_per_token: float = 8.0
    fail_rate: float = 0.01
    _sim: Simulator = PrivateAttr()

    def __init__(self, sim: Simulator, **kw: Any) -> None:
        super().__init__(**kw)
        self._sim = sim

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            model_name=self.model, is_chat_model=True, num_output=self.max_tokens, context_window=128_000
        )

    # -- the call ----------------------------------------------------------------------------
    def _answer(self, messages: Sequence[ChatMessage]) -> tuple[str, dict[str, Any]]:
        """Simulate one request: latency on the clock, a reply, and the raw usage body."""
        sim = self._sim
        sim.model_calls += 1
        if sim.rng.random() < self.fail_rate:
            sim.failed_calls += 1
            sim.clock.advance(sim.rng.uniform(50, 400))
            raise RateLimitError("429 rate limit reached for requests")
        lo, hi = self.output_tokens
        text = _text(sim.rng, min(sim.rng.randint(lo, hi), self.max_tokens))
        output = tokens.count_tokens(text, self.model)
        sim.clock.advance(self.ttft_ms * sim.rng.uniform(0.7, 1.6) + self.ms_per_token * output)
        return text, self._raw(messages, output)

    def _raw(self, messages: Sequence[ChatMessage], output: int) -> dict[str, Any]:
        raise NotImplementedError

    def _pieces(self, text: str) -> list[str]:
        words = text.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        text, raw = self._answer(messages)
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), raw=raw)

    def _chat_chunks(self, messages: Sequence[ChatMessage]) -> ChatResponseGen:
        text, raw = self._answer(messages)
        so_far = ""
        for piece in self._pieces(text):
            so_far += piece
            yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=so_far), delta=piece)
        # the provider's last stream event carries the usage
        yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=so_far), delta="", raw=raw)

    def _completion_chunks(self, prompt: str) -> CompletionResponseGen:
        for r in self._chat_chunks([ChatMessage(role=MessageRole.USER, content=prompt)]):
            yield CompletionResponse(text=r.message.content or "", delta=r.delta, raw=r.raw)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        return self._chat_chunks(messages)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        text, raw = self._answer([ChatMessage(role=MessageRole.USER, content=prompt)])
        return CompletionResponse(text=text, raw=raw)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        return self._completion_chunks(prompt)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        text, raw = self._answer(messages)
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), raw=raw)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        async def gen() -> AsyncGenerator[ChatResponse, None]:
            for r in self._chat_chunks(messages):
                await asyncio.sleep(0)
                yield r

        return gen()

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        text, raw = self._answer([ChatMessage(role=MessageRole.USER, content=prompt)])
        return CompletionResponse(text=text, raw=raw)

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        async def gen() -> AsyncGenerator[CompletionResponse, None]:
            for r in self._completion_chunks(prompt):
                await asyncio.sleep(0)
                yield r

        return gen()


def _system_and_rest(messages: Sequence[ChatMessage]) -> tuple[str, list[ChatMessage]]:
    system = "\n".join(m.content or "" for m in messages if m.role == MessageRole.SYSTEM)
    return system, [m for m in messages if m.role != MessageRole.SYSTEM]


class DemoOpenAI(_DemoLLM):
    """Answers like OpenAI chat completions: automatic prefix caching, usage with details."""

    if TYPE_CHECKING:
        # mypy synthesizes a pydantic model's __init__ per subclass from its fields, hiding
        # _DemoLLM's; this declares the inherited one
        def __init__(self, sim: Simulator, **kw: Any) -> None: ...

    @classmethod
    def class_name(cls) -> str:
        return "DemoOpenAI"

    def _raw(self, messages: Sequence[ChatMessage], output: int) -> dict[str, Any]:
        prompt = tokens.count_messages(messages, self.model)
        system, _ = _system_and_rest(messages)
        cached = 0
        prefix = tokens.count_tokens(system, self.model)
        # OpenAI caches a repeated prompt prefix of 1,024+ tokens, in 128-token increments
        if prefix >= 1024 and self._sim.cache_lookup(_key("openai", self.model, system), 600):
            cached = 1024 + (prefix - 1024) // 128 * 128
        return {
            "id": f"chatcmpl-{self._sim.rng.getrandbits(64):016x}",
            "object": "chat.completion",
            "model": self.response_model,
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": output,
                "total_tokens": prompt + output,
                "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            },
        }


class DemoAnthropic(_DemoLLM):
    """Answers like Anthropic's Messages API: a system prompt that starts with `cache_prefix`
    (the block an application marks with cache_control) has that block cached for five
    minutes (a write, then reads), and `input_tokens` leaves the cached tokens out."""

    cache_prefix: str = ""

    if TYPE_CHECKING:
        # mypy synthesizes a pydantic model's __init__ per subclass from its fields, hiding
        # _DemoLLM's; this declares the inherited one
        def __init__(self, sim: Simulator, **kw: Any) -> None: ...

    @classmethod
    def class_name(cls) -> str:
        return "DemoAnthropic"

    def _raw(self, messages: Sequence[ChatMessage], output: int) -> dict[str, Any]:
        total = tokens.count_messages(messages, self.model)
        system, _ = _system_and_rest(messages)
        read = write = 0
        prefix = self.cache_prefix
        if prefix and system.startswith(prefix):
            block = tokens.count_tokens(prefix, self.model)
            if block >= 1024:  # Anthropic's minimum cacheable prompt
                if self._sim.cache_lookup(_key("anthropic", self.model, prefix), 300):
                    read = block
                else:
                    write = block
        uncached = total - read - write
        return {
            "id": f"msg_{self._sim.rng.getrandbits(64):016x}",
            "type": "message",
            "model": self.response_model,
            "usage": {
                "input_tokens": uncached,
                "cache_read_input_tokens": read,
                "cache_creation_input_tokens": write,
                "output_tokens": output,
            },
        }


class DemoEmbedding(BaseEmbedding):
    """Offline embeddings: hashed bag of words, unit length. Deterministic, so retrieval
    ranks chunks by shared words, as a real model would roughly do."""

    dims: int = 64
    _sim: Simulator = PrivateAttr()

    def __init__(self, sim: Simulator, **kw: Any) -> None:
        super().__init__(model_name="text-embedding-3-small", **kw)
        self._sim = sim

    @classmethod
    def class_name(cls) -> str:
        return "DemoEmbedding"

    def _vector(self, text: str) -> list[float]:
        v = [0.0] * self.dims
        for word in _WORD.findall(text.lower()):
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little")
            v[h % self.dims] += 1.0 if h & 0x80000000 else -1.0
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / norm for x in v]

    def _tick(self, n: int) -> None:
        self._sim.model_calls += 1
        self._sim.clock.advance(self._sim.rng.uniform(60, 180) + 2 * n)

    def _get_query_embedding(self, query: str) -> list[float]:
        self._tick(1)
        return self._vector(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        self._tick(1)
        return self._vector(text)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        self._tick(len(texts))
        return [self._vector(t) for t in texts]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embedding(text)


# the long policy first, the retrieved excerpts after: the policy is a stable prefix the
# provider can cache (LlamaIndex puts the context template before any system_prompt)
_POLICY_BLOCK = content.support_policy().replace("{", "(").replace("}", ")")
_SUPPORT_CONTEXT = (
    _POLICY_BLOCK
    + "\n\nPolicy excerpts relevant to this conversation:\n\n{context_str}\n\n"
    + "Answer the customer's latest message using the policy."
)


class Pipelines:
    """The indexes, models and engines of both features, built once per run."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.embed = DemoEmbedding(sim, embed_batch_size=32)
        self.mini = DemoOpenAI(
            sim, model="gpt-4o-mini", response_model="gpt-4o-mini-2024-07-18",
            output_tokens=(120, 380), ttft_ms=350, ms_per_token=6, fail_rate=0.01, max_tokens=800,
        )  # fmt: skip
        self.haiku = DemoAnthropic(
            sim, model="claude-3-5-haiku", response_model="claude-3-5-haiku-20241022",
            output_tokens=(60, 240), ttft_ms=500, ms_per_token=8, fail_rate=0.02, max_tokens=512,
            cache_prefix=_POLICY_BLOCK,
        )  # fmt: skip
        splitter = SentenceSplitter(chunk_size=512, chunk_overlap=32)
        docs = [Document(text=text, metadata={"title": title}) for title, text in content.doc_chunks()]
        self.docs_index = VectorStoreIndex.from_documents(docs, embed_model=self.embed, transformations=[splitter])
        policy = [Document(text=s) for s in content.sentences("policy")]
        self.policy_index = VectorStoreIndex.from_documents(policy, embed_model=self.embed)
        self.doc_search = self.docs_index.as_query_engine(llm=self.mini, similarity_top_k=3)
        self.doc_search_stream = self.docs_index.as_query_engine(llm=self.mini, similarity_top_k=3, streaming=True)

    def support_engine(self) -> CondensePlusContextChatEngine:
        """A chat engine per conversation (its memory is the session)."""
        return CondensePlusContextChatEngine.from_defaults(
            retriever=self.policy_index.as_retriever(similarity_top_k=3),
            llm=self.haiku,
            context_prompt=_SUPPORT_CONTEXT,
            memory=ChatMemoryBuffer.from_defaults(token_limit=6000, llm=self.haiku),
        )


def _request(p: Pipelines, feature: str, rng: random.Random, clock: DemoClock) -> None:
    f = content.FEATURES[feature]
    user = content.pick_user(rng, f.audience)
    environment = "staging" if rng.random() < 0.08 else "production"
    attrs: dict[str, Any] = dict(project=f.project, environment=environment, team=f.team, feature=feature, user_id=user)
    if feature == "doc-search":
        with tokentrail.attributes(tags=["llamaindex"], **attrs):
            question = rng.choice(content.QUESTIONS)
            if rng.random() < 0.33:
                response = p.doc_search_stream.query(question)
                for _ in response.response_gen:  # type: ignore[union-attr]
                    pass
            else:
                p.doc_search.query(question)
        return
    # support-chat: a conversation on one chat engine; the session id attributes every turn
    session = f"sess_{rng.getrandbits(48):012x}"
    engine = p.support_engine()
    with tokentrail.attributes(session_id=session, tags=["llamaindex"], **attrs):
        message = rng.choice(content.SUPPORT_OPENERS)
        for turn in range(rng.choice([1, 2, 2, 3])):
            if turn:
                clock.advance(rng.uniform(15_000, 90_000))  # the customer reads and types
                message = rng.choice(content.SUPPORT_FOLLOWUPS)
            engine.chat(message)


def run(n_calls: int, rng: random.Random, clock: DemoClock) -> int:
    """Make about `n_calls` model calls (LLM and embedding) through LlamaIndex, spread over the
    clock's window; returns how many were made. Failed requests are recorded by their spans."""
    handle = tokentrail.instrument_llamaindex()
    try:
        sim = Simulator(rng=rng, clock=clock)
        clock.at_progress(0.0)
        p = Pipelines(sim)  # embedding the documents: the first calls
        features, weights = list(MIX), list(MIX.values())
        while sim.model_calls < n_calls:
            clock.at_progress(sim.model_calls / n_calls)
            try:
                _request(p, rng.choices(features, weights=weights)[0], rng, clock)
            except Exception:  # provider errors: the spans say so
                pass
        return sim.model_calls
    finally:
        handle.uninstrument()
