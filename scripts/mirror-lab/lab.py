#!/usr/bin/env python3
"""HTTP mirror lab: real producers (nginx `mirror`, Envoy `request_mirror_policies`, Traefik
`mirroring`) in front of a tiny backend, mirroring every request to a vxtap mirror target.

Everything listens on loopback only (127.0.0.x and ::1, or ULA addresses on lo of a fresh network
namespace with --netns-setup). Clients bind distinct source addresses (127.0.0.50-127.0.0.99, ::1 or
fd00:77::51-54) so that the real client address of every copy can be checked against the
proxy's own (127.0.0.1). Standard library only.

  lab.py run --producer nginx|envoy|envoy-h2|traefik --sink CMD --out DIR [--cases a,b]
  lab.py bench --sink CMD --out DIR [--seconds N] [--connections N]
  lab.py direct --sink CMD --out DIR [--seconds N]
  lab.py nginx-body-off --sink CMD --out DIR
  lab.py selftest

`--sink` is the mirror target command line without its listen address, e.g.
`target/release/examples/mirror-sink` (the lab adds `--listen 127.0.0.1:PORT --trusted-proxies ...`), or
later `vxtap listen --udp off --events - --http-mirror` in the same form. It must print one JSON line
per copy on stdout (the mirror-sink format) and stop when its stdin closes.
"""

import argparse
import base64
import hashlib
import json
import os
import random
import shlex
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
PROXY_OUT_IP = "127.0.0.1"  # the address producers connect to the sink from
SINK_IP = "127.0.0.1"
# IPv6: the producers' second listener and the IPv6 clients. ::1 by default; with --netns-setup (a
# fresh network namespace, see run.sh) ULA addresses on lo, because Envoy writes its own node address
# instead of a loopback client's (::1, 127.0.0.1) into X-Forwarded-For.
V6_LISTEN = "::1"
V6_CLIENTS = ["::1"]
LISTEN_IP = {"nginx": "127.0.0.10", "envoy": "127.0.0.11", "envoy-h2": "127.0.0.12", "traefik": "127.0.0.13"}
# Producers that hand the sink the client's *source* port (nginx reference config: X-Forwarded-Port
# $realip_remote_port; Envoy: a request_headers_to_add of %DOWNSTREAM_REMOTE_PORT%). Traefik's
# X-Forwarded-Port is the port the client connected to.
CLIENT_PORT_KNOWN = {"nginx": True, "envoy": True, "envoy-h2": True, "traefik": False}
# Producers that say which server address the client connected to (X-Server-Addr / X-Server-Port).
SERVER_KNOWN = {"nginx": True, "envoy": True, "envoy-h2": True, "traefik": False}


def host_addresses():
    """This machine's own addresses (Envoy appends its node address, the first of these, to a copy's
    X-Forwarded-For: the proxy's own addresses must be trusted)."""
    try:
        out = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    addrs = []
    for line in out.splitlines():
        p = line.split()
        if len(p) > 3 and p[1] != "lo" and p[2] in ("inet", "inet6"):
            ip = p[3].split("/")[0]
            if not ip.startswith("fe80") and ip not in ("127.0.0.1", "::1"):
                addrs.append(ip + ("/128" if ":" in ip else "/32"))
    return addrs


def netns_setup():
    """Inside a fresh network namespace (run.sh: `unshare --net`): lo up, ULA addresses on it."""
    global V6_LISTEN, V6_CLIENTS
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    names = [line.split(":")[1].strip() for line in links.splitlines() if ":" in line]
    if names != ["lo"]:
        raise SystemExit(f"--netns-setup wants a fresh namespace with lo only, not {names}")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    V6_LISTEN = "fd00:77::10"
    V6_CLIENTS = [f"fd00:77::{n}" for n in range(51, 55)]
    for ip in [V6_LISTEN] + V6_CLIENTS:
        subprocess.run(["ip", "-6", "addr", "add", f"{ip}/128", "dev", "lo", "nodad"], check=True)


