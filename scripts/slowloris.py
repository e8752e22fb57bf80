#!/usr/bin/env python3
"""Slow clients against a running broker or aggregator: opens N connections
that each send half a request head and nothing more, then asks /health as a
real client would, then waits for the server to close every slow one.

    scripts/slowloris.py 127.0.0.1:8081 [N]
"""
import socket
import sys
import time
import urllib.request

if len(sys.argv) < 2 or ":" not in sys.argv[1]:
    sys.exit(__doc__)
host, port = sys.argv[1].rsplit(":", 1)
count = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
address = (host, int(port))
connections = []
start = time.time()
for _ in range(count):
    s = socket.create_connection(address)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: sl")
    connections.append(s)
print(f"opened {count} slow connections in {time.time() - start:.2f} s")
asked = time.time()
body = urllib.request.urlopen(f"http://{host}:{port}/health", timeout=60).read()
print(f"a real client was answered in {time.time() - asked:.3f} s: {body.decode()}")
last = 0.0
for s in connections:
    s.settimeout(60)
    try:
        while s.recv(256):
            pass
    except OSError:
        pass
    last = time.time() - start
print(f"the server closed all {count} within {last:.2f} s of the first being opened")
