"""Talking to the region: send spooled batches in order, fetch and acknowledge the downlink.

Sending rules:
- batches go oldest first; a transient failure (connection refused, timeout, 5xx, 429) stops the
  round and schedules a retry with exponential back-off capped at ``max_backoff`` — so while the
  receiver is down the spool grows and nothing is skipped;
- 200 (landed) and 409 ``duplicate-batch`` (the receiver already holds exactly this batch: our
  earlier send landed but its answer was lost) acknowledge the batch: it leaves the outbox, its
  file is deleted;
- any other 4xx is a verdict on the batch itself (bad signature, hash mismatch, unknown
  hospital …): retrying cannot help, so the batch moves to ``quarantine/`` with the receiver's
  reason code and waits for an operator (``medfabric gateway quarantine …``).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from medfabric.crypto import SigningKey, VerifyKey
from medfabric.gateway.state import GatewayState, backoff_delay, fsync_dir, now_utc
from medfabric.records.messages import MessageError, sign_request, verify_downlink

log = logging.getLogger("medfabric.gateway")

BATCH_CONTENT_TYPE = "application/vnd.medfabric.batch"
ACK_CODES = ("duplicate-batch",)


@dataclass
class SendReport:
    """What one sending round did."""

    sent: int = 0
    rows: int = 0
    quarantined: int = 0
    pending: int = 0
    error: str | None = None


class Uplink:
    """The HTTP client of one hospital's gateway."""

    def __init__(
        self,
        state: GatewayState,
        *,
        receiver_url: str,
        signing_key: SigningKey,
        region_verify_key: VerifyKey | None,
        timeout: float = 60.0,
        max_backoff: float = 300.0,
        client: httpx.Client | None = None,
        crash_point: Callable[[str], None] = lambda label: None,
    ) -> None:
        self.state = state
        self.hospital_id = state.hospital_id
        self.signing_key = signing_key
        self.region_verify_key = region_verify_key
        self.max_backoff = max_backoff
        self.crash_point = crash_point
        self._own_client = client is None
        self.client = client or httpx.Client(base_url=receiver_url, timeout=timeout)

    def close(self) -> None:
        """Close the HTTP connection pool (only if this uplink created it)."""
        if self._own_client:
            self.client.close()

    # --- batches -----------------------------------------------------------------------------

    def send_pending(self, *, force: bool = False) -> SendReport:
        """Send outbox batches in sequence order until the outbox is empty or a send fails.

        Args:
            force: ignore the back-off schedule (``gateway once`` after an operator fixed
                something).
        """
        report = SendReport()
        con = self.state.con
        rows = con.execute(
            "SELECT batch_id, seq, system, source_table, file, rows, attempts, next_try, "
            "created_at FROM outbox ORDER BY seq"
        ).fetchall()
        now = now_utc()
        for i, (
            batch_id,
            seq,
            system,
            table,
            file,
            nrows,
            attempts,
            next_try,
            created,
        ) in enumerate(rows):
            if not force and next_try is not None and next_try > now:
                report.pending = len(rows) - i
                break
            body = (self.state.spool / file).read_bytes()
            try:
                resp = self.client.post(
                    "/v1/batches", content=body, headers={"Content-Type": BATCH_CONTENT_TYPE}
                )
            except httpx.HTTPError as e:
                self._retry_later(batch_id, attempts, f"{type(e).__name__}: {e}")
                report.error = f"receiver unreachable: {type(e).__name__}"
                report.pending = len(rows) - i
                break
            self.crash_point("batch-sent")
            answer = _json(resp)
            code = str(answer.get("code") or answer.get("status") or "")
            if resp.status_code == 200 or (resp.status_code == 409 and code in ACK_CODES):
                self._acknowledge(
                    batch_id, seq, system, table, file, nrows, created, code or "landed"
                )
                report.sent += 1
                report.rows += nrows
                continue
            if resp.status_code >= 500 or resp.status_code == 429:
                self._retry_later(batch_id, attempts, f"HTTP {resp.status_code} {code}")
                report.error = f"receiver error HTTP {resp.status_code}"
                report.pending = len(rows) - i
                break
            detail = str(answer.get("detail") or resp.text[:500])
            self._quarantine(
                batch_id,
                seq,
                system,
                table,
                file,
                nrows,
                code or f"http-{resp.status_code}",
                detail,
            )
            report.quarantined += 1
        return report

    def _acknowledge(
        self, batch_id: str, seq: int, system: str, table: str, file: str, rows: int,
        created: Any, status: str,
    ) -> None:  # fmt: skip
        with self.state.transaction() as con:
            con.execute("DELETE FROM outbox WHERE batch_id = ?", [batch_id])
            con.execute(
                "INSERT OR REPLACE INTO acked VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [batch_id, seq, system, table, rows, status, created, now_utc()],
            )
            con.execute("DELETE FROM acked WHERE seq < (SELECT max(seq) - 10000 FROM acked)")
        self.crash_point("batch-acked")
        (self.state.spool / file).unlink(missing_ok=True)
        log.info(
            "batch-acknowledged",
            extra={"fields": {"batch_id": batch_id, "rows": rows, "status": status}},
        )

    def _retry_later(self, batch_id: str, attempts: int, error: str) -> None:
        delay = backoff_delay(attempts, self.max_backoff)
        with self.state.transaction() as con:
            con.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_try = ? "
                "WHERE batch_id = ?",
                [error[:500], now_utc() + timedelta(seconds=delay), batch_id],
            )
        log.warning(
            "send-failed",
            extra={"fields": {"batch_id": batch_id, "error": error[:200], "retry_in_s": delay}},
        )

    def _quarantine(
        self, batch_id: str, seq: int, system: str, table: str, file: str, rows: int,
        code: str, detail: str,
    ) -> None:  # fmt: skip
        src = self.state.spool / file
        dst = self.state.quarantine_dir / file
        os.replace(src, dst)
        fsync_dir(self.state.quarantine_dir)
        with self.state.transaction() as con:
            con.execute("DELETE FROM outbox WHERE batch_id = ?", [batch_id])
            con.execute(
                "INSERT OR REPLACE INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [batch_id, seq, system, table, file, rows, code, detail[:2000], now_utc()],
            )
        log.error(
            "batch-quarantined",
            extra={"fields": {"batch_id": batch_id, "code": code, "detail": detail[:300]}},
        )

    # --- downlink ----------------------------------------------------------------------------

    def _signed(self, method: str, path: str, body: bytes = b"") -> dict[str, str]:
        return sign_request(
            self.signing_key,
            method=method,
            path=path,
            hospital_id=self.hospital_id,
            body=body,
            nonce=secrets.token_hex(12),
        )

    def fetch_downlink(self) -> int:
        """Fetch messages addressed to this hospital, verify the region's signature, store them
        in ``inbox/`` and acknowledge them. Returns how many were new.

        A message that does not verify is not stored and not acknowledged (it stays at the
        region, visible there); the others are.
        """
        if self.region_verify_key is None:
            return 0
        path = f"/v1/downlink/{self.hospital_id}"
        resp = self.client.get(path, headers=self._signed("GET", path))
        if resp.status_code != 200:
            raise httpx.HTTPStatusError(
                f"downlink fetch failed: HTTP {resp.status_code} {resp.text[:200]}",
                request=resp.request,
                response=resp,
            )
        new = 0
        acked: list[int] = []
        for item in resp.json().get("messages", []):
            data = base64.b64decode(item["message"])
            sig = base64.b64decode(item["signature"])
            try:
                msg = verify_downlink(data, sig, self.region_verify_key)
            except MessageError as e:
                log.error(
                    "downlink-rejected", extra={"fields": {"id": item.get("id"), "code": e.code}}
                )
                continue
            if msg.hospital_id != self.hospital_id:
                log.error("downlink-misaddressed", extra={"fields": {"id": item.get("id")}})
                continue
            mid = int(item["id"])
            file = f"{mid:012d}-{msg.kind}.json"
            target = self.state.inbox_dir / file
            if not target.exists():
                tmp = target.with_suffix(".part")
                tmp.write_bytes(data)
                os.replace(tmp, target)
                with self.state.transaction() as con:
                    con.execute(
                        "INSERT OR IGNORE INTO inbox VALUES (?, ?, ?, ?, ?, ?)",
                        [mid, msg.kind, msg.title, file, msg.created_at, now_utc()],
                    )
                new += 1
                log.info("downlink-received", extra={"fields": {"id": mid, "kind": msg.kind}})
            acked.append(mid)
        if acked:
            ack_path = f"/v1/downlink/{self.hospital_id}/ack"
            body = json.dumps({"ids": acked}).encode()
            r = self.client.post(
                ack_path,
                content=body,
                headers={
                    **self._signed("POST", ack_path, body),
                    "Content-Type": "application/json",
                },
            )
            if r.status_code != 200:
                log.warning("downlink-ack-failed", extra={"fields": {"status": r.status_code}})
        return new


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
