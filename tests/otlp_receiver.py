"""A loopback OTLP/HTTP receiver: decodes each POST /v1/traces with opentelemetry-proto."""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


class OtlpReceiver:
    """`spans`: every span received, as dicts (name, trace_id, span_id, attributes, resource)."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
                    ExportTraceServiceRequest,
                    ExportTraceServiceResponse,
                )

                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                req = ExportTraceServiceRequest()
                req.ParseFromString(body)
                receiver.paths.append(self.path)
                receiver.headers.append(dict(self.headers))
                for rs in req.resource_spans:
                    resource = {a.key: _value(a.value) for a in rs.resource.attributes}
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            receiver.spans.append(
                                {
                                    "name": s.name,
                                    "trace_id": s.trace_id.hex(),
                                    "span_id": s.span_id.hex(),
                                    "parent_span_id": s.parent_span_id.hex(),
                                    "scope": ss.scope.name,
                                    "attributes": {a.key: _value(a.value) for a in s.attributes},
                                    "resource": resource,
                                }
                            )
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def langfuse_usage(attrs: dict[str, Any]) -> dict[str, float]:
    """Usage details as Langfuse's OTLP ingestion reads them (OtelIngestionProcessor
    extractUsageDetails, generic path): every `gen_ai.usage.*` key but `gen_ai.usage.cost`
    and every `llm.token_count.*` key, the prefix stripped, input/output names mapped."""
    mapping = {"prompt_tokens": "input", "completion_tokens": "output", "total_tokens": "total",
               "input_tokens": "input", "output_tokens": "output", "prompt": "input", "completion": "output"}
    out: dict[str, float] = {}
    for key, value in attrs.items():
        if (key.startswith("gen_ai.usage.") and key != "gen_ai.usage.cost") or key.startswith("llm.token_count"):
            k = key.replace("gen_ai.usage.", "").replace("llm.token_count.", "")
            try:
                out[mapping.get(k, k)] = float(value)
            except (TypeError, ValueError):
                pass
    return out


def langfuse_cost(attrs: dict[str, Any]) -> dict[str, Any]:
    """Cost details as Langfuse reads them (extractCostDetails): {"total": gen_ai.usage.cost}."""
    return {"total": attrs["gen_ai.usage.cost"]} if attrs.get("gen_ai.usage.cost") else {}
