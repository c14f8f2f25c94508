#!/usr/bin/env python3
"""HTTP mirror lab: real producers (nginx `mirror`, Envoy `request_mirror_policies`, Traefik
`mirroring`) in front of a tiny backend, mirroring every request to a vxtap mirror target.

Everything listens on loopback only (127.0.0.x and ::1, or ULA addresses on lo of a fresh network
namespace with --netns-setup). Clients bind distinct source addresses (127.0.0.50-127.0.0.99, ::1 or
fd00:77::51-54) so that the real client address of every copy can be checked against the
proxy's own (127.0.0.1). Standard library only.

  lab.py run --producer nginx|envoy|envoy-h2|traefik (--vxtap PATH | --sink CMD) --out DIR [--cases a,b]
             [--untrusted]
  lab.py bench (--vxtap PATH | --sink CMD) --out DIR [--seconds N] [--rounds N] [--body BYTES]
               [--keepalive] [--min-events-pct 99]
  lab.py direct (--vxtap PATH | --sink CMD) --out DIR [--seconds N]
  lab.py nginx-body-off (--vxtap PATH | --sink CMD) --out DIR
  lab.py selftest

The mirror target is either the vxtap binary (`--vxtap PATH`: the lab runs `PATH listen --udp off
--http-mirror 127.0.0.1:PORT --trusted-proxies ... --body-limit 16777216 --events OUT/eve.json
--health 127.0.0.1:PORT`, stops it with SIGTERM and reads the `http` events it wrote), or a command
printing one mirror-sink JSON line per copy on stdout and stopping when its stdin closes (`--sink`,
e.g. `target/release/examples/mirror-sink`; the lab adds `--listen 127.0.0.1:PORT
--trusted-proxies ...`). See class Sink.
"""

import argparse
import base64
import hashlib
import json
import os
import random
import re
import shlex
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request
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
# Traefik: from the lab's headers middleware (constants per entry point), not from Traefik itself.
SERVER_KNOWN = {"nginx": True, "envoy": True, "envoy-h2": True, "traefik": True}
# Producers that give each copy an X-Request-ID (nginx reference config: $request_id; Envoy: its
# x-request-id, the same as the primary request's). Traefik sends none.
SENDS_REQUEST_ID = {"nginx": True, "envoy": True, "envoy-h2": True, "traefik": False}


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


_PORTS_GIVEN = set()


def free_port(ip="127.0.0.1"):
    """A TCP port nothing is bound to on `ip`, for a server the lab starts. Not bind(0)-and-release:
    the kernel gives such a port to the next bind(0) again (the sink's port became vxtap's health port
    in one CI run) or to a connection as its source port. These come from below the ephemeral range,
    and one run never gets the same port twice."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    low = 10000
    span = max(ephemeral - low, 1)
    start = (os.getpid() * 7919) % span
    fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
    for i in range(span):
        port = low + (start + len(_PORTS_GIVEN) + i) % span
        if port in _PORTS_GIVEN:
            continue
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            try:
                s.bind((ip, port))
            except OSError:
                continue
        _PORTS_GIVEN.add(port)
        return port
    raise RuntimeError(f"no free port on {ip} between {low} and {ephemeral}")


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
        self.request_ids = {}  # X-Lab-Id -> X-Request-ID the backend received


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
                    lab_id = hget(headers, "x-lab-id")
                    if lab_id:
                        self.server.request_ids[lab_id] = hget(headers, "x-request-id")
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


# As (namespace) root nginx hands its temp directories to `nobody`, which a user namespace made by
# `unshare --map-root-user` (ci.sh without root) does not map: keep them root's.
NGINX_USER = "user root root;\n" if hasattr(os, "geteuid") and os.geteuid() == 0 else ""


def nginx_conf(out, listen_ip, port, port6, backend_port, sink_port):
    # The reference configuration of CONTRACT.md ("HTTP mirror input"), pointed at the sink.
    return f"""
worker_processes 1;
daemon off;
master_process off;
{NGINX_USER}pid {out}/nginx.pid;
error_log {out}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    # Lab only: which $request_id nginx gave each request (checked against the copy's request_id).
    log_format lab '$http_x_lab_id $request_id $remote_addr:$remote_port $status';
    access_log {out}/nginx-access.log lab;
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


def traefik_conf(out, listen_ip, port, port6, backend_port, sink_port, metrics_port):
    # Traefik's own request counts per service (its Prometheus metrics) say how many copies it sent:
    # see traefik_sent(). WARN logs the copies it skips because the client went away.
    static = f"""
entryPoints:
  web:
    address: "{listen_ip}:{port}"
  web6:
    address: "[{V6_LISTEN}]:{port6}"
  metrics:
    address: "{listen_ip}:{metrics_port}"
providers:
  file:
    filename: "{out}/traefik-dynamic.yml"
metrics:
  prometheus:
    entryPoint: metrics
    addServicesLabels: true
log:
  level: WARN
  filePath: "{out}/traefik.log"
accessLog:
  filePath: "{out}/traefik-access.log"
"""
    # Traefik sends no server address: a headers middleware per entry point sets X-Server-Addr and
    # X-Server-Port to constants (and so also replaces any a client sent).
    dynamic = f"""
http:
  routers:
    all:
      rule: "PathPrefix(`/`)"
      entryPoints: [web]
      middlewares: [server-web]
      service: mirrored
    all6:
      rule: "PathPrefix(`/`)"
      entryPoints: [web6]
      middlewares: [server-web6]
      service: mirrored
  middlewares:
    server-web:
      headers:
        customRequestHeaders:
          X-Server-Addr: "{listen_ip}"
          X-Server-Port: "{port}"
    server-web6:
      headers:
        customRequestHeaders:
          X-Server-Addr: "{V6_LISTEN}"
          X-Server-Port: "{port6}"
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


def start_producer(name, out, listen_ip, port, port6, backend_port, sink_port, bins, metrics_port=None):
    """Starts a producer and waits until it routes. `metrics_port`: Traefik's metrics entry point."""
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
        static, dynamic = traefik_conf(out, listen_ip, port, port6, backend_port, sink_port, metrics_port)
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
        req("spoof", headers=[("X-Server-Addr", "7.7.7.7"), ("X-Server-Port", "77"), ("X-Forwarded-For", "6.6.6.6")])
        req("spoof", src="v6", headers=[("X-SERVER-ADDR", "2001:db8::7"), ("x-server-port", "77"),
                                        ("Forwarded", 'for="[2001:db8::6]:666"')])
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


