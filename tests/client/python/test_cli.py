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

    def raw_cli(self, *args, stdin=None):
        """kovan-cli with stdout and stderr as bytes (no decoding, no newline translation)."""
        return subprocess.run([CLI_BIN, "--addr", self.server.address] + list(args),
                              input=stdin, capture_output=True, timeout=30)

    def test_limit_outside_the_unsigned_64_bit_range_is_a_usage_error(self):
        for bad in ("-1", "18446744073709551616", "99999999999999999999999", "1e3", "0x10", ""):
            r = self.cli("range", "lim/", "lim0", "--limit", bad)
            self.assertEqual(r.returncode, 2, (bad, r.stdout, r.stderr))
            self.assertEqual(r.stdout, "", bad)
            r = self.cli("range", "lim/", "lim0", "--limit=" + bad)
            self.assertEqual(r.returncode, 2, (bad, r.stdout, r.stderr))
            r = self.cli(stdin=f"range lim/ lim0 --limit '{bad}'\n")
            self.assertEqual(r.returncode, 2, (bad, r.stdout, r.stderr))
            self.assertIn("--limit", r.stderr)
        self.assertEqual(self.cli("range", "lim/", "lim0", "--limit", "18446744073709551615").returncode, 0)
        r = self.cli(stdin="range lim/ lim0 --limit 18446744073709551615\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.cli("--timeout", "-1", "ping").returncode, 2)

    def test_plain_output_escapes_control_bytes_unless_raw(self):
        # A terminal title sequence, tab, newline, CR, backslash, a NUL, a lone 0xff and
        # UTF-8 text.
        stored = b"\x1b]0;owned\x07a\tb\nc\rd\\e\x00f\xffg h\xc3\xa9 \xc2\x9b"
        script = 'put esc/k "\\x1b]0;owned\\x07a\\tb\\nc\\rd\\\\e\\0f\\xffg h\\xc3\\xa9 \\xc2\\x9b"\n'
        self.assertEqual(self.raw_cli(stdin=script.encode()).returncode, 0)
        self.assertEqual(self.raw_cli(stdin=b'put "esc/\\nk2" v\n').returncode, 0)
        escaped = b"\\x1b]0;owned\\x07a\\tb\\nc\\rd\\\\e\\x00f\\xffg h\xc3\xa9 \\xc2\\x9b"
        r = self.raw_cli("get", "esc/k")
        self.assertEqual((r.returncode, r.stdout), (0, escaped + b"\n"))
        r = self.raw_cli("range", "esc/", "--prefix")
        self.assertEqual(r.returncode, 0)
        self.assertEqual(r.stdout, b"esc/\\nk2\tv\nesc/k\t" + escaped + b"\n")
        # The shell prints the same way.
        r = self.raw_cli(stdin=b"get esc/k\n")
        self.assertEqual(r.stdout, escaped + b"\n")
        # --raw writes the bytes unchanged.
        r = self.raw_cli("--raw", "get", "esc/k")
        self.assertEqual((r.returncode, r.stdout), (0, stored + b"\n"))
        r = self.raw_cli("--raw", "range", "esc/k", "esc/l")
        self.assertEqual(r.stdout, b"esc/k\t" + stored + b"\n")
        self.assertEqual(self.raw_cli("--raw", "--json", "ping").returncode, 2)

    def test_not_found_is_a_note_on_stderr_for_get_and_del(self):
        for args in (("get", "nf/absent"), ("del", "nf/absent")):
            r = self.cli(*args)
            self.assertEqual((r.returncode, r.stdout, r.stderr), (1, "", "(not found)\n"), args)
        r = self.cli(stdin="get nf/absent\ndel nf/absent\nbegin\nget nf/absent\nabort\n")
        self.assertEqual(r.stderr.count("(not found)"), 3, r.stderr)
        self.assertNotIn("not found", r.stdout)

    def test_shell_exit_status_reports_the_first_failure(self):
        # Every command runs; the exit code is that of the first command that failed.
        r = self.cli(stdin="put ex/a 1\nget ex/missing\nping\n")
        self.assertEqual(r.returncode, 0, r.stderr)  # not found is not a failure
        r = self.cli(stdin="put ex/b 1\nbogus\nput ex/c 1\ncommit\n")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(self.cli("get", "ex/c").returncode, 0)  # went on after the error
        r = self.cli(stdin="commit\nbogus\n")
        self.assertEqual(r.returncode, 3, r.stderr)
        r = self.cli(stdin="put '' v\nping\n")
        self.assertEqual(r.returncode, 3, r.stderr)  # the server refused the empty key
        r = self.cli("--json", stdin="bogus\nping\n")
        self.assertEqual(r.returncode, 2, r.stdout)
        # quit ends the session with the same status.
        r = self.cli(stdin="commit\nquit\nping\n")
        self.assertEqual(r.returncode, 3)
        self.assertNotIn("PONG", r.stdout)

    def test_shell_stop_on_error_aborts_the_open_transaction(self):
        script = "begin\nput ex/stop 1\nput '' v\ncommit\n"
        r = self.cli("--stop-on-error", stdin=script)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertNotIn("COMMITTED", r.stdout)
        self.assertEqual(self.cli("get", "ex/stop").returncode, 1)  # aborted, not committed
        r = self.cli(stdin=script)  # without the flag the commit runs
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("COMMITTED", r.stdout)
        self.assertEqual(self.cli("get", "ex/stop").returncode, 0)

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
        self.assertEqual(r.returncode, 3, r.stderr)  # the first failure: commit without begin
        out = r.stdout
        self.assertIn("BEGIN snapshot", out)
        self.assertIn("hello world\n", out)
        self.assertIn("COMMITTED", out)
        self.assertIn("ABORTED", out)
        self.assertIn("(not found)", r.stderr)
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
            self.assertEqual(shell.wait(timeout=30), 3)  # the second commit failed
            shell.stdout.close()


if __name__ == "__main__":
    unittest.main()
