"""Which provider served a call: the OTel ``gen_ai.provider.name`` value, and its genai-prices id.

Evidence, strongest first: LangChain's ``ls_provider`` (the integration says who it talks to),
the model class name (ChatAnthropic, llama-index's ``Anthropic``...), then the model name
(``claude-*``...). Unknown evidence falls through to the next; nothing known gives "unknown".
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["UNKNOWN", "genai_prices_provider_id", "infer_provider"]

UNKNOWN = "unknown"

# LangChain ls_provider values (and litellm-style "provider/model" prefixes) -> OTel name.
# Unlisted values (e.g. "fake", "genericfakechatmodel") fall through to the other evidence.
_LS_PROVIDERS: dict[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google_genai": "gcp.gemini",
    "google_generativeai": "gcp.gemini",
    "googlegenerativeai": "gcp.gemini",
    "gemini": "gcp.gemini",
    "google": "gcp.gemini",
    "google_vertexai": "gcp.vertex_ai",
    "google_anthropic_vertex": "gcp.vertex_ai",
    "vertexai": "gcp.vertex_ai",
    "vertex_ai": "gcp.vertex_ai",
    "amazon_bedrock": "aws.bedrock",
    "bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "aws": "aws.bedrock",
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "mistral": "mistral_ai",
    "mistralai": "mistral_ai",
    "mistral_ai": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "x_ai": "x_ai",
    "x-ai": "x_ai",
    "cohere": "cohere",
    "ollama": "ollama",
    "perplexity": "perplexity",
    "ibm": "ibm.watsonx.ai",
    "watsonx": "ibm.watsonx.ai",
    "ibm_watsonx": "ibm.watsonx.ai",
    # not in the OTel list, but real providers genai-prices knows: kept as custom values
    "fireworks": "fireworks",
    "together": "together",
    "openrouter": "openrouter",
    "cerebras": "cerebras",
}

# Model class names, normalised by _class_key (lowercase, "chat"/"llm"/"embeddings" dropped).
_CLASSES: dict[str, str] = {
    "openai": "openai",  # ChatOpenAI, OpenAIEmbeddings, llama-index OpenAI / OpenAIEmbedding
    "openairesponses": "openai",
    "azureopenai": "azure.ai.openai",  # AzureChatOpenAI, AzureOpenAIEmbeddings, llama-index AzureOpenAI
    "azureaicompletions": "azure.ai.inference",  # AzureAIChatCompletionsModel
    "azureaiinference": "azure.ai.inference",
    "anthropic": "anthropic",  # ChatAnthropic, llama-index Anthropic
    "anthropicvertex": "gcp.vertex_ai",  # ChatAnthropicVertex
    "googlegenerativeai": "gcp.gemini",  # ChatGoogleGenerativeAI, GoogleGenerativeAIEmbeddings
    "googlegenai": "gcp.gemini",  # llama-index GoogleGenAI
    "gemini": "gcp.gemini",
    "vertexai": "gcp.vertex_ai",  # ChatVertexAI, VertexAIEmbeddings
    "vertex": "gcp.vertex_ai",  # llama-index Vertex
    "bedrock": "aws.bedrock",  # ChatBedrock, BedrockLLM, BedrockEmbeddings
    "bedrockconverse": "aws.bedrock",
    "mistralai": "mistral_ai",
    "groq": "groq",
    "ollama": "ollama",  # ChatOllama, OllamaLLM, OllamaEmbeddings, llama-index Ollama
    "deepseek": "deepseek",
    "xai": "x_ai",
    "cohere": "cohere",
    "perplexity": "perplexity",
    "watsonx": "ibm.watsonx.ai",
    "fireworks": "fireworks",
    "together": "together",
    "openrouter": "openrouter",
    "cerebras": "cerebras",
}

# Model-name patterns, tried in order on the lowercased name.
_MODEL_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), name)
    for p, name in (
        # Bedrock model ids: [region.]vendor.model-vN:M
        (r"^(?:(?:us|eu|apac|global|us-gov|jp|au|ca)\.)?(?:anthropic|amazon|meta|cohere|mistral|ai21|deepseek|openai|qwen|writer|twelvelabs)\.", "aws.bedrock"),
        (r"^(?:ft:)?(?:gpt-|chatgpt-|o\d(?:-|$)|text-embedding-(?:ada|3)|davinci|babbage|dall-e|whisper-|tts-|omni-moderation|codex-|computer-use)", "openai"),
        (r"^claude-", "anthropic"),
        (r"^(?:models/)?(?:gemini-|text-embedding-00|embedding-00|gemini-embedding)", "gcp.gemini"),
        (r"^(?:mistral-|mixtral|codestral|ministral|pixtral|magistral|devstral|open-mistral|open-mixtral|voxtral)", "mistral_ai"),
        (r"^deepseek-", "deepseek"),
        (r"^grok-", "x_ai"),
        (r"^(?:command-|command$|embed-english|embed-multilingual|rerank-)", "cohere"),
        (r"^sonar", "perplexity"),
        (r"^ibm/granite", "ibm.watsonx.ai"),
    )
)

# OTel provider name -> genai-prices provider id (ids checked against genai_prices.data).
# Ollama and watsonx have no list price there: self-hosted / contract pricing needs an override.
_GENAI_PRICES_IDS: dict[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "aws.bedrock": "aws",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "mistral_ai": "mistral",
    "groq": "groq",
    "deepseek": "deepseek",
    "x_ai": "x-ai",
    "cohere": "cohere",
    "perplexity": "perplexity",
    "fireworks": "fireworks",
    "together": "together",
    "openrouter": "openrouter",
    "cerebras": "cerebras",
}

_CLASS_DROP = re.compile(r"chat|llm$|embeddings?$|model$")


def _class_key(class_name: str) -> str:
    key = class_name.lower().rsplit(".", 1)[-1]
    return _CLASS_DROP.sub("", key)


@lru_cache(maxsize=1024)
def _from_model_name(model: str) -> str:
    name = model.strip().lower()
    if "/" in name:
        # "openai/gpt-4o" (litellm / openrouter style) names its provider; "models/gemini-x"
        # and "meta-llama/Llama-3" do not, so an unknown prefix defers to the rest of the name
        prefix, rest = name.split("/", 1)
        provider = _LS_PROVIDERS.get(prefix)
        if provider is not None:
            return provider
        if prefix != "models":
            name = rest
    for pattern, provider in _MODEL_PATTERNS:
        if pattern.search(name):
            return provider
    return UNKNOWN


@lru_cache(maxsize=1024)
def infer_provider(
    model: str | None,
    *,
    class_name: str | None = None,
    ls_provider: str | None = None,
) -> str:
    """The OTel ``gen_ai.provider.name`` for a call: openai, anthropic, gcp.gemini,
    gcp.vertex_ai, aws.bedrock, azure.ai.openai, mistral_ai, groq, deepseek, x_ai, cohere,
    ollama, perplexity, ibm.watsonx.ai (and fireworks, together, openrouter, cerebras), or
    "unknown"."""
    if ls_provider:
        found = _LS_PROVIDERS.get(ls_provider.strip().lower())
        if found is not None:
            return found
    if class_name:
        found = _CLASSES.get(_class_key(class_name))
        if found is not None:
            return found
    if model:
        return _from_model_name(model)
    return UNKNOWN


@lru_cache(maxsize=256)
def genai_prices_provider_id(otel_name: str) -> str | None:
    """The genai-prices provider id for an OTel provider name; None when genai-prices has no
    such provider (ollama, ibm.watsonx.ai, unknown)."""
    if not otel_name:
        return None
    return _GENAI_PRICES_IDS.get(otel_name.strip().lower())
