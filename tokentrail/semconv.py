"""Span attribute names: OTel GenAI semantic conventions, plus tokentrail's own for cost and attribution."""

from __future__ import annotations

# OpenTelemetry GenAI semantic conventions
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS = "gen_ai.usage.cache_write.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
GEN_AI_DATA_SOURCE_ID = "gen_ai.data_source.id"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
ERROR_TYPE = "error.type"
USER_ID = "user.id"
SESSION_ID = "session.id"

# gen_ai.operation.name values
OP_CHAT = "chat"
OP_TEXT_COMPLETION = "text_completion"
OP_EMBEDDINGS = "embeddings"
OP_RETRIEVAL = "retrieval"
OP_EXECUTE_TOOL = "execute_tool"
OP_INVOKE_AGENT = "invoke_agent"
OP_INVOKE_WORKFLOW = "invoke_workflow"
OP_CHAIN = "chain"  # not in the conventions: a framework step that is none of the above

# tokentrail's own (cost has no semantic convention)
COST_USD = "tokentrail.cost.usd"
COST_INPUT_USD = "tokentrail.cost.input_usd"
COST_OUTPUT_USD = "tokentrail.cost.output_usd"
COST_STATUS = "tokentrail.cost.status"
USAGE_ESTIMATED = "tokentrail.usage.estimated"
# usage values dropped as no counts, each "key=raw value" (negative, non-finite, text, absurd...)
USAGE_INVALID = "tokentrail.usage.invalid"
COST_INVALID = "tokentrail.cost.invalid"  # a cost the store cannot hold (its raw value): stored as NULL
CACHE_HIT = "tokentrail.cache_hit"
FRAMEWORK = "tokentrail.framework"
TIME_TO_FIRST_TOKEN_MS = "tokentrail.time_to_first_token_ms"
TEAM = "tokentrail.team"
FEATURE = "tokentrail.feature"
PROJECT = "tokentrail.project"
ENVIRONMENT = "tokentrail.environment"
TAGS = "tokentrail.tags"

# tokentrail.cost.status values
COST_PRICED = "priced"
COST_OVERRIDE = "override"
COST_UNPRICED = "unpriced"
COST_NO_USAGE = "no_usage"
ABANDONED = "tokentrail.abandoned"  # a stream the caller stopped reading
CACHE_HIT_SAVED_USD = "tokentrail.cache_hit.saved_usd"
RETRIES = "tokentrail.retries"
RETRIEVAL_DOCUMENTS = "tokentrail.retrieval.documents"
INCOMPLETE = "tokentrail.incomplete"  # a span ended by the safety net, not by the framework

# fees and the price used (issue 14)
USAGE_CACHE_WRITE_1H_TOKENS = "tokentrail.usage.cache_write_1h_tokens"
USAGE_WEB_SEARCH_REQUESTS = "tokentrail.usage.web_search_requests"
SERVICE_TIER = "tokentrail.service_tier"  # as the response reports it: flex, priority, batch
COST_FEES_USD = "tokentrail.cost.fees_usd"  # per-request and per-search fees, part of cost.usd
PRICE_ID = "tokentrail.price.id"  # the row of tokentrail.prices that priced the call
PRICE_VERSION = "tokentrail.price.version"  # e.g. "genai-prices 0.2.3"

# cost as other backends read it (issue 13, interop/genai_cost.py): a float copy of cost.usd
GEN_AI_USAGE_COST = "gen_ai.usage.cost"  # OpenLIT, LiteLLM emit it; Langfuse, Opik, Laminar read it
GEN_AI_USAGE_COST_AMOUNT = "gen_ai.usage.cost.amount"  # semantic-conventions-genai PR #443 (draft)
GEN_AI_USAGE_COST_CURRENCY = "gen_ai.usage.cost.currency"
GEN_AI_USAGE_COST_SOURCE = "gen_ai.usage.cost.source"
# not stored as extra attributes: the row already has cost_usd, exact
GEN_AI_USAGE_COST_DERIVED = frozenset({GEN_AI_USAGE_COST, GEN_AI_USAGE_COST_AMOUNT, GEN_AI_USAGE_COST_CURRENCY, GEN_AI_USAGE_COST_SOURCE})
# tool calls (OTel GenAI), recorded only with capture_content=True
GEN_AI_TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT = "gen_ai.tool.call.result"
