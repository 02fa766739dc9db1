"""Provider inference: ls_provider, then class name, then model name."""

from __future__ import annotations

import pytest

from tokentrail.providers import genai_prices_provider_id, infer_provider


@pytest.mark.parametrize(
    ("ls_provider", "expected"),
    [
        ("openai", "openai"),
        ("anthropic", "anthropic"),
        ("google_genai", "gcp.gemini"),
        ("google_vertexai", "gcp.vertex_ai"),
        ("amazon_bedrock", "aws.bedrock"),
        ("bedrock", "aws.bedrock"),
        ("azure", "azure.ai.openai"),
        ("mistral", "mistral_ai"),
        ("groq", "groq"),
        ("ollama", "ollama"),
        ("deepseek", "deepseek"),
        ("xai", "x_ai"),
        ("cohere", "cohere"),
        ("perplexity", "perplexity"),
        ("ibm", "ibm.watsonx.ai"),
    ],
)
def test_ls_provider(ls_provider: str, expected: str) -> None:
    # ls_provider wins over a misleading model name
    assert infer_provider("some-model", ls_provider=ls_provider) == expected


@pytest.mark.parametrize(
    ("class_name", "expected"),
    [
        ("ChatOpenAI", "openai"),
        ("AzureChatOpenAI", "azure.ai.openai"),
        ("ChatAnthropic", "anthropic"),
        ("ChatGoogleGenerativeAI", "gcp.gemini"),
        ("ChatVertexAI", "gcp.vertex_ai"),
        ("ChatBedrock", "aws.bedrock"),
        ("ChatBedrockConverse", "aws.bedrock"),
        ("ChatMistralAI", "mistral_ai"),
        ("ChatGroq", "groq"),
        ("ChatOllama", "ollama"),
        ("OllamaLLM", "ollama"),
        ("OpenAI", "openai"),  # llama-index
        ("AzureOpenAI", "azure.ai.openai"),  # llama-index
        ("Anthropic", "anthropic"),  # llama-index
        ("OpenAIEmbeddings", "openai"),
        ("OpenAIEmbedding", "openai"),
        ("ChatDeepSeek", "deepseek"),
        ("ChatXAI", "x_ai"),
        ("ChatWatsonx", "ibm.watsonx.ai"),
    ],
)
def test_class_name(class_name: str, expected: str) -> None:
    assert infer_provider(None, class_name=class_name) == expected


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o-mini", "openai"),
        ("gpt-4o-2024-08-06", "openai"),
        ("o1", "openai"),
        ("o3-mini", "openai"),
        ("o4-mini-2025-04-16", "openai"),
        ("ft:gpt-4o-mini-2024-07-18:acme::abc123", "openai"),
        ("text-embedding-3-small", "openai"),
        ("claude-3-5-sonnet-20241022", "anthropic"),
        ("claude-sonnet-4-5", "anthropic"),
        ("gemini-2.5-pro", "gcp.gemini"),
        ("models/gemini-1.5-flash", "gcp.gemini"),
        ("mistral-large-latest", "mistral_ai"),
        ("mixtral-8x7b-32768", "mistral_ai"),
        ("deepseek-chat", "deepseek"),
        ("grok-3", "x_ai"),
        ("command-r-plus", "cohere"),
        ("sonar-pro", "perplexity"),
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", "aws.bedrock"),
        ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", "aws.bedrock"),
        ("amazon.nova-pro-v1:0", "aws.bedrock"),
        ("openai/gpt-4o", "openai"),
        ("llama3.1:8b", "unknown"),
        ("meta-llama/Llama-3.3-70B-Instruct", "unknown"),
        ("my-finetune", "unknown"),
    ],
)
def test_model_name(model: str, expected: str) -> None:
    assert infer_provider(model) == expected


def test_order_and_fallthrough() -> None:
    # a fake model reporting a gpt name: the fake ls_provider and class say nothing
    assert infer_provider("gpt-4o-mini", class_name="GenericFakeChatModel", ls_provider="genericfakechatmodel") == "openai"
    # class beats model name; ls_provider beats class
    assert infer_provider("gpt-4o", class_name="ChatOllama") == "ollama"
    assert infer_provider("gpt-4o", class_name="AzureChatOpenAI", ls_provider="openai") == "openai"
    assert infer_provider(None) == "unknown"
    assert infer_provider("") == "unknown"


def test_genai_prices_ids_exist_in_the_installed_data() -> None:
    from genai_prices.data import providers

    ids = {p.id for p in providers}
    for otel, expected in [
        ("openai", "openai"),
        ("anthropic", "anthropic"),
        ("gcp.gemini", "google"),
        ("gcp.vertex_ai", "google"),
        ("aws.bedrock", "aws"),
        ("azure.ai.openai", "azure"),
        ("mistral_ai", "mistral"),
        ("groq", "groq"),
        ("deepseek", "deepseek"),
        ("x_ai", "x-ai"),
        ("cohere", "cohere"),
        ("perplexity", "perplexity"),
    ]:
        assert genai_prices_provider_id(otel) == expected
        assert expected in ids
    assert genai_prices_provider_id("ollama") is None
    assert genai_prices_provider_id("unknown") is None
    assert genai_prices_provider_id("") is None
