#!/usr/bin/env python3
"""Keep-alive requests through relay_experiment (epoll, io_uring, sockmap),
fulcrum, HAProxy and nginx `stream`, interleaved, on loopback.

The experiments of docs/performance.md ("Experiment: batched submission with
io_uring", "Experiment: sockmap redirection"): does submitting several
sessions' receives and sends in one io_uring_enter, or letting the kernel
redirect each message to the peer socket (BPF sockmap), cut the CPU per
keep-alive request? Reuses compare.py's real server (nginx), balancer
configurations, wrk runner and /proc helpers.

With sockmap the relay process hardly runs: the redirect runs in the
softirq of whoever sent the message (wrk, the real server) and in
kworkers, so the relay process's CPU says little. Every run therefore also
records the whole machine's busy CPU per request (/proc/stat), the CPUs
busy, wrk's CPU (getrusage of reaped children) and the real server's.

    bench/relay_experiment.py --self-check        # relay_experiment is byte-exact
    bench/relay_experiment.py                     # the measurement

Python 3 standard library only. Traffic goes to 127.0.0.1 only. Every
process started here is stopped through its own process group (compare.py's
Processes), by pid.
"""

import argparse
import hashlib
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (the bench directory is not a package)
from compare import HOST, REPO, Balancer, BenchError  # noqa: E402

# Variant label -> relay_experiment arguments (besides --listen/--backend).
EXPERIMENT_VARIANTS = {
    "epoll": ["--mode", "epoll"],
    "uring": ["--mode", "uring", "--uring-flags", "plain"],
    "uring-defer": ["--mode", "uring", "--uring-flags", "defer"],
    "uring-defer-pf": ["--mode", "uring", "--uring-flags", "defer", "--poll-first"],
    "uring-coop": ["--mode", "uring", "--uring-flags", "coop"],
    "uring-sqpoll": ["--mode", "uring", "--uring-flags", "sqpoll"],
    # BPF sockmap redirection (relay_sockmap.bpf.c): the kernel relays,
    # user space only accepts, connects and closes.
    "sockmap": ["--mode", "sockmap", "--sockmap-attach", "stream"],
    "sockmap-verdict": ["--mode", "sockmap", "--sockmap-attach", "verdict"],
}
PEER_VARIANTS = ("fulcrum", "haproxy", "nginx")
DEFAULT_VARIANTS = "epoll,uring,uring-defer,fulcrum,haproxy,nginx"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default=DEFAULT_VARIANTS,
                   help=f"comma separated, from {', '.join(list(EXPERIMENT_VARIANTS) + list(PEER_VARIANTS))} "
                        f"(default {DEFAULT_VARIANTS})")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    p.add_argument("--connections", default="50", help="wrk -c values, comma separated (default 50)")
    p.add_argument("--strace-duration", type=int, default=3,
                   help="seconds of the wrk run under strace -c per variant (0: skip; default 3)")
    p.add_argument("--binary", default=os.path.join(REPO, "build-release", "bench", "relay_experiment"))
    p.add_argument("--fulcrum-binary", default=os.path.join(REPO, "build-release", "fulcrum"))
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results"))
    p.add_argument("--self-check", action="store_true",
                   help="only check that relay_experiment relays byte-exactly in every mode")
    args = p.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in args.variants:
        if v not in EXPERIMENT_VARIANTS and v not in PEER_VARIANTS:
            p.error(f"unknown variant {v!r}")
    args.connections = [int(c) for c in args.connections.split(",")]
    if args.rounds < 1 or args.duration < 1 or not all(1 <= c <= 1000 for c in args.connections):
        p.error("rounds, duration and connections must be positive (connections ≤ 1000)")
    return args


# ---------------------------------------------------------------- starting the relays

def start_experiment(processes, binary, variant, backend_port, tmp):
    port, = compare.free_ports(1)
    log = os.path.join(tmp, f"{variant}.log")
    argv = [binary, *EXPERIMENT_VARIANTS[variant], "--listen", f"{HOST}:{port}", "--backend", f"{HOST}:{backend_port}"]
    process = processes.start(argv, log)
    compare.wait_listening(process, {port}, log)
    return process, port


