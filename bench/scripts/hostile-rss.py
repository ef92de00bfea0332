#!/usr/bin/env python3
"""Server memory under hostile clients.

Usage:
    hostile-rss.py BINARY ATTACK [server flags...]
    hostile-rss.py BINARY all [server flags...]

Starts BINARY (a kovan-server) on 127.0.0.1:0, runs one attack (or each in turn, one
fresh server per attack) and prints one line per attack: VmRSS before the attack, VmHWM
(peak resident set) and VmRSS after it, from /proc/PID/status, whether a well-behaved
client on its own connection was still answered (a ping, and its latency), and what the
server answered the attacker. Then stops the server.

Attacks (docs/BENCHMARKS.md, "Hostile clients"):
    headers       300 connections send only a 4-byte header announcing 4 MiB (00 40 00 00)
    partial       100 connections send a 4 MiB header and 2 MiB of its payload
    pipeline      41 connections with a small SO_RCVBUF pipeline 64 `get big` (1 MB) and never read
    txn-gets      one conditional txn of 256 gets of a 1 MiB value
    scans         48 prefix scans over 16 x 1 MiB values, pipelined on 4 connections
    txn-scans     one conditional txn of 48 prefix scans over the same 16 x 1 MiB values
    puts          1500 distinct 1 MiB puts; counts how many were accepted
    txn-writeset  one interactive transaction buffers up to 700 x 1 MiB puts; counts them

Frames are built by hand from docs/PROTOCOL.md and proto/kv.proto (a 4-byte big-endian
length, then a protobuf Request), so the script needs only the Python standard library.
"""
import collections
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time

MIB = 1 << 20

# --- protobuf wire format ------------------------------------------------------------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_bytes(num, payload):
    """A length-delimited field (bytes, string or embedded message)."""
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def f_uint(num, value):
    """A varint field (uint64, bool, enum)."""
    return varint(num << 3) + varint(value)


