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
  relay         impairment relay between the kernel VXLAN sender and vxtap (README: --impair)
  udp-sink      bind a UDP port and discard (--iface-mode: no ICMP unreachables)
  counters      vxtap packets_total and the namespace's UDP counters, back to back
  settle        wait until vxtap took in every datagram and wrote every event; save /metrics
  drain-probe   SIGTERM vxtap and poll /-/healthcheck until it has exited
  run-report    drain and metrics checks of a run directory (run.json)
  replay-recorder  origin behind the replay target's nginx: records every request it gets (jsonl)
  replay-check  ALB replay: every exact request replayed once, as sent, with the added headers
  selftest      unit tests of the checker (and the HTTP helpers) on hand-written data
"""

import argparse
import base64
import codecs
import errno
import ctypes
import fcntl
import hashlib
import ipaddress
import json
import os
import random
import signal
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

# connections opened so far per (src_ip, src_port, dst_ip, dst_port): see Conn.tuple_seq
CONN_TUPLES = {}
CONN_TUPLES_LOCK = threading.Lock()


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


class SockReader:
    """Buffered reads of a socket: CRLF lines, exact byte counts, chunked bodies."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def _fill(self):
        d = self.sock.recv(262144)
        if not d:
            raise EOFError
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

    def _chunked_body(self):
        """A chunked body (the trailer section read and dropped)."""
        body = b""
        while True:
            size = int(self._line().split(b";")[0].strip(), 16)
            if size == 0:
                while self._line() != b"":
                    pass
                return body
            body += self._exact(size)
            if self._exact(2) != b"\r\n":
                raise HTTPError("bad chunk end")


class Conn(SockReader):
    """A raw TCP connection with a receive buffer and a response parser."""

    def __init__(self, host, port, timeout=TIMEOUT, nodelay=False, local_port=None):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if nodelay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if local_port is None:
            self.sock.connect((host, port))
        else:
            self._connect_from(host, port, local_port)
        SockReader.__init__(self, self.sock)
        self.eof = False
        self.bytes_sent = 0
        self.bytes_recv = 0
        self.last_resp = None  # (start, end) offsets of the last final response in the server stream
        la = self.sock.getsockname()
        ra = self.sock.getpeername()
        self.src_ip, self.src_port = norm_ip(la[0]), la[1]
        self.dst_ip, self.dst_port = norm_ip(ra[0]), ra[1]
        # how many connections this process opened on the same addresses and ports before this
        # one: the checkers tell reused ports apart by it
        with CONN_TUPLES_LOCK:
            key = (self.src_ip, self.src_port, self.dst_ip, self.dst_port)
            self.tuple_seq = CONN_TUPLES.get(key, 0)
            CONN_TUPLES[key] = self.tuple_seq + 1

    def _connect_from(self, host, port, local_port):
        """Connects from a fixed local port, which the previous connection on it may hold for a
        moment after the server closed first (its last ACK in flight)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("", local_port))
        deadline = time.time() + TIMEOUT
        while True:
            try:
                self.sock.connect((host, port))
                return
            except OSError as e:
                if e.errno not in (errno.EADDRNOTAVAIL, errno.EADDRINUSE) or time.time() > deadline:
                    raise
                time.sleep(0.01)

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

    def rx_pos(self):
        """Offset in the server->client stream of the next unread byte."""
        return self.bytes_recv - len(self.buf)

    def read_head(self):
        self._head_start = self.rx_pos()
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
            body = self._chunked_body()
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
        self.last_resp = (self._head_start, self.rx_pos())
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
        self.off = None  # offset of the request's first byte in its connection's client stream
        self.resp = None  # (start, end) of its final response in the server stream

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
                     dst_ip=self.conn.dst_ip, dst_port=self.conn.dst_port,
                     tuple_seq=self.conn.tuple_seq)
        # where its bytes are: [stream_off, stream_off + wire_len) of the client->server stream
        # (offset 0 = the byte after the SYN), and its response in the server->client stream
        r["wire_len"] = len(self.wire())
        if self.off is not None:
            r["stream_off"] = self.off
        if self.resp is not None:
            r["resp_range"] = list(self.resp)
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
                                      "tuple_seq": conn.tuple_seq,
                                      "bytes_sent": conn.bytes_sent,
                                      "bytes_recv": conn.bytes_recv}) + "\n")
            self.cf.flush()

    def close(self):
        self.f.close()
        self.cf.close()


def verify_response(req, status, body):
    """nginx's backend answers `ok m=<method> len=<content_length>`: proves nginx read the whole body."""
    req.status = status
    if req.conn is not None:
        req.resp = req.conn.last_resp
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
    def one(self, req, host=None, close=True, local_port=None):
        host = host or self.h4
        c = None
        try:
            c = Conn(host, self.port, local_port=local_port)
            req.conn = c
            req.off = c.bytes_sent
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
                r.off = c.bytes_sent
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
                r.off = c.bytes_sent
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
            off = c.bytes_sent
            for r in reqs:
                r.conn = c
                r.off = off
                off += len(r.wire())
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
                r.off = c.bytes_sent
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
            r.off = c.bytes_sent
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
            r.off = c.bytes_sent
            r.headers.append(("Connection", "close"))
            c.send(r.wire())
            status, _, _, _ = c.read_response(r.method)
            r.status, r.ok = status, True
            r.resp = c.last_resp
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
            r.off = c.bytes_sent
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


    def case_bulk(self, nconn=50, per=12):
        """Volume for impaired runs (not in `all`): 50 keep-alive connections x 12 requests, GET,
        Content-Length and chunked POSTs of 0..3000 bytes, a quarter over IPv6, 25 at a time."""
        def worker(i):
            reqs = []
            for j in range(per):
                k = (i * 7 + j) % 3
                if k == 0:
                    reqs.append(self.req("bulk"))
                elif k == 1:
                    reqs.append(self.req("bulk", "POST", body=self.rbytes((i * 131 + j * 977) % 3001),
                                         extra_headers=[("Content-Type", "application/octet-stream")]))
                else:
                    body = self.rtext(1 + (i * 59 + j * 313) % 3000)
                    cut = len(body) // 3
                    reqs.append(self.req("bulk", "POST", body=body, framing="chunked",
                                         chunks=[body[:cut], body[cut:]],
                                         extra_headers=[("Content-Type", "text/plain")]))
            self.keepalive(reqs, host=self.h6 if i % 4 == 3 else self.h4)

        for start in range(0, nconn, 25):
            ths = [threading.Thread(target=worker, args=(i,))
                   for i in range(start, min(nconn, start + 25))]
            for t in ths:
                t.start()
            for t in ths:
                t.join(TIMEOUT * 3)

    def case_reuse(self, nconn=12):
        """Connections one after another from the same client port, each closed by nginx first
        (`Connection: close`), so the next may reuse the port at once: the server holds the
        TIME-WAIT and accepts the new SYN. Over IPv4 and IPv6, GETs and POSTs."""
        port = 20000 + self.rng.randrange(10000)
        for i in range(nconn):
            host = self.h6 if i % 3 == 2 else self.h4
            if i % 2:
                r = self.req("reuse", "POST", host=host, body=self.rtext(200 + 97 * i),
                             extra_headers=[("Content-Type", "text/plain")])
            else:
                r = self.req("reuse", host=host)
            self.one(r, host=host, local_port=port)

    def case_fwd(self):
        """Forwarding headers the client sends itself (not in `all`; run.sh --replay-check adds
        it): a replay must append the client to X-Forwarded-For (one header or two), keep
        X-Forwarded-Proto and a non-empty X-Request-ID, replace X-Forwarded-Port, X-Scheme and
        X-Server-Addr/-Port with the true values, and give an empty X-Request-ID a new id."""
        def rid():
            return "lab-%s" % uuid.UUID(int=self.rng.getrandbits(128))

        self.one(self.req("fwd", extra_headers=[("X-Forwarded-For", "203.0.113.7")]))
        self.one(self.req("fwd", "POST", body=self.rtext(500), extra_headers=[
            ("Content-Type", "text/plain"), ("X-Forwarded-For", "203.0.113.7, 198.51.100.2"),
            ("X-Forwarded-Proto", "https"), ("X-Request-ID", rid())]))
        self.one(self.req("fwd", extra_headers=[("X-Forwarded-For", "203.0.113.9"),
                                                ("X-Forwarded-For", "192.0.2.1")]))
        self.one(self.req("fwd", extra_headers=[
            ("X-Request-ID", rid()), ("X-Server-Addr", "192.0.2.99"), ("X-Server-Port", "8443"),
            ("X-Forwarded-Port", "1"), ("X-Scheme", "https")]))
        self.one(self.req("fwd", extra_headers=[("X-Request-ID", "")]))
        body = self.rtext(2000)
        h6 = self.h6
        self.keepalive([
            self.req("fwd", host=h6, extra_headers=[("X-Forwarded-For", "2001:db8::7")]),
            self.req("fwd", "POST", host=h6, body=body, framing="chunked",
                     chunks=[body[:700], body[700:]],
                     extra_headers=[("Content-Type", "text/plain"), ("X-Forwarded-Proto", "https"),
                                    ("X-Request-ID", rid())])], host=h6)

    def case_tail(self):
        # the last request after a quiet spell: all its frames arrive within a millisecond or two,
        # and its event must still be written before SIGTERM (not when the next frame comes)
        time.sleep(0.1)
        self.one(self.req("tail"))


ALL_CASES = ["get", "post_sizes", "form_json", "chunked", "pipelined", "keepalive50", "expect100",
             "slow", "bigheader", "headers", "targets", "ipv6", "methods", "http10", "concurrent",
             "noise", "reuse", "tail"]


