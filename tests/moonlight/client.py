#!/usr/bin/env python3
"""A Moonlight client for the end-to-end tests, built on moonlight-python.

moonlight-python is a byte-exact port of moonlight-qt's pairing
(`nvpairingmanager.cpp`) and identity (`identitymanager.cpp`). This driver
uses its `pairing.pair()`, `identity.Identity` and `http_client.NvHTTP` as
they are, and adds only what a test needs: a choice of source address (two
"devices" on one machine), raw requests, and machine-readable output.

Every command prints JSON objects, one per line, on stdout:

  identity DIR
      {"fingerprint": sha256 hex of the client certificate DER}
  pair DIR HOST HTTP_PORT PIN [--source IP] [--otp PASSPHRASE]
      {"event": "identity", "fingerprint": ...}, then once pairing ends
      {"event": "result", "result": "paired"|"wrong_pin"|"busy"|"refused"|"failed", ...}
      With --otp, PIN is an Apollo one-time PIN and the getservercert request
      carries `otpauth` exactly as Artemis (Apollo's Moonlight fork) makes it
      (`PairingManager.java`): the salt written as uppercase hex, and
      otpauth = uppercase hex of SHA-256(PIN + that salt text + PASSPHRASE).
      --salt-zero P: phase 1's salt is one for which SHA-256(salt + P) has a
      zero byte in its first 15 bytes (the salts moonlight-qt's key bug
      needs); --salt-clean P: one for which it has none there, so a wrong PIN
      P typed on the host cannot meet that bug by chance.
      --qt-key: the AES key is derived the way moonlight-qt derives it
      (`nvpairingmanager.cpp`: `QByteArray(hash.constData())`, then
      `truncate(16)`, and OpenSSL reads 16 bytes): the hash up to its first
      zero byte, that zero (the string's terminator), then bytes the client
      never wrote (uninitialised memory there; random bytes here).
  https DIR HOST HTTPS_PORT PATH [QUERY] [--keep]
      one HTTPS GET with the client identity, offering h2 and http/1.1 in ALPN:
      {"http_status", "content_type", "body", "status_code", "fields",
      "peer_cert_sha256", "alpn", "png"}; "png" is null unless the body is a
      PNG, else {"width", "height", "valid"} (valid: every chunk CRC and the
      decompressed image size check out, as an image cache would decode it).
      With --keep, it then reads a line from stdin and sends the same request
      again on the same connection (revocation must bite on a kept-alive one).
  http HOST HTTP_PORT PATH [QUERY] [--source IP]
      one plain HTTP GET: {"http_status", "body", "status_code", "fields"}
  hold DIR HOST HTTP_PORT [--source IP]
      sends phase 1 (getservercert), prints {"event": "sent"}, then waits for a
      line (or EOF) on stdin and closes the connection without reading: the
      client went away while its request was held.
  probe DIR HOST HTTP_PORT HTTPS_PORT SCHEME:PATH[?QUERY]...
      one request per item (scheme `http` or `https`, the latter with the
      client identity), one line each: {"item", "http_status", "content_type",
      "status_code", ..., "png"}
  phase1 DIR HOST HTTP_PORT PIN
      sends phase 1 only, prints {"event": "answered", ...} when the host
      answers, and exits without continuing: the client went away after the
      PIN was entered.

Bodies are parsed as XML; "status_code" is null when a body is not
well-formed. Exit status is 0 unless the driver itself failed.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import json
import os
import socket
import ssl
import sys
import types
import uuid
import zlib
from xml.etree import ElementTree


def _import_moonlight():
    """Imports the pairing submodules without the package's __init__, which
    pulls in the streaming stack (numpy, the native decoder)."""
    spec = importlib.util.find_spec("moonlight_python")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("moonlight-python is not installed (pip install -r tests/requirements.txt)")
    pkg = types.ModuleType("moonlight_python")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["moonlight_python"] = pkg
    from moonlight_python import exceptions, http_client, identity, pairing  # noqa: E402

    return exceptions, http_client, identity, pairing


exceptions, http_client, identity_mod, pairing = _import_moonlight()

UNIQUE_ID = http_client.HARDCODED_UNIQUE_ID


def out(**obj) -> None:
    print(json.dumps(obj), flush=True)


def load_identity(directory: str):
    return identity_mod.Identity(directory)


def fingerprint(ident) -> str:
    return hashlib.sha256(ident.cert_der).hexdigest()


def parse(body: str) -> dict:
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return {"status_code": None, "status_message": None, "fields": {}, "apps": []}
    fields = {child.tag: (child.text or "") for child in root if len(child) == 0}
    apps = [
        {"id": app.findtext("ID"), "title": app.findtext("AppTitle")}
        for app in root.iter("App")
    ]
    return {
        "status_code": root.get("status_code"),
        "status_message": root.get("status_message"),
        "fields": fields,
        "apps": apps,
    }


def png_info(raw: bytes) -> dict | None:
    """Width, height and a structural check of a PNG (8-bit truecolour or
    truecolour with alpha, what a box art is), without an image library."""
    if not raw.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    pos, idat, ihdr, valid, ended = 8, b"", None, True, False
    while pos + 8 <= len(raw) and not ended:
        length = int.from_bytes(raw[pos : pos + 4], "big")
        kind = raw[pos + 4 : pos + 8]
        data = raw[pos + 8 : pos + 8 + length]
        crc = raw[pos + 8 + length : pos + 12 + length]
        valid &= len(data) == length and zlib.crc32(kind + data).to_bytes(4, "big") == crc
        if kind == b"IHDR":
            ihdr = data
        elif kind == b"IDAT":
            idat += data
        ended = kind == b"IEND"
        pos += 12 + length
    if ihdr is None or len(ihdr) != 13:
        return {"width": None, "height": None, "valid": False}
    width, height = int.from_bytes(ihdr[0:4], "big"), int.from_bytes(ihdr[4:8], "big")
    depth, colour, interlace = ihdr[8], ihdr[9], ihdr[12]
    channels = {2: 3, 6: 4}.get(colour)
    valid &= ended and pos == len(raw) and depth == 8 and channels is not None and interlace == 0
    if valid:
        try:
            pixels = zlib.decompress(idat)
            valid = len(pixels) == height * (1 + width * channels)
        except zlib.error:
            valid = False
    return {"width": width, "height": height, "valid": bool(valid)}


def reply(resp: http.client.HTTPResponse) -> dict:
    raw = resp.read()
    body = raw.decode("utf-8", "replace")
    return {
        "http_status": resp.status,
        "content_type": resp.getheader("Content-Type"),
        "body": body,
        "png": png_info(raw),
        **parse(body),
    }


def query(extra: str) -> str:
    q = f"uniqueid={UNIQUE_ID}&uuid={uuid.uuid4().hex}"
    return f"{q}&{extra}" if extra else q


def nvhttp(ident, host: str, http_port: int, source: str | None):
    http = http_client.NvHTTP(host, ident, http_port=http_port)
    if source:
        # Two devices on one machine: bind the plain-HTTP requests (the ones
        # keyed by address) to another loopback address.
        from requests.adapters import HTTPAdapter

        class SourceAdapter(HTTPAdapter):
            def init_poolmanager(self, *args, **kwargs):
                kwargs["source_address"] = (source, 0)
                super().init_poolmanager(*args, **kwargs)

        http._session.mount("http://", SourceAdapter())
    return http


def with_otpauth(http, pin: str, passphrase: str) -> None:
    """Adds Artemis's `otpauth` to the phase-1 request moonlight-python sends."""
    send = http.open_http

    def open_http(command, arguments=None, **kwargs):
        if command == "pair" and arguments and "phrase=getservercert" in arguments:
            params = arguments.split("&")
            # Artemis writes the salt in uppercase hex (bytesToHex), and
            # hashes that text: the same bytes, as Artemis sends them.
            params = ["salt=" + p[5:].upper() if p.startswith("salt=") else p for p in params]
            salt_text = next(p[5:] for p in params if p.startswith("salt="))
            digest = hashlib.sha256((pin + salt_text + passphrase).encode("utf-8")).digest()
            otpauth = "".join(f"{b:02X}" for b in digest)
            arguments = "&".join(params) + "&otpauth=" + otpauth
        return send(command, arguments, **kwargs)

    http.open_http = open_http


