"""The Python client (client/python/kovan_kv) against a kovan-server child process: every
operation, interactive and conditional transactions, transact() retries, a Hermitage
case (G2-item write skew) under both isolation levels, and reconnection."""

import unittest

import kovan_kv as kv
from kvtest import ServerProcess, eventually


class PythonClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = ServerProcess("--threads", "2")

    @classmethod
    def tearDownClass(cls):
        cls.server.close()

    def setUp(self):
        self.c = kv.Client("127.0.0.1", self.server.port)
        self.c.delete_range(prefix=True)  # every key

    def tearDown(self):
        self.c.close()

    def test_ping_put_get_delete(self):
        self.assertEqual(self.c.ping(b"hi"), b"hi")
        rev1 = self.c.put("k", "v1")
        rev2, prev = self.c.put(b"k", b"v2", prev_kv=True)
        self.assertGreater(rev2, rev1)
        self.assertEqual(prev.value, b"v1")
        got = self.c.get("k")
        self.assertEqual((got.value, got.create_revision, got.mod_revision, got.version),
                         (b"v2", rev1, rev2, 2))
        self.assertIsNone(self.c.get("missing"))
        self.assertEqual(self.c.delete("k"), 1)
        self.assertEqual(self.c.delete("k"), 0)
        self.assertIsNone(self.c.get("k"))

    def test_scan_and_delete_range(self):
        for k in ("a/1", "a/2", "a/3", "b"):
            self.c.put(k, k.upper())
        r = self.c.scan("a/", prefix=True, limit=2)
        self.assertEqual([kv_.key for kv_ in r.kvs], [b"a/1", b"a/2"])
        self.assertEqual((r.count, r.more), (3, True))
        r = self.c.scan("a/2", "b")
        self.assertEqual([kv_.value for kv_ in r.kvs], [b"A/2", b"A/3"])
        r = self.c.scan(reverse=True, limit=1, prefix=True)
        self.assertEqual(r.kvs[0].key, b"b")
        self.assertEqual(self.c.scan(count_only=True, prefix=True).count, 4)
        self.assertEqual(self.c.delete_range("a/", prefix=True), 3)
        self.assertEqual(self.c.prefix("").count, 1)

    def test_errors_carry_code_and_message(self):
        with self.assertRaises(kv.InvalidArgument) as e:
            self.c.put("", "v")
        self.assertTrue(e.exception.message)
        self.assertEqual(e.exception.code, "INVALID_ARGUMENT")
        with self.assertRaises(kv.InvalidArgument):
            self.c.scan("z", "a")

    def test_stats(self):
        self.c.put("s", "v")
        s = self.c.stats()
        self.assertEqual(s["keys"], 1)
        self.assertGreaterEqual(s["commits"], 1)
        self.assertIn("reclaimer_reclaimed", s)

    def test_conditional_txn(self):
        create = dict(compare=[kv.compare("lock", "==", version=0)],
                      success=[kv.op_put("lock", "me")],
                      failure=[kv.op_get("lock")])
        first = self.c.txn(**create)
        self.assertTrue(first.succeeded)
        second = self.c.txn(**create)
        self.assertFalse(second.succeeded)
        self.assertEqual(second.results[0].value, b"me")
        third = self.c.txn(compare=[kv.compare("lock", "==", value="me")],
                           success=[kv.op_delete("lock"), kv.op_get("lock"),
                                    kv.op_scan(prefix=True)])
        self.assertTrue(third.succeeded)
        self.assertEqual(third.results[0], 1)
        self.assertIsNone(third.results[1])
        self.assertEqual(third.results[2].count, 0)

    def test_interactive_transaction(self):
        other = kv.Client("127.0.0.1", self.server.port)
        try:
            with self.c.begin() as t:
                t.put("t/a", "1")
                t.put("t/b", "2")
                t.delete("t/b")
                self.assertEqual(t.get("t/a").value, b"1")
                self.assertIsNone(t.get("t/b"))
                self.assertEqual(len(t.scan("t/", prefix=True).kvs), 1)
                self.assertIsNone(other.get("t/a"))
                rev = t.commit()
            self.assertEqual(other.get("t/a").mod_revision, rev)
            with self.assertRaises(kv.InvalidArgument):
                t.commit()
            with self.c.begin(kv.SNAPSHOT) as t2:
                t2.put("t/c", "x")
            # Leaving the block aborted it.
            self.assertIsNone(self.c.get("t/c"))
            self.assertEqual(self.c.stats()["server_txns"], 0)
        finally:
            other.close()

    def test_transact_retries_a_forced_conflict(self):
        other = kv.Client("127.0.0.1", self.server.port)
        try:
            self.c.put("counter", "10")
            runs = []

            def increment(t):
                runs.append(1)
                v = int(t.get("counter").value)
                if len(runs) == 1:
                    other.put("counter", "100")  # invalidates this attempt's read
                t.put("counter", str(v + 1))

            self.c.transact(increment)
            self.assertEqual(len(runs), 2)
            self.assertEqual(self.c.last_attempts, 2)
            self.assertEqual(self.c.get("counter").value, b"101")
        finally:
            other.close()

    def test_hermitage_g2_item_write_skew(self):
        """Hermitage G2-item: two transactions read both rows, each updates a different one.
        Snapshot isolation lets both commit (write skew); serializable must not."""
        outcomes = {}
        for name, isolation in (("snapshot", kv.SNAPSHOT), ("serializable", kv.SERIALIZABLE)):
            self.c.put("g2/1", "10")
            self.c.put("g2/2", "20")
            s1 = kv.Client("127.0.0.1", self.server.port)
            s2 = kv.Client("127.0.0.1", self.server.port)
            try:
                t1 = s1.begin(isolation)
                t2 = s2.begin(isolation)
                self.assertEqual([x.value for x in t1.scan("g2/", prefix=True).kvs], [b"10", b"20"])
                self.assertEqual([x.value for x in t2.scan("g2/", prefix=True).kvs], [b"10", b"20"])
                t1.put("g2/1", "11")
                t2.put("g2/2", "21")
                t1.commit()
                try:
                    t2.commit()
                    outcomes[name] = "both committed"
                except kv.Conflict:
                    outcomes[name] = "second aborted"
                final = [x.value for x in self.c.scan("g2/", prefix=True).kvs]
                if outcomes[name] == "both committed":
                    self.assertEqual(final, [b"11", b"21"])
                else:
                    self.assertEqual(final, [b"11", b"20"])
            finally:
                s1.close()
                s2.close()
        self.assertEqual(outcomes, {"snapshot": "both committed",
                                    "serializable": "second aborted"})