def cmd_client(a):
    os.makedirs(a.out, exist_ok=True)
    rec = Recorder(a.out)
    cases = Cases(a.v4, a.v6, a.port, rec, a.seed)
    names = []
    skip = set()
    for n in (a.cases or "all").split(","):
        if n.startswith("-"):  # `all,-reuse`: every case but that one
            skip.add(n[1:])
        else:
            names += ALL_CASES if n == "all" else [n]
    names = [n for n in names if n not in skip]
    if "tail" in names:  # always last: it checks that the very last request comes out at once
        names = [n for n in names if n != "tail"] + ["tail"]
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
        r.off = c.bytes_sent
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
    """JSON lines; bytes that are not UTF-8 (nginx's `escape=json` writes bytes >= 0x80 raw) are kept
    as surrogate escapes."""
    out = []
    with open(path, "rb") as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line.decode("utf-8", "surrogateescape")))
            except ValueError as e:
                if errors is not None:
                    errors.append("%s:%d: bad JSON: %s" % (path, i, e))
    return out


def load_jsonl_file(path, errors, missing=None):
    """`load_jsonl`, or no lines when the file does not exist; `missing` names the file in an error
    when it must."""
    if os.path.exists(path):
        return load_jsonl(path, errors)
    if missing:
        errors.append("no %s %s" % (missing, path))
    return []


def check(sent, events, vni=None, require_status=False, out=sys.stdout, max_detail=15,
          one_way=False, intact=None, min_recall=0.995):
    """Return (ok, summary dict). Prints a table to `out`.

    Lossless (intact None): every request must come out exactly once, exact, gap false.
    Impaired (intact = {(method, target): (request intact, response intact or None)}, from the
    relay log): requests whose own client bytes all arrived must be exact (at least `min_recall` of
    them); every event of a non-intact request must carry gap: true and its true request head;
    no event may match no sent request (phantom); no request may come out twice; a status, when
    present, must be the one the client saw."""
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

    impaired = intact is not None
    # per-request comparison
    cases = {}
    detail = []
    warn_detail = []
    for key, slot in by_key.items():
        r = slot["rec"]
        c = cases.setdefault(r["case"], dict(sent=0, found=0, exact=0, dup=0, missing=0, body=0,
                                             addr=0, hdr=0, status=0, nostatus=0, gap=0,
                                             intact=0, lost=0, flagged=0, unflagged=0,
                                             badhead=0, nostatus_ri=0))
        c["sent"] += 1
        evs = slot["events"]
        req_ok, resp_ok = intact.get(key, (False, None)) if impaired else (True, None)
        tag = "" if not impaired else (" [intact]" if req_ok else " [lost bytes]")
        if req_ok:
            c["intact"] += 1
        if not evs:
            if req_ok:
                c["missing"] += 1
                detail.append("MISSING  %-11s %s %s%s" % (r["case"], r["method"], r["target"][:90],
                                                           tag))
            else:
                c["lost"] += 1
            continue
        c["found"] += 1
        if len(evs) > 1:
            c["dup"] += 1
            detail.append("DUP x%d   %-11s %s %s%s" % (len(evs), r["case"], r["method"],
                                                      r["target"][:90], tag))
        errs = compare(r, evs[0], vni, one_way)
        if impaired and not req_ok:
            # its bytes did not all arrive: it may come out only flagged, with its true head
            for ev in evs:
                if (ev.get("http") or {}).get("gap") is True:
                    c["flagged"] += 1
                else:
                    c["unflagged"] += 1
                    detail.append("UNFLAG   %-11s %s %s: bytes were lost, event has gap %r"
                                  % (r["case"], r["method"], r["target"][:60],
                                     (ev.get("http") or {}).get("gap")))
            for kind, msg in errs:
                if kind in ("hdr", "addr"):
                    c["badhead"] += 1
                    detail.append("BADHEAD  %-11s %s %s: %s" % (r["case"], r["method"],
                                                                r["target"][:60], msg))
                elif kind == "status":
                    c["status"] += 1
                    detail.append("STATUS   %-11s %s %s: %s" % (r["case"], r["method"],
                                                                r["target"][:60], msg))
            continue
        for kind, msg in errs:
            if kind == "nostatus":
                c["nostatus"] += 1
                if impaired and resp_ok:
                    # every byte of its response arrived too: the status should be there
                    c["nostatus_ri"] += 1
                    warn_detail.append("NOSTATUS %-11s %s %s: no status, though every byte of "
                                       "its response arrived" % (r["case"], r["method"],
                                                                 r["target"][:60]))
                continue
            c[kind] += 1
        # impaired: a missing status is expected when response bytes were lost; a wrong one never
        hard = [(k, m) for k, m in errs if k != "nostatus" or (require_status and not impaired)]
        if not [k for k, _ in hard if k != "status" or not impaired] and len(evs) == 1:
            c["exact"] += 1
        for kind, msg in hard:
            detail.append("%-8s %-11s %s %s: %s%s" % (kind.upper(), r["case"], r["method"],
                                                       r["target"][:60], msg, tag))

    cols = ["sent", "found", "exact", "missing", "dup", "body", "addr", "hdr", "status", "gap",
            "nostatus"]
    if impaired:
        cols = ["sent", "intact", "exact", "missing", "dup", "body", "hdr", "gap", "status",
                "nostatus", "lost", "flagged", "unflagged", "badhead"]
    print("%-12s" % "case" + "".join("%9s" % x for x in cols), file=out)
    tot = dict((k, 0) for k in cases[next(iter(cases))]) if cases else {}
    for k in cols:
        tot.setdefault(k, 0)
    for name in sorted(cases):
        c = cases[name]
        for k in c:
            tot[k] += c[k]
        print("%-12s" % name + "".join("%9d" % c[k] for k in cols), file=out)
    print("%-12s" % "TOTAL" + "".join("%9d" % tot[k] for k in cols), file=out)
    print("events: %d http, %d alert, other %s; extra %d; noise-connection events %d; "
          "noise connections %d" % (len(http_events), len(alerts), other or "{}", len(extra),
                                    len(noise_hits), len(noise)), file=out)

    for e in extra[:max_detail]:
        h = e.get("http") or {}
        detail.append("EXTRA    %s %s %s  %s:%s -> %s:%s gap=%s" % (
            e.get("event_type"), h.get("http_method"), str(h.get("url"))[:90], e.get("src_ip"),
            e.get("src_port"), e.get("dest_ip"), e.get("dest_port"), h.get("gap")))
    for e in noise_hits[:max_detail]:
        h = e.get("http") or {}
        detail.append("NOISE    event from a noise connection: %s %r" % (h.get("http_method"),
                                                                         str(h.get("url"))[:60]))
    if other:
        warnings.append("event types other than http/alert: %s" % other)
    if tot["nostatus"]:
        warnings.append("%d matched events carry no http.status (response not attached)%s"
                        % (tot["nostatus"], "; %d of them had every response byte delivered"
                           % tot["nostatus_ri"] if impaired else ""))

    phantoms = len(extra) + len(noise_hits)
    if impaired:
        recall = tot["exact"] / tot["intact"] if tot["intact"] else 0.0
        ok = (tot["intact"] > 0 and recall >= min_recall and phantoms == 0 and not problems
              and tot["unflagged"] == 0 and tot["dup"] == 0 and tot["badhead"] == 0
              and tot["status"] == 0)
        print("impaired: %d sent, %d intact, %d exact (recall %.4f, need %.4f), %d phantoms, "
              "%d unflagged, %d flagged, %d lost, %d badhead, %d wrong status, %d dup"
              % (tot["sent"], tot["intact"], tot["exact"], recall, min_recall, phantoms,
                 tot["unflagged"], tot["flagged"], tot["lost"], tot["badhead"], tot["status"],
                 tot["dup"]), file=out)
    else:
        recall = tot["exact"] / tot["sent"] if tot["sent"] else 0.0
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
    for d in warn_detail[:5]:
        print("    " + d, file=out)
    print("CHECK %s" % ("PASS" if ok else "FAIL"), file=out)
    figures = {"sent": tot["sent"], "intact": tot["intact"] if impaired else tot["sent"],
               "exact": tot["exact"], "recall": round(recall, 5), "phantoms": phantoms,
               "unflagged": tot["unflagged"], "flagged": tot["flagged"], "lost": tot["lost"],
               "badhead": tot["badhead"], "dup": tot["dup"], "nostatus": tot["nostatus"],
               "nostatus_resp_intact": tot["nostatus_ri"], "impaired": impaired, "ok": ok}
    return ok, {"totals": tot, "cases": cases, "extra": len(extra), "noise_hits": len(noise_hits),
                "alerts": len(alerts), "other": other, "figures": figures}


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
    events = load_jsonl_file(a.events, errs, "events file")
    for e in errs:
        print("  PROBLEM  " + e)
    intact = None
    if a.relay_log:
        intact = intactness(sent, load_jsonl(a.relay_log, errs))
    ok, summary = check(sent, events, vni=a.vni, require_status=a.require_status,
                        one_way=a.one_way, intact=intact, min_recall=a.min_recall)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 0 if ok and not errs else 1


# ---------------------------------------------------------------------------
# ALB replay (run.sh --replay-check): vxtap listen --replay http://127.0.0.1:8080 in the tap
# namespace; there a second nginx (the "ALB") logs every request it gets as JSON and proxies it to
# `replay-recorder`, which records what arrived; `replay-check` compares both with sent.jsonl.

REPLAY_ADDED = ("x-forwarded-for", "x-forwarded-port", "x-forwarded-proto", "x-scheme",
                "x-server-addr", "x-server-port", "x-request-id")
# dropped by vxtap (hop-by-hop, framing: RFC 9110 7.6.1) and by nginx's proxy module on the way to
# the recorder (Expect, Keep-Alive, TE, Upgrade; Connection is redone for the upstream)
REPLAY_NOT_RELAYED = ("connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade",
                      "transfer-encoding", "content-length", "expect", "host")


