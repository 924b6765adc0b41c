"""What gateways and the region say to each other besides batches: signed requests (a gateway
proving who it is when it fetches or acknowledges its downlink) and downlink messages
(dictionaries, notices) signed by the region.

Invariants:
- Every signature is Ed25519 over a domain-separated message, so a signature made for one
  purpose (a batch manifest, a request, a downlink message) never verifies as another.
- A signed request binds method, path, hospital, time, a nonce and the SHA-256 of the body; the
  verifier checks the clock skew and that the nonce was not seen within the skew window.
- Downlink messages are canonical JSON (sorted keys, compact, UTF-8) and carry their hospital:
  a message signed for H01 is refused by H02's gateway.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from medfabric.crypto import SigningKey, VerifyKey
from medfabric.records.canonical import RecordError

REQUEST_DOMAIN = b"medfabric/request/v1\x00"
DOWNLINK_DOMAIN = b"medfabric/downlink/v1\x00"
HEADER_HOSPITAL = "X-Medfabric-Hospital"
HEADER_TIME = "X-Medfabric-Time"
HEADER_NONCE = "X-Medfabric-Nonce"
HEADER_SIGNATURE = "X-Medfabric-Signature"
DOWNLINK_KINDS = ("dictionary", "notice", "config")
MAX_DOWNLINK_BODY = 16 * 1024 * 1024


class MessageError(RecordError):
    """A signed request or downlink message is malformed or does not verify; ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _request_message(
    method: str, path: str, hospital_id: str, timestamp: int, nonce: str, body: bytes
) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    text = "\n".join([method.upper(), path, hospital_id, str(timestamp), nonce, digest])
    return REQUEST_DOMAIN + text.encode("utf-8")


def sign_request(
    key: SigningKey, *, method: str, path: str, hospital_id: str, body: bytes, nonce: str,
    now: datetime | None = None,
) -> dict[str, str]:  # fmt: skip
    """The headers that authenticate one request of a hospital's gateway."""
    ts = int((now or datetime.now(UTC)).timestamp())
    sig = key.sign(_request_message(method, path, hospital_id, ts, nonce, body))
    return {
        HEADER_HOSPITAL: hospital_id,
        HEADER_TIME: str(ts),
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: base64.b64encode(sig).decode("ascii"),
    }


@dataclass(frozen=True, slots=True)
class RequestAuth:
    """The claimed identity of a signed request, parsed from its headers (not yet verified)."""

    hospital_id: str
    timestamp: int
    nonce: str
    signature: bytes

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RequestAuth:
        """Parse the four headers; MessageError(code="unauthenticated") if any is missing."""
        lower = {k.lower(): v for k, v in headers.items()}
        try:
            hospital = lower[HEADER_HOSPITAL.lower()]
            ts = int(lower[HEADER_TIME.lower()])
            nonce = lower[HEADER_NONCE.lower()]
            sig = base64.b64decode(lower[HEADER_SIGNATURE.lower()], validate=True)
        except (KeyError, ValueError):
            raise MessageError(
                "unauthenticated", "request is not signed (X-Medfabric-* headers missing or bad)"
            ) from None
        if not (1 <= len(nonce) <= 64) or len(sig) != 64:
            raise MessageError("unauthenticated", "request signature headers are malformed")
        return cls(hospital, ts, nonce, sig)

    def verify(
        self, key: VerifyKey, *, method: str, path: str, body: bytes, now: datetime,
        skew_seconds: int,
    ) -> None:  # fmt: skip
        """Check the signature and the clock; MessageError(code=…) when either fails."""
        if abs(now.timestamp() - self.timestamp) > skew_seconds:
            raise MessageError(
                "clock-skew", f"request time is more than {skew_seconds} s from the region's clock"
            )
        msg = _request_message(method, path, self.hospital_id, self.timestamp, self.nonce, body)
        if not key.verify(msg, self.signature):
            raise MessageError("bad-signature", "request signature does not verify")


@dataclass(frozen=True, slots=True)
class DownlinkMessage:
    """A message from the region to one hospital's gateway."""

    hospital_id: str
    kind: str
    title: str
    created_at: str
    body: Mapping[str, Any]

    def to_bytes(self) -> bytes:
        """Canonical JSON of the message."""
        doc = {
            "body": self.body,
            "created_at": self.created_at,
            "hospital_id": self.hospital_id,
            "kind": self.kind,
            "title": self.title,
            "v": 1,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> DownlinkMessage:
        """Parse strictly; MessageError(code="bad-message") naming the problem."""
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise MessageError("bad-message", "downlink message is not UTF-8 JSON") from None
        expected = {"body", "created_at", "hospital_id", "kind", "title", "v"}
        if not isinstance(doc, dict) or set(doc) != expected or doc["v"] != 1:
            raise MessageError(
                "bad-message", f"downlink message must have exactly {sorted(expected)}"
            )
        if doc["kind"] not in DOWNLINK_KINDS or not isinstance(doc["body"], dict):
            raise MessageError("bad-message", f"downlink kind must be one of {DOWNLINK_KINDS}")
        for k in ("hospital_id", "title", "created_at"):
            if not isinstance(doc[k], str) or not doc[k]:
                raise MessageError("bad-message", f"downlink {k} must be a non-empty string")
        msg = cls(doc["hospital_id"], doc["kind"], doc["title"], doc["created_at"], doc["body"])
        if msg.to_bytes() != data:
            raise MessageError("bad-message", "downlink message is not in canonical form")
        return msg


def sign_downlink(message: DownlinkMessage, region_key: SigningKey) -> tuple[bytes, bytes]:
    """The message's canonical bytes and the region's signature over them."""
    data = message.to_bytes()
    if len(data) > MAX_DOWNLINK_BODY:
        raise MessageError("too-large", f"downlink message over {MAX_DOWNLINK_BODY} bytes")
    return data, region_key.sign(DOWNLINK_DOMAIN + data)


def verify_downlink(data: bytes, signature: bytes, region_key: VerifyKey) -> DownlinkMessage:
    """Check the region's signature, then parse; MessageError if either fails."""
    if not region_key.verify(DOWNLINK_DOMAIN + data, signature):
        raise MessageError("bad-signature", "downlink message is not signed by the region")
    return DownlinkMessage.from_bytes(data)
