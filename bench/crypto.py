"""Benchmark: signatures, sealing and field encryption of ``medfabric.crypto``.

Measures, in one process, each operation next to a baseline on the same bytes in the same run:

- Ed25519 sign and verify of a 512-byte message (a batch manifest's size) — baseline: SHA-256
  of the same bytes (the floor of any signature scheme that hashes its message);
- ``seal`` / ``open_sealed`` of 1 MiB and 64 KiB payloads in MB/s — baselines: SHA-256 of the
  same bytes, and bare AES-256-GCM with a fixed key (what sealing adds on top of it is one
  X25519 key pair, one key agreement and one HKDF per payload: ~0.1 ms), also with the 48-byte
  header prepended to its output. That concatenation allocates a second payload-sized buffer;
  for 1 MiB, glibc's malloc then returns and re-faults the pages on every call, which costs
  several times the encryption itself (raising ``MALLOC_TRIM_THRESHOLD_`` and
  ``MALLOC_MMAP_THRESHOLD_`` removes most of it) — an allocator effect, not a cryptographic one;
- ``encrypt_field`` / ``decrypt_field`` of an 18-byte identifier — baseline: bare AES-256-GCM
  of the same bytes with a fixed nonce (what the format adds: a random nonce and the header);
- ``blind_index`` — baseline: a bare HMAC-SHA256 of the same bytes.

Each figure is the best of ``--repeat`` passes of at least ``--seconds`` each; every result is
checked (signatures verify, payloads open to what was sealed).

Usage: .venv/bin/python bench/crypto.py [--seconds 0.3] [--repeat 3]   (about 20 s)
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import platform
import time
from collections.abc import Callable

import cryptography
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from medfabric.crypto.envelope import DataKey, blind_index, decrypt_field, encrypt_field
from medfabric.crypto.keys import EncryptionKey, SigningKey
from medfabric.crypto.sealing import open_sealed, seal

MIB = 1024 * 1024


def per_second(fn: Callable[[], object], seconds: float, repeat: int) -> float:
    """Calls of ``fn`` per second: the best of ``repeat`` passes of at least ``seconds`` each."""
    best = 0.0
    for _ in range(repeat):
        calls, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            for _ in range(8):  # amortize the clock read over a few calls
                fn()
            calls += 8
        best = max(best, calls / elapsed)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=0.3, help="minimum time per pass")
    ap.add_argument("--repeat", type=int, default=3, help="passes per figure (best kept)")
    args = ap.parse_args()

    def rate(fn: Callable[[], object]) -> float:
        return per_second(fn, args.seconds, args.repeat)

    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"cryptography {cryptography.__version__}, {os.cpu_count()} CPUs; one process"
    )
    print(f"{'':40}{'figure':>16}   baseline (same run, same bytes)")

    def row(label: str, figure: str, baseline: str) -> None:
        print(f"{label:40}{figure:>16}   {baseline}")

    # Signatures.
    key = SigningKey.generate()
    verify_key = key.verify_key
    manifest = os.urandom(512)
    signature = key.sign(manifest)
    assert verify_key.verify(manifest, signature)
    sha_manifest = rate(lambda: hashlib.sha256(manifest).digest())
    sign = rate(lambda: key.sign(manifest))
    verify = rate(lambda: verify_key.verify(manifest, signature))
    row("Ed25519 sign, 512 B", f"{sign:,.0f} /s", f"SHA-256 {sha_manifest:,.0f} /s")
    row("Ed25519 verify, 512 B", f"{verify:,.0f} /s", f"(sign / verify = {sign / verify:.1f})")

    # Sealing.
    region = EncryptionKey.generate()
    gcm = AESGCM(os.urandom(32))
    nonce = os.urandom(12)

    def bench_sealing(size: int, name: str) -> None:
        payload = os.urandom(size)
        sealed = seal(region.public_key, payload, aad=b"aad", context=b"batch")
        assert open_sealed(region, sealed, aad=b"aad", context=b"batch") == payload
        bare = gcm.encrypt(nonce, payload, b"aad")
        header = sealed[:48]
        mb = size / 1e6
        sha = rate(lambda: hashlib.sha256(payload).digest()) * mb
        gcm_enc = rate(lambda: gcm.encrypt(nonce, payload, b"aad")) * mb
        gcm_cat = rate(lambda: header + gcm.encrypt(nonce, payload, b"aad")) * mb
        gcm_dec = rate(lambda: gcm.decrypt(nonce, bare, b"aad")) * mb
        s = rate(lambda: seal(region.public_key, payload, aad=b"aad", context=b"batch")) * mb
        o = rate(lambda: open_sealed(region, sealed, aad=b"aad", context=b"batch")) * mb
        row(
            f"seal, {name}",
            f"{s:,.0f} MB/s",
            f"SHA-256 {sha:,.0f} MB/s ({s / sha:.2f}×); "
            f"bare AES-GCM {gcm_enc:,.0f} MB/s ({s / gcm_enc:.2f}×)",
        )
        row(
            "",
            "",
            f"bare AES-GCM, header prepended {gcm_cat:,.0f} MB/s ({s / gcm_cat:.2f}×)",
        )
        row(
            f"open_sealed, {name}",
            f"{o:,.0f} MB/s",
            f"bare AES-GCM decrypt {gcm_dec:,.0f} MB/s ({o / gcm_dec:.2f}×)",
        )

    bench_sealing(MIB, "1 MiB")
    bench_sealing(64 * 1024, "64 KiB")

    # Fields.
    data_key = DataKey.generate()
    value, aad = b"350102199001011234", b"dwd.patient|id_no|H01:000042"
    token = encrypt_field(data_key, value, aad)
    assert decrypt_field(data_key, token, aad) == value
    bare_field = gcm.encrypt(nonce, value, aad)
    gcm_field_enc = rate(lambda: gcm.encrypt(nonce, value, aad))
    gcm_field_dec = rate(lambda: gcm.decrypt(nonce, bare_field, aad))
    enc = rate(lambda: encrypt_field(data_key, value, aad))
    dec = rate(lambda: decrypt_field(data_key, token, aad))
    row(
        "encrypt_field, 18 B",
        f"{enc:,.0f} /s",
        f"bare AES-GCM {gcm_field_enc:,.0f} /s ({enc / gcm_field_enc:.2f}×)",
    )
    row(
        "decrypt_field, 18 B",
        f"{dec:,.0f} /s",
        f"bare AES-GCM decrypt {gcm_field_dec:,.0f} /s ({dec / gcm_field_dec:.2f}×)",
    )

    # Blind index.
    index_key = os.urandom(32)
    ident = "350102199001011234"
    bare_hmac = rate(lambda: hmac.new(index_key, ident.encode(), hashlib.sha256).hexdigest())
    index = rate(lambda: blind_index(index_key, ident))
    row(
        "blind_index, 18 chars",
        f"{index:,.0f} /s",
        f"bare HMAC-SHA256 {bare_hmac:,.0f} /s ({index / bare_hmac:.2f}×)",
    )


if __name__ == "__main__":
    main()
