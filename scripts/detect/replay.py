#!/usr/bin/env python3
"""Replays a labelled corpus (testdata/detect/corpus.jsonl format) to an HTTP server on 127.0.0.1 and
reports, per class, how many requests were blocked (status 403, or 400 when the server refused the
request outright), and the false-positive rate on benign requests.

Bounded: one request at a time, 5 s timeout each, loopback only (the host is fixed to 127.0.0.1).
Usage: replay.py --port N [--json OUT] CORPUS
"""
import argparse
import base64
import collections
import json
import socket
import sys


def raw_request(r):
    body = base64.b64decode(r["body_b64"]) if "body_b64" in r else r.get("body", "").encode("utf-8")
    lines = [f"{r['method']} {r['target']} HTTP/1.1"]
    names = [h[0].lower() for h in r["headers"]]
    for n, v in r["headers"]:
        lines.append(f"{n}: {v}")
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
    return head + body


def send(port, data):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        buf = b""
        while b"\r\n" not in buf and len(buf) < 4096:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    line = buf.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) >= 2 and line[1].isdigit() else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--json")
    ap.add_argument("corpus")
    a = ap.parse_args()
    per = collections.defaultdict(lambda: [0, 0, 0])  # total, blocked(403), refused(400)
    statuses = collections.Counter()
    misses = []
    for line in open(a.corpus):
        if not line.strip():
            continue
        r = json.loads(line)
        try:
            st = send(a.port, raw_request(r))
        except OSError:
            st = 0
        statuses[st] += 1
        e = per[r["label"]]
        e[0] += 1
        if st == 403:
            e[1] += 1
        elif st == 400:
            e[2] += 1
        elif r["label"] != "benign":
            misses.append(r["id"])
    total_t = total_d = 0
    print(f"{'class':<16} {'attacks':>7} {'blocked':>8} {'TPR':>8}  (403 + 400)")
    for c in sorted(k for k in per if k != "benign"):
        t, b, refused = per[c]
        total_t += t
        total_d += b + refused
        print(f"{c:<16} {t:>7} {b + refused:>8} {100.0 * (b + refused) / t:>7.2f}%  ({b} + {refused})")
    print(f"{'ALL':<16} {total_t:>7} {total_d:>8} {100.0 * total_d / max(total_t, 1):>7.2f}%")
    t, b, refused = per["benign"]
    print(f"benign {t}, blocked {b + refused} ({b} + {refused}), FPR {100.0 * (b + refused) / max(t, 1):.3f}%")
    print("statuses:", dict(statuses))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"classes": {c: v for c, v in per.items()}, "statuses": dict(statuses), "misses": misses}, f)


if __name__ == "__main__":
    sys.exit(main())
