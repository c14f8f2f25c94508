#!/usr/bin/env python3
"""Builds a generalisation-check corpus from a local checkout of a public payload collection
(PayloadsAllTheThings: the "Intruder" word lists), never committed: the payloads stay where they are.

Every payload line becomes a GET with the payload URL-encoded in a query argument (CRLF payloads are
request paths, as the list writes them); at most --per-class lines per class, sampled with a fixed seed.

Usage: public_corpus.py PAYLOADS_ALL_THE_THINGS_DIR OUT.jsonl [--per-class N]
Then: cargo run --release -p vxtap-detect --example eval -- OUT.jsonl
      scripts/detect/crs_compare.sh OUT.jsonl
"""
import argparse
import glob
import json
import os
import random
import urllib.parse

LISTS = {
    "sqli": ["SQL Injection/Intruder/*"],
    "xss": ["XSS Injection/Intruders/*"],
    "cmdi": ["Command Injection/Intruder/*"],
    "lfi": ["Directory Traversal/Intruder/*", "File Inclusion/Intruders/*"],
    "xxe": ["XXE Injection/Intruders/*"],
    "nosqli": ["NoSQL Injection/Intruder/*"],
    "ssti": ["Server Side Template Injection/Intruder/*"],
    "crlf": ["CRLF Injection/Files/*"],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("out")
    ap.add_argument("--per-class", type=int, default=600)
    a = ap.parse_args()
    rnd = random.Random(1)
    n = 0
    with open(a.out, "w") as out:
        for label, globs in LISTS.items():
            seen = []
            for g in globs:
                for f in sorted(glob.glob(os.path.join(a.root, g))):
                    for line in open(f, encoding="utf-8", errors="replace"):
                        p = line.rstrip("\r\n")
                        # skip blank lines, comments and {FILE}-style templates
                        if not p.strip() or p.lstrip().startswith("#") or "{FILE}" in p.upper():
                            continue
                        if p not in seen:
                            seen.append(p)
            if len(seen) > a.per_class:
                seen = rnd.sample(seen, a.per_class)
            for p in seen:
                n += 1
                target = p if label == "crlf" else "/search?q=" + urllib.parse.quote(p, safe="")
                rec = {"id": f"pub-{label}-{n}", "label": label, "method": "GET", "target": target,
                       "headers": [["Host", "shop.example.com"], ["User-Agent", "Mozilla/5.0"], ["Accept", "*/*"]]}
                out.write(json.dumps(rec) + "\n")
    print(a.out, n)


if __name__ == "__main__":
    main()
