"""The Python client and kovan-cli over TLS against a kovan-server child process started with
--tls-cert/--tls-key/--tls-ca: verification (right CA, wrong CA, wrong name), kovans://
addresses, a client certificate, requests and transactions over TLS, and a burst of
pipelined frames on one TLS socket (ssl module directly: the client sends one request at a
time). The certificates are made at test time with the openssl command in a temporary
folder."""

import os
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import unittest

import kovan_kv as kv
from kovan_kv import kv_pb2 as pb
from kvtest import CLI_BIN, ServerProcess


def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class Pki:
    """A throwaway CA ("ca") signing a server certificate for localhost/127.0.0.1 and a
    client certificate "alice"; a second CA ("other") signs nothing we trust."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="kovan-py-tls-")
        self._ca("ca", "kovan-test-ca")
        self._ca("other", "kovan-other-ca")
        self._leaf("server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        self._leaf("alice", "alice", "extendedKeyUsage=clientAuth\n")

    def pem(self, name):
        return os.path.join(self.dir, name + ".pem")

    def key(self, name):
        return os.path.join(self.dir, name + ".key")

    def _ca(self, name, cn):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-days", "2", "-subj", "/CN=" + cn, "-keyout", self.key(name), "-out", self.pem(name))

    def _leaf(self, name, cn, ext):
        csr = os.path.join(self.dir, name + ".csr")
        ext_file = os.path.join(self.dir, name + ".ext")
        with open(ext_file, "w", encoding="ascii") as f:
            f.write(ext)
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-subj", "/CN=" + cn, "-keyout", self.key(name), "-out", csr)
        _openssl("x509", "-req", "-days", "2", "-in", csr, "-CA", self.pem("ca"), "-CAkey",
                 self.key("ca"), "-CAcreateserial", "-out", self.pem(name), "-extfile", ext_file)

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class PythonTlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        cls.server = ServerProcess("--threads", "2", "--log-level", "debug",
                                   "--tls-cert", cls.pki.pem("server"),
                                   "--tls-key", cls.pki.key("server"),
                                   "--tls-ca", cls.pki.pem("ca"))

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        cls.pki.close()

    def client(self, **kw):
        kw.setdefault("tls_ca", self.pki.pem("ca"))
        return kv.Client.from_address("kovans://" + self.server.address, timeout=20, **kw)

    def test_requests_and_transactions_over_tls(self):
        c = self.client()
        try:
            for i in range(200):
                c.put(f"py{i}", b"x" * (i * 300))  # up to 60 KB: several TLS records
            for i in range(200):
                self.assertEqual(c.get(f"py{i}").value, b"x" * (i * 300))
            t = c.begin()
            t.put("acct", "10")
            self.assertEqual(t.get("acct").value, b"10")
            t.commit()

            def incr(tx):
                v = tx.get("acct")
                tx.put("acct", str(int(v.value) + 1))
            c.transact(incr)
            self.assertEqual(c.get("acct").value, b"11")
        finally:
            c.close()

    def test_client_certificate_cn_reaches_the_connection(self):
        c = self.client(tls_cert=self.pki.pem("alice"), tls_key=self.pki.key("alice"))
        try:
            c.put("from-alice", "1")
        finally:
            c.close()
        self.assertIn("client certificate CN 'alice'", self.server.output())

    def test_wrong_ca_and_wrong_name_fail_verification(self):
        with self.assertRaises(kv.Unavailable) as e:
            self.client(tls_ca=self.pki.pem("other"))
        self.assertIn("CERTIFICATE_VERIFY_FAILED", str(e.exception))
        with self.assertRaises(kv.Unavailable) as e:
            self.client(tls_server_name="db.example.com")
        self.assertIn("CERTIFICATE_VERIFY_FAILED", str(e.exception))
        # With the check off, the chain is still verified and the name is not.
        c = self.client(tls_server_name="db.example.com", tls_verify_hostname=False)
        c.close()

    def test_plain_client_is_refused_with_a_notice(self):
        c = kv.Client("127.0.0.1", self.server.port, timeout=20)
        try:
            with self.assertRaises(kv.Unavailable) as e:
                c.put("plain", "1")
            self.assertIn("requires TLS", str(e.exception))
        finally:
            c.close()

    def test_pipelined_frames_on_one_tls_socket(self):
        ctx = ssl.create_default_context(cafile=self.pki.pem("ca"))
        raw = socket.create_connection(("127.0.0.1", self.server.port), timeout=20)
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            burst = bytearray()
            n = 300
            for i in range(1, n + 1):
                req = pb.Request(id=i)
                if i % 2:
                    req.put.key = f"pipe{i}".encode()
                    req.put.value = b"v" * 1000
                else:
                    req.get.key = f"pipe{i - 1}".encode()
                payload = req.SerializeToString()
                burst += struct.pack(">I", len(payload)) + payload
            s.sendall(bytes(burst))  # every frame before reading any answer
            buf = b""
            for i in range(1, n + 1):
                while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
                    chunk = s.recv(65536)
                    self.assertTrue(chunk, "connection closed early")
                    buf += chunk
                length = struct.unpack(">I", buf[:4])[0]
                resp = pb.Response()
                resp.ParseFromString(buf[4:4 + length])
                buf = buf[4 + length:]
                self.assertEqual(resp.id, i)
                self.assertEqual(resp.status.code, pb.Status.OK)
                if i % 2 == 0:
                    self.assertEqual(resp.get.kv.value, b"v" * 1000)

    @unittest.skipUnless(CLI_BIN, "KOVAN_CLI_BIN not set")
    def test_cli_over_tls(self):
        base = [CLI_BIN, "--addr", "kovans://" + self.server.address, "--tls-ca", self.pki.pem("ca")]
        r = subprocess.run(base + ["put", "cli-k", "cli-v"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = subprocess.run(base + ["get", "cli-k"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("cli-v", r.stdout)
        r = subprocess.run([CLI_BIN, "--addr", "kovans://" + self.server.address, "--tls-ca",
                            self.pki.pem("other"), "get", "cli-k"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 3)
        self.assertIn("certificate verify failed", r.stderr)


if __name__ == "__main__":
    unittest.main()