def free_port(ip="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def wait_port(ip, port, proc=None, timeout=20.0):
    fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {ip}:{port}")
        try:
            with socket.create_connection((ip, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {ip}:{port} after {timeout}s")


# ---------------------------------------------------------------------------------------------------
# HTTP/1 wire helpers (client side and the backend)


class Conn:
    """A buffered socket that reads lines, exact byte counts, and chunked bodies."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def line(self, limit=1 << 20):
        while b"\n" not in self.buf:
            if len(self.buf) > limit:
                raise ValueError("line too long")
            self._fill()
        i = self.buf.index(b"\n") + 1
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def rest(self):
        try:
            while True:
                self._fill()
        except (EOFError, OSError):
            pass
        out, self.buf = self.buf, b""
        return out

    def head(self):
        first = self.line()
        while first in (b"\r\n", b"\n"):
            first = self.line()
        headers = []
        while True:
            ln = self.line()
            if ln in (b"\r\n", b"\n"):
                break
            name, _, value = ln.partition(b":")
            headers.append((name.strip().decode("latin-1"), value.strip().decode("latin-1")))
        return first.rstrip(b"\r\n").decode("latin-1"), headers

    def body(self, headers, until_close_ok):
        te = ",".join(v for k, v in headers if k.lower() == "transfer-encoding").lower()
        if "chunked" in te:
            out = b""
            while True:
                size = int(self.line().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.line() not in (b"\r\n", b"\n"):
                        pass
                    return out
                out += self.exact(size)
                self.line()
        cl = [v for k, v in headers if k.lower() == "content-length"]
        if cl:
            return self.exact(int(cl[0]))
        return self.rest() if until_close_ok else b""


def hget(headers, name):
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return None


class Backend(socketserver.ThreadingTCPServer):
    """The proxied application: reads each request (Content-Length or chunked) and answers
    `200 ok m=<method> len=<decoded body length>`, keep-alive as the request asks."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr):
        super().__init__(addr, BackendHandler)
        self.count = 0
        self.lock = threading.Lock()


class BackendHandler(socketserver.BaseRequestHandler):
    def handle(self):
        c = Conn(self.request)
        try:
            while True:
                line, headers = c.head()
                method, _, rest = line.partition(" ")
                version = rest.rsplit(" ", 1)[-1]
                body = c.body(headers, until_close_ok=False)
                if "/slow/" in rest:
                    time.sleep(0.5)
                with self.server.lock:
                    self.server.count += 1
                conn_hdr = (hget(headers, "connection") or "").lower()
                keep = ("close" not in conn_hdr) if version == "HTTP/1.1" else ("keep-alive" in conn_hdr)
                payload = f"ok m={method} len={len(body)}".encode()
                resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" % len(payload)
                resp += b"Connection: keep-alive\r\n\r\n" if keep else b"Connection: close\r\n\r\n"
                self.request.sendall(resp + payload)
                if not keep:
                    return
        except (EOFError, OSError, ValueError):
            return


# ---------------------------------------------------------------------------------------------------
# Producers


def nginx_conf(out, listen_ip, port, port6, backend_port, sink_port):
    # The reference configuration of CONTRACT.md ("HTTP mirror input"), pointed at the sink.
    return f"""
worker_processes 1;
daemon off;
master_process off;
pid {out}/nginx.pid;
error_log {out}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {out}/nginx-access.log;
    client_body_temp_path {out}/nginx-body;
    proxy_temp_path {out}/nginx-proxy;
    fastcgi_temp_path {out}/nginx-fastcgi;
    uwsgi_temp_path {out}/nginx-uwsgi;
    scgi_temp_path {out}/nginx-scgi;
    client_max_body_size 64m;
    upstream backend {{ server 127.0.0.1:{backend_port}; keepalive 16; }}
    server {{
        listen {listen_ip}:{port};
        listen [{V6_LISTEN}]:{port6};
        location / {{
            mirror /mirror-test;
            mirror_request_body on;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://backend;
        }}
        location /mirror-test {{
            internal;
            proxy_pass http://{SINK_IP}:{sink_port}$request_uri;
            proxy_set_header X-SERVER-PORT $server_port;
            proxy_set_header X-SERVER-ADDR $server_addr;
            proxy_set_header HOST $http_host;
            proxy_set_header X-Forwarded-For $realip_remote_addr;
            proxy_set_header X-Forwarded-Port $realip_remote_port;
            proxy_set_header X-Forwarded-Proto $http_x_forwarded_proto;
            proxy_set_header X-Scheme $scheme;
            proxy_set_header X-Request-ID $request_id;
        }}
    }}
}}
"""


def envoy_conf(listen_ip, port, port6, backend_port, sink_port, admin_port, h2):
    mirror_proto = (
        """
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}"""
        if h2
        else ""
    )
    return f"""
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }} }}
static_resources:
  listeners:
  - name: main
    address: {{ socket_address: {{ address: {listen_ip}, port_value: {port} }} }}
    additional_addresses:
    - address: {{ socket_address: {{ address: "{V6_LISTEN}", port_value: {port6} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          use_remote_address: true
          http_protocol_options: {{ accept_http_10: true }}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              request_headers_to_add:
              - header: {{ key: X-Server-Addr, value: "%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%" }}
                append_action: OVERWRITE_IF_EXISTS_OR_ADD
              - header: {{ key: X-Server-Port, value: "%DOWNSTREAM_LOCAL_PORT%" }}
                append_action: OVERWRITE_IF_EXISTS_OR_ADD
              - header: {{ key: X-Forwarded-Port, value: "%DOWNSTREAM_REMOTE_PORT%" }}
                append_action: OVERWRITE_IF_EXISTS_OR_ADD
              routes:
              - match: {{ prefix: "/" }}
                route:
                  cluster: backend
                  timeout: 30s
                  request_mirror_policies:
                  - cluster: vxtap
                    runtime_fraction: {{ default_value: {{ numerator: 100 }} }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {backend_port} }} }} }}
  - name: vxtap
    type: STATIC
    connect_timeout: 2s{mirror_proto}
    load_assignment:
      cluster_name: vxtap
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: {SINK_IP}, port_value: {sink_port} }} }} }}
"""


def traefik_conf(out, listen_ip, port, port6, backend_port, sink_port):
    static = f"""
entryPoints:
  web:
    address: "{listen_ip}:{port}"
  web6:
    address: "[{V6_LISTEN}]:{port6}"
providers:
  file:
    filename: "{out}/traefik-dynamic.yml"
log:
  level: ERROR
  filePath: "{out}/traefik.log"
accessLog:
  filePath: "{out}/traefik-access.log"
"""
    dynamic = f"""
http:
  routers:
    all:
      rule: "PathPrefix(`/`)"
      entryPoints: [web, web6]
      service: mirrored
  services:
    mirrored:
      mirroring:
        service: backend
        mirrors:
        - name: vxtap
          percent: 100
    backend:
      loadBalancer:
        servers:
        - url: "http://127.0.0.1:{backend_port}"
    vxtap:
      loadBalancer:
        passHostHeader: true
        servers:
        - url: "http://{SINK_IP}:{sink_port}"
"""
    return static, dynamic


def start_producer(name, out, listen_ip, port, port6, backend_port, sink_port, bins):
    log = open(os.path.join(out, f"{name}.stderr"), "wb")
    if name == "nginx":
        for d in ("nginx-body", "nginx-proxy", "nginx-fastcgi", "nginx-uwsgi", "nginx-scgi"):
            os.makedirs(os.path.join(out, d), exist_ok=True)
        conf = os.path.join(out, "nginx.conf")
        with open(conf, "w") as f:
            f.write(nginx_conf(out, listen_ip, port, port6, backend_port, sink_port))
        cmd = [bins["nginx"], "-p", out, "-c", conf, "-e", os.path.join(out, "nginx-error.log")]
    elif name in ("envoy", "envoy-h2"):
        conf = os.path.join(out, "envoy.yaml")
        with open(conf, "w") as f:
            f.write(envoy_conf(listen_ip, port, port6, backend_port, sink_port, free_port(), name == "envoy-h2"))
        cmd = [bins["envoy"], "-c", conf, "--use-dynamic-base-id", "--concurrency", "1", "--log-level", "warn"]
    elif name == "traefik":
        static, dynamic = traefik_conf(out, listen_ip, port, port6, backend_port, sink_port)
        with open(os.path.join(out, "traefik.yml"), "w") as f:
            f.write(static)
        with open(os.path.join(out, "traefik-dynamic.yml"), "w") as f:
            f.write(dynamic)
        cmd = [bins["traefik"], f"--configFile={out}/traefik.yml"]
    else:
        raise SystemExit(f"unknown producer {name}")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    wait_port(listen_ip, port, proc)
    wait_port(V6_LISTEN, port6, proc)
    wait_routed(listen_ip, port, proc)
    return proc


def wait_routed(ip, port, proc, timeout=20.0):
    """Traefik listens before its file provider has loaded the routers (404 until then): wait for a
    200 through the proxy. These probes are mirrored too; they carry no X-Lab-Id and are not checked."""
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"producer exited with {proc.returncode}")
        try:
            with socket.create_connection((ip, port), timeout=2) as s:
                s.sendall(b"GET /__ready HTTP/1.1\r\nHost: ready.example\r\nConnection: close\r\n\r\n")
                line, _ = Conn(s).head()
                if line.split()[1] == "200":
                    return
        except (OSError, EOFError, IndexError, ValueError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"no 200 through {ip}:{port} after {timeout}s")


# ---------------------------------------------------------------------------------------------------
# Client cases. Each request is a dict: case, method, target, version, host, headers, body, chunks
# (list of byte strings sent as chunks, or None), src (client ip), and after sending: port, status.


def rnd_body(n, seed):
    r = random.Random(seed)
    return bytes(r.getrandbits(8) for _ in range(n)) if n < 4096 else r.randbytes(n)


def make_cases(names):
    reqs = []
    n = [0]

    def req(case, method="GET", path=None, version="HTTP/1.1", host="shop.example", body=b"", chunks=None,
            headers=None, group=None, src=None, content_length=True):
        n[0] += 1
        uid = uuid.uuid4().hex
        target = (path or f"/case/{case}/{n[0]}") + ("&" if path and "?" in path else "?") + f"id={uid}"
        r = dict(case=case, uid=uid, method=method, target=target, version=version, host=host, body=body,
                 chunks=chunks, headers=list(headers or []), group=group or f"{case}-{n[0]}", src=src,
                 content_length=content_length)
        reqs.append(r)
        return r

    want = set(names)
    if "get" in want:
        for i in range(4):
            req("get", path=f"/case/get/{i}?q=search+term&i={i}")
        req("get", method="HEAD", path="/case/get/head")
    if "methods" in want:
        for m in ("PUT", "DELETE", "PATCH", "OPTIONS", "PURGE"):
            req("methods", method=m, body=b"x" * 17 if m in ("PUT", "PATCH") else b"")
    if "post_sizes" in want:
        for i, size in enumerate((0, 1, 100, 1460, 10_000, 65_536, 100_000, 1 << 20, 3 << 20)):
            req("post_sizes", method="POST", body=rnd_body(size, i),
                headers=[("Content-Type", "application/octet-stream")])
        req("post_sizes", method="POST", body=b'{"user":"me","q":"\' or 1=1 --"}',
            headers=[("Content-Type", "application/json")])
        req("post_sizes", method="POST", body=b"a=1&b=%3Cscript%3E",
            headers=[("Content-Type", "application/x-www-form-urlencoded")])
    if "chunked" in want:
        req("chunked", method="POST", chunks=[b"hello ", b"chunked ", b"world"])
        req("chunked", method="POST", chunks=[rnd_body(70_000, 99), rnd_body(5, 98), rnd_body(300_000, 97)])
        req("chunked", method="PUT", chunks=[b"x" * 1000] * 50)
    if "keepalive" in want:
        for i in range(20):
            req("keepalive", method="POST" if i % 3 == 0 else "GET", body=rnd_body(i * 37, i) if i % 3 == 0 else b"",
                group="keepalive")
    if "http10" in want:
        for i in range(3):
            req("http10", version="HTTP/1.0", method="POST" if i else "GET", body=b"ten" * i)
        req("http10", version="HTTP/1.0", headers=[("Connection", "keep-alive")], group="http10-ka")
        req("http10", version="HTTP/1.0", method="POST", body=b"second on the same connection",
            headers=[("Connection", "keep-alive")], group="http10-ka")
    if "bigheader" in want:
        req("bigheader", headers=[("Cookie", "session=" + "c" * 6000), ("X-Big", "b" * 1500)])
        req("bigheader", headers=[(f"X-Many-{i}", "v" * 20) for i in range(80)])
    if "targets" in want:
        for p in ("/case/targets/a%2Fb%20c", "/case/targets/~user/x;p=1", "/case/targets/q?a=%26&b=+&c=%E2%82%AC",
                  "/case/targets/"):
            req("targets", path=p)
    if "host" in want:
        req("host", host="shop.example:8080")
        req("host", host="api.example")
        req("host", host="[2001:db8::1]:8443")
    if "slow" in want:
        # The backend takes 500 ms: does the copy leave with the request or after the response?
        for i in range(2):
            req("slow", method="POST", path=f"/case/slow/{i}", body=b"slow")
    if "ipv6" in want:
        for i in range(3):
            req("ipv6", method="POST", body=b"six" * i, src="v6")
    if "spoof" in want:
        # A client forging forwarding headers: the proxy is trusted, the forged values must not win.
        req("spoof", headers=[("X-Forwarded-For", "6.6.6.6"), ("X-Real-IP", "6.6.6.7"),
                              ("Forwarded", "for=6.6.6.8"), ("X-Forwarded-Port", "666")])
    if "concurrency" in want:
        for t in range(8):
            for i in range(10):
                req("concurrency", method="POST", body=rnd_body(500 + 97 * i, t * 100 + i), group=f"conc-{t}")
    return reqs


def encode(r):
    lines = [f"{r['method']} {r['target']} {r['version']}"]
    if r["host"] is not None:
        lines.append(f"Host: {r['host']}")
    lines.append(f"X-Lab-Id: {r['uid']}")
    for k, v in r["headers"]:
        lines.append(f"{k}: {v}")
    if r["chunks"] is not None:
        lines.append("Transfer-Encoding: chunked")
    elif r["body"] or r["method"] in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(r['body'])}")
    if r.get("close"):
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def send_group(reqs, dest_ip, dest_port, src_ip, log):
    """Sends the requests of one group on one keep-alive connection from `src_ip`."""
    fam = socket.AF_INET6 if ":" in src_ip else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(30)
    s.bind((src_ip, 0))
    s.connect((dest_ip, dest_port))
    port = s.getsockname()[1]
    c = Conn(s)
    try:
        for i, r in enumerate(reqs):
            last = i == len(reqs) - 1
            ka_10 = any(k.lower() == "connection" for k, _ in r["headers"])
            r["close"] = last and r["version"] == "HTTP/1.1"
            if r["version"] == "HTTP/1.0" and not last and not ka_10:
                raise RuntimeError("HTTP/1.0 groups need keep-alive")
            r["src"], r["port"] = src_ip, port
            r["t_send"] = time.time()
            s.sendall(encode(r))
            if r["chunks"] is not None:
                body = b""
                for piece in r["chunks"]:
                    s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                    body += piece
                    time.sleep(0.005)
                s.sendall(b"0\r\nX-Lab-Trailer: done\r\n\r\n")
                r["body"] = body
            elif r["body"]:
                s.sendall(r["body"])
            line, headers = c.head()
            status = int(line.split()[1])
            body = c.body(headers, until_close_ok=True) if r["method"] != "HEAD" else b""
            r["status"], r["answer"] = status, body[:200].decode("latin-1")
            r["sent_at"] = time.time()
    except Exception as e:  # noqa: BLE001 - recorded per request
        log.append(f"group {reqs[0]['group']}: {type(e).__name__}: {e}")
        for r in reqs:
            r.setdefault("status", None)
    finally:
        s.close()


def client_gone(listen_ip, port, n=3):
    """Requests whose client goes away before the (slow) answer; returns their ids. Whether a copy
    still comes is a property of the producer (Traefik sends copies only after the response)."""
    uids = []
    for i in range(n):
        uid = uuid.uuid4().hex
        s = socket.create_connection((listen_ip, port), timeout=5)
        s.sendall(f"POST /case/gone/slow/{i}?id={uid} HTTP/1.1\r\nHost: shop.example\r\nX-Lab-Id: {uid}\r\n"
                  f"Content-Length: 4\r\n\r\ngone".encode())
        time.sleep(0.1)
        s.close()
        uids.append(uid)
    time.sleep(0.8)
    return uids


def run_clients(reqs, listen_ip, port, port6):
    groups = {}
    for r in reqs:
        groups.setdefault(r["group"], []).append(r)
    log = []
    src_n = [50]

    def src_for(g):
        if g[0]["src"] == "v6":
            return V6_CLIENTS[src_n[0] % len(V6_CLIENTS)]
        src_n[0] = 50 + (src_n[0] - 49) % 50
        return f"127.0.0.{src_n[0]}"

    conc = [g for name, g in groups.items() if name.startswith("conc-")]
    serial = [g for name, g in groups.items() if not name.startswith("conc-")]
    for g in serial:
        src = src_for(g)
        if ":" in src:
            send_group(g, V6_LISTEN, port6, src, log)
        else:
            send_group(g, listen_ip, port, src, log)
    threads = [threading.Thread(target=send_group, args=(g, listen_ip, port, src_for(g), log)) for g in conc]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return log


# ---------------------------------------------------------------------------------------------------
# Checking


def strip_host(h):
    if h is None:
        return ""
    h = h.strip()
    if h.startswith("["):
        return h[: h.index("]") + 1]
    host, sep, port = h.rpartition(":")
    return host if sep and port.isdigit() else h


def check(producer, reqs, copies, listen_ip, port, port6):
    by_uid = {}
    stray = []
    for c in copies:
        uid = next((v for k, v in c["headers"] if k.lower() == "x-lab-id"), None)
        if uid is None:
            stray.append(c)
            continue
        by_uid.setdefault(uid, []).append(c)
    rows = []
    totals = dict(sent=0, answered_200=0, copies=len(copies), once=0, missing=0, duplicated=0, exact=0,
                  address_correct=0, host_correct=0, trusted=0)
    for r in reqs:
        totals["sent"] += 1
        ok_status = r.get("status") == 200
        totals["answered_200"] += ok_status
        got = by_uid.get(r["uid"], [])
        row = dict(case=r["case"], uid=r["uid"], method=r["method"], target=r["target"], status=r.get("status"),
                   copies=len(got), problems=[])
        if not got:
            totals["missing"] += 1
            row["problems"].append("missing")
            rows.append(row)
            continue
        if len(got) > 1:
            totals["duplicated"] += 1
            row["problems"].append(f"{len(got)} copies")
        else:
            totals["once"] += 1
        c = got[0]
        body = base64.b64decode(c["body_b64"])
        exact = c["method"] == r["method"] and c["target"] == r["target"] and body == r["body"] and not c["gap"]
        exact = exact and c["body_len"] == len(r["body"]) and not c["body_truncated"]
        if not exact:
            row["problems"].append(
                f"not exact: method {c['method']!r} target {c['target']!r} body {len(body)}/{c['body_len']} "
                f"(sent {len(r['body'])}, sha {hashlib.sha256(body).hexdigest()[:8]} vs "
                f"{hashlib.sha256(r['body']).hexdigest()[:8]}) gap {c['gap']} truncated {c['body_truncated']}"
            )
        totals["exact"] += exact
        cip, _, cport = c["client"].rpartition(":")
        cip = cip.strip("[]")
        addr_ok = cip == r["src"]
        if CLIENT_PORT_KNOWN[producer]:
            addr_ok = addr_ok and int(cport) == r["port"]
        if SERVER_KNOWN[producer]:
            sip, _, sport = c["server"].rpartition(":")
            want_ip, want_port = (V6_LISTEN, port6) if ":" in r["src"] else (listen_ip, port)
            addr_ok = addr_ok and sip.strip("[]") == want_ip and int(sport) == want_port
        if not addr_ok:
            row["problems"].append(f"address: client {c['client']} server {c['server']} (sent from "
                                   f"{r['src']}:{r.get('port')}, peer {c['peer']})")
        totals["address_correct"] += addr_ok
        totals["trusted"] += bool(c["addresses_trusted"])
        host_ok = c["hostname"] == strip_host(r["host"])
        if not host_ok:
            row["problems"].append(f"hostname {c['hostname']!r} (Host sent {r['host']!r})")
        totals["host_correct"] += host_ok
        row["client"], row["server"], row["peer"] = c["client"], c["server"], c["peer"]
        row["protocol"] = c["protocol"]
        row["xff"] = next((v for k, v in c["headers"] if k.lower() == "x-forwarded-for"), None)
        row["xfport"] = next((v for k, v in c["headers"] if k.lower() == "x-forwarded-port"), None)
        row["host_header"] = next((v for k, v in c["headers"] if k.lower() == "host"), None)
        # When the copy's head reached the sink, after the client started sending (ms).
        row["copy_delay_ms"] = round((c["start_ts"] / 1e6 - r["t_send"]) * 1000, 1) if r.get("t_send") else None
        rows.append(row)
    totals["stray_copies"] = len(stray)
    delays = sorted(row["copy_delay_ms"] for row in rows if row.get("copy_delay_ms") is not None)
    slow = sorted(row["copy_delay_ms"] for row in rows if row["case"] == "slow" and row.get("copy_delay_ms"))
    totals["copy_delay_ms_median"] = delays[len(delays) // 2] if delays else None
    totals["copy_delay_ms_slow_backend"] = slow
    return totals, rows


# ---------------------------------------------------------------------------------------------------


def sink_cmd(base, port, trusted, extra=()):
    return shlex.split(base) + ["--listen", f"{SINK_IP}:{port}", "--trusted-proxies", trusted,
                                "--body-limit", str(16 << 20)] + list(extra)


def start_sink(cmd, out):
    stdout = open(os.path.join(out, "copies.jsonl"), "wb")
    stderr = open(os.path.join(out, "sink.stderr"), "wb")
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=stdout, stderr=stderr)
    return proc


def stop(proc, timeout=10):
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_sink(proc):
    try:
        proc.stdin.close()
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def read_copies(out):
    with open(os.path.join(out, "copies.jsonl"), "rb") as f:
        return [json.loads(line) for line in f if line.strip()]


def wait_quiet(out, expect, quiet=1.5, limit=30.0):
    """Waits until `expect` copies are in, or no new copy came for `quiet` seconds (max `limit`)."""
    path = os.path.join(out, "copies.jsonl")
    end = time.time() + limit
    last_size, last_change = -1, time.time()
    while time.time() < end:
        size = os.path.getsize(path)
        if size != last_size:
            last_size, last_change = size, time.time()
            with open(path, "rb") as f:
                if sum(1 for line in f if line.endswith(b"\n")) >= expect:
                    time.sleep(0.3)  # duplicates, if any, show up too
                    return
        elif time.time() - last_change > quiet:
            return
        time.sleep(0.1)


def cmd_run(a):
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    bins = {"nginx": shutil.which("nginx") or "/usr/sbin/nginx", "envoy": a.envoy, "traefik": a.traefik}
    producer = a.producer
    listen_ip = LISTEN_IP[producer]
    if a.netns_setup:
        netns_setup()
    port, port6 = free_port(listen_ip), free_port(V6_LISTEN)
    sink_port, backend_port = free_port(SINK_IP), free_port("127.0.0.1")
    backend = Backend(("127.0.0.1", backend_port))
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    trusted = a.trusted or ",".join(
        [f"{PROXY_OUT_IP}/32", f"{listen_ip}/32", "::1/128", f"{V6_LISTEN}/128"] + host_addresses())
    sink = start_sink(sink_cmd(a.sink, sink_port, trusted, shlex.split(a.sink_args or "")), out)
    prod = None
    try:
        wait_port(SINK_IP, sink_port, sink)
        prod = start_producer(producer, out, listen_ip, port, port6, backend_port, sink_port, bins)
        cases = a.cases.split(",") if a.cases != "all" else [
            "get", "methods", "post_sizes", "chunked", "keepalive", "http10", "bigheader", "targets", "host",
            "ipv6", "spoof", "slow", "concurrency"]
        reqs = make_cases(cases)
        t0 = time.time()
        log = run_clients(reqs, listen_ip, port, port6)
        sent_s = time.time() - t0
        gone = client_gone(listen_ip, port) if "gone" in a.extra.split(",") else []
        wait_quiet(out, len(reqs) + len(gone))
    finally:
        stop(prod)
        stop_sink(sink)
        backend.shutdown()
    copies = read_copies(out)
    gone_ids = set(gone)
    gone_copies = [c for c in copies if any(k.lower() == "x-lab-id" and v in gone_ids for k, v in c["headers"])]
    copies = [c for c in copies if c not in gone_copies]
    totals, rows = check(producer, reqs, copies, listen_ip, port, port6)
    if gone:
        # Not part of the checks: what the producer does when its client leaves before the answer.
        totals["client_gone"] = dict(sent=len(gone), copies=len(gone_copies),
                                     gap=sum(bool(c["gap"]) for c in gone_copies))
    totals.update(producer=producer, client_errors=len(log), seconds=round(sent_s, 2),
                  backend_requests=backend.count)
    try:
        with open(os.path.join(out, "sink.stderr")) as f:
            stats = [json.loads(x)["stats"] for x in f if x.startswith("{")]
        totals["sink_stats"] = stats[-1] if stats else None
    except (OSError, ValueError, KeyError):
        totals["sink_stats"] = None
    with open(os.path.join(out, "check.jsonl"), "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(totals, f, indent=1)
    for line in log:
        print(f"[{producer}] client: {line}")
    bad = [r for r in rows if r["problems"]]
    for r in bad[:15]:
        print(f"[{producer}] {r['case']} {r['method']} {r['target'][:70]}: {'; '.join(r['problems'])}")
    print(json.dumps({k: totals[k] for k in ("producer", "sent", "answered_200", "copies", "once", "exact",
                                             "address_correct", "host_correct", "missing", "duplicated",
                                             "stray_copies", "client_gone", "copy_delay_ms_slow_backend")
                      if k in totals}))
    ok = (totals["once"] == totals["sent"] and totals["exact"] == totals["sent"]
          and totals["address_correct"] == totals["sent"] and totals["host_correct"] == totals["sent"]
          and totals["answered_200"] == totals["sent"] and not log)
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------------------
# Benchmark: wrk -> nginx (mirror) -> sink, against the same nginx mirroring to an nginx `return 204`.


def bench_nginx_conf(out, port_vx, port_ref, port_sink204, backend_port, sink_port, keepalive):
    up_ka = "keepalive 64;" if keepalive else ""
    mirror_http = 'proxy_http_version 1.1; proxy_set_header Connection "";' if keepalive else ""

    def server(port, upstream):
        return f"""
    server {{
        listen 127.0.0.10:{port};
        location / {{
            mirror /mirror-test;
            mirror_request_body on;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://backend;
        }}
        location /mirror-test {{
            internal;
            proxy_pass http://{upstream}$request_uri;
            {mirror_http}
            proxy_set_header X-SERVER-PORT $server_port;
            proxy_set_header X-SERVER-ADDR $server_addr;
            proxy_set_header HOST $http_host;
            proxy_set_header X-Forwarded-For $realip_remote_addr;
            proxy_set_header X-Forwarded-Port $realip_remote_port;
            proxy_set_header X-Forwarded-Proto $http_x_forwarded_proto;
            proxy_set_header X-Scheme $scheme;
            proxy_set_header X-Request-ID $request_id;
        }}
    }}"""

    return f"""
worker_processes 1;
daemon off;
master_process off;
pid {out}/nginx.pid;
error_log {out}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {out}/nginx-body;
    proxy_temp_path {out}/nginx-proxy;
    fastcgi_temp_path {out}/nginx-fastcgi;
    uwsgi_temp_path {out}/nginx-uwsgi;
    scgi_temp_path {out}/nginx-scgi;
    upstream backend {{ server 127.0.0.1:{backend_port}; keepalive 64; }}
    upstream vxtap {{ server {SINK_IP}:{sink_port}; {up_ka} }}
    upstream sink204 {{ server 127.0.0.20:{port_sink204}; {up_ka} }}
    {server(port_vx, "vxtap")}
    {server(port_ref, "sink204")}
    server {{
        listen 127.0.0.1:{backend_port};
        location / {{ return 200 "ok\\n"; }}
    }}
    server {{
        listen 127.0.0.20:{port_sink204};
        location / {{ return 204; }}
    }}
}}
"""


def wrk(url, seconds, connections, body_lua=None):
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if body_lua:
        cmd += ["-s", body_lua]
    res = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + 30)
    rps = lat50 = lat99 = None
    for line in res.stdout.splitlines():
        p = line.split()
        if line.startswith("Requests/sec:"):
            rps = float(p[1])
        elif len(p) == 2 and p[0] == "50%":
            lat50 = p[1]
        elif len(p) == 2 and p[0] == "99%":
            lat99 = p[1]
    return dict(rps=rps, p50=lat50, p99=lat99, raw=res.stdout)


def cmd_bench(a):
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    if a.netns_setup:
        netns_setup()
    for d in ("nginx-body", "nginx-proxy", "nginx-fastcgi", "nginx-uwsgi", "nginx-scgi"):
        os.makedirs(os.path.join(out, d), exist_ok=True)
    port_vx, port_ref = free_port("127.0.0.10"), free_port("127.0.0.10")
    port_sink204, backend_port, sink_port = free_port("127.0.0.20"), free_port(), free_port()
    conf = os.path.join(out, "nginx.conf")
    with open(conf, "w") as f:
        f.write(bench_nginx_conf(out, port_vx, port_ref, port_sink204, backend_port, sink_port, a.keepalive))
    sink = start_sink(sink_cmd(a.sink, sink_port, "127.0.0.1/32", shlex.split(a.sink_args or "")), out)
    nginx = None
    results = {}
    try:
        wait_port(SINK_IP, sink_port, sink)
        nginx = subprocess.Popen(["nginx", "-p", out, "-c", conf, "-e", os.path.join(out, "nginx-error.log")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port("127.0.0.10", port_vx, nginx)
        lua = None
        if a.body:
            lua = os.path.join(out, "post.lua")
            with open(lua, "w") as f:
                f.write(f'wrk.method = "POST"\nwrk.body = string.rep("a", {a.body})\n'
                        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n')
        # Warm up both, then alternate so that neither gets the better half of the run.
        wrk(f"http://127.0.0.10:{port_vx}/warm", 1, a.connections, lua)
        wrk(f"http://127.0.0.10:{port_ref}/warm", 1, a.connections, lua)
        runs = {"vxtap": [], "nginx204": []}
        for i in range(a.rounds):
            for name, port in (("vxtap", port_vx), ("nginx204", port_ref)):
                r = wrk(f"http://127.0.0.10:{port}/bench/{name}/{i}?q=1", a.seconds, a.connections, lua)
                runs[name].append(r)
        for name, rs in runs.items():
            rps = [r["rps"] for r in rs if r["rps"]]
            results[name] = dict(rps=round(sum(rps) / len(rps), 1) if rps else None, runs=[
                {k: r[k] for k in ("rps", "p50", "p99")} for r in rs])
    finally:
        stop(nginx)
        stop_sink(sink)
    with open(os.path.join(out, "sink.stderr")) as f:
        stats = [json.loads(x)["stats"] for x in f if x.startswith("{")]
    results["sink_stats"] = stats[-1] if stats else None
    if results["vxtap"]["rps"] and results["nginx204"]["rps"]:
        results["ratio"] = round(results["vxtap"]["rps"] / results["nginx204"]["rps"], 3)
    results["config"] = dict(seconds=a.seconds, rounds=a.rounds, connections=a.connections, body=a.body,
                             keepalive_upstream=a.keepalive)
    with open(os.path.join(out, "bench.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(json.dumps(results))
    return 0


def cpu_seconds(pid):
    """User + system CPU time of a process and its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cmd_direct(a):
    """wrk straight at the sink: copies per second and per CPU-second of the sink (no proxy)."""
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    if a.netns_setup:
        netns_setup()
    sp = free_port(SINK_IP)
    sink = start_sink(sink_cmd(a.sink, sp, "127.0.0.1/32", shlex.split(a.sink_args or "")), out)
    results = []
    try:
        wait_port(SINK_IP, sp, sink)
        lua = os.path.join(out, "direct.lua")
        for name, close, body in (("keepalive GET", False, 0), ("keepalive POST 1 KiB", False, 1024),
                                  ("connection per copy GET (nginx <= 1.29.6)", True, 0)):
            with open(lua, "w") as f:
                f.write('wrk.headers["X-Forwarded-For"] = "198.51.100.7"\n')
                if close:
                    f.write('wrk.headers["Connection"] = "close"\n')
                if body:
                    f.write(f'wrk.method = "POST"\nwrk.body = string.rep("a", {body})\n')
            c0 = cpu_seconds(sink.pid)
            r = wrk(f"http://{SINK_IP}:{sp}/direct?q=1", a.seconds, a.connections, lua)
            cpu = cpu_seconds(sink.pid) - c0
            results.append(dict(case=name, rps=r["rps"], p99=r["p99"], sink_cpu_s=round(cpu, 2),
                                copies_per_cpu_second=round(r["rps"] * a.seconds / cpu) if cpu else None))
    finally:
        stop_sink(sink)
    with open(os.path.join(out, "sink.stderr")) as f:
        stats = [json.loads(x)["stats"] for x in f if x.startswith("{")]
    res = dict(results=results, sink_stats=stats[-1] if stats else None)
    print(json.dumps(res))
    return 0


def cmd_nginx_body_off(a):
    """nginx with `mirror_request_body off`: it forwards the client's Content-Length and no body. Shows
    what that costs: every copy ends at the sink's body start timeout (gap), and nginx holds the
    client's next keep-alive request until then."""
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    if a.netns_setup:
        netns_setup()
    bp, sp, port, port6 = free_port(), free_port(SINK_IP), free_port("127.0.0.10"), free_port(V6_LISTEN)
    backend = Backend(("127.0.0.1", bp))
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    sink = start_sink(sink_cmd(a.sink, sp, "127.0.0.1/32", shlex.split(a.sink_args or "")), out)
    ng = None
    try:
        wait_port(SINK_IP, sp, sink)
        for d in ("nginx-body", "nginx-proxy", "nginx-fastcgi", "nginx-uwsgi", "nginx-scgi"):
            os.makedirs(os.path.join(out, d), exist_ok=True)
        conf = nginx_conf(out, "127.0.0.10", port, port6, bp, sp).replace("mirror_request_body on",
                                                                          "mirror_request_body off")
        with open(os.path.join(out, "nginx.conf"), "w") as f:
            f.write(conf)
        ng = subprocess.Popen(["nginx", "-p", out, "-c", os.path.join(out, "nginx.conf"), "-e",
                               os.path.join(out, "nginx-error.log")], stderr=subprocess.DEVNULL)
        wait_port("127.0.0.10", port, ng)
        s = socket.create_connection(("127.0.0.10", port), timeout=30)
        c = Conn(s)
        lat = []
        for i in range(3):
            t0 = time.time()
            s.sendall(b"POST /body-off/%d HTTP/1.1\r\nHost: n\r\nContent-Length: 5\r\n\r\nhello" % i)
            _, h = c.head()
            c.body(h, False)
            lat.append(round((time.time() - t0) * 1000))
        s.close()
        wait_quiet(out, 3)
    finally:
        stop(ng)
        stop_sink(sink)
        backend.shutdown()
    copies = read_copies(out)
    res = dict(client_ms_keepalive=lat, copies=[dict(target=c["target"], body_len=c["body_len"], gap=c["gap"])
                                                for c in copies])
    print(json.dumps(res))
    return 0


def cmd_selftest(_a):
    assert strip_host("shop.example:8080") == "shop.example"
    assert strip_host("[2001:db8::1]:8443") == "[2001:db8::1]"
    assert strip_host("api.example") == "api.example"
    reqs = make_cases(["get", "chunked", "http10"])
    assert all(r["target"].count("id=") == 1 for r in reqs)
    enc = encode(dict(reqs[0], close=True))
    assert enc.endswith(b"Connection: close\r\n\r\n") and b"X-Lab-Id: " in enc
    print("selftest: 1 passed, 0 failed")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--producer", required=True, choices=sorted(LISTEN_IP))
    r.add_argument("--sink", required=True)
    r.add_argument("--sink-args", default="")
    r.add_argument("--trusted", default=None, help="--trusted-proxies for the sink (default: the proxies)")
    r.add_argument("--out", required=True)
    r.add_argument("--cases", default="all")
    r.add_argument("--extra", default="gone", help="observations outside the checks: gone (client leaves early)")
    r.add_argument("--netns-setup", action="store_true",
                   help="configure lo of a fresh network namespace (run.sh runs the lab under unshare --net)")
    r.add_argument("--envoy", default="envoy")
    r.add_argument("--traefik", default="traefik")
    b = sub.add_parser("bench")
    b.add_argument("--sink", required=True)
    b.add_argument("--sink-args", default="")
    b.add_argument("--out", required=True)
    b.add_argument("--seconds", type=int, default=5)
    b.add_argument("--rounds", type=int, default=3)
    b.add_argument("--connections", type=int, default=32)
    b.add_argument("--body", type=int, default=0, help="POST bodies of this many bytes (0: GET)")
    b.add_argument("--keepalive", action="store_true", help="keep-alive HTTP/1.1 to the mirror upstreams")
    b.add_argument("--netns-setup", action="store_true")
    d = sub.add_parser("direct")
    d.add_argument("--sink", required=True)
    d.add_argument("--sink-args", default="")
    d.add_argument("--out", required=True)
    d.add_argument("--seconds", type=int, default=5)
    d.add_argument("--connections", type=int, default=32)
    d.add_argument("--netns-setup", action="store_true")
    q = sub.add_parser("nginx-body-off")
    q.add_argument("--sink", required=True)
    q.add_argument("--sink-args", default="")
    q.add_argument("--out", required=True)
    q.add_argument("--netns-setup", action="store_true")
    sub.add_parser("selftest")
    a = p.parse_args()
    cmds = {"run": cmd_run, "bench": cmd_bench, "direct": cmd_direct, "nginx-body-off": cmd_nginx_body_off,
            "selftest": cmd_selftest}
    return cmds[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
