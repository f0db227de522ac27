#!/usr/bin/env python3
"""fulcrum side by side with HAProxy and nginx `stream` on loopback (issue #8).

Every load balancer relays to the same real servers, with the same number of
threads, one at a time, in one run: the measurements of a workload are
interleaved (fulcrum, haproxy, nginx, fulcrum, ...) over several rounds and
the medians are compared. See docs/performance.md for what each workload
measures and how to read the figures; bench/compare.sh installs the peers,
builds fulcrum and runs this script.

Python 3 standard library only. Traffic goes to 127.0.0.1 only. Every
process started here runs in a process group of its own and is ended through
that group, also on Ctrl-C or an error.
"""

import argparse
import hashlib
import json
import math
import os
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

HOST = "127.0.0.1"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
GIB = 1 << 30

# Listening ports come from below the kernel's ephemeral range (32768 and
# up), so that no client connection of this or another run can sit on a port
# a load balancer is about to bind between two measurements.
PORT_SEARCH_START = 24100
PORT_SEARCH_END = 32000

NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"

THROUGHPUT_CASES = {
    # case: (parallel streams, reverse): reverse (-R) = server to client
    "tput-1": (1, False),
    "tput-4": (4, False),
    "tput-1R": (1, True),
    "tput-4R": (4, True),
}
CASE_TITLES = {
    "tput-1": "1 stream, client->server",
    "tput-4": "4 streams, client->server",
    "tput-1R": "1 stream, server->client (-R)",
    "tput-4R": "4 streams, server->client (-R)",
    "close": "new session per request",
    "keepalive": "keep-alive requests",
    "idle": "idle sessions",
}
WORKLOADS = ("throughput", "close", "keepalive", "idle")

# Metrics as reported: key, cases, title, unit, whether higher is better.
METRICS = [
    ("gbps", list(THROUGHPUT_CASES), "bulk throughput", "Gbit/s", True),
    ("rps", ["close"], "new sessions per second (Connection: close)", "req/s", True),
    ("rps", ["keepalive"], "keep-alive requests per second", "req/s", True),
    ("p50_ms", ["keepalive"], "keep-alive latency p50", "ms", False),
    ("p99_ms", ["keepalive"], "keep-alive latency p99", "ms", False),
    ("cpu_us_per_request", ["close", "keepalive"], "balancer CPU (user+sys) per request", "us", False),
    ("client_cpu_us_per_request", ["close", "keepalive"], "client (wrk) CPU per request", "us", False),
    ("server_cpu_us_per_request", ["close", "keepalive"], "real server (nginx) CPU per request", "us", False),
    ("machine_cpu_us_per_request", ["close", "keepalive"], "whole machine: busy CPU per request", "us", False),
    ("machine_busy_cpus", list(THROUGHPUT_CASES) + ["close", "keepalive"], "whole machine: CPUs busy during the run",
     "CPUs", None),
    ("rss_kib_per_session", ["idle"], "idle: RSS per session", "KiB", False),
    ("fds_per_session", ["idle"], "idle: fds per session", "fds", False),
    ("cpu_s_per_gib", list(THROUGHPUT_CASES), "CPU (user+sys) per GiB relayed", "s/GiB", False),
    ("client_cpu_s_per_gib", list(THROUGHPUT_CASES), "client (iperf3 -c) CPU per GiB", "s/GiB", False),
    ("server_cpu_s_per_gib", list(THROUGHPUT_CASES), "real server (iperf3 -s) CPU per GiB", "s/GiB", False),
    ("machine_cpu_s_per_gib", list(THROUGHPUT_CASES), "whole machine: busy CPU per GiB", "s/GiB", False),
]


class BenchError(Exception):
    """A measurement that could not be made; recorded, and the run goes on."""


# ---------------------------------------------------------------- processes

