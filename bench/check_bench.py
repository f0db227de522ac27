#!/usr/bin/env python3
"""What active health checks cost at scale, and whether they fire together
(issue 17: "1000 servers checked every second cost under 5 % of one CPU,
with jitter so they never fire together").

fulcrum checks N servers (default 1000, in 4 services) every `--interval`
(1 s) with a `--timeout` (500 ms). The servers are one Python process
listening on N loopback addresses 127.77.x.y, one port: it accepts every
check, answers it as the check kind expects, and records when each one
arrived. For each kind the benchmark reports fulcrum's CPU (all its
threads, from the scheduler's nanosecond counts) over `--duration` seconds after a
`--warmup`, as % of one CPU and per check, against the same configuration
with health checks off (`idle`); and how the checks' arrivals are spread:
the busiest 10 ms and 100 ms windows against the mean and against the same
number of arrivals put at uniformly random times, and each server's
interval between two checks (the servers time the arrivals, so the 1 ms
windows also hold their own scheduling delays). `wakes/s` is how often
fulcrum's main loop woke up (voluntary context switches of its main
thread), `fds` the least and most descriptors fulcrum held.

Kinds: `idle` (no checks), `tcp` (connect), `send-expect` (send
"PING\\r\\n", expect "+PONG"), `http` (GET /health, 200), `https` (the same
over TLS, certificate not verified; needs the `openssl` command for a
throw-away self-signed certificate).

    bench/check_bench.py                          # every kind, 3 rounds
    bench/check_bench.py --kinds tcp --rounds 1 --duration 10
    bench/check_bench.py --haproxy /usr/sbin/haproxy   # HAProxy's checks instead

Figures only, never a pass or fail. Python 3 standard library only. Traffic
goes to 127.0.0.0/8 only. Every process started here is stopped through its
own process group (compare.py's Processes), by pid; each also ends by itself
after a bounded time.
"""

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (the bench directory is not a package)
from compare import HOST, REPO, BenchError  # noqa: E402

KINDS = ("idle", "tcp", "send-expect", "http", "https")
DEFAULT_KINDS = "idle,tcp,send-expect,http,https"
HTTP_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
# The servers' addresses: 127.77.0.1 ... (250 per third octet), all on lo.
ADDRESS_PREFIX = "127.77"
PER_OCTET = 250
WINDOWS_MS = (1, 10, 100)


def server_address(index):
    return f"{ADDRESS_PREFIX}.{index // PER_OCTET}.{index % PER_OCTET + 1}"


# ---------------------------------------------------------------- the servers

class CheckedServer(asyncio.Protocol):
    """One accepted check: its arrival is recorded, then it is answered as
    the kind expects (tcp: closed at once; send-expect: +PONG after PING;
    http(s): 200 after the request's head) and closed."""

    def __init__(self, kind, index, arrivals, handshakes):
        self.kind = kind
        self.index = index
        self.arrivals = arrivals
        self.handshakes = handshakes  # TLS: [full, resumed]
        self.buffer = b""
        self.transport = None

    def connection_made(self, transport):
        # For https this is after the handshake: still well within 10 ms of
        # the connect on loopback, and each check is timed the same way.
        self.arrivals.append((time.monotonic_ns(), self.index))
        self.transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.handshakes[ssl_object.session_reused] += 1
        if self.kind == "tcp":
            transport.close()

    def data_received(self, data):
        self.buffer += data
        if self.kind == "send-expect" and b"PING\r\n" in self.buffer:
            self.transport.write(b"+PONG\r\n")
            self.transport.close()
        elif self.kind in ("http", "https") and b"\r\n\r\n" in self.buffer:
            self.transport.write(HTTP_RESPONSE)
            self.transport.close()
        elif len(self.buffer) > 4096:
            self.transport.close()


def bind_all(count, port):
    sockets = []
    try:
        for index in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((server_address(index), port))
            s.listen(128)
            s.setblocking(False)
    except OSError:
        for s in sockets:
            s.close()
        return None
    return sockets


