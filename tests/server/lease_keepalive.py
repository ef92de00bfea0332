#!/usr/bin/env python3
"""A lease holder for tests/server/lease_process_test.cpp: connects to a kovan-server with a
raw socket, renews one lease (LeaseKeepAlive) every PERIOD seconds and prints "renewed N"
after each successful answer, until it is killed. Exits 3 when a renewal fails.

usage: lease_keepalive.py PORT LEASE_ID PERIOD_SECONDS

The protobuf messages are encoded by hand (no protobuf module needed): Request { id = 1;
lease_keepalive = 29 { id = 1 } }, framed as a 4-byte big-endian length and the payload.
"""
import socket
import struct
import sys
import time


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


def read_varint(buf, pos):
    shift = 0
    value = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def fields(buf):
    """(field number, wire type, value) of a protobuf message; values of type 2 are bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, pos = read_varint(buf, pos)
        elif wt == 2:
            n, pos = read_varint(buf, pos)
            v = buf[pos:pos + n]
            pos += n
        elif wt == 1:
            v = buf[pos:pos + 8]
            pos += 8
        elif wt == 5:
            v = buf[pos:pos + 4]
            pos += 4
        else:
            raise ValueError("wire type %d" % wt)
        yield num, wt, v


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def main():
    port, lease, period = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    request_id = 0
    while True:
        request_id += 1
        inner = b"\x08" + varint(lease)  # LeaseKeepAliveRequest.id = 1
        payload = b"\x08" + varint(request_id) + varint((29 << 3) | 2) + varint(len(inner)) + inner
        sock.sendall(struct.pack(">I", len(payload)) + payload)
        (length,) = struct.unpack(">I", recv_exact(sock, 4))
        response = recv_exact(sock, length)
        code = 0
        for num, wt, v in fields(response):
            if num == 2 and wt == 2:  # Response.status
                for n2, w2, v2 in fields(v):
                    if n2 == 1 and w2 == 0:
                        code = v2
        if code != 0:
            print("renewal failed with code %d" % code, flush=True)
            sys.exit(3)
        print("renewed %d" % request_id, flush=True)
        time.sleep(period)


if __name__ == "__main__":
    main()