class Processes:
    """Every process the benchmark starts. Each is the leader of a process
    group of its own (start_new_session), so that stopping it also stops
    what it started itself (nginx workers), and nothing else."""

    def __init__(self):
        self.running = []

    def start(self, argv, log_path, env=None):
        with open(log_path, "ab") as log:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True, env=env)
        self.running.append(process)
        return process

    def stop(self, process, grace=5.0):
        """SIGTERM to the group, SIGKILL to whatever is left after `grace`.
        The leader is reaped only at the end: while it is unreaped its pid
        (the group id) cannot be reused, so the signals cannot reach a
        stranger."""
        if process.returncode is None:
            self._signal_group(process.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while not _exited(process.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            self._signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        if process in self.running:
            self.running.remove(process)

    def stop_all(self):
        for process in list(reversed(self.running)):
            try:
                self.stop(process, grace=2.0)
            except Exception as error:  # keep stopping the others
                print(f"could not stop pid {process.pid}: {error}", file=sys.stderr)

    @staticmethod
    def _signal_group(pgid, signum):
        if pgid <= 1 or pgid == os.getpgrp():
            return  # never our own group
        try:
            os.killpg(pgid, signum)
        except ProcessLookupError:
            pass


def _exited(pid):
    """True once `pid` (our child) has exited; leaves it unreaped."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


# ---------------------------------------------------------------- /proc

def process_family(pid):
    """`pid` and its direct children: nginx's master and workers, or the
    single process of fulcrum and HAProxy (whose threads /proc/PID sums)."""
    family = [pid]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            family.append(int(entry))
    return family


def cpu_seconds(pids):
    """user + system time of the processes (all their threads), seconds."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLOCK_TICKS


def machine_busy_seconds():
    """CPU time the whole machine spent busy (all CPUs, everything but idle,
    iowait and steal), seconds: what the client, the real server, the balancer and
    the kernel's work for all of them used together."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    steal = fields[7] if len(fields) > 7 else 0
    return (sum(fields[:8]) - idle - steal) / CLOCK_TICKS


def children_cpu_seconds():
    """user + system time of this script's reaped children (wrk)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def fd_count(pids):
    return sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in pids)


def fd_kinds(pids):
    """Descriptors by kind (socket, pipe, anon_inode:[eventpoll], a path...),
    so a per-session figure can be checked: idle sessions should add sockets
    only."""
    kinds = {}
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue  # closed meanwhile
            kind = target.split(":[", 1)[0] if ":[" in target else "file"
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def listening_ports():
    """Local ports of IPv4 sockets in LISTEN state."""
    ports = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[3] == "0A":
                ports.add(int(fields[1].split(":")[1], 16))
    return ports


def free_ports(count):
    """`count` ports on 127.0.0.1 that nothing listens on or holds now."""
    found = []
    busy = listening_ports()
    for port in range(PORT_SEARCH_START, PORT_SEARCH_END):
        if port in busy:
            continue
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.bind((HOST, port))
        except OSError:
            continue
        finally:
            probe.close()
        found.append(port)
        if len(found) == count:
            return found
    raise BenchError(f"fewer than {count} free ports in {PORT_SEARCH_START}-{PORT_SEARCH_END}")


def raise_fd_limit():
    """Idle sessions need ~5000 client sockets here (and children inherit
    the limit): soft limit up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


# ---------------------------------------------------------------- real servers

def hold_server(port):
    """The real server of the idle workload (run as its own process):
    accepts, echoes whatever arrives (the clients' hello), closes on EOF,
    and otherwise holds every connection open. Exits when its parent does."""
    raise_fd_limit()
    parent = os.getppid()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, port))
    listener.listen(4096)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    while os.getppid() == parent:
        for key, _ in selector.select(timeout=1.0):
            if key.fileobj is listener:
                while True:
                    try:
                        conn, _ = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:  # EMFILE: the clients wait in the backlog
                        break
                    conn.setblocking(False)
                    selector.register(conn, selectors.EVENT_READ)
                continue
            conn = key.fileobj
            try:
                data = conn.recv(4096)
                if data:
                    conn.send(data)  # a few bytes into an empty send buffer
                    continue
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                pass
            selector.unregister(conn)
            conn.close()


NGINX_BACKEND_CONF = """\
# Real HTTP servers of the close and keep-alive workloads (compare.py).
worker_processes {workers};
pid {tmp}/backend.pid;
error_log {tmp}/backend-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/backend-temp/body;
    proxy_temp_path {tmp}/backend-temp/proxy;
    fastcgi_temp_path {tmp}/backend-temp/fastcgi;
    uwsgi_temp_path {tmp}/backend-temp/uwsgi;
    scgi_temp_path {tmp}/backend-temp/scgi;
    # Long sessions stay long: the default (1000) would reconnect each
    # keep-alive client every 1000 requests.
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {{
        listen {host}:{port1};
        listen {host}:{port2};
        default_type text/plain;
        location / {{ return 200 "fulcrum bench\\n"; }}
    }}
}}
"""


# ---------------------------------------------------------------- load balancers

@dataclass
class Balancer:
    """One load balancer under test: a label, its kind and how to run it."""
    label: str
    kind: str            # fulcrum | haproxy | nginx | direct
    binary: str = ""
    splice: str = ""     # haproxy: auto | forced
    ports: dict = field(default_factory=dict)  # frontend ports: tput, http, idle


@dataclass
class Backends:
    iperf: int
    http: tuple
    hold: int
    hold_pid: int = 0
    iperf_pid: int = 0  # the iperf3 server
    http_pid: int = 0  # the nginx real servers' master


def fulcrum_config(lb, workers, backends):
    def service(name, port, servers):
        lines = [f"  - name: {name}", f"    listen: {HOST}:{port}", "    scheduler: rr", "    servers:"]
        lines += [f"      - address: {HOST}:{s}" for s in servers]
        return lines
    lines = [
        "# Written by bench/compare.py.",
        "global:",
        f"  workers: {workers}",
        "  max_connections: 100000",
        "  shutdown_timeout: 1s",
        "  log_level: warn",
        "  access_log: false   # HAProxy and nginx log nothing either",
        "defaults:",
        "  timeouts:",
        "    connect: 3s",
        "    idle: 10m",
        "services:",
    ]
    lines += service("tput", lb.ports["tput"], [backends.iperf])
    lines += service("http", lb.ports["http"], list(backends.http))
    lines += service("idle", lb.ports["idle"], [backends.hold])
    return "\n".join(lines) + "\n"


def haproxy_config(lb, workers, backends):
    splice = ("    option splice-auto\n" if lb.splice == "auto" else
              "    option splice-request\n    option splice-response\n")

    def proxy(name, port, servers):
        text = f"listen {name}\n    bind {HOST}:{port}\n    balance roundrobin\n"
        return text + "".join(f"    server s{i} {HOST}:{s}\n" for i, s in enumerate(servers))
    return (
        "# Written by bench/compare.py.\n"
        "global\n"
        f"    nbthread {workers}\n"
        # 5000 idle sessions and some. HAProxy wants 2 fds per connection plus
        # 2 per pipe (maxpipes = maxconn/4): 7000 stays under the hard limit.
        "    maxconn 7000\n"
        "defaults\n"
        "    mode tcp\n"
        "    timeout connect 3s\n"
        "    timeout client 10m\n"
        "    timeout server 10m\n"
        f"{splice}"
        + proxy("tput", lb.ports["tput"], [backends.iperf])
        + proxy("http", lb.ports["http"], list(backends.http))
        + proxy("idle", lb.ports["idle"], [backends.hold]))


def nginx_config(lb, workers, backends, tmp, name):
    def proxy(upstream, port, servers):
        text = f"    upstream {upstream} {{\n"
        text += "".join(f"        server {HOST}:{s};\n" for s in servers)
        text += "    }\n"
        text += (f"    server {{ listen {HOST}:{port}; proxy_pass {upstream};"
                 " proxy_connect_timeout 3s; proxy_timeout 10m; }\n")
        return text
    return (
        "# Written by bench/compare.py.\n"
        f"load_module {NGINX_STREAM_MODULE};\n"
        f"worker_processes {workers};\n"
        "worker_rlimit_nofile 20000;\n"
        f"pid {tmp}/{name}.pid;\n"
        f"error_log {tmp}/{name}.log warn;\n"
        "events { worker_connections 12000; }  # 5000 idle sessions take 10000\n"
        "stream {\n"
        + proxy("tput", lb.ports["tput"], [backends.iperf])
        + proxy("http", lb.ports["http"], list(backends.http))
        + proxy("idle", lb.ports["idle"], [backends.hold])
        + "}\n")


class Running:
    """A started load balancer: its process and where it logs."""

    def __init__(self, lb, process, log_path):
        self.lb = lb
        self.process = process
        self.log_path = log_path

    def pids(self):
        return process_family(self.process.pid)


def start_balancer(processes, lb, workers, backends, tmp):
    name = f"{lb.label}-w{workers}"
    log_path = os.path.join(tmp, f"{name}.log")
    if lb.kind == "fulcrum":
        path = os.path.join(tmp, f"{name}.yaml")
        write_file(path, fulcrum_config(lb, workers, backends))
        argv = [lb.binary, "-c", path]
    elif lb.kind == "haproxy":
        path = os.path.join(tmp, f"{name}.cfg")
        write_file(path, haproxy_config(lb, workers, backends))
        argv = [lb.binary, "-f", path, "-db"]
    else:
        path = os.path.join(tmp, f"{name}.conf")
        write_file(path, nginx_config(lb, workers, backends, tmp, name))
        argv = [lb.binary, "-p", tmp, "-e", log_path, "-c", path, "-g", "daemon off;"]
    process = processes.start(argv, log_path)
    running = Running(lb, process, log_path)
    try:
        wait_listening(process, set(lb.ports.values()), log_path)
        http_probe(lb.ports["http"])
    except BaseException:
        processes.stop(process)
        raise
    return running


def wait_listening(process, ports, log_path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"exited with status {process.returncode}:\n{tail(log_path)}")
        if ports <= listening_ports():
            return
        time.sleep(0.02)
    raise BenchError(f"not listening on {sorted(ports)} after {timeout:.0f}s:\n{tail(log_path)}")


def http_probe(port, timeout=5.0):
    """One request through the path under test: it must relay both ways."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=2.0) as s:
                s.sendall(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
                reply = b""
                while chunk := s.recv(4096):
                    reply += chunk
            if reply.startswith(b"HTTP/1.1 200"):
                return
            last_error = f"unexpected reply {reply[:60]!r}"
        except OSError as error:
            last_error = str(error)
        time.sleep(0.1)
    raise BenchError(f"probe through port {port} failed: {last_error}")


def write_file(path, text):
    with open(path, "w") as f:
        f.write(text)


# ---------------------------------------------------------------- clients

def iperf3_report(argv, duration):
    """Runs the iperf3 client argv (with -J), retrying while the server is
    still busy with the previous test; its JSON report."""
    for attempt in range(5):
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30)
        except subprocess.TimeoutExpired:
            raise BenchError("iperf3 did not finish in time")
        try:
            report = json.loads(result.stdout)
        except json.JSONDecodeError:
            raise BenchError(f"iperf3: no JSON report (status {result.returncode}): {result.stderr.strip()[:200]}")
        error = report.get("error")
        if error and "busy" in error and attempt < 4:
            time.sleep(1.0)  # the server is still closing the previous test
            continue
        if error:
            raise BenchError(f"iperf3: {error}")
        return report
    raise BenchError("iperf3 server stayed busy")


