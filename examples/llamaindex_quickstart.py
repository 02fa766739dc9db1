"""tokentrail with LlamaIndex: instrument once, attribute with `tokentrail.attributes()`.

Runs offline with LlamaIndex's MockLLM and MockEmbedding. They report no usage, so tokentrail
counts tokens itself (usage_estimated = true). The LLM, named like a self-hosted model, is priced
by an override; the mock embedding has no price at all, so its cost stays NULL ('unpriced'), never $0.

    python examples/llamaindex_quickstart.py
"""

from __future__ import annotations

import tempfile

from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import LLMMetadata, MockLLM

import tokentrail
from tokentrail.store import open_store


class AcmeLLM(MockLLM):
    """MockLLM under the name of a self-hosted model."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="acme-llm-7b", num_output=self.max_tokens or 256)


def main() -> None:
    home = tempfile.mkdtemp(prefix="tokentrail-llamaindex-")
    tokentrail.configure(
        home=home,  # omit for ~/.tokentrail
        project="docs-bot",
        # a price for a model genai-prices does not know: USD per million tokens
        prices={"acme-llm-7b": {"input_per_mtok": "0.50", "output_per_mtok": "1.50"}},
    )
    tokentrail.instrument_llamaindex()

    Settings.llm = AcmeLLM(max_tokens=64)
    Settings.embed_model = MockEmbedding(embed_dim=8)
    index = VectorStoreIndex.from_documents(
        [Document(text="tokentrail records what LLM calls cost."), Document(text="Budgets block before spending.")]
    )
    engine = index.as_query_engine()
    with tokentrail.attributes(user_id="carol", team="docs", feature="search"):
        engine.query("What does tokentrail record?")

    tokentrail.flush()
    with open_store(tokentrail.get().settings) as store:
        for name, parent, tokens_in, tokens_out, cost, status in store.rows(
            "SELECT name, parent_span_id != '', input_tokens, output_tokens, cost_usd, cost_status "
            "FROM tokentrail.spans WHERE user_id = 'carol' ORDER BY timestamp"
        ):
            print(f"{name:<40} child={parent!s:<5} in={tokens_in:<4} out={tokens_out:<4} cost={cost} ({status})")
    tokentrail.shutdown()


if __name__ == "__main__":
    main()