def expected_request_ids(producer, out, backend):
    """{lab id: the X-Request-ID the producer gave the request}, from where the producer says it
    independently of the copy: nginx's access log (`$request_id`, format `lab`), the X-Request-ID
    Envoy sent the backend with the primary request. Traefik sets none: the copy must have none."""
    if producer == "nginx":
        ids = {}
        with open(os.path.join(out, "nginx-access.log")) as f:
            for line in f:
                p = line.split()
                if len(p) >= 2 and p[0] != "-":
                    ids[p[0]] = p[1]
        return ids
    if producer in ("envoy", "envoy-h2"):
        return dict(backend.request_ids)
    return {}


def check(producer, reqs, copies, listen_ip, port, port6, want_rid=None, sink_addr=None, untrusted=False):
    """Per request: once, exact, address, host, request_id. `sink_addr` ("ip:port" of the target's
    listener) is where dest_* must point when the producer sends no server address. `untrusted`: the
    target was told not to trust the producer, so every forwarding header must be ignored: client =
    the TCP peer (the producer's own address and port), server = the target's listener."""
    want_rid = want_rid or {}
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
                  address_correct=0, host_correct=0, request_id_correct=0, trusted=0)
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
        if untrusted:
            addr_ok = c["client"] == c["peer"] and c["server"] == sink_addr
        else:
            addr_ok = cip == r["src"]
            if CLIENT_PORT_KNOWN[producer]:
                addr_ok = addr_ok and int(cport) == r["port"]
            if SERVER_KNOWN[producer]:
                sip, _, sport = c["server"].rpartition(":")
                want_ip, want_port = (V6_LISTEN, port6) if ":" in r["src"] else (listen_ip, port)
                addr_ok = addr_ok and sip.strip("[]") == want_ip and int(sport) == want_port
            elif sink_addr is not None:
                addr_ok = addr_ok and c["server"] == sink_addr
        if not addr_ok:
            row["problems"].append(f"address: client {c['client']} server {c['server']} (sent from "
                                   f"{r['src']}:{r.get('port')}, peer {c['peer']})")
        totals["address_correct"] += addr_ok
        totals["trusted"] += bool(c.get("addresses_trusted"))
        host_ok = c["hostname"] == strip_host(r["host"])
        if not host_ok:
            row["problems"].append(f"hostname {c['hostname']!r} (Host sent {r['host']!r})")
        totals["host_correct"] += host_ok
        # request_id: the producer's X-Request-ID for this request (None where it sends none).
        rid_want = want_rid.get(r["uid"]) if SENDS_REQUEST_ID[producer] else None
        rid_ok = c.get("request_id") == rid_want and (rid_want is not None or not SENDS_REQUEST_ID[producer])
        if not rid_ok:
            row["problems"].append(f"request_id {c.get('request_id')!r} (producer's {rid_want!r})")
        totals["request_id_correct"] += rid_ok
        if c.get("mirror_type") not in (None, "http") or c.get("tunnel"):
            row["problems"].append(f"event: mirror type {c.get('mirror_type')!r}, tunnel {c.get('tunnel')!r}")
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