def run_iperf3(port, streams, reverse, duration):
    """One iperf3 test; returns (Gbit/s, bytes) as seen by the receiver."""
    argv = ["iperf3", "-c", HOST, "-p", str(port), "-t", str(duration), "-P", str(streams), "-J",
            "--connect-timeout", "3000"]
    if reverse:
        argv.append("-R")
    received = iperf3_report(argv, duration)["end"]["sum_received"]
    return received["bits_per_second"] / 1e9, int(received["bytes"])


WRK_SCRIPT = """\
-- Written by bench/compare.py: wrk's figures as one JSON line.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests": %.0f, "duration_us": %.0f, "connect_errors": %.0f, '
    .. '"read_errors": %.0f, "write_errors": %.0f, "status_errors": %.0f, "timeouts": %.0f, '
    .. '"p50_us": %.0f, "p99_us": %.0f, "max_us": %.0f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def run_wrk(port, close, duration, threads, connections, script):
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--timeout", "5s",
            "--latency", "-s", script]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(f"http://{HOST}:{port}/")
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30)
    except subprocess.TimeoutExpired:
        raise BenchError("wrk did not finish in time")
    line = next((l for l in result.stdout.splitlines() if l.startswith("WRK_JSON ")), None)
    if line is None:
        raise BenchError(f"wrk: no report (status {result.returncode}): {(result.stderr or result.stdout)[-300:]}")
    figures = json.loads(line[len("WRK_JSON "):])
    errors = sum(figures[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    if figures["requests"] == 0:
        raise BenchError(f"wrk: no request completed ({errors:.0f} errors)")
    return {
        "rps": figures["requests"] / (figures["duration_us"] / 1e6),
        "requests": int(figures["requests"]),
        "errors": int(errors),
        "p50_ms": figures["p50_us"] / 1000,
        "p99_ms": figures["p99_us"] / 1000,
        "max_ms": figures["max_us"] / 1000,
    }


HELLO = b"hello\n"


def open_idle_sessions(port, count, sockets, timeout, batch=250):
    """Opens `count` sessions through `port` into `sockets` (the caller
    closes them): each sends a hello and waits for its echo, so the session
    surely reaches the server and relays both ways before it falls idle.
    Opened in batches, so no listen backlog overflows."""
    deadline = time.monotonic() + timeout
    selector = selectors.DefaultSelector()
    try:
        for start in range(0, count, batch):
            pending = {}
            for _ in range(min(batch, count - start)):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(s)
                s.setblocking(False)
                s.connect_ex((HOST, port))
                pending[s] = b""
                selector.register(s, selectors.EVENT_WRITE)
            while pending:
                if time.monotonic() > deadline:
                    raise BenchError(f"idle: {len(sockets) - len(pending)} of {count} sessions open after {timeout}s")
                for key, events in selector.select(timeout=0.5):
                    s = key.fileobj
                    if events & selectors.EVENT_WRITE:
                        error = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if error:
                            raise BenchError(f"idle: connect failed: {os.strerror(error)}")
                        s.send(HELLO)
                        selector.modify(s, selectors.EVENT_READ)
                        continue
                    data = s.recv(64)
                    if not data:
                        raise BenchError("idle: a session was closed before its echo")
                    pending[s] += data
                    if len(pending[s]) >= len(HELLO):
                        selector.unregister(s)
                        del pending[s]
    finally:
        selector.close()


def wait_for(condition, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


# ---------------------------------------------------------------- measurements

class CpuMeter:
    """The CPU time each party uses during one client run: the balancer
    (`cpu_s`), the client (`client_cpu_s`: the run's tool, a child of this
    script), the real server (`server_cpu_s`) and the whole machine
    (`machine_busy_s`, over `wall_s`). With all three on 2 CPUs, a rate is set
    by their sum as much as by the balancer's share."""

    def __init__(self, balancer_pids, server_pids):
        self.balancer_pids, self.server_pids = balancer_pids, server_pids
        self.before = self.read()

    def read(self):
        return {
            "cpu_s": cpu_seconds(self.balancer_pids) if self.balancer_pids else None,
            "client_cpu_s": children_cpu_seconds(),
            "server_cpu_s": cpu_seconds(self.server_pids),
            "machine_busy_s": machine_busy_seconds(),
            "wall_s": time.monotonic(),
        }

    def used(self):
        after = self.read()
        return {k: after[k] - self.before[k] for k in after if after[k] is not None}


