#!/usr/bin/env python3
"""Malformed requests against a running broker and aggregator (plain HTTP):
every route the two serve, with ids and segments that are not ids (control
characters, percent-encodings, dots, huge ones), bodies that are not JSON or
are JSON of the wrong shape, wrong methods, and Authorization headers that are
garbage. Counts the answers by status class; a 5xx, or no answer, is a finding.

    scripts/malformed.py BROKER_HOST:PORT AGGREGATOR_HOST:PORT [SEED]
"""
import http.client
import json
import random
import sys

if len(sys.argv) < 3:
    sys.exit(__doc__)
rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
good = "c-" + "0" * 24
ids = [good, "%00", "%2e%2e", "..", "c-", "c-" + "g" * 24, "C-" + "0" * 24, "x" * 5000,
       "%ff%fe", "c-000000000000000000000000%0a", "%25", "c-" + "0" * 24 + ";", "\u00e9".encode().hex()]
segments = ["j-1", "%00", "..", "a%2Fb", "x" * 300, "", "%ff", "0" * 64]
broker_routes = [("GET", "/collectives/{id}"), ("GET", "/collectives/{id}/manifest"),
                 ("POST", "/collectives/{id}/manifest"), ("GET", "/collectives/{id}/manifests/{s}"),
                 ("POST", "/collectives/{id}/commands"), ("GET", "/collectives/{id}/algorithms/{s}"),
                 ("GET", "/collectives/{id}/audits"), ("POST", "/collectives/{id}/subscriptions"),
                 ("POST", "/collectives/{id}/unsubscribe"), ("POST", "/collectives/{id}/checkin"),
                 ("POST", "/collectives/{id}/accesses"), ("GET", "/collectives/{id}/jobs"),
                 ("GET", "/collectives/{id}/jobs/{s}"), ("GET", "/collectives/{id}/models"),
                 ("GET", "/collectives/{id}/models/{s}"), ("GET", "/collectives/{id}/ledger"),
                 ("GET", "/collectives/{id}/ledger/balance"), ("GET", "/collectives/{id}/ledger/verify"),
                 ("POST", "/status-lists"), ("GET", "/keys"), ("GET", "/collectives"), ("GET", "/health")]
aggregator_routes = [("POST", "/collectives/{id}/rounds/open"), ("POST", "/collectives/{id}/rounds/close"),
                     ("POST", "/collectives/{id}/rounds/progress"), ("POST", "/collectives/{id}/updates"),
                     ("GET", "/key"), ("GET", "/health")]
bodies = [b"", b"{", b"null", b"[]", b"{}", b'{"payload": 1}', b'{"payload":"x","signer":"00","signature":"zz"}',
          json.dumps({"a": "\u0000" * 10}).encode(), b"\xff\xfe", b"1e999", b'"' + b"x" * 100000 + b'"',
          json.dumps({"payload": "{}", "signer": "0" * 64, "signature": "0" * 128}).encode()]
auths = [None, "garbage", "C2SSI-Ed25519 ", "C2SSI-Ed25519 key=00,at=1,nonce=,sig=", "C2SSI-Ed25519 " + "k=v," * 1000]


def run(address, routes, n):
    host, port = address.rsplit(":", 1)
    counts = {}
    findings = []
    for _ in range(n):
        method, route = rng.choice(routes)
        if rng.random() < 0.1:
            method = rng.choice(["PUT", "DELETE", "PATCH", "GET", "POST"])
        path = route.replace("{id}", rng.choice(ids)).replace("{s}", rng.choice(segments))
        body = rng.choice(bodies) if method != "GET" else b""
        headers = {"Content-Type": rng.choice(["application/json", "text/plain", ""])}
        auth = rng.choice(auths)
        if auth:
            headers["Authorization"] = auth
        try:
            c = http.client.HTTPConnection(host, int(port), timeout=30)
            c.request(method, path, body=body, headers=headers)
            status = c.getresponse().status
            c.close()
        except Exception as e:  # no answer is a finding too
            status = f"no answer ({type(e).__name__})"
        key = status if isinstance(status, str) else f"{status // 100}xx"
        counts[key] = counts.get(key, 0) + 1
        if not isinstance(status, int) or status >= 500:
            findings.append((method, path[:80], status))
    return counts, findings


for name, address, routes in [("broker", sys.argv[1], broker_routes), ("aggregator", sys.argv[2], aggregator_routes)]:
    counts, findings = run(address, routes, 2000)
    print(f"{name}: 2000 malformed requests: {dict(sorted(counts.items()))}")
    for f in findings[:10]:
        print("  finding:", f)
