#!/usr/bin/env python3
"""Kernel forwarding against a proxy, in network namespaces (issue 18).

Builds its own namespaces (names carry this process's pid):

    client  198.18.20.2 / 2001:db8:20::2 and .10 to .16 (::10 to ::16),
            one per variant; default route via lb
      |  veth c0 -- l0
    lb      198.18.20.1 / 2001:db8:20::1 on l0; bridge br0 198.18.1.1 / 2001:db8:1::1
            and .100 / ::100 (fullnat's source); IPv4 and IPv6 forwarding on;
            the balancer under test runs here
      |  bridge br0, ports b0 b1
    a  198.18.1.11 / 2001:db8:1::11       b  198.18.1.12 / 2001:db8:1::12
       (s0 in each, default routes via lb; nginx http on port 80, iperf3 -s
       on 5201; the VIP on lo through tools/dsr-server.sh for dsr)

and measures, for each variant, new sessions per second (wrk with
`Connection: close`), keep-alive requests per second (wrk), bulk
throughput both ways (iperf3) and the CPU they cost:

    direct    no balancer: the client connects to the servers' own
              addresses, lb only routes
    nat, fullnat, dsr
              fulcrum's kernel forwarding (nftables) for the VIP
    proxy     fulcrum's proxy listening on the VIP (on lb's lo)
    haproxy   HAProxy `mode tcp` on the VIP
    nginx     nginx `stream` on the VIP

Within a round each workload measures every variant back to back, each
with its balancer started afresh (the order rotates every round); each
figure is the median over the rounds. Figures only: it never passes or
fails. bench/README.md says what each figure is; docs/performance.md has
the recorded run.

Python 3 standard library; reuses compare.py's process handling and /proc
helpers. Every process started runs in a process group of its own and is
ended through it; the namespaces (and with them every nft table, address
and sysctl made in them) are deleted at the end, also on Ctrl-C, SIGTERM
or an error. Traffic stays inside these namespaces.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import (GIB, NGINX_STREAM_MODULE, WRK_SCRIPT, BenchError, Processes, iperf3_report,  # noqa: E402
                     children_cpu_seconds, cpu_seconds, first_line, fmt, loadavg, process_family, raise_fd_limit,
                     tail, write_file)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DSR_SERVER = os.path.join(REPO, "tools", "dsr-server.sh")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Address plan, per family: only 198.18.0.0/15 and 2001:db8::/32.
ADDRESSES = {
    4: {"client": "198.18.20.2", "lb_client": "198.18.20.1", "lb_servers": "198.18.1.1",
        "a": "198.18.1.11", "b": "198.18.1.12", "vip": "198.18.10.10", "fullnat_source": "198.18.1.100",
        "host": 32},
    6: {"client": "2001:db8:20::2", "lb_client": "2001:db8:20::1", "lb_servers": "2001:db8:1::1",
        "a": "2001:db8:1::11", "b": "2001:db8:1::12", "vip": "2001:db8:10::10",
        "fullnat_source": "2001:db8:1::100", "host": 128},
}
SERVER_NAMES = ("a", "b")
HTTP_PORT, BULK_PORT = 80, 5201
CLIENT_SOURCE_BASE = 10  # the client's addresses per variant: 198.18.20.10 and up

VARIANTS = ("direct", "dnat", "nat", "fullnat", "dsr", "proxy", "haproxy", "nginx")
KERNEL_MODES = ("nat", "fullnat", "dsr")
WORKLOADS = ("close", "keepalive", "bulk", "bulk-R")
WORKLOAD_TITLES = {
    "close": "new sessions per second (wrk, Connection: close)",
    "keepalive": "keep-alive requests per second (wrk)",
    "bulk": "bulk throughput, client to server (iperf3 -P1)",
    "bulk-R": "bulk throughput, server to client (iperf3 -P1 -R)",
}

# The targets for the kernel modes.
TARGETS = [
    # (workload, figure, against, bound, higher is better, text)
    ("close", "rate", "direct", 0.9, True, "new sessions/s >= 0.9x direct"),
    ("close", "rate", "haproxy", 1.25, True, "new sessions/s >= 1.25x HAProxy"),
    ("keepalive", "rate", "haproxy", 1.7, True, "keep-alive req/s >= 1.7x HAProxy"),
    ("bulk", "rate", "direct", 0.9, True, "bulk >= 0.9x direct"),
    ("bulk-R", "rate", "direct", 0.9, True, "bulk -R >= 0.9x direct"),
    ("bulk", "balancer_cpu_per_unit", "haproxy", 0.2, False, "balancer process CPU/GiB <= 0.2x HAProxy"),
    ("bulk-R", "balancer_cpu_per_unit", "haproxy", 0.2, False, "balancer process CPU/GiB -R <= 0.2x HAProxy"),
    ("bulk", "hop_cpu_per_unit", "haproxy", 0.2, False, "bench CPU/GiB above direct <= 0.2x HAProxy's"),
    ("bulk-R", "hop_cpu_per_unit", "haproxy", 0.2, False, "bench CPU/GiB above direct -R <= 0.2x HAProxy's"),
]


# ---------------------------------------------------------------- commands

def run_command(argv, timeout=30, check=True, env=None, input=None):
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, input=input)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{' '.join(argv)}: no answer in {timeout} s")
    if check and result.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()[:300]}")
    return result


class Topology:
    """client - lb - servers a and b on lb's bridge, as tests/netns/kernel_lab.py,
    under names that carry this process's pid. Interfaces are made inside
    the namespaces: nothing touches the host's own network."""

    def __init__(self, family):
        tag = f"kb{os.getpid()}"
        self.ns = {"client": f"{tag}-client", "lb": f"{tag}-lb",
                   **{name: f"{tag}-{name}" for name in SERVER_NAMES}}
        self.family = family
        self.addr = ADDRESSES[family]
        self.created = []
        self.vip_on_lb = False
        self.dnat = False

    def exec_prefix(self, where):
        return ["ip", "netns", "exec", self.ns[where]]

    def sh(self, where, *argv, **kwargs):
        return run_command(self.exec_prefix(where) + list(argv), **kwargs)

    def create(self, tmp):
        for where in ("client", "lb", *SERVER_NAMES):
            run_command(["ip", "netns", "add", self.ns[where]])
            self.created.append(self.ns[where])
            run_command(["ip", "-n", self.ns[where], "link", "set", "lo", "up"])
        client, lb = self.ns["client"], self.ns["lb"]
        run_command(["ip", "link", "add", "c0", "netns", client, "type", "veth", "peer", "name", "l0", "netns", lb])
        run_command(["ip", "-n", lb, "link", "add", "br0", "type", "bridge"])
        self.address("client", "c0", 20, 2)
        self.address("lb", "l0", 20, 1)
        self.address("lb", "br0", 1, 1)
        for i, name in enumerate(SERVER_NAMES):
            ns = self.ns[name]
            run_command(["ip", "link", "add", "s0", "netns", ns, "type", "veth", "peer", "name", f"b{i}",
                         "netns", lb])
            run_command(["ip", "-n", lb, "link", "set", f"b{i}", "master", "br0", "up"])
            self.address(name, "s0", 1, 11 + i)
            run_command(["ip", "-n", ns, "route", "add", "default", "via", ADDRESSES[4]["lb_servers"]])
            run_command(["ip", "-n", ns, "-6", "route", "add", "default", "via", ADDRESSES[6]["lb_servers"]])
            # dsr: the VIP on lo, ARP for it silenced (state kept in our
            # temporary directory: /run is shared by every namespace).
            env = {**os.environ, "FULCRUM_DSR_STATE": os.path.join(tmp, f"dsr-{name}")}
            self.sh(name, DSR_SERVER, "apply", self.addr["vip"], env=env)
        run_command(["ip", "-n", client, "route", "add", "default", "via", ADDRESSES[4]["lb_client"]])
        run_command(["ip", "-n", client, "-6", "route", "add", "default", "via", ADDRESSES[6]["lb_client"]])
        self.sh("lb", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.sh("lb", "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        # The client reuses its ports less often (up to about 15,000 new
        # sessions a second: 75,000 in a 5 s run).
        self.sh("client", "sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65000")
        # Each variant's clients get an address of their own (client_source)
        # and fullnat its own source on br0: the servers keep TIME_WAIT
        # entries for a minute, and a new SYN on the same address and port
        # pair whose timestamp comes from another clock (another variant's
        # address pair) is refused by PAWS and retransmitted a second later.
        for i in range(len(VARIANTS)):
            run_command(["ip", "-n", client, "addr", "add", f"198.18.20.{CLIENT_SOURCE_BASE + i}/24", "dev", "c0"])
            run_command(["ip", "-n", client, "addr", "add", f"2001:db8:20::{CLIENT_SOURCE_BASE + i}/64", "dev", "c0",
                         "nodad"])
        run_command(["ip", "-n", lb, "addr", "add", f"{ADDRESSES[4]['fullnat_source']}/24", "dev", "br0"])
        run_command(["ip", "-n", lb, "addr", "add", f"{ADDRESSES[6]['fullnat_source']}/64", "dev", "br0", "nodad"])

    def client_source(self, variant):
        """The client's address for `variant`'s traffic: the source of its
        default routes from now on."""
        i = CLIENT_SOURCE_BASE + VARIANTS.index(variant)
        for family, source, gateway in ((4, f"198.18.20.{i}", ADDRESSES[4]["lb_client"]),
                                        (6, f"2001:db8:20::{i}", ADDRESSES[6]["lb_client"])):
            run_command(["ip", "-n", self.ns["client"], f"-{family}", "route", "replace", "default", "via", gateway,
                         "src", source])
        return f"198.18.20.{i}" if self.family == 4 else f"2001:db8:20::{i}"

    def address(self, where, dev, subnet, host):
        ns = self.ns[where]
        run_command(["ip", "-n", ns, "addr", "add", f"198.18.{subnet}.{host}/24", "dev", dev])
        run_command(["ip", "-n", ns, "addr", "add", f"2001:db8:{subnet}::{host}/64", "dev", dev, "nodad"])
        run_command(["ip", "-n", ns, "link", "set", dev, "up"])

    def vip_on_lb_lo(self, present):
        """The proxies listen on the VIP: an address of lb's lo while they run."""
        if present == self.vip_on_lb:
            return
        action = "add" if present else "del"
        run_command(["ip", "-n", self.ns["lb"], "addr", action, f"{self.addr['vip']}/{self.addr['host']}", "dev",
                     "lo"])
        self.vip_on_lb = present

    def dnat_table(self, present):
        """The dnat variant's hand-written table in lb, while it runs."""
        if present == self.dnat:
            return
        if present:
            self.sh("lb", "nft", "-f", "-", input=dnat_ruleset(self.addr, self.family))
        else:
            self.sh("lb", "nft", "delete", "table", "ip" if self.family == 4 else "ip6", "kbdnat")
        self.dnat = present

    def flush_conntrack(self):
        """Each variant starts without the flows of the one before."""
        if shutil.which("conntrack"):
            self.sh("lb", "conntrack", "-F", check=False)

    def delete(self):
        """Every nft table in our namespaces, then the namespaces (which
        takes their interfaces, addresses, sysctls and conntrack with them)."""
        for ns in self.created:
            subprocess.run(["ip", "netns", "exec", ns, "nft", "flush", "ruleset"], capture_output=True, timeout=30)
        while self.created:
            ns = self.created.pop()
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=30)


def watch_main():
    """--watch: holds a /proc/PID/net view of its namespace for the
    counters below; ends within a second of the script's end."""
    parent = os.getppid()
    deadline = time.monotonic() + 24 * 3600
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(0.5)


def start_watchers(processes, topology, tmp):
    """A process in each namespace, through whose /proc/PID/net the script
    reads the namespace's TCP counters (and lb's conntrack statistics)."""
    watchers = {}
    for where in ("client", "lb", *SERVER_NAMES):
        watchers[where] = processes.start(topology.exec_prefix(where) + [sys.executable, os.path.abspath(__file__),
                                                                         "--watch"],
                                          os.path.join(tmp, f"watch-{where}.log"))
    return watchers


# Counters of the namespaces that say why a rate fell: SYNs retransmitted
# (a dropped SYN waits 1 s), listen queue overflows, conntrack drops.
TCP_COUNTERS = {"Tcp": ("ActiveOpens", "PassiveOpens", "AttemptFails", "EstabResets", "RetransSegs", "OutRsts"),
                "TcpExt": ("TCPSynRetrans", "ListenOverflows", "ListenDrops", "TCPTimeWaitOverflow")}


def tcp_counters(pid):
    values = {}
    for name in ("snmp", "netstat"):
        try:
            with open(f"/proc/{pid}/net/{name}") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for head, row in zip(lines[0::2], lines[1::2]):
            group = head.split(":", 1)[0]
            for key, value in zip(head.split()[1:], row.split()[1:]):
                if key in TCP_COUNTERS.get(group, ()):
                    values[key] = int(value)
    return values


def namespace_counters(watchers):
    counters = {}
    for where, process in watchers.items():
        for key, value in tcp_counters(process.pid).items():
            counters[f"{where}_{key}"] = value
    try:
        with open(f"/proc/{watchers['lb'].pid}/net/stat/nf_conntrack") as f:
            rows = [line.split() for line in f.read().splitlines()]
        head = rows[0]
        for key in ("drop", "early_drop", "insert_failed", "invalid", "clash_resolve"):
            if key in head:
                i = head.index(key)
                counters[f"conntrack_{key}"] = sum(int(r[i], 16) for r in rows[1:])
    except (OSError, ValueError, IndexError):
        pass
    return counters


def target(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ---------------------------------------------------------------- servers

SERVER_NGINX_CONF = """\
# A real server of bench/kernel_compare.py, in namespace {ns}.
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    sendfile on;
    client_body_temp_path {dir}/temp/body;
    proxy_temp_path {dir}/temp/proxy;
    fastcgi_temp_path {dir}/temp/fastcgi;
    uwsgi_temp_path {dir}/temp/uwsgi;
    scgi_temp_path {dir}/temp/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {{
        listen {port};
        listen [::]:{port};
        root {dir}/www;
        default_type text/plain;
    }}
}}
"""


def start_servers(processes, topology, tmp):
    """nginx (http, a small file naming the server) and iperf3 -s in each
    server namespace; returns {name: {"nginx": Popen, "iperf3": Popen}}."""
    servers = {}
    for name in SERVER_NAMES:
        d = os.path.join(tmp, f"server-{name}")
        os.makedirs(os.path.join(d, "www"))
        os.makedirs(os.path.join(d, "temp"))
        write_file(os.path.join(d, "www", "index.html"), f"fulcrum kernel bench: server {name}\n")
        conf = os.path.join(d, "nginx.conf")
        write_file(conf, SERVER_NGINX_CONF.format(ns=topology.ns[name], dir=d, port=HTTP_PORT))
        for path in (d, os.path.join(d, "www"), os.path.join(d, "www", "index.html")):
            os.chmod(path, 0o755)  # nginx's workers run as nobody
        nginx = processes.start(topology.exec_prefix(name) + ["nginx", "-p", d, "-e", os.path.join(d, "error.log"),
                                                               "-c", conf, "-g", "daemon off;"],
                                os.path.join(d, "nginx.out"))
        iperf = processes.start(topology.exec_prefix(name) + ["iperf3", "-s", "-p", str(BULK_PORT)],
                                os.path.join(d, "iperf3.log"))
        servers[name] = {"nginx": nginx, "iperf3": iperf}
    for name, procs in servers.items():
        wait_listening(procs["nginx"], {HTTP_PORT}, os.path.join(tmp, f"server-{name}", "error.log"))
        wait_listening(procs["iperf3"], {BULK_PORT}, os.path.join(tmp, f"server-{name}", "iperf3.log"))
    return servers


def listening_ports_of(pid):
    """Ports in LISTEN state in the network namespace of process `pid`."""
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A":
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


def wait_listening(process, ports, log_path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"exited with status {process.returncode}:\n{tail(log_path)}")
        if ports <= listening_ports_of(process.pid):
            return
        time.sleep(0.02)
    raise BenchError(f"not listening on {sorted(ports)} after {timeout:.0f}s:\n{tail(log_path)}")


# ---------------------------------------------------------------- balancers

def fulcrum_config(mode, addr):
    vip, a, b = addr["vip"], addr["a"], addr["b"]

    def service(name, port, servers):
        lines = [f"  - name: {name}", f"    listen: \"{target(vip, port)}\"", "    scheduler: rr"]
        if mode != "proxy":
            lines.append(f"    forwarding: {mode}")
        if mode == "dsr":
            lines.append("    dsr: {ingress: l0, egress: br0}")
        if mode == "fullnat":
            lines.append(f"    source: \"{addr['fullnat_source']}\"")
        lines.append("    servers:")
        lines += [f"      - {{name: {n}, address: \"{target(addr[n], port)}\"}}" for n in servers]
        return lines
    lines = [
        "# Written by bench/kernel_compare.py.",
        "global:",
        "  workers: 1",
        "  max_connections: 100000",
        "  shutdown_timeout: 1s",
        "  log_level: warn",
        "  access_log: false",
        "defaults:",
        "  timeouts:",
        "    connect: 3s",
        "    idle: 10m",
        "services:",
    ]
    lines += service("http", HTTP_PORT, SERVER_NAMES)
    # iperf3's control and data connections must meet the same server.
    lines += service("bulk", BULK_PORT, ["a"])
    return "\n".join(lines) + "\n"


def dnat_ruleset(addr, family):
    """The least NAT the kernel can do for this topology, written by hand:
    conntrack and one dnat rule (round robin for HTTP, the bulk port to
    server a), no counters, no marks. fulcrum's nat against it is what
    fulcrum's own rules add; it against direct is the kernel's NAT itself."""
    table = "ip" if family == 4 else "ip6"
    daddr = "ip daddr" if family == 4 else "ip6 daddr"
    return f"""table {table} kbdnat {{
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    {daddr} {addr['vip']} tcp dport {HTTP_PORT} dnat to numgen inc mod 2 map {{ 0 : {addr['a']}, 1 : {addr['b']} }}
    {daddr} {addr['vip']} tcp dport {BULK_PORT} dnat to {addr['a']}
  }}
}}
"""


def haproxy_config(addr, splice):
    splice_lines = {"forced": "    option splice-request\n    option splice-response\n",
                    "auto": "    option splice-auto\n", "off": ""}[splice]
    vip = addr["vip"]
    bind = (lambda port: f"ipv6@{vip}:{port}") if ":" in vip else (lambda port: f"{vip}:{port}")
    return (
        "# Written by bench/kernel_compare.py.\n"
        "global\n"
        "    nbthread 1\n"
        "    maxconn 5000\n"
        "defaults\n"
        "    mode tcp\n"
        "    timeout connect 3s\n"
        "    timeout client 10m\n"
        "    timeout server 10m\n"
        f"{splice_lines}"
        "listen http\n"
        f"    bind {bind(HTTP_PORT)}\n"
        "    balance roundrobin\n"
        + "".join(f"    server {n} {target(addr[n], HTTP_PORT)}\n" for n in SERVER_NAMES)
        + "listen bulk\n"
        f"    bind {bind(BULK_PORT)}\n"
        f"    server a {target(addr['a'], BULK_PORT)}\n")


def nginx_config(addr, tmp):
    vip = target(addr["vip"], 0).rsplit(":", 1)[0]
    return (
        "# Written by bench/kernel_compare.py.\n"
        f"load_module {NGINX_STREAM_MODULE};\n"
        "worker_processes 1;\n"
        "worker_rlimit_nofile 16384;\n"
        f"pid {tmp}/lb-nginx.pid;\n"
        f"error_log {tmp}/lb-nginx-error.log warn;\n"
        "events { worker_connections 8192; }\n"
        "stream {\n"
        "    upstream http {\n"
        + "".join(f"        server {target(addr[n], HTTP_PORT)};\n" for n in SERVER_NAMES)
        + "    }\n"
        f"    server {{ listen {vip}:{HTTP_PORT}; proxy_pass http; proxy_connect_timeout 3s; proxy_timeout 10m; }}\n"
        f"    upstream bulk {{ server {target(addr['a'], BULK_PORT)}; }}\n"
        f"    server {{ listen {vip}:{BULK_PORT}; proxy_pass bulk; proxy_connect_timeout 3s; proxy_timeout 10m; }}\n"
        "}\n")


def start_balancer(processes, topology, variant, args):
    """Starts the variant's balancer in lb (nothing for direct); returns its
    Popen or None. Its path is then proved by the probe."""
    tmp = args.tmp
    log_path = os.path.join(tmp, f"lb-{variant}.log")
    topology.vip_on_lb_lo(variant in ("proxy", "haproxy", "nginx"))
    topology.client_source(variant)
    topology.dnat_table(variant == "dnat")
    topology.flush_conntrack()
    if variant in ("direct", "dnat"):
        return None
    if variant in KERNEL_MODES + ("proxy",):
        path = os.path.join(tmp, f"lb-{variant}.yaml")
        write_file(path, fulcrum_config(variant, topology.addr))
        argv = [args.fulcrum, "-c", path]
    elif variant == "haproxy":
        path = os.path.join(tmp, "lb-haproxy.cfg")
        write_file(path, haproxy_config(topology.addr, args.haproxy_splice))
        argv = ["haproxy", "-f", path, "-db"]
    else:
        path = os.path.join(tmp, "lb-nginx.conf")
        write_file(path, nginx_config(topology.addr, tmp))
        argv = ["nginx", "-p", tmp, "-e", os.path.join(tmp, "lb-nginx-error.log"), "-c", path, "-g", "daemon off;"]
    process = processes.start(topology.exec_prefix("lb") + argv, log_path)
    try:
        if variant not in KERNEL_MODES:
            wait_listening(process, {HTTP_PORT, BULK_PORT}, log_path)
        else:
            time.sleep(0.2)
            if process.poll() is not None:
                raise BenchError(f"fulcrum exited with status {process.returncode}:\n{tail(log_path)}")
    except BaseException:
        processes.stop(process)
        raise
    return process


def http_targets(topology, variant):
    if variant == "direct":
        return [target(topology.addr[n], HTTP_PORT) for n in SERVER_NAMES]
    return [target(topology.addr["vip"], HTTP_PORT)]


def probe(topology, variant, log_path):
    """4 requests from the client namespace (round robin over the targets):
    both servers must answer, so the path relays both ways and balances."""
    targets = http_targets(topology, variant)
    result = topology.sh("client", sys.executable, os.path.abspath(__file__), "--probe", ",".join(targets),
                         check=False, timeout=30)
    seen = result.stdout.strip().split(",") if result.returncode == 0 else []
    if sorted(set(seen)) != list(SERVER_NAMES):
        raise BenchError(f"{variant}: probe through {','.join(targets)} reached {seen or 'nothing'} "
                         f"({result.stderr.strip()[-200:]})\n{tail(log_path) if log_path else ''}")


def probe_main(spec, count=4, timeout=10.0):
    """--probe HOST:PORT,...: run in the client's namespace; prints the
    servers that answered, comma-separated. Bounded by `timeout`."""
    targets = spec.split(",")
    deadline = time.monotonic() + timeout
    seen, last_error, i = [], None, 0
    while len(seen) < count and time.monotonic() < deadline:
        host, port = targets[i % len(targets)].rsplit(":", 1)
        host = host.strip("[]")
        try:
            with socket.create_connection((host, int(port)), timeout=2.0) as s:
                s.sendall(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
                reply = b""
                while len(reply) < 65536 and (chunk := s.recv(4096)):
                    reply += chunk
            if reply.startswith(b"HTTP/1.1 200") and b"server " in reply:
                seen.append(reply.rsplit(b"server ", 1)[1].strip().decode())
                i += 1
                continue
            last_error = f"unexpected reply {reply[:60]!r}"
        except OSError as error:
            last_error = str(error)
        time.sleep(0.1)
    print(",".join(seen))
    if len(seen) < count:
        print(f"probe: {len(seen)} of {count} answers; last error: {last_error}", file=sys.stderr)
        sys.exit(1)


# ---------------------------------------------------------------- clients

# wrk: each thread connects to the next of $KB_TARGETS (host:port, comma
# separated) when set, so `direct` spreads its connections over both
# servers as the balancers do; then compare.py's done() hook.
WRK_TARGETS = """\
local targets = {}
for t in string.gmatch(os.getenv("KB_TARGETS") or "", "[^,]+") do table.insert(targets, t) end
local started = 0
setup = function(thread)
  if #targets > 0 then
    local t = targets[started % #targets + 1]
    started = started + 1
    local host, port = t:match("^%[?([^%]]*)%]?:(%d+)$")
    thread.addr = wrk.lookup(host, port)[1]
  end
end
"""


def run_wrk(topology, variant, close, args):
    targets = http_targets(topology, variant)
    argv = topology.exec_prefix("client") + [
        "wrk", "-t", str(args.wrk_threads), "-c", str(args.connections), "-d", f"{args.duration}s",
        "--timeout", "5s", "--latency", "-s", args.wrk_script]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(f"http://{targets[0]}/")
    env = {**os.environ, "KB_TARGETS": ",".join(targets) if len(targets) > 1 else ""}
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=args.duration + 30, env=env)
    except subprocess.TimeoutExpired:
        raise BenchError("wrk did not finish in time")
    line = next((l for l in result.stdout.splitlines() if l.startswith("WRK_JSON ")), None)
    if line is None:
        raise BenchError(f"wrk: no report (status {result.returncode}): {(result.stderr or result.stdout)[-300:]}")
    figures = json.loads(line[len("WRK_JSON "):])
    errors = sum(figures[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    if figures["requests"] == 0:
        raise BenchError(f"wrk: no request completed ({errors:.0f} errors)")
    return {"rate": figures["requests"] / (figures["duration_us"] / 1e6), "units": int(figures["requests"]),
            "errors": int(errors), "p50_ms": figures["p50_us"] / 1000, "p99_ms": figures["p99_us"] / 1000}


def run_iperf3(topology, variant, reverse, args):
    host = topology.addr["a"] if variant == "direct" else topology.addr["vip"]
    argv = topology.exec_prefix("client") + ["iperf3", "-c", host, "-p", str(BULK_PORT), "-t", str(args.duration),
                                             "-P", "1", "-J", "--connect-timeout", "3000"]
    if reverse:
        argv.append("-R")
    report = iperf3_report(argv, args.duration)
    received = report["end"]["sum_received"]
    nbytes = int(received["bytes"])
    return {"rate": received["bits_per_second"] / 1e9, "units": nbytes / GIB, "bytes": nbytes,
            "retransmits": report["end"].get("sum_sent", {}).get("retransmits")}


# ---------------------------------------------------------------- CPU

def proc_stat():
    """Whole machine, seconds: busy (everything but idle, iowait and
    steal), of which softirq and of which niced processes' user time (what
    builds at nice 19 use: none of the benchmark's processes is niced),
    and steal (the hypervisor's other guests)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    steal = fields[7] if len(fields) > 7 else 0
    busy = sum(fields[:8]) - fields[3] - fields[4] - steal
    return busy / CLOCK_TICKS, fields[6] / CLOCK_TICKS, fields[1] / CLOCK_TICKS, steal / CLOCK_TICKS


def run_seconds(pids):
    """CPU time of the processes, all their threads, from the scheduler's
    nanosecond counts (/proc/PID/task/TID/schedstat); threads that ended
    between two readings are lost, and none of these end while measured."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total / 1e9


def ticks_seconds(pids):
    try:
        return cpu_seconds(pids)
    except OSError:
        return 0.0


def ksoftirqd_pids():
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().startswith("ksoftirqd/"):
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


class CpuMeter:
    def __init__(self, balancer, servers, watchers):
        self.watchers = watchers
        self.ksoftirqd_pids = ksoftirqd_pids()
        self.balancer_pids = process_family(balancer.pid) if balancer else []
        self.server_pids = [p for procs in servers.values() for proc in procs.values()
                            for p in process_family(proc.pid)]
        self.before = self.read()

    def read(self):
        busy, softirq, nice, steal = proc_stat()
        return {"machine_busy_s": busy, "machine_softirq_s": softirq, "machine_nice_s": nice, "machine_steal_s": steal,
                "balancer_cpu_s": run_seconds(self.balancer_pids), "server_cpu_s": run_seconds(self.server_pids),
                # utime + stime in clock ticks, as compare.py reads them; the
                # schedstat figure above is the same time in nanoseconds
                "balancer_ticks_cpu_s": ticks_seconds(self.balancer_pids),
                "client_cpu_s": children_cpu_seconds(), "ksoftirqd_cpu_s": run_seconds(self.ksoftirqd_pids),
                "wall_s": time.monotonic(),
                **{f"count_{k}": v for k, v in namespace_counters(self.watchers).items()}}

    def used(self):
        after = self.read()
        return {k: after[k] - self.before[k] for k in after if k in self.before}


def measure(workload, variant, balancer, topology, servers, watchers, args):
    meter = CpuMeter(balancer, servers, watchers)
    if workload in ("close", "keepalive"):
        figures = run_wrk(topology, variant, workload == "close", args)
    else:
        figures = run_iperf3(topology, variant, workload == "bulk-R", args)
    figures.update(meter.used())
    # What this benchmark's own processes used, and the softirq threads:
    # with tick-based accounting (this kernel) a softirq is charged to the
    # task it interrupted, and the veth path runs the receiver's work in
    # the sender's context, so nearly all of the forwarding lands here,
    # while other work on a shared machine does not.
    figures["bench_cpu_s"] = sum(figures[k] for k in ("balancer_cpu_s", "server_cpu_s", "client_cpu_s",
                                                      "ksoftirqd_cpu_s"))
    if balancer is None:
        figures["balancer_cpu_s"] = figures["balancer_ticks_cpu_s"] = None
    return figures


def per_unit(figures, workload):
    """CPU per unit of work: seconds per GiB for bulk, per 1000 sessions
    for close, microseconds per request for keep-alive."""
    scale = {"close": 1000.0, "keepalive": 1e6}.get(workload, 1.0)
    out = {}
    for party in ("machine_busy", "machine_softirq", "machine_nice", "bench_cpu", "balancer_cpu", "client_cpu", "server_cpu",
                  "ksoftirqd_cpu"):
        used = figures.get(f"{party}_s")
        out[party] = None if used is None else used / figures["units"] * scale
    out["busy_cpus"] = figures["machine_busy_s"] / figures["wall_s"]
    return out


UNIT = {"close": ("sessions/s", "CPU s per 1000 sessions"), "keepalive": ("req/s", "CPU us per request"),
        "bulk": ("Gbit/s", "CPU s per GiB"), "bulk-R": ("Gbit/s", "CPU s per GiB")}


# ---------------------------------------------------------------- summary

def summarize(samples):
    """Per (workload, variant): medians over the rounds of the rate, the
    latencies, the CPU per unit of every party, and the spread of the rate."""
    groups = {}
    for s in samples:
        if s["ok"]:
            groups.setdefault((s["workload"], s["variant"]), []).append(s["figures"])
    summary = {}
    for (workload, variant), runs in groups.items():
        entry = {"n": len(runs)}
        rates = [r["rate"] for r in runs]
        entry["rate"] = statistics.median(rates)
        entry["rate_spread_pct"] = (max(rates) - min(rates)) / 2 / entry["rate"] * 100 if entry["rate"] else 0
        entry["rates"] = rates
        for key in ("p50_ms", "p99_ms", "errors"):
            if key in runs[0]:
                entry[key] = statistics.median(r[key] for r in runs)
        troubles = [trouble_counts(r) for r in runs]
        entry["trouble"] = {k: sum(t.get(k, 0) for t in troubles) for k in sorted({k for t in troubles for k in t})}
        units = [per_unit(r, workload) for r in runs]
        for party in units[0]:
            values = [u[party] for u in units if u[party] is not None]
            entry[party] = statistics.median(values) if values else None
        summary[(workload, variant)] = entry
    # The hop's cost: the benchmark's CPU per unit above direct's (the
    # machine's too, for a quiet machine, where the two agree).
    for (workload, variant), entry in summary.items():
        direct = summary.get((workload, "direct"))
        entry["hop_cpu_per_unit"] = (entry["bench_cpu"] - direct["bench_cpu"]) if direct else None
        entry["machine_hop_cpu_per_unit"] = (entry["machine_busy"] - direct["machine_busy"]) if direct else None
        entry["balancer_cpu_per_unit"] = entry["balancer_cpu"]
    return summary


def round_ratios(samples, workload, variant, against, key):
    """The ratio variant/against of `key` within each round (the two
    measured within a minute of each other): median, min, max."""
    by_round = {}
    for s in samples:
        if s["ok"] and s["workload"] == workload and s["variant"] in (variant, against):
            f = s["figures"]
            value = f["rate"] if key == "rate" else per_unit(f, workload).get(key.replace("_per_unit", ""))
            by_round.setdefault(s["round"], {})[s["variant"]] = value
    ratios = [r[variant] / r[against] for r in by_round.values()
              if r.get(variant) is not None and r.get(against)]
    if not ratios:
        return None
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "n": len(ratios)}


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def evaluate_targets(summary, samples, variants):
    """Each target for each kernel mode: the ratio of the medians, with
    `meets` or `misses`, and beside it the median (min-max) of the
    per-round ratios, which a slow drift of the machine's load moves less."""
    results = []
    for variant in (v for v in variants if v in KERNEL_MODES):
        for workload, key, against, bound, higher, text in TARGETS:
            own, peer = summary.get((workload, variant)), summary.get((workload, against))
            value = ratio(own.get(key) if own else None, peer.get(key) if peer else None)
            if value is None:
                verdict = "not measured"
            else:
                verdict = "meets" if (value >= bound if higher else value <= bound) else "misses"
            per_round = round_ratios(samples, workload, variant, against, key) \
                if key in ("rate", "balancer_cpu_per_unit") else None
            results.append({"variant": variant, "workload": workload, "figure": key, "against": against,
                            "bound": bound, "target": text, "ratio": value, "verdict": verdict,
                            "per_round": per_round})
    return results


def report_text(meta, summary, variants, targets, samples, args):
    out = ["fulcrum kernel forwarding vs proxies, in network namespaces (bench/kernel_compare.py)"]
    out.append(f"machine: {meta['machine']['nproc']} CPUs ({meta['machine']['cpu_model']}), kernel "
               f"{meta['machine']['kernel']}; load average at start {meta['loadavg_start']}, at end "
               f"{meta.get('loadavg_end', '-')}")
    loads = sorted(float(s["loadavg"].split()[0]) for s in samples)
    if loads:
        out.append(f"1-minute load average before each measurement: {loads[0]:.1f} to {loads[-1]:.1f}, "
                   f"median {statistics.median(loads):.1f}")
    steal = [s["figures"]["machine_steal_s"] / s["figures"]["wall_s"] for s in samples if s["ok"]]
    if steal:
        out.append(f"CPU stolen by the hypervisor during the measurements: median {statistics.median(steal):.2f} "
                   f"CPUs, at most {max(steal):.2f}")
    niced = [s["figures"]["machine_nice_s"] / s["figures"]["wall_s"] for s in samples if s["ok"]]
    if niced:
        out.append(f"CPU taken by niced processes (other work, such as builds at nice 19: the benchmark's own run at "
                   f"nice 0) during the measurements: median {statistics.median(niced):.2f} CPUs, "
                   f"{min(niced):.2f} to {max(niced):.2f}")
    if "interrupted" in meta:
        out.append(f"INTERRUPTED {meta['interrupted']}")
    out.append("versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    out.append(f"fulcrum: {meta['fulcrum']['binary']} (sha256 {meta['fulcrum']['sha256'][:12]}), "
               f"HAProxy splice {args['haproxy_splice']}")
    out.append(f"IPv{args['family']}; {args['rounds']} rounds x {args['duration']} s; wrk -t{args['wrk_threads']} "
               f"-c{args['connections']}; figures are medians over the rounds (rate ±half its min-max spread)")
    out.append("CPU per unit of work: 'machine' = all busy CPU of the machine (/proc/stat); 'bench' = the "
               "benchmark's processes (client, servers, balancer) and ksoftirqd; 'above direct' = bench minus "
               "direct's; 'balancer' = the balancer's processes (schedstat). The kernel modes' forwarding runs "
               "in softirq: it is in 'machine' and 'bench', not in 'balancer'")
    has_haproxy = "haproxy" in variants
    for workload in args["workloads"]:
        rows = [v for v in variants if (workload, v) in summary]
        if not rows:
            continue
        rate_unit, cpu_unit = UNIT[workload]
        out.append("")
        out.append(f"{WORKLOAD_TITLES[workload]}; CPU in {cpu_unit}")
        head = f"  {'variant':<9}{rate_unit:>18}{'x direct':>10}{'x haproxy':>10}"
        if workload == "keepalive":
            head += f"{'p50 ms':>8}{'p99 ms':>8}"
        head += f"{'machine':>9}{'bench':>8}{'above direct':>14}{'x haproxy':>10}{'balancer':>10}" \
                f"{'x haproxy':>10}{'CPUs busy':>10}"
        out.append(head)
        direct = summary.get((workload, "direct"), {})
        haproxy = summary.get((workload, "haproxy"), {}) if has_haproxy else {}
        for v in rows:
            e = summary[(workload, v)]
            rate = f"{fmt(e['rate'])} ±{e['rate_spread_pct']:.0f}%" if e["n"] > 1 else fmt(e["rate"])
            line = f"  {v:<9}{rate:>18}{rx(ratio(e['rate'], direct.get('rate'))):>10}" \
                   f"{rx(ratio(e['rate'], haproxy.get('rate'))):>10}"
            if workload == "keepalive":
                line += f"{fmt(e.get('p50_ms')):>8}{fmt(e.get('p99_ms')):>8}"
            hop = fmt(e["hop_cpu_per_unit"]) if v != "direct" else ""
            hop_ratio = rx(ratio(e["hop_cpu_per_unit"], haproxy.get("hop_cpu_per_unit"))) if v != "direct" else ""
            own = fmt(e["balancer_cpu"]) if e["balancer_cpu"] is not None else ""
            line += f"{fmt(e['machine_busy']):>9}{fmt(e['bench_cpu']):>8}{hop:>14}{hop_ratio:>10}{own:>10}" \
                    f"{rx(ratio(e['balancer_cpu'], haproxy.get('balancer_cpu'))):>10}{e['busy_cpus']:>10.2f}"
            out.append(line)
        errors = {v: summary[(workload, v)].get("errors") for v in rows if summary[(workload, v)].get("errors")}
        if errors:
            out.append("  wrk errors (median per run): " + ", ".join(f"{v} {n:.0f}" for v, n in errors.items()))
        for v in rows:
            trouble = summary[(workload, v)].get("trouble")
            if trouble:
                out.append(f"  {v}, in all {summary[(workload, v)]['n']} runs together: "
                           + ", ".join(f"{k} {n:.0f}" for k, n in trouble.items()))
    if targets:
        out.append("")
        out.append("issue 18's targets (ratio of medians)")
        for t in targets:
            shown = f"{t['ratio']:.3f}x" if t["ratio"] is not None else "-"
            r = t.get("per_round")
            rounds = f"per round {r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f})" if r else ""
            out.append(f"  {t['variant']:<8} {t['target']:<52} {shown:>8}  {t['verdict']:<12} {rounds}")
        out.append(f"  {sum(t['verdict'] == 'meets' for t in targets)} of {len(targets)} met")
    failures = [s for s in samples if not s["ok"]]
    if failures:
        out.append("")
        out.append(f"{len(failures)} measurements failed:")
        for f in failures:
            out.append(f"  round {f['round']} {f['workload']} {f['variant']}: {f['error'].splitlines()[0]}")
    return "\n".join(out) + "\n"


def rx(value):
    return "-" if value is None else f"{value:.2f}x"


# ---------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(description="fulcrum's kernel forwarding against proxies, in network namespaces "
                                            "(issue 18)")
    p.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk or iperf3 run (default 5)")
    p.add_argument("--quick", action="store_true", help="smoke check: 1 round of 1 s")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma separated, of {', '.join(VARIANTS)}")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma separated, of {', '.join(WORKLOADS)}")
    p.add_argument("--family", type=int, choices=(4, 6), default=4, help="address family of the traffic (4)")
    p.add_argument("--fulcrum", default=os.path.join(REPO, "build-bench", "fulcrum"),
                   help="the fulcrum binary (default build-bench/fulcrum)")
    p.add_argument("--haproxy-splice", choices=("forced", "auto", "off"), default="forced",
                   help="HAProxy's splice options (default forced: its lowest CPU per GiB in compare.py)")
    p.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    p.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (default 2; direct gives each thread "
                                                             "one server in turn)")
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results"), help="where results are written")
    p.add_argument("--keep-temp", action="store_true", help="keep the temporary directory (configs, logs)")
    p.add_argument("--report", metavar="JSON", help="print the report of a saved run again")
    p.add_argument("--probe", help=argparse.SUPPRESS)
    p.add_argument("--watch", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 1
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for v in args.variants:
        if v not in VARIANTS:
            p.error(f"unknown variant {v!r}: one of {', '.join(VARIANTS)}")
    for w in args.workloads:
        if w not in WORKLOADS:
            p.error(f"unknown workload {w!r}: one of {', '.join(WORKLOADS)}")
    if not 1 <= args.rounds <= 20 or not 1 <= args.duration <= 60:
        p.error("rounds 1..20, duration 1..60 s")
    if not 1 <= args.connections <= 10000 or not 1 <= args.wrk_threads <= args.connections:
        p.error("connections 1..10000, wrk threads 1..connections")
    return args


def check_tools(args):
    if os.geteuid() != 0:
        sys.exit("network namespaces and nftables need root")
    needed = {"ip", "nft", "nginx", "iperf3", "wrk"}
    if "haproxy" in args.variants:
        needed.add("haproxy")
    missing = [t for t in sorted(needed) if not shutil.which(t)]
    if missing:
        sys.exit(f"missing: {', '.join(missing)} (bench/README.md, kernel_compare.py: the packages)")
    if "nginx" in args.variants and not os.path.exists(NGINX_STREAM_MODULE):
        sys.exit(f"missing {NGINX_STREAM_MODULE} (package libnginx-mod-stream)")
    if any(v in KERNEL_MODES + ("proxy",) for v in args.variants) and not os.access(args.fulcrum, os.X_OK):
        sys.exit(f"fulcrum binary {args.fulcrum!r} not found (build it: bench/README.md)")


def describe(args):
    import hashlib
    cpu_model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    fulcrum = {"binary": os.path.abspath(args.fulcrum), "sha256": "-", "version": "-"}
    if os.path.exists(args.fulcrum):
        with open(args.fulcrum, "rb") as f:
            fulcrum["sha256"] = hashlib.sha256(f.read()).hexdigest()
        fulcrum["version"] = first_line([args.fulcrum, "--version"])
    return {
        "machine": {"nproc": os.cpu_count(), "cpu_model": cpu_model, "kernel": os.uname().release},
        "versions": {
            "haproxy": first_line(["haproxy", "-v"]).replace("HAProxy version ", "").split(" ")[0],
            "nginx": first_line(["nginx", "-v"]).replace("nginx version: nginx/", ""),
            "iperf3": first_line(["iperf3", "--version"]).replace("iperf ", "").split(" ")[0],
            "wrk": first_line(["wrk", "-v"]).replace("wrk ", "").split(" ")[0],
            "nft": first_line(["nft", "--version"]),
            "python": sys.version.split()[0],
        },
        "fulcrum": fulcrum,
        "source_commit": subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"], capture_output=True,
                                        text=True).stdout.strip(),
    }


def plan(args):
    """(round, workload, variant) in order: within a round each workload
    measures every variant back to back (so that the figures a ratio
    compares are taken within a minute of each other), the order of the
    variants rotating from round to round."""
    steps = []
    for r in range(args.rounds):
        shift = r % len(args.variants)
        for workload in args.workloads:
            for variant in args.variants[shift:] + args.variants[:shift]:
                steps.append((r + 1, workload, variant))
    return steps


def run(args):
    raise_fd_limit()
    check_tools(args)
    meta = describe(args)
    meta["started"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    meta["loadavg_start"] = loadavg()
    meta["command"] = " ".join([os.path.relpath(os.path.abspath(__file__), REPO)] + sys.argv[1:])
    meta["args"] = {k: v for k, v in vars(args).items() if k not in ("probe", "report", "watch")}
    processes = Processes()
    topology = Topology(args.family)
    samples = []
    args.tmp = tempfile.mkdtemp(prefix="fulcrum-kbench-")
    os.chmod(args.tmp, 0o755)  # nginx's workers (nobody) read the servers' files below it
    started = time.monotonic()
    try:
        args.wrk_script = os.path.join(args.tmp, "report.lua")
        write_file(args.wrk_script, WRK_TARGETS + WRK_SCRIPT)
        topology.create(args.tmp)
        servers = start_servers(processes, topology, args.tmp)
        watchers = start_watchers(processes, topology, args.tmp)
        steps = plan(args)
        print(f"{len(steps)} measurements in namespaces {', '.join(topology.created)}; temporary files in "
              f"{args.tmp}", file=sys.stderr)
        for index, (round_number, workload, variant) in enumerate(steps, 1):
            sample = {"round": round_number, "variant": variant, "workload": workload, "at": time.time(),
                      "loadavg": loadavg()}
            balancer = None
            try:
                balancer = start_balancer(processes, topology, variant, args)
                probe(topology, variant, os.path.join(args.tmp, f"lb-{variant}.log"))
                sample["figures"] = measure(workload, variant, balancer, topology, servers, watchers, args)
                sample["ok"] = True
                if balancer is not None and balancer.poll() is not None:
                    raise BenchError(f"{variant} exited during the run ({balancer.returncode})")
            except (BenchError, OSError, ValueError, KeyError) as error:
                # One failed measurement is recorded; the run goes on.
                sample.update(ok=False, error=str(error), figures={})
            finally:
                if balancer is not None:
                    processes.stop(balancer)
            samples.append(sample)
            print(progress_line(index, len(steps), sample), file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        meta["interrupted"] = f"after {len(samples)} measurements"
        print("interrupted: reporting the measurements made", file=sys.stderr)
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        processes.stop_all()
        topology.delete()
        if not args.keep_temp:
            shutil.rmtree(args.tmp, ignore_errors=True)
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    meta["seconds"] = round(time.monotonic() - started, 1)
    meta["loadavg_end"] = loadavg()
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, time.strftime("kernel-compare-%Y%m%d-%H%M%S"))
    write_results(base, meta, samples)
    if "interrupted" in meta:
        sys.exit(130)


def write_results(base, meta, samples):
    args = meta["args"]
    summary = summarize(samples)
    targets = evaluate_targets(summary, samples, args["variants"])
    text = report_text(meta, summary, args["variants"], targets, samples, args)
    text += f"took {meta.get('seconds', '-')} s\n"
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "samples": samples,
                   "summary": [{"workload": w, "variant": v, **e} for (w, v), e in summary.items()],
                   "targets": targets}, f, indent=1)
    write_file(base + ".txt", text)
    print(text)
    print(f"written: {base}.json, {base}.txt")