def measure_throughput(case, target_port, running, backends, args):
    streams, reverse = THROUGHPUT_CASES[case]
    meter = CpuMeter(running.pids() if running else [], [backends.iperf_pid])
    gbps, nbytes = run_iperf3(target_port, streams, reverse, args.duration)
    return {"gbps": gbps, "bytes": nbytes, **meter.used()}


def measure_http(case, target_port, running, backends, args):
    meter = CpuMeter(running.pids() if running else [], process_family(backends.http_pid))
    figures = run_wrk(target_port, case == "close", args.duration, args.wrk_threads, args.connections,
                      args.wrk_script)
    return {**figures, **meter.used()}


def measure_idle(running, backends, args):
    """RSS and descriptors of the load balancer before and while holding
    `args.idle_sessions` idle sessions; the difference divided by the count."""
    pids = running.pids()
    count = args.idle_sessions
    hold_pids = [backends.hold_pid]
    hold_base = fd_count(hold_pids)
    time.sleep(args.settle)  # the start-up probe's session may still be closing
    pids = running.pids()
    rss_before, fds_before, kinds_before = rss_kib(pids), fd_count(pids), fd_kinds(pids)
    sockets = []
    try:
        open_idle_sessions(running.lb.ports["idle"], count, sockets, timeout=60.0)
        if not wait_for(lambda: fd_count(hold_pids) - hold_base >= count, 10.0):
            raise BenchError(f"idle: the server holds {fd_count(hold_pids) - hold_base} of {count} sessions")
        time.sleep(args.settle)  # let deferred frees and pool returns happen
        pids = running.pids()
        rss_after, fds_after, kinds_after = rss_kib(pids), fd_count(pids), fd_kinds(pids)
    finally:
        for s in sockets:
            s.close()
    # The balancer must pass every close on to the server.
    closed = wait_for(lambda: fd_count(hold_pids) <= hold_base, 30.0)
    return {
        "sessions": count,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "fds_before": fds_before,
        "fds_after": fds_after,
        "rss_kib_per_session": (rss_after - rss_before) / count,
        "fds_per_session": (fds_after - fds_before) / count,
        "fd_kinds_before": kinds_before,
        "fd_kinds_after": kinds_after,
        "server_side_closed": closed,
    }


def measure(case, lb, workers, backends, processes, args):
    """One measurement: starts the balancer fresh (so no earlier workload
    leaves pools or buffers behind), runs one client, stops it."""
    running = None
    if lb.kind != "direct":
        running = start_balancer(processes, lb, workers, backends, args.tmp)
    try:
        if case in THROUGHPUT_CASES:
            port = lb.ports["tput"] if running else backends.iperf
            return measure_throughput(case, port, running, backends, args)
        if case in ("close", "keepalive"):
            port = lb.ports["http"] if running else backends.http[0]
            return measure_http(case, port, running, backends, args)
        return measure_idle(running, backends, args)
    finally:
        if running:
            processes.stop(running.process)


def plan(args, lbs):
    """The run as a list of (round, case, lb, workers). Within a round each
    case measures every balancer and thread count back to back; the order
    rotates from round to round, so no one always runs first or last."""
    cases = []
    for workload in args.only:
        cases += list(THROUGHPUT_CASES) if workload == "throughput" else [workload]
    steps = []
    for round_index in range(args.rounds):
        for case in cases:
            cells = [(lb, w) for w in args.workers for lb in lbs if lb.kind != "direct"]
            if case != "idle":
                cells += [(lb, None) for lb in lbs if lb.kind == "direct"]
            shift = round_index % len(cells) if cells else 0
            for lb, w in cells[shift:] + cells[:shift]:
                steps.append((round_index + 1, case, lb, w))
    return steps


# ---------------------------------------------------------------- summary

def summarize(samples):
    """Median, minimum and maximum of each metric per (case, workers, lb)."""
    groups = {}
    for sample in samples:
        if not sample["ok"]:
            continue
        for metric, value in with_derived(sample["figures"]).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                key = (metric, sample["case"], sample["workers"], sample["lb"])
                groups.setdefault(key, []).append(value)
    return {key: {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}
            for key, values in groups.items()}


def with_derived(figures):
    """Figures computed from the raw ones (so saved runs get them too): CPU
    time per request, which moves less with the machine's other load than
    requests per second do."""
    figures = dict(figures)
    requests, gib = figures.get("requests"), (figures.get("bytes") or 0) / GIB
    for party in ("", "client_", "server_", "machine_"):
        used = figures.get("machine_busy_s" if party == "machine_" else f"{party}cpu_s")
        if used is None:
            continue
        if requests:
            figures[f"{party}cpu_us_per_request"] = used / requests * 1e6
        if gib:
            figures[f"{party}cpu_s_per_gib"] = used / gib
    if figures.get("machine_busy_s") is not None and figures.get("wall_s"):
        figures["machine_busy_cpus"] = figures["machine_busy_s"] / figures["wall_s"]
    return figures


def figure(summary, metric, case, workers, label):
    entry = summary.get((metric, case, workers, label))
    if entry is None and label == "direct":
        entry = summary.get((metric, case, None, label))
    return entry["median"] if entry else None


def best_of(summary, metric, case, workers, labels, higher_better):
    values = [(v, l) for l in labels if (v := figure(summary, metric, case, workers, l)) is not None]
    if not values:
        return None, None
    return max(values) if higher_better else min(values)


