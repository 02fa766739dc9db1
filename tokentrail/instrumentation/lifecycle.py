"""One model call, from start to end, the same for every integration (docs/architecture.md,
"The model-call lifecycle").

As in logfire's llm_providers package (one call lifecycle, thin per-provider adapters), the
LangChain and LlamaIndex integrations only turn their framework's events into these steps:

    call = ModelCall(rt, span, attribution, model, provider, start_ns)   # its span has started
    call.reserve(prompt_tokens, max_output_tokens)  # before the provider: may raise BudgetExceeded
    call.first_token()                              # every streamed token or chunk; the first counts
    call.usage_or_estimate(reported, estimate, error=...)   # what the call is billed for
    call.finish(usage, response_model=...)          # usage, cost, time to first token; settles
    call.release()                                  # no call happens after all (blocked batch,
                                                    # a wrapper whose inner call bills, shutdown)

The reservation rule: a reservation ends exactly once. It is settled with the call's cost when
the call has a usage, reported or estimated (priced; or unpriced, which adds nothing); it is
released when the call has none (cost status `no_usage`: the call failed before the provider
answered, a stream was never started, a wrapper's inner call carries the usage). Settling a
`no_usage` cost would add nothing either; releasing it says what happened, and fires no alert.

The usage rule: what the provider reported; else an estimate (tokens.py counts the prompt and
the text generated, the span is flagged `tokentrail.usage.estimated`). A failed call is billed
only if the provider started answering (a first token arrived, or the caller closed the stream
while reading it): an error before any token (HTTP 4xx/5xx) costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .. import semconv as sc
from .. import tokens
from ..context import Attribution
from ..pricing import Cost
from ..usage import Usage
from .common import record_usage
from .seams import Recorder
from .spans import set_trusted

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from ..budgets.manager import Reservation

__all__ = ["ModelCall", "estimate", "prompt_tokens"]


def when(start_ns: int) -> datetime:
    """The date a call is priced at: when it started."""
    return datetime.fromtimestamp(start_ns / 1e9, tz=timezone.utc)


def prompt_tokens(messages: Sequence[Any] | None, prompts: Sequence[str] | None, model: str | None, *, bound: bool = False) -> int:
    """The prompt's tokens (chat messages, else text prompts). bound=True (a reservation): an
    upper bound until the tokenizer has loaded, never a wait for it (see tokens.py)."""
    if messages:
        return tokens.count_messages(messages, model, bound=bound)
    return sum(tokens.count_tokens(p, model, bound=bound) for p in prompts or ())


def estimate(input_tokens: int, output_text: str, model: str | None) -> Usage:
    """Usage counted offline when the provider sent none (flagged `estimated`)."""
    return Usage(input_tokens=input_tokens, output_tokens=tokens.count_tokens(output_text, model), estimated=True)


class ModelCall:
    """One model (or embeddings) call of an integration: its span, budget reservation and
    first-token time, and the rules above."""

    __slots__ = ("attribution", "done", "first_token_ns", "model", "provider", "reservation", "rt", "span", "start_ns")

    def __init__(self, rt: Recorder, span: Span, attribution: Attribution, model: str | None, provider: str | None, start_ns: int) -> None:
        self.rt, self.span, self.attribution = rt, span, attribution
        self.model, self.provider, self.start_ns = model, provider, start_ns
        self.first_token_ns = 0
        self.reservation: Reservation | None = None
        self.done = False  # usage and cost recorded (once)

    # -- start -------------------------------------------------------------------------------
    def reserve(self, prompt_tokens: int, max_output_tokens: int | None) -> None:
        """Reserve the call's worst case in the budgets it falls under (once); raises
        BudgetExceeded, before the provider is called, when a blocking budget has no room."""
        budgets = self.rt.budgets
        if budgets is None or self.reservation is not None:
            return
        self.reservation = budgets.reserve(
            self.attribution,
            model=self.model,
            provider=self.provider,
            prompt_tokens=prompt_tokens,
            max_output_tokens=max_output_tokens,
        )

    def first_token(self) -> bool:
        """A token or chunk arrived; True for the first one (time to first token)."""
        if self.first_token_ns:
            return False
        self.first_token_ns = self.rt.clock()
        return True

    # -- end ---------------------------------------------------------------------------------
    def usage_or_estimate(
        self,
        reported: Usage | None,
        estimated: Callable[[], Usage] | None,
        *,
        error: BaseException | object | None = None,
        ran: bool = False,
    ) -> Usage | None:
        """What the call is billed for: the reported usage; else, unless it failed before the
        provider answered, `estimated()` (None: nothing to estimate from). `ran`: the call ran
        to an end the framework never reported (LangChain's end callback never came)."""
        if reported is not None:
            return reported
        if error is not None and not (self.first_token_ns or ran or isinstance(error, GeneratorExit)):
            return None
        return estimated() if estimated is not None else None

    def ttft_attributes(self) -> dict[str, Any]:
        if not self.first_token_ns:
            return {}
        return {sc.TIME_TO_FIRST_TOKEN_MS: (self.first_token_ns - self.start_ns) / 1e6}

    def finish(self, usage: Usage | None, *, response_model: str | None = None) -> Cost:
        """Record the call's usage and cost (status `no_usage` for None) and its time to first
        token on its span, and end its reservation by the rule. The adapters call it once a
        call (`done` says it was)."""
        if self.first_token_ns:  # (ttft_attributes, inlined: every model call ends here)
            set_trusted(self.span, {sc.TIME_TO_FIRST_TOKEN_MS: (self.first_token_ns - self.start_ns) / 1e6})
        self.done = True
        cost = record_usage(
            self.span,
            self.rt.prices,
            usage,
            model=self.model,
            provider=self.provider,
            when=datetime.fromtimestamp(self.start_ns / 1e9, tz=timezone.utc),
            response_model=response_model,
        )
        self.settle(cost)
        return cost

    def settle(self, cost: Cost) -> None:
        """End the reservation by the rule: settled with a cost that has a usage, released for
        `no_usage`."""
        reservation = self.reservation
        if reservation is None:  # no budgets, or none the call falls under
            return
        self.reservation = None
        budgets = self.rt.budgets
        if budgets is None:
            return
        if cost.status == sc.COST_NO_USAGE:  # nothing was billed: give the reservation back
            budgets.release(reservation)
        else:
            budgets.settle(reservation, cost)

    def release(self) -> None:
        """No call happens after all: give the reservation back."""
        reservation, self.reservation = self.reservation, None
        budgets = self.rt.budgets
        if reservation is not None and budgets is not None:
            budgets.release(reservation)
