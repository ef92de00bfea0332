"""kovan-cli watch and lease commands against a kovan-server child process: `watch PREFIX
--json` prints one object per event (type, key, value, mod_revision, ...) as changes are
committed, stops cleanly on SIGINT and reports the server going away; lease grant /
keepalive / ttl / revoke and put --lease / --ttl, with their --json output parsed back."""

import json
import signal
import subprocess
import threading
import unittest

from kvtest import CLI_BIN, ServerProcess, eventually


class WatchReader:
    """A `kovan-cli watch` child whose stdout lines are collected by a thread."""

    def __init__(self, args):
        self.proc = subprocess.Popen([CLI_BIN] + args, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.ready = threading.Event()
        self.stderr = []
        self._out = threading.Thread(target=self._read_out, daemon=True)
        self._err = threading.Thread(target=self._read_err, daemon=True)
        self._out.start()
        self._err.start()

    def _read_out(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def _read_err(self):
        for line in self.proc.stderr:
            self.stderr.append(line)
            if line.startswith("(watching"):
                self.ready.set()

    def objects(self):
        return [json.loads(line) for line in list(self.lines)]

    def finish(self, sig=signal.SIGINT):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=30)
        self.close()
        return rc

    def close(self):
        self._out.join(timeout=30)
        self._err.join(timeout=30)
        self.proc.stdout.close()
        self.proc.stderr.close()


class CliWatchLeaseTest(unittest.TestCase):
    def setUp(self):
        self.server = ServerProcess("--threads", "2")

    def tearDown(self):
        self.server.close()

    def cli(self, *args):
        return subprocess.run([CLI_BIN, "--addr", self.server.address] + list(args),
                              capture_output=True, text=True, timeout=30)

    def json_of(self, *args):
        r = self.cli("--json", *args)
        lines = r.stdout.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stdout + r.stderr)
        return r.returncode, json.loads(lines[0])

    def test_watch_json_prints_each_event_until_interrupted(self):
        w = WatchReader(["--addr", self.server.address, "watch", "cfg/", "--json", "--prev-kv"])
        self.assertTrue(w.ready.wait(30), "".join(w.stderr))
        rc, p1 = self.json_of("put", "cfg/a", "1")
        self.assertEqual(rc, 0)
        self.assertEqual(self.json_of("put", "cfg/a", "2")[0], 0)
        self.assertEqual(self.json_of("put", "other/x", "no")[0], 0)
        self.assertEqual(self.cli("put", "cfg/bin", "\xff").returncode, 0)
        rc, d = self.json_of("del", "cfg/a")
        self.assertEqual(rc, 0)
        self.assertTrue(eventually(lambda: len(w.lines) >= 4, 30), w.lines)
        self.assertEqual(w.finish(), 0)  # SIGINT: a clean stop
        events = w.objects()
        self.assertEqual([(e["type"], e.get("key")) for e in events],
                         [("put", "cfg/a"), ("put", "cfg/a"), ("put", "cfg/bin"), ("delete", "cfg/a")])
        self.assertEqual(events[0]["value"], "1")
        self.assertEqual(events[0]["mod_revision"], p1["revision"])
        self.assertNotIn("prev_kv", events[0])
        self.assertEqual(events[1]["prev_kv"]["value"], "1")
        self.assertEqual(events[3]["mod_revision"], d["revision"])
        self.assertEqual(events[3]["value"], "")
        # "\xff" as text is UTF-8 (c3 bf): a JSON string, like `get --json` shows it.
        self.assertEqual(events[2]["value"], "\xff")

    def test_watch_from_a_revision_and_server_loss(self):
        rc, p = self.json_of("put", "h/a", "x")
        self.assertEqual(rc, 0)
        self.assertEqual(self.json_of("put", "h/b", "y")[0], 0)
        w = WatchReader(["--addr", self.server.address, "--json", "watch", "h/",
                         "--rev", str(p["revision"])])
        self.assertTrue(eventually(lambda: len(w.lines) >= 2, 30), w.stderr)
        self.server.kill()
        rc = w.proc.wait(timeout=30)
        w.close()
        self.assertEqual(rc, 3)
        objs = w.objects()
        self.assertEqual([o.get("key") for o in objs[:2]], ["h/a", "h/b"])
        self.assertEqual(objs[-1]["ok"], False)
        self.assertEqual(objs[-1]["error"], "UNAVAILABLE")
        self.assertEqual(objs[-1]["resume_revision"], objs[1]["mod_revision"] + 1)

    def test_lease_commands_and_put_with_lease(self):
        rc, g = self.json_of("lease", "grant", "60")
        self.assertEqual(rc, 0)
        self.assertEqual(g["ttl_seconds"], 60)
        lease = str(g["id"])
        rc, p = self.json_of("put", "lk/a", "v", "--lease", lease)
        self.assertEqual((rc, p["lease"]), (0, g["id"]))
        rc, got = self.json_of("get", "lk/a")
        self.assertEqual(got["kv"]["lease"], g["id"])
        rc, k = self.json_of("lease", "keepalive", lease, "--once")
        self.assertEqual((rc, k["id"], k["ttl_seconds"]), (0, g["id"], 60))
        rc, t = self.json_of("lease", "ttl", lease, "--keys")
        self.assertEqual(rc, 0)
        self.assertEqual(t["keys"], ["lk/a"])
        self.assertEqual(t["granted_ttl_seconds"], 60)
        self.assertLessEqual(t["ttl_seconds"], 60)
        rc, r = self.json_of("lease", "revoke", lease)
        self.assertEqual((rc, r["deleted"]), (0, 1))
        self.assertEqual(self.cli("get", "lk/a").returncode, 1)
        rc, e = self.json_of("lease", "revoke", lease)
        self.assertEqual((rc, e["error"]), (1, "LEASE_NOT_FOUND"))
        rc, e = self.json_of("put", "lk/b", "v", "--lease", lease)
        self.assertEqual((rc, e["error"]), (1, "LEASE_NOT_FOUND"))
        rc, p = self.json_of("put", "lk/t", "v", "--ttl", "30")
        self.assertEqual(rc, 0)
        self.assertGreater(p["lease"], 0)
        plain = self.cli("lease", "ttl", str(p["lease"]))
        self.assertEqual(plain.returncode, 0, plain.stderr)
        self.assertIn("left of 30s", plain.stdout)

    def test_lease_keepalive_runs_until_interrupted(self):
        rc, g = self.json_of("lease", "grant", "3")
        self.assertEqual(rc, 0)
        w = WatchReader(["--addr", self.server.address, "--json", "lease", "keepalive",
                         str(g["id"])])
        # Renewed about every second: three renewals span more than the TTL.
        self.assertTrue(eventually(lambda: len(w.lines) >= 4, 30), w.stderr)
        self.assertEqual(self.json_of("lease", "ttl", str(g["id"]))[0], 0)
        self.assertEqual(w.finish(), 0)


if __name__ == "__main__":
    unittest.main()