def evaluate_targets(summary, lbs, workers_list, cases_run):
    """Each target of issue #8 for each fulcrum build: the ratio of medians
    and meets/misses. 'haproxy' is the better of its two splice settings."""
    haproxies = [lb.label for lb in lbs if lb.kind == "haproxy"]
    nginxes = [lb.label for lb in lbs if lb.kind == "nginx"]
    directs = [lb.label for lb in lbs if lb.kind == "direct"]
    results = []

    def ratio_target(label, w, metric, case, higher_better, peer_name, peer_labels, bound, what):
        if not peer_labels or case not in cases_run:
            return
        own = figure(summary, metric, case, w, label)
        peer, peer_label = best_of(summary, metric, case, w, peer_labels, higher_better)
        entry = {"fulcrum": label, "workers": w, "case": case, "metric": metric, "peer": peer_name,
                 "peer_label": peer_label, "target": what, "bound": bound, "higher_better": higher_better}
        if own is None or not peer:
            entry.update(ratio=None, verdict="not measured")
        else:
            ratio = own / peer
            ok = ratio >= bound if higher_better else ratio <= bound
            entry.update(ratio=ratio, verdict="meets" if ok else "misses")
        results.append(entry)

    for label in [lb.label for lb in lbs if lb.kind == "fulcrum"]:
        for w in workers_list:
            for case in THROUGHPUT_CASES:
                ratio_target(label, w, "gbps", case, True, "haproxy", haproxies, 1.1, "throughput >= 1.1x")
                ratio_target(label, w, "gbps", case, True, "nginx", nginxes, 1.1, "throughput >= 1.1x")
                ratio_target(label, w, "gbps", case, True, "direct", directs, 0.6, "throughput >= 0.6x")
            for peer_name, peers in (("haproxy", haproxies), ("nginx", nginxes)):
                ratio_target(label, w, "rps", "close", True, peer_name, peers, 1.1, "new sessions/s >= 1.1x")
            for peer_name, peers in (("haproxy", haproxies), ("nginx", nginxes)):
                ratio_target(label, w, "rps", "keepalive", True, peer_name, peers, 1.1, "keep-alive req/s >= 1.1x")
                ratio_target(label, w, "p99_ms", "keepalive", False, peer_name, peers, 0.9, "keep-alive p99 <= 0.9x")
            if "idle" in cases_run:
                fds = figure(summary, "fds_per_session", "idle", w, label)
                # The pipe pool keeps up to 16 idle pipes per worker: a fixed
                # few fds, not per session, hence the small allowance.
                results.append({"fulcrum": label, "workers": w, "case": "idle", "metric": "fds_per_session",
                                "peer": None, "target": "2 fds per session (<= 2.05)", "value": fds,
                                "verdict": "not measured" if fds is None else ("meets" if fds <= 2.05 else "misses")})
            ratio_target(label, w, "rss_kib_per_session", "idle", False, "haproxy", haproxies, 0.5,
                         "idle RSS/session <= 0.5x")
            for case in THROUGHPUT_CASES:
                ratio_target(label, w, "cpu_s_per_gib", case, False, "haproxy", haproxies, 0.9,
                             "CPU per GiB <= 0.9x")
    return results


def compare_builds(samples, lbs, workers_list):
    """With two or more fulcrum builds: each build's figures against the
    first one's, as the median of per-round ratios (both measured in the same
    round, moments apart, so slow drifts of the machine cancel out)."""
    labels = [lb.label for lb in lbs if lb.kind == "fulcrum"]
    if len(labels) < 2:
        return []
    by_key = {}
    for s in samples:
        if s["ok"]:
            by_key[(s["round"], s["case"], s["workers"], s["lb"])] = with_derived(s["figures"])
    rows = []
    for metric, cases, _, unit, higher_better in METRICS:
        for case in cases:
            for w in workers_list:
                for label in labels[1:]:
                    ratios = []
                    for (r, c, wk, l), figures in by_key.items():
                        if c == case and wk == w and l == labels[0]:
                            other = by_key.get((r, c, wk, label), {})
                            if figures.get(metric) and other.get(metric) is not None:
                                ratios.append(other[metric] / figures[metric])
                    if ratios:
                        rows.append({"metric": metric, "unit": unit, "case": case, "workers": w, "base": labels[0],
                                     "build": label, "median_ratio": statistics.median(ratios),
                                     "min_ratio": min(ratios), "max_ratio": max(ratios), "rounds": len(ratios),
                                     "higher_better": higher_better})
    return rows


# ---------------------------------------------------------------- report

def fmt(value):
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cell(summary, metric, case, workers, label):
    entry = summary.get((metric, case, workers, label))
    if entry is None and label == "direct":
        entry = summary.get((metric, case, None, label))
    if entry is None:
        return "-"
    spread = (entry["max"] - entry["min"]) / 2 / entry["median"] * 100 if entry["median"] else 0
    return f"{fmt(entry['median'])} ±{spread:.0f}%" if entry["n"] > 1 else fmt(entry["median"])


def better_note(higher_better):
    """", higher is better" and the like; nothing for a figure given for
    context (such as how busy the whole machine was)."""
    return "" if higher_better is None else f", {'higher' if higher_better else 'lower'} is better"