class ReconnectTest(unittest.TestCase):
    def test_lost_connection_then_reconnect(self):
        server = ServerProcess("--threads", "2")
        try:
            c = kv.Client("127.0.0.1", server.port)
            c.put("k", "v")
            t = c.begin()
            t.put("k", "w")
            server.kill()
            with self.assertRaises(kv.Unavailable) as e:
                t.commit()
            self.assertTrue(e.exception.outcome_unknown)  # sent, answer lost
            with self.assertRaises(kv.Unavailable) as e:
                c.get("k")  # the server is down: reconnecting fails
            self.assertFalse(e.exception.outcome_unknown)
            server.restart()

            def pinged():
                try:
                    return c.ping(b"back") == b"back"
                except kv.Unavailable:
                    return False

            self.assertTrue(eventually(pinged))
            self.assertIsNone(c.get("k"))  # a fresh in-memory server
            with self.assertRaises(kv.InvalidArgument):
                t.commit()  # finished: never re-sent
            c.close()
        finally:
            server.close()


class FrameLimitTest(unittest.TestCase):
    """A request over the server's --max-frame-bytes is refused from its header, unread:
    the client reports it as not applied, not as a write of unknown outcome."""

    @classmethod
    def setUpClass(cls):
        cls.server = ServerProcess("--threads", "2", "--max-frame-bytes", "64KiB")

    @classmethod
    def tearDownClass(cls):
        cls.server.close()

    def test_request_refused_by_the_server_was_not_applied(self):
        c = kv.Client("127.0.0.1", self.server.port)  # accepts 4 MiB frames: it sends
        try:
            with self.assertRaises(kv.ResourceExhausted) as e:
                c.put("big", b"x" * (100 * 1024))
            self.assertFalse(e.exception.outcome_unknown)
            self.assertIn("not applied", e.exception.message)
            self.assertIn("exceeds the limit", e.exception.message)
            self.assertIsNone(c.get("big"))  # reconnects
            self.assertEqual(c.generation, 2)
        finally:
            c.close()

    def test_request_over_the_clients_limit_is_not_sent(self):
        c = kv.Client("127.0.0.1", self.server.port, max_frame_bytes=64 * 1024)
        try:
            with self.assertRaises(kv.ResourceExhausted) as e:
                c.put("big", b"x" * (100 * 1024))
            self.assertFalse(e.exception.outcome_unknown)
            self.assertIn("not applied", e.exception.message)
            self.assertIsNone(c.get("big"))
            self.assertEqual(c.generation, 1)  # the connection was kept
        finally:
            c.close()


class DurabilityOpsTest(unittest.TestCase):
    """CHECKPOINT, SNAPSHOT and STORAGE_FAILED in the Python client (in-memory server: the
    durable behaviour itself is tested with kovan-server processes in tests/server)."""

    @classmethod
    def setUpClass(cls):
        cls.server = ServerProcess("--threads", "1")

    @classmethod
    def tearDownClass(cls):
        cls.server.close()

    def test_checkpoint_needs_a_data_dir(self):
        with kv.Client("127.0.0.1", self.server.port) as c:
            with self.assertRaises(kv.InvalidArgument) as e:
                c.checkpoint()
            self.assertIn("--data-dir", e.exception.message)

    def test_save_snapshot_checks_size_and_crc(self):
        with kv.Client("127.0.0.1", self.server.port) as c:
            for i in range(50):
                c.put(f"s{i}", "x" * 100)
            chunks = []
            info = c.save_snapshot(chunks.append)
            image = b"".join(chunks)
            self.assertEqual(info["bytes"], len(image))
            self.assertEqual(info["crc32c"], kv.crc32c(image))
            self.assertEqual(info["revision"], c.stats()["revision"])

    def test_storage_failed_code_maps_to_its_error(self):
        from kovan_kv import kv_pb2 as pb
        from kovan_kv.client import _raise_for
        with self.assertRaises(kv.StorageFailed) as e:
            _raise_for(pb.Status(code=pb.Status.STORAGE_FAILED, message="fsync failed"))
        self.assertEqual(e.exception.code, "STORAGE_FAILED")
        self.assertEqual(kv.crc32c(b"123456789"), 0xE3069283)


if __name__ == "__main__":
    unittest.main()