def serve(args):
    """The `--serve` child: binds every address on one free port, writes the
    port to `--port-file`, serves until SIGTERM or `--lifetime`, then writes
    the arrivals (monotonic ns and server index, one a line) to
    `--arrivals-file`."""
    sockets = None
    for port in range(compare.PORT_SEARCH_START, compare.PORT_SEARCH_START + 50):
        sockets = bind_all(args.servers, port)
        if sockets is not None:
            break
    if sockets is None:
        print("no port free on every address", file=sys.stderr)
        return 1
    context = None
    if args.serve == "https":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    arrivals = []
    handshakes = [0, 0]

    async def main():
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, lambda: stop.done() or stop.set_result(None))
        loop.call_later(args.lifetime, lambda: stop.done() or stop.set_result(None))
        servers = []
        for index, s in enumerate(sockets):
            servers.append(await loop.create_server(
                lambda i=index: CheckedServer(args.serve, i, arrivals, handshakes), sock=s, ssl=context, backlog=128))
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(port))
        os.rename(args.port_file + ".tmp", args.port_file)
        await stop
        for server in servers:
            server.close()

    asyncio.run(main())
    with open(args.arrivals_file, "w") as f:
        f.writelines(f"{t} {i}\n" for t, i in arrivals)
    if args.serve == "https":
        with open(args.arrivals_file + ".tls", "w") as f:
            f.write(f"{handshakes[0]} {handshakes[1]}\n")
    return 0


# ---------------------------------------------------------------- fulcrum