def start_peer(processes, variant, fulcrum_binary, backends, tmp):
    """fulcrum, HAProxy (splice-auto: recv/send for small messages) or nginx
    stream with 1 worker and compare.py's configuration; returns the process
    and the port of its `http` service."""
    tput, http, idle = compare.free_ports(3)
    ports = {"tput": tput, "http": http, "idle": idle}
    if variant == "fulcrum":
        lb = Balancer("fulcrum", "fulcrum", fulcrum_binary, ports=ports)
    elif variant == "haproxy":
        lb = Balancer("haproxy-auto", "haproxy", "haproxy", splice="auto", ports=ports)
    else:
        lb = Balancer("nginx", "nginx", "nginx", ports=ports)
    running = compare.start_balancer(processes, lb, 1, backends, tmp)
    return running.process, http


# ---------------------------------------------------------------- self-check

def echo_server(listener, stop):
    """Echoes every connection until EOF (one thread per connection)."""
    def serve(conn):
        with conn:
            while chunk := conn.recv(65536):
                conn.sendall(chunk)

    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def check_client(port, seed, size, result):
    """Sends `size` pseudo-random bytes in random chunk sizes (up to 64 KiB)
    while reading the echo back in random sizes, pausing now and then so
    that the relay's sends find full socket buffers; compares the sha256."""
    rng = random.Random(seed)
    data = rng.randbytes(size)
    sent_hash = hashlib.sha256(data).hexdigest()
    with socket.create_connection((HOST, port), timeout=30) as s:
        def writer():
            offset = 0
            while offset < size:
                n = rng.randint(1, 65536)
                s.sendall(data[offset:offset + n])
                offset += n

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        received = hashlib.sha256()
        got = 0
        reads = 0
        read_rng = random.Random(seed + 1)
        while got < size:
            if reads in (1, 50, 500):
                time.sleep(0.5)  # let every buffer on the way fill up
            chunk = s.recv(read_rng.randint(1, 100000))
            if not chunk:
                break
            received.update(chunk)
            got += len(chunk)
            reads += 1
        thread.join(timeout=30)
    result[seed] = (got == size and received.hexdigest() == sent_hash, got, size)


def self_check(args):
    compare.raise_fd_limit()
    processes = compare.Processes()
    stop = threading.Event()
    listener = socket.create_server((HOST, 0))
    backend_port = listener.getsockname()[1]
    server = threading.Thread(target=echo_server, args=(listener, stop), daemon=True)
    server.start()
    ok = True
    with tempfile.TemporaryDirectory(prefix="relay-experiment-") as tmp:
        try:
            for variant in EXPERIMENT_VARIANTS:
                if variant == "uring-sqpoll":
                    continue  # same code path as the others, one more flag
                process, port = start_experiment(processes, args.binary, variant, backend_port, tmp)
                fds_idle = compare.fd_count([process.pid])
                results = {}
                clients = [threading.Thread(target=check_client, args=(port, seed, size, results))
                           for seed, size in ((1, 24 << 20), (3, 8 << 20), (5, 1 << 20), (7, 1))]
                started = time.monotonic()
                for c in clients:
                    c.start()
                for c in clients:
                    c.join(timeout=120)
                passed = len(results) == len(clients) and all(r[0] for r in results.values())
                # Every session closed both its sockets once the clients left.
                closed = compare.wait_for(lambda: compare.fd_count([process.pid]) == fds_idle, 5.0)
                passed &= bool(closed)
                ok &= passed
                detail = ", ".join(f"{r[1]}/{r[2]} bytes {'ok' if r[0] else 'MISMATCH'}"
                                   for _, r in sorted(results.items()))
                print(f"{variant:15} {'pass' if passed else 'FAIL'} in {time.monotonic() - started:.1f}s: {detail}; "
                      f"descriptors back to {fds_idle}: {'yes' if closed else 'NO'}")
                log_text = compare.tail(os.path.join(tmp, variant + ".log")).strip()
                if log_text and process.poll() is None:
                    print(f"{variant}: relay's output:\n{log_text}")
                if process.poll() is not None:
                    print(f"{variant}: relay exited with {process.returncode}:\n{compare.tail(os.path.join(tmp, variant + '.log'))}")
                    ok = False
                processes.stop(process)
        finally:
            processes.stop_all()
            stop.set()
            listener.close()
    sys.exit(0 if ok else 1)


# ---------------------------------------------------------------- measuring