def _recorder_read(rd):
    """One request from `rd`: (method, target, version, [(name, value)], body, chunked), or None
    at a clean end of the connection."""
    try:
        line = rd._line(1 << 20)
    except EOFError:
        return None
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        raise HTTPError("bad request line %r" % line[:100])
    headers = []
    while True:
        h = rd._line(1 << 20)
        if h == b"":
            break
        k, sep, v = h.partition(b":")
        if not sep:
            raise HTTPError("bad header line %r" % h[:100])
        headers.append((k, v.strip(b" \t")))
    lower = [(k.lower(), v) for k, v in headers]
    te = b",".join(v for k, v in lower if k == b"transfer-encoding").lower()
    cls = [v for k, v in lower if k == b"content-length"]
    body = b""
    chunked = b"chunked" in te
    if chunked:
        body = rd._chunked_body()
    elif cls:
        body = rd._exact(int(cls[0]))
    return parts[0], parts[1], parts[2], headers, body, chunked


def cmd_replay_recorder(a):
    """The origin behind the replay target's nginx: HTTP/1.1 keep-alive, Content-Length (and
    chunked) bodies; one JSON line per request (method, target, X-Request-ID, body sha256 and
    length, every header in order); answers 200 `ok m=<method> len=<body length>`."""
    host, _, port = a.listen.rpartition(":")
    ls = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host.strip("[]"), int(port)))
    ls.listen(256)
    ls.settimeout(0.2)
    out = open(a.out, "w")
    lock = threading.Lock()
    stop = threading.Event()
    st = {"requests": 0, "connections": 0, "errors": 0, "bytes": 0}
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def serve(sock, peer):
        sock.settimeout(a.idle)
        rd = SockReader(sock)
        try:
            while True:
                got = _recorder_read(rd)
                if got is None:
                    return
                method, target, version, headers, body, chunked = got
                low = [(k.lower(), v) for k, v in headers]
                rids = [v for k, v in low if k == b"x-request-id"]
                cl = [v for k, v in low if k == b"content-length"]
                rec = {"t": round(time.time(), 6), "peer_port": peer[1], "method": contract_str(method),
                       "target": contract_str(target), "target_b64": b64(target),
                       "version": contract_str(version),
                       "request_id": contract_str(rids[0]) if rids else None,
                       "n_request_id": len(rids), "body_len": len(body),
                       "body_sha256": sha256(body),
                       "content_length": contract_str(cl[0]) if cl else None,
                       "chunked": chunked,
                       "headers": [[contract_str(k), contract_str(v)] for k, v in headers]}
                conn_tok = b",".join(v for k, v in low if k == b"connection").lower()
                close = b"close" in conn_tok or (version == b"HTTP/1.0" and b"keep-alive" not in conn_tok)
                resp_body = b"ok m=%s len=%d\n" % (method, len(body))
                head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n" % (
                    len(resp_body), b"Connection: close\r\n" if close else b"")
                with lock:
                    out.write(json.dumps(rec) + "\n")
                    out.flush()
                    st["requests"] += 1
                    st["bytes"] += len(body)
                sock.sendall(head + (b"" if method == b"HEAD" else resp_body))
                if close:
                    return
        except (OSError, HTTPError, ValueError) as e:
            with lock:
                st["errors"] += 1
            log("replay-recorder: connection from port %d: %s: %s" % (peer[1], type(e).__name__, e))
        finally:
            sock.close()

    print("replay-recorder: listening on %s, recording to %s" % (a.listen, a.out), flush=True)
    end = time.time() + a.max_seconds
    while not stop.is_set() and time.time() < end:
        try:
            s, peer = ls.accept()
        except socket.timeout:
            continue
        except OSError:
            break
        with lock:
            st["connections"] += 1
        threading.Thread(target=serve, args=(s, peer), daemon=True).start()
    ls.close()
    time.sleep(0.1)  # (answers in progress)
    with lock:
        out.close()
        print("replay-recorder: %s" % json.dumps(st), flush=True)
    return 0


def _split_absolute(target):
    """(authority, rest) of an absolute-form target (`scheme://authority/path?query`), else None."""
    if not target[:1].isalpha():
        return None
    i = 0
    while i < len(target) and (target[i:i + 1].isalnum() or target[i:i + 1] in (b"+", b"-", b".")):
        i += 1
    if target[i:i + 3] != b"://":
        return None
    rest = target[i + 3:]
    j = next((k for k, c in enumerate(rest) if c in b"/?#"), len(rest))
    return rest[:j], rest[j:]


def origin_form(target):
    """vxtap replays an absolute-form target (`http://host/p?q`) as origin-form (`/p?q`); bytes
    that cannot stand in a request line (controls, space, DEL) as %XX (CONTRACT.md, README)."""
    sp = _split_absolute(target)
    path = target
    if sp is not None:
        path = sp[1] if sp[1].startswith(b"/") else b"/" + sp[1]
    return b"".join(b"%%%02X" % c if c <= 0x20 or c == 0x7f else bytes([c]) for c in path)


def _authority(target):
    """The authority of an absolute-form target (user information dropped), else None."""
    sp = _split_absolute(target)
    return sp[0].rpartition(b"@")[2] if sp is not None else None


def replay_expect(r):
    """What the replay target must get for the sent request record `r`: {field: value} of the nginx
    log fields (JSON log_format below) and the recorder's body figures."""
    target = base64.b64decode(r["target_b64"])
    hdrs = [(k, v) for k, v in r.get("headers") or []]
    low = [(k.lower(), v) for k, v in hdrs]
    conn_tokens = {t.strip().lower() for k, v in low if k == "connection" for t in v.split(",")}
    conn_tokens.discard("host")
    dropped = set(REPLAY_NOT_RELAYED[:6]) | conn_tokens

    def first(name):
        return next((v for k, v in low if k == name), None)

    host = first("host")
    if host is None:  # HTTP/1.0 without Host: the absolute-form authority, else the server
        auth = _authority(target)
        if auth:
            host = auth.decode("latin-1")
        else:
            ip = ipaddress.ip_address(r["dst_ip"])
            host = str(ip) if ip.version == 4 else "[%s]" % ip
            if r["dst_port"] != 80:
                host += ":%d" % r["dst_port"]
    xff_in = [v.strip(" \t") for k, v in low if k == "x-forwarded-for"] \
        if "x-forwarded-for" not in dropped else []
    xff = ", ".join([v for v in xff_in if v] + [norm_ip(r["src_ip"])])
    proto = first("x-forwarded-proto") if "x-forwarded-proto" not in dropped else None
    rid = first("x-request-id") if "x-request-id" not in dropped else None
    framed = any(k in ("content-length", "transfer-encoding") for k, _ in low)
    return {
        "method": r["method"], "target": origin_form(target),
        "host": host, "xff": xff, "xfport": str(r["src_port"]),
        "xfproto": proto if proto is not None else "http", "xscheme": "http",
        "xsaddr": norm_ip(r["dst_ip"]), "xsport": str(r["dst_port"]),
        "xrid": rid or None,  # None: a new one, unique
        "cl": str(r["body_len"]) if (framed or r["body_len"]) else "",
        "body_len": r["body_len"], "body_sha256": r["body_sha256"],
        # end-to-end headers the client sent, that must reach the origin as sent, in order
        "kept": [(k, v) for k, v in hdrs if k.lower() not in dropped
                 and k.lower() not in REPLAY_NOT_RELAYED and k.lower() not in REPLAY_ADDED],
    }


def _exact_requests(sent, events, vni):
    """Keys (method, target) of the requests the event check finds exact: one http event, no
    difference but a missing status (and gap false)."""
    evs = {}
    for ev in events:
        if ev.get("event_type") == "http":
            h = ev.get("http") or {}
            evs.setdefault((h.get("http_method"), h.get("url")), []).append(ev)
    out = set()
    for r in sent:
        if r.get("kind", "request") != "request":
            continue
        e = evs.get((r["method"], r["target"]), [])
        if len(e) == 1 and not [k for k, _ in compare(r, e[0], vni) if k != "nostatus"]:
            out.add((r["method"], r["target"]))
    return out


def _sx(s):
    """A string from a JSON file back to the bytes it stands for."""
    return s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s


