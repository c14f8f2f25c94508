#!/usr/bin/env python3
"""vxtap end-to-end lab: HTTP client cases, event checker and helpers (stdlib only).

Subcommands (run.sh drives them; each can be used by hand):
  client        run the HTTP client cases against nginx, record every request in sent.jsonl
  hold          open a keep-alive connection, send requests, keep it open until a file appears
  check         match vxtap's EVE events to the recorded requests; exit 1 on any difference
  tshark-check  plumbing check: every client byte is in the mirrored VXLAN capture
  offload-off   turn off segmentation/GRO offloads of a network device (ethtool ioctl)
  wait-http     poll an HTTP URL until it answers
  wait-tcp      poll a TCP address until it accepts
  udp-drops     print the UDP receive-error counters of the current network namespace
  selftest      unit tests of the checker (and the HTTP helpers) on hand-written data
"""

import argparse
import base64
import codecs
import ctypes
import fcntl
import hashlib
import ipaddress
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid

# ---------------------------------------------------------------------------
# small helpers

TIMEOUT = 10.0  # every socket operation of the client is bounded by this


def b64(b):
    return base64.b64encode(b).decode("ascii")


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def _contract_escape(err):
    """CONTRACT.md: bytes that are not UTF-8 are written as \\u00XX escapes of the byte."""
    bad = err.object[err.start:err.end]
    return "".join(chr(c) for c in bad), err.end


codecs.register_error("vxtap_u00xx", _contract_escape)


def contract_str(b):
    """The Python string a JSON parser yields for bytes `b` written per the contract."""
    return b.decode("utf-8", errors="vxtap_u00xx")


def norm_ip(s):
    try:
        return str(ipaddress.ip_address(s))
    except (ValueError, TypeError):
        return s


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# HTTP/1 response reader over a raw socket


class HTTPError(Exception):
    pass


class Conn:
    """A raw TCP connection with a receive buffer and a response parser."""

    def __init__(self, host, port, timeout=TIMEOUT, nodelay=False):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if nodelay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.connect((host, port))
        self.buf = b""
        self.eof = False
        self.bytes_sent = 0
        self.bytes_recv = 0
        la = self.sock.getsockname()
        ra = self.sock.getpeername()
        self.src_ip, self.src_port = norm_ip(la[0]), la[1]
        self.dst_ip, self.dst_port = norm_ip(ra[0]), ra[1]

    def send(self, data):
        self.sock.sendall(data)
        self.bytes_sent += len(data)

    def _fill(self):
        if self.eof:
            raise HTTPError("connection closed by peer")
        d = self.sock.recv(262144)
        if not d:
            self.eof = True
            raise HTTPError("connection closed by peer")
        self.bytes_recv += len(d)
        self.buf += d

    def _line(self, limit=65536):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            if len(self.buf) > limit:
                raise HTTPError("line too long")
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def read_head(self):
        line = self._line()
        parts = line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise HTTPError("bad status line %r" % line[:80])
        version, status = parts[0], int(parts[1])
        headers = []
        while True:
            h = self._line()
            if h == b"":
                break
            k, _, v = h.partition(b":")
            headers.append((k.strip().lower(), v.strip()))
        return version, status, headers

    def read_response(self, method="GET", expect_continue=False):
        """Read one final response (1xx skipped unless expect_continue and it is a 100).

        Returns (status, headers, body, close).
        """
        while True:
            version, status, headers = self.read_head()
            if 100 <= status < 200:
                if expect_continue and status == 100:
                    return status, headers, b"", False
                continue
            break
        h = dict(headers)
        conn_hdr = h.get(b"connection", b"").lower()
        close = conn_hdr == b"close" or (version == b"HTTP/1.0" and conn_hdr != b"keep-alive")
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif b"chunked" in h.get(b"transfer-encoding", b"").lower():
            body = b""
            while True:
                size = int(self._line().split(b";")[0].strip(), 16)
                if size == 0:
                    while self._line() != b"":
                        pass
                    break
                body += self._exact(size)
                if self._exact(2) != b"\r\n":
                    raise HTTPError("bad chunk end")
        elif b"content-length" in h:
            body = self._exact(int(h[b"content-length"]))
        else:
            close = True
            while True:
                try:
                    self._fill()
                except HTTPError:
                    break
            body, self.buf = self.buf, b""
        return status, headers, body, close

    def read_to_close(self, limit_s=TIMEOUT):
        end = time.time() + limit_s
        while time.time() < end:
            try:
                self._fill()
            except (HTTPError, OSError):
                break
        d, self.buf = self.buf, b""
        return d

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------
# request building and recording


class Request:
    """One request as sent on the wire, and what the checker must find for it."""

    def __init__(self, case, method, target, headers, body=b"", framing="cl", version="HTTP/1.1",
                 chunks=None, trailers=None, chunk_ext=False):
        self.case = case
        self.method = method
        self.target = target if isinstance(target, bytes) else target.encode("latin-1")
        self.headers = list(headers)  # [(name, value)] str, sent as-is, in order
        self.body = body  # decoded body (what the event must carry)
        self.framing = framing  # "cl" | "chunked" | "none"
        self.version = version
        self.chunks = chunks
        self.trailers = trailers or []
        self.chunk_ext = chunk_ext
        if framing == "cl":
            self.headers.append(("Content-Length", str(len(body))))
        elif framing == "chunked":
            self.headers.append(("Transfer-Encoding", "chunked"))
        self.status = None
        self.ok = False
        self.error = None
        self.conn = None

    def head_bytes(self):
        out = b"%s %s %s\r\n" % (self.method.encode(), self.target, self.version.encode())
        for k, v in self.headers:
            out += k.encode("latin-1") + b": " + v.encode("latin-1") + b"\r\n"
        return out + b"\r\n"

    def body_bytes(self):
        if self.framing != "chunked":
            return self.body
        chunks = self.chunks or [self.body]
        out = b""
        for i, c in enumerate(chunks):
            ext = b";ext%d=v" % i if self.chunk_ext else b""
            out += b"%x%s\r\n%s\r\n" % (len(c), ext, c)
        out += b"0\r\n"
        for k, v in self.trailers:
            out += k.encode() + b": " + v.encode() + b"\r\n"
        return out + b"\r\n"

    def wire(self):
        return self.head_bytes() + self.body_bytes()

    def record(self):
        r = {
            "kind": "request", "case": self.case, "method": self.method,
            "target": contract_str(self.target), "target_b64": b64(self.target),
            "version": self.version, "headers": [[k, v] for k, v in self.headers],
            "framing": self.framing, "body_len": len(self.body), "body_sha256": sha256(self.body),
            "status": self.status, "client_ok": self.ok, "error": self.error,
        }
        if len(self.body) <= 65536:
            r["body_b64"] = b64(self.body)
        if self.conn is not None:
            r.update(src_ip=self.conn.src_ip, src_port=self.conn.src_port,
                     dst_ip=self.conn.dst_ip, dst_port=self.conn.dst_port)
        return r


