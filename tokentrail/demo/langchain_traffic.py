"""Acme's LangChain features, run as real LangChain pipelines on the offline demo models.

Seven features, each a real LCEL pipeline traced with the public API
(`tokentrail.langchain_handler(...)`, `tokentrail.attributes(...)`, run metadata and tags):

    support-chat        prompt | claude-sonnet-4 (cached policy prompt) | parser, streamed, multi-turn
    ticket-triage       prompt | gpt-4o-mini | JSON parser (sometimes the JSON is malformed)
    order-agent         gpt-4o with a bound tool: tool call -> lookup_order tool -> answer
    doc-search          retriever | prompt | gpt-4o, or gemini-2.0-flash for an A/B group
    code-review         prompt | o3-mini (reasoning tokens) | parser
    summarize           prompt | claude-3-5-haiku, falling back to gemini-2.0-flash on a provider
                        error or a budget's BudgetExceeded | parser
    internal-assistant  prompt | acme-llm-7b (self-hosted on Ollama: no list price) | parser
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.messages.tool import tool_call
from langchain_core.output_parsers import JsonOutputParser, StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda, RunnablePassthrough
from langchain_core.tools import BaseTool, ToolException, tool
from pydantic import ConfigDict, Field

import tokentrail

from . import content
from .clock import DemoClock
from .models import DemoChatModel, DemoProviderError, Reply, Simulator, filler

# feature -> share of requests
MIX: dict[str, float] = {
    "support-chat": 0.20,
    "ticket-triage": 0.25,
    "order-agent": 0.12,
    "doc-search": 0.18,
    "code-review": 0.07,
    "summarize": 0.10,
    "internal-assistant": 0.08,
}


@dataclass
class Traffic:
    requests: int = 0
    model_calls: int = 0
    failed_requests: int = 0
    by_feature: dict[str, int] = field(default_factory=dict)


class DocsRetriever(BaseRetriever):
    """Keyword-overlap search over the documentation chunks (a stand-in for a vector store)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    docs: list[Document]
    k: int = 4
    sim: Simulator = Field(exclude=True, repr=False)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        words = set(re.findall(r"[a-z]{4,}", query.lower()))
        scored = sorted(
            self.docs,
            key=lambda d: (-len(words & set(re.findall(r"[a-z]{4,}", d.page_content.lower()))), d.metadata["title"]),
        )
        self.sim.clock.advance(self.sim.rng.uniform(25, 140))  # vector store round trip
        return scored[: self.k]


def _format_docs(docs: Sequence[Document]) -> str:
    return "\n\n".join(d.page_content for d in docs)


def _triage_responder(messages: Sequence[BaseMessage], kwargs: dict[str, Any], rng: random.Random) -> Reply:
    if rng.random() < 0.03:  # the model ignores the format instructions now and then
        return Reply("Sure! Here is the classification: category billing, priority high")
    label = {
        "category": rng.choice(["billing", "shipping", "bug", "account", "feature_request", "sales"]),
        "priority": rng.choices(["low", "medium", "high", "urgent"], weights=[3, 4, 2, 1])[0],
        "sentiment": rng.choice(["negative", "neutral", "positive"]),
    }
    return Reply(json.dumps(label))


def _agent_responder(messages: Sequence[BaseMessage], kwargs: dict[str, Any], rng: random.Random) -> Reply:
    last = messages[-1]
    if isinstance(last, ToolMessage) or not kwargs.get("tools"):
        return Reply(filler(rng, rng.randint(60, 180), content.sentences("policy")))
    m = re.search(r"#(\d+)", str(last.content))
    order = m.group(1) if m else "0"
    call_id = f"call_{rng.getrandbits(64):016x}"
    return Reply("", (tool_call(name="lookup_order", args={"order_id": order}, id=call_id),))


def _order_tool(sim: Simulator) -> BaseTool:
    @tool
    def lookup_order(order_id: str) -> str:
        """Look up the status of an order by its number."""
        sim.clock.advance(sim.rng.uniform(60, 400))  # the order service
        if sim.rng.random() < 0.04:
            raise ToolException(f"order {order_id} not found")
        status = sim.rng.choice(["processing", "shipped", "out for delivery", "delivered"])
        return json.dumps({"order_id": order_id, "status": status, "carrier": "DHL"})

    return lookup_order


