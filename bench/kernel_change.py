#!/usr/bin/env python3
"""What one change of a kernel-forwarding service costs (issue 18: "a
drain of one server among 1000 under maglev is applied in under 50 ms").

fulcrum runs one `forwarding: nat` TCP service of `--servers` servers
(default 1000, addresses 198.18.128.0/17, no health checks: all up) with
`log_level: debug`, in a network namespace of its own (`kcPID`, deleted
at the end; nothing is sent anywhere: only the rules are measured). Each
`kernel rules applied` line carries `took_us`: rendering the wanted table,
its difference from the installed one, and libnftables' transaction. For
each scheduler the benchmark reports that time for

- start-up (the whole table),
- `--changes` drains of different servers through the admin API, and each
  server made ready again,
- (wrr) as many weight changes,
- a reload that adds one server, and one that removes it again,

and the wall time of the admin request (it answers once the change is
applied). Figures only, never a pass or fail; needs root (a namespace,
nftables). Python 3 standard library only.

    bench/kernel_change.py --fulcrum build-bench/fulcrum
    bench/kernel_change.py --fulcrum build-bench/fulcrum --schedulers maglev --servers 4000
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

TOKEN = "kernel-change-bench"
STATS = "127.0.0.1:9100"
VIP = "198.18.10.10:80"
TOOK = re.compile(r'msg="kernel rules applied".* took_us=(\d+)')


def server_address(index):
    """The index-th server: 198.18.128.1, ... (254 per third octet)."""
    return f"198.18.{128 + index // 254}.{1 + index % 254}:80"


def write_config(path, scheduler, servers):
    lines = [
        "global: {log_level: debug, access_log: false}",
        f"stats: {{listen: \"{STATS}\", admin_token_file: \"{os.path.dirname(path)}/token\"}}",
        "services:",
        "  - name: big",
        "    forwarding: nat",
        f"    listen: \"{VIP}\"",
        f"    scheduler: {scheduler}",
        "    servers:",
    ]
    # Weights 1..3 for wrr, so its slot table is not one slot per server.
    lines += [f"      - {{name: s{i}, address: \"{server_address(i)}\", weight: {1 + i % 3}}}"
              for i in range(servers)]
    with open(path, "w") as config:
        config.write("\n".join(lines) + "\n")


class Daemon:
    """fulcrum in this namespace; took() waits for its next applied change."""

    def __init__(self, binary, config, log_path):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.process = subprocess.Popen([binary, "-c", config], stdout=self.log, stderr=self.log,
                                        start_new_session=True)
        self.seen = 0

    def took(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path) as log:
                found = TOOK.findall(log.read())
            if len(found) > self.seen:
                self.seen += 1
                return int(found[self.seen - 1])
            if self.process.poll() is not None:
                raise RuntimeError(f"fulcrum exited with {self.process.returncode}: see {self.log_path}")
            time.sleep(0.005)
        raise RuntimeError(f"no 'kernel rules applied' within {timeout} s: see {self.log_path}")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        self.log.close()


def post(path, body):
    """POSTs to the admin API; its wall time in ms."""
    request = urllib.request.Request(f"http://{STATS}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()
    return (time.monotonic() - started) * 1000


def wait_stats(timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{STATS}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the stats port never answered")


def measure(binary, scheduler, servers, changes, workdir):
    """{change kind: [(took_us, request ms)]} for one scheduler."""
    config = os.path.join(workdir, f"{scheduler}.yaml")
    write_config(config, scheduler, servers)
    daemon = Daemon(binary, config, os.path.join(workdir, f"{scheduler}.log"))
    results = {}
    try:
        results["start-up (whole table)"] = [(daemon.took(timeout=120), None)]
        wait_stats()
        step = max(1, servers // changes)
        picked = [f"s{i * step}" for i in range(changes)]
        for server in picked:
            for kind, state in (("drain one server", "drain"), ("ready again", "ready")):
                wall = post(f"/api/v1/services/big/servers/{server}", {"state": state})
                results.setdefault(kind, []).append((daemon.took(), wall))
        if scheduler == "wrr":
            for server in picked:
                wall = post(f"/api/v1/services/big/servers/{server}", {"weight": 7})
                results.setdefault("weight of one server", []).append((daemon.took(), wall))
        for kind, count in (("reload adding a server", servers + 1), ("reload removing it", servers)):
            write_config(config, scheduler, count)
            wall = post("/api/v1/reload", {})
            results[kind] = [(daemon.took(), wall)]
    finally:
        daemon.stop()
    return results


def report(scheduler, servers, results):
    print(f"\n{scheduler}, {servers} servers: took_us as ms (render + difference + libnftables), "
          "and the admin request's wall time")
    print(f"  {'change':<26} {'n':>3} {'median':>8} {'min':>8} {'max':>8}   {'request median':>14}")
    for kind, samples in results.items():
        took = [t / 1000 for t, _ in samples]
        walls = [w for _, w in samples if w is not None]
        wall = f"{statistics.median(walls):11.1f} ms" if walls else ""
        print(f"  {kind:<26} {len(took):>3} {statistics.median(took):8.1f} {min(took):8.1f} "
              f"{max(took):8.1f}   {wall:>14}")


def inside(args):
    with tempfile.TemporaryDirectory(prefix="kernel-change-") as workdir:
        with open(os.path.join(workdir, "token"), "w") as token:
            token.write(TOKEN + "\n")
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        everything = {}
        for scheduler in args.schedulers.split(","):
            results = measure(args.fulcrum, scheduler, args.servers, args.changes, workdir)
            report(scheduler, args.servers, results)
            everything[scheduler] = {kind: [{"took_us": t, "request_ms": w} for t, w in samples]
                                     for kind, samples in results.items()}
        if args.json:
            with open(args.json, "w") as out:
                json.dump({"servers": args.servers, "results": everything}, out, indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fulcrum", default="build-bench/fulcrum")
    parser.add_argument("--schedulers", default="maglev,wrr,rr")
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--json", help="also write the samples here")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        return inside(args)
    if os.geteuid() != 0:
        sys.exit("kernel_change.py: needs root (a network namespace, nftables)")
    args.fulcrum = os.path.abspath(args.fulcrum)
    if args.json:
        args.json = os.path.abspath(args.json)
    namespace = f"kc{os.getpid()}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        command = ["ip", "netns", "exec", namespace, sys.executable, os.path.abspath(__file__), "--inside",
                   "--fulcrum", args.fulcrum, "--schedulers", args.schedulers, "--servers", str(args.servers),
                   "--changes", str(args.changes)] + (["--json", args.json] if args.json else [])
        return subprocess.run(command).returncode
    finally:
        subprocess.run(["ip", "netns", "delete", namespace], check=False)


if __name__ == "__main__":
    sys.exit(main())
