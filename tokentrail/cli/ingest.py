"""`tokentrail ingest`: drain the spool into the store now."""

from __future__ import annotations

import argparse

from rich.console import Console

from . import common
from .common import EXIT_OK

RETRY_HINT = "fix or delete it (the store's error is beside it in <file>.error.txt), then `tokentrail ingest --retry-rejected`"


def run(args: argparse.Namespace, console: Console) -> int:
    from ..queries.activity import row_counts
    from ..store import spool

    settings = common.settings(args)
    requeued = spool.requeue_rejected(settings.spool_dir) if args.retry_rejected else 0
    with common.open_store(settings, ingest=False) as store:
        before = row_counts(store)
        done = store.ingest()
        after = row_counts(store)
    added = {t: after[t] - before.get(t, 0) for t in after}
    if requeued:
        console.print(f"retried {requeued} set-aside file{'s' if requeued != 1 else ''}")
    if done.batches == 0 and not done.set_aside:
        console.print(f"spool empty ({settings.spool_dir}); nothing to ingest")
    elif done.batches:
        console.print(
            f"ingested {done.batches} batch{'es' if done.batches != 1 else ''} into {settings.public_store}: "
            f"{added.get('spans', 0):,} spans, {added.get('budget_events', 0):,} budget events"
            + (f", {added['lost_spans']:,} lost-spans records" if added.get("lost_spans") else "")
        )
    for path, why in done.set_aside:
        console.print(f"set aside {path} (the store refused it: {why[:200]})", style="yellow")
    if done.set_aside:
        console.print(f"{len(done.set_aside)} file(s) set aside, the others ingested; {RETRY_HINT}", style="yellow")
    return EXIT_OK
