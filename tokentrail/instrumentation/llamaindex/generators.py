"""Lazy generators: a streaming query returns a generator whose body calls the LLM only when
the caller iterates it, after the query span ended and outside any LlamaIndex span. The span
handler remembers such generators' frames (this mixin) so that a model span starting there
continues the query's trace instead of starting one of its own."""

from __future__ import annotations

import sys
import weakref
from types import AsyncGeneratorType, FrameType, GeneratorType
from typing import Any

from .runs import Span, SpanBook

__all__ = ["GeneratorSpans"]

_GEN_ATTRS = ("response_gen", "async_response_gen", "achat_stream", "chat_stream")
_gen_attr_by_type: dict[type, str | None] = {}


def _gen_attr_of(t: type) -> str | None:
    """The field of a result type that holds a lazy generator (StreamingResponse.response_gen,
    StreamingAgentChatResponse.chat_stream...), looked up once per type."""
    try:
        return _gen_attr_by_type[t]
    except KeyError:
        pass
    fields = {
        *getattr(t, "__dataclass_fields__", {}),
        *(getattr(t, "model_fields", None) or {}),
    }
    found = next((a for a in _GEN_ATTRS if a in fields), None)
    if len(_gen_attr_by_type) < 4096:
        _gen_attr_by_type[t] = found
    return found


class GeneratorSpans(SpanBook):
    """Remembers the frames of generators returned by spans (see the module docstring)."""

    # A streaming query returns a generator (StreamingResponse.response_gen) whose body calls
    # the LLM only when the caller iterates it, after the query span ended and outside any
    # LlamaIndex span: the model span would start a trace of its own. The frame of a generator
    # returned by a span is remembered; a span that starts with no parent looks up the stack
    # for such a frame and continues that span's trace. Only done while such generators live.
    def _maybe_remember_generator(self, owner: Span, result: Any) -> None:
        t = type(result)
        if t is GeneratorType or t is AsyncGeneratorType:
            gen = result
        else:
            attr = _gen_attr_of(t)
            if attr is None:
                return
            gen = getattr(result, attr, None)
            if type(gen) is not GeneratorType and type(gen) is not AsyncGeneratorType:
                return
        with self.errors.guard("remember_generator"):
            frame = gen.gi_frame if type(gen) is GeneratorType else gen.ag_frame
            if frame is None:
                return
            key = id(frame)
            known = self.gen_frames.get(key)
            if known is not None and known[0]() is gen:
                return  # passed up through enclosing spans: the innermost one owns it
            ref = weakref.ref(gen)
            self.gen_frames[key] = (ref, owner)
            weakref.finalize(gen, self._forget_generator, key, ref)

    def _forget_generator(self, key: int, ref: Any) -> None:
        known = self.gen_frames.get(key)
        if known is not None and known[0] is ref:
            self.gen_frames.pop(key, None)

    def _continuation(self) -> Span | None:
        frames = self.gen_frames
        f: FrameType | None = sys._getframe(3)
        for _ in range(64):
            if f is None:
                return None
            found = frames.get(id(f))
            if found is not None:
                gen = found[0]()
                if gen is not None and (getattr(gen, "gi_frame", None) is f or getattr(gen, "ag_frame", None) is f):
                    return found[1]
            f = f.f_back
        return None
