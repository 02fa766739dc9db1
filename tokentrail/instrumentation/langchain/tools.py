"""LangChain tool, retriever and retry callbacks -> spans (`execute_tool {name}`, `retrieval {name}`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
    def on_tool_start(self, serialized: dict[str, Any] | None, input_str: str, *, run_id: UUID, **kwargs: Any) -> None:
        inputs = kwargs.get("inputs")
        self._start_leaf(
            sc.OP_EXECUTE_TOOL, sc.GEN_AI_TOOL_NAME, "tool", serialized, run_id, kwargs,
            lambda: (sc.GEN_AI_TOOL_CALL_ARGUMENTS, extract.text_json(inputs if inputs is not None else input_str)),
        )  # fmt: skip

    @_internal.swallow_errors
    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._take(run_id)
        if run is None:
            return
        if run.span is not None and run.rt.settings.capture_content:
            run.span.set_attribute(sc.GEN_AI_TOOL_CALL_RESULT, extract.text_json(output))
        self._close(run)

    @_internal.swallow_errors
    def on_retriever_start(self, serialized: dict[str, Any] | None, query: str, *, run_id: UUID, **kwargs: Any) -> None:
        self._start_leaf(
            sc.OP_RETRIEVAL, sc.GEN_AI_DATA_SOURCE_ID, "retriever", serialized, run_id, kwargs,
            lambda: (sc.GEN_AI_INPUT_MESSAGES, extract.input_messages_json(None, [query])),
        )  # fmt: skip

    @_internal.swallow_errors
    def on_retriever_end(self, documents: Sequence[Any], *, run_id: UUID, **kwargs: Any) -> None:
        run = self._take(run_id)
        if run is None:
            return
        if run.span is not None:
            run.span.set_attribute(sc.RETRIEVAL_DOCUMENTS, len(documents))
        self._close(run)

    on_tool_error = RunBook._end_with_error
    on_retriever_error = RunBook._end_with_error

    def _start_leaf(
        self,
        operation: str,
        name_key: str,
        fallback: str,
        serialized: Mapping[str, Any] | None,
        run_id: UUID,
        kwargs: Mapping[str, Any],
        content: Callable[[], tuple[str, str]],
    ) -> None:
        """A tool or retriever run: `{operation} {name}`, its name under name_key, its input
        (content(): key and JSON) only with capture_content."""
        opened = self._open(run_id, kwargs.get("parent_run_id"), kwargs.get("tags"), kwargs.get("metadata"))
        if opened is None:
            return
        run, parent_ctx = opened
        name = kwargs.get("name") or extract.serialized_name(serialized) or fallback
        extra: dict[str, Any] = {name_key: name}
        if run.rt.settings.capture_content:
            key, text = content()
            extra[key] = text
        self._start_span(run, parent_ctx, common.span_name(operation, name), operation, SpanKind.INTERNAL, extra)
        self._activate(run, parent_ctx)

    @_internal.swallow_errors
    def on_retry(self, retry_state: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.get(run_id.int)
        if run is not None and run.span is not None:
            run.retries += 1
            attempt = getattr(retry_state, "attempt_number", run.retries)
            run.span.add_event("retry", {"attempt": int(attempt)})