def breaks_moonlight_qt(salt: bytes, pin: str) -> bool:
    """Whether moonlight-qt's key is wrong for this salt and PIN."""
    return 0 in hashlib.sha256(salt + pin.encode("ascii")).digest()[:15]


def salt_for(pin: str, breaks: bool) -> bytes:
    while True:
        salt = os.urandom(16)
        if breaks_moonlight_qt(salt, pin) == breaks:
            return salt


class PairingOs:
    """Stands in for `os` inside moonlight-python's pairing module, whose
    first `urandom(16)` is phase 1's salt: that one is `salt` if given, and
    is kept either way."""

    def __init__(self, salt: bytes | None):
        self.forced = salt
        self.salt: bytes | None = None

    def urandom(self, n: int) -> bytes:
        if self.salt is None and n == 16:
            self.salt = self.forced if self.forced is not None else os.urandom(16)
            return self.salt
        return os.urandom(n)


def moonlight_qt_key(digest: bytes) -> bytes:
    cut = digest.find(b"\0")
    if cut == -1 or cut >= 16:
        return digest[:16]
    return digest[:cut] + b"\0" + os.urandom(15 - cut)


def like_moonlight_qt(pin: str, salt: bytes | None, qt_key: bool) -> None:
    """Forces phase 1's salt and/or moonlight-qt's key derivation."""
    shim = PairingOs(salt)
    pairing.os = shim
    if qt_key:
        hash_data = pairing._hash_data

        def qt_hash_data(algo: str, data: bytes) -> bytes:
            digest = hash_data(algo, data)
            # The one hash of salt + PIN: the key.
            if shim.salt is not None and data == shim.salt + pin.encode("utf-8"):
                return moonlight_qt_key(digest)
            return digest

        pairing._hash_data = qt_hash_data


