"""The Python client and kovan-cli against a kovan-server with --users (docs/SECURITY.md):
authentication on connect, the password from a file or $KOVAN_PASSWORD, the new status
codes as exceptions and exit codes, and re-authentication after a reconnect."""

import os
import subprocess
import tempfile
import unittest

import kovan_kv as kv
from kvtest import CLI_BIN, SERVER_BIN, ServerProcess


def make_hash(password):
    out = subprocess.run([SERVER_BIN, "hash-password", "--iterations", "1000"],
                         input=password + "\n", capture_output=True, text=True, check=True)
    return out.stdout.strip()


class AuthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.users = os.path.join(cls.dir.name, "users")
        with open(cls.users, "w") as f:
            f.write(f"app readwrite {make_hash('app-pw')} prefix=app/\n")
            f.write(f"ro read {make_hash('ro-pw')}\n")
        cls.pwfile = os.path.join(cls.dir.name, "pw")
        with open(cls.pwfile, "w") as f:
            f.write("app-pw\n")
        cls.server = ServerProcess("--threads", "2", "--users", cls.users)

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        cls.dir.cleanup()

    def test_unauthenticated_connection_gets_unauthenticated(self):
        c = kv.Client("127.0.0.1", self.server.port)
        try:
            self.assertEqual(c.ping(b"x"), b"x")  # ping needs no user
            with self.assertRaises(kv.Unauthenticated):
                c.put("app/never", "v")
            self.assertEqual(c.authenticate("app", "app-pw"), "readwrite")
            self.assertIsNone(c.get("app/never"))  # the refused put was not applied
        finally:
            c.close()

    def test_password_file_role_and_prefix(self):
        c = kv.Client("127.0.0.1", self.server.port, user="app", password_file=self.pwfile)
        try:
            c.put("app/k", "v")
            with self.assertRaises(kv.PermissionDenied) as e:
                c.put("other/k", "v")
            self.assertIn("prefix", e.exception.message)
            self.assertEqual(c.get("app/k").value, b"v")
        finally:
            c.close()

    def test_wrong_password_raises_unauthenticated(self):
        with self.assertRaises(kv.Unauthenticated):
            kv.Client("127.0.0.1", self.server.port, user="app", password="nope")

    def test_environment_password_and_reconnect_authenticates_again(self):
        old = os.environ.get("KOVAN_PASSWORD")
        os.environ["KOVAN_PASSWORD"] = "ro-pw"
        try:
            c = kv.Client("127.0.0.1", self.server.port, user="ro")
        finally:
            if old is None:
                del os.environ["KOVAN_PASSWORD"]
            else:
                os.environ["KOVAN_PASSWORD"] = old
        try:
            with self.assertRaises(kv.PermissionDenied):
                c.put("k", "v")
            c._drop()  # a lost connection: the next call reconnects and authenticates
            self.assertIsNone(c.get("k"))
            self.assertEqual(c.generation, 2)
        finally:
            c.close()

    def test_cli_user_with_password_file_and_env(self):
        base = [CLI_BIN, "--addr", f"127.0.0.1:{self.server.port}"]
        ok = subprocess.run(base + ["--user", "app", "--password-file", self.pwfile,
                                    "put", "app/cli", "1"], capture_output=True, text=True)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        env = dict(os.environ, KOVAN_PASSWORD="ro-pw")
        denied = subprocess.run(base + ["--user", "ro", "put", "x", "1"],
                                capture_output=True, text=True, env=env)
        self.assertEqual(denied.returncode, 3)
        self.assertIn("PERMISSION_DENIED", denied.stderr + denied.stdout)
        bad = subprocess.run(base + ["--user", "ro", "get", "x"], capture_output=True, text=True,
                             env=dict(env, KOVAN_PASSWORD="wrong"))
        self.assertEqual(bad.returncode, 3)
        self.assertIn("UNAUTHENTICATED", bad.stderr)
        nopw = subprocess.run(base + ["--user", "ro", "get", "x"], capture_output=True,
                              text=True, env={k: v for k, v in os.environ.items()
                                              if k != "KOVAN_PASSWORD"})
        self.assertEqual(nopw.returncode, 2)
        self.assertIn("KOVAN_PASSWORD", nopw.stderr)
        anon = subprocess.run(base + ["get", "x"], capture_output=True, text=True)
        self.assertEqual(anon.returncode, 3)
        self.assertIn("UNAUTHENTICATED", anon.stderr + anon.stdout)


if __name__ == "__main__":
    unittest.main()