def report_text(meta, summary, lbs, args, targets, builds, samples):
    out = []
    m = meta["machine"]
    out.append("fulcrum vs HAProxy vs nginx stream, loopback (bench/compare.py)")
    out.append(f"machine: {m['nproc']} CPUs ({m['cpu_model']}), kernel {m['kernel']}, "
               f"load average at start {meta['loadavg_start']}, at end {meta.get('loadavg_end', '-')}")
    loads = sorted(float(s["loadavg"].split()[0]) for s in samples)
    if loads:
        # Our own load adds about 1-2; much more means other work shared the CPUs.
        out.append(f"1-minute load average before each measurement: {loads[0]:.1f} to {loads[-1]:.1f}, "
                   f"median {statistics.median(loads):.1f}")
    if "interrupted" in meta:
        out.append(f"INTERRUPTED {meta['interrupted']}")
    out.append("versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    for lb in lbs:
        if lb.kind == "fulcrum":
            out.append(f"{lb.label}: {lb.binary} (sha256 {meta['fulcrum_builds'][lb.label]['sha256'][:12]})")
    out.append(f"rounds {args.rounds}, {args.duration}s per measurement, workers {args.workers}; "
               "cells: median of the rounds ±half the min-max spread in % of the median")
    labels = [lb.label for lb in lbs]
    cases_run = {c for (_, c, _, _) in summary}
    for metric, cases, title, unit, higher_better in METRICS:
        rows = [(c, w) for c in cases if c in cases_run for w in args.workers]
        if not rows:
            continue
        shown = [l for l in labels if any(summary.get((metric, c, w, l)) or summary.get((metric, c, None, l))
                                          for c, w in rows)]
        if not shown:
            continue
        out.append("")
        out.append(f"{title} ({unit}{better_note(higher_better)})")
        header = f"  {'case':<32}{'workers':>8}" + "".join(f"{l:>18}" for l in shown)
        out.append(header)
        for c, w in rows:
            out.append(f"  {CASE_TITLES[c]:<32}{w:>8}" + "".join(f"{cell(summary, metric, c, w, l):>18}" for l in shown))
    if targets:
        out.append("")
        out.append("targets (ratio of medians; haproxy = the better of splice-auto and forced splice)")
        met = sum(1 for t in targets if t["verdict"] == "meets")
        for t in targets:
            where = f"{t['fulcrum']} w{t['workers']} {t['case']:<9}"
            if t["peer"] is None:
                shown = fmt(t["value"]) if t["value"] is not None else "-"
                out.append(f"  {where} {t['target']:<28} {shown:>10}             {t['verdict']}")
            else:
                ratio = f"{t['ratio']:.2f}x" if t["ratio"] is not None else "-"
                peer = f"vs {t['peer']}" + (f" ({t['peer_label']})" if t.get("peer_label") and t["peer"] == "haproxy" else "")
                out.append(f"  {where} {t['target']:<28} {ratio:>10} {peer:<30} {t['verdict']}")
        out.append(f"  {met} of {len(targets)} targets met")
    if builds:
        out.append("")
        out.append("fulcrum builds compared (median of per-round ratios, min-max)")
        for b in builds:
            better = {True: "higher is better", False: "lower is better", None: "for context"}[b["higher_better"]]
            out.append(f"  {b['build']}/{b['base']} {b['metric']:<20} {CASE_TITLES[b['case']]:<32} w{b['workers']}"
                       f"  {b['median_ratio']:.3f}  ({b['min_ratio']:.3f}-{b['max_ratio']:.3f}, {b['rounds']} rounds,"
                       f" {better})")
    failures = [s for s in samples if not s["ok"]]
    if failures:
        out.append("")
        out.append(f"{len(failures)} measurements failed:")
        for f in failures:
            out.append(f"  round {f['round']} {f['case']} {f['lb']} w{f['workers']}: {f['error'].splitlines()[0]}")
    return "\n".join(out) + "\n"


COLOURS = ["#1f5fa8", "#6aa7e0", "#0b3a6e", "#9cc7f0", "#e07b1a", "#a8520b", "#2e9c4a", "#8c8c8c"]

# Chart geometry, pixels.
BAR_W, GROUP_GAP, AXIS_W, PLOT_H, PANEL_GAP, ROW_W = 14, 20, 60, 200, 30, 1000


def chart_svg(summary, lbs, args, meta):
    """Grouped bars, one panel per metric: a bar per balancer (its median
    written above it), a group per case and thread count, a line from the
    minimum to the maximum over the rounds. Panels flow left to right."""
    colours = balancer_colours(lbs)
    labels = [lb.label for lb in lbs]
    cases_run = {c for (_, c, _, _) in summary}
    panels = []
    for metric, cases, title, unit, higher_better in METRICS:
        groups = []
        for c in (c for c in cases if c in cases_run):
            for w in args.workers:
                bars = [(l, e) for l in labels
                        if (e := summary.get((metric, c, w, l)) or summary.get((metric, c, None, l)))]
                if bars:
                    groups.append((f"{c} w{w}", bars))
        if groups:
            panels.append((f"{title}, {unit}{better_note(higher_better)}", groups))

    # Greedy rows: a panel goes on the current row while the row has room.
    placed, x, y, row_h = [], 10, 0, PLOT_H + 110
    legend_rows = (len(labels) + 4) // 5
    y = 50 + 22 * legend_rows
    width = ROW_W
    for title, groups in panels:
        w = AXIS_W + 20 + sum(len(bars) * BAR_W + GROUP_GAP for _, bars in groups)
        w = max(w, 7 * len(title) + 20)  # room for the title
        if x > 10 and x + w > ROW_W:
            x, y = 10, y + row_h
        placed.append((x, y, w, title, groups))
        x += w + PANEL_GAP
        width = max(width, x)
    height = y + row_h

    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           '<text x="10" y="20" font-size="14" font-weight="bold">fulcrum vs HAProxy vs nginx stream, loopback</text>',
           f'<text x="10" y="38">{esc(meta["machine"]["cpu_model"])}, {meta["machine"]["nproc"]} CPUs, kernel '
           f'{esc(meta["machine"]["kernel"])}; {args.rounds} rounds of {args.duration} s, started '
           f'{esc(meta["started"])}; bars: median, lines: min to max</text>']
    for i, l in enumerate(labels):
        lx, ly = 10 + (i % 5) * 150, 48 + (i // 5) * 22
        svg.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{colours[l]}"/>'
                   f'<text x="{lx + 17}" y="{ly + 10}">{esc(l)}</text>')
    for px, py, pw, title, groups in placed:
        svg += chart_panel(px, py, pw, title, groups, colours)
    svg.append("</svg>")
    return "\n".join(svg) + "\n"


def chart_panel(px, py, pw, title, groups, colours):
    top = py + 60  # title and room for the value labels above the bars
    bottom = top + PLOT_H
    step, ceiling = axis_scale(max(e["max"] for _, bars in groups for _, e in bars))
    out = [f'<text x="{px}" y="{py + 18}" font-size="12" font-weight="bold">{esc(title)}</text>']
    ticks = round(ceiling / step)
    for k in range(ticks + 1):
        y = bottom - PLOT_H * k / ticks
        out.append(f'<line x1="{px + AXIS_W}" y1="{y:.1f}" x2="{px + pw}" y2="{y:.1f}" stroke="#ddd"/>'
                   f'<text x="{px + AXIS_W - 5}" y="{y + 4:.1f}" text-anchor="end">{fmt(step * k)}</text>')
    x = px + AXIS_W + 10
    for name, bars in groups:
        group_x = x
        for label, e in bars:
            h = PLOT_H * e["median"] / ceiling
            centre = x + (BAR_W - 2) / 2
            out.append(f'<rect x="{x}" y="{bottom - h:.1f}" width="{BAR_W - 2}" height="{h:.1f}" '
                       f'fill="{colours[label]}"><title>{esc(label)} {esc(name)}: median {fmt(e["median"])}, '
                       f'min {fmt(e["min"])}, max {fmt(e["max"])}, {e["n"]} rounds</title></rect>')
            label_y = bottom - PLOT_H * e["max"] / ceiling - 3
            if e["n"] > 1:
                low = bottom - PLOT_H * e["min"] / ceiling
                out.append(f'<line x1="{centre}" y1="{low:.1f}" x2="{centre}" y2="{label_y + 3:.1f}" stroke="black"/>')
            out.append(f'<text x="{centre + 3:.1f}" y="{label_y:.1f}" font-size="9" '
                       f'transform="rotate(-90 {centre + 3:.1f} {label_y:.1f})">{fmt(e["median"])}</text>')
            x += BAR_W
        out.append(f'<text x="{(group_x + x) / 2:.1f}" y="{bottom + 14}" text-anchor="middle">{esc(name)}</text>')
        x += GROUP_GAP
    out.append(f'<line x1="{px + AXIS_W}" y1="{bottom}" x2="{px + pw}" y2="{bottom}" stroke="black"/>')
    return out


def balancer_colours(lbs):
    """Blues for fulcrum builds, oranges for HAProxy, green nginx, grey direct."""
    colours, blues = {}, iter(COLOURS[:4])
    for lb in lbs:
        if lb.kind == "fulcrum":
            colours[lb.label] = next(blues, COLOURS[0])
        elif lb.kind == "haproxy":
            colours[lb.label] = COLOURS[4] if lb.splice == "auto" else COLOURS[5]
        else:
            colours[lb.label] = COLOURS[6] if lb.kind == "nginx" else COLOURS[7]
    return colours