class Recorder:
    def __init__(self, outdir, name="sent.jsonl"):
        self.lock = threading.Lock()
        self.f = open(os.path.join(outdir, name), "w")
        self.cf = open(os.path.join(outdir, name.replace("sent", "conns")), "w")
        self.errors = []
        self.counts = {}

    def add(self, req):
        with self.lock:
            self.f.write(json.dumps(req.record()) + "\n")
            self.f.flush()
            self.counts[req.case] = self.counts.get(req.case, 0) + 1
            if not req.ok:
                self.errors.append("%s %s: %s" % (req.case, contract_str(req.target)[:80], req.error))

    def noise(self, case, conn, nbytes):
        with self.lock:
            self.f.write(json.dumps({"kind": "noise", "case": case, "src_ip": conn.src_ip,
                                     "src_port": conn.src_port, "dst_ip": conn.dst_ip,
                                     "dst_port": conn.dst_port, "bytes": nbytes}) + "\n")
            self.f.flush()
            self.counts[case] = self.counts.get(case, 0) + 1

    def conn(self, case, conn):
        with self.lock:
            self.cf.write(json.dumps({"case": case, "src_ip": conn.src_ip, "src_port": conn.src_port,
                                      "dst_ip": conn.dst_ip, "dst_port": conn.dst_port,
                                      "bytes_sent": conn.bytes_sent,
                                      "bytes_recv": conn.bytes_recv}) + "\n")
            self.cf.flush()

    def close(self):
        self.f.close()
        self.cf.close()


def verify_response(req, status, body):
    """nginx's backend answers `ok m=<method> len=<content_length>`: proves nginx read the whole body."""
    req.status = status
    if req.method == "HEAD":
        req.ok = status == 200
    elif status != 200:
        req.ok = False
        req.error = "status %d" % status
        return
    else:
        want = b"len=%d" % len(req.body) if req.body else b"len="
        got = body.strip().split(b" ")[-1] if body else b""
        req.ok = got == want or (not req.body and got == b"len=0")
        if not req.ok:
            req.error = "nginx saw %r, want %r" % (got, want)


