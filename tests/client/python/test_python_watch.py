"""The Python client's watch iterator and lease calls against a kovan-server child process:
events in revision order with prev_kv, a transaction's events in one batch, cancel from
another thread, the server going away (Unavailable with the resume revision), lease grant /
keep-alive / time-to-live / revoke, put with a lease or a TTL, and LeaseKeepAlive."""

import threading
import time
import unittest

import kovan_kv
from kovan_kv import op_put
from kvtest import ServerProcess, eventually


class PythonWatchLeaseTest(unittest.TestCase):
    def setUp(self):
        self.server = ServerProcess("--threads", "2")
        self.c = kovan_kv.Client("127.0.0.1", self.server.port)

    def tearDown(self):
        self.c.close()
        self.server.close()

    def test_iterator_yields_events_in_order_and_cancel_ends_it(self):
        r1 = self.c.put("py/a", "1")
        self.c.put("py/a", "2")
        t = self.c.txn(success=[op_put("py/b", "x"), op_put("py/c", "y"), op_put("zz", "no")])
        self.c.delete("py/a")
        w = self.c.watch("py/", prefix=True, start_revision=r1, prev_kv=True)
        batches = w.batches()
        got = [next(batches) for _ in range(4)]
        self.assertEqual([b.revision for b in got][0], r1)
        self.assertEqual([[(e.type, e.kv.key) for e in b.events] for b in got],
                         [[("put", b"py/a")], [("put", b"py/a")],
                          [("put", b"py/b"), ("put", b"py/c")], [("delete", b"py/a")]])
        self.assertEqual(got[2].revision, t.revision)
        self.assertEqual(got[1].events[0].prev_kv.value, b"1")
        self.assertIsNone(got[0].events[0].prev_kv)
        self.assertEqual(w.resume_revision, got[3].revision + 1)
        # A change made now arrives; then a cancel from another thread ends the iteration.
        r = self.c.put("py/d", "live")
        ev = next(iter(w))
        self.assertEqual((ev.kv.key, ev.kv.value, ev.revision), (b"py/d", b"live", r))
        threading.Thread(target=w.cancel).start()
        self.assertEqual(list(w), [])
        self.assertEqual(self.c.get("py/d").value, b"live")  # the main connection is fine

    def test_server_gone_raises_unavailable_with_resume_revision(self):
        w = self.c.watch("gone/", prefix=True)
        r = self.c.put("gone/a", "1")
        it = iter(w)
        self.assertEqual(next(it).revision, r)
        self.server.kill()
        with self.assertRaises(kovan_kv.Unavailable) as cm:
            next(it)
        self.assertEqual(cm.exception.resume_revision, r + 1)

    def test_leases(self):
        g = self.c.lease_grant(60)
        self.assertGreater(g.id, 0)
        self.assertEqual(g.ttl_seconds, 60)
        self.c.put("pl/a", "v", lease=g.id)
        self.assertEqual(self.c.get("pl/a").lease, g.id)
        self.assertEqual(self.c.lease_keepalive(g.id), 60)
        info = self.c.lease_time_to_live(g.id, keys=True)
        self.assertEqual((info.granted_ttl_seconds, info.keys), (60, [b"pl/a"]))
        self.assertEqual(self.c.lease_revoke(g.id), 1)
        self.assertIsNone(self.c.get("pl/a"))
        with self.assertRaises(kovan_kv.LeaseNotFound):
            self.c.lease_keepalive(g.id)
        rev, lease = self.c.put_with_ttl("pl/t", "v", 30)
        self.assertGreater(lease, 0)
        self.assertEqual(self.c.get("pl/t").mod_revision, rev)

    def test_keepalive_helper_keeps_a_short_lease(self):
        g = self.c.lease_grant(2)
        self.c.put("ka/k", "v", lease=g.id)
        keeper = kovan_kv.LeaseKeepAlive(kovan_kv.Client("127.0.0.1", self.server.port), g.id, 2)
        start = time.monotonic()
        while time.monotonic() - start < 5:  # 2.5 TTLs
            self.assertIsNotNone(self.c.get("ka/k"), "expired while kept alive")
            time.sleep(0.25)  # paces the checks
        keeper.stop()
        self.assertFalse(keeper.lost.is_set())
        self.assertGreaterEqual(keeper.renewals, 3)
        self.assertTrue(eventually(lambda: self.c.get("ka/k") is None, 20))


if __name__ == "__main__":
    unittest.main()