def axis_scale(value):
    """A round tick step (1, 2 or 5 x 10^n) giving at most 6 ticks, and the
    axis top: the first multiple of the step at or above `value`."""
    value = value or 1
    magnitude = 10 ** math.floor(math.log10(value / 6))
    step = next(m * magnitude for m in (1, 2, 5, 10) if value / (m * magnitude) <= 6)
    return step, math.ceil(value / step - 1e-9) * step


def esc(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---------------------------------------------------------------- machine

def first_line(argv):
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (result.stdout + result.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def machine_description(lbs):
    cpu_model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    versions = {
        "haproxy": first_line(["haproxy", "-v"]).replace("HAProxy version ", "").split(" ")[0],
        "nginx": first_line(["nginx", "-v"]).replace("nginx version: nginx/", ""),
        "iperf3": first_line(["iperf3", "--version"]).replace("iperf ", "").split(" ")[0],
        "wrk": first_line(["wrk", "-v"]).replace("wrk ", "").split(" ")[0],
        "python": sys.version.split()[0],
    }
    builds = {}
    for lb in lbs:
        if lb.kind == "fulcrum":
            with open(lb.binary, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            builds[lb.label] = {"binary": os.path.abspath(lb.binary), "sha256": digest,
                                "version": first_line([lb.binary, "--version"])}
    commit = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"], capture_output=True,
                            text=True).stdout.strip()
    return {
        "machine": {"nproc": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)), "cpu_model": cpu_model,
                    "kernel": os.uname().release, "memory_kib": meminfo_total()},
        "versions": versions,
        "fulcrum_builds": builds,
        "source_commit": commit,
    }


def meminfo_total():
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1])


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(description="fulcrum vs HAProxy and nginx stream on loopback (issue #8)")
    p.add_argument("--rounds", type=int, help="rounds of every measurement (default 3, --quick 1)")
    p.add_argument("--duration", type=int, help="seconds per throughput/wrk measurement (default 5, --quick 1)")
    p.add_argument("--quick", action="store_true", help="smoke check: 1 round, 1 s per measurement")
    p.add_argument("--workers", default="1,2", help="thread counts to compare, e.g. 1,2 (default)")
    p.add_argument("--only", default=",".join(WORKLOADS),
                   help=f"workloads, comma separated: {', '.join(WORKLOADS)} (default all)")
    p.add_argument("--lbs", default=None,
                   help="balancers: fulcrum labels, haproxy-auto, haproxy-splice (haproxy = both), nginx, direct "
                        "(default all)")
    p.add_argument("--fulcrum-binary", action="append", default=[], metavar="[LABEL=]PATH",
                   help="a fulcrum build to measure; repeat with labels to compare builds "
                        "(default build-release/fulcrum as 'fulcrum')")
    p.add_argument("--idle-sessions", type=int, default=5000, help="sessions held open (default 5000)")
    p.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--server-workers", type=int, default=1, help="worker processes of the nginx real servers")
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results"), help="where results are written")
    p.add_argument("--keep-temp", action="store_true", help="keep the temporary directory (configs, logs)")
    p.add_argument("--report", metavar="JSON", help="print the report and rewrite the chart of a saved run")
    p.add_argument("--hold-server", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.duration is None:
        args.duration = 1 if args.quick else 5
    args.settle = 0.5 if args.quick else 1.0
    args.workers = [int(w) for w in args.workers.split(",")]
    args.only = [w.strip() for w in args.only.split(",")]
    for w in args.only:
        if w not in WORKLOADS:
            p.error(f"unknown workload {w!r}: one of {', '.join(WORKLOADS)}")
    if args.rounds < 1 or args.duration < 1 or not all(1 <= w <= 64 for w in args.workers):
        p.error("rounds, duration and workers must be positive")
    return args


def balancers(args):
    lbs = []
    binaries = args.fulcrum_binary or [os.path.join(REPO, "build-release", "fulcrum")]
    for spec in binaries:
        label, _, path = spec.rpartition("=")
        label = label or "fulcrum"
        if not os.access(path, os.X_OK):
            sys.exit(f"fulcrum binary {path!r} not found or not executable (bench/compare.sh builds it)")
        if any(lb.label == label for lb in lbs):
            sys.exit(f"two fulcrum builds labelled {label!r}: give each --fulcrum-binary a LABEL=")
        lbs.append(Balancer(label, "fulcrum", os.path.abspath(path)))
    lbs += [Balancer("haproxy-auto", "haproxy", "haproxy", splice="auto"),
            Balancer("haproxy-splice", "haproxy", "haproxy", splice="forced"),
            Balancer("nginx", "nginx", "nginx"),
            Balancer("direct", "direct")]
    if args.lbs:
        wanted = set()
        for name in args.lbs.split(","):
            name = name.strip()
            wanted |= {"haproxy-auto", "haproxy-splice"} if name == "haproxy" else {name}
        unknown = wanted - {lb.label for lb in lbs}
        if unknown:
            sys.exit(f"unknown balancer(s) {', '.join(sorted(unknown))}: known {', '.join(lb.label for lb in lbs)}")
        lbs = [lb for lb in lbs if lb.label in wanted]
    return lbs


def check_tools(lbs, args):
    needed = {"nginx"}  # the real HTTP servers, also used by every start-up probe
    if "throughput" in args.only:
        needed.add("iperf3")
    if "close" in args.only or "keepalive" in args.only:
        needed.add("wrk")
    needed |= {lb.binary for lb in lbs if lb.kind in ("haproxy", "nginx")}
    missing = [t for t in sorted(needed) if not shutil.which(t)]
    if missing:
        sys.exit(f"missing: {', '.join(missing)} (bench/compare.sh installs them)")
    if any(lb.kind == "nginx" for lb in lbs) and not os.path.exists(NGINX_STREAM_MODULE):
        sys.exit(f"missing {NGINX_STREAM_MODULE} (package libnginx-mod-stream)")


def start_backends(processes, args, tmp):
    iperf, http1, http2, hold = free_ports(4)
    backends = Backends(iperf=iperf, http=(http1, http2), hold=hold)
    if "throughput" in args.only:
        iperf_server = processes.start(["iperf3", "-s", "-B", HOST, "-p", str(iperf)],
                                       os.path.join(tmp, "iperf3.log"))
        backends.iperf_pid = iperf_server.pid
    os.makedirs(os.path.join(tmp, "backend-temp"), exist_ok=True)
    conf = os.path.join(tmp, "backend.conf")
    write_file(conf, NGINX_BACKEND_CONF.format(workers=args.server_workers, tmp=tmp, host=HOST, port1=http1,
                                               port2=http2))
    log = os.path.join(tmp, "backend-error.log")
    nginx = processes.start(["nginx", "-p", tmp, "-e", log, "-c", conf, "-g", "daemon off;"],
                            os.path.join(tmp, "backend.out"))
    hold_server_process = processes.start([sys.executable, os.path.abspath(__file__), "--hold-server", str(hold)],
                                          os.path.join(tmp, "hold.log"))
    backends.hold_pid = hold_server_process.pid
    backends.http_pid = nginx.pid
    ports = {http1, http2, hold} | ({iperf} if "throughput" in args.only else set())
    wait_listening(nginx, ports, log)
    http_probe(http1)
    return backends


def run(args):
    hard = raise_fd_limit()
    if "idle" in args.only and hard < 2 * args.idle_sessions + 1000:
        sys.exit(f"open-file hard limit {hard} is too low for {args.idle_sessions} idle sessions")
    lbs = balancers(args)
    check_tools(lbs, args)
    meta = machine_description(lbs)
    meta["started"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    meta["loadavg_start"] = loadavg()
    meta["args"] = {k: v for k, v in vars(args).items() if k not in ("hold_server",)}
    meta["balancers"] = [{"label": lb.label, "kind": lb.kind, "binary": lb.binary, "splice": lb.splice}
                         for lb in lbs]
    processes = Processes()
    samples = []
    args.tmp = tempfile.mkdtemp(prefix="fulcrum-bench-")
    try:
        args.wrk_script = os.path.join(args.tmp, "report.lua")
        write_file(args.wrk_script, WRK_SCRIPT)
        backends = start_backends(processes, args, args.tmp)
        port_list = free_ports(3 * len(lbs))  # the backends listen already: skipped
        for i, lb in enumerate(l for l in lbs if l.kind != "direct"):
            lb.ports = dict(zip(("tput", "http", "idle"), port_list[3 * i:3 * i + 3]))
        steps = plan(args, lbs)
        print(f"{len(steps)} measurements, temporary files in {args.tmp}", file=sys.stderr)
        for index, (round_number, case, lb, workers) in enumerate(steps, 1):
            sample = {"round": round_number, "case": case, "lb": lb.label, "workers": workers,
                      "at": time.time(), "loadavg": loadavg()}
            started = time.monotonic()
            try:
                sample["figures"] = measure(case, lb, workers, backends, processes, args)
                sample["ok"] = True
            except (BenchError, OSError, ValueError, KeyError) as error:
                # One failed measurement (a balancer that died, a client
                # that reported nothing) is recorded; the run goes on.
                sample.update(ok=False, error=f"{type(error).__name__}: {error}" if not isinstance(
                    error, BenchError) else str(error), figures={})
            except KeyboardInterrupt:
                meta["interrupted"] = f"after {index - 1} of {len(steps)} measurements"
                print(f"interrupted: reporting the {index - 1} measurements made", file=sys.stderr)
                break
            sample["seconds"] = round(time.monotonic() - started, 2)
            samples.append(sample)
            print(progress_line(index, len(steps), sample), file=sys.stderr, flush=True)
    finally:
        processes.stop_all()
        if not args.keep_temp:
            shutil.rmtree(args.tmp, ignore_errors=True)
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    meta["loadavg_end"] = loadavg()
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, time.strftime("compare-%Y%m%d-%H%M%S"))
    write_results(base, meta, samples, lbs, args)
    if "interrupted" in meta:
        sys.exit(130)


def write_results(base, meta, samples, lbs, args):
    """Prints the report and writes BASE.json (raw figures), BASE.svg and
    BASE.txt (the report as printed)."""
    summary = summarize(samples)
    cases_run = {s["case"] for s in samples}
    targets = evaluate_targets(summary, lbs, args.workers, cases_run)
    builds = compare_builds(samples, lbs, args.workers)
    text = report_text(meta, summary, lbs, args, targets, builds, samples)
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "samples": samples,
                   "summary": [{"metric": k[0], "case": k[1], "workers": k[2], "lb": k[3], **v}
                               for k, v in sorted(summary.items(), key=lambda kv: str(kv[0]))],
                   "targets": targets, "builds_compared": builds}, f, indent=1)
    write_file(base + ".svg", chart_svg(summary, lbs, args, meta))
    write_file(base + ".txt", text)
    print(text)
    print(f"written: {base}.json, {base}.svg, {base}.txt")