class Cases:
    def __init__(self, host4, host6, port, rec, seed):
        self.h4, self.h6, self.port, self.rec = host4, host6, port, rec
        self.rng = random.Random(seed)
        self.n = 0
        self.nlock = threading.Lock()

    def target(self, case, extra=""):
        with self.nlock:
            self.n += 1
            n = self.n
        return "/case/%s/%d?id=%s%s" % (case, n, uuid.UUID(int=self.rng.getrandbits(128)), extra)

    def rbytes(self, n):
        return self.rng.getrandbits(8 * n).to_bytes(n, "little") if n else b""

    def rtext(self, n):
        words = [b"lorem", b"ipsum", b"dolor", b"sit", b"amet", b"vxtap", b"mirror", b"\n"]
        out = bytearray()
        while len(out) < n:
            out += self.rng.choice(words) + b" "
        return bytes(out[:n])

    def host_hdr(self, host):
        return "[%s]" % host if ":" in host else host

    def req(self, case, method="GET", host=None, body=b"", framing=None, extra_headers=(),
            target=None, **kw):
        host = host or self.h4
        hdrs = [("Host", self.host_hdr(host)), ("User-Agent", "vxtap-lab/1"), ("Accept", "*/*")]
        hdrs += list(extra_headers)
        if framing is None:
            framing = "cl" if (body or method in ("POST", "PUT", "PATCH")) else "none"
        return Request(case, method, target or self.target(case), hdrs, body, framing, **kw)

    # -- one request per connection, the usual way
    def one(self, req, host=None, close=True):
        host = host or self.h4
        c = None
        try:
            c = Conn(host, self.port)
            req.conn = c
            if close:
                req.headers.insert(len(req.headers) - (0 if req.framing == "none" else 1),
                                   ("Connection", "close"))
            c.send(req.wire())
            status, _, body, _ = c.read_response(req.method)
            verify_response(req, status, body)
        except (OSError, HTTPError, ValueError) as e:
            req.error = "%s: %s" % (type(e).__name__, e)
        finally:
            self.rec.add(req)
            if c:
                c.close()
                self.rec.conn(req.case, c)

    # -- a keep-alive connection running a list of requests one after another
    def keepalive(self, reqs, host=None, nodelay=False):
        host = host or self.h4
        c = None
        try:
            c = Conn(host, self.port, nodelay=nodelay)
            for r in reqs:
                r.conn = c
                c.send(r.wire())
                status, _, body, close = c.read_response(r.method)
                verify_response(r, status, body)
                if close:
                    raise HTTPError("server closed keep-alive")
        except (OSError, HTTPError, ValueError) as e:
            for r in reqs:
                if not r.ok and r.error is None:
                    r.error = "%s: %s" % (type(e).__name__, e)
        finally:
            for r in reqs:
                if r.conn is None and c is not None:
                    r.conn = c
                self.rec.add(r)
            if c:
                c.close()
                self.rec.conn(reqs[0].case if reqs else "?", c)

    # ------------------------------------------------------------------ cases
    def case_get(self):
        for _ in range(3):
            self.one(self.req("get"))
        self.keepalive([self.req("get"), self.req("get", method="HEAD")])

    def case_post_sizes(self):
        for n in (0, 10, 1024, 65536, 1 << 20, 5 << 20):
            self.one(self.req("post_bin", "POST", body=self.rbytes(n),
                              extra_headers=[("Content-Type", "application/octet-stream")]))
        for n in (10, 1024, 65536, 1 << 20):
            self.one(self.req("post_text", "POST", body=self.rtext(n),
                              extra_headers=[("Content-Type", "text/plain")]))

    def case_form_json(self):
        form = b"user=alice&pass=s%26cr%3Dt&q=%27+OR+1%3D1--&empty=&list=a&list=b"
        self.one(self.req("form", "POST", body=form,
                          extra_headers=[("Content-Type", "application/x-www-form-urlencoded")]))
        big = "&".join("k%d=%s" % (i, "v" * (i % 50)) for i in range(400)).encode()
        self.one(self.req("form", "POST", body=big,
                          extra_headers=[("Content-Type", "application/x-www-form-urlencoded")]))
        js = json.dumps({"a": 1, "name": "caf\u00e9 \u2603", "list": list(range(20)),
                         "nested": {"x": None, "y": [True, False]}}, ensure_ascii=False).encode()
        self.one(self.req("json", "POST", body=js,
                          extra_headers=[("Content-Type", "application/json; charset=utf-8")]))
        self.one(self.req("json", "PUT", body=b'{"put":true}',
                          extra_headers=[("Content-Type", "application/json")]))

    def case_chunked(self):
        # several chunks, each its own send, a little apart
        for sizes, ext, trailers in (([5, 100, 1, 4096, 33], False, None),
                                     ([1000] * 20 + [7], False, None),
                                     ([3, 70000, 12], True, [("X-Trailer", "t1")])):
            chunks = [self.rbytes(s) for s in sizes]
            r = self.req("chunked", "POST", body=b"".join(chunks), framing="chunked", chunks=chunks,
                         chunk_ext=ext, trailers=trailers,
                         extra_headers=[("Content-Type", "application/octet-stream")])
            c = None
            try:
                c = Conn(self.h4, self.port, nodelay=True)
                r.conn = c
                c.send(r.head_bytes())
                wire = r.body_bytes()
                # send chunk by chunk boundaries plus an odd split inside
                pos = 0
                for piece in (7, 200, 5000):
                    c.send(wire[pos:pos + piece])
                    pos += piece
                    time.sleep(0.005)
                c.send(wire[pos:])
                status, _, body, _ = c.read_response("POST")
                verify_response(r, status, body)
            except (OSError, HTTPError, ValueError) as e:
                r.error = "%s: %s" % (type(e).__name__, e)
            finally:
                self.rec.add(r)
                if c:
                    c.close()
                    self.rec.conn("chunked", c)

    def case_pipelined(self):
        reqs = []
        for i in range(9):
            if i % 3 == 1:
                reqs.append(self.req("pipelined", "POST", body=self.rtext(50 + i * 37),
                                     extra_headers=[("Content-Type", "text/plain")]))
            elif i % 3 == 2:
                reqs.append(self.req("pipelined", "POST", body=b"x" * 3, framing="chunked",
                                     chunks=[b"x", b"xx"]))
            else:
                reqs.append(self.req("pipelined"))
        c = None
        try:
            c = Conn(self.h4, self.port)
            for r in reqs:
                r.conn = c
            c.send(b"".join(r.wire() for r in reqs))  # one write
            for r in reqs:
                status, _, body, _ = c.read_response(r.method)
                verify_response(r, status, body)
        except (OSError, HTTPError, ValueError) as e:
            for r in reqs:
                if not r.ok:
                    r.error = "%s: %s" % (type(e).__name__, e)
        finally:
            for r in reqs:
                self.rec.add(r)
            if c:
                c.close()
                self.rec.conn("pipelined", c)

    def case_keepalive50(self):
        reqs = []
        for i in range(50):
            if i % 2:
                reqs.append(self.req("keepalive50", "POST", body=self.rbytes(i * 13),
                                     extra_headers=[("Content-Type", "application/octet-stream")]))
            else:
                reqs.append(self.req("keepalive50"))
        self.keepalive(reqs)

    def case_expect100(self):
        for n in (20000, 1 << 20):
            r = self.req("expect100", "POST", body=self.rbytes(n),
                         extra_headers=[("Content-Type", "application/octet-stream"),
                                        ("Expect", "100-continue")])
            c = None
            try:
                c = Conn(self.h4, self.port)
                r.conn = c
                c.send(r.head_bytes())
                status, _, _, _ = c.read_response("POST", expect_continue=True)
                if status != 100:
                    raise HTTPError("wanted 100 Continue, got %d" % status)
                c.send(r.body_bytes())
                status, _, body, _ = c.read_response("POST")
                verify_response(r, status, body)
            except (OSError, HTTPError, ValueError) as e:
                r.error = "%s: %s" % (type(e).__name__, e)
            finally:
                self.rec.add(r)
                if c:
                    c.close()
                    self.rec.conn("expect100", c)

    def case_slow(self):
        r = self.req("slow", "POST", body=b"slow=1&bytes=one-by-one",
                     extra_headers=[("Content-Type", "application/x-www-form-urlencoded")])
        c = None
        try:
            c = Conn(self.h4, self.port, nodelay=True)
            r.conn = c
            for byte in r.wire():
                c.send(bytes([byte]))
                time.sleep(0.003)
            status, _, body, _ = c.read_response("POST")
            verify_response(r, status, body)
        except (OSError, HTTPError, ValueError) as e:
            r.error = "%s: %s" % (type(e).__name__, e)
        finally:
            self.rec.add(r)
            if c:
                c.close()
                self.rec.conn("slow", c)

    def case_bigheader(self):
        big = "".join(self.rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(7500))
        self.one(self.req("bigheader", extra_headers=[("X-Big", big)]))
        self.one(self.req("bigheader", "POST", body=b"after-big-header",
                          extra_headers=[("Cookie", "c=" + big[:6000]), ("X-More", big[:1400])]))

    def case_headers(self):
        # duplicate names, odd case, empty value: all kept in wire order
        self.one(self.req("headers", extra_headers=[
            ("X-Dup", "1"), ("x-dup", "2"), ("X-MiXeD-CaSe", "v"), ("X-Empty", ""),
            ("Accept-Language", "en-US,en;q=0.5"), ("Cookie", "a=1"), ("Cookie", "b=2")]))

    def case_targets(self):
        # request-target exactly as sent: escapes, absolute-form, raw UTF-8, odd characters
        self.one(self.req("targets", target=self.target("targets", "&q=%27%20OR%201%3D1--&x=a+b")))
        self.one(self.req("targets", target="http://%s%s" % (self.h4, self.target("targets"))))
        self.one(self.req("targets", target=(self.target("targets") + "&u=caf\u00e9\u2603").encode()))
        self.one(self.req("targets", target=self.target("targets", "&p=/../..//x;y=z&e=")))

    def case_ipv6(self):
        h = self.h6
        self.one(self.req("ipv6", host=h), host=h)
        self.one(self.req("ipv6", "POST", host=h, body=self.rbytes(65536),
                          extra_headers=[("Content-Type", "application/octet-stream")]), host=h)
        self.one(self.req("ipv6", "POST", host=h, body=self.rbytes(1 << 20),
                          extra_headers=[("Content-Type", "application/octet-stream")]), host=h)
        self.keepalive([self.req("ipv6", host=h) for _ in range(5)], host=h)

    def case_methods(self):
        for m in ("PURGE", "PROPFIND", "M-SEARCH", "MKCOL", "PUT", "DELETE", "PATCH", "OPTIONS",
                  "HEAD", "TRACE"):
            body = b""
            hdrs = []
            if m == "PROPFIND":
                body = b'<?xml version="1.0"?><propfind xmlns="DAV:"><allprop/></propfind>'
                hdrs = [("Content-Type", "application/xml"), ("Depth", "1")]
            elif m in ("PUT", "PATCH"):
                body = self.rtext(300)
            if m == "TRACE":
                # nginx answers 405 to TRACE without passing it on; the request still travels
                r = self.req("methods", m, extra_headers=hdrs, body=body)
                self._any_status(r)
                continue
            self.one(self.req("methods", m, extra_headers=hdrs, body=body))

    def _any_status(self, r):
        c = None
        try:
            c = Conn(self.h4, self.port)
            r.conn = c
            r.headers.append(("Connection", "close"))
            c.send(r.wire())
            status, _, _, _ = c.read_response(r.method)
            r.status, r.ok = status, True
        except (OSError, HTTPError, ValueError) as e:
            r.error = "%s: %s" % (type(e).__name__, e)
        finally:
            self.rec.add(r)
            if c:
                c.close()
                self.rec.conn(r.case, c)

    def case_http10(self):
        r = Request("http10", "GET", self.target("http10"), [("User-Agent", "vxtap-lab/1")],
                    framing="none", version="HTTP/1.0")
        self._one_raw(r)
        r = Request("http10", "POST", self.target("http10"), [("Content-Type", "text/plain")],
                    body=b"http/1.0 body", framing="cl", version="HTTP/1.0")
        self._one_raw(r)

    def _one_raw(self, r):
        c = None
        try:
            c = Conn(self.h4, self.port)
            r.conn = c
            c.send(r.wire())
            status, _, body, _ = c.read_response(r.method)
            verify_response(r, status, body)
        except (OSError, HTTPError, ValueError) as e:
            r.error = "%s: %s" % (type(e).__name__, e)
        finally:
            self.rec.add(r)
            if c:
                c.close()
                self.rec.conn(r.case, c)

    def case_concurrent(self, nconn=40, per=3):
        def worker(i):
            reqs = []
            for j in range(per):
                if (i + j) % 2:
                    reqs.append(self.req("concurrent", "POST", body=self.rtext(100 + i * 31 + j),
                                         extra_headers=[("Content-Type", "text/plain")]))
                else:
                    reqs.append(self.req("concurrent"))
            self.keepalive(reqs, host=self.h6 if i % 4 == 3 else self.h4)

        ths = [threading.Thread(target=worker, args=(i,)) for i in range(nconn)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(TIMEOUT * 3)

    def case_noise(self):
        payloads = [
            self.rbytes(4096),                                     # random binary
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + self.rbytes(500),  # TLS-ish hello
            b"\x00\x01\x02\x03" * 10 + self.rbytes(100),
            b"\x7f\xff" + self.rbytes(20000),                    # noise spanning many segments
        ]
        for p in payloads:
            c = None
            try:
                c = Conn(self.h4, self.port)
                c.send(p)
                try:
                    c.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                c.read_to_close(3.0)  # nginx answers 400 and closes
            except OSError as e:
                log("noise: %s (expected at times: nginx closes early)" % e)
            finally:
                if c:
                    self.rec.noise("noise", c, len(p))
                    c.close()
                    self.rec.conn("noise", c)


ALL_CASES = ["get", "post_sizes", "form_json", "chunked", "pipelined", "keepalive50", "expect100",
             "slow", "bigheader", "headers", "targets", "ipv6", "methods", "http10", "concurrent",
             "noise"]


def cmd_client(a):
    os.makedirs(a.out, exist_ok=True)
    rec = Recorder(a.out)
    cases = Cases(a.v4, a.v6, a.port, rec, a.seed)
    names = ALL_CASES if a.cases in (None, "", "all") else a.cases.split(",")
    t0 = time.time()
    for name in names:
        fn = getattr(cases, "case_" + name, None)
        if fn is None:
            log("unknown case %r (known: %s)" % (name, ",".join(ALL_CASES)))
            return 2
        t = time.time()
        before = sum(rec.counts.values())
        fn()
        log("client: case %-12s %3d records  %.2fs" % (name, sum(rec.counts.values()) - before,
                                                        time.time() - t))
    rec.close()
    total = sum(rec.counts.values())
    log("client: %d records in %.1fs, %d client-side errors" % (total, time.time() - t0,
                                                                 len(rec.errors)))
    for e in rec.errors[:20]:
        log("  client error: " + e)
    return 1 if rec.errors else 0


def cmd_hold(a):
    """Requests on a connection kept open until --release appears (vxtap drains it at SIGTERM)."""
    rec = Recorder(a.out, "sent-hold.jsonl")
    cases = Cases(a.v4, a.v6, a.port, rec, a.seed)
    c = Conn(a.v4, a.port)
    reqs = [cases.req("hold"), cases.req("hold", "POST", body=cases.rtext(3000),
                                         extra_headers=[("Content-Type", "text/plain")])]
    for r in reqs:
        r.conn = c
        try:
            c.send(r.wire())
            status, _, body, _ = c.read_response(r.method)
            verify_response(r, status, body)
        except (OSError, HTTPError, ValueError) as e:
            r.error = "%s: %s" % (type(e).__name__, e)
        rec.add(r)
    open(a.ready, "w").write("ready\n")
    end = time.time() + a.max_hold
    while time.time() < end and not os.path.exists(a.release):
        time.sleep(0.05)
    c.close()
    rec.conn("hold", c)
    rec.close()
    return 1 if rec.errors else 0


# ---------------------------------------------------------------------------
# checker


def load_jsonl(path, errors=None):
    out = []
    with open(path, "rb") as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except ValueError as e:
                if errors is not None:
                    errors.append("%s:%d: bad JSON: %s" % (path, i, e))
    return out


def check(sent, events, vni=None, require_status=False, out=sys.stdout, max_detail=15,
          one_way=False):
    """Return (ok, summary dict). Prints a table to `out`."""
    problems = []  # failing lines
    warnings = []
    reqs = [r for r in sent if r.get("kind", "request") == "request"]
    noise = [r for r in sent if r.get("kind") == "noise"]
    by_key = {}
    for r in reqs:
        key = (r["method"], r["target"])
        if key in by_key:
            problems.append("sent twice with the same method+target (bad lab data): %r" % (key,))
        by_key[key] = {"rec": r, "events": []}
    noise_ports = {(norm_ip(n["src_ip"]), n["src_port"]) for n in noise}

    http_events, alerts, other = [], [], {}
    extra = []
    noise_hits = []
    for ev in events:
        et = ev.get("event_type")
        if et == "http":
            http_events.append(ev)
        elif et == "alert":
            alerts.append(ev)
        else:
            other[et] = other.get(et, 0) + 1
            continue
        src = (norm_ip(ev.get("src_ip")), ev.get("src_port"))
        if src in noise_ports:
            noise_hits.append(ev)
            continue
        h = ev.get("http") or {}
        key = (h.get("http_method"), h.get("url"))
        slot = by_key.get(key)
        if et == "alert":
            if slot is None:
                extra.append(ev)
            continue
        if slot is None:
            extra.append(ev)
        else:
            slot["events"].append(ev)

    # per-request comparison
    cases = {}
    detail = []
    for key, slot in by_key.items():
        r = slot["rec"]
        c = cases.setdefault(r["case"], dict(sent=0, found=0, exact=0, dup=0, missing=0, body=0,
                                             addr=0, hdr=0, status=0, nostatus=0, gap=0))
        c["sent"] += 1
        evs = slot["events"]
        if not evs:
            c["missing"] += 1
            detail.append("MISSING  %-11s %s %s" % (r["case"], r["method"], r["target"][:90]))
            continue
        c["found"] += 1
        if len(evs) > 1:
            c["dup"] += 1
            detail.append("DUP x%d   %-11s %s %s" % (len(evs), r["case"], r["method"],
                                                    r["target"][:90]))
        errs = compare(r, evs[0], vni, one_way)
        for kind, msg in errs:
            if kind == "nostatus":
                c["nostatus"] += 1
                continue
            c[kind] += 1
        hard = [(k, m) for k, m in errs if k != "nostatus" or require_status]
        if not hard and len(evs) == 1:
            c["exact"] += 1
        for kind, msg in hard:
            detail.append("%-8s %-11s %s %s: %s" % (kind.upper(), r["case"], r["method"],
                                                     r["target"][:60], msg))

    cols = ["sent", "found", "exact", "missing", "dup", "body", "addr", "hdr", "status", "gap",
            "nostatus"]
    print("%-12s" % "case" + "".join("%9s" % x for x in cols), file=out)
    tot = dict((k, 0) for k in cols)
    for name in sorted(cases):
        c = cases[name]
        for k in cols:
            tot[k] += c[k]
        print("%-12s" % name + "".join("%9d" % c[k] for k in cols), file=out)
    print("%-12s" % "TOTAL" + "".join("%9d" % tot[k] for k in cols), file=out)
    print("events: %d http, %d alert, other %s; extra %d; noise-connection events %d; "
          "noise connections %d" % (len(http_events), len(alerts), other or "{}", len(extra),
                                    len(noise_hits), len(noise)), file=out)

    for e in extra[:max_detail]:
        h = e.get("http") or {}
        detail.append("EXTRA    %s %s %s  %s:%s -> %s:%s" % (e.get("event_type"), h.get("http_method"),
                                                          str(h.get("url"))[:90], e.get("src_ip"),
                                                          e.get("src_port"), e.get("dest_ip"),
                                                          e.get("dest_port")))
    for e in noise_hits[:max_detail]:
        h = e.get("http") or {}
        detail.append("NOISE    event from a noise connection: %s %r" % (h.get("http_method"),
                                                                         str(h.get("url"))[:60]))
    if other:
        warnings.append("event types other than http/alert: %s" % other)
    if tot["nostatus"]:
        warnings.append("%d matched events carry no http.status (response not attached)"
                        % tot["nostatus"])

    ok = (tot["sent"] == tot["exact"] and not extra and not noise_hits and not problems
          and tot["sent"] > 0)
    for d in detail[:max_detail * 3]:
        print("  " + d, file=out)
    if len(detail) > max_detail * 3:
        print("  ... %d more" % (len(detail) - max_detail * 3), file=out)
    for p in problems:
        print("  PROBLEM  " + p, file=out)
    for w in warnings:
        print("  warning: " + w, file=out)
    print("CHECK %s" % ("PASS" if ok else "FAIL"), file=out)
    return ok, {"totals": tot, "cases": cases, "extra": len(extra), "noise_hits": len(noise_hits),
                "alerts": len(alerts), "other": other}


def compare(r, ev, vni=None, one_way=False):
    """Differences between a sent request record and its event: [(kind, message)]."""
    errs = []
    h = ev.get("http") or {}
    # body
    raw = h.get("http_request_body")
    try:
        got = base64.b64decode(raw, validate=True) if raw else b""
    except (ValueError, TypeError) as e:
        got = None
        errs.append(("body", "http_request_body is not base64: %s" % e))
    if got is not None:
        blen = h.get("request_body_len", len(got) if not raw else None)
        if h.get("http_request_body_truncated"):
            errs.append(("body", "truncated (kept %d of %s bytes): raise --body-limit"
                         % (len(got), blen)))
        elif sha256(got) != r["body_sha256"]:
            where = ""
            if "body_b64" in r:
                want = base64.b64decode(r["body_b64"])
                i = next((i for i in range(min(len(want), len(got))) if want[i] != got[i]),
                         min(len(want), len(got)))
                where = ", first difference at byte %d" % i
            errs.append(("body", "body differs: got %d bytes, sent %d%s"
                         % (len(got), r["body_len"], where)))
        if blen != r["body_len"] and not (blen is None and r["body_len"] == 0):
            errs.append(("body", "request_body_len %r, sent %d" % (blen, r["body_len"])))
    if h.get("gap"):
        errs.append(("gap", "gap: true on a lossless link"))
    # addresses
    if "src_ip" in r:
        for ek, rk in (("src_ip", "src_ip"), ("src_port", "src_port"), ("dest_ip", "dst_ip"),
                       ("dest_port", "dst_port")):
            gv, wv = ev.get(ek), r[rk]
            if ek.endswith("ip"):
                gv, wv = norm_ip(gv), norm_ip(wv)
            if gv != wv:
                errs.append(("addr", "%s %r, want %r" % (ek, gv, wv)))
    if ev.get("proto") not in ("TCP", "tcp"):
        errs.append(("addr", "proto %r" % ev.get("proto")))
    if vni is not None:
        tv = (ev.get("tunnel") or {}).get("vni")
        if tv != vni:
            errs.append(("addr", "tunnel.vni %r, want %d" % (tv, vni)))
    # protocol and headers
    if h.get("protocol") not in (None, r.get("version")):
        errs.append(("hdr", "protocol %r, want %r" % (h.get("protocol"), r.get("version"))))
    got_h = h.get("request_headers")
    want_h = r.get("headers") or []
    if got_h is None:
        errs.append(("hdr", "no request_headers"))
    else:
        pairs = [(x.get("name"), x.get("value")) for x in got_h if isinstance(x, dict)]
        want = [(k, v) for k, v in want_h]
        if pairs[:len(want)] != want:
            i = next((i for i in range(min(len(pairs), len(want))) if pairs[i] != want[i]),
                     min(len(pairs), len(want)))
            g = pairs[i] if i < len(pairs) else None
            w = want[i] if i < len(want) else None
            errs.append(("hdr", "request_headers[%d] %s, want %s (got %d, sent %d)"
                         % (i, _short(g), _short(w), len(pairs), len(want))))
    # response
    st = h.get("status")
    if one_way:
        if st is not None:
            errs.append(("status", "status %r though no response was mirrored" % st))
    elif r.get("status") is not None:
        if st is None:
            errs.append(("nostatus", "no status"))
        elif int(st) != r["status"]:
            errs.append(("status", "status %r, client saw %d" % (st, r["status"])))
    return errs


def _short(x):
    s = repr(x)
    return s if len(s) < 70 else s[:67] + "..."


def cmd_check(a):
    errs = []
    sent = []
    for p in a.sent:
        sent += load_jsonl(p, errs)
    events = load_jsonl(a.events, errs) if os.path.exists(a.events) else []
    if not os.path.exists(a.events):
        errs.append("no events file %s" % a.events)
    for e in errs:
        print("  PROBLEM  " + e)
    ok, summary = check(sent, events, vni=a.vni, require_status=a.require_status,
                        one_way=a.one_way)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 0 if ok and not errs else 1


# ---------------------------------------------------------------------------
# plumbing check with tshark: every byte each client connection sent is in the mirrored capture


def cmd_tshark_check(a):
    conns = []
    for p in a.conns:
        conns += load_jsonl(p)
    sent = []
    for p in a.sent:
        sent += load_jsonl(p)
    fields = ["frame.len", "vxlan.vni", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport",
              "tcp.dstport", "tcp.seq", "tcp.len", "tcp.flags.syn"]
    cmd = ["tshark", "-n", "-r", a.pcap, "-d", "udp.port==4789,vxlan", "-Y", "tcp",
           "-o", "tcp.desegment_tcp_streams:FALSE", "-T", "fields", "-E", "separator=\t",
           "-E", "occurrence=l"]
    for f in fields:
        cmd += ["-e", f]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        print("tshark failed: " + p.stderr.strip()[:500])
        return 2
    flows = {}
    max_frame = 0
    n_pkts = n6 = 0
    vnis = set()
    for line in p.stdout.splitlines():
        f = line.split("\t")
        if len(f) < len(fields):
            continue
        flen, vni, s4, s6, d4, d6, sp, dp, seq, tl, syn = f[:11]
        n_pkts += 1
        max_frame = max(max_frame, int(flen))
        vnis.add(vni)
        src, dst = norm_ip(s6 or s4), norm_ip(d6 or d4)
        if s6:
            n6 += 1
        if not tl or not seq:
            continue
        key = (src, int(sp), dst, int(dp))
        fl = flows.setdefault(key, [])
        if int(tl) > 0:
            fl.append((int(seq), int(seq) + int(tl)))
    bad = 0
    full = 0
    for c in conns:
        fwd = flows.get((norm_ip(c["src_ip"]), c["src_port"], norm_ip(c["dst_ip"]), c["dst_port"]),
                        [])
        rev = flows.get((norm_ip(c["dst_ip"]), c["dst_port"], norm_ip(c["src_ip"]), c["src_port"]),
                        [])
        cov = _coverage(fwd)
        rcov = _coverage(rev)
        if cov == [(1, 1 + c["bytes_sent"])] or (c["bytes_sent"] == 0 and not cov):
            full += 1
            if a.one_way and rcov:
                bad += 1
                print("  server bytes mirrored in one-way mode: %s %s:%s" % (
                    c["case"], c["src_ip"], c["src_port"]))
            elif not a.one_way and c["bytes_recv"] and rcov != [(1, 1 + c["bytes_recv"])]:
                bad += 1
                print("  response bytes not all mirrored: %s %s:%s recv %d cov %s" % (
                    c["case"], c["src_ip"], c["src_port"], c["bytes_recv"], rcov[:4]))
        else:
            bad += 1
            print("  request bytes not all mirrored: %s %s:%s sent %d coverage %s" % (
                c["case"], c["src_ip"], c["src_port"], c["bytes_sent"], cov[:4]))
    # tshark's own HTTP parser, as a second opinion on request boundaries
    p2 = subprocess.run(["tshark", "-n", "-r", a.pcap, "-d", "udp.port==4789,vxlan", "-Y",
                         "http.request", "-T", "fields", "-e", "http.request.method", "-e",
                         "http.request.uri", "-E", "occurrence=a", "-E", "aggregator=\x01"],
                        capture_output=True, text=True, timeout=300)
    seen = {}
    for line in p2.stdout.splitlines():
        ms, _, us = line.partition("\t")
        for m, u in zip(ms.split("\x01"), us.split("\x01")):
            seen[(m, u)] = seen.get((m, u), 0) + 1
    reqs = [r for r in sent if r.get("kind", "request") == "request"]
    ts_found = sum(1 for r in reqs if seen.get((r["method"], r["target"])))
    print("tshark: %d TCP packets in VXLAN (vni %s), %d IPv6, largest frame %d bytes"
          % (n_pkts, ",".join(sorted(vnis)), n6, max_frame))
    print("tshark: %d/%d connections: every client byte mirrored; %d with problems"
          % (full, len(conns), bad))
    print("tshark: its HTTP parser finds %d/%d sent requests (informational)"
          % (ts_found, len(reqs)))
    if a.max_frame and max_frame > a.max_frame:
        print("  FAIL: frame of %d bytes > %d: segmentation offload is leaking super-frames"
              % (max_frame, a.max_frame))
        bad += 1
    if a.min_frame and max_frame < a.min_frame:
        print("  FAIL: no frame of %d bytes or more: large frames missing" % a.min_frame)
        bad += 1
    if a.want_ipv6 and not n6:
        print("  FAIL: no IPv6 in the mirror")
        bad += 1
    print("TSHARK-CHECK %s" % ("PASS" if bad == 0 and conns else "FAIL"))
    return 0 if bad == 0 and conns else 1


def _coverage(iv):
    out = []
    for s, e in sorted(iv):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


# ---------------------------------------------------------------------------
# offloads: ethtool's ioctl, so that no ethtool binary is needed

SIOCETHTOOL = 0x8946
ETHTOOL_GSTRINGS = 0x1B
ETHTOOL_GSSET_INFO = 0x37
ETHTOOL_GFEATURES = 0x3A
ETHTOOL_SFEATURES = 0x3B
ETH_SS_FEATURES = 4


def _ethtool(sock, dev, buf):
    ifr = struct.pack("16sQ", dev.encode()[:15], ctypes.addressof(buf)) + b"\0" * 16
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifr)


