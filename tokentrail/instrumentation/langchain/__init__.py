"""LangChain instrumentation: a callback handler (per call or global) and embedding wrappers.

    handler = tokentrail.langchain_handler(user_id="alice")
    chain.invoke(x, config={"callbacks": [handler]})

    with tokentrail.instrument_langchain():
        chain.invoke(x)
"""

from __future__ import annotations

from ..._internal import optional

with optional("tokentrail's LangChain instrumentation"):
    from .handler import TokentrailCallbackHandler, langchain_handler
    from .instrument import LangChainInstrumentation, instrument_langchain, is_instrumented

__all__ = [
    "LangChainInstrumentation",
    "TokentrailCallbackHandler",
    "instrument_langchain",
    "is_instrumented",
    "langchain_handler",
]