class Sink:
    """The mirror target. Two kinds:

    - `--vxtap PATH` (the real binary): `vxtap listen --udp off --http-mirror 127.0.0.1:PORT
      --trusted-proxies T --body-limit 16777216 --events OUT/eve.json --health 127.0.0.1:HPORT`,
      stopped with SIGTERM (it drains and exits 0); its `http` events are read back from eve.json.
    - `--sink CMD` (the crate's example, `mirror-sink`): the lab appends `--listen 127.0.0.1:PORT
      --trusted-proxies T --body-limit 16777216`, reads one JSON line per copy from its stdout and
      stops it by closing its stdin.

    Either way `copies()` returns the copies in the mirror-sink form the checks use: method, target,
    protocol, headers [[name, value]], body_b64, body_len, body_truncated, gap, client, server, peer
    ("ip:port"), hostname, request_id, start_ts (µs)."""

    def __init__(self, a, out, port, trusted, quiet=False, prefix=()):
        self.out, self.port = out, port
        self.vxtap = getattr(a, "vxtap", None)
        self.exit_code = None
        self.summary = None
        self.stderr_path = os.path.join(out, "sink.stderr")
        stderr = open(self.stderr_path, "wb")
        extra = shlex.split(getattr(a, "sink_args", "") or "")
        if self.vxtap:
            self.events = os.path.join(out, "eve.json")
            if os.path.exists(self.events):
                os.unlink(self.events)
            self.health = free_port("127.0.0.1")
            self.cmd = list(prefix) + [self.vxtap, "listen", "--udp", "off", "--http-mirror", f"{SINK_IP}:{port}",
                        "--trusted-proxies", trusted, "--body-limit", str(16 << 20), "--events", self.events,
                        "--health", f"127.0.0.1:{self.health}"] + [x for x in extra if x != "--quiet"]
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=stderr)
        else:
            self.events = os.path.join(out, "copies.jsonl")
            self.cmd = list(prefix) + shlex.split(a.sink) + ["--listen", f"{SINK_IP}:{port}", "--trusted-proxies", trusted,
                                              "--body-limit", str(16 << 20)] + extra
            if quiet and "--quiet" not in self.cmd:
                self.cmd.append("--quiet")
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=open(self.events, "wb"),
                                         stderr=stderr)
        with open(os.path.join(out, "sink.cmd"), "w") as f:
            f.write(shlex.join(self.cmd) + "\n")

    @property
    def pid(self):
        return self.proc.pid

    def wait_ready(self):
        """Waits until the sink listens; if it does not, the error carries the end of its stderr."""
        try:
            wait_port(SINK_IP, self.port, self.proc)
            if self.vxtap:
                wait_port("127.0.0.1", self.health, self.proc)
        except RuntimeError as e:
            with open(self.stderr_path, "rb") as f:
                tail = f.read()[-2000:].decode("utf-8", "replace")
            raise RuntimeError(f"{e}; the sink's stderr ends: {tail}") from None

    def metrics(self):
        """vxtap's /metrics as {name{labels}: value} (empty for the example sink)."""
        if not self.vxtap or self.proc.poll() is not None:
            return {}
        try:
            with socket.create_connection(("127.0.0.1", self.health), timeout=5) as s:
                s.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
                data = Conn(s).rest()
        except OSError:
            return {}
        m = {}
        for line in data.decode("utf-8", "replace").split("\r\n\r\n", 1)[-1].splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                try:
                    m[k] = float(v)
                except ValueError:
                    pass
        return m

    def mirror_copies_metric(self):
        m = self.metrics()
        return sum(v for k, v in m.items() if k.startswith("vxtap_mirror_copies_total"))

    def wait_processed(self, limit=30.0):
        """vxtap: waits until every copy received has been written as an event or dropped (counted),
        and the counts stand still; returns the last metrics."""
        end = time.time() + limit
        last = None
        m = {}
        while time.time() < end:
            m = self.metrics()
            received = sum(v for k, v in m.items() if k.startswith("vxtap_mirror_copies_total"))
            done = m.get("vxtap_requests_total", 0) + m.get("vxtap_mirror_sink_full_drops_total", 0)
            if done >= received and (received, done) == last:
                return m
            last = (received, done)
            time.sleep(0.3)
        return m

    def stop(self, timeout=60):
        """SIGTERM (vxtap: drain, exit 0) or stdin closed (example sink); returns the exit code."""
        try:
            if self.vxtap:
                self.proc.send_signal(15)
            else:
                self.proc.stdin.close()
            self.exit_code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.exit_code = "killed after timeout"
        self.summary = self._summary()
        return self.exit_code

    def _summary(self):
        """The last JSON line on stderr: vxtap's exit summary, or the example's {"stats": …}."""
        try:
            with open(self.stderr_path, "rb") as f:
                lines = [x for x in f.read().decode("utf-8", "replace").splitlines() if x.startswith("{")]
            for x in reversed(lines):
                try:
                    d = json.loads(x)
                except ValueError:
                    continue
                return d.get("stats", d)
        except OSError:
            pass
        return None

    def count_lines(self):
        try:
            with open(self.events, "rb") as f:
                return sum(1 for line in f if line.endswith(b"\n"))
        except OSError:
            return 0

    def copies(self):
        with open(self.events, "rb") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        if not self.vxtap:
            return rows
        return [event_to_copy(e) for e in rows if e.get("event_type") == "http"]


def hostport(ip, port):
    if ip is None:
        return None
    return f"[{ip}]:{port}" if ":" in str(ip) else f"{ip}:{port}"


def eve_ts_us(ts):
    """`2026-11-24T10:00:00.123456+0000` -> microseconds since the epoch."""
    try:
        import datetime
        return int(datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1e6)
    except (TypeError, ValueError):
        return None


def event_to_copy(e):
    """A vxtap EVE `http` event in the form of a mirror-sink line (see Sink)."""
    h = e.get("http", {})
    m = e.get("mirror") or {}
    return dict(
        method=h.get("http_method"), target=h.get("url"), protocol=h.get("protocol"),
        headers=[[x.get("name"), x.get("value")] for x in h.get("request_headers", [])],
        body_b64=h.get("http_request_body", ""), body_len=h.get("request_body_len", 0),
        body_truncated=bool(h.get("http_request_body_truncated", False)), gap=bool(h.get("gap", False)),
        client=hostport(e.get("src_ip"), e.get("src_port")), server=hostport(e.get("dest_ip"), e.get("dest_port")),
        peer=hostport(m.get("peer_ip"), m.get("peer_port")), mirror_type=m.get("type"),
        hostname=h.get("hostname"), request_id=h.get("request_id"), addresses_trusted=None,
        start_ts=eve_ts_us(e.get("timestamp")), flow_id=e.get("flow_id"), tunnel=e.get("tunnel"),
    )


