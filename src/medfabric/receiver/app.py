"""The receiver's HTTP service (``medfabric receiver serve``).

Endpoints (JSON unless stated):

- ``POST /v1/batches`` — a gateway (its manifest signature authenticates it); body: one batch
  frame; 200 landed, 4xx rejected with ``{"code", "detail"}``;
- ``GET /v1/downlink/{hospital}`` — that hospital's gateway (signed request): pending messages;
- ``POST /v1/downlink/{hospital}/ack`` — that hospital's gateway (signed): ``{"ids": [...]}``;
- ``POST /v1/downlink/{hospital}`` — an operator holding the region's signing key:
  ``{"message", "signature"}`` (base64), queued;
- ``GET /v1/status`` — batches, rejections, lag per source table;
- ``GET /healthz``, ``/readyz``, ``/metrics`` — probes and Prometheus text.

Errors share one envelope: ``{"code": "...", "detail": "...", "request_id": "..."}``. The
receiver is its own process next to the platform API (issue 7 builds ``api/``); it turns its
own intake errors into responses because it must answer gateways even when the API is down.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from medfabric.crypto import VerifyKey
from medfabric.ledger.client import LedgerClient
from medfabric.receiver.intake import Intake, Rejection
from medfabric.receiver.notarization import (
    NotarizationError,
    audit,
    audit_json,
    notarization_summary,
    verdict_json,
    verify_row,
)
from medfabric.records.messages import (
    MAX_DOWNLINK_BODY,
    MessageError,
    RequestAuth,
    verify_downlink,
)


def _error(status: int, code: str, detail: str, request_id: str, **extra: Any) -> JSONResponse:
    return JSONResponse(
        {"code": code, "detail": detail, "request_id": request_id, **extra}, status_code=status
    )


class _Metrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counters: dict[str, float] = {}

    def inc(self, name: str, value: float = 1.0) -> None:
        with self.lock:
            self.counters[name] = self.counters.get(name, 0.0) + value

    def render(self) -> str:
        with self.lock:
            items = sorted(self.counters.items())
        return "".join(f"{k} {v:g}\n" for k, v in items)


class _Nonces:
    """Nonces seen within the clock-skew window (a signed request is accepted once)."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.seen: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()

    def fresh(self, hospital: str, nonce: str) -> bool:
        now = time.time()
        with self.lock:
            if len(self.seen) > 10_000:
                self.seen = {k: t for k, t in self.seen.items() if t > now - 2 * self.window}
            if (hospital, nonce) in self.seen:
                return False
            self.seen[(hospital, nonce)] = now
            return True


