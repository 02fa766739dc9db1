"""LangChain tool, retriever and retry callbacks -> spans (`execute_tool {name}`, `retrieval {name}`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from opentelemetry.trace import SpanKind

from ... import _internal
from ... import semconv as sc
from .. import common
from . import extract
from .runs import RunBook

__all__ = ["ToolCallbacks"]


class ToolCallbacks(RunBook):
    """on_tool_* / on_retriever_* / on_retry."""

    @_internal.swallow_errors
    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        opened = self._open(run_id, parent_run_id, tags, metadata)
        if opened is None:
            return
        run, parent_ctx = opened
        name = kwargs.get("name") or extract.serialized_name(serialized) or "tool"
        extra: dict[str, Any] = {sc.GEN_AI_TOOL_NAME: name}
        if run.rt.settings.capture_content:
            extra[sc.GEN_AI_TOOL_CALL_ARGUMENTS] = extract.text_json(inputs if inputs is not None else input_str)
        self._start_span(run, parent_ctx, common.span_name(sc.OP_EXECUTE_TOOL, name), sc.OP_EXECUTE_TOOL, SpanKind.INTERNAL, extra)
        self._activate(run, parent_ctx)

    @_internal.swallow_errors
    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._take(run_id)
        if run is None:
            return
        if run.span is not None and run.rt.settings.capture_content:
            run.span.set_attribute(sc.GEN_AI_TOOL_CALL_RESULT, extract.text_json(output))
        self._close(run)

    @_internal.swallow_errors
    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._take(run_id)
        if run is not None:
            self._close(run, error)

    @_internal.swallow_errors
    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        opened = self._open(run_id, parent_run_id, tags, metadata)
        if opened is None:
            return
        run, parent_ctx = opened
        name = kwargs.get("name") or extract.serialized_name(serialized) or "retriever"
        extra: dict[str, Any] = {sc.GEN_AI_DATA_SOURCE_ID: name}
        if run.rt.settings.capture_content:
            extra[sc.GEN_AI_INPUT_MESSAGES] = extract.input_messages_json(None, [query])
        self._start_span(run, parent_ctx, common.span_name(sc.OP_RETRIEVAL, name), sc.OP_RETRIEVAL, SpanKind.INTERNAL, extra)
        self._activate(run, parent_ctx)

    @_internal.swallow_errors
    def on_retriever_end(self, documents: Sequence[Any], *, run_id: UUID, **kwargs: Any) -> None:
        run = self._take(run_id)
        if run is None:
            return
        if run.span is not None:
            run.span.set_attribute(sc.RETRIEVAL_DOCUMENTS, len(documents))
        self._close(run)

    @_internal.swallow_errors
    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._take(run_id)
        if run is not None:
            self._close(run, error)

    @_internal.swallow_errors
    def on_retry(self, retry_state: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.get(run_id.int)
        if run is not None and run.span is not None:
            run.retries += 1
            attempt = getattr(retry_state, "attempt_number", run.retries)
            run.span.add_event("retry", {"attempt": int(attempt)})

    # -- model calls -----------------------------------------------------------------------