def features(dev):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        info = ctypes.create_string_buffer(struct.pack("IIQI", ETHTOOL_GSSET_INFO, 0,
                                                       1 << ETH_SS_FEATURES, 0))
        _ethtool(s, dev, info)
        n = struct.unpack_from("I", info.raw, 16)[0]
        gs = ctypes.create_string_buffer(struct.pack("III", ETHTOOL_GSTRINGS, ETH_SS_FEATURES, n)
                                         + b"\0" * (32 * n))
        _ethtool(s, dev, gs)
        names = [gs.raw[12 + 32 * i:12 + 32 * (i + 1)].split(b"\0")[0].decode() for i in range(n)]
        blocks = (n + 31) // 32
        gf = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_GFEATURES, blocks)
                                         + b"\0" * (16 * blocks))
        _ethtool(s, dev, gf)
        active = {}
        avail = {}
        for i, name in enumerate(names):
            b, bit = divmod(i, 32)
            av, req, act, never = struct.unpack_from("IIII", gf.raw, 8 + 16 * b)
            active[name] = bool(act >> bit & 1)
            avail[name] = bool(av >> bit & 1)
        return names, active, avail
    finally:
        s.close()


def offload_off(dev, verbose=True):
    names, active, avail = features(dev)
    want_off = [n for n in names if active[n] and avail[n] and (
        "segmentation" in n or n.startswith("rx-gro") or n in ("rx-lro", "tx-gso-list",
                                                               "tx-gso-partial",
                                                               "rx-udp-gro-forwarding"))]
    if want_off:
        blocks = (len(names) + 31) // 32
        valid = [0] * blocks
        for n in want_off:
            b, bit = divmod(names.index(n), 32)
            valid[b] |= 1 << bit
        payload = struct.pack("II", ETHTOOL_SFEATURES, blocks)
        for v in valid:
            payload += struct.pack("II", v, 0)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            _ethtool(s, dev, ctypes.create_string_buffer(payload))
        except OSError:
            pass  # ETHTOOL_SFEATURES returns a positive "not all changed" code at times
        finally:
            s.close()
    names, active, _ = features(dev)
    still = [n for n in names if active[n] and ("segmentation" in n or n.startswith("rx-gro"))
             and n != "tx-generic-segmentation"]
    if verbose:
        log("offload-off %s: turned off %d features; still on: %s"
            % (dev, len(want_off), ",".join(still) or "none"))
    return still


