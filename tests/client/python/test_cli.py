"""kovan-cli against a kovan-server child process: every one-shot command, exit codes,
--json output parsed back, and the shell driven through stdin."""

import json
import subprocess
import unittest

from kvtest import CLI_BIN, ServerProcess


class CliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = ServerProcess("--threads", "2")

    @classmethod
    def tearDownClass(cls):
        cls.server.close()

    def cli(self, *args, stdin=None, addr=None):
        return subprocess.run([CLI_BIN, "--addr", addr or self.server.address] + list(args),
                              input=stdin, capture_output=True, text=True, timeout=30)

    def json_of(self, *args):
        r = self.cli("--json", *args)
        lines = r.stdout.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stdout + r.stderr)
        return r.returncode, json.loads(lines[0])

    def test_put_get_del_plain(self):
        r = self.cli("put", "plain/k", "a value with spaces")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("OK"))
        r = self.cli("get", "plain/k")
        self.assertEqual((r.returncode, r.stdout), (0, "a value with spaces\n"))
        r = self.cli("del", "plain/k")
        self.assertEqual(r.returncode, 0)
        r = self.cli("get", "plain/k")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")
        r = self.cli("del", "plain/k")
        self.assertEqual(r.returncode, 1)

    def test_json_output_parses_back(self):
        rc, put = self.json_of("put", "json/k", 'quote " and \\ tab\t')
        self.assertEqual(rc, 0)
        self.assertTrue(put["ok"])
        rc, got = self.json_of("get", "json/k")
        self.assertEqual(rc, 0)
        self.assertEqual(got["kv"]["value"], 'quote " and \\ tab\t')
        self.assertEqual(got["kv"]["mod_revision"], put["revision"])
        self.assertEqual(got["kv"]["version"], 1)
        rc, missing = self.json_of("get", "json/absent")
        self.assertEqual((rc, missing["ok"], missing["error"]), (1, False, "NOT_FOUND"))
        rc, deleted = self.json_of("del", "json/k")
        self.assertEqual((rc, deleted["deleted"]), (0, 1))

    def test_range_prefix_limit(self):
        for k in ("r/a", "r/b", "r/c", "s/a"):
            self.assertEqual(self.cli("put", k, "v-" + k).returncode, 0)
        rc, out = self.json_of("range", "r/", "--prefix")
        self.assertEqual(rc, 0)
        self.assertEqual([kv["key"] for kv in out["kvs"]], ["r/a", "r/b", "r/c"])
        self.assertEqual(out["count"], 3)
        self.assertFalse(out["more"])
        rc, out = self.json_of("range", "r/b", "s/b", "--limit", "2")
        self.assertEqual([kv["key"] for kv in out["kvs"]], ["r/b", "r/c"])
        self.assertTrue(out["more"])
        self.assertEqual(out["count"], 3)
        r = self.cli("range", "r/a", "r/c")
        self.assertEqual(r.stdout, "r/a\tv-r/a\nr/b\tv-r/b\n")

    def test_stats_and_ping(self):
        rc, stats = self.json_of("stats")
        self.assertEqual(rc, 0)
        for name in ("revision", "keys", "commits", "connections", "reclaimer_retired"):
            self.assertIn(name, stats)
        self.assertGreaterEqual(stats["connections"], 1)
        rc, ping = self.json_of("ping")
        self.assertEqual(rc, 0)
        self.assertTrue(ping["ok"])
        self.assertGreaterEqual(ping["latency_us"], 0)
        r = self.cli("ping")
        self.assertTrue(r.stdout.startswith("PONG"))

    def test_binary_value_is_base64_in_json(self):
        # Written through the shell with a \x escape, read back as base64.
        r = self.cli(stdin='put bin/k "\\xff\\x00a"\n')
        self.assertEqual(r.returncode, 0, r.stderr)
        rc, got = self.json_of("get", "bin/k")
        self.assertEqual(got["kv"]["value_base64"], "/wBh")

    def test_exit_codes(self):
        self.assertEqual(self.cli("get").returncode, 2)
        self.assertEqual(self.cli("frobnicate").returncode, 2)
        self.assertEqual(self.cli("range", "a", "b", "--prefix").returncode, 2)
        self.assertEqual(self.cli("ping", addr="not-an-address").returncode, 2)
        self.assertEqual(self.cli("--help").returncode, 0)
        # Server errors: an empty key is INVALID_ARGUMENT from the server.
        r = self.cli("--json", "put", "", "v")
        self.assertEqual(r.returncode, 3)
        self.assertEqual(json.loads(r.stdout)["error"], "INVALID_ARGUMENT")

    def test_connection_error_exits_3(self):
        gone = ServerProcess()
        addr = gone.address
        gone.close()
        r = self.cli("ping", addr=addr)
        self.assertEqual(r.returncode, 3)
        self.assertIn("UNAVAILABLE", r.stderr)

    def test_shell_script_through_stdin(self):
        script = "\n".join([
            "help",
            "put sh/plain 'one two'",
            "begin snapshot",
            'put sh/a "hello world"',
            "get sh/a",
            "del sh/plain",
            "range sh/ --prefix",
            "commit",
            "begin",
            "put sh/b discarded",
            "abort",
            "get sh/b",
            "commit",
            "bogus command",
            "put 'unterminated",
        ]) + "\n"
        r = self.cli(stdin=script)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout
        self.assertIn("BEGIN snapshot", out)
        self.assertIn("hello world\n", out)
        self.assertIn("COMMITTED", out)
        self.assertIn("ABORTED", out)
        self.assertIn("(not found)", out)
        self.assertIn("no open transaction", r.stderr)
        self.assertIn("unknown command", r.stderr)
        self.assertIn("unterminated", r.stderr)
        self.assertEqual(self.cli("get", "sh/a").stdout, "hello world\n")
        self.assertEqual(self.cli("get", "sh/plain").returncode, 1)  # deleted in the txn
        self.assertEqual(self.cli("get", "sh/b").returncode, 1)      # aborted

    def test_shell_transaction_is_invisible_until_commit(self):
        shell = subprocess.Popen([CLI_BIN, "--addr", self.server.address, "--json"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            def send(line):
                shell.stdin.write(line + "\n")
                shell.stdin.flush()
                return json.loads(shell.stdout.readline())

            begun = send("begin serializable")
            self.assertTrue(begun["ok"])
            self.assertEqual(begun["isolation"], "serializable")
            self.assertTrue(send("put iso/k 'from the shell'")["ok"])
            self.assertEqual(send("get iso/k")["kv"]["value"], "from the shell")
            # Another client does not see the buffered write...
            self.assertEqual(self.cli("get", "iso/k").returncode, 1)
            committed = send("commit")
            self.assertTrue(committed["ok"])
            # ...until the commit.
            rc, got = self.json_of("get", "iso/k")
            self.assertEqual(got["kv"]["value"], "from the shell")
            self.assertEqual(got["kv"]["mod_revision"], committed["revision"])
            self.assertFalse(send("commit")["ok"])
        finally:
            shell.stdin.close()
            self.assertEqual(shell.wait(timeout=30), 0)
            shell.stdout.close()


if __name__ == "__main__":
    unittest.main()
