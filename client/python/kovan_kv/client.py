"""A small synchronous client of Kovan KV, written from docs/PROTOCOL.md alone.

Frames are a 4-byte big-endian length followed by one protobuf message (``Request`` from
the client, ``Response`` from the server); the messages come from ``kv_pb2``, which the
build generates from ``proto/kv.proto`` with ``protoc --python_out``.

One ``Client`` holds one TCP connection and sends one request at a time; a lock makes it
safe to share between threads (they take turns). Keys and values are ``bytes``; ``str``
arguments are encoded as UTF-8.

Errors are raised as ``KvError`` subclasses carrying the server's code and message. A lost
connection raises ``Unavailable`` (``outcome_unknown`` is set when a write had been sent
and its answer was lost; not when the server announced the close with a notice first or
the request was not sent completely, since then it was not applied) and the next call
reconnects; a request larger than ``max_frame_bytes`` raises ``ResourceExhausted`` without
being sent; nothing is re-sent automatically except by ``transact``,
which re-runs a whole transaction after ``Conflict`` or ``TxnExpired`` only.

TLS: ``Client(..., tls=True, tls_ca="ca.pem")`` or ``Client.from_address("kovans://host:port",
tls_ca="ca.pem")`` (``ssl`` module; TLS 1.2 or later; the server certificate is verified
against ``tls_ca``, or the system trust store when it is None, and must name the host or
``tls_server_name`` unless ``tls_verify_hostname`` is False). ``tls_cert`` / ``tls_key``
give a client certificate for servers that require one (mutual TLS).
"""

from __future__ import annotations

import random
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

from . import kv_pb2 as pb

Bytes = Union[bytes, str]
T = TypeVar("T")

SERIALIZABLE = pb.SERIALIZABLE
SNAPSHOT = pb.SNAPSHOT

_HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 4 << 20


def _b(x: Bytes) -> bytes:
    return x.encode("utf-8") if isinstance(x, str) else bytes(x)


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


class KvError(Exception):
    """A non-OK status. ``code`` is the wire code name ("CONFLICT", ...)."""

    code = "INTERNAL"

    def __init__(self, message: str = "", outcome_unknown: bool = False):
        super().__init__(f"{self.code}: {message}" if message else self.code)
        self.message = message
        self.outcome_unknown = outcome_unknown


class NotFound(KvError):
    code = "NOT_FOUND"


class Conflict(KvError):
    code = "CONFLICT"


class TxnExpired(KvError):
    code = "TXN_EXPIRED"


class TxnNotFound(KvError):
    code = "TXN_NOT_FOUND"


class InvalidArgument(KvError):
    code = "INVALID_ARGUMENT"


class ResourceExhausted(KvError):
    code = "RESOURCE_EXHAUSTED"


class Unavailable(KvError):
    code = "UNAVAILABLE"


class Internal(KvError):
    code = "INTERNAL"


class StorageFailed(KvError):
    """A durable server refuses writes after a storage failure (its log could not be
    written or fsynced); the write was not acknowledged. Reads keep working."""

    code = "STORAGE_FAILED"


class Unauthenticated(KvError):
    """No successful authentication on the connection, or it failed (docs/SECURITY.md)."""
    code = "UNAUTHENTICATED"


class PermissionDenied(KvError):
    """The operation is outside the user's role or key prefix."""
    code = "PERMISSION_DENIED"


class Compacted(KvError):
    """A watch's start revision (or the revision a lagging watch needed next) is older than
    anything the server keeps. ``compact_revision``: the oldest revision available. Re-read
    the range, then watch again from the read's revision + 1."""
    code = "COMPACTED"
    compact_revision = 0
    resume_revision = 0


class LeaseNotFound(KvError):
    """The lease was never granted, was revoked, or expired."""
    code = "LEASE_NOT_FOUND"


_BY_CODE = {
    pb.Status.COMPACTED: Compacted,
    pb.Status.LEASE_NOT_FOUND: LeaseNotFound,
    pb.Status.NOT_FOUND: NotFound,
    pb.Status.CONFLICT: Conflict,
    pb.Status.TXN_EXPIRED: TxnExpired,
    pb.Status.TXN_NOT_FOUND: TxnNotFound,
    pb.Status.INVALID_ARGUMENT: InvalidArgument,
    pb.Status.RESOURCE_EXHAUSTED: ResourceExhausted,
    pb.Status.UNAVAILABLE: Unavailable,
    pb.Status.INTERNAL: Internal,
    pb.Status.STORAGE_FAILED: StorageFailed,
    pb.Status.UNAUTHENTICATED: Unauthenticated,
    pb.Status.PERMISSION_DENIED: PermissionDenied,
}