def cmd_offload_off(a):
    bad = 0
    for d in a.dev:
        if offload_off(d):
            bad += 1
    return 1 if bad else 0


# ---------------------------------------------------------------------------
# waits and counters


def cmd_wait_http(a):
    host, _, port = a.addr.rpartition(":")
    host = host.strip("[]")
    end = time.time() + a.timeout
    last = None
    while time.time() < end:
        try:
            c = Conn(host, int(port), timeout=2)
            c.send(b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                   % (a.path.encode(), a.addr.encode()))
            status, _, body, _ = c.read_response("GET")
            c.close()
            if a.status is None or status == a.status:
                if a.print:
                    sys.stdout.write(body.decode("utf-8", "replace"))
                return 0
            last = "status %d" % status
        except (OSError, HTTPError, ValueError) as e:
            last = str(e)
        time.sleep(0.1)
    log("wait-http %s%s: gave up after %.0fs (%s)" % (a.addr, a.path, a.timeout, last))
    return 1


def cmd_wait_tcp(a):
    end = time.time() + a.timeout
    for addr in a.addr:
        host, _, port = addr.rpartition(":")
        host = host.strip("[]")
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                break
            except OSError as e:
                if time.time() > end:
                    log("wait-tcp %s: %s" % (addr, e))
                    return 1
                time.sleep(0.05)
    return 0