def trouble_counts(figures):
    """The counters that explain a stalled run, where not zero: SYNs the
    client retransmitted, servers' listen queue overflows, conntrack drops."""
    keys = {"SYNs retransmitted": ["count_client_TCPSynRetrans"],
            "listen overflows": [f"count_{n}_ListenOverflows" for n in SERVER_NAMES],
            "conntrack drops": ["count_conntrack_drop", "count_conntrack_early_drop", "count_conntrack_insert_failed"]}
    out = {}
    for label, names in keys.items():
        value = sum(figures.get(n, 0) for n in names)
        if value:
            out[label] = value
    return out


def progress_line(index, total, sample):
    where = f"[{index}/{total}] round {sample['round']} {sample['variant']:<8} {sample['workload']:<9}"
    if not sample["ok"]:
        return f"{where}  FAILED: {sample['error'].splitlines()[0]}"
    f = sample["figures"]
    u = per_unit(f, sample["workload"])
    rate_unit, cpu_unit = UNIT[sample["workload"]]
    extra = f", {f['errors']} errors" if "errors" in f else ""
    trouble = trouble_counts(f)
    if trouble:
        extra += " (" + ", ".join(f"{k} {v}" for k, v in trouble.items()) + ")"
    return f"{where}  {fmt(f['rate'])} {rate_unit}, {cpu_unit}: machine {fmt(u['machine_busy'])}, bench " \
           f"{fmt(u['bench_cpu'])}{extra}"


def main(argv):
    args = parse_args(argv)
    if args.probe:
        probe_main(args.probe)
        return
    if args.watch:
        watch_main()
        return
    if args.report:
        with open(args.report) as f:
            saved = json.load(f)
        base = args.report[:-len(".json")] if args.report.endswith(".json") else args.report
        write_results(base, saved["meta"], saved["samples"])
        return
    # SIGINT (also where a shell started the script with it ignored), SIGTERM
    # and SIGHUP end the run like Ctrl-C: through the finally blocks that
    # stop every process started and delete the namespaces.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)
    run(args)


def interrupt(signum, frame):
    raise KeyboardInterrupt()


if __name__ == "__main__":
    main(sys.argv[1:])