def _crc32c_table() -> List[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) of ``data``, extending ``crc`` (the CRC of the bytes before)."""
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _raise_for(status) -> None:
    if status.code != pb.Status.OK:
        # Codes added by later servers are treated as INTERNAL (PROTOCOL.md, section 4).
        err = _BY_CODE.get(status.code, Internal)(status.message)
        # A per-user rate quota says how long to wait (RESOURCE_EXHAUSTED only).
        err.retry_after_ms = status.retry_after_ms
        err.compact_revision = status.compact_revision
        raise err


def password_from(password_file: Optional[str] = None, env: str = "KOVAN_PASSWORD") -> str:
    """The first line of ``password_file`` when given, else the environment variable ``env``."""
    import os
    if password_file:
        with open(password_file, encoding="utf-8") as f:
            line = f.readline().rstrip("\r\n")
        if not line:
            raise ValueError(f"the password file {password_file} is empty")
        return line
    value = os.environ.get(env, "")
    if not value:
        raise ValueError(f"no password: give a password file or set {env}")
    return value


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclass
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    lease: int = 0

    @staticmethod
    def of(m) -> "KeyValue":
        return KeyValue(m.key, m.value, m.create_revision, m.mod_revision, m.version, m.lease)


@dataclass
class ScanResult:
    kvs: List[KeyValue]
    count: int
    more: bool
    revision: int


@dataclass
class LeaseGrant:
    id: int
    ttl_seconds: int


@dataclass
class LeaseInfo:
    id: int
    ttl_seconds: int          # remaining, rounded up
    granted_ttl_seconds: int
    keys: List[bytes] = field(default_factory=list)


@dataclass
class WatchEvent:
    type: str                        # "put" or "delete"
    kv: KeyValue                     # delete: the key, mod_revision = the delete's revision
    prev_kv: Optional[KeyValue]      # with prev_kv=True, when the key existed before
    revision: int


@dataclass
class WatchBatch:
    """Every event of one revision in the watched range (one transaction), in key order."""
    revision: int
    events: List[WatchEvent]


@dataclass
class TxnResult:
    succeeded: bool
    revision: int
    # One entry per op of the branch that ran: a KeyValue or None for get, the previous
    # KeyValue (or None) for put, the deleted count for delete / delete_range, a
    # ScanResult for scan.
    results: List[object] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# Conditional transaction builders
# --------------------------------------------------------------------------------------

_CMP_OPS = {
    "==": pb.Compare.EQUAL,
    "!=": pb.Compare.NOT_EQUAL,
    "<": pb.Compare.LESS,
    ">": pb.Compare.GREATER,
}


def compare(key: Bytes, op: str, *, value: Optional[Bytes] = None, version: Optional[int] = None,
            create_revision: Optional[int] = None, mod_revision: Optional[int] = None):
    """A Compare: ``compare("k", "==", value=b"v")``, ``compare("k", "==", version=0)``."""
    c = pb.Compare(key=_b(key), op=_CMP_OPS[op])
    if value is not None:
        c.value = _b(value)
    elif version is not None:
        c.version = version
    elif create_revision is not None:
        c.create_revision = create_revision
    elif mod_revision is not None:
        c.mod_revision = mod_revision
    else:
        raise ValueError("compare needs one of value, version, create_revision, mod_revision")
    return c


def op_get(key: Bytes):
    return pb.TxnOp(get=pb.GetRequest(key=_b(key)))


def op_put(key: Bytes, value: Bytes, prev_kv: bool = False, lease: int = 0):
    return pb.TxnOp(put=pb.PutRequest(key=_b(key), value=_b(value), prev_kv=prev_kv, lease=lease))


def op_delete(key: Bytes):
    op = pb.TxnOp()
    getattr(op, "del").key = _b(key)  # "del" is a Python keyword
    return op


def op_delete_range(start: Bytes, end: Bytes = b"", prefix: bool = False):
    return pb.TxnOp(delete_range=pb.DeleteRangeRequest(start=_b(start), end=_b(end), prefix=prefix))


def op_scan(start: Bytes = b"", end: Bytes = b"", prefix: bool = False, limit: int = 0):
    return pb.TxnOp(scan=pb.ScanRequest(start=_b(start), end=_b(end), prefix=prefix, limit=limit))


def _scan_result(m, revision: int) -> ScanResult:
    return ScanResult([KeyValue.of(kv) for kv in m.kvs], m.count, m.more, revision)


# --------------------------------------------------------------------------------------
# Connection
# --------------------------------------------------------------------------------------

_MUTATING = {"put", "del", "delete_range", "txn", "commit"}


def _tls_context(ca: Optional[str], cert: Optional[str], key: Optional[str],
                 verify_hostname: bool) -> ssl.SSLContext:
    """A client context: TLS 1.2+, the server's chain verified (against ``ca`` or the system
    store), its name checked unless ``verify_hostname`` is False."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname on
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # The server closes without close_notify (the framing shows whether a response is
    # whole), so an EOF is a normal close.
    ctx.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    if ca:
        ctx.load_verify_locations(cafile=ca)
    else:
        ctx.load_default_certs()
    if cert or key:
        if not (cert and key):
            raise InvalidArgument("a TLS client certificate needs both tls_cert and tls_key")
        ctx.load_cert_chain(cert, key)
    ctx.check_hostname = verify_hostname
    return ctx