def stop(proc, timeout=10):
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def traefik_sent(ip, port, limit=5.0):
    """Traefik's own count of what it served: {"primary": requests the backend service answered,
    "copies": requests the mirror service (vxtap) completed}, from traefik_service_requests_total,
    read until it stands still. Traefik 3.7 can skip a copy under concurrency without a word (its
    mirroring decides per request from two counters read under separate locks, and two requests can
    pass each other between them; 2 skipped in 28,800 at 32 concurrent clients into an nginx sink,
    where Traefik's count matched the sink's), so the lab expects a copy of every request Traefik
    counts as mirrored, and no more."""
    def read():
        with urllib.request.urlopen(f"http://{ip}:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        counts = {}
        for line in text.splitlines():
            if line.startswith("traefik_service_requests_total{"):
                labels, value = line.rsplit(" ", 1)
                service = re.search(r'service="([^"]*)"', labels).group(1)
                counts[service] = counts.get(service, 0) + int(float(value))
        return {"primary": counts.get("backend@file", 0), "copies": counts.get("vxtap@file", 0)}

    end, last = time.time() + limit, None
    while True:
        now = read()
        if now == last or time.time() > end:
            return now
        last = now
        time.sleep(0.5)


def wait_quiet(sink, expect, quiet=1.5, limit=30.0):
    """Waits until the sink has received `expect` copies (vxtap: its vxtap_mirror_copies_total; the
    example: lines printed), or none came for `quiet` seconds (max `limit`)."""
    end = time.time() + limit
    last, last_change = -1, time.time()
    while time.time() < end:
        n = sink.mirror_copies_metric() if sink.vxtap else sink.count_lines()
        if n != last:
            last, last_change = n, time.time()
            if n >= expect:
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
    if a.untrusted:
        a.trusted = "192.0.2.255/32"  # TEST-NET-1: nobody here
    trusted = a.trusted or ",".join(
        [f"{PROXY_OUT_IP}/32", f"{listen_ip}/32", "::1/128", f"{V6_LISTEN}/128"] + host_addresses())
    sink = Sink(a, out, sink_port, trusted)
    prod = None
    try:
        sink.wait_ready()
        metrics_port = free_port(listen_ip) if producer == "traefik" else None
        prod = start_producer(producer, out, listen_ip, port, port6, backend_port, sink_port, bins, metrics_port)
        cases = a.cases.split(",") if a.cases != "all" else [
            "get", "methods", "post_sizes", "chunked", "keepalive", "http10", "bigheader", "targets", "host",
            "ipv6", "spoof", "slow", "concurrency"]
        reqs = make_cases(cases)
        t0 = time.time()
        log = run_clients(reqs, listen_ip, port, port6)
        sent_s = time.time() - t0
        gone = client_gone(listen_ip, port) if "gone" in a.extra.split(",") else []
        wait_quiet(sink, len(reqs) + len(gone))
        metrics = sink.metrics()
        sent_by_producer = traefik_sent(listen_ip, metrics_port) if producer == "traefik" else None
    finally:
        stop(prod)
        sink.stop()
        backend.shutdown()
    copies = sink.copies()
    gone_ids = set(gone)
    gone_copies = [c for c in copies if any(k.lower() == "x-lab-id" and v in gone_ids for k, v in c["headers"])]
    copies = [c for c in copies if c not in gone_copies]
    want_rid = expected_request_ids(producer, out, backend)
    totals, rows = check(producer, reqs, copies, listen_ip, port, port6, want_rid,
                         sink_addr=f"{SINK_IP}:{sink_port}", untrusted=a.untrusted)
    if gone:
        # Not part of the checks: what the producer does when its client leaves before the answer.
        totals["client_gone"] = dict(sent=len(gone), copies=len(gone_copies),
                                     gap=sum(bool(c["gap"]) for c in gone_copies))
    totals.update(producer=producer + ("-untrusted" if a.untrusted else ""), client_errors=len(log), seconds=round(sent_s, 2),
                  backend_requests=backend.count)
    # Copies the producer itself says it never sent (Traefik only, see traefik_sent): not the target's.
    skipped = 0
    if sent_by_producer is not None:
        totals["producer_counts"] = sent_by_producer
        # Requests whose client went away are served but not mirrored (Traefik sends copies after
        # the response): those are not skips.
        gone_uncopied = len(gone) - len({v for c in gone_copies for k, v in c["headers"] if k.lower() == "x-lab-id"})
        skipped = sent_by_producer["primary"] - sent_by_producer["copies"] - gone_uncopied
    totals["producer_skipped"] = skipped
    totals["sink"] = "vxtap" if sink.vxtap else "example"
    totals["sink_exit"] = sink.exit_code
    totals["sink_stats"] = sink.summary
    if sink.vxtap:
        totals["sink_metrics"] = {k: v for k, v in metrics.items() if k.startswith("vxtap_mirror_")}
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
    if sink.exit_code != 0:
        print(f"[{producer}] the mirror target exited with {sink.exit_code} (see {sink.stderr_path})")
    if skipped:
        c = sent_by_producer
        print(f"[{producer}] the producer did not send {skipped} cop{'y' if skipped == 1 else 'ies'}: it counts "
              f"{c['primary']} requests served and {c['copies']} mirrored (traefik_service_requests_total); "
              f"{totals['missing']} missing at the target")
    print(json.dumps({k: totals[k] for k in ("producer", "sink", "sent", "answered_200", "copies", "once", "exact",
                                             "address_correct", "host_correct", "request_id_correct",
                                             "missing", "producer_skipped", "duplicated", "stray_copies",
                                             "client_gone", "copy_delay_ms_slow_backend") if k in totals}))
    ok = copies_pass(totals, skipped) and not log and sink.exit_code == 0
    return 0 if ok else 1


def copies_pass(totals, skipped):
    """Every request answered 200; every copy that came, once and exact with the right addresses,
    host and request id; and no more missing than the producer itself says it did not send."""
    arrived = totals["sent"] - totals["missing"]
    ok = all(totals[k] == arrived for k in ("once", "exact", "address_correct", "host_correct",
                                            "request_id_correct"))
    return ok and totals["answered_200"] == totals["sent"] and totals["missing"] <= max(skipped, 0)


# ---------------------------------------------------------------------------------------------------
# Benchmark: wrk -> nginx (mirror) -> sink, against the same nginx mirroring to an nginx `return 204`.


def bench_nginx_conf(out, port_vx, port_ref, port_sink204, backend_port, sink_port, keepalive, access_log=True):
    up_ka = "keepalive 64;" if keepalive else ""
    mirror_http = 'proxy_http_version 1.1; proxy_set_header Connection "";' if keepalive else ""

    def server(port, upstream):
        # Both mirroring servers log every request they served (buffered; the same cost for both):
        # the count of copies each mirrored, to compare with the events written.
        log = (f"access_log {out}/access-{upstream}.log uris buffer=256k flush=1s;" if access_log
               else "access_log off;")
        return f"""
    server {{
        listen 127.0.0.10:{port};
        {log}
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
{NGINX_USER}pid {out}/nginx.pid;
error_log {out}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    log_format uris '$request_uri $status';
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
}}
"""


def sink204_nginx_conf(out, port_sink204):
    """The reference sink: a second nginx (its own process, one worker, as vxtap is its own process)
    that only answers `return 204`."""
    return f"""
worker_processes 1;
daemon off;
master_process off;
{NGINX_USER}pid {out}/sink204/nginx.pid;
error_log {out}/sink204/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {out}/sink204/nginx-body;
    proxy_temp_path {out}/sink204/nginx-proxy;
    fastcgi_temp_path {out}/sink204/nginx-fastcgi;
    uwsgi_temp_path {out}/sink204/nginx-uwsgi;
    scgi_temp_path {out}/sink204/nginx-scgi;
    server {{
        listen 127.0.0.20:{port_sink204};
        location / {{ return 204; }}
    }}
}}
"""


def wrk(url, seconds, connections, body_lua=None, prefix=()):
    cmd = list(prefix) + ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if body_lua:
        cmd += ["-s", body_lua]
    res = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + 30)
    rps = lat50 = lat99 = None
    total = errors = 0
    for line in res.stdout.splitlines():
        p = line.split()
        if line.startswith("Requests/sec:"):
            rps = float(p[1])
        elif len(p) == 2 and p[0] == "50%":
            lat50 = p[1]
        elif len(p) == 2 and p[0] == "99%":
            lat99 = p[1]
        elif "requests in" in line:
            total = int(p[0])
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            errors += int(p[-1])
        elif line.strip().startswith("Socket errors:"):
            errors += sum(int(x.strip(",")) for x in p[3::2] if x.strip(",").isdigit())
    return dict(rps=rps, p50=lat50, p99=lat99, requests=total, errors=errors, raw=res.stdout)


