#!/usr/bin/env python3
"""Unauthenticated uploads against a running broker (plain HTTP): N clients
at once each POST a manifest submission of SIZE MB without an Authorization
header, sending the whole body as fast as the server takes it. Prints the
broker's resident memory (VmRSS of PID) before, at its peak while they run,
and after, and what each client was answered.

    scripts/upload-flood.py 127.0.0.1:8080 PID [N] [SIZE_MB]
"""
import socket
import sys
import threading
import time

if len(sys.argv) < 3 or ":" not in sys.argv[1]:
    sys.exit(__doc__)
host, port = sys.argv[1].rsplit(":", 1)
pid = int(sys.argv[2])
count = int(sys.argv[3]) if len(sys.argv) > 3 else 24
size = (int(sys.argv[4]) if len(sys.argv) > 4 else 49) << 20
collective = "c-" + "0" * 24


def rss_mb():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


answers = []
peak = [rss_mb()]
before = peak[0]
chunk = b" " * (1 << 20)


def upload():
    s = socket.create_connection((host, int(port)))
    s.settimeout(120)
    head = (
        f"POST /collectives/{collective}/manifest HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    )
    status = "no answer"
    try:
        s.sendall(head.encode())
        sent = 0
        while sent < size:
            s.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass  # the server answered and closed before the body was sent
    try:
        status = s.recv(256).split(b"\r\n", 1)[0].decode(errors="replace")
    except OSError as e:
        status = f"error {e}"
    answers.append(status)
    s.close()


threads = [threading.Thread(target=upload) for _ in range(count)]
start = time.time()
for t in threads:
    t.start()
while any(t.is_alive() for t in threads):
    peak[0] = max(peak[0], rss_mb())
    time.sleep(0.02)
after = rss_mb()
print(f"{count} unauthenticated uploads of {size >> 20} MB in {time.time() - start:.2f} s")
print(f"broker VmRSS: before {before:.1f} MB, peak {peak[0]:.1f} MB (+{peak[0] - before:.1f}), after {after:.1f} MB")
for status in sorted(set(answers)):
    print(f"  {answers.count(status)} x {status}")