def replay_check(sent, events, recorded, logged, vni=None, summary=None, out=sys.stdout,
                 max_detail=40, allow_skipped=False):
    """Every request the event check finds exact was replayed exactly once, as sent (method,
    origin-form target, body, Content-Length) with the right added headers; the replay target
    answered every one itself; nothing else was replayed. Returns (ok, figures)."""
    problems, detail = [], []
    reqs = [r for r in sent if r.get("kind", "request") == "request"]
    exact_keys = _exact_requests(sent, events, vni)
    by_key = {}  # (method, origin-form target bytes) -> sent record
    for r in reqs:
        by_key[(r["method"], origin_form(base64.b64decode(r["target_b64"])))] = r
    rec_by, log_by = {}, {}
    for x in recorded:
        rec_by.setdefault((x["method"], base64.b64decode(x["target_b64"])), []).append(x)
    for x in logged:
        log_by.setdefault((x.get("method"), _sx(x.get("uri"))), []).append(x)
    # answers of the replay target's nginx: its own 4xx/5xx, or an answer without the recorder
    ngx_err = 0
    for x in logged:
        st = int(x.get("status") or 0)
        if st >= 400 or not x.get("upstream_status"):
            ngx_err += 1
            detail.append("NGXERR   nginx answered %s (upstream %r) to %s %s"
                          % (x.get("status"), x.get("upstream_status"), x.get("method"),
                             _short(x.get("uri"))))
    # nothing replayed that the client did not send
    extra = 0
    for key, xs in list(log_by.items()) + list(rec_by.items()):
        if key not in by_key:
            extra += len(xs)
            detail.append("EXTRA    replayed, never sent: %s %s (x%d)" % (key[0], _short(key[1]),
                                                                        len(xs)))
    ids = {}
    for x in logged:
        if x.get("xrid"):
            ids[x["xrid"]] = ids.get(x["xrid"], 0) + 1
    cases = {}
    fig = dict(sent=len(reqs), expected=0, replayed=0, exact=0, header_correct=0, missing=0,
               dup=0, not_expected_replayed=0)
    for key, r in by_key.items():
        c = cases.setdefault(r["case"], dict(sent=0, expected=0, replayed=0, exact=0, hdr_ok=0))
        c["sent"] += 1
        lg, rc = log_by.get(key, []), rec_by.get(key, [])
        tgt = "%s %s" % (r["method"], _short(r["target"]))
        if (r["method"], r["target"]) not in exact_keys:
            if lg or rc:
                fig["not_expected_replayed"] += 1
                if len(lg) > 1 or len(rc) > 1:
                    fig["dup"] += 1
                    detail.append("DUP      %-11s %s: replayed x%d (nginx) / x%d (recorder)"
                                  % (r["case"], tgt, len(lg), len(rc)))
            continue
        c["expected"] += 1
        fig["expected"] += 1
        if not lg and not rc:
            fig["missing"] += 1
            detail.append("MISSING  %-11s %s: exact event, never replayed" % (r["case"], tgt))
            continue
        c["replayed"] += 1
        fig["replayed"] += 1
        errs, herrs = [], []
        if len(lg) != 1 or len(rc) != 1:
            fig["dup"] += int(len(lg) > 1 or len(rc) > 1)
            errs.append("replayed x%d (nginx log) / x%d (recorder), want once" % (len(lg), len(rc)))
        want = replay_expect(r)
        g = lg[0] if lg else {}
        x = rc[0] if rc else None
        if x is None:
            errs.append("nginx logged it (status %s) but never passed it on" % g.get("status"))
        else:
            if x["body_sha256"] != want["body_sha256"] or x["body_len"] != want["body_len"]:
                errs.append("body %d bytes sha256 %s..., sent %d bytes %s..."
                            % (x["body_len"], x["body_sha256"][:12], want["body_len"],
                               want["body_sha256"][:12]))
        if g:
            if g.get("cl") != want["cl"]:
                errs.append("Content-Length %r, want %r" % (g.get("cl"), want["cl"] or "(none)"))
            if g.get("protocol") != "HTTP/1.1":
                errs.append("protocol %r, want HTTP/1.1" % g.get("protocol"))
            for f, name in (("host", "Host"), ("xff", "X-Forwarded-For"),
                            ("xfport", "X-Forwarded-Port"), ("xfproto", "X-Forwarded-Proto"),
                            ("xscheme", "X-Scheme"), ("xsaddr", "X-Server-Addr"),
                            ("xsport", "X-Server-Port")):
                gv = g.get(f)
                if gv != want[f]:
                    herrs.append("%s %r, want %r" % (name, g.get(f), want[f]))
            rid = g.get("xrid")
            if not rid:
                herrs.append("no X-Request-ID")
            elif want["xrid"] is not None and rid != want["xrid"]:
                herrs.append("X-Request-ID %r, the client sent %r" % (rid, want["xrid"]))
            elif ids.get(rid, 0) > 1:
                herrs.append("X-Request-ID %r given to %d requests" % (rid, ids[rid]))
        if x is not None:
            low = [(k.lower(), v) for k, v in x["headers"]]
            for name in REPLAY_ADDED:
                n = sum(1 for k, _ in low if k == name)
                if n != 1:
                    herrs.append("%d %s headers at the origin, want 1" % (n, name))
            # the client's other headers: all there, same values, same order
            got = [(k, v) for k, v in x["headers"] if k.lower() not in REPLAY_NOT_RELAYED
                   and k.lower() not in REPLAY_ADDED]
            it = iter(got)
            for kv in want["kept"]:
                if not any(tuple(y) == kv for y in it):
                    herrs.append("header %s missing or out of order at the origin (got %s)"
                                 % (_short(list(kv)), _short(got)))
                    break
        for e in errs:
            detail.append("REPLAY   %-11s %s: %s" % (r["case"], tgt, e))
        for e in herrs:
            detail.append("RHDR     %-11s %s: %s" % (r["case"], tgt, e))
        if not errs:
            c["exact"] += 1
            fig["exact"] += 1
            if not herrs:
                c["hdr_ok"] += 1
                fig["header_correct"] += 1
    fig.update(nginx_log=len(logged), recorded=len(recorded), extra=extra, nginx_errors=ngx_err,
               unique_ids=len(ids))
    # vxtap's own count: everything accepted was answered, nothing failed, dropped or abandoned
    rs = (summary or {}).get("replay")
    fig["vxtap"] = rs
    if rs is None:
        problems.append("no `replay` object in vxtap's exit summary")
    else:
        for k in ("failed", "dropped", "abandoned") + (() if allow_skipped else ("skipped",)):
            v = rs.get(k)
            if (sum(v.values()) if isinstance(v, dict) else v or 0) != 0:
                problems.append("vxtap replay summary: %s %s, want 0" % (k, v))
        if rs.get("sent") != len(logged):
            problems.append("vxtap replay summary: sent %s, the target logged %d requests"
                            % (rs.get("sent"), len(logged)))
    print("%-12s" % "case" + "".join("%9s" % k for k in ("sent", "expected", "replayed", "exact",
                                                         "hdr_ok")), file=out)
    tot = dict(sent=0, expected=0, replayed=0, exact=0, hdr_ok=0)
    for name in sorted(cases):
        for k in tot:
            tot[k] += cases[name][k]
        print("%-12s" % name + "".join("%9d" % cases[name][k] for k in tot), file=out)
    print("%-12s" % "TOTAL" + "".join("%9d" % tot[k] for k in tot), file=out)
    ok = (fig["expected"] > 0 and fig["expected"] == fig["replayed"] == fig["exact"]
          == fig["header_correct"] and fig["dup"] == 0 and extra == 0 and ngx_err == 0
          and not problems)
    print("replay: %d sent, %d expected (exact events), %d replayed, %d exact, %d header-correct; "
          "%d missing, %d dup, %d extra, %d nginx errors; target log %d lines, recorder %d "
          "requests, %d distinct X-Request-IDs; vxtap replay summary %s"
          % (fig["sent"], fig["expected"], fig["replayed"], fig["exact"], fig["header_correct"],
             fig["missing"], fig["dup"], extra, ngx_err, len(logged), len(recorded), len(ids),
             json.dumps(rs, sort_keys=True)), file=out)
    if fig["not_expected_replayed"]:
        print("  note: %d requests whose events were not exact were replayed too"
              % fig["not_expected_replayed"], file=out)
    for d in detail[:max_detail]:
        print("  " + d, file=out)
    if len(detail) > max_detail:
        print("  ... %d more" % (len(detail) - max_detail), file=out)
    for p in problems:
        print("  PROBLEM  " + p, file=out)
    print("REPLAY-CHECK %s" % ("PASS" if ok else "FAIL"), file=out)
    fig["ok"] = ok
    return ok, fig


def cmd_replay_check(a):
    errs = []
    sent = []
    for p in a.sent:
        sent += load_jsonl(p, errs)
    events = load_jsonl_file(a.events, errs)
    recorded = load_jsonl_file(a.recorder, errs, "recorder file")
    logged = load_jsonl_file(a.nginx_log, errs, "replay target access log")
    summ = vxtap_summary(a.summary) if a.summary else None
    for e in errs:
        print("  PROBLEM  " + e)
    ok, fig = replay_check(sent, events, recorded, logged, vni=a.vni, summary=summ,
                           allow_skipped=a.allow_skipped)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(fig, f, indent=1)
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
              "tcp.dstport", "tcp.seq", "tcp.len", "tcp.flags.syn", "tcp.stream"]
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
    tuple_streams = {}
    max_frame = 0
    n_pkts = n6 = 0
    vnis = set()
    for line in p.stdout.splitlines():
        f = line.split("\t")
        if len(f) < len(fields):
            continue
        flen, vni, s4, s6, d4, d6, sp, dp, seq, tl, syn, stream = f[:12]
        n_pkts += 1
        max_frame = max(max_frame, int(flen))
        vnis.add(vni)
        src, dst = norm_ip(s6 or s4), norm_ip(d6 or d4)
        if s6:
            n6 += 1
        if not tl or not seq:
            continue
        # tshark numbers every connection (tcp.stream), a reused port's next one included: the
        # n-th stream on these addresses and ports is the client's n-th connection on them
        key = (src, int(sp), dst, int(dp))
        streams = tuple_streams.setdefault(key, [])
        if stream not in streams:
            streams.append(stream)
        fl = flows.setdefault((key, streams.index(stream)), [])
        if int(tl) > 0:
            fl.append((int(seq), int(seq) + int(tl)))
    bad = 0
    full = 0
    for c in conns:
        n = c.get("tuple_seq", 0)
        fwd = flows.get(((norm_ip(c["src_ip"]), c["src_port"], norm_ip(c["dst_ip"]), c["dst_port"]),
                         n), [])
        rev = flows.get(((norm_ip(c["dst_ip"]), c["dst_port"], norm_ip(c["src_ip"]), c["src_port"]),
                         n), [])
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
# impairment relay: kernel VXLAN sender -> relay (drop / duplicate / reorder / truncate) -> vxtap
#
# Every datagram the relay receives gets one line in relay.jsonl, written before it is acted on:
#   {"i": index, "a": action, "n": datagram bytes, "o": bytes forwarded (after truncation),
#    "f": [src_ip, src_port, dst_ip, dst_port], "s": tcp seq, "p": tcp payload bytes,
#    "d": tcp payload bytes delivered (0 when dropped; the kept prefix when truncated), "F": flags}
# ("f".."F" only for inner TCP). Actions: fwd, drop, dup (sent twice: now and after k later
# datagrams), hold (sent after k later datagrams: reordering), each with "+trunc" when the UDP payload
# was cut to 8 + N bytes (the VXLAN header plus N bytes of the inner frame, as an AWS mirror session's
# packet length does). The checker turns the log into the exact byte coverage of every TCP stream.

IMPAIR_KEYS = {"loss": float, "dup": float, "reorder": float, "truncate": int, "tprob": float,
               "seed": int, "maxdelay": int}