def udp_counters():
    lines = [l.split() for l in open("/proc/net/snmp") if l.startswith("Udp:")]
    d = dict(zip(lines[0][1:], (int(x) for x in lines[1][1:])))
    return {k: d.get(k, 0) for k in ("InDatagrams", "NoPorts", "InErrors", "RcvbufErrors")}


def cmd_udp_drops(a):
    print(json.dumps(udp_counters()))
    return 0


# ---------------------------------------------------------------------------
# selftest of the checker on hand-written data


def cmd_selftest(a):
    here = os.path.dirname(os.path.abspath(__file__))
    sent = load_jsonl(os.path.join(here, "testdata", "sent.sample.jsonl"))
    events = load_jsonl(os.path.join(here, "testdata", "events.sample.jsonl"))
    fails = []

    def expect(name, ok_want, evs, kinds=None, **kw):
        buf = _Sink()
        ok, summ = check(sent, evs, out=buf, **kw)
        if ok != ok_want:
            fails.append("%s: check returned %s, wanted %s\n%s" % (name, ok, ok_want, buf.text))
        if kinds:
            for k, v in kinds.items():
                got = summ["totals"].get(k, summ.get(k))
                if got != v:
                    fails.append("%s: %s=%r, wanted %r\n%s" % (name, k, got, v, buf.text))

    def mutate(i, fn):
        evs = json.loads(json.dumps(events))
        fn(evs[i])
        return evs

    nreq = sum(1 for r in sent if r.get("kind", "request") == "request")
    expect("good", True, events, {"exact": nreq, "sent": nreq}, vni=1377)
    expect("missing", False, events[1:], {"missing": 1})
    expect("duplicate", False, events + [events[0]], {"dup": 1})
    extra = json.loads(json.dumps(events[0]))
    extra["http"]["url"] = "/not/sent"
    expect("extra", False, events + [extra], {"extra": 1})
    expect("body", False, mutate(1, lambda e: e["http"].update(http_request_body=b64(b"nope"))),
           {"body": 1})
    expect("body_len", False, mutate(1, lambda e: e["http"].update(request_body_len=1)),
           {"body": 1})
    expect("truncated", False,
           mutate(1, lambda e: e["http"].update(http_request_body_truncated=True)), {"body": 1})
    expect("gap", False, mutate(1, lambda e: e["http"].update(gap=True)), {"gap": 1})
    expect("src_port", False, mutate(0, lambda e: e.update(src_port=1)), {"addr": 1})
    expect("dest_ip", False, mutate(0, lambda e: e.update(dest_ip="10.9.9.9")), {"addr": 1})
    expect("ipv6-notation", True, mutate(2, lambda e: e.update(
        src_ip="fd00:77:1:0:0:0:0:2")), {"exact": nreq})
    expect("vni", False, mutate(0, lambda e: e["tunnel"].update(vni=1)), {"addr": 1}, vni=1377)
    expect("hdr-order", False, mutate(0, lambda e: e["http"]["request_headers"].reverse()),
           {"hdr": 1})
    expect("hdr-case", False, mutate(0, lambda e: e["http"]["request_headers"][0].update(
        name="host")), {"hdr": 1})
    expect("status", False, mutate(0, lambda e: e["http"].update(status=404)), {"status": 1})
    expect("nostatus-ok", True, mutate(0, lambda e: e["http"].pop("status")), {"nostatus": 1})
    expect("nostatus-required", False, mutate(0, lambda e: e["http"].pop("status")),
           {"nostatus": 1}, require_status=True)
    noise_ev = json.loads(json.dumps(events[0]))
    noise_ev.update(src_port=40999)
    noise_ev["http"]["url"] = "\u0016\u0003garbage"
    expect("noise", False, events + [noise_ev], {"noise_hits": 1})
    alert = json.loads(json.dumps(events[1]))
    alert["event_type"] = "alert"
    alert["alert"] = {"signature_id": 1, "signature": "x"}
    expect("alert-matching-request-is-fine", True, events + [alert], {"alerts": 1})
    expect("nothing", False, [], {"missing": nreq})
    nostat = [json.loads(json.dumps(e)) for e in events]
    for e in nostat:
        e["http"].pop("status", None)
    expect("one-way", True, nostat, {"exact": nreq}, one_way=True)
    expect("one-way-status", False, events, {"status": nreq}, one_way=True)
    expect("other-types-ok", True, events + [{"event_type": "stats"}])
    # contract string rule: non-UTF-8 bytes are \u00XX of the byte
    assert contract_str(b"/a\xffb/caf\xc3\xa9") == "/a\u00ffb/caf\u00e9", "contract_str"
    # chunked wire form
    r = Request("t", "POST", "/x", [("Host", "h")], b"abcdef", "chunked", chunks=[b"abc", b"def"],
                trailers=[("T", "1")], chunk_ext=True)
    assert r.body_bytes() == b"3;ext0=v\r\nabc\r\n3;ext1=v\r\ndef\r\n0\r\nT: 1\r\n\r\n", r.body_bytes()
    assert r.head_bytes().endswith(b"Transfer-Encoding: chunked\r\n\r\n")
    for f in fails:
        print("SELFTEST FAIL " + f)
    print("selftest: %d failures" % len(fails))
    return 1 if fails else 0


