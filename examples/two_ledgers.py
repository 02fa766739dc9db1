"""Two ledgers: what calls were charged (frozen) and what the same usage costs at other prices.

Records four o3 calls on 2025-06-01, when o3 cost $10 / $40 per million tokens, then on
2025-07-01 (after its cut to $2 / $8) asks `tokentrail reprice` what that usage costs at
today's prices and at a price you consider (a prices file). The as-charged cost never changes.
Runs offline; the calendar is pinned so the dollars below are exact.

    python examples/two_ledgers.py
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

import tokentrail
from tokentrail import clock
from tokentrail.cli import main as tokentrail_cli
from tokentrail.store import open_store
from tokentrail.testing import FixedClock


class FakeO3(BaseChatModel):
    """Offline stand-in for ChatOpenAI(model="o3"): 1,000 tokens in, 100 out."""

    @property
    def _llm_type(self) -> str:
        return "fake-openai"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        return {"ls_provider": "openai", "ls_model_name": "o3", "ls_model_type": "chat"}

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        usage = {"input_tokens": 1000, "output_tokens": 100, "total_tokens": 1100}
        msg = AIMessage(content="ok", usage_metadata=usage, response_metadata={"model_name": "o3"})  # type: ignore[arg-type]
        return ChatResult(generations=[ChatGeneration(message=msg)])


def reprice(*flags: str) -> dict[str, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert tokentrail_cli(["reprice", "--since", "2025-05-01", "--format", "json", *flags]) == 0
    return json.loads(out.getvalue())


def main() -> None:
    home = os.environ.get("LEDGERS_HOME") or tempfile.mkdtemp(prefix="tokentrail-ledgers-")
    os.environ["TOKENTRAIL_HOME"] = home  # the CLI below reads the same store
    fixed = FixedClock(datetime(2025, 6, 1, 9, tzinfo=timezone.utc))
    clock.set_source(fixed)
    tokentrail.configure(project="ledgers")
    model = FakeO3()
    for user in ("alice", "alice", "alice", "bob"):
        model.invoke("hi", config={"callbacks": [tokentrail.langchain_handler(user_id=user, feature="qa")]})
    tokentrail.shutdown()

    fixed.set(datetime(2025, 7, 1, 9, tzinfo=timezone.utc))
    with open_store(tokentrail.config.resolve()) as store:
        for price_id, charged in store.rows("SELECT price_id, sum(cost_usd) FROM tokentrail.spans WHERE operation = 'chat' GROUP BY price_id"):
            print(f"as charged: ${charged} (price {price_id})")
    today = reprice("--by", "user")  # at today's prices (the installed genai-prices)
    for r in today["user"]:
        print(f"today's prices, {r['group']}: charged ${r['charged_usd']} re-priced ${r['repriced_usd']} ({r['difference_usd']})")
    proposal = Path(home) / "proposal.toml"
    proposal.write_text('[prices."o3"]\ninput_per_mtok = 1\noutput_per_mtok = 4\n')
    (row,) = reprice("--by", "model", "--prices", str(proposal))["model"]
    print(f"at $1 / $4: {row['group']} re-priced ${row['repriced_usd']} ({row['difference_usd']})")
    with contextlib.redirect_stdout(io.StringIO()):
        assert tokentrail_cli(["prices", "sync"]) == 0  # (re)makes the view spans_repriced, for SQL
    with open_store(tokentrail.config.resolve()) as store:
        (total,) = store.rows("SELECT sum(cost_usd), sum(repriced_cost_usd) FROM tokentrail.spans_repriced")
        print(f"spans_repriced: charged ${total[0]}, at today's prices ${total[1]}")


if __name__ == "__main__":
    main()