class Client:
    """A connection to one kovan-server. See the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 7379, timeout: float = 5.0,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME, user: Optional[str] = None,
                 password: Optional[Bytes] = None, password_file: Optional[str] = None,
                 *, tls: bool = False,
                 tls_ca: Optional[str] = None, tls_cert: Optional[str] = None,
                 tls_key: Optional[str] = None, tls_server_name: Optional[str] = None,
                 tls_verify_hostname: bool = True):
        """With ``user``, every connection authenticates first (docs/SECURITY.md); the
        password is ``password``, else the first line of ``password_file``, else
        ``$KOVAN_PASSWORD``. A refusal raises ``Unauthenticated`` (or ``ResourceExhausted``
        over the user's connection quota). With ``tls``, connections use TLS
        (docs/CLIENT.md, "TLS")."""
        self.host, self.port, self.timeout = host, port, timeout
        self.max_frame_bytes = max_frame_bytes
        self.user = user
        self._password = b""
        if user:
            self._password = _b(password) if password is not None else \
                password_from(password_file).encode("utf-8")
        self._ssl: Optional[ssl.SSLContext] = None
        self._server_name = tls_server_name or host
        if tls:
            self._ssl = _tls_context(tls_ca, tls_cert, tls_key, tls_verify_hostname)
        self._lock = threading.Lock()
        self._sock: Optional[socket.socket] = None
        self._next_id = 1
        self.generation = 0  # connections opened so far
        with self._lock:
            self._connect()

    @classmethod
    def from_address(cls, address: str, **kw) -> "Client":
        """"host:port", "[v6]:port", "kovan://host:port" or "kovans://host:port" (TLS)."""
        if address.startswith("kovans://"):
            address = address[len("kovans://"):]
            kw["tls"] = True
        elif address.startswith("kovan://"):
            address = address[len("kovan://"):]
        host, _, port = address.rpartition(":")
        return cls(host.strip("[]"), int(port), **kw)

    # -- plumbing ------------------------------------------------------------------------

    def _connect(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as e:
            raise Unavailable(f"cannot connect to {self.host}:{self.port}: {e}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._ssl is not None:
            try:
                sock = self._ssl.wrap_socket(sock, server_hostname=self._server_name)
            except OSError as e:  # ssl.SSLError, including certificate verification
                sock.close()
                raise Unavailable(f"cannot connect to {self.host}:{self.port}: TLS: {e}") from None
        self._sock = sock
        self.generation += 1
        if self.user:
            req = pb.Request(id=self._next_id)
            self._next_id += 1
            req.authenticate.user = self.user
            req.authenticate.password = self._password
            payload = req.SerializeToString()
            try:
                sock.sendall(_HEADER.pack(len(payload)) + payload)
                # A failure's answer is held by the server (up to 5 s): wait for it.
                sock.settimeout(max(self.timeout, 10.0))
                resp = self._read_response()
                sock.settimeout(self.timeout)
            except (OSError, ConnectionError) as e:
                self._drop()
                raise Unavailable(f"authenticate: connection lost: {e}") from None
            if resp.status.code != pb.Status.OK:
                self._drop()
                _raise_for(resp.status)

    def authenticate(self, user: str, password: Bytes) -> str:
        """Authenticates this connection (again) as ``user``; returns the user's role.
        Reconnects authenticate as this user from then on."""
        req = pb.Request()
        req.authenticate.user = user
        req.authenticate.password = _b(password)
        resp = self._call(req, "authenticate")
        self.user, self._password = user, _b(password)
        return resp.authenticate.role

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def _recv_exact(self, n: int) -> bytes:
        assert self._sock is not None
        chunks = []
        while n > 0:
            chunk = self._sock.recv(n)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _read_response(self):
        length = _HEADER.unpack(self._recv_exact(4))[0]
        if length > self.max_frame_bytes:
            raise ConnectionError(f"response frame of {length} bytes exceeds the limit")
        resp = pb.Response()
        resp.ParseFromString(self._recv_exact(length))
        return resp

    def _call(self, req, op: str, generation: Optional[int] = None):
        """Sends one request and returns its OK response (raises on a non-OK status).

        ``generation``: the connection a transaction belongs to; if it has been replaced,
        the transaction is gone and Unavailable is raised without sending."""
        with self._lock:
            if generation is not None and (self._sock is None or generation != self.generation):
                raise Unavailable("the transaction's connection was lost")
            if self._sock is None:
                self._connect()
            req.id = self._next_id
            self._next_id += 1
            payload = req.SerializeToString()
            if len(payload) > self.max_frame_bytes:
                # The server would refuse the frame from its header and close the
                # connection; refuse it here, before anything is sent.
                raise ResourceExhausted(
                    f"request of {len(payload)} bytes exceeds the frame limit of "
                    f"{self.max_frame_bytes} bytes (max_frame_bytes); not sent: not applied")
            sent = False
            notice = None
            try:
                self._sock.sendall(_HEADER.pack(len(payload)) + payload)
                sent = True
                while True:
                    resp = self._read_response()
                    if resp.id == 0 and resp.WhichOneof("result") == "watch_events":
                        continue  # a watch push answers no request (watches use Watcher)
                    if resp.id == 0 and resp.status.code != pb.Status.INVALID_ARGUMENT:
                        # A connection notice (PROTOCOL.md 5): the server will close and
                        # executes nothing it has not answered before the notice; an
                        # answer to our request may still follow.
                        notice = resp.status
                        self._notice = resp.status.message
                        continue
                    break
            except (OSError, ConnectionError) as e:
                self._drop()
                if notice is not None:
                    # Not executed: the notice's error (a frame over the server's limit,
                    # too many connections, shutdown, idle timeout), nothing applied.
                    raise _BY_CODE.get(notice.code, Internal)(
                        f"connection closed by the server: {notice.message} "
                        f"(request not executed: not applied)") from None
                if not sent:
                    raise Unavailable(f"connection lost: {e} "
                                      f"(request not sent completely: not applied)") from None
                raise Unavailable(f"connection lost: {e}",
                                  outcome_unknown=op in _MUTATING) from None
            # An id-0 INVALID_ARGUMENT answers an unparsable frame in its place.
            if resp.id != req.id and not (resp.id == 0 and
                                          resp.status.code == pb.Status.INVALID_ARGUMENT):
                self._drop()
                raise Internal(f"response id {resp.id} does not match request id {req.id}")
        _raise_for(resp.status)
        return resp

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- one-shot operations -------------------------------------------------------------

    def ping(self, payload: Bytes = b"") -> bytes:
        return self._call(pb.Request(ping=pb.PingRequest(payload=_b(payload))), "ping").ping.payload

    def get(self, key: Bytes) -> Optional[KeyValue]:
        """The key's KeyValue, or None when it has no live value."""
        try:
            resp = self._call(pb.Request(get=pb.GetRequest(key=_b(key))), "get")
        except NotFound:
            return None
        return KeyValue.of(resp.get.kv)

    def put(self, key: Bytes, value: Bytes, prev_kv: bool = False, lease: int = 0):
        """Returns the commit revision, or (revision, previous KeyValue or None) with prev_kv.
        ``lease``: attach the key to that lease (LeaseNotFound when it is not alive)."""
        resp = self._call(pb.Request(put=pb.PutRequest(key=_b(key), value=_b(value),
                                                       prev_kv=prev_kv, lease=lease)), "put")
        if prev_kv:
            prev = KeyValue.of(resp.put.prev_kv) if resp.put.HasField("prev_kv") else None
            return resp.header.revision, prev
        return resp.header.revision

    def put_with_ttl(self, key: Bytes, value: Bytes, ttl_seconds: int) -> Tuple[int, int]:
        """Writes the key attached to a new lease of ``ttl_seconds``: (revision, lease id)."""
        resp = self._call(pb.Request(put=pb.PutRequest(key=_b(key), value=_b(value),
                                                       ttl_seconds=ttl_seconds)), "put")
        return resp.header.revision, resp.put.lease

    # -- leases --------------------------------------------------------------------------

    def lease_grant(self, ttl_seconds: int, lease_id: int = 0) -> "LeaseGrant":
        """Grants a lease (``lease_id`` 0: the server chooses the id)."""
        resp = self._call(pb.Request(lease_grant=pb.LeaseGrantRequest(
            ttl_seconds=ttl_seconds, id=lease_id)), "lease_grant")
        return LeaseGrant(resp.lease_grant.id, resp.lease_grant.ttl_seconds)

    def lease_revoke(self, lease_id: int) -> int:
        """Revokes the lease; its keys are deleted in one revision. Returns how many."""
        resp = self._call(pb.Request(lease_revoke=pb.LeaseRevokeRequest(id=lease_id)),
                          "lease_revoke")
        return resp.lease_revoke.deleted

    def lease_keepalive(self, lease_id: int) -> int:
        """Renews the lease once; returns the TTL it was renewed for."""
        resp = self._call(pb.Request(lease_keepalive=pb.LeaseKeepAliveRequest(id=lease_id)),
                          "lease_keepalive")
        return resp.lease_keepalive.ttl_seconds

    def lease_time_to_live(self, lease_id: int, keys: bool = False) -> "LeaseInfo":
        resp = self._call(pb.Request(lease_time_to_live=pb.LeaseTimeToLiveRequest(
            id=lease_id, keys=keys)), "lease_time_to_live")
        m = resp.lease_time_to_live
        return LeaseInfo(m.id, m.ttl_seconds, m.granted_ttl_seconds, list(m.keys))

    # -- watch ---------------------------------------------------------------------------

    def watch(self, key: Bytes = b"", range_end: Bytes = b"", prefix: bool = False,
              start_revision: int = 0, prev_kv: bool = False, no_put: bool = False,
              no_delete: bool = False) -> "Watcher":
        """Starts a watch on a connection of its own (same address, TLS and user) and
        returns its ``Watcher``: iterate over it for the events. ``prefix``: keys starting
        with ``key``; else ``range_end`` empty: the single key; ``b"\\0"``: every key >=
        ``key``; otherwise keys in [key, range_end). Raises Compacted when
        ``start_revision`` is older than the server keeps."""
        conn = self._sibling()
        req = pb.Request(watch=pb.WatchRequest(key=_b(key), range_end=_b(range_end),
                                               prefix=prefix, start_revision=start_revision,
                                               prev_kv=prev_kv, no_put=no_put,
                                               no_delete=no_delete))
        try:
            resp = conn._call(req, "watch")
        except BaseException:
            conn.close()
            raise
        return Watcher(conn, resp.watch.watch_id, resp.watch.start_revision)

    def _sibling(self) -> "Client":
        """A new connection with this client's settings (address, TLS context, user)."""
        conn = Client.__new__(Client)
        for name in ("host", "port", "timeout", "max_frame_bytes", "user", "_password",
                     "_ssl", "_server_name"):
            setattr(conn, name, getattr(self, name))
        conn._lock = threading.Lock()
        conn._sock = None
        conn._next_id = 1
        conn.generation = 0
        with conn._lock:
            conn._connect()
        return conn

    def delete(self, key: Bytes) -> int:
        """1 if a live key was deleted, 0 if there was none."""
        req = pb.Request()
        getattr(req, "del").key = _b(key)
        return getattr(self._call(req, "del"), "del").deleted

    def delete_range(self, start: Bytes = b"", end: Bytes = b"", prefix: bool = False) -> int:
        req = pb.Request(delete_range=pb.DeleteRangeRequest(start=_b(start), end=_b(end),
                                                            prefix=prefix))
        return self._call(req, "delete_range").delete_range.deleted

    def scan(self, start: Bytes = b"", end: Bytes = b"", prefix: bool = False, limit: int = 0,
             keys_only: bool = False, count_only: bool = False, reverse: bool = False,
             _txn_id: int = 0, _generation: Optional[int] = None) -> ScanResult:
        req = pb.Request(scan=pb.ScanRequest(start=_b(start), end=_b(end), prefix=prefix,
                                             limit=limit, keys_only=keys_only,
                                             count_only=count_only, reverse=reverse,
                                             txn_id=_txn_id))
        resp = self._call(req, "scan", _generation)
        return _scan_result(resp.scan, resp.header.revision)

    def prefix(self, p: Bytes, limit: int = 0) -> ScanResult:
        return self.scan(p, prefix=True, limit=limit)

    def txn(self, compare: Sequence = (), success: Sequence = (), failure: Sequence = ()) -> TxnResult:
        """Conditional transaction: built with compare(), op_get(), op_put(), ..."""
        req = pb.Request(txn=pb.TxnRequest(compare=list(compare), success=list(success),
                                           failure=list(failure)))
        resp = self._call(req, "txn")
        out = TxnResult(resp.txn.succeeded, resp.header.revision)
        for r in resp.txn.results:
            kind = r.WhichOneof("result")
            if kind == "get":
                out.results.append(KeyValue.of(r.get.kv) if r.get.HasField("kv") else None)
            elif kind == "put":
                out.results.append(KeyValue.of(r.put.prev_kv) if r.put.HasField("prev_kv") else None)
            elif kind == "del":
                out.results.append(getattr(r, "del").deleted)
            elif kind == "delete_range":
                out.results.append(r.delete_range.deleted)
            elif kind == "scan":
                out.results.append(_scan_result(r.scan, resp.header.revision))
        return out

    def stats(self) -> Dict[str, int]:
        """Every counter of StatsResponse by field name (zero-valued ones included)."""
        resp = self._call(pb.Request(stats=pb.StatsRequest()), "stats")
        return {f.name: getattr(resp.stats, f.name) for f in resp.stats.DESCRIPTOR.fields}

    # -- administration (durability) -----------------------------------------------------

    def checkpoint(self) -> int:
        """Writes a checkpoint now (servers with --data-dir); returns its revision."""
        return self._call(pb.Request(checkpoint=pb.CheckpointRequest()), "checkpoint") \
            .checkpoint.revision

    def save_snapshot(self, sink: Callable[[bytes], None]) -> Dict[str, int]:
        """Streams a consistent image of the store (the input of kovan-server --restore)
        to ``sink`` chunk by chunk (PROTOCOL.md 3.13). Returns revision, bytes and crc32c
        once the image is complete and its size and CRC-32C match; raises otherwise (then
        discard what ``sink`` received). A lost connection raises Unavailable: start over."""
        stream, received, crc = 0, 0, 0
        generation = None
        while True:
            req = pb.Request(snapshot=pb.SnapshotRequest(stream_id=stream, offset=received))
            resp = self._call(req, "snapshot", generation)
            generation = self.generation  # every chunk must come over the same connection
            m = resp.snapshot
            if m.stream_id == 0 or (stream and m.stream_id != stream) or m.offset != received:
                raise Internal(f"snapshot chunk for stream {m.stream_id} at {m.offset}, "
                               f"expected stream {stream} at {received}")
            stream = m.stream_id
            if m.data:
                crc = crc32c(m.data, crc)
                received += len(m.data)
                sink(m.data)
            if m.done:
                if m.total_bytes != received or m.crc32c != crc:
                    raise Internal(f"snapshot damaged in transit: received {received} bytes "
                                   f"(crc32c {crc}), the server sent {m.total_bytes} "
                                   f"(crc32c {m.crc32c})")
                return {"revision": m.revision, "bytes": received, "crc32c": crc}

    # -- interactive transactions --------------------------------------------------------

    def begin(self, isolation: int = SERIALIZABLE) -> "Transaction":
        resp = self._call(pb.Request(begin=pb.BeginRequest(isolation=isolation)), "begin")
        return Transaction(self, resp.begin.txn_id, resp.header.revision, self.generation)

    def transact(self, fn: Callable[["Transaction"], T], isolation: int = SERIALIZABLE,
                 max_attempts: int = 10, initial_backoff: float = 0.002,
                 max_backoff: float = 0.2) -> T:
        """Runs fn(txn) and commits, re-running it after Conflict or TxnExpired (jittered
        exponential backoff, at most max_attempts times). Returns fn's result; the number of
        attempts of the last call is in ``self.last_attempts``."""
        backoff = initial_backoff
        for attempt in range(1, max_attempts + 1):
            self.last_attempts = attempt
            txn = self.begin(isolation)
            try:
                result = fn(txn)
                if txn.open:
                    txn.commit()
                return result
            except (Conflict, TxnExpired):
                txn._abort_quietly()
                if attempt == max_attempts:
                    raise
            except BaseException:
                txn._abort_quietly()
                raise
            time.sleep(random.uniform(backoff / 2, backoff))
            backoff = min(backoff * 2, max_backoff)
        raise AssertionError("unreachable")


class Transaction:
    """An interactive transaction; use it as a context manager to abort it on the way out
    when it is still open."""

    def __init__(self, client: Client, txn_id: int, snapshot_revision: int, generation: int):
        self.client, self.id, self.snapshot_revision = client, txn_id, snapshot_revision
        self._generation = generation
        self.open = True

    def _call(self, req, op: str):
        if not self.open:
            raise InvalidArgument("the transaction is finished")
        try:
            return self.client._call(req, op, self._generation)
        except (TxnExpired, TxnNotFound, Unavailable, Conflict):
            self.open = False
            raise

    def get(self, key: Bytes) -> Optional[KeyValue]:
        try:
            resp = self._call(pb.Request(get=pb.GetRequest(key=_b(key), txn_id=self.id)), "get")
        except NotFound:
            return None
        return KeyValue.of(resp.get.kv)

    def put(self, key: Bytes, value: Bytes) -> None:
        self._call(pb.Request(put=pb.PutRequest(key=_b(key), value=_b(value), txn_id=self.id)), "tput")

    def delete(self, key: Bytes) -> None:
        req = pb.Request()
        d = getattr(req, "del")
        d.key = _b(key)
        d.txn_id = self.id
        self._call(req, "tdel")

    def scan(self, start: Bytes = b"", end: Bytes = b"", prefix: bool = False, limit: int = 0) -> ScanResult:
        if not self.open:
            raise InvalidArgument("the transaction is finished")
        try:
            return self.client.scan(start, end, prefix, limit, _txn_id=self.id,
                                    _generation=self._generation)
        except (TxnExpired, TxnNotFound, Unavailable):
            self.open = False
            raise

    def commit(self) -> int:
        """The commit revision. Conflict / TxnExpired: nothing was applied."""
        if not self.open:
            raise InvalidArgument("the transaction is finished")
        self.open = False
        return self.client._call(pb.Request(commit=pb.CommitRequest(txn_id=self.id)), "commit",
                                 self._generation).commit.revision

    def abort(self) -> None:
        if not self.open:
            raise InvalidArgument("the transaction is finished")
        self.open = False
        self.client._call(pb.Request(abort=pb.AbortRequest(txn_id=self.id)), "abort",
                          self._generation)

    def _abort_quietly(self) -> None:
        if self.open:
            try:
                self.abort()
            except KvError:
                pass

    def __enter__(self) -> "Transaction":
        return self

    def __exit__(self, *exc) -> None:
        self._abort_quietly()


class Watcher:
    """A watch on its own connection (from ``Client.watch``). Iterating yields
    ``WatchEvent`` objects in revision order (``batches()`` yields one ``WatchBatch`` per
    revision instead). The iteration ends after ``cancel()`` or ``close()``. When the server
    ends the watch it raises: ``Compacted`` (the watch fell behind what the server keeps:
    re-read, then watch again from the read's revision + 1), ``Unavailable`` (shutdown or
    connection lost: watch again from ``resume_revision``), or another ``KvError``; the
    exception carries ``resume_revision`` (the first revision not delivered) and
    ``compact_revision``."""

    def __init__(self, conn: Client, watch_id: int, start_revision: int):
        self._conn = conn
        self.id = watch_id
        self.start_revision = start_revision
        self.resume_revision = start_revision  # the first revision not delivered yet
        self._write_lock = threading.Lock()
        self._cancel_id: Optional[int] = None
        self._closed = False
        if conn._sock is not None:
            conn._sock.settimeout(None)  # a quiet range is not an error

    def batches(self) -> Iterator[WatchBatch]:
        pending: List[WatchEvent] = []
        while not self._closed:
            try:
                resp = self._conn._read_response()
            except (OSError, ConnectionError, ValueError) as e:
                if self._closed or self._cancel_id is not None:
                    return
                self.close()
                err = Unavailable(f"watch lost: {e}")
                err.resume_revision = self.resume_revision
                raise err from None
            if resp.id != 0:
                if resp.id == self._cancel_id:
                    self.close()
                    return
                continue
            if resp.WhichOneof("result") != "watch_events":
                continue  # a connection notice; the close follows
            m = resp.watch_events
            if m.watch_id != self.id:
                continue
            for e in m.events:
                pending.append(WatchEvent("delete" if e.type == pb.Event.DELETE else "put",
                                          KeyValue.of(e.kv),
                                          KeyValue.of(e.prev_kv) if e.HasField("prev_kv") else None,
                                          m.revision))
            if m.fragment and not m.canceled:
                continue
            if pending:
                batch = WatchBatch(m.revision, pending)
                pending = []
                self.resume_revision = m.revision + 1
                yield batch
            if m.canceled:
                self.close()
                err = _BY_CODE.get(m.cancel_code, Internal)(m.cancel_reason)
                err.compact_revision = m.compact_revision
                err.resume_revision = m.resume_revision or self.resume_revision
                raise err

    def __iter__(self) -> Iterator[WatchEvent]:
        for batch in self.batches():
            yield from batch.events

    def cancel(self) -> None:
        """Sends CANCEL_WATCH; the iteration ends when its answer arrives. Safe from
        another thread than the one iterating."""
        with self._write_lock:
            if self._closed or self._cancel_id is not None or self._conn._sock is None:
                return
            req = pb.Request(id=self._conn._next_id,
                             cancel_watch=pb.CancelWatchRequest(watch_id=self.id))
            self._conn._next_id += 1
            self._cancel_id = req.id
            payload = req.SerializeToString()
            try:
                self._conn._sock.sendall(_HEADER.pack(len(payload)) + payload)
            except OSError:
                self.close()

    def close(self) -> None:
        """Closes the watch's connection (which ends the watch on the server)."""
        self._closed = True
        sock = self._conn._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._conn._sock = None
        if sock is not None:
            sock.close()

    def __enter__(self) -> "Watcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LeaseKeepAlive:
    """Keeps a lease alive from a background thread: renews it about every ttl/3 over its
    own connection (retrying every half second after a failure) until ``stop()``; sets
    ``lost`` (with ``error``) and stops when the server says LeaseNotFound or no renewal
    succeeded for a whole TTL. ``on_lost(error)`` is called once from that thread."""

    def __init__(self, client: Client, lease_id: int, ttl_seconds: int,
                 on_lost: Optional[Callable[[KvError], None]] = None):
        self.lease_id, self.ttl = lease_id, max(1, ttl_seconds)
        self.lost = threading.Event()
        self.error: Optional[KvError] = None
        self.renewals = 0
        self._stop = threading.Event()
        self._client = client
        self._on_lost = on_lost
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        expires = time.monotonic() + self.ttl
        wait = self.ttl / 3
        while not self._stop.wait(wait):
            sent = time.monotonic()
            try:
                self.ttl = self._client.lease_keepalive(self.lease_id) or self.ttl
                self.renewals += 1
                expires = sent + self.ttl
                wait = self.ttl / 3
                continue
            except LeaseNotFound as e:
                error: KvError = e
            except KvError as e:
                if time.monotonic() < expires:
                    wait = min(0.5, max(0.0, expires - time.monotonic()))
                    continue
                error = LeaseNotFound(f"lease {self.lease_id} not renewed within its TTL: {e}")
            self.error = error
            self.lost.set()
            if self._on_lost is not None:
                self._on_lost(error)
            return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> "LeaseKeepAlive":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