def parse_impair(spec):
    """`loss=0.01,dup=0.03,reorder=0.08,truncate=N,tprob=P,seed=S,maxdelay=K` -> dict."""
    out = {"loss": 0.0, "dup": 0.0, "reorder": 0.0, "truncate": 0, "tprob": 1.0, "seed": 1,
           "maxdelay": 4}
    for part in filter(None, spec.split(",")):
        k, _, v = part.partition("=")
        if k not in IMPAIR_KEYS or not v:
            raise ValueError("impair: unknown or empty key %r (known: %s)"
                             % (k, ",".join(IMPAIR_KEYS)))
        out[k] = IMPAIR_KEYS[k](v)
    for k in ("loss", "dup", "reorder", "tprob"):
        if not 0 <= out[k] <= 1:
            raise ValueError("impair: %s must be within 0..1" % k)
    if out["loss"] + out["dup"] + out["reorder"] > 1:
        raise ValueError("impair: loss + dup + reorder > 1")
    if out["truncate"] < 0 or out["maxdelay"] < 1:
        raise ValueError("impair: truncate >= 0, maxdelay >= 1")
    return out


def vxlan_tcp(d):
    """Inner TCP of a VXLAN datagram (the UDP payload): (flow, seq, payload_len, flags, data_offset)
    with flow = (src, sport, dst, dport), or None when the inner packet is not TCP."""
    try:
        if len(d) < 8 + 14:
            return None
        p = 8
        et = struct.unpack_from("!H", d, p + 12)[0]
        p += 14
        while et in (0x8100, 0x88A8):
            et = struct.unpack_from("!H", d, p + 2)[0]
            p += 4
        if et == 0x0800:
            ihl = (d[p] & 15) * 4
            tot = struct.unpack_from("!H", d, p + 2)[0]
            if d[p + 9] != 6 or struct.unpack_from("!H", d, p + 6)[0] & 0x3FFF:
                return None  # not TCP, or a fragment
            src = socket.inet_ntop(socket.AF_INET, d[p + 12:p + 16])
            dst = socket.inet_ntop(socket.AF_INET, d[p + 16:p + 20])
            t, end = p + ihl, p + tot
        elif et == 0x86DD:
            plen = struct.unpack_from("!H", d, p + 4)[0]
            if d[p + 6] != 6:
                return None
            src = socket.inet_ntop(socket.AF_INET6, d[p + 8:p + 24])
            dst = socket.inet_ntop(socket.AF_INET6, d[p + 24:p + 40])
            t, end = p + 40, p + 40 + plen
        else:
            return None
        sport, dport, seq = struct.unpack_from("!HHI", d, t)
        doff = (d[t + 12] >> 4) * 4
        flags = d[t + 13]
        data = t + doff
        return (src, sport, dst, dport), seq, max(0, end - data), flags, data
    except (IndexError, struct.error, ValueError):
        return None


class PcapWriter:
    """Classic pcap, Ethernet: each forwarded datagram as Ethernet/IPv4/UDP(dst 4789)/payload, so that
    `vxtap pcap relayed.pcap` sees exactly what the live vxtap was sent."""

    def __init__(self, path, src, dst, dport):
        self.f = open(path, "wb")
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        self.src, self.dst, self.dport = socket.inet_aton(src), socket.inet_aton(dst), dport
        self.ident = 0

    def write(self, payload, sport):
        self.ident = (self.ident + 1) & 0xFFFF
        ulen = 8 + len(payload)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, self.ident, 0x4000, 64, 17, 0,
                         self.src, self.dst)
        s = sum(struct.unpack("!10H", ip))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        ip = ip[:10] + struct.pack("!H", ~s & 0xFFFF) + ip[12:]
        frame = (b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip
                 + struct.pack("!HHHH", sport, self.dport, ulen, 0) + payload)
        t = time.time()
        self.f.write(struct.pack("<IIII", int(t), int(t % 1 * 1e6), len(frame), len(frame)) + frame)

    def close(self):
        self.f.close()


def _big_buffers(sock):
    for opt, force in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):  # SO_*BUFFORCE
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, 64 << 20)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, opt, 64 << 20)


def cmd_relay(a):
    cfg = parse_impair(a.impair)
    rng = random.Random(cfg["seed"])
    host, _, port = a.listen.rpartition(":")
    thost, _, tport = a.to.rpartition(":")
    target = (thost, int(tport))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _big_buffers(sock)
    sock.bind((host, int(port)))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    logf = open(a.log, "w")
    pcap = PcapWriter(a.pcap, host, thost, int(tport)) if a.pcap else None
    held = []  # [release_at_index, payload, sport]
    st = dict(received=0, sent=0, bytes_in=0, bytes_out=0, drop=0, dup=0, hold=0, trunc=0,
              tcp=0, max_held=0)
    cut = cfg["truncate"]

    def send(payload, sport):
        sock.sendto(payload, target)
        st["sent"] += 1
        st["bytes_out"] += len(payload)
        if pcap:
            pcap.write(payload, sport)

    def release(upto):
        keep = []
        for item in held:
            if item[0] <= upto:
                send(item[1], item[2])
            else:
                keep.append(item)
        held[:] = keep

    def handle(d, sport):
        i = st["received"]
        st["received"] += 1
        st["bytes_in"] += len(d)
        tcp = vxlan_tcp(d)
        out = d
        action = []
        if cut and len(d) > 8 + cut and rng.random() < cfg["tprob"]:
            out = d[:8 + cut]
            action.append("trunc")
            st["trunc"] += 1
        r = rng.random()
        if r < cfg["loss"]:
            act = "drop"
        elif r < cfg["loss"] + cfg["dup"]:
            act = "dup"
        elif r < cfg["loss"] + cfg["dup"] + cfg["reorder"]:
            act = "hold"
        else:
            act = "fwd"
        st[act] = st.get(act, 0) + 1
        rec = {"i": i, "a": "+".join([act] + action), "n": len(d), "o": len(out)}
        if tcp:
            st["tcp"] += 1
            flow, seq, plen, flags, data = tcp
            delivered = 0 if act == "drop" else max(0, min(plen, len(out) - data))
            rec.update(f=list(flow), s=seq, p=plen, d=delivered, F=flags)
        logf.write(json.dumps(rec, separators=(",", ":")) + "\n")
        if act == "fwd":
            send(out, sport)
        elif act == "dup":
            send(out, sport)
            held.append([i + rng.randint(0, cfg["maxdelay"]), out, sport])
        elif act == "hold":
            held.append([i + rng.randint(1, cfg["maxdelay"]), out, sport])
        st["max_held"] = max(st["max_held"], len(held))
        release(i)

    log("relay: %s -> %s:%s impair %s" % (a.listen, thost, tport, json.dumps(cfg)))
    end = time.time() + a.max_seconds
    sock.settimeout(0.02)
    while not stop and time.time() < end:
        try:
            d, src = sock.recvfrom(65535)
        except socket.timeout:
            release(1 << 62)  # idle: nothing held back for long
            continue
        except InterruptedError:
            continue
        handle(d, src[1])
    # whatever is still queued, then everything held back
    sock.setblocking(False)
    while True:
        try:
            d, src = sock.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            break
        handle(d, src[1])
    release(1 << 62)
    logf.close()
    if pcap:
        pcap.close()
    st["impair"] = cfg
    with open(a.summary, "w") as f:
        json.dump(st, f)
    log("relay done: %s" % json.dumps(st))
    return 0


def cmd_udp_sink(a):
    """Bind a UDP port and discard what arrives (so that `--iface` runs get no ICMP unreachables)."""
    host, _, port = a.bind.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _big_buffers(sock)
    sock.bind((host, int(port)))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    log("sink: bound %s" % a.bind)
    n = nbytes = 0
    end = time.time() + a.max_seconds
    sock.settimeout(0.05)
    while not stop and time.time() < end:
        try:
            d = sock.recv(65535)
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        n += 1
        nbytes += len(d)
    if a.summary:
        with open(a.summary, "w") as f:
            json.dump({"datagrams": n, "bytes": nbytes}, f)
    return 0


# -- what the relay log says about every TCP stream


def relay_streams(records):
    """From relay.jsonl records: {(flow, n): merged delivered coverage as stream offsets} for the
    n-th connection (from 0) on the flow's addresses and ports, a new one at each SYN with another
    ISN, where offset 0 is the first byte after its SYN; connections whose SYN was never sent are
    left out. The log is in the order the kernel sent, so each segment belongs to the last SYN."""
    isns = {}
    segs = {}
    for r in records:
        f = r.get("f")
        if not f:
            continue
        key = (norm_ip(f[0]), f[1], norm_ip(f[2]), f[3])
        if r["F"] & 0x02:  # SYN or SYN-ACK: the stream's ISN
            seen = isns.setdefault(key, [])
            if r["s"] not in seen:
                seen.append(r["s"])
        if r["d"] > 0 and key in isns:
            n = len(isns[key]) - 1
            segs.setdefault((key, n), []).append((r["s"], r["d"]))
    out = {}
    for key, seen in isns.items():
        for n, base_isn in enumerate(seen):
            base = (base_isn + 1) & 0xFFFFFFFF
            iv = []
            for s, d in segs.get((key, n), []):
                o = (s - base) & 0xFFFFFFFF
                if o >= 0x80000000:  # before the ISN: not this connection
                    continue
                iv.append((o, o + d))
            out[(key, n)] = _coverage(iv)
    return out


def covered(cov, a, b):
    """Whether merged intervals `cov` contain every offset of [a, b)."""
    if b <= a:
        return True
    for s, e in cov:
        if s <= a and b <= e:
            return True
    return False


def intactness(sent, relay_records):
    """{(method, target): (request intact, response intact or None)} for every sent request."""
    streams = relay_streams(relay_records)
    out = {}
    for r in sent:
        if r.get("kind", "request") != "request":
            continue
        key = (r["method"], r["target"])
        if "src_ip" not in r or r.get("stream_off") is None:
            out[key] = (False, None)
            continue
        n = r.get("tuple_seq", 0)
        fwd = ((norm_ip(r["src_ip"]), r["src_port"], norm_ip(r["dst_ip"]), r["dst_port"]), n)
        rev = ((fwd[0][2], fwd[0][3], fwd[0][0], fwd[0][1]), n)
        a = r["stream_off"]
        req_ok = fwd in streams and covered(streams[fwd], a, a + r["wire_len"])
        resp_ok = None
        if r.get("resp_range") and rev in streams:
            resp_ok = covered(streams[rev], r["resp_range"][0], r["resp_range"][1])
        out[key] = (req_ok, resp_ok)
    return out