def rewrite_report(path):
    """--report: the table, targets and chart again from a saved JSON (for
    instance after a change to the report), without measuring anything."""
    with open(path) as f:
        saved = json.load(f)
    meta = saved["meta"]
    lbs = [Balancer(b["label"], b["kind"], b["binary"], b["splice"]) for b in meta["balancers"]]
    args = argparse.Namespace(**{k: meta["args"][k] for k in ("rounds", "duration", "workers")})
    base = path[:-len(".json")] if path.endswith(".json") else path
    write_results(base, meta, saved["samples"], lbs, args)


def progress_line(index, total, sample):
    where = f"[{index}/{total}] round {sample['round']} {sample['case']:<9} {sample['lb']:<16} " \
            f"w{sample['workers'] if sample['workers'] else '-'}"
    if not sample["ok"]:
        return f"{where}  FAILED: {sample['error'].splitlines()[0]}"
    f = with_derived(sample["figures"])
    if "gbps" in f:
        extra = f", {f['cpu_s_per_gib']:.2f} CPU s/GiB" if f.get("cpu_s_per_gib") is not None else ""
        return f"{where}  {f['gbps']:.2f} Gbit/s{extra}"
    if "rps" in f:
        return f"{where}  {f['rps']:,.0f} req/s, p50 {f['p50_ms']:.2f} ms, p99 {f['p99_ms']:.2f} ms, {f['errors']} errors"
    added = {k: v - f["fd_kinds_before"].get(k, 0) for k, v in f["fd_kinds_after"].items()}
    added = ", ".join(f"{k} +{v}" for k, v in sorted(added.items()) if v)
    return f"{where}  {f['rss_kib_per_session']:.2f} KiB and {f['fds_per_session']:.3f} fds per session ({added})"


def main(argv):
    args = parse_args(argv)
    if args.hold_server:
        hold_server(args.hold_server)
        return
    if args.report:
        rewrite_report(args.report)
        return
    # SIGTERM ends the run like Ctrl-C: through the finally blocks that stop
    # every process started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        run(args)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main(sys.argv[1:])
