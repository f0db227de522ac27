#!/usr/bin/env python3
"""How long a binary upgrade in place holds new clients back (issue 22),
by the number of established sessions it carries over. Figures only: it
never passes or fails.

For each count of idle sessions (opened through fulcrum to the demo echo
server and kept open), one SIGUSR2 upgrade to the other build:
  - hand-over: from the old binary's `upgrading` line to the new one's
    `upgraded` line (the workers are stopped all along: the exec, the new
    image's start, adopting every session);
  - request to serve: from SIGUSR2 to `upgraded` (includes the new
    binary's --check and the 50 ms left for an API answer);
  - a probe client connecting and exchanging one line every 2 ms
    throughout: its slowest round trip, and how many failed (always 0 is
    the point: they wait in the listen backlog);
  - every carried session still echoes afterwards.

    python3 bench/upgrade_pause.py [--fulcrum build-bench/fulcrum --next build-bench/fulcrum-next]

Python 3 standard library; uses the e2e harness. Keep the counts under the
open-file limit: each session holds a descriptor here, two in fulcrum and
one in the demo server.
"""

import argparse
import os
import shutil
import signal
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'tests', 'e2e'))
import harness  # noqa: E402
from harness import connect, free_address, install_binary, log_time, read_greeting, recv_exact  # noqa: E402

COUNTS = (0, 100, 1000, 4000)


class Probe(threading.Thread):
    def __init__(self, address):
        super().__init__(daemon=True)
        self.address = address
        self.stop = threading.Event()
        self.slowest = 0.0
        self.done = 0
        self.failed = 0

    def run(self):
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                with connect(self.address, timeout=10) as sock:
                    read_greeting(sock)
                    sock.sendall(b'probe\n')
                    recv_exact(sock, 6, 'probe echo')
                self.done += 1
            except Exception:  # noqa: BLE001 -- counted: the figure is how many
                self.failed += 1
            self.slowest = max(self.slowest, time.monotonic() - began)
            time.sleep(0.002)


def measure(t, builds, count):
    demo = t.demo_server('echo')
    os.makedirs(t.path('bin'), exist_ok=True)
    executable = t.path('bin/fulcrum')
    install_binary(builds[0], executable)
    listen = free_address()
    d = t.daemon({'global': {'workers': 2, 'access_log': False},
                  'services': [{'name': 'bench', 'listen': listen,
                                'servers': [{'name': 'echo', 'address': demo.address}]}]},
                 name=f'fulcrum-{count}', executable=executable)
    sessions = []
    for _ in range(count):
        sock = connect(listen, timeout=10)
        read_greeting(sock)
        sessions.append(sock)
    probe = Probe(listen)
    probe.start()
    time.sleep(0.3)
    install_binary(builds[1], executable)
    asked = time.time()
    d.send_signal(signal.SIGUSR2)
    upgraded = d.wait_for_log(lambda r: r.message == 'upgraded', timeout=60)[0]
    upgrading = d.find_logs('upgrading')[0]
    time.sleep(0.3)
    probe.stop.set()
    probe.join(15)
    for sock in sessions:
        sock.sendall(b'still here\n')
    alive = 0
    for sock in sessions:
        alive += recv_exact(sock, 11, 'echo') == b'still here\n'
        sock.close()
    handover = (log_time(upgraded) - log_time(upgrading)) * 1000
    request = (log_time(upgraded) - asked) * 1000
    print(f'{count:6d} sessions: hand-over {handover:6.1f} ms, SIGUSR2 to serving {request:6.1f} ms, '
          f'probe: {probe.done} round trips, slowest {probe.slowest * 1000:6.1f} ms, {probe.failed} failed; '
          f'{alive}/{count} sessions echo after', flush=True)
    d.stop()
    demo.kill()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--fulcrum', default=os.path.join(REPO, 'build-bench', 'fulcrum'))
    parser.add_argument('--next', default=os.path.join(REPO, 'build-bench', 'fulcrum-next'))
    parser.add_argument('--demo-server', default=None)
    args = parser.parse_args()
    os.environ['DEMO_SERVER'] = args.demo_server or os.path.join(os.path.dirname(args.fulcrum),
                                                                 'fulcrum-demo-server')
    os.environ.setdefault('FULCRUM', args.fulcrum)
    t = harness.TestContext('upgrade-pause')
    try:
        for count in COUNTS:
            measure(t, (args.fulcrum, args.next), count)
    finally:
        t.cleanup()
        shutil.rmtree(t.tmpdir, ignore_errors=True)


if __name__ == '__main__':
    main()
