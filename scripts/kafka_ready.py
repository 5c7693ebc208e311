"""Readiness probe for the dev broker: one real Kafka Metadata request (v4) over TCP, stdlib only.

Exit 0 when the broker answers with at least one broker in the cluster metadata, 1 otherwise.
Usage: kafka_ready.py HOST:PORT [TIMEOUT_S]
"""

from __future__ import annotations

import socket
import struct
import sys
import time


def metadata_brokers(host: str, port: int) -> int:
    client_id = b"streamdrift-ready"
    # Request header v1: api_key=3 (Metadata), api_version=4, correlation_id, client_id.
    header = struct.pack(">hhih", 3, 4, 7, len(client_id)) + client_id
    # Metadata v4 body: topics = null (-1: no topic detail needed), allow_auto_topic_creation=false.
    body = struct.pack(">i?", -1, False)
    payload = header + body
    with socket.create_connection((host, port), timeout=2.0) as sock:
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        size = struct.unpack(">i", _read(sock, 4))[0]
        resp = _read(sock, size)
    correlation_id, _throttle, n_brokers = struct.unpack(">iii", resp[:12])
    if correlation_id != 7:
        raise OSError("unexpected correlation id")
    return int(n_brokers)


def _read(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return buf


def main() -> int:
    host, port = sys.argv[1].rsplit(":", 1)
    deadline = time.monotonic() + (float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
    while True:
        try:
            if metadata_brokers(host, int(port)) >= 1:
                return 0
        except (OSError, struct.error):
            pass
        if time.monotonic() >= deadline:
            return 1
        time.sleep(0.25)


if __name__ == "__main__":
    sys.exit(main())