class _Sink:
    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s

    def flush(self):
        pass


# ---------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("client")
    p.add_argument("--out", required=True)
    p.add_argument("--v4", required=True)
    p.add_argument("--v6", required=True)
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--cases", default="all", help="comma list of: " + ",".join(ALL_CASES))
    p.add_argument("--seed", type=int, default=1377)
    p.set_defaults(fn=cmd_client)

    p = sub.add_parser("hold")
    p.add_argument("--out", required=True)
    p.add_argument("--v4", required=True)
    p.add_argument("--v6", default="::1")
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--ready", required=True)
    p.add_argument("--release", required=True)
    p.add_argument("--max-hold", type=float, default=60)
    p.set_defaults(fn=cmd_hold)

    p = sub.add_parser("check")
    p.add_argument("--sent", action="append", required=True)
    p.add_argument("--events", required=True)
    p.add_argument("--vni", type=int)
    p.add_argument("--require-status", action="store_true")
    p.add_argument("--one-way", action="store_true",
                   help="only client->server frames were mirrored: no status may appear")
    p.add_argument("--json", help="write a JSON summary there")
    p.set_defaults(fn=cmd_check)

    p = sub.add_parser("tshark-check")
    p.add_argument("--pcap", required=True)
    p.add_argument("--conns", action="append", required=True)
    p.add_argument("--sent", action="append", default=[])
    p.add_argument("--max-frame", type=int, default=0)
    p.add_argument("--min-frame", type=int, default=0)
    p.add_argument("--want-ipv6", action="store_true")
    p.add_argument("--one-way", action="store_true", help="expect no server->client bytes")
    p.set_defaults(fn=cmd_tshark_check)

    p = sub.add_parser("offload-off")
    p.add_argument("dev", nargs="+")
    p.set_defaults(fn=cmd_offload_off)

    p = sub.add_parser("wait-http")
    p.add_argument("addr")
    p.add_argument("path", nargs="?", default="/")
    p.add_argument("--timeout", type=float, default=10)
    p.add_argument("--status", type=int)
    p.add_argument("--print", action="store_true")
    p.set_defaults(fn=cmd_wait_http)

    p = sub.add_parser("wait-tcp")
    p.add_argument("addr", nargs="+")
    p.add_argument("--timeout", type=float, default=10)
    p.set_defaults(fn=cmd_wait_tcp)

    p = sub.add_parser("udp-drops")
    p.set_defaults(fn=cmd_udp_drops)

    p = sub.add_parser("selftest")
    p.set_defaults(fn=cmd_selftest)

    a = ap.parse_args(argv)
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
