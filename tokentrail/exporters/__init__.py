"""Spans -> ClickHouse, losing nothing silently.

processor.py   LedgerSpanProcessor: batches finished spans for one export thread; when that
               thread falls behind, the thread ending a span spills the oldest batch to the spool
clickhouse.py  ClickHouseSpanExporter: server inserts within a deadline, the spool otherwise, a
               breaker, the automatic drain of the spool once the server answers
rows.py        span -> `tokentrail.spans` row (JSONEachRow); every row is one the store accepts
losses.py      what could be neither stored nor spooled: counted, logged, recorded in lost_spans
"""
