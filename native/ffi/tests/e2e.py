"""The punktfunk client library through its UniFFI bindings (the Python ones,
generated from the same FFI layer the Swift app links), against the real
`punktfunk serve --native`. Started by tests/python.rs, which generates the
bindings and passes:

    PF_BINDINGS  the directory with punktfunk_client.py and the library
    PF_HOST_BIN  the punktfunk binary

Only the standard library: the console is driven over its HTTPS JSON API.
"""

import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.environ["PF_BINDINGS"])
import punktfunk_client as pf  # noqa: E402

HOST_BIN = os.environ["PF_HOST_BIN"]
TIMEOUT_MS = 30_000


class Host:
    """A running `serve --native` on loopback with a fresh state dir."""

    def __init__(self, state_dir=None, native_port=0):
        self.tmp = tempfile.TemporaryDirectory()
        self.state_dir = state_dir or os.path.join(self.tmp.name, "state")
        self.proc = subprocess.Popen(
            [HOST_BIN, "serve", "--native", "--bind", "127.0.0.1", "--no-mdns",
             "--http-port", "0", "--https-port", "0", "--console-port", "0",
             "--native-port", str(native_port), "--state-dir", self.state_dir],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.password = None
        deadline = time.time() + 60
        while True:
            line = self.proc.stdout.readline()
            if not line or time.time() > deadline:
                raise RuntimeError("the host did not start")
            line = line.strip()
            # The start-up block (README "First start"): the generated
            # password, then one line per listener ("console  https  port N").
            if line.startswith("console password: ") and "(generated" in line:
                self.password = line.split()[2]
            words = line.split()
            if words[:3] == ["console", "https", "port"]:
                self.console = "https://127.0.0.1:" + words[3]
            if words[:4] == ["punktfunk", "app", "tls", "port"]:
                self.native_port = int(words[4])
            if line == "ready":
                break
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        self.cookie = None
        self.csrf = None

    def stop(self):
        self.proc.terminate()
        self.proc.wait(20)

    def api(self, method, path, body=None):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.console + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.cookie:
            req.add_header("Cookie", self.cookie)
        if self.csrf:
            req.add_header("X-CSRF-Token", self.csrf)
        with urllib.request.urlopen(req, context=ctx, timeout=60) as resp:
            cookie = resp.headers.get("Set-Cookie")
            if cookie:
                self.cookie = cookie.split(";", 1)[0]
            text = resp.read().decode()
            return json.loads(text) if text else None

    def login(self):
        self.csrf = self.api("POST", "/api/login", {"password": self.password})["csrf"]

    def arm(self):
        return self.api("POST", "/api/pairing/arm")["pin"]

    def fingerprint(self):
        return self.api("GET", "/api/host")["fingerprint"]

    def pending(self, fingerprint):
        deadline = time.time() + 30
        while time.time() < deadline:
            for p in self.api("GET", "/api/pairing")["pending"]:
                if p["fingerprint"] == fingerprint:
                    return p
            time.sleep(0.1)
        raise AssertionError("no knock from " + fingerprint)

    def devices(self):
        return [d["fingerprint"] for d in self.api("GET", "/api/pairing")["devices"]]


class ThroughFfi(unittest.TestCase):
    def setUp(self):
        self.host = Host()
        self.host.login()
        self.dirs = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.host.stop()

    def client(self, name):
        return pf.Client(os.path.join(self.dirs.name, name))

    def test_pair_with_the_armed_pin_then_connect_is_trusted(self):
        ipad = self.client("ipad")
        self.assertEqual(len(ipad.fingerprint()), 64)
        pin = self.host.arm()
        paired = ipad.pair("127.0.0.1", self.host.native_port, pin, "Anna's iPad", TIMEOUT_MS, None)
        self.assertEqual(paired.host_fingerprint, self.host.fingerprint())
        self.assertEqual(paired.host, "127.0.0.1:%d" % self.host.native_port)
        self.assertEqual(paired.session.status(), pf.ConnectStatus.TRUSTED)
        paired.session.close()
        self.assertIn(ipad.fingerprint(), self.host.devices())
        conn = ipad.connect("127.0.0.1", self.host.native_port, "Anna's iPad", False, False, TIMEOUT_MS, None)
        self.assertEqual(conn.status, pf.ConnectStatus.TRUSTED)
        self.assertEqual(conn.session.host_fingerprint(), self.host.fingerprint())
        conn.session.close()
        known = ipad.known_hosts()
        self.assertEqual(len(known), 1)
        self.assertEqual(known[0].trust, pf.KnownHostTrust.PINNED)
        self.assertEqual(known[0].fingerprint, self.host.fingerprint())

    def test_a_wrong_pin_is_the_pin_rejected_error(self):
        mallory = self.client("mallory")
        pin = self.host.arm()
        wrong = "%04d" % ((int(pin) + 1) % 10000)
        with self.assertRaises(pf.PunktfunkError.PinRejected) as caught:
            mallory.pair("127.0.0.1", self.host.native_port, wrong, "Mallory", TIMEOUT_MS, None)
        self.assertEqual(pf.error_code(caught.exception), "pin_rejected")
        # The arming is spent: the right PIN now finds pairing disarmed.
        with self.assertRaises(pf.PunktfunkError.NotArmed):
            self.client("ipad").pair("127.0.0.1", self.host.native_port, pin, "iPad", TIMEOUT_MS, None)
        with self.assertRaises(pf.PunktfunkError.InvalidArgument):
            mallory.pair("127.0.0.1", self.host.native_port, "12a4", "Mallory", TIMEOUT_MS, None)

    def test_the_consoles_link_pairs_after_a_wrong_guess_spent_the_typed_pin(self):
        armed = self.host.api("POST", "/api/pairing/arm")
        link, pin = armed["link"], armed["pin"]
        self.assertIn("&s=", link)
        self.assertNotIn("&pin=", link)
        wrong = "%04d" % ((int(pin) + 1) % 10000)
        with self.assertRaises(pf.PunktfunkError.PinRejected):
            self.client("mallory").pair("127.0.0.1", self.host.native_port, wrong, "Mallory", TIMEOUT_MS, None)
        # The typed PIN is spent; the QR code's link (its own secret) is not.
        ipad = self.client("ipad")
        paired = ipad.pair_link(link, "iPad", TIMEOUT_MS, None)
        self.assertEqual(paired.host_fingerprint, self.host.fingerprint())
        self.assertEqual(paired.session.status(), pf.ConnectStatus.TRUSTED)
        paired.session.close()
        self.assertIn(ipad.fingerprint(), self.host.devices())
        # A success ends the arming: the link does not pair a second device.
        with self.assertRaises(pf.PunktfunkError.NotArmed):
            self.client("laptop").pair_link(link, "Laptop", TIMEOUT_MS, None)

    def test_knock_then_approve_then_trusted(self):
        tv = self.client("tv")
        result = {}

        def knock():
            try:
                result["conn"] = tv.connect("127.0.0.1", self.host.native_port, "Living Room TV", True, True, TIMEOUT_MS, None)
            except pf.PunktfunkError as e:  # pragma: no cover - reported below
                result["error"] = e

        t = threading.Thread(target=knock)
        t.start()
        waiting = self.host.pending(tv.fingerprint())
        self.assertEqual(waiting["name"], "Living Room TV")
        self.host.api("POST", "/api/pending/%s/approve" % waiting["id"], {"label": "TV"})
        t.join(30)
        self.assertNotIn("error", result)
        self.assertEqual(result["conn"].status, pf.ConnectStatus.TRUSTED)
        result["conn"].session.close()
        # The next connect goes straight through, without accepting anything.
        conn = tv.connect("127.0.0.1", self.host.native_port, "Living Room TV", False, False, TIMEOUT_MS, None)
        self.assertEqual(conn.status, pf.ConnectStatus.TRUSTED)
        conn.session.close()

    def test_an_unknown_host_is_refused_unless_accepted_and_a_knock_can_be_left_waiting(self):
        tv = self.client("tv")
        with self.assertRaises(pf.PunktfunkError.HostNotAccepted) as caught:
            tv.connect("127.0.0.1", self.host.native_port, "TV", False, False, TIMEOUT_MS, None)
        # Shown to people in the one fingerprint form: groups of 4 hex digits.
        fp = self.host.fingerprint().upper()
        grouped = " ".join(fp[i:i + 4] for i in range(0, len(fp), 4))
        self.assertIn(grouped, str(caught.exception))
        conn = tv.connect("127.0.0.1", self.host.native_port, "TV", True, False, TIMEOUT_MS, None)
        self.assertEqual(conn.status, pf.ConnectStatus.APPROVAL_PENDING)
        self.assertIsNone(conn.session)
        self.assertEqual(tv.known_hosts()[0].trust, pf.KnownHostTrust.ACCEPTED)

    def test_a_waiting_call_is_cancelled_from_another_thread_and_times_out(self):
        tv = self.client("tv")
        cancel = pf.Cancellation()
        threading.Timer(0.5, cancel.cancel).start()
        started = time.time()
        with self.assertRaises(pf.PunktfunkError.Cancelled):
            tv.connect("127.0.0.1", self.host.native_port, "TV", True, True, TIMEOUT_MS, cancel)
        self.assertLess(time.time() - started, 5)
        self.assertTrue(cancel.is_cancelled())
        started = time.time()
        with self.assertRaises(pf.PunktfunkError.Timeout):
            tv.connect("127.0.0.1", self.host.native_port, "TV", True, True, 1000, None)
        self.assertLess(time.time() - started, 5)

    def test_a_revocation_ends_a_held_session_and_the_session_says_revoked(self):
        ipad = self.client("ipad")
        paired = ipad.pair("127.0.0.1", self.host.native_port, self.host.arm(), "iPad", TIMEOUT_MS, None)
        ended = {}
        t = threading.Thread(target=lambda: ended.setdefault("end", paired.session.hold(120, None)))
        t.start()
        time.sleep(0.5)
        started = time.time()
        self.host.api("DELETE", "/api/devices/" + ipad.fingerprint())
        t.join(30)
        self.assertLess(time.time() - started, 5)
        end = ended["end"]
        self.assertIsInstance(end, pf.SessionEnd.REVOKED)
        self.assertIn("removed", end.message)
        self.assertIsInstance(paired.session.hold(1, None), pf.SessionEnd.ALREADY_ENDED)
        # A revoked device is unknown again: its connect knocks.
        conn = ipad.connect("127.0.0.1", self.host.native_port, "iPad", False, False, TIMEOUT_MS, None)
        self.assertEqual(conn.status, pf.ConnectStatus.APPROVAL_PENDING)

    def test_the_session_reports_its_grant_and_each_change_until_access_ends(self):
        # The host's first device gets Full.
        ipad = self.client("ipad")
        paired = ipad.pair("127.0.0.1", self.host.native_port, self.host.arm(), "iPad", TIMEOUT_MS, None)
        grant = paired.session.grant()
        self.assertIn("server_cmd", grant.permissions)
        self.assertIsNone(grant.expires_at)
        paired.session.close()
        # A knock approved as Watch for an hour: the grant comes right
        # after the decision.
        tv = self.client("tv")
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("conn", tv.connect(
            "127.0.0.1", self.host.native_port, "TV", True, True, TIMEOUT_MS, None)))
        t.start()
        waiting = self.host.pending(tv.fingerprint())
        self.host.api("POST", "/api/pending/%s/approve" % waiting["id"],
                      {"grant": {"may": "watch", "for_s": 3600}})
        t.join(30)
        session = result["conn"].session
        grant = session.grant()
        self.assertEqual(grant.permissions, ["list", "view"])
        self.assertAlmostEqual(grant.expires_at, time.time() + 3600, delta=60)
        self.assertIsInstance(session.wait(0, None), pf.SessionEvent.STILL_OPEN)
        # A change while connected arrives as it is stored.
        path = "/api/devices/%s/access" % tv.fingerprint()
        events = {}
        w = threading.Thread(target=lambda: events.setdefault("e", session.wait(60, None)))
        w.start()
        time.sleep(0.3)
        self.host.api("PATCH", path, {"may": ["list", "view", "input_controller"]})
        w.join(30)
        event = events["e"]
        self.assertIsInstance(event, pf.SessionEvent.GRANT_CHANGED)
        self.assertEqual(event.grant.permissions, ["input_controller", "list", "view"])
        self.assertEqual(event.grant.expires_at, grant.expires_at)
        self.assertEqual(session.grant(), event.grant)
        # Access that ends at a time ends the session at that time.
        end_at = int(time.time()) + 2
        self.host.api("PATCH", path, {"expires_at": end_at})
        event = session.wait(60, None)
        self.assertIsInstance(event, pf.SessionEvent.GRANT_CHANGED)
        self.assertEqual(event.grant.expires_at, end_at)
        event = session.wait(60, None)
        self.assertIsInstance(event, pf.SessionEvent.ENDED)
        self.assertIsInstance(event.end, pf.SessionEnd.EXPIRED)
        self.assertLess(time.time(), end_at + 1.5)
        self.assertIsInstance(session.wait(1, None), pf.SessionEvent.ENDED)
        with self.assertRaises(pf.PunktfunkError.Expired):
            tv.connect("127.0.0.1", self.host.native_port, "TV", False, False, TIMEOUT_MS, None)

    def test_a_host_whose_identity_changed_is_refused(self):
        ipad = self.client("ipad")
        port = self.host.native_port
        paired = ipad.pair("127.0.0.1", port, self.host.arm(), "iPad", TIMEOUT_MS, None)
        paired.session.close()
        # Another host (another identity) on the same address and port.
        self.host.stop()
        self.host = Host(native_port=port)
        with self.assertRaises(pf.PunktfunkError.HostIdentityChanged) as caught:
            ipad.connect("127.0.0.1", port, "iPad", True, False, TIMEOUT_MS, None)
        self.assertEqual(pf.error_code(caught.exception), "host_identity_changed")
        # Forgetting the old host lets the owner start over.
        self.assertTrue(ipad.forget_host("127.0.0.1", port))
        self.assertFalse(ipad.forget_host("127.0.0.1", port))
        self.assertEqual(ipad.known_hosts(), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