def fields(buf):
    """Decode one message level: a list of (field number, value); varints as int,
    length-delimited fields as bytes (fixed32/fixed64 skipped)."""
    out, i = [], 0

    def read_varint():
        nonlocal i
        n = shift = 0
        while True:
            b = buf[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    while i < len(buf):
        key = read_varint()
        num, wt = key >> 3, key & 7
        if wt == 0:
            out.append((num, read_varint()))
        elif wt == 2:
            n = read_varint()
            out.append((num, bytes(buf[i:i + n])))
            i += n
        elif wt == 1:
            i += 8
        elif wt == 5:
            i += 4
        else:
            raise ValueError("bad wire type %d" % wt)
    return out


# Request oneof field numbers (kv.proto)
PING, GET, PUT, SCAN, TXN, BEGIN, ABORT = 10, 11, 12, 15, 16, 17, 19
CODES = ["OK", "NOT_FOUND", "CONFLICT", "TXN_EXPIRED", "TXN_NOT_FOUND",
         "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "UNAVAILABLE", "INTERNAL"]


def frame(rid, op, body):
    msg = f_uint(1, rid) + f_bytes(op, body)
    return struct.pack(">I", len(msg)) + msg


def get_req(rid, key, txn=0):
    return frame(rid, GET, f_bytes(1, key) + (f_uint(2, txn) if txn else b""))


def put_req(rid, key, value, txn=0):
    return frame(rid, PUT, f_bytes(1, key) + f_bytes(2, value) + (f_uint(4, txn) if txn else b""))


class Reply:
    """The parts of a Response the attacks look at."""

    def __init__(self, payload):
        top = fields(payload)
        self.id, self.code, self.message, self.result_raw = 0, 0, "", b""
        for num, v in top:
            if num == 1:
                self.id = v
            elif num == 2:  # Status {code = 1, message = 2}
                for n, sv in fields(v):
                    if n == 1:
                        self.code = sv
                    elif n == 2:
                        self.message = sv.decode(errors="replace")
            elif num >= 10:
                self.result_raw = v  # the result message, decoded by whoever needs it
        self.size = len(payload)

    @property
    def code_name(self):
        return CODES[self.code] if self.code < len(CODES) else str(self.code)


def recv_exact(s, n):
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = s.recv_into(view[got:])
        if not k:
            raise EOFError("connection closed by the server")
        got += k
    return buf


def recv_reply(s):
    (n,) = struct.unpack(">I", recv_exact(s, 4))
    return Reply(recv_exact(s, n))


def call(s, req):
    s.sendall(req)
    return recv_reply(s)


# --- the server ----------------------------------------------------------------------

def proc_status(pid, key):
    """A VmRSS/VmHWM figure in KiB from /proc/PID/status."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def kib(k):
    return "%d KiB (%.1f MiB)" % (k, k / 1024.0)


class Server:
    """kovan-server on 127.0.0.1:0; the port comes from its "listening on" log line."""

    def __init__(self, binary, flags):
        self.log = tempfile.NamedTemporaryFile(prefix="hostile-rss-", suffix=".log", delete=False)
        args = [binary, "--listen", "127.0.0.1:0", "--summary-interval", "0"]
        if "--threads" not in flags:  # two workers unless told otherwise
            args += ["--threads", "2"]
        self.p = subprocess.Popen(args + flags, stdout=self.log, stderr=subprocess.STDOUT)
        self.port, self.error = None, None
        deadline = time.time() + 10
        while time.time() < deadline:
            text = open(self.log.name, errors="replace").read()
            m = re.search(r"listening on [^ ]*:(\d+)", text)
            if m:
                self.port = int(m.group(1))
                return
            if self.p.poll() is not None:  # exited: usually a flag it does not know
                text = open(self.log.name, errors="replace").read()  # all it wrote
                self.error = " / ".join(text.split("\n")[:2]).strip(" /") or "exited"
                return
            time.sleep(0.02)
        self.error = "no 'listening on' line within 10 s"

    def connect(self, rcvbuf=None):
        s = socket.socket()
        if rcvbuf:  # must be set before connect to shrink the advertised window
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.connect(("127.0.0.1", self.port))
        return s

    def rss(self):
        return proc_status(self.p.pid, "VmRSS")

    def hwm(self):
        return proc_status(self.p.pid, "VmHWM")

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        os.unlink(self.log.name)


def well_behaved(srv, s):
    """A ping from a client that opened its connection before the attack."""
    s.settimeout(10)
    t0 = time.time()
    try:
        r = call(s, frame(999, PING, f_bytes(1, b"hello")))
        return "answered (%s) in %.0f ms" % (r.code_name, (time.time() - t0) * 1000)
    except (socket.timeout, OSError, EOFError) as e:
        return "NOT answered (%s after %.1f s)" % (type(e).__name__, time.time() - t0)


def tally(replies):
    """RESOURCE_EXHAUSTED x3, OK x5 ..."""
    c = collections.Counter(r.code_name for r in replies)
    return ", ".join("%s x%d" % (k, v) for k, v in c.most_common())


# --- attacks: each gets the server and its connection for setup; returns a note ------

def setup_big(srv, c, value=b"v" * 1000000):
    r = call(c, put_req(1, b"big", value))
    assert r.code == 0, r.message


def attack_headers(srv, c):
    # Issue 12, item 1: a header announcing 4 MiB and nothing else, 300 times.
    held = []
    for _ in range(300):
        s = srv.connect()
        s.sendall(b"\x00\x40\x00\x00")
        held.append(s)
    time.sleep(4)
    return held, "300 connections hold a 4 MiB header"


def attack_partial(srv, c):
    # A 4 MiB header followed by 2 MiB of its payload, on 100 connections.
    chunk = b"\x00\x40\x00\x00" + b"x" * (2 * MIB)
    conns = []
    for _ in range(100):
        s = srv.connect()
        s.setblocking(False)
        conns.append([s, 0])
    end = time.time() + 6
    while time.time() < end and any(sent < len(chunk) for _, sent in conns):
        for e in conns:
            if e[1] < len(chunk):
                try:
                    e[1] += e[0].send(chunk[e[1]:])
                except BlockingIOError:
                    pass
                except OSError:
                    e[1] = len(chunk)  # closed by the server
        time.sleep(0.02)
    time.sleep(3)
    sent = sum(min(sent, len(chunk)) for _, sent in conns) - 4 * len(conns)
    return [s for s, _ in conns], "%.0f MiB of payload sent" % (sent / MIB)


def attack_pipeline(srv, c):
    # Issue 12, item 5: 64 pipelined `get big` per connection, responses never read.
    setup_big(srv, c)
    reqs = b"".join(get_req(100 + i, b"big") for i in range(64))
    held = []
    for _ in range(41):
        s = srv.connect(rcvbuf=4096)
        s.setblocking(False)
        try:
            s.send(reqs)  # ~1 KB: fits the send buffer at once
        except BlockingIOError:
            pass
        held.append(s)
    time.sleep(5)
    return held, "41 x 64 gets of 1 MB pipelined, never read"


def attack_txn_gets(srv, c):
    # Issue 12, item 2: a 2 KB request whose answer is 256 copies of a 1 MiB value.
    setup_big(srv, c, b"v" * MIB)
    op = f_bytes(2, f_bytes(1, f_bytes(1, b"big")))  # success: TxnOp{get{key: "big"}}
    t0 = time.time()
    r = call(c, frame(2, TXN, op * 256))
    note = "txn answered %s in %.0f ms (%d B)" % (r.code_name, (time.time() - t0) * 1000, r.size)
    if r.message:
        note += ': "%s"' % r.message
    return [], note


PREFIX_SCAN = f_bytes(1, b"s/") + f_uint(3, 1)  # ScanRequest{start: "s/", prefix: true}


def put_scan_values(c):
    """16 values of 1 MiB under the prefix "s/"."""
    for i in range(16):
        r = call(c, put_req(10 + i, b"s/%02d" % i, b"v" * MIB))
        assert r.code == 0, r.message


def attack_scans(srv, c):
    # Issue 12, item 2: 48 prefix scans over 16 MiB, pipelined 12 per connection.
    put_scan_values(c)
    conns = [srv.connect() for _ in range(4)]
    for s in conns:
        s.sendall(b"".join(frame(100 + i, SCAN, PREFIX_SCAN) for i in range(12)))
    replies = []
    for s in conns:
        s.settimeout(30)
        for _ in range(12):
            replies.append(recv_reply(s))
    counts = [fields(r.result_raw) for r in replies if r.code == 0]
    kvs = sum(sum(1 for n, _ in f if n == 1) for f in counts)
    note = "48 scans: %s" % tally(replies)
    if counts:
        note += "; %d values returned in all" % kvs
    msgs = set(r.message for r in replies if r.message)
    if msgs:
        note += '; "%s"' % "; ".join(sorted(msgs))
    return conns, note


def attack_txn_scans(srv, c):
    # Issue 12, item 2, as first measured: 48 prefix scans over 16 MiB in one conditional txn.
    put_scan_values(c)
    op = f_bytes(2, f_bytes(5, PREFIX_SCAN))  # success: TxnOp{scan{...}}
    t0 = time.time()
    r = call(c, frame(2, TXN, op * 48))
    note = "txn answered %s in %.0f ms (%d B)" % (r.code_name, (time.time() - t0) * 1000, r.size)
    if r.message:
        note += ': "%s"' % r.message
    return [], note


def attack_puts(srv, c):
    # Issue 12, item 4: 1500 distinct 1 MiB puts, 8 in flight at a time.
    value = b"v" * MIB
    c.settimeout(30)
    replies, sent, n, window = [], 0, 1500, 8
    end = time.time() + 60
    while len(replies) < n and time.time() < end:
        while sent < n and sent - len(replies) < window:
            c.sendall(put_req(1000 + sent, b"p/%05d" % sent, value))
            sent += 1
        replies.append(recv_reply(c))
    ok = sum(1 for r in replies if r.code == 0)
    note = "%d of %d puts accepted (%s)" % (ok, n, tally(replies))
    refused = [r.message for r in replies if r.code != 0]
    if refused:
        note += '; first refusal: "%s"' % refused[0]
    return [], note


def attack_txn_writeset(srv, c):
    # Issue 12, item 4: one interactive transaction buffers 1 MiB puts until refused.
    r = call(c, frame(2, BEGIN, b""))
    if r.code != 0:
        return [], "begin refused: %s" % r.message
    txn = fields(r.result_raw)[0][1]
    value, ok, t0, last = b"v" * MIB, 0, time.time(), None
    c.settimeout(30)
    for i in range(700):
        last = call(c, put_req(10 + i, b"t/%05d" % i, value, txn))
        if last.code != 0:
            break
        ok += 1
    note = "%d of 700 puts buffered in %.1f s" % (ok, time.time() - t0)
    if last is not None and last.code != 0:
        note += '; then %s "%s"' % (last.code_name, last.message)
    call(c, frame(3, ABORT, f_uint(1, txn)))
    return [], note


ATTACKS = collections.OrderedDict([
    ("headers", attack_headers),
    ("partial", attack_partial),
    ("pipeline", attack_pipeline),
    ("txn-gets", attack_txn_gets),
    ("scans", attack_scans),
    ("txn-scans", attack_txn_scans),
    ("puts", attack_puts),
    ("txn-writeset", attack_txn_writeset),
])


def run(binary, name, flags):
    srv = Server(binary, flags)
    try:
        if srv.port is None:
            # A server that exits at once was given a flag it does not know (an older build).
            what = "flag not supported" if srv.p.poll() is not None else "server did not start"
            print("%-13s %s (%s): %s" % (name, what, " ".join(flags) or "no flags", srv.error),
                  flush=True)
            return
        setup = srv.connect()           # used for setup and by attacks that need one
        probe = srv.connect()           # the well-behaved client, connected beforehand
        time.sleep(0.5)
        before = srv.rss()
        try:
            held, note = ATTACKS[name](srv, setup)
        except (OSError, EOFError, AssertionError) as e:
            held, note = [], "attack interrupted: %s: %s" % (type(e).__name__, e)
        hwm, after = srv.hwm(), srv.rss()
        client = well_behaved(srv, probe)  # while the attack's connections are still open
        alive = srv.p.poll() is None
        print("%-13s VmRSS before %s -> VmHWM %s, VmRSS after %s | well-behaved ping %s | %s%s"
              % (name, kib(before), kib(hwm), kib(after), client, note,
                 "" if alive else " | SERVER EXITED (%s)" % srv.p.returncode), flush=True)
        for s in held:
            s.close()
    finally:
        srv.stop()


def main():
    if len(sys.argv) < 3 or (sys.argv[2] not in ATTACKS and sys.argv[2] != "all"):
        sys.exit(__doc__.strip() + "\n\nATTACK is one of: %s, all" % ", ".join(ATTACKS))
    binary, which, flags = sys.argv[1], sys.argv[2], sys.argv[3:]
    for name in (ATTACKS if which == "all" else [which]):
        run(binary, name, flags)


if __name__ == "__main__":
    main()