def create_app(
    intake: Intake,
    *,
    region_verify_key: VerifyKey | None,
    clock_skew: int = 300,
    ledger: LedgerClient | None = None,
) -> FastAPI:
    """The receiver application over one intake (and its ODS store); with ``ledger``, it also
    answers record verifications and audits against the ledger (``notarization.py``)."""
    app = FastAPI(title="medfabric receiver", version="1")
    metrics = _Metrics()
    nonces = _Nonces(clock_skew)
    store = intake.store

    @app.middleware("http")
    async def request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        rid = request.headers.get("X-Request-Id") or uuid.uuid4().hex[:16]
        request.state.request_id = rid
        response = await call_next(request)
        response.headers["X-Request-Id"] = rid
        return response

    async def _authenticate(request: Request, hospital_id: str, body: bytes) -> None:
        auth = RequestAuth.from_headers(dict(request.headers))
        if auth.hospital_id != hospital_id:
            raise MessageError("forbidden", "a gateway may only use its own hospital's downlink")
        key = intake.registry.key_of(hospital_id)
        if key is None:
            raise MessageError("unknown-hospital", f"hospital {hospital_id} is not registered")
        auth.verify(
            key,
            method=request.method,
            path=request.url.path,
            body=body,
            now=datetime.now(UTC),
            skew_seconds=clock_skew,
        )
        if not nonces.fresh(hospital_id, auth.nonce):
            raise MessageError("replayed-request", "this signed request was already used")

    def _message_error(e: MessageError, rid: str) -> JSONResponse:
        status = {
            "unauthenticated": 401,
            "bad-signature": 401,
            "clock-skew": 401,
            "replayed-request": 409,
            "forbidden": 403,
            "unknown-hospital": 403,
        }.get(e.code, 400)
        metrics.inc(f'medfabric_receiver_request_rejections_total{{code="{e.code}"}}')
        return _error(status, e.code, str(e), rid)

    @app.post("/v1/batches")
    async def post_batch(request: Request) -> Response:
        rid = request.state.request_id
        remote = request.client.host if request.client else None
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > intake.max_body:
            rej = Rejection("too-large", 413, f"body of {declared} bytes over {intake.max_body}")
            store.record_rejection(
                batch_id=None, hospital_id=None, code=rej.code, detail=rej.detail, remote=remote
            )
            metrics.inc('medfabric_receiver_batches_rejected_total{code="too-large"}')
            return _error(413, rej.code, rej.detail, rid, batch_id=None)
        chunks: list[bytes] = []
        size = 0
        async for part in request.stream():
            size += len(part)
            if size > intake.max_body:
                rej = Rejection("too-large", 413, f"body over {intake.max_body} bytes")
                store.record_rejection(
                    batch_id=None, hospital_id=None, code=rej.code, detail=rej.detail,
                    remote=remote,
                )  # fmt: skip
                metrics.inc('medfabric_receiver_batches_rejected_total{code="too-large"}')
                return _error(413, rej.code, rej.detail, rid, batch_id=None)
            chunks.append(part)
        body = b"".join(chunks)
        started = time.perf_counter()
        try:
            result = await run_in_threadpool(intake.accept, body, remote=remote)
        except Rejection as r:
            metrics.inc(f'medfabric_receiver_batches_rejected_total{{code="{r.code}"}}')
            return _error(r.status, r.code, r.detail, rid, batch_id=r.batch_id)
        metrics.inc("medfabric_receiver_batches_landed_total")
        metrics.inc("medfabric_receiver_records_landed_total", result.landed)
        metrics.inc("medfabric_receiver_records_duplicate_total", result.skipped_duplicates)
        metrics.inc("medfabric_receiver_bytes_total", len(body))
        metrics.inc("medfabric_receiver_landing_seconds_total", time.perf_counter() - started)
        return JSONResponse(
            {
                "status": result.status,
                "batch_id": result.batch_id,
                "landed": result.landed,
                "skipped_duplicates": result.skipped_duplicates,
                "ods_table": result.ods_table,
                "request_id": rid,
            }
        )

    @app.get("/v1/downlink/{hospital_id}")
    async def get_downlink(hospital_id: str, request: Request) -> Response:
        rid = request.state.request_id
        try:
            await _authenticate(request, hospital_id, b"")
        except MessageError as e:
            return _message_error(e, rid)
        pending = await run_in_threadpool(store.pending_downlink, hospital_id)
        return JSONResponse(
            {
                "messages": [
                    {
                        "id": m.id,
                        "kind": m.kind,
                        **json.loads(m.body.decode("utf-8")),
                    }
                    for m in pending
                ]
            }
        )

    @app.post("/v1/downlink/{hospital_id}/ack")
    async def ack_downlink(hospital_id: str, request: Request) -> Response:
        rid = request.state.request_id
        body = await request.body()
        try:
            await _authenticate(request, hospital_id, body)
            ids = json.loads(body).get("ids", [])
            if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
                raise MessageError("bad-request", 'body must be {"ids": [integers]}')
        except MessageError as e:
            return _message_error(e, rid)
        except (json.JSONDecodeError, AttributeError):
            return _error(400, "bad-request", 'body must be {"ids": [integers]}', rid)
        try:
            n = await run_in_threadpool(store.ack_downlink, hospital_id, ids)
        except Exception as e:  # DownlinkError: another hospital's or unknown id
            return _error(403, "forbidden", str(e), rid)
        return JSONResponse({"acked": n})

    @app.post("/v1/downlink/{hospital_id}")
    async def publish_downlink(hospital_id: str, request: Request) -> Response:
        rid = request.state.request_id
        body = await request.body()
        if len(body) > 2 * MAX_DOWNLINK_BODY:
            return _error(413, "too-large", "downlink message too large", rid)
        if region_verify_key is None:
            return _error(503, "not-configured", "the region's signing key is not installed", rid)
        try:
            doc = json.loads(body)
            data = base64.b64decode(doc["message"], validate=True)
            sig = base64.b64decode(doc["signature"], validate=True)
            msg = verify_downlink(data, sig, region_verify_key)
        except MessageError as e:
            return _message_error(e, rid)
        except (ValueError, KeyError, TypeError):
            return _error(
                400, "bad-request", 'body must be {"message": b64, "signature": b64}', rid
            )
        if msg.hospital_id != hospital_id:
            return _error(400, "bad-request", "message is addressed to another hospital", rid)
        stored = json.dumps({"message": doc["message"], "signature": doc["signature"]}).encode()
        mid = await run_in_threadpool(store.enqueue_downlink, hospital_id, msg.kind, stored)
        metrics.inc("medfabric_receiver_downlink_published_total")
        return JSONResponse({"id": mid})

    @app.get("/v1/status")
    async def status() -> Response:
        def collect() -> dict[str, Any]:
            now = datetime.now(UTC)
            return {
                "as_of": now.isoformat(),
                "tables": [
                    {
                        "hospital_id": t.hospital_id,
                        "system": t.system,
                        "source_table": t.source_table,
                        "ods_table": t.ods_table,
                        "batches": t.batches,
                        "last_received_at": t.last_received_at.isoformat(),
                        "lag_seconds": round(t.lag.total_seconds(), 1),
                    }
                    for t in store.lag(now)
                ],
                "current_rows": store.counts_by_table(),
                "rejections": [
                    {
                        "batch_id": r.batch_id,
                        "hospital_id": r.hospital_id,
                        "code": r.code,
                        "detail": r.detail,
                        "received_at": r.received_at.isoformat(),
                    }
                    for r in store.rejections(20)
                ],
                "notarization": notarization_summary(store.engine),
            }

        return JSONResponse(await run_in_threadpool(collect))

    @app.get("/v1/records/{ods_table}/{local_key}/verify")
    async def verify_record(
        ods_table: str, local_key: str, request: Request, version: int | None = None
    ) -> Response:
        rid = request.state.request_id
        if ledger is None:
            return _error(409, "no-ledger", "no ledger is configured ([ledger] dir)", rid)
        try:
            verdict = await run_in_threadpool(
                verify_row, store.engine, ledger, ods_table, local_key, version=version
            )
        except NotarizationError as e:
            return _error(404, "not-found", str(e), rid)
        return JSONResponse(verdict_json(verdict))

    @app.post("/v1/audit")
    async def audit_records(
        request: Request, ods_table: str | None = None, sample: int | None = None
    ) -> Response:
        rid = request.state.request_id
        if ledger is None:
            return _error(409, "no-ledger", "no ledger is configured ([ledger] dir)", rid)
        if sample is not None and sample < 1:
            return _error(400, "bad-sample", "sample must be at least 1", rid)
        try:
            report = await run_in_threadpool(
                audit, store.engine, ledger, ods_table=ods_table, sample=sample
            )
        except NotarizationError as e:
            return _error(422, "audit-failed", str(e), rid)
        return JSONResponse(audit_json(report))

    @app.get("/healthz")
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        try:
            await run_in_threadpool(store.counts_by_table)
        except Exception as e:  # the warehouse cannot answer
            return _error(503, "not-ready", f"warehouse unavailable: {type(e).__name__}", "-")
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    return app