# ---------------------------------------------------------------------------
# metrics, settling and the drain probe (issue 8)


def http_get(addr, path, timeout=2.0):
    """(status, body text) of GET http://addr/path on a fresh connection."""
    host, _, port = addr.rpartition(":")
    c = Conn(host.strip("[]"), int(port), timeout=timeout)
    try:
        c.send(b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
               % (path.encode(), addr.encode()))
        status, _, body, _ = c.read_response("GET")
        return status, body.decode("utf-8", "replace")
    finally:
        c.close()


def parse_metrics(text):
    """Prometheus text -> {name or name{labels}: float}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, val = line.rpartition(" ")
        try:
            out[name.strip()] = float(val)
        except ValueError:
            pass
    return out


def count_http_events(path):
    n = 0
    if not os.path.exists(path):
        return 0
    with open(path, "rb") as f:
        for line in f:
            if b'"event_type":"http"' in line or b'"event_type": "http"' in line:
                n += 1
    return n


def cmd_counters(a):
    """vxtap's packets_total and this namespace's UDP counters once both stay the same for 50 ms (a
    baseline). Read back to back only, a datagram the kernel had counted but vxtap had not yet taken
    in (a stray mirrored IPv6 neighbour or router message before the client starts) made the settle
    check expect one packet fewer than vxtap then counted."""
    def sample():
        _, text = http_get(a.health, "/metrics")
        return int(parse_metrics(text).get("vxtap_packets_total", -1)), udp_counters()
    prev = sample()
    end = time.time() + 5
    while time.time() < end:
        time.sleep(0.05)
        cur = sample()
        if cur == prev:
            break
        prev = cur
    print(json.dumps({"packets_total": prev[0], "udp": prev[1]}))
    return 0


def cmd_settle(a):
    """Wait until vxtap has taken in every datagram and written every event, then save /metrics.

    Expected packets: the relay's `sent` count (--relay-summary), else vxtap's packets_total at the
    --base sample plus the namespace's UDP InDatagrams since then (vxtap's socket, or the sink of an
    --iface run, is the only UDP socket there). Done when packets_total reaches that, requests_total
    equals the http events in the file, queues are empty and nothing changed for two polls."""
    base = json.loads(a.base) if a.base else None
    want_req = None
    if a.want_requests_from:
        want_req = sum(1 for p in a.want_requests_from if os.path.exists(p)
                       for r in load_jsonl(p) if r.get("kind", "request") == "request")
    t0 = time.time()
    end = t0 + a.timeout
    prev = None
    stable = 0
    m = {}
    text = ""
    expected = None
    while True:
        if a.relay_summary:
            expected = json.load(open(a.relay_summary))["sent"]
        elif base:
            expected = base["packets_total"] + udp_counters()["InDatagrams"] - base["udp"]["InDatagrams"]
        try:
            _, text = http_get(a.health, "/metrics")
            m = parse_metrics(text)
        except (OSError, HTTPError, ValueError) as e:
            log("settle: /metrics: %s" % e)
        ev = count_http_events(a.events)
        pk = int(m.get("vxtap_packets_total", -1))
        rq = int(m.get("vxtap_requests_total", -1))
        depth = sum(v for k, v in m.items() if k.startswith("vxtap_queue_depth"))
        cur = (pk, rq, ev)
        done = ((expected is None or pk >= expected) and rq == ev and depth == 0
                and (want_req is None or rq >= want_req))
        stable = stable + 1 if (done and cur == prev) else 0
        prev = cur
        if stable >= 2 or time.time() > end:
            break
        time.sleep(0.05)
    with open(a.metrics_out, "w") as f:
        f.write(text)
    res = {"settled": stable >= 2, "waited_ms": round((time.time() - t0) * 1000),
           "expected_packets": expected, "packets_total": prev[0], "requests_total": prev[1],
           "http_events_in_file": prev[2], "want_requests": want_req, "udp": udp_counters()}
    with open(a.json, "w") as f:
        json.dump(res, f)
    log("settle: %s" % json.dumps(res))
    return 0 if res["settled"] else 1


def _proc_alive(pid):
    try:
        st = open("/proc/%d/stat" % pid).read()
    except OSError:
        return False
    return st.rsplit(") ", 1)[-1].split(" ", 1)[0] != "Z"


def cmd_drain_probe(a):
    """SIGTERM vxtap, then poll /-/healthcheck in a tight loop until the process is gone.

    Records every answer (200 / 503 / refused) with its time since the signal, and the time the
    process took to exit (a zombie counts as exited: the parent shell reaps it)."""
    polls = []
    host, _, port = a.health.rpartition(":")
    req = b"GET /-/healthcheck HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    t0 = time.monotonic()
    os.kill(a.pid, signal.SIGTERM)
    exit_ms = None
    end = t0 + a.timeout
    while time.monotonic() < end:
        t = time.monotonic()
        try:
            c = Conn(host, int(port), timeout=1.0)
            c.send(req)
            status, _, _, _ = c.read_response("GET")
            c.close()
            what = status
        except ConnectionRefusedError:
            what = "refused"
        except (OSError, HTTPError, ValueError):
            what = "error"
        polls.append(((t - t0) * 1000, what))
        if not _proc_alive(a.pid):
            exit_ms = (time.monotonic() - t0) * 1000
            break
        if what in ("refused", "error"):
            time.sleep(0.001)
        elif what == 503:
            time.sleep(0.002)  # seen draining: keep watching, without piling up TIME_WAITs
    first503 = next((t for t, w in polls if w == 503), None)
    last200 = max((t for t, w in polls if w == 200), default=None)
    res = {
        "exited": exit_ms is not None, "drain_ms": round(exit_ms, 1) if exit_ms else None,
        "polls": len(polls), "n200": sum(1 for _, w in polls if w == 200),
        "n503": sum(1 for _, w in polls if w == 503),
        "nrefused": sum(1 for _, w in polls if w == "refused"),
        "nerror": sum(1 for _, w in polls if w == "error"),
        "first_503_ms": round(first503, 2) if first503 is not None else None,
        "last_200_ms": round(last200, 2) if last200 is not None else None,
        "200_after_503": bool(first503 is not None and last200 is not None and last200 > first503),
        "timeline": _timeline(polls),
    }
    with open(a.json, "w") as f:
        json.dump(res, f)
    log("drain-probe: %s" % json.dumps({k: v for k, v in res.items() if k != "timeline"}))
    return 0


def _timeline(polls):
    """Runs of equal answers: [[answer, count, first ms, last ms]]."""
    out = []
    for t, w in polls:
        if out and out[-1][0] == w:
            out[-1][1] += 1
            out[-1][3] = round(t, 2)
        else:
            out.append([w, 1, round(t, 2), round(t, 2)])
    return out


def _load_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def vxtap_summary(path):
    """vxtap's one-line JSON exit summary: the last stderr line that parses as a JSON object."""
    try:
        lines = open(path, errors="replace").read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    return None