def cmd_pair(
    directory: str,
    host: str,
    http_port: str,
    pin: str,
    source: str | None,
    otp: str | None = None,
    salt: bytes | None = None,
    qt_key: bool = False,
) -> None:
    ident = load_identity(directory)
    out(event="identity", fingerprint=fingerprint(ident))
    http = nvhttp(ident, host, int(http_port), source)
    if otp is not None:
        with_otpauth(http, pin, otp)
    if salt is not None or qt_key:
        like_moonlight_qt(pin, salt, qt_key)
    try:
        info = http.parse_server_info(http.get_server_info())
        cert = pairing.pair(http, ident, pin, info, timeout=150)
        out(event="result", result="paired", server_cert_pem=cert.decode())
    except exceptions.WrongPinError as e:
        out(event="result", result="wrong_pin", message=str(e))
    except exceptions.PairingAlreadyInProgress as e:
        out(event="result", result="busy", message=str(e))
    except exceptions.HttpResponseError as e:
        out(event="result", result="refused", status=e.status_code, message=e.status_message)
    except exceptions.PairingError as e:
        out(event="result", result="failed", message=str(e))


def tls_context(directory: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Moonlight pins the host certificate itself; the test compares it.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem"))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


def https_once(conn: http.client.HTTPSConnection, path: str, extra: str) -> dict:
    conn.request("GET", f"/{path}?{query(extra)}")
    sock = conn.sock
    peer = sock.getpeercert(binary_form=True) if sock else None
    alpn = sock.selected_alpn_protocol() if sock else None
    return {
        **reply(conn.getresponse()),
        "peer_cert_sha256": hashlib.sha256(peer).hexdigest() if peer else None,
        "alpn": alpn,
    }


def cmd_https(directory: str, host: str, port: str, path: str, extra: str, keep: bool) -> None:
    load_identity(directory)
    conn = http.client.HTTPSConnection(host, int(port), context=tls_context(directory), timeout=30)
    out(**https_once(conn, path, extra))
    if keep:
        sys.stdin.readline()
        out(**https_once(conn, path, extra))
    conn.close()


def cmd_http(host: str, port: str, path: str, extra: str, source: str | None) -> None:
    conn = http.client.HTTPConnection(
        host, int(port), timeout=30, source_address=(source, 0) if source else None
    )
    conn.request("GET", f"/{path}?{query(extra)}")
    resp = conn.getresponse()
    body = resp.read().decode("utf-8", "replace")
    out(http_status=resp.status, body=body, **parse(body))
    conn.close()


def phase1_query(ident) -> str:
    salt = os.urandom(16)
    return query(
        f"devicename=roth&updateState=1&phrase=getservercert"
        f"&salt={salt.hex()}&clientcert={ident.cert_pem.hex()}"
    )


def cmd_hold(directory: str, host: str, port: str, source: str | None) -> None:
    ident = load_identity(directory)
    sock = socket.create_connection(
        (host, int(port)), timeout=30, source_address=(source, 0) if source else None
    )
    request = f"GET /pair?{phase1_query(ident)} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"
    sock.sendall(request.encode())
    out(event="sent", fingerprint=fingerprint(ident))
    sys.stdin.readline()
    sock.close()
    out(event="closed")


def cmd_phase1(directory: str, host: str, port: str, pin: str) -> None:
    # `pin` is only shown to the user in a real client; the host never sees it.
    del pin
    ident = load_identity(directory)
    out(event="identity", fingerprint=fingerprint(ident))
    conn = http.client.HTTPConnection(host, int(port), timeout=150)
    conn.request("GET", f"/pair?{phase1_query(ident)}")
    resp = conn.getresponse()
    body = resp.read().decode("utf-8", "replace")
    conn.close()
    out(event="answered", http_status=resp.status, **parse(body))


def cmd_probe(directory: str, host: str, http_port: str, https_port: str, items: list[str]) -> None:
    load_identity(directory)
    ctx = tls_context(directory)
    for item in items:
        scheme, _, rest = item.partition(":")
        path, _, extra = rest.partition("?")
        if scheme == "https":
            conn = http.client.HTTPSConnection(host, int(https_port), context=ctx, timeout=30)
        else:
            conn = http.client.HTTPConnection(host, int(http_port), timeout=30)
        conn.request("GET", f"/{path}?{query(extra)}")
        answer = reply(conn.getresponse())
        conn.close()
        out(item=item, **answer)


def main(argv: list[str]) -> None:
    source = None
    if "--source" in argv:
        i = argv.index("--source")
        source = argv[i + 1]
        del argv[i : i + 2]
    otp = None
    if "--otp" in argv:
        i = argv.index("--otp")
        otp = argv[i + 1]
        del argv[i : i + 2]
    salt = None
    for flag, breaks in (("--salt-zero", True), ("--salt-clean", False)):
        if flag in argv:
            i = argv.index(flag)
            salt = salt_for(argv[i + 1], breaks)
            del argv[i : i + 2]
    qt_key = "--qt-key" in argv
    if qt_key:
        argv.remove("--qt-key")
    keep = "--keep" in argv
    if keep:
        argv.remove("--keep")
    cmd, args = argv[0], argv[1:]
    if cmd == "identity":
        out(fingerprint=fingerprint(load_identity(args[0])))
    elif cmd == "pair":
        cmd_pair(*args[:4], source, otp, salt, qt_key)
    elif cmd == "https":
        cmd_https(args[0], args[1], args[2], args[3], args[4] if len(args) > 4 else "", keep)
    elif cmd == "http":
        cmd_http(args[0], args[1], args[2], args[3] if len(args) > 3 else "", source)
    elif cmd == "hold":
        cmd_hold(*args[:3], source)
    elif cmd == "probe":
        cmd_probe(args[0], args[1], args[2], args[3], args[4:])
    elif cmd == "phase1":
        cmd_phase1(*args[:4])
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv[1:])