class Pipelines:
    """Every feature's pipeline, built once per run on one simulator."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

        def model(name: str, provider: str, response_model: str, **kw: Any) -> DemoChatModel:
            return DemoChatModel(model=name, provider=provider, response_model=response_model, sim=sim, **kw)

        sonnet = model(
            "claude-sonnet-4", "anthropic", "claude-sonnet-4-20250514",
            prompt_caching=True, output_tokens=(90, 320), ttft_ms=900, ms_per_token=14, fail_rate=0.015,
            max_tokens=1024, temperature=0.3,
        )  # fmt: skip
        mini = model(
            "gpt-4o-mini", "openai", "gpt-4o-mini-2024-07-18",
            ttft_ms=350, ms_per_token=6, fail_rate=0.005, responder=_triage_responder, temperature=0.0,
        )  # fmt: skip
        gpt4o_agent = model(
            "gpt-4o", "openai", "gpt-4o-2024-08-06", ttft_ms=450, ms_per_token=11, fail_rate=0.01,
            responder=_agent_responder,
        )  # fmt: skip
        gpt4o = model("gpt-4o", "openai", "gpt-4o-2024-08-06", output_tokens=(150, 450), ttft_ms=450, ms_per_token=11, fail_rate=0.01)
        gemini = model("gemini-2.0-flash", "google_genai", "gemini-2.0-flash", output_tokens=(150, 500), ttft_ms=300, ms_per_token=4, fail_rate=0.005)
        o3 = model(
            "o3-mini", "openai", "o3-mini-2025-01-31",
            output_tokens=(200, 700), reasoning_tokens=(300, 4000), ttft_ms=1200, ms_per_token=8, fail_rate=0.01,
            max_tokens=8000,
        )  # fmt: skip
        haiku = model(
            "claude-3-5-haiku", "anthropic", "claude-3-5-haiku-20241022",
            output_tokens=(120, 300), ttft_ms=500, ms_per_token=8, fail_rate=0.05,
        )  # fmt: skip
        gemini_summary = model("gemini-2.0-flash", "google_genai", "gemini-2.0-flash", output_tokens=(120, 300), ttft_ms=300, ms_per_token=4)
        acme = model("acme-llm-7b", "ollama", "acme-llm-7b", output_tokens=(100, 400), ttft_ms=200, ms_per_token=28, fail_rate=0.02)

        self.support_chat: Runnable[Any, str] = (
            ChatPromptTemplate.from_messages(
                [SystemMessage(content=content.support_policy()), MessagesPlaceholder("history"), ("human", "{message}")]
            )
            | sonnet
            | StrOutputParser()
        ).with_config(run_name="support_chat")

        self.triage: Runnable[Any, Any] = (
            ChatPromptTemplate.from_messages(
                [
                    ("system", "Classify the support ticket. Answer with JSON only: category, priority, sentiment."),
                    ("human", "{ticket}"),
                ]
            )
            | mini
            | JsonOutputParser()
        ).with_config(run_name="ticket_triage")

        docs = [Document(page_content=text, metadata={"title": title}) for title, text in content.doc_chunks()]
        retriever = DocsRetriever(docs=docs, k=4, sim=sim).with_config(run_name="docs_retriever")
        rag_prompt = ChatPromptTemplate.from_messages(
            [
                ("system", "Answer the question using only the documentation below. Cite the section titles.\n\n{context}"),
                ("human", "{question}"),
            ]
        )
        context = {"context": retriever | RunnableLambda(_format_docs), "question": RunnablePassthrough()}
        self.doc_search = (context | rag_prompt | gpt4o | StrOutputParser()).with_config(run_name="doc_search")
        self.doc_search_gemini = (context | rag_prompt | gemini | StrOutputParser()).with_config(run_name="doc_search")

        self.code_review = (
            ChatPromptTemplate.from_messages(
                [
                    ("system", "You are a senior engineer. Review the change for bugs, security issues and style."),
                    ("human", "Review this change:\n```python\n{code}\n```"),
                ]
            )
            | o3
            | StrOutputParser()
        ).with_config(run_name="code_review")

        self.summarize = (
            ChatPromptTemplate.from_messages(
                [("system", "Summarise the document in five bullet points for the leadership team."), ("human", "{doc}")]
            )
            # a provider error, or a budget refusing haiku before the call: gemini answers instead
            | haiku.with_fallbacks([gemini_summary], exceptions_to_handle=(DemoProviderError, tokentrail.BudgetExceeded))
            | StrOutputParser()
        ).with_config(run_name="summarize")

        self.assistant = (
            ChatPromptTemplate.from_messages([("system", "You are Acme's internal engineering assistant."), ("human", "{ask}")])
            | acme
            | StrOutputParser()
        ).with_config(run_name="internal_assistant")

        lookup = _order_tool(sim)
        agent_llm = gpt4o_agent.bind_tools([lookup])

        def order_agent(question: str, config: RunnableConfig) -> str:
            messages: list[BaseMessage] = [
                SystemMessage(content="You help customers with their orders. Use lookup_order for order status."),
                HumanMessage(content=question),
            ]
            ai = agent_llm.invoke(messages, config)
            messages.append(ai)
            for call in ai.tool_calls:
                messages.append(lookup.invoke(call, config))
            final = agent_llm.invoke(messages, config)
            return str(final.content) if isinstance(final, AIMessage) else str(final)

        self.order_agent = RunnableLambda(order_agent, name="order_agent")


def _run_request(p: Pipelines, feature: str, rng: random.Random, clock: DemoClock) -> None:
    f = content.FEATURES[feature]
    user = content.pick_user(rng, f.audience)
    environment = "staging" if rng.random() < 0.08 else "production"
    handler = tokentrail.langchain_handler(feature=feature)
    with tokentrail.attributes(project=f.project, environment=environment, team=f.team, user_id=user):
        if feature == "support-chat":
            # a conversation: the session id travels in run metadata, as LangChain apps do
            session = f"sess_{rng.getrandbits(48):012x}"
            history: list[BaseMessage] = []
            message = rng.choice(content.SUPPORT_OPENERS)
            for turn in range(rng.choice([1, 2, 2, 3, 3, 4])):
                if turn:
                    clock.advance(rng.uniform(15_000, 90_000))  # the customer reads and types
                    message = rng.choice(content.SUPPORT_FOLLOWUPS)
                config: RunnableConfig = {"callbacks": [handler], "metadata": {"session_id": session}}
                answer = "".join(p.support_chat.stream({"history": history, "message": message}, config))
                history += [HumanMessage(content=message), AIMessage(content=answer)]
        elif feature == "ticket-triage":
            # malformed JSON fails the request (OutputParserException) after the call was billed
            p.triage.invoke({"ticket": rng.choice(content.TICKETS)}, {"callbacks": [handler]})
        elif feature == "order-agent":
            question = rng.choice(content.ORDER_QUESTIONS).format(order=rng.randint(100000, 999999))
            p.order_agent.invoke(question, {"callbacks": [handler]})
        elif feature == "doc-search":
            # an A/B test: 30% of users are on Gemini; the tag marks the group
            on_gemini = content.CUSTOMERS.index(user) % 10 < 3
            chain = p.doc_search_gemini if on_gemini else p.doc_search
            tags = ["ab:gemini"] if on_gemini else ["ab:control"]
            chain.invoke(rng.choice(content.QUESTIONS), {"callbacks": [handler], "tags": tags})
        elif feature == "code-review":
            p.code_review.invoke({"code": content.code_snippet(rng)}, {"callbacks": [handler]})
        elif feature == "summarize":
            p.summarize.invoke({"doc": content.marketing_doc(rng)}, {"callbacks": [handler]})
        elif feature == "internal-assistant":
            p.assistant.invoke({"ask": rng.choice(content.ASSISTANT_ASKS)}, {"callbacks": [handler]})
        else:  # pragma: no cover
            raise ValueError(feature)


def run(
    n_calls: int, rng: random.Random, clock: DemoClock, *, progress: Callable[[int], None] | None = None
) -> Traffic:
    """Run requests until about `n_calls` model calls were made; spread them over the clock's window."""
    sim = Simulator(rng=rng, clock=clock)
    pipelines = Pipelines(sim)
    features, weights = list(MIX), list(MIX.values())
    stats = Traffic()
    while sim.model_calls < n_calls:
        clock.at_progress(sim.model_calls / n_calls)
        feature = rng.choices(features, weights=weights)[0]
        stats.requests += 1
        stats.by_feature[feature] = stats.by_feature.get(feature, 0) + 1
        try:
            _run_request(pipelines, feature, rng, clock)
        except Exception:  # the demo's simulated failures: the spans record them
            # provider errors, tool errors, malformed output: the spans record them
            stats.failed_requests += 1
        if progress is not None:
            progress(sim.model_calls)
    stats.model_calls = sim.model_calls
    return stats
