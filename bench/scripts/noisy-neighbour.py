#!/usr/bin/env python3
"""Noisy neighbour: how much of tenant B's service survives tenant A misbehaving.

Starts kovan-server with a users file of two tenants, then measures tenant B (kovan-bench,
closed loop) twice: alone, and while tenant A at once
  * floods writes (kovan-bench `set` workload, pipelined, as fast as it can),
  * holds interactive transactions open (begins them up to its max_txns quota and never
    finishes them, re-opening them as the server expires them), and
  * pipelines writes on connections it never reads (until the server stops reading them).
Tenant A runs under the quotas of the users file below (connections, transactions, bytes,
requests per second); B has none. With --control, a third phase measures B while A behaves:
writes at the rate of A's `rps` quota (kovan-bench open loop, --rate; the flood's answered
rate when the quota has no rps), on the flood's connections, with no transactions held open
and no unread pipelines. B's figure there is what A's quota costs B when A uses all of it
politely; the gap between it and the misbehaving phase is what the misbehaviour adds. Prints B's throughput and p99 in both phases and their
ratio; docs/BENCHMARKS.md ("Noisy neighbour") has the target (B keeps >= 90 % of its solo
throughput and its p99 within 2x) and the command.

Placement (the same in both phases, so that they compare like with like): by default every
process shares all CPUs. --server-cpus, --b-cpus and --a-cpus pin the server, B's generator
and A's generators (A's kovan-bench and this script's own threads, which are A's) with
taskset / sched_setaffinity; --a-nice lowers the priority of A's generators, so that on a
machine without spare cores they take what the server and B leave instead of competing
with them (what is measured is then what A costs the server, not what A's generators cost
the machine). --perf FILE records the server (perf record -e cpu-clock -g) during B's
measurement with A. In both phases it also reports the CPU time (user + system, from
/proc/PID/stat and the children's rusage) that the server, B's generator and A's generators
used while B ran, in cores: where the machine's time went.

Linux only (it needs the built binaries). Usage:
  bench/scripts/noisy-neighbour.py [--build build/release] [--duration 10] ...
"""

import argparse
import json
import os
import re
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", default="build/release", help="CMake build folder")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--server-threads", type=int, default=2)
    p.add_argument("--records", type=int, default=100000)
    p.add_argument("--b-workload", default="ycsb-b")
    p.add_argument("--b-connections", type=int, default=8)
    p.add_argument("--b-pipeline", type=int, default=1)
    p.add_argument("--a-connections", type=int, default=16, help="A's flooding connections")
    p.add_argument("--a-pipeline", type=int, default=16)
    p.add_argument("--a-stalled-txns", type=int, default=64, help="A's open transactions wanted")
    p.add_argument("--a-pipeliners", type=int, default=8, help="A's non-reading connections")
    p.add_argument("--a-quota", default="max_connections=32 max_txns=16 max_bytes=256MiB rps=20000",
                   help="tenant A's options in the users file")
    p.add_argument("--server-cpus", help="taskset CPU list for the server (default: all)")
    p.add_argument("--b-cpus", help="taskset CPU list for B's kovan-bench (default: all)")
    p.add_argument("--a-cpus", help="CPU list for A's generators (default: all)")
    p.add_argument("--a-nice", type=int, default=0, help="niceness of A's generators")
    p.add_argument("--control", action="store_true",
                   help="a third phase: B while A sends its admitted writes politely")
    p.add_argument("--perf", help="perf record the server into this file during B's phase with A")
    p.add_argument("--json", help="write both phases' kovan-bench results here")
    return p.parse_args()


def placed(cmd, cpus=None, nice=0):
    """`cmd` run on `cpus` (a taskset list) at niceness `nice`."""
    if cpus:
        cmd = ["taskset", "-c", cpus] + cmd
    if nice:
        cmd = ["nice", "-n", str(nice)] + cmd
    return cmd


def place_a_thread(args):
    """Called first in each of A's threads (they run in this process): A's CPUs and niceness
    for this thread only (Linux applies both per thread)."""
    tid = threading.get_native_id()
    if args.a_cpus:
        os.sched_setaffinity(tid, cpu_list(args.a_cpus))
    if args.a_nice:
        os.setpriority(os.PRIO_PROCESS, tid, args.a_nice)


def cpu_list(text):
    cpus = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def hash_password(server, password):
    out = subprocess.run([server, "hash-password", "--iterations", "1000"], input=password + "\n",
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


# -- raw protocol (docs/PROTOCOL.md) for A's stalled transactions and non-reading pipeliners --

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, payload):  # length-delimited field
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def request(rid, op_field, body):
    msg = varint(1 << 3) + varint(rid) + field(op_field, body)
    return struct.pack(">I", len(msg)) + msg