def strace_calls(pids, port, connections, duration, wrk_script, tmp, label):
    """System calls of `pids` (all threads) during one wrk run, from strace
    -c; returns ({name: calls}, requests). Only the counts matter: strace
    slows everything down."""
    out = os.path.join(tmp, f"strace-{label}-c{connections}.txt")
    argv = ["strace", "-c", "-f", "-o", out]
    for pid in pids:
        argv += ["-p", str(pid)]
    tracer = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(1.0)  # attached
        wrk = compare.run_wrk(port, False, duration, 1, connections, wrk_script)
    finally:
        tracer.send_signal(signal.SIGINT)  # detach and write the summary
        try:
            tracer.wait(timeout=20)
        except subprocess.TimeoutExpired:
            tracer.kill()
            tracer.wait()
    calls = {}
    with open(out) as f:
        for line in f:
            fields = line.split()
            # % time, seconds, usecs/call, calls, [errors], syscall
            if len(fields) >= 5 and re.fullmatch(r"[\d.]+", fields[0]) and fields[-1] != "total":
                calls[fields[-1]] = int(fields[3])
    return calls, wrk["requests"]


def round_ratio(samples, connections, variant, peer, key="rps"):
    """Median over the rounds of variant's figure / peer's figure in the same
    round, as text ('' without the peer)."""
    peer_value = {r["round"]: r[key] for r in samples.get((connections, peer), [])}
    ratios = [r[key] / peer_value[r["round"]] for r in samples.get((connections, variant), [])
              if r["round"] in peer_value]
    return f"{statistics.median(ratios):.2f}×" if ratios else ""