def cpu_seconds(pid):
    """User + system CPU time of a process and its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count_uris(path, prefix, status=None):
    """Lines of a `$request_uri $status` access log under `prefix` (and with that status)."""
    try:
        with open(path) as f:
            return sum(1 for line in f if line.startswith(prefix) and (status is None or line.split()[-1] == status))
    except OSError:
        return 0


def cmd_bench(a):
    """wrk -> nginx mirroring to the target, against the same nginx mirroring to a second nginx server
    that only does `return 204`: alternated in one run. With --vxtap also: an event for every copy
    (nginx's access log of the mirroring server vs the events file), and copies into events per
    CPU-second of the vxtap process (/proc/PID/stat)."""
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    if a.netns_setup:
        netns_setup()
    for d in ("nginx-body", "nginx-proxy", "nginx-fastcgi", "nginx-uwsgi", "nginx-scgi"):
        os.makedirs(os.path.join(out, d), exist_ok=True)
        os.makedirs(os.path.join(out, "sink204", d), exist_ok=True)
    for name in ("access-vxtap.log", "access-sink204.log"):
        if os.path.exists(os.path.join(out, name)):
            os.unlink(os.path.join(out, name))
    port_vx, port_ref = free_port("127.0.0.10"), free_port("127.0.0.10")
    port_sink204, backend_port, sink_port = free_port("127.0.0.20"), free_port(), free_port()
    conf = os.path.join(out, "nginx.conf")
    with open(conf, "w") as f:
        f.write(bench_nginx_conf(out, port_vx, port_ref, port_sink204, backend_port, sink_port, a.keepalive))
    conf204 = os.path.join(out, "sink204", "nginx.conf")
    with open(conf204, "w") as f:
        f.write(sink204_nginx_conf(out, port_sink204))
    sink = Sink(a, out, sink_port, "127.0.0.1/32", quiet=True)
    nginx = nginx204 = None
    results = {}
    cpu_load = 0.0
    copies_load = 0
    try:
        sink.wait_ready()
        nginx204 = subprocess.Popen(["nginx", "-p", os.path.join(out, "sink204"), "-c", conf204, "-e",
                                     os.path.join(out, "sink204", "nginx-error.log")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port("127.0.0.20", port_sink204, nginx204)
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
        wrk(f"http://127.0.0.10:{port_vx}/bench/vxtap/warm", 1, a.connections, lua)
        wrk(f"http://127.0.0.10:{port_ref}/bench/nginx204/warm", 1, a.connections, lua)
        runs = {"vxtap": [], "nginx204": []}
        for i in range(a.rounds):
            for name, port in (("vxtap", port_vx), ("nginx204", port_ref)):
                c0 = cpu_seconds(sink.pid)
                n0 = cpu_seconds(nginx204.pid)
                r = wrk(f"http://127.0.0.10:{port}/bench/{name}/{i}?q=1", a.seconds, a.connections, lua)
                if name == "nginx204":
                    r["sink204_cpu_s"] = round(cpu_seconds(nginx204.pid) - n0, 2)
                if name == "vxtap":
                    r["sink_cpu_s"] = round(cpu_seconds(sink.pid) - c0, 2)
                    cpu_load += r["sink_cpu_s"]
                    copies_load += r["requests"]
                runs[name].append(r)
                print(f"[bench] round {i} {name}: {r['rps']} req/s, p99 {r['p99']}"
                      + (f", target CPU {r['sink_cpu_s']} s" if name == "vxtap" else
                         f", nginx 204 sink CPU {r['sink204_cpu_s']} s"), flush=True)
        for name, rs in runs.items():
            rps = [r["rps"] for r in rs if r["rps"]]
            results[name] = dict(rps=round(sum(rps) / len(rps), 1) if rps else None,
                                 requests=sum(r["requests"] for r in rs), errors=sum(r["errors"] for r in rs),
                                 runs=[{k: r.get(k) for k in ("rps", "p50", "p99", "requests", "errors", "sink_cpu_s",
                                                              "sink204_cpu_s")}
                                       for r in rs])
    finally:
        stop(nginx)  # flushes the buffered access logs
        stop(nginx204)
        if sink.vxtap:
            sink.wait_processed()
            results["sink_metrics"] = {k: v for k, v in sink.metrics().items()
                                       if k.startswith(("vxtap_mirror_", "vxtap_requests", "vxtap_events",
                                                        "vxtap_alerts", "vxtap_drops"))}
            results["sink_cpu_s_total"] = round(cpu_seconds(sink.pid), 2)
        sink.stop()
    results["sink"] = "vxtap" if sink.vxtap else "example"
    results["sink_exit"] = sink.exit_code
    results["sink_stats"] = sink.summary
    if results["vxtap"]["rps"] and results["nginx204"]["rps"]:
        results["ratio"] = round(results["vxtap"]["rps"] / results["nginx204"]["rps"], 3)
        # Each round's pair ran back to back: the median of their ratios resists a noisy neighbour.
        pairs = sorted(v["rps"] / n["rps"] for v, n in zip(results["vxtap"]["runs"], results["nginx204"]["runs"])
                       if v["rps"] and n["rps"])
        results["ratio_median_of_rounds"] = round(pairs[len(pairs) // 2], 3) if pairs else None
    # Copies nginx mirrored (its access log: one line per request of the mirroring server) vs events.
    mirrored = count_uris(os.path.join(out, "access-vxtap.log"), "/bench/vxtap/")
    results["mirrored_by_nginx"] = mirrored
    # 499: wrk closed its connections at the end of each run with requests in flight; nginx then
    # finalizes the request and may abort its mirror subrequest before sending the copy (vxtap sees
    # a connection that closes with no byte: counted in connections_accepted only).
    results["mirrored_by_nginx_499"] = count_uris(os.path.join(out, "access-vxtap.log"), "/bench/vxtap/", "499")
    results["mirrored_by_nginx_to_204"] = count_uris(os.path.join(out, "access-sink204.log"), "/bench/nginx204/")
    if sink.vxtap:
        events = 0
        with open(sink.events, "rb") as f:
            for line in f:
                if b'"event_type":"http"' in line and b'"url":"/bench/vxtap/' in line:
                    events += 1
        results["events"] = events
        results["events_pct"] = round(100.0 * events / mirrored, 3) if mirrored else None
        cpu = results.get("sink_cpu_s_total")
        results["events_per_cpu_second"] = round(events / cpu) if cpu else None
        results["copies_per_cpu_second_under_load"] = round(copies_load / cpu_load) if cpu_load else None
    results["config"] = dict(seconds=a.seconds, rounds=a.rounds, connections=a.connections, body=a.body,
                             keepalive_upstream=a.keepalive, cpus=os.cpu_count())
    with open(os.path.join(out, "bench.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"[bench] mean: target {results['vxtap']['rps']} req/s, nginx return 204 {results['nginx204']['rps']} "
          f"req/s, ratio {results.get('ratio')} (median of the rounds' ratios {results.get('ratio_median_of_rounds')})")
    if sink.vxtap:
        m = results.get("sink_metrics", {})
        received = sum(v for k, v in m.items() if k.startswith("vxtap_mirror_copies_total"))
        print(f"[bench] nginx served {mirrored} requests on the vxtap-mirroring server "
              f"({results['mirrored_by_nginx_499']} of them 499: client gone at the end of a run); vxtap "
              f"received {int(received)} copies (sink-full drops {int(m.get('vxtap_mirror_sink_full_drops_total', 0))}), "
              f"answered {int(m.get('vxtap_mirror_answered_total', 0))}, wrote {results['events']} events "
              f"({results['events_pct']} % of the requests); {results['events_per_cpu_second']} events per vxtap CPU-second "
              f"({results['sink_cpu_s_total']} s CPU in all); under load "
              f"{results['copies_per_cpu_second_under_load']} copies per CPU-second")
    print(json.dumps(results))
    ok = sink.exit_code == 0
    if sink.vxtap and a.min_events_pct is not None:
        ok = ok and (results["events_pct"] or 0) >= a.min_events_pct
    return 0 if ok else 1


def cmd_direct(a):
    """wrk straight at the target: copies per second and per CPU-second of the target (no proxy).
    With --vxtap, copies go all the way into events; counted against the events file."""
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    if a.netns_setup:
        netns_setup()
    sp = free_port(SINK_IP)
    # --pin: the target on CPU 0 (all its threads), wrk on CPU 1: copies/s then is per core.
    pin_sink, pin_wrk = (["taskset", "-c", "0"], ["taskset", "-c", "1"]) if a.pin else ((), ())
    sink = Sink(a, out, sp, "127.0.0.1/32", quiet=True, prefix=pin_sink)
    results = []
    try:
        sink.wait_ready()
        lua = os.path.join(out, "direct.lua")
        cases = (("keepalive GET", False, 0), ("keepalive POST 1 KiB", False, 1024),
                 ("connection per copy GET (nginx <= 1.29.6)", True, 0))
        for i, (name, close, body) in enumerate(cases):
            with open(lua, "w") as f:
                f.write('wrk.headers["X-Forwarded-For"] = "198.51.100.7"\n')
                if close:
                    f.write('wrk.headers["Connection"] = "close"\n')
                if body:
                    f.write(f'wrk.method = "POST"\nwrk.body = string.rep("a", {body})\n')
            m0 = sink.metrics()
            c0 = cpu_seconds(sink.pid)
            t0 = time.time()
            r = wrk(f"http://{SINK_IP}:{sp}/direct/{i}?q=1", a.seconds, a.connections, lua, prefix=pin_wrk)
            m1 = sink.wait_processed() if sink.vxtap else {}  # this run's copies all through to events
            cpu = cpu_seconds(sink.pid) - c0
            row = dict(case=name, url=f"/direct/{i}?q=1", rps=r["rps"], requests=r["requests"], p99=r["p99"],
                       sink_cpu_s=round(cpu, 2), wall_s=round(time.time() - t0, 2), pinned=bool(a.pin))
            if sink.vxtap:
                row["sink_full_drops"] = int(m1.get("vxtap_mirror_sink_full_drops_total", 0)
                                             - m0.get("vxtap_mirror_sink_full_drops_total", 0))
            else:
                row["copies_per_cpu_second"] = round(r["requests"] / cpu) if cpu else None
            results.append(row)
        if sink.vxtap:
            res_metrics = {k: v for k, v in sink.metrics().items() if k.startswith("vxtap_mirror_")}
    finally:
        sink.stop()
    if sink.vxtap:
        # Events per case, and events per CPU-second of the vxtap process (all its threads: listener,
        # analysis, event writer) over the run and until its copies were all written.
        counts = {}
        with open(sink.events, "rb") as f:
            for line in f:
                k = line.find(b'"url":"/direct/')
                if k >= 0 and b'"event_type":"http"' in line:
                    case = line[k + 15:line.index(b"?", k)].decode()
                    counts[case] = counts.get(case, 0) + 1
        for i, row in enumerate(results):
            row["events"] = counts.get(str(i), 0)
            row["events_per_cpu_second"] = round(row["events"] / row["sink_cpu_s"]) if row["sink_cpu_s"] else None
    for row in results:
        print(f"[direct] {row['case']}: {row['rps']} copies/s offered"
              + (f", {row['events']} events of {row['requests']} copies ({row['sink_full_drops']} dropped at the "
                 f"full analysis queue), {row['events_per_cpu_second']} events per CPU-second "
                 f"({row['sink_cpu_s']} s CPU)" if sink.vxtap else
                 f", {row['copies_per_cpu_second']} copies per CPU-second"), flush=True)
    res = dict(results=results, sink="vxtap" if sink.vxtap else "example", sink_exit=sink.exit_code,
               sink_stats=sink.summary, cpus=os.cpu_count(), pinned=bool(a.pin))
    if sink.vxtap:
        res["sink_metrics"] = res_metrics
    with open(os.path.join(out, "direct.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res))
    return 0 if sink.exit_code == 0 else 1


def body_off_nginx_conf(out, port, port6, bp, sp, fixed):
    """The reference configuration with `mirror_request_body off`; `fixed` adds the two lines that
    make nginx send a copy without body and without Content-Length."""
    conf = nginx_conf(out, "127.0.0.10", port, port6, bp, sp).replace("mirror_request_body on",
                                                                      "mirror_request_body off")
    if fixed:
        conf = conf.replace("            internal;\n", "            internal;\n            proxy_pass_request_body off;\n"
                            "            proxy_set_header Content-Length \"\";\n")
    return conf


def cmd_nginx_body_off(a):
    """nginx with `mirror_request_body off`: it forwards the client's Content-Length and no body. Shows
    what that costs: every copy ends at the target's body start timeout (gap), and nginx holds the
    client's next keep-alive request until then; then the same with the fix in the mirror location
    (`proxy_pass_request_body off; proxy_set_header Content-Length "";`)."""
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    if a.netns_setup:
        netns_setup()
    res = {}
    for variant in ("body_off", "body_off_fixed"):
        vout = os.path.join(out, variant)
        os.makedirs(vout, exist_ok=True)
        bp, sp, port, port6 = free_port(), free_port(SINK_IP), free_port("127.0.0.10"), free_port(V6_LISTEN)
        backend = Backend(("127.0.0.1", bp))
        threading.Thread(target=backend.serve_forever, daemon=True).start()
        sink = Sink(a, vout, sp, "127.0.0.1/32")
        ng = None
        metrics = {}
        try:
            sink.wait_ready()
            for d in ("nginx-body", "nginx-proxy", "nginx-fastcgi", "nginx-uwsgi", "nginx-scgi"):
                os.makedirs(os.path.join(vout, d), exist_ok=True)
            with open(os.path.join(vout, "nginx.conf"), "w") as f:
                f.write(body_off_nginx_conf(vout, port, port6, bp, sp, variant.endswith("fixed")))
            ng = subprocess.Popen(["nginx", "-p", vout, "-c", os.path.join(vout, "nginx.conf"), "-e",
                                   os.path.join(vout, "nginx-error.log")], stderr=subprocess.DEVNULL)
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
            wait_quiet(sink, 3)
            metrics = sink.metrics()
        finally:
            stop(ng)
            sink.stop()
            backend.shutdown()
        copies = sink.copies()
        res[variant] = dict(client_ms_keepalive=lat, copies=[dict(target=c["target"], body_len=c["body_len"],
                                                                   gap=c["gap"]) for c in copies])
        if sink.vxtap:
            res[variant]["body_timeouts"] = metrics.get("vxtap_mirror_body_timeouts_total")
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

    def totals(sent, missing, duplicated=0, inexact=0):
        once = sent - missing - duplicated
        return dict(sent=sent, answered_200=sent, missing=missing, once=once, exact=sent - missing - inexact,
                    address_correct=sent - missing, host_correct=sent - missing, request_id_correct=sent - missing)
    assert copies_pass(totals(146, 0), 0)
    assert copies_pass(totals(146, 1), 1)  # the producer's own count says it sent one copy fewer
    assert copies_pass(totals(146, 0), 1)  # its count lagged: every copy came all the same
    assert not copies_pass(totals(146, 1), 0)  # lost by the target
    assert not copies_pass(totals(146, 2), 1)  # one skipped by the producer, one lost by the target
    assert not copies_pass(totals(146, 1), -1)
    assert not copies_pass(totals(146, 0, duplicated=1), 0)
    assert not copies_pass(totals(146, 1, inexact=1), 1)
    print("selftest: 2 passed, 0 failed")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--producer", required=True, choices=sorted(LISTEN_IP))
    r.add_argument("--sink", default=None)
    r.add_argument("--vxtap", default=None, help="the vxtap binary (instead of --sink)")
    r.add_argument("--sink-args", default="")
    r.add_argument("--trusted", default=None, help="--trusted-proxies for the sink (default: the proxies)")
    r.add_argument("--untrusted", action="store_true",
                   help="trust nobody: every copy must carry the peer as client and the target as server")
    r.add_argument("--out", required=True)
    r.add_argument("--cases", default="all")
    r.add_argument("--extra", default="gone", help="observations outside the checks: gone (client leaves early)")
    r.add_argument("--netns-setup", action="store_true",
                   help="configure lo of a fresh network namespace (run.sh runs the lab under unshare --net)")
    r.add_argument("--envoy", default="envoy")
    r.add_argument("--traefik", default="traefik")
    b = sub.add_parser("bench")
    b.add_argument("--sink", default=None)
    b.add_argument("--vxtap", default=None)
    b.add_argument("--min-events-pct", type=float, default=None,
                   help="exit 1 unless vxtap wrote events for at least this share of the copies")
    b.add_argument("--sink-args", default="")
    b.add_argument("--out", required=True)
    b.add_argument("--seconds", type=int, default=5)
    b.add_argument("--rounds", type=int, default=3)
    b.add_argument("--connections", type=int, default=32)
    b.add_argument("--body", type=int, default=0, help="POST bodies of this many bytes (0: GET)")
    b.add_argument("--keepalive", action="store_true", help="keep-alive HTTP/1.1 to the mirror upstreams")
    b.add_argument("--netns-setup", action="store_true")
    d = sub.add_parser("direct")
    d.add_argument("--sink", default=None)
    d.add_argument("--vxtap", default=None)
    d.add_argument("--sink-args", default="")
    d.add_argument("--out", required=True)
    d.add_argument("--seconds", type=int, default=5)
    d.add_argument("--connections", type=int, default=32)
    d.add_argument("--pin", action="store_true", help="target on CPU 0, wrk on CPU 1 (taskset)")
    d.add_argument("--netns-setup", action="store_true")
    q = sub.add_parser("nginx-body-off")
    q.add_argument("--sink", default=None)
    q.add_argument("--vxtap", default=None)
    q.add_argument("--sink-args", default="")
    q.add_argument("--out", required=True)
    q.add_argument("--netns-setup", action="store_true")
    sub.add_parser("selftest")
    a = p.parse_args()
    if a.cmd != "selftest" and not (a.sink or a.vxtap):
        p.error("give --vxtap PATH or --sink CMD")
    cmds = {"run": cmd_run, "bench": cmd_bench, "direct": cmd_direct, "nginx-body-off": cmd_nginx_body_off,
            "selftest": cmd_selftest}
    return cmds[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