def authenticate(rid, user, password):
    return request(rid, 22, field(1, user.encode()) + field(2, password.encode()))


def put(rid, key, value):
    return request(rid, 12, field(1, key) + field(2, value))


def get(rid, key, txn=0):
    body = field(1, key) + (varint(2 << 3) + varint(txn) if txn else b"")
    return request(rid, 11, body)


def begin(rid):
    return request(rid, 17, b"")


def read_frame(sock):
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf
    (n,) = struct.unpack(">I", exact(4))
    return exact(n)


def status_code(frame):
    # Response.status (field 2) -> Status.code (field 1); absent code means OK (0).
    i = 0
    while i < len(frame):
        key, i = decode_varint(frame, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            _, i = decode_varint(frame, i)
        elif wire == 2:
            n, i = decode_varint(frame, i)
            if num == 2:
                sub = frame[i:i + n]
                if sub[:1] == b"\x08":
                    return decode_varint(sub, 1)[0]
                return 0
            i += n
        else:
            return -1
    return 0


def begin_txn_id(frame):
    # Response.begin (field 17) -> BeginResponse.txn_id (field 1)
    i = 0
    while i < len(frame):
        key, i = decode_varint(frame, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            _, i = decode_varint(frame, i)
        elif wire == 2:
            n, i = decode_varint(frame, i)
            if num == 17 and frame[i:i + 1] == b"\x08":
                return decode_varint(frame, i + 1)[0]
            i += n
    return 0


def decode_varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def connect(port, user, password):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(authenticate(1, user, password))
    code = status_code(read_frame(s))
    if code != 0:
        s.close()
        return None
    return s


class StalledTxns(threading.Thread):
    """Keeps up to `count` transactions of A open, never finishing them."""

    def __init__(self, port, count, stop, args):
        super().__init__(daemon=True)
        self.port, self.count, self.stop, self.args = port, count, stop, args
        self.open_peak = 0

    def run(self):
        place_a_thread(self.args)
        socks = []
        while not self.stop.is_set():
            held = 0
            for s in socks:
                try:
                    s.close()
                except OSError:
                    pass
            socks = []
            s = connect(self.port, "tenant-a", "a-pw")
            if s is None:
                time.sleep(0.5)
                continue
            socks.append(s)
            rid = 2
            for _ in range(self.count):
                s.sendall(begin(rid))
                rid += 1
                frame = read_frame(s)
                if status_code(frame) != 0:
                    break
                txn = begin_txn_id(frame)
                s.sendall(get(rid, b"user0", txn))  # take a snapshot
                rid += 1
                read_frame(s)
                held += 1
            self.open_peak = max(self.open_peak, held)
            self.stop.wait(1.0)  # the server expires them after --txn-timeout; open anew
        for s in socks:
            s.close()


class Pipeliner(threading.Thread):
    """Sends puts on one connection as fast as the socket takes them; never reads."""

    def __init__(self, port, stop, index, args):
        super().__init__(daemon=True)
        self.port, self.stop, self.index, self.args = port, stop, index, args
        self.sent = 0

    def run(self):
        place_a_thread(self.args)
        s = connect(self.port, "tenant-a", "a-pw")
        if s is None:
            return
        s.setblocking(False)
        batch = b"".join(put(i + 2, b"a-unread-%d-%d" % (self.index, i), b"x" * 100)
                         for i in range(256))
        while not self.stop.is_set():
            try:
                self.sent += s.send(batch)
            except BlockingIOError:
                self.stop.wait(0.05)  # the server stopped reading us: keep the pressure
            except OSError:
                break
        s.close()


def bench(bench_bin, port, user, pwfile, args, workload, connections, pipeline, duration,
          out_json, load=False, quiet=True, cpus=None, nice=0, rate=0.0):
    cmd = [bench_bin, "run", "--target", f"kovan://127.0.0.1:{port}", "--user", user,
           "--password-file", pwfile, "--workload", workload, "--records", str(args.records),
           "--connections", str(connections), "--pipeline", str(pipeline),
           "--duration", str(duration), "--warmup", str(args.warmup), "--no-progress",
           "--json", out_json]
    if load:
        cmd.append("--load")
    if rate > 0:
        cmd += ["--rate", f"{rate:.0f}"]
    if quiet:
        cmd.append("--quiet")
    return subprocess.Popen(placed(cmd, cpus, nice), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU seconds of a live process (all its threads) from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def self_cpu():
    t = os.times()
    return t.user + t.system


class CpuWindow:
    """CPU seconds used by the server, the bench process reaped inside the window (B's), the
    live processes named (A's flood) and this script (A's threads), over wall time."""

    def __init__(self, server_pid, live_pids=()):
        self.server_pid, self.live_pids = server_pid, list(live_pids)
        self.t0 = time.monotonic()
        self.s0, self.c0, self.p0 = cpu_seconds(server_pid), children_cpu(), self_cpu()
        self.l0 = [cpu_seconds(p) for p in self.live_pids]

    def close(self):
        wall = max(time.monotonic() - self.t0, 1e-9)
        return {
            "wall_s": wall,
            "server_cores": (cpu_seconds(self.server_pid) - self.s0) / wall,
            "b_generator_cores": (children_cpu() - self.c0) / wall,
            "a_generator_cores": (sum(cpu_seconds(p) for p in self.live_pids) - sum(self.l0)
                                  + self_cpu() - self.p0) / wall,
        }


def quota_rate(quota):
    """The rps=N of a users-file quota text, or 0."""
    m = re.search(r"\brps=([0-9]+)", quota)
    return float(m.group(1)) if m else 0.0


def result(proc, path):
    out, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"kovan-bench failed ({proc.returncode}): {err.strip() or out.strip()}")
    with open(path) as f:
        return json.load(f)


def main():
    args = parse_args()
    server_bin = os.path.join(args.build, "server", "kovan-server")
    bench_bin = os.path.join(args.build, "bench", "load", "kovan-bench")
    for b in (server_bin, bench_bin):
        if not os.access(b, os.X_OK):
            sys.exit(f"{b} not found: build it first (cmake --build {args.build})")
    tmp = tempfile.TemporaryDirectory(prefix="kovan-noisy-")
    users = os.path.join(tmp.name, "users")
    pw_a, pw_b = os.path.join(tmp.name, "a"), os.path.join(tmp.name, "b")
    for path, pw in ((pw_a, "a-pw"), (pw_b, "b-pw")):
        with open(path, "w") as f:
            f.write(pw + "\n")
    with open(users, "w") as f:
        f.write(f"tenant-a readwrite {hash_password(server_bin, 'a-pw')} {args.a_quota}\n")
        f.write(f"tenant-b readwrite {hash_password(server_bin, 'b-pw')}\n")
    log = open(os.path.join(tmp.name, "server.log"), "w+")
    server = subprocess.Popen(placed([server_bin, "--listen", "127.0.0.1:0", "--users", users,
                                      "--threads", str(args.server_threads),
                                      "--summary-interval", "0", "--txn-timeout", "5s"],
                                     args.server_cpus), stdout=log, stderr=subprocess.STDOUT)
    port = 0
    deadline = time.monotonic() + 20
    while port == 0 and time.monotonic() < deadline and server.poll() is None:
        log.seek(0)
        m = re.search(r"listening on [^ ]*:([0-9]+)", log.read())
        port = int(m.group(1)) if m else 0
        time.sleep(0.05)
    if port == 0:
        log.seek(0)
        server.kill()
        sys.exit("kovan-server did not start:\n" + log.read())
    try:
        solo_json = os.path.join(tmp.name, "solo.json")
        noisy_json = os.path.join(tmp.name, "noisy.json")
        flood_json = os.path.join(tmp.name, "flood.json")
        # Load B's records, then B alone.
        result(bench(bench_bin, port, "tenant-b", pw_b, args, args.b_workload,
                     args.b_connections, args.b_pipeline, 1, solo_json, load=True,
                     cpus=args.b_cpus), solo_json)
        solo_cpu = CpuWindow(server.pid)
        solo = result(bench(bench_bin, port, "tenant-b", pw_b, args, args.b_workload,
                            args.b_connections, args.b_pipeline, args.duration, solo_json,
                            cpus=args.b_cpus), solo_json)
        solo_cpu = solo_cpu.close()
        # A misbehaves; B again.
        stop = threading.Event()
        stalled = StalledTxns(port, args.a_stalled_txns, stop, args)
        pipeliners = [Pipeliner(port, stop, i, args) for i in range(args.a_pipeliners)]
        stalled.start()
        for p in pipeliners:
            p.start()
        flood = bench(bench_bin, port, "tenant-a", pw_a, args, "set", args.a_connections,
                      args.a_pipeline, args.duration + 2 * args.warmup + 2, flood_json,
                      cpus=args.a_cpus, nice=args.a_nice)
        time.sleep(args.warmup)  # let A's load build up before B is measured
        noisy_cpu = CpuWindow(server.pid, [flood.pid])
        b_run = bench(bench_bin, port, "tenant-b", pw_b, args, args.b_workload,
                      args.b_connections, args.b_pipeline, args.duration, noisy_json,
                      cpus=args.b_cpus)
        perf = None
        if args.perf:  # from B's start (its warm-up included), for --duration seconds
            perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-g", "-p",
                                     str(server.pid), "-o", args.perf, "--", "sleep",
                                     str(args.duration)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
        noisy = result(b_run, noisy_json)
        noisy_cpu = noisy_cpu.close()
        if perf is not None:
            perf.wait()
        flood_result = result(flood, flood_json)
        stop.set()
        stalled.join(10)
        for p in pipeliners:
            p.join(10)
        control = control_cpu = flood_control = None
        if args.control:
            # The server has expired or aborted A's held transactions and closed its unread
            # connections by now (their sockets are closed); A sends its writes politely.
            control_json = os.path.join(tmp.name, "control.json")
            polite_json = os.path.join(tmp.name, "polite.json")
            polite = bench(bench_bin, port, "tenant-a", pw_a, args, "set", args.a_connections,
                           args.a_pipeline, args.duration + 2 * args.warmup + 2, polite_json,
                           cpus=args.a_cpus, nice=args.a_nice,
                           rate=quota_rate(args.a_quota) or
                           max(flood_result["throughput_ops_per_s"], 1.0))
            time.sleep(args.warmup)
            control_cpu = CpuWindow(server.pid, [polite.pid])
            control = result(bench(bench_bin, port, "tenant-b", pw_b, args, args.b_workload,
                                   args.b_connections, args.b_pipeline, args.duration,
                                   control_json, cpus=args.b_cpus), control_json)
            control_cpu = control_cpu.close()
            flood_control = result(polite, polite_json)
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()

    def row(name, r):
        lat = r["latency_us"]["from_send"]
        return (f"{name:<22} {r['throughput_ops_per_s']:>12.0f} ops/s   p50 {lat['p50']:>7} us   "
                f"p99 {lat['p99']:>7} us   errors {r['errors_total']}")

    print(f"tenant B: {args.b_workload}, {args.b_connections} connections, pipeline "
          f"{args.b_pipeline}, {args.duration:g} s per phase; server --threads "
          f"{args.server_threads}; CPUs: server {args.server_cpus or 'all'}, B "
          f"{args.b_cpus or 'all'}, A {args.a_cpus or 'all'} (A's niceness {args.a_nice})")
    print(row("B alone", solo))
    print(row("B with A misbehaving", noisy))
    print(row("A's flood (set)", flood_result) + f"   (A quota: {args.a_quota})")
    if control is not None:
        print(row("B with A polite", control))
        print(row("A polite (set, open loop)", flood_control))
    print(f"A: {stalled.open_peak} transactions held open at most, "
          f"{sum(p.sent for p in pipeliners)} bytes pipelined unread on {len(pipeliners)} "
          f"connections")
    windows = [("B alone", solo_cpu), ("B with A", noisy_cpu)]
    if control is not None:
        windows.append(("A polite", control_cpu))
    for name, c in windows:
        print(f"CPU while {name:<9}: server {c['server_cores']:.2f} cores, B's generator "
              f"{c['b_generator_cores']:.2f}, A's generators {c['a_generator_cores']:.2f} "
              f"(machine: {os.cpu_count()} CPUs)")
    t_ratio = noisy["throughput_ops_per_s"] / max(solo["throughput_ops_per_s"], 1e-9)
    p99_ratio = noisy["latency_us"]["from_send"]["p99"] / max(solo["latency_us"]["from_send"]["p99"], 1)
    print(f"B keeps {100 * t_ratio:.1f} % of its solo throughput (target >= 90 %); "
          f"p99 x{p99_ratio:.2f} (target <= 2)")
    if control is not None:
        c_ratio = control["throughput_ops_per_s"] / max(solo["throughput_ops_per_s"], 1e-9)
        print(f"with A polite at its quota, B keeps {100 * c_ratio:.1f} %: the "
              f"misbehaviour itself costs B {100 * (c_ratio - t_ratio):.1f} points")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"solo": solo, "noisy": noisy, "flood": flood_result,
                       "control": control, "polite": flood_control,
                       "cpu": {"solo": solo_cpu, "noisy": noisy_cpu, "control": control_cpu}},
                      f, indent=2)


if __name__ == "__main__":
    main()