def cmd_run_report(a):
    """Drain and metrics report of a lab run (issue 8); with --strict its failures fail the run.

    (a) /-/healthcheck answered 503 while draining (never 200 again after a 503), promptly;
    (b) every request emitted: the checker's job (check.json);
    (c) exit 0 within --drain-timeout, drained: true;
    (d) /metrics scraped before SIGTERM: vxtap_packets_total equals the datagrams that reached
        vxtap (kernel UDP counters, or the relay's forwarded count), vxtap_requests_total equals the
        http events written by then; at exit the summary's requests equal the http events written."""
    o = a.out
    settle = _load_json(os.path.join(o, "settle.json"), {})
    drain = _load_json(os.path.join(o, "drain.json"), {})
    chk = _load_json(os.path.join(o, "check.json"), {})
    relay = _load_json(os.path.join(o, "relay-summary.json"))
    summ = vxtap_summary(os.path.join(o, "vxtap.stderr")) or {}
    events_final = count_http_events(os.path.join(o, "events.jsonl"))
    fig = dict(chk.get("figures") or {})
    fails = []
    notes = []

    # (a) health while draining
    n503 = drain.get("n503", 0)
    if not drain:
        fails.append("no drain probe result")
    elif n503 == 0:
        fails.append("/-/healthcheck never answered 503 after SIGTERM (timeline %s)"
                     % drain.get("timeline"))
    if drain.get("200_after_503"):
        fails.append("/-/healthcheck answered 200 after it had answered 503")
    if drain.get("first_503_ms") is not None and drain["first_503_ms"] > a.max_503_ms:
        fails.append("first 503 only %.0f ms after SIGTERM (> %d ms)"
                     % (drain["first_503_ms"], a.max_503_ms))
    # (c) exit
    if not drain.get("exited"):
        fails.append("vxtap did not exit within drain timeout + 5 s")
    elif drain["drain_ms"] > a.drain_timeout * 1000:
        fails.append("exit %.0f ms after SIGTERM > --drain-timeout %d s"
                     % (drain["drain_ms"], a.drain_timeout))
    if str(a.vxtap_rc) != "0":
        fails.append("vxtap exit code %s" % a.vxtap_rc)
    if summ.get("drained") is not True:
        fails.append("exit summary says drained=%r" % summ.get("drained"))
    # (d) metrics
    if not settle.get("settled"):
        fails.append("metrics never settled: %s" % json.dumps(settle))
    exp, pk = settle.get("expected_packets"), settle.get("packets_total")
    if exp is not None and pk != exp:
        fails.append("vxtap_packets_total %s before SIGTERM, but %s datagrams reached it (%s)"
                     % (pk, exp, "relay's forwarded count" if relay else "kernel UDP counters"))
    if settle.get("requests_total") != settle.get("http_events_in_file"):
        fails.append("vxtap_requests_total %s before SIGTERM, but %s http events were written"
                     % (settle.get("requests_total"), settle.get("http_events_in_file")))
    if summ.get("requests") != events_final:
        fails.append("exit summary requests %s, but %d http events in the file"
                     % (summ.get("requests"), events_final))
    drained_out = None
    if settle.get("http_events_in_file") is not None:
        drained_out = events_final - settle["http_events_in_file"]
    want = settle.get("want_requests")
    if want is not None and settle.get("requests_total") is not None \
            and settle["requests_total"] < want:
        fails.append("only %d of %d requests written %d ms after the last packet: vxtap held the "
                     "rest back (they came out %s)"
                     % (settle["requests_total"], want, settle.get("waited_ms", 0),
                        "in the drain" if drained_out else "never"))
    if relay:
        notes.append("relay: received %d, forwarded %d (drop %d, dup %d, hold %d, trunc %d)"
                     % (relay["received"], relay["sent"], relay.get("drop", 0),
                        relay.get("dup", 0), relay.get("hold", 0), relay.get("trunc", 0)))
    fig.update({
        "drain_ms": drain.get("drain_ms"), "first_503_ms": drain.get("first_503_ms"),
        "health_polls": drain.get("polls"), "n200": drain.get("n200"), "n503": n503,
        "packets_expected": exp, "packets_total": pk,
        "requests_total": settle.get("requests_total"),
        "events_at_scrape": settle.get("http_events_in_file"), "events_final": events_final,
        "emitted_in_drain": drained_out, "summary_requests": summ.get("requests"),
        "summary_packets": summ.get("packets"), "gaps": summ.get("gaps"),
        "requests_with_gap": summ.get("requests_with_gap"),
        "report_failures": fails, "strict": a.strict,
    })
    if relay:
        fig["relay"] = {k: relay.get(k) for k in ("received", "sent", "drop", "dup", "hold",
                                                  "trunc")}
    with open(os.path.join(o, "run.json"), "w") as f:
        json.dump(fig, f, indent=1)
    print("drain: SIGTERM -> exit %s ms (limit %d s); health: %s polls, first 503 at %s ms, %s x 200, "
          "%s x 503; timeline %s" % (drain.get("drain_ms"), a.drain_timeout, drain.get("polls"),
                                    drain.get("first_503_ms"), drain.get("n200"), n503,
                                    drain.get("timeline")))
    print("metrics before SIGTERM: packets_total %s (datagrams that reached vxtap: %s), "
          "requests_total %s (http events written: %s); %s events came out of the drain; "
          "exit summary: requests %s, %d http events in the file"
          % (pk, exp, settle.get("requests_total"), settle.get("http_events_in_file"), drained_out,
             summ.get("requests"), events_final))
    for n in notes:
        print(n)
    for f in fails:
        print("  %s %s" % ("FAIL" if a.strict else "note", f))
    print("RUN-REPORT %s" % ("FAIL" if fails and a.strict else "PASS" if not fails else "PASS (not strict)"))
    return 1 if fails and a.strict else 0


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
    # -- impaired runs: intactness from the relay log, and the impaired rules
    fails += _selftest_impaired(sent, events)
    # -- ALB replay: what the replay target got, against the sent requests
    fails += _selftest_replay(sent, events)
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


def _selftest_impaired(sent, events):
    fails = []

    def seg(i, a, flow, seq, p, d=None, flags=0x18):
        return {"i": i, "a": a, "n": 100 + p, "o": 100 + p, "f": list(flow), "s": seq, "p": p,
                "d": (0 if a.startswith("drop") else p) if d is None else d, "F": flags}

    # intactness: offsets after the SYN, drops, truncated prefixes, duplicates, sequence wrap
    fa = ("10.0.0.2", 1000, "10.0.0.1", 80)
    fb = ("fd00::2", 1001, "fd00::1", 80)
    isn_b = 0xFFFFFFF0  # stream B wraps past 2^32 at offset 15
    recs = [seg(0, "fwd", fa, 5000, 0, flags=0x02),
            seg(1, "fwd", fa, 5001, 100), seg(2, "drop", fa, 5101, 50),
            seg(3, "fwd+trunc", fa, 5151, 80, d=30), seg(4, "hold", fa, 5231, 20),
            seg(5, "drop", fa, 5251, 10), seg(6, "dup", fa, 5251, 10),  # a retransmission arrived
            seg(7, "fwd", fb, isn_b, 0, flags=0x02), seg(8, "fwd", fb, isn_b + 1, 40),
            seg(9, "drop", fb, (isn_b + 41) & 0xFFFFFFFF, 5)]

    def rq(t, flow, off, n, resp=None):
        r = {"kind": "request", "method": "GET", "target": t, "src_ip": flow[0],
             "src_port": flow[1], "dst_ip": flow[2], "dst_port": flow[3], "stream_off": off,
             "wire_len": n}
        if resp:
            r["resp_range"] = resp
        return r

    reqs = [rq("/a", fa, 0, 100), rq("/b", fa, 100, 50), rq("/c", fa, 150, 30),
            rq("/d", fa, 150, 31), rq("/e", fa, 230, 30), rq("/f", fb, 0, 40), rq("/g", fb, 35, 10),
            rq("/h", ("10.0.0.9", 9, "10.0.0.1", 80), 0, 10)]
    got = {k[1]: v[0] for k, v in intactness(reqs, recs).items()}
    want = {"/a": True, "/b": False, "/c": True, "/d": False, "/e": True, "/f": True,
            "/g": False, "/h": False}
    if got != want:
        fails.append("intactness: got %s, want %s" % (got, want))
    # and the server direction (response ranges)
    fs = ("10.0.0.1", 80, "10.0.0.2", 1000)
    recs2 = recs + [seg(20, "fwd", fs, 700, 0, flags=0x12), seg(21, "fwd", fs, 701, 60),
                    seg(22, "drop", fs, 761, 60)]
    got = intactness([rq("/a", fa, 0, 100, [0, 60]), rq("/c", fa, 150, 30, [60, 120])], recs2)
    if got != {("GET", "/a"): (True, True), ("GET", "/c"): (True, False)}:
        fails.append("response intactness: %s" % got)
    # a port reused by a second connection (another ISN): each request is judged in its own
    recs3 = recs + [seg(30, "fwd", fa, 90000, 0, flags=0x02), seg(31, "fwd", fa, 90001, 40),
                    seg(32, "drop", fa, 90041, 10)]
    reused = [rq("/a", fa, 0, 100), dict(rq("/r1", fa, 0, 40), tuple_seq=1),
              dict(rq("/r2", fa, 40, 10), tuple_seq=1)]
    got = {k[1]: v[0] for k, v in intactness(reused, recs3).items()}
    if got != {"/a": True, "/r1": True, "/r2": False}:
        fails.append("intactness on a reused port: %s" % got)

    # the impaired rules on the sample data: request 0 intact, 1 lost bytes, 2 intact
    keys = [(r["method"], r["target"]) for r in sent if r.get("kind", "request") == "request"]
    base = {keys[0]: (True, True), keys[1]: (False, None), keys[2]: (True, True)}

    def expect(name, ok_want, evs, kinds, intact=base):
        buf = _Sink()
        ok, summ = check(sent, evs, out=buf, intact=intact, vni=1377)
        f = summ["figures"]
        if ok != ok_want or any(f.get(k, summ["totals"].get(k)) != v for k, v in kinds.items()):
            fails.append("impaired %s: ok=%s (want %s), figures %s, want %s\n%s"
                         % (name, ok, ok_want, f, kinds, buf.text))

    def ev(i, **http):
        e = json.loads(json.dumps(events[i]))
        e["http"].update(http)
        return e

    # the non-intact request emitted with gap: true (its body short): fine
    flagged = [events[0], ev(1, gap=True, http_request_body=b64(b"hel"), request_body_len=11),
               events[2]]
    expect("flagged", True, flagged, {"intact": 2, "exact": 2, "flagged": 1, "unflagged": 0})
    expect("lost-is-fine", True, [events[0], events[2]], {"lost": 1, "exact": 2})
    expect("unflagged", False, [events[0], events[1], events[2]], {"unflagged": 1})
    expect("intact-missing", False, [events[0], ev(1, gap=True)], {"missing": 1, "exact": 1})
    expect("intact-with-gap", False, [ev(0, gap=True), ev(1, gap=True), events[2]],
           {"exact": 1})
    phantom = json.loads(json.dumps(events[0]))
    phantom["http"]["url"] = "/made/of/body/bytes"
    expect("phantom", False, flagged + [phantom], {"phantoms": 1})
    expect("dup", False, flagged + [events[2]], {"dup": 1})
    expect("badhead", False, [events[0], ev(1, gap=True, request_headers=[]), events[2]],
           {"badhead": 1})
    expect("wrong-status", False, [events[0], events[1], ev(2, status=500)], {"status": 1},
           intact={keys[0]: (True, True), keys[1]: (True, True), keys[2]: (True, True)})
    nost = [json.loads(json.dumps(e)) for e in flagged]
    for e in nost:
        e["http"].pop("status", None)
    expect("no-status-is-fine", True, nost, {"exact": 2})
    buf = _Sink()
    ok, _ = check(sent, [events[0], ev(1, gap=True)], out=buf, intact=base, min_recall=0.5)
    if not ok:
        fails.append("impaired recall 1/2 with --min-recall 0.5 should pass\n" + buf.text)
    # relay spec parsing
    try:
        parse_impair("loss=0.5,dup=0.6")
        fails.append("parse_impair accepted loss+dup > 1")
    except ValueError:
        pass
    if parse_impair("truncate=1000,seed=3")["tprob"] != 1.0:
        fails.append("parse_impair: truncate alone must cut every datagram (tprob 1)")
    return fails