def measure(args):
    compare.raise_fd_limit()
    for tool in ["wrk", "nginx"] + (["strace"] if args.strace_duration else []) + \
            (["haproxy"] if "haproxy" in args.variants else []):
        if not compare.shutil.which(tool):
            sys.exit(f"missing {tool}")
    if any(v in EXPERIMENT_VARIANTS for v in args.variants) and not os.access(args.binary, os.X_OK):
        sys.exit(f"{args.binary} not built (needs liburing-dev or libbpf-dev and clang; see bench/README.md)")
    if "fulcrum" in args.variants and not os.access(args.fulcrum_binary, os.X_OK):
        sys.exit(f"{args.fulcrum_binary} not built")

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    os.makedirs(args.out, exist_ok=True)
    name = "relay-experiment-sockmap" if any(v.startswith("sockmap") for v in args.variants) else "relay-experiment"
    out_path = os.path.join(args.out, f"{name}-{stamp}.txt")
    lines = []

    def emit(text=""):
        print(text, flush=True)
        lines.append(text)

    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    emit(f"relay_experiment.py {' '.join(sys.argv[1:])}")
    emit(f"date {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, commit {commit}, "
         f"kernel {os.uname().release}, {os.cpu_count()} CPUs")
    emit(f"loadavg before: {compare.loadavg()}")
    emit(f"variants: {', '.join(args.variants)}; wrk -t1 -c{{{','.join(map(str, args.connections))}}} "
         f"-d{args.duration}s keep-alive, {args.rounds} rounds interleaved")

    processes = compare.Processes()
    samples = {}  # (connections, variant) -> list of dicts
    syscalls = {}  # (connections, variant) -> (calls, requests)
    with tempfile.TemporaryDirectory(prefix="relay-experiment-") as tmp:
        try:
            ns = types.SimpleNamespace(server_workers=1, only=["keepalive"])
            backends = compare.start_backends(processes, ns, tmp)
            server_pids = compare.process_family(backends.http_pid)  # nginx master and worker
            wrk_script = os.path.join(tmp, "report.lua")
            compare.write_file(wrk_script, compare.WRK_SCRIPT)
            relays = {}
            for variant in args.variants:
                if variant in EXPERIMENT_VARIANTS:
                    process, port = start_experiment(processes, args.binary, variant, backends.http[0], tmp)
                else:
                    process, port = start_peer(processes, variant, args.fulcrum_binary, backends, tmp)
                compare.http_probe(port)
                relays[variant] = (process, port)
                emit(f"{variant}: pid {process.pid}, port {port}")

            for connections in args.connections:
                for round_ in range(1, args.rounds + 1):
                    # A B C, C B A, ...: a drift of the machine's load within
                    # a round does not always favour the same variants.
                    order = args.variants if round_ % 2 else list(reversed(args.variants))
                    for variant in order:
                        process, port = relays[variant]
                        pids = compare.process_family(process.pid)
                        time.sleep(1.0)  # settle: the previous run's sessions close
                        meter = compare.CpuMeter(pids, server_pids)
                        try:
                            wrk = compare.run_wrk(port, False, args.duration, 1, connections, wrk_script)
                        except BenchError as error:
                            emit(f"c{connections} round {round_} {variant}: {error}")
                            continue
                        used = compare.with_derived({**wrk, **meter.used()})
                        wrk["cpu_us_per_req"] = used["cpu_us_per_request"]
                        wrk["machine_us_per_req"] = used["machine_cpu_us_per_request"]
                        wrk["cpus_busy"] = used["machine_busy_cpus"]
                        wrk["client_us_per_req"] = used["client_cpu_us_per_request"]
                        wrk["server_us_per_req"] = used["server_cpu_us_per_request"]
                        wrk["round"] = round_
                        samples.setdefault((connections, variant), []).append(wrk)
                        emit(f"c{connections} round {round_} {variant:15} {wrk['rps']:9.0f} req/s  "
                             f"p50 {wrk['p50_ms']:.3f} ms  p99 {wrk['p99_ms']:.3f} ms  "
                             f"relay cpu {wrk['cpu_us_per_req']:.2f} us/req  "
                             f"machine {wrk['machine_us_per_req']:.2f} us/req ({wrk['cpus_busy']:.2f} CPUs)  "
                             f"wrk {wrk['client_us_per_req']:.2f}  server {wrk['server_us_per_req']:.2f} us/req  "
                             f"errors {wrk['errors']}  loadavg {compare.loadavg()}")
                if args.strace_duration:
                    for variant in args.variants:
                        process, port = relays[variant]
                        time.sleep(1.0)
                        calls, requests = strace_calls(compare.process_family(process.pid), port, connections,
                                                       args.strace_duration, wrk_script, tmp, variant)
                        syscalls[(connections, variant)] = (calls, requests)
                        top = sorted(calls.items(), key=lambda kv: -kv[1])[:6]
                        emit(f"c{connections} strace {variant:15} {requests} requests: " +
                             ", ".join(f"{name} {n} ({n / requests:.3f}/req)" for name, n in top))
        finally:
            processes.stop_all()

    emit(f"loadavg after: {compare.loadavg()}")
    emit()
    emit("Medians over the rounds (relay CPU: relay process user+sys / requests; machine: /proc/stat busy "
         "time of all CPUs / requests, and busy seconds per second; wrk: its user+sys; server: the nginx "
         "real server's; syscalls: strace -c run; 'vs': median of the per-round ratios)")
    for connections in args.connections:
        emit()
        emit(f"wrk -t1 -c{connections}")
        emit("| variant | req/s | vs haproxy | vs nginx | p50 ms | p99 ms | relay CPU µs/req | CPU vs epoll | "
             "machine µs/req | machine vs haproxy | machine vs nginx | CPUs busy | wrk µs/req | server µs/req | "
             "syscalls/req | rounds |")
        emit("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        # Ratios: median over the rounds of this variant's figure over the
        # other's in the same round (less sensitive to a load change between
        # rounds than a ratio of medians).
        medians = {}
        for variant in args.variants:
            runs = samples.get((connections, variant), [])
            if runs:
                medians[variant] = {k: statistics.median(r[k] for r in runs)
                                    for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "machine_us_per_req",
                                              "cpus_busy", "client_us_per_req", "server_us_per_req")}
        for variant in args.variants:
            m = medians.get(variant)
            if not m:
                emit(f"| {variant} | no data | | | | | | | | | | | | | | 0 |")
                continue
            ratio = {peer: round_ratio(samples, connections, variant, peer) for peer in ("haproxy", "nginx")}
            calls = syscalls.get((connections, variant))
            per_req = f"{sum(calls[0].values()) / calls[1]:.2f}" if calls and calls[1] else ""
            machine_ratio = {peer: round_ratio(samples, connections, variant, peer, "machine_us_per_req")
                             for peer in ("haproxy", "nginx")}
            emit(f"| {variant} | {m['rps']:.0f} | {ratio['haproxy']} | {ratio['nginx']} | {m['p50_ms']:.3f} | "
                 f"{m['p99_ms']:.3f} | {m['cpu_us_per_req']:.2f} | "
                 f"{round_ratio(samples, connections, variant, 'epoll', 'cpu_us_per_req')} | "
                 f"{m['machine_us_per_req']:.2f} | {machine_ratio['haproxy']} | {machine_ratio['nginx']} | "
                 f"{m['cpus_busy']:.2f} | {m['client_us_per_req']:.2f} | {m['server_us_per_req']:.2f} | {per_req} | "
                 f"{len(samples[(connections, variant)])} |")
    with open(out_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"\nwritten {out_path}")


def main(argv):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        self_check(args) if args.self_check else measure(args)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main(sys.argv[1:])
