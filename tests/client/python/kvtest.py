"""A kovan-server child process for the Python suites: started on 127.0.0.1 with port 0,
its port read from the "listening on HOST:PORT" start-up line, readiness polled with a
deadline."""

import os
import re
import signal
import subprocess
import tempfile
import time

SERVER_BIN = os.environ.get("KOVAN_SERVER_BIN", "")
CLI_BIN = os.environ.get("KOVAN_CLI_BIN", "")


def eventually(predicate, deadline=10.0):
    """Polls predicate until it returns a truthy value or the deadline passes."""
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value or time.monotonic() >= end:
            return value
        time.sleep(0.005)


class ServerProcess:
    def __init__(self, *args, port=0):
        if not SERVER_BIN:
            raise RuntimeError("KOVAN_SERVER_BIN is not set")
        self.args = list(args)
        self.log = tempfile.NamedTemporaryFile(prefix="kovan-py-", suffix=".log", delete=False)
        self.proc = None
        self.port = 0
        self._start(port)

    def _start(self, port):
        self.log.seek(0)
        self.log.truncate()
        self.proc = subprocess.Popen(
            [SERVER_BIN, "--listen", f"127.0.0.1:{port}", "--summary-interval", "0"] + self.args,
            stdout=self.log, stderr=subprocess.STDOUT)

        def found():
            m = re.search(r"listening on [^ ]*:(\d+)", self.output())
            return int(m.group(1)) if m else (self.proc.poll() is not None and -1)

        got = eventually(found)
        if not got or got < 0:
            raise RuntimeError("kovan-server did not start:\n" + self.output())
        self.port = got

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def output(self):
        with open(self.log.name, encoding="utf-8", errors="replace") as f:
            return f.read()

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def restart(self):
        self.kill()
        self._start(self.port)

    def close(self):
        self.kill()
        self.log.close()
        os.unlink(self.log.name)