def _selftest_replay(sent, events):
    """replay-check on a replay made up from the sample requests, then with one fault at a time."""
    fails = []
    reqs = [r for r in sent if r.get("kind", "request") == "request"]
    n = len(reqs)

    def perfect():
        rec, lg = [], []
        for i, r in enumerate(reqs):
            w = replay_expect(r)
            rid = w["xrid"] or "%032x" % (i + 1)
            hdrs = [["Host", w["host"]]] + [list(kv) for kv in w["kept"]]
            hdrs += [["X-Forwarded-For", w["xff"]], ["X-Forwarded-Port", w["xfport"]],
                     ["X-Forwarded-Proto", w["xfproto"]], ["X-Scheme", "http"],
                     ["X-Server-Addr", w["xsaddr"]], ["X-Server-Port", w["xsport"]],
                     ["X-Request-ID", rid]]
            if w["cl"]:
                hdrs.append(["Content-Length", w["cl"]])
            rec.append({"method": w["method"], "target_b64": b64(w["target"]), "request_id": rid,
                        "body_len": w["body_len"], "body_sha256": w["body_sha256"],
                        "headers": hdrs})
            lg.append({"method": w["method"], "uri": w["target"].decode("utf-8", "surrogateescape"),
                       "protocol": "HTTP/1.1", "host": w["host"], "xff": w["xff"],
                       "xfport": w["xfport"], "xfproto": w["xfproto"], "xscheme": "http",
                       "xsaddr": w["xsaddr"], "xsport": w["xsport"], "xrid": rid, "cl": w["cl"],
                       "status": "200", "upstream_status": "200"})
        return rec, lg

    summ = {"replay": {"accepted": n, "sent": n, "failed": 0, "dropped": 0, "abandoned": 0,
                       "skipped": 0}}

    def expect(name, ok_want, fn=None, want=None, summary=summ):
        rec, lg = perfect()
        if fn:
            fn(rec, lg)
        buf = _Sink()
        ok, fig = replay_check(sent, events, rec, lg, vni=1377, summary=summary, out=buf)
        if ok != ok_want:
            fails.append("replay %s: replay_check returned %s, wanted %s\n%s"
                         % (name, ok, ok_want, buf.text))
        for k, v in (want or {}).items():
            if fig.get(k) != v:
                fails.append("replay %s: %s=%r, wanted %r\n%s" % (name, k, fig.get(k), v, buf.text))

    def both(i, **kw):
        def fn(rec, lg):
            for k, v in kw.items():
                if k.startswith("rec_"):
                    rec[i][k[4:]] = v
                else:
                    lg[i][k] = v
        return fn

    expect("good", True, want={"expected": n, "replayed": n, "exact": n, "header_correct": n})
    expect("missing", False, lambda rec, lg: (rec.pop(0), lg.pop(0)),
           {"missing": 1, "replayed": n - 1})
    expect("dup", False, lambda rec, lg: (rec.append(dict(rec[0])), lg.append(dict(lg[0]))),
           {"dup": 1, "exact": n - 1})
    expect("body", False, both(1, rec_body_sha256="0" * 64), {"exact": n - 1})
    expect("content-length", False, both(1, cl="3"), {"exact": n - 1})
    expect("host", False, both(0, host="10.77.2.2"), {"exact": n, "header_correct": n - 1})
    expect("xff", False, both(0, xff="10.77.1.9"), {"header_correct": n - 1})
    expect("xfport", False, both(0, xfport="1"), {"header_correct": n - 1})
    expect("xfproto", False, both(0, xfproto="https"), {"header_correct": n - 1})
    expect("xsaddr", False, both(2, xsaddr="10.77.2.1"), {"header_correct": n - 1})
    expect("no-request-id", False, both(0, xrid=""), {"header_correct": n - 1})
    expect("request-id-twice", False, lambda rec, lg: lg[1].update(xrid=lg[0]["xrid"]),
           {"header_correct": n - 2})
    expect("two-xff-headers", False,
           lambda rec, lg: rec[0]["headers"].append(["X-Forwarded-For", "1.1.1.1"]),
           {"header_correct": n - 1})
    expect("header-dropped", False,
           lambda rec, lg: rec[2]["headers"].__setitem__(slice(None), [
               h for h in rec[2]["headers"] if h[0] != "x-dup"]), {"header_correct": n - 1})
    expect("nginx-error", False, both(0, status="502", upstream_status="-"), {"nginx_errors": 1})
    expect("not-passed-on", False, lambda rec, lg: rec.pop(0), {"exact": n - 1})
    expect("extra", False, lambda rec, lg: (
        rec.append(dict(rec[0], target_b64=b64(b"/never/sent"))),
        lg.append(dict(lg[0], uri="/never/sent"))), {"extra": 2})
    expect("summary-failed", False,
           summary={"replay": dict(summ["replay"], failed=1, sent=n - 1)})
    expect("no-summary", False, summary={})
    for t, want in ((b"http://h:8/a?b", b"/a?b"), (b"http://h?x", b"/?x"), (b"/a b", b"/a%20b"),
                    (b"/caf\xc3\xa9", b"/caf\xc3\xa9"), (b"*", b"*")):
        if origin_form(t) != want:
            fails.append("origin_form(%r) = %r, want %r" % (t, origin_form(t), want))
    if _authority(b"http://u:p@h:8/x") != b"h:8" or _authority(b"/x") is not None:
        fails.append("_authority")
    r10 = dict(reqs[0], headers=[["User-Agent", "x"]], target_b64=b64(b"/x"))
    if replay_expect(r10)["host"] != "10.77.1.1":
        fails.append("replay_expect: no Host -> the server address")
    r10["target_b64"] = b64(b"http://example.test:81/x")
    if replay_expect(r10)["host"] != "example.test:81":
        fails.append("replay_expect: no Host, absolute-form -> its authority")
    return fails


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
    p.add_argument("--cases", default="all", help="comma list of: all (= %s), bulk, fwd; -NAME leaves one out"
                   % ",".join(ALL_CASES))
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
    p.add_argument("--relay-log", help="impaired run: the relay's log (relay.jsonl); requests whose "
                   "bytes were lost are then judged by the impaired rules")
    p.add_argument("--min-recall", type=float, default=0.995,
                   help="impaired run: share of intact requests that must be exact")
    p.set_defaults(fn=cmd_check)

    p = sub.add_parser("relay", help="UDP impairment relay between the VXLAN sender and vxtap")
    p.add_argument("--listen", required=True, help="ADDR:PORT the VXLAN device sends to")
    p.add_argument("--to", required=True, help="ADDR:PORT of vxtap")
    p.add_argument("--impair", default="", help="loss=P,dup=P,reorder=P,truncate=N,tprob=P,"
                   "seed=S,maxdelay=K")
    p.add_argument("--log", required=True, help="per-datagram log (jsonl)")
    p.add_argument("--summary", required=True, help="JSON counters, written at exit")
    p.add_argument("--pcap", help="write what was forwarded as a pcap (vxtap pcap can replay it)")
    p.add_argument("--max-seconds", type=float, default=300)
    p.set_defaults(fn=cmd_relay)

    p = sub.add_parser("udp-sink", help="bind a UDP port and discard datagrams")
    p.add_argument("--bind", required=True)
    p.add_argument("--summary")
    p.add_argument("--max-seconds", type=float, default=300)
    p.set_defaults(fn=cmd_udp_sink)

    p = sub.add_parser("counters", help="vxtap packets_total and UDP counters, back to back")
    p.add_argument("--health", required=True)
    p.set_defaults(fn=cmd_counters)

    p = sub.add_parser("settle", help="wait until vxtap took in every datagram; save /metrics")
    p.add_argument("--health", required=True)
    p.add_argument("--events", required=True)
    p.add_argument("--base", help="JSON from `counters` taken before the traffic")
    p.add_argument("--relay-summary")
    p.add_argument("--want-requests-from", action="append", default=[],
                   help="sent*.jsonl: wait until vxtap_requests_total reaches the requests there")
    p.add_argument("--timeout", type=float, default=5)
    p.add_argument("--metrics-out", required=True)
    p.add_argument("--json", required=True)
    p.set_defaults(fn=cmd_settle)

    p = sub.add_parser("run-report", help="drain and metrics report of a run directory")
    p.add_argument("--out", required=True)
    p.add_argument("--drain-timeout", type=int, required=True)
    p.add_argument("--vxtap-rc", default="0")
    p.add_argument("--max-503-ms", type=int, default=250,
                   help="health must turn 503 this soon after SIGTERM")
    p.add_argument("--strict", action="store_true", help="exit 1 when a drain/metrics check fails")
    p.set_defaults(fn=cmd_run_report)

    p = sub.add_parser("drain-probe", help="SIGTERM vxtap and watch /-/healthcheck until it exits")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--health", required=True)
    p.add_argument("--timeout", type=float, default=15)
    p.add_argument("--json", required=True)
    p.set_defaults(fn=cmd_drain_probe)

    p = sub.add_parser("replay-recorder", help="the origin behind the replay target's nginx: "
                       "records every request (jsonl)")
    p.add_argument("--listen", required=True, help="ADDR:PORT")
    p.add_argument("--out", required=True, help="one JSON line per request")
    p.add_argument("--idle", type=float, default=120, help="keep-alive idle timeout, seconds")
    p.add_argument("--max-seconds", type=float, default=300)
    p.set_defaults(fn=cmd_replay_recorder)

    p = sub.add_parser("replay-check", help="what the replay target got against sent.jsonl")
    p.add_argument("--sent", action="append", required=True)
    p.add_argument("--events", required=True)
    p.add_argument("--vni", type=int)
    p.add_argument("--recorder", required=True, help="replay-recorder's jsonl")
    p.add_argument("--nginx-log", required=True, help="the replay target nginx's JSON access log")
    p.add_argument("--summary", help="vxtap's stderr (its exit summary has the replay counters)")
    p.add_argument("--allow-skipped", action="store_true",
                   help="impaired run: requests with missing bytes are skipped (not replayed)")
    p.add_argument("--json", help="write the figures there")
    p.set_defaults(fn=cmd_replay_check)

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
