#!/usr/bin/env python3
"""Records GameStream pairing test vectors from the real Moonlight client code.

`moonlight-python` (PyPI, 0.3.0) is a byte-exact port of moonlight-qt's
pairing client (app/backend/nvpairingmanager.cpp). This script runs its
`pairing.pair()` against a small in-process fake host with every random
input fixed, records what the client sent and what the host answered, and
writes the intermediate values of each AES/SHA/RSA step. The Rust tests in
`gamestream/` then check that the host core reproduces every host reply
byte-for-byte from the same inputs, and that a Rust re-statement of the
client produces the same requests.

The fake host below is only as good as the client that accepted it: a run
succeeds only if `pair()` (the real client) completes, so the recorded
replies are ones a Moonlight client accepts.

Usage (from the repository root):

    python3 -m venv /tmp/gsvenv
    /tmp/gsvenv/bin/pip install moonlight-python==0.3.0
    /tmp/gsvenv/bin/python gamestream/tests/data/make_vectors.py

Identities (client.crt/.key, host.crt/.key) are created on the first run and
reused afterwards, so re-running reproduces vectors.json exactly (RSA
PKCS#1 v1.5 signatures are deterministic).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qsl
from xml.sax.saxutils import quoteattr

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from moonlight_python import http_client, identity, pairing
from moonlight_python.exceptions import WrongPinError
from moonlight_python.server import ServerInfo

DATA = Path(__file__).resolve().parent
PIN = "4719"
WRONG_PIN = "4718"
UNIQUE_ID = http_client.HARDCODED_UNIQUE_ID


def fixed(label: str, n: int = 16) -> bytes:
    """A fixed, random-looking byte string named by `label`."""
    return hashlib.sha256(b"punktfunk vectors " + label.encode()).digest()[:n]


SALT = fixed("salt")
CLIENT_CHALLENGE = fixed("client challenge")
CLIENT_SECRET = fixed("client secret")
SERVER_SECRET = fixed("server secret")
SERVER_CHALLENGE = fixed("server challenge")


def client_identity() -> identity.Identity:
    """The client identity, created by moonlight-python itself on first run."""
    crt, key = DATA / "client.crt", DATA / "client.key"
    cfg = Path(tempfile.mkdtemp())
    if crt.exists() and key.exists():
        (cfg / "cert.pem").write_bytes(crt.read_bytes())
        (cfg / "key.pem").write_bytes(key.read_bytes())
        (cfg / "unique_id").write_text("0")
        return identity.Identity(cfg)
    ident = identity.Identity(cfg)
    crt.write_bytes(ident.cert_pem)
    key.write_bytes(ident.key_pem)
    return ident


def host_identity() -> tuple[rsa.RSAPrivateKey, bytes]:
    """The host identity: RSA-2048, SHA-256, self-signed v3, like punktfunk-certs makes."""
    crt, key = DATA / "host.crt", DATA / "host.key"
    if crt.exists() and key.exists():
        return serialization.load_pem_private_key(key.read_bytes(), None), crt.read_bytes()
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "punktfunk host test vectors")])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(k.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30 * 365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(k, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    crt.write_bytes(pem)
    key.write_bytes(
        k.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return k, pem


def sign(key, data: bytes) -> bytes:
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def xml(fields: dict[str, str], status: int = 200) -> str:
    """The document shape punktfunk renders (and Sunshine sends), so the Rust
    tests can compare whole replies with what the client accepted."""
    body = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
    root = f"<root status_code={quoteattr(str(status))}"
    root += f">{body}</root>" if body else "/>"
    return '<?xml version="1.0" encoding="utf-8"?>\n' + root


class FakeHost:
    """Answers the client like a GameStream host, from fixed randomness."""

    def __init__(self, key, cert_pem: bytes, pin: str, client_cert_sig: bytes):
        self.key, self.cert_pem, self.pin = key, cert_pem, pin
        self.client_cert_sig = client_cert_sig
        self.server_cert_pem = b""  # set by pair(), like NvHTTP's pinning
        self.transcript: list[dict] = []
        self.aes_key = b""
        self.client_hash = b""

    def _record(self, transport: str, command: str, arguments: str | None, reply: str) -> str:
        query = f"uniqueid={UNIQUE_ID}&uuid={fixed(f'uuid {len(self.transcript)}').hex()}"
        if arguments:
            query += "&" + arguments
        self.transcript.append(
            {"transport": transport, "path": "/" + command, "query": query, "reply": reply}
        )
        return reply

    def open_http(self, command: str, arguments: str | None = None, timeout: int = 5) -> str:
        return self._record("http", command, arguments, self._answer(command, arguments))

    def open_https(self, command: str, arguments: str | None = None, timeout: int = 5) -> str:
        return self._record("https", command, arguments, self._answer(command, arguments))

    def _answer(self, command: str, arguments: str | None) -> str:
        if command == "unpair":
            return xml({})
        q = dict(parse_qsl(arguments or ""))
        if q.get("phrase") == "getservercert":
            salt = bytes.fromhex(q["salt"])
            self.aes_key = hashlib.sha256(salt + self.pin.encode()).digest()[:16]
            return xml({"paired": "1", "plaincert": self.cert_pem.hex().upper()})
        if "clientchallenge" in q:
            cc = pairing._aes_decrypt_ecb(bytes.fromhex(q["clientchallenge"]), self.aes_key)
            host_sig = pairing._get_cert_signature(self.cert_pem)
            h1 = hashlib.sha256(cc + host_sig + SERVER_SECRET).digest()
            enc = pairing._aes_encrypt_ecb(h1 + SERVER_CHALLENGE, self.aes_key)
            return xml({"paired": "1", "challengeresponse": enc.hex().upper()})
        if "serverchallengeresp" in q:
            enc = bytes.fromhex(q["serverchallengeresp"])
            self.client_hash = pairing._aes_decrypt_ecb(enc, self.aes_key)
            secret = SERVER_SECRET + sign(self.key, SERVER_SECRET)
            return xml({"paired": "1", "pairingsecret": secret.hex().upper()})
        if "clientpairingsecret" in q:
            cps = bytes.fromhex(q["clientpairingsecret"])
            cs = cps[:16]
            expect = hashlib.sha256(SERVER_CHALLENGE + self.client_cert_sig + cs).digest()
            return xml({"paired": "1" if expect == self.client_hash else "0"})
        if q.get("phrase") == "pairchallenge":
            return xml({"paired": "1"})
        return xml({}, status=404)


def run(client, host_key, host_pem, client_pin: str, host_pin: str) -> tuple[list[dict], str]:
    randomness = [SALT, CLIENT_CHALLENGE, CLIENT_SECRET]

    def urandom(n: int) -> bytes:
        value = randomness.pop(0)
        assert len(value) == n
        return value

    host = FakeHost(host_key, host_pem, host_pin, client.cert_signature())
    real_urandom, os.urandom = os.urandom, urandom
    try:
        pairing.pair(host, client, client_pin, ServerInfo(address="127.0.0.1", app_version="7.1.431.-1"))
        result = "paired"
    except WrongPinError:
        result = "wrong_pin"
    finally:
        os.urandom = real_urandom
    return host.transcript, result


def main() -> int:
    client = client_identity()
    host_key, host_pem = host_identity()

    aes_key = pairing._hash_data("sha256", SALT + PIN.encode())[:16]
    host_sig = pairing._get_cert_signature(host_pem)
    h1 = pairing._hash_data("sha256", CLIENT_CHALLENGE + host_sig + SERVER_SECRET)
    client_hash = pairing._hash_data(
        "sha256", SERVER_CHALLENGE + client.cert_signature() + CLIENT_SECRET
    )
    server_sig = sign(host_key, SERVER_SECRET)
    client_sig = pairing._sign_data(client, CLIENT_SECRET)
    assert pairing._verify_signature(SERVER_SECRET, server_sig, host_pem)

    success, result = run(client, host_key, host_pem, PIN, PIN)
    assert result == "paired", result
    wrong, result = run(client, host_key, host_pem, WRONG_PIN, PIN)
    assert result == "wrong_pin", result

    vectors = {
        "comment": "Generated by make_vectors.py from moonlight-python 0.3.0; do not edit.",
        "pin": PIN,
        "wrong_pin": WRONG_PIN,
        "unique_id": UNIQUE_ID,
        "salt": SALT.hex(),
        "aes_key": aes_key.hex(),
        "wrong_pin_aes_key": pairing._hash_data("sha256", SALT + WRONG_PIN.encode())[:16].hex(),
        "client_challenge": CLIENT_CHALLENGE.hex(),
        "encrypted_client_challenge": pairing._aes_encrypt_ecb(CLIENT_CHALLENGE, aes_key).hex(),
        "host_cert_signature": host_sig.hex(),
        "client_cert_signature": client.cert_signature().hex(),
        "server_secret": SERVER_SECRET.hex(),
        "server_challenge": SERVER_CHALLENGE.hex(),
        "server_response_hash": h1.hex(),
        "challenge_response": pairing._aes_encrypt_ecb(h1 + SERVER_CHALLENGE, aes_key).hex(),
        "client_secret": CLIENT_SECRET.hex(),
        "client_hash": client_hash.hex(),
        "encrypted_client_hash": pairing._aes_encrypt_ecb(client_hash, aes_key).hex(),
        "server_secret_signature": server_sig.hex(),
        "pairing_secret": (SERVER_SECRET + server_sig).hex(),
        "client_secret_signature": client_sig.hex(),
        "client_pairing_secret": (CLIENT_SECRET + client_sig).hex(),
        "transcripts": {"success": success, "wrong_pin": wrong},
    }
    out = DATA / "vectors.json"
    out.write_text(json.dumps(vectors, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