def fulcrum_config(args, kind, target_port, listen_ports, stats_port):
    lines = [
        "# Written by bench/check_bench.py.",
        "global:",
        "  workers: 1",
        "  log_level: warn",
        "  access_log: false",
        "stats:",
        f"  listen: {HOST}:{stats_port}",
        "services:",
    ]
    per_service = -(-args.servers // args.services)
    for s in range(args.services):
        indices = range(s * per_service, min(args.servers, (s + 1) * per_service))
        lines += [f"  - name: checked-{s}", f"    listen: {HOST}:{listen_ports[s]}"]
        if kind != "idle":
            lines += ["    health_check:", f"      interval: {args.interval_ms}ms",
                      f"      timeout: {args.timeout_ms}ms"]
            if kind == "send-expect":
                lines += ['      send: "PING\\r\\n"', '      expect: "+PONG"']
            elif kind in ("http", "https"):
                lines += ["      http:", "        path: /health", "        status: [200]"]
                if kind == "https":
                    lines += ["        tls: true"]
        lines.append("    servers:")
        lines += [f"      - address: {server_address(i)}:{target_port}" for i in indices]
    return "\n".join(lines) + "\n"


def haproxy_config(args, kind, target_port, listen_port):
    """The same checks in HAProxy 2.6 (`--haproxy`): one thread, the servers
    in as many backends as fulcrum's services, each checked as the kind asks
    (`check inter`, `timeout check`); one idle frontend on `listen_port`
    (HAProxy will not start without a listener). `idle` has the servers
    without `check`."""
    lines = [
        "# Written by bench/check_bench.py.",
        "global",
        "  nbthread 1",
        "  maxconn 4000",
        "defaults",
        "  mode tcp",
        f"  timeout connect {args.timeout_ms}ms",
        f"  timeout check {args.timeout_ms}ms",
        "  timeout client 10s",
        "  timeout server 10s",
        "frontend unused",
        f"  bind {HOST}:{listen_port}",
        "  default_backend checked-0",
    ]
    per_service = -(-args.servers // args.services)
    check = "" if kind == "idle" else f" check inter {args.interval_ms}ms"
    if kind == "https":
        check += " check-ssl verify none"
    for s in range(args.services):
        lines.append(f"backend checked-{s}")
        if kind == "send-expect":
            lines += ["  option tcp-check", '  tcp-check send "PING\\r\\n"', "  tcp-check expect string +PONG"]
        elif kind in ("http", "https"):
            lines += ["  option httpchk GET /health", "  http-check expect status 200"]
        indices = range(s * per_service, min(args.servers, (s + 1) * per_service))
        lines += [f"  server s{i} {server_address(i)}:{target_port}{check}" for i in indices]
    return "\n".join(lines) + "\n"


def cpu_seconds(pid):
    """CPU time of `pid`, all its threads, in seconds: the scheduler's own
    nanosecond count (/proc/PID/task/TID/schedstat), where /proc/PID/stat
    counts in clock ticks (10 ms here: a 10 s window at 5 % holds only 50)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:  # a thread that just ended
            pass
    return total / 1e9


def cpu_split(pid):
    """user and system time of `pid` (all its threads), seconds, in clock
    ticks: only the split between the two is taken from here."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / compare.CLOCK_TICKS, int(fields[12]) / compare.CLOCK_TICKS


def wakeups(pid):
    """Voluntary context switches of the main thread (the loop that runs the
    checks): each is one sleep in epoll_wait, so one wake-up."""
    with open(f"/proc/{pid}/task/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))


def metric_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_file(path, process, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return
        if process.poll() is not None:
            raise BenchError(f"server process exited with status {process.returncode}")
        time.sleep(0.05)
    raise BenchError(f"no {path} after {timeout:.0f}s")


def make_certificate(tmp):
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=check.test", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=30)
    return cert, key


def run_kind(args, kind, processes, tmp, round_index):
    """One measurement: servers, fulcrum (or HAProxy), warm-up, the measured window."""
    name = f"{kind}-{round_index}"
    port_file = os.path.join(tmp, f"{name}.port")
    arrivals_file = os.path.join(tmp, f"{name}.arrivals")
    lifetime = args.warmup + args.duration + 60
    serve_kind = "tcp" if kind == "idle" else kind
    argv = [sys.executable, os.path.abspath(__file__), "--serve", serve_kind, "--servers", str(args.servers),
            "--port-file", port_file, "--arrivals-file", arrivals_file, "--lifetime", str(lifetime)]
    if kind == "https":
        argv += ["--cert", args.cert, "--key", args.key]
    target = processes.start(argv, os.path.join(tmp, f"{name}-servers.log"))
    fulcrum = None
    try:
        wait_file(port_file, target, 60)
        with open(port_file) as f:
            target_port = int(f.read())
        log_path = os.path.join(tmp, f"{name}-balancer.log")
        if args.haproxy:
            config = os.path.join(tmp, f"{name}.cfg")
            compare.write_file(config, haproxy_config(args, kind, target_port, compare.free_ports(1)[0]))
            fulcrum = processes.start([args.haproxy, "-db", "-f", config], log_path)
            time.sleep(1.0)  # no listener to wait for: nothing but checks
            if fulcrum.poll() is not None:
                raise BenchError(f"haproxy exited with status {fulcrum.returncode}: see {log_path}")
        else:
            ports = compare.free_ports(args.services + 1)
            stats_port, listen_ports = ports[0], ports[1:]
            config = os.path.join(tmp, f"{name}.yaml")
            compare.write_file(config, fulcrum_config(args, kind, target_port, listen_ports, stats_port))
            fulcrum = processes.start([args.fulcrum, "-c", config], log_path)
            compare.wait_listening(fulcrum, set(ports), log_path, timeout=60)
        time.sleep(args.warmup)
        loads = [compare.loadavg()]
        busy0 = compare.machine_busy_seconds()
        user0, sys0 = cpu_split(fulcrum.pid)
        cpu0 = cpu_seconds(fulcrum.pid)
        wake0 = wakeups(fulcrum.pid)
        start_ns = time.monotonic_ns()
        fds = []
        end = time.monotonic() + args.duration
        while time.monotonic() < end:  # bounded by `--duration`
            fds.append(compare.fd_count([fulcrum.pid]))
            time.sleep(min(0.25, max(0.0, end - time.monotonic())))
        user1, sys1 = cpu_split(fulcrum.pid)
        cpu1 = cpu_seconds(fulcrum.pid)
        wake1 = wakeups(fulcrum.pid)
        end_ns = time.monotonic_ns()
        busy1 = compare.machine_busy_seconds()
        loads.append(compare.loadavg())
        metrics = ""  # HAProxy's failed checks are not counted here
        if not args.haproxy:
            with urllib.request.urlopen(f"http://{HOST}:{stats_port}/metrics", timeout=10) as response:
                metrics = response.read().decode()
        processes.stop(fulcrum)
        fulcrum = None
        processes.stop(target, grace=20.0)  # SIGTERM: it writes the arrivals first
        if not os.path.exists(arrivals_file):
            raise BenchError(f"{kind}: the servers wrote no arrivals")
        with open(arrivals_file) as f:
            arrivals = [tuple(int(v) for v in line.split()) for line in f]
        resumed = None  # https: the share of the servers' handshakes that resumed a session
        if os.path.exists(arrivals_file + ".tls"):
            with open(arrivals_file + ".tls") as f:
                full, reused = (int(v) for v in f.read().split())
            resumed = reused / (full + reused) if full + reused else None
    finally:
        if fulcrum is not None:
            processes.stop(fulcrum)
        processes.stop(target)
    seconds = (end_ns - start_ns) / 1e9
    cpu = cpu1 - cpu0
    # The user/system split in ticks, scaled to the precise total.
    ticks = (user1 - user0) + (sys1 - sys0)
    user_share = (user1 - user0) / ticks if ticks > 0 else 0.0
    window = [(t, i) for t, i in arrivals if start_ns <= t < end_ns]
    return {
        "kind": kind,
        "round": round_index,
        "seconds": seconds,
        "cpu_percent": 100.0 * cpu / seconds,
        "user_percent": 100.0 * cpu * user_share / seconds,
        "system_percent": 100.0 * cpu * (1.0 - user_share) / seconds,
        "checks": len(window),
        "wakeups_per_second": (wake1 - wake0) / seconds,
        "checks_per_second": len(window) / seconds,
        "cpu_us_per_check": 1e6 * cpu / len(window) if window else None,
        "fds_min": min(fds),
        "fds_max": max(fds),
        "checks_failed": metric_sum(metrics, "fulcrum_server_health_checks_failed_total"),
        "local_errors": metric_sum(metrics, "fulcrum_server_local_errors_total"),
        "servers_up": metric_sum(metrics, "fulcrum_server_up"),
        "machine_busy_cpus": (busy1 - busy0) / seconds,
        "loadavg": loads,
        "spread": spread(window, start_ns, end_ns, args.servers) if window else None,
        "tls_resumed": resumed,
    }


# ---------------------------------------------------------------- the spread

def busiest(times_ns, start_ns, end_ns, width_ms):
    """Arrivals per fixed window of `width_ms`: (mean, p99, max)."""
    width = width_ms * 1_000_000
    buckets = [0] * max(1, (end_ns - start_ns) // width)
    for t in times_ns:
        b = (t - start_ns) // width
        if b < len(buckets):
            buckets[b] += 1
    ordered = sorted(buckets)
    return statistics.fmean(buckets), ordered[int(0.99 * (len(ordered) - 1))], ordered[-1]


def spread(window, start_ns, end_ns, servers):
    times = [t for t, _ in window]
    # The same number of arrivals at uniformly random times (fixed seed): what
    # checks that never coincide on purpose look like.
    rng = random.Random(17)
    uniform = [rng.randrange(start_ns, end_ns) for _ in times]
    result = {}
    for width in WINDOWS_MS:
        mean, p99, top = busiest(times, start_ns, end_ns, width)
        _, u_p99, u_top = busiest(uniform, start_ns, end_ns, width)
        result[f"{width}ms"] = {"mean": mean, "p99": p99, "max": top, "uniform_p99": u_p99, "uniform_max": u_top}
    by_server = {}
    for t, i in window:
        by_server.setdefault(i, []).append(t)
    gaps = sorted((b - a) / 1e6 for ts in by_server.values() for a, b in zip(ts, ts[1:]))
    if gaps:
        result["interval_ms"] = {"min": gaps[0], "p1": gaps[int(0.01 * (len(gaps) - 1))],
                                 "median": gaps[len(gaps) // 2], "p99": gaps[int(0.99 * (len(gaps) - 1))],
                                 "max": gaps[-1]}
    result["servers_seen"] = len(by_server)
    return result


# ---------------------------------------------------------------- report

def median_of(results, kind, key):
    values = [r[key] for r in results if r["kind"] == kind and r.get(key) is not None]
    return statistics.median(values) if values else None


def report(args, results, meta):
    lines = [
        f"check_bench {meta['date']}  commit {meta['commit']}  fulcrum {meta['fulcrum']} {args.label}".rstrip(),
        f"machine: {meta['nproc']} CPUs, {meta['cpu_model']}, kernel {meta['kernel']}",
        f"{args.servers} servers in {args.services} services, interval {args.interval_ms} ms, "
        f"timeout {args.timeout_ms} ms, 1 worker; {args.rounds} rounds of {args.duration} s "
        f"after {args.warmup} s warm-up; load average at start {meta['loadavg_start']}, "
        f"at end {meta['loadavg_end']}",
        "",
        "CPU of the measured process (all threads, scheduler ns; user/sys split from ticks), median of the rounds; 'checks' = minus idle:",
        f"{'kind':<12} {'CPU %':>7} {'user %':>7} {'sys %':>7} {'checks %':>9} {'checks/s':>9} {'us/check':>9} "
        f"{'wakes/s':>8} {'failed':>7} {'local':>6} {'fds':>11}  rounds (CPU %)",
    ]
    idle = median_of(results, "idle", "cpu_percent")
    for kind in args.kinds:
        mine = [r for r in results if r["kind"] == kind]
        if not mine:
            continue
        cpu = median_of(results, kind, "cpu_percent")
        rate = median_of(results, kind, "checks_per_second")
        own = cpu - idle if idle is not None and kind != "idle" else None
        per_check = 1e4 * own / rate if own is not None and rate else None
        fds = f"{min(r['fds_min'] for r in mine)}-{max(r['fds_max'] for r in mine)}"
        lines.append(
            f"{kind:<12} {cpu:7.2f} {median_of(results, kind, 'user_percent'):7.2f} "
            f"{median_of(results, kind, 'system_percent'):7.2f} {compare.fmt(own) if own is not None else '-':>9} "
            f"{rate:9.1f} {compare.fmt(per_check) if per_check else '-':>9} "
            f"{median_of(results, kind, 'wakeups_per_second'):8.0f} {sum(r['checks_failed'] for r in mine):7.0f} {sum(r['local_errors'] for r in mine):6.0f} "
            f"{fds:>11}  {' '.join('%.2f' % r['cpu_percent'] for r in mine)}")
    for kind in args.kinds:
        shares = [r["tls_resumed"] for r in results if r["kind"] == kind and r.get("tls_resumed") is not None]
        if shares:
            lines.append(f"{kind}: handshakes that resumed a session, per round: "
                         + " ".join(f"{100 * v:.1f} %" for v in shares))
    lines += ["", "Spread of the check arrivals at the servers (last round of each kind):"]
    for kind in args.kinds:
        mine = [r for r in results if r["kind"] == kind and r["spread"]]
        if not mine or kind == "idle":
            continue
        s = mine[-1]["spread"]
        for width in WINDOWS_MS:
            w = s[f"{width}ms"]
            lines.append(f"{kind:<12} per {width:>3} ms: mean {w['mean']:.1f}, p99 {w['p99']}, max {w['max']} "
                         f"(uniformly random times: p99 {w['uniform_p99']}, max {w['uniform_max']}; "
                         f"all at once: {args.servers})")
        if "interval_ms" in s:
            g = s["interval_ms"]
            lines.append(f"{kind:<12} each server's interval (ms): min {g['min']:.0f}, p1 {g['p1']:.0f}, "
                         f"median {g['median']:.0f}, p99 {g['p99']:.0f}, max {g['max']:.0f}; "
                         f"servers seen {s['servers_seen']}")
    return "\n".join(lines) + "\n"


def parse_args(argv):
    p = argparse.ArgumentParser(description="CPU cost and spread of fulcrum's health checks at scale (issue 17)")
    p.add_argument("--fulcrum", default=os.path.join(REPO, "build", "fulcrum"), help="fulcrum binary")
    p.add_argument("--servers", type=int, default=1000)
    p.add_argument("--services", type=int, default=4)
    p.add_argument("--interval-ms", type=int, default=1000)
    p.add_argument("--timeout-ms", type=int, default=500)
    p.add_argument("--kinds", default=DEFAULT_KINDS, help=f"comma-separated, of {', '.join(KINDS)}")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every kind")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    p.add_argument("--duration", type=float, default=30.0, help="seconds measured")
    p.add_argument("--haproxy", help="measure this HAProxy binary's checks instead of fulcrum's "
                   "(failed checks then not counted)")
    p.add_argument("--label", default="", help="what the binary is (e.g. before, after), printed in the report")
    p.add_argument("--output", help="report path (default bench/results/checks-DATE.txt, and .json)")
    # The servers' child process.
    p.add_argument("--serve", choices=[k for k in KINDS if k != "idle"], help=argparse.SUPPRESS)
    p.add_argument("--port-file", help=argparse.SUPPRESS)
    p.add_argument("--arrivals-file", help=argparse.SUPPRESS)
    p.add_argument("--lifetime", type=float, default=300.0, help=argparse.SUPPRESS)
    p.add_argument("--cert", help=argparse.SUPPRESS)
    p.add_argument("--key", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.kinds = [k for k in args.kinds.split(",") if k]
    for kind in args.kinds:
        if kind not in KINDS:
            p.error(f"unknown kind {kind}")
    if not 1 <= args.servers <= 5000 or not 1 <= args.services <= args.servers:
        p.error("--servers must be 1..5000 and --services 1..servers")
    if not 1 <= args.rounds <= 20 or not 0 < args.duration <= 600:
        p.error("--rounds must be 1..20 and --duration up to 600 s")
    return args


def main(argv):
    args = parse_args(argv)
    if args.serve:
        return serve(args)
    # Both the servers (a listener and a connection per server) and fulcrum
    # (a check in flight per server) need more than 1024 descriptors.
    compare.raise_fd_limit()
    if args.haproxy:
        args.fulcrum = args.haproxy  # the measured process, in the report
    if not os.access(args.fulcrum, os.X_OK):
        print(f"no fulcrum binary at {args.fulcrum} (ninja -C build fulcrum, or --fulcrum)", file=sys.stderr)
        return 2
    if "https" in args.kinds and shutil.which("openssl") is None:
        print("no openssl command: leaving out https", file=sys.stderr)
        args.kinds.remove("https")
    processes = compare.Processes()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    cpu_model = "unknown"
    with open("/proc/cpuinfo") as f:
        cpu_model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu_model)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"], capture_output=True,
                                 text=True).stdout.strip(),
        "fulcrum": os.path.abspath(args.fulcrum),
        "nproc": os.cpu_count(), "cpu_model": cpu_model, "kernel": os.uname().release,
        "loadavg_start": compare.loadavg(),
    }
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="check-bench-") as tmp:
            if "https" in args.kinds:
                args.cert, args.key = make_certificate(tmp)
            for round_index in range(args.rounds):
                for kind in args.kinds:
                    result = run_kind(args, kind, processes, tmp, round_index)
                    print(f"round {round_index + 1} {kind}: CPU {result['cpu_percent']:.2f} %, "
                          f"{result['checks_per_second']:.0f} checks/s, failed {result['checks_failed']:.0f}, "
                          f"fds {result['fds_min']}-{result['fds_max']}", flush=True)
                    results.append(result)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        processes.stop_all()
    meta["loadavg_end"] = compare.loadavg()
    text = report(args, results, meta)
    print(text, end="")
    output = args.output or os.path.join(REPO, "bench", "results", f"checks-{stamp}.txt")
    compare.write_file(output, text)
    compare.write_file(os.path.splitext(output)[0] + ".json",
                       json.dumps({"meta": meta, "args": {k: v for k, v in vars(args).items()}, "results": results},
                                  indent=1) + "\n")
    print(f"written to {output} (and .json)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
