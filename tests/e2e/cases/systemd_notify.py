"""The sd_notify protocol, spoken to a datagram socket the test owns:
READY=1 with a STATUS= line once listening; RELOADING=1 with MONOTONIC_USEC=
then READY=1 around a reload (also a failed one); WATCHDOG=1 about every
WATCHDOG_USEC/2 from the main loop; STOPPING=1 on SIGTERM. Also through an
abstract socket (`@name`), and nothing at all without NOTIFY_SOCKET.
"""

import os
import re
import signal
import socket
import time

from harness import connect, expect, expect_eof, expect_eq, free_address, greeted_session, recv_exact

DEADLINE = 60


class NotifySocket:
    """A datagram socket collecting notify messages as dicts."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.1)
        self.messages = []

    def collect(self, until, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            message = dict(line.split('=', 1) for line in data.split('\n') if line)
            self.messages.append((time.monotonic(), message))
            if until(message):
                return message
        raise AssertionError(f'no notify message for {what} within {timeout}s; got {self.messages}')


def run(t):
    demo = t.demo_server('n')
    listen = free_address()
    path = t.path('notify.sock')
    notify = NotifySocket(path)
    config = {'global': {'workers': 2},
              'services': [{'name': 'web', 'listen': listen, 'servers': [{'address': demo.address}]}]}
    d = t.daemon(config, env={'NOTIFY_SOCKET': path, 'WATCHDOG_USEC': '200000'}, start=False)
    d.start(wait_ready=False)
    ready = notify.collect(lambda m: 'READY' in m, 10, 'READY=1')
    expect_eq(ready['READY'], '1', 'READY')
    expect(re.fullmatch(r'serving 1 services, \d+ sessions, configuration generation 1', ready.get('STATUS', '')),
           f'STATUS with READY: {ready}')
    d.wait_ready()
    expect_eq(greeted_session(listen)[0], 'n', 'a session once READY was sent')

    # Watchdog pings at about half of WATCHDOG_USEC (0.2 s).
    start = time.monotonic()
    pings = 0
    while time.monotonic() - start < 1.0:
        notify.collect(lambda m: m.get('WATCHDOG') == '1', 2, 'WATCHDOG=1')
        pings += 1
    expect(5 <= pings <= 15, f'{pings} WATCHDOG=1 in 1 s with WATCHDOG_USEC=200000 (about 10 expected)')

    # A reload, then a failed one: RELOADING=1 (with MONOTONIC_USEC) and READY=1 each time.
    for broken in (False, True):
        if broken:
            with open(d.config_path, 'a') as f:
                f.write('bogus_key: 1\n')
        os.kill(d.pid, signal.SIGHUP)
        reloading = notify.collect(lambda m: 'RELOADING' in m, 5, 'RELOADING=1')
        expect_eq(reloading['RELOADING'], '1', 'RELOADING')
        monotonic_us = int(reloading['MONOTONIC_USEC'])
        now_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        expect(0 <= now_us - monotonic_us < 5_000_000, f'MONOTONIC_USEC {monotonic_us} vs now {now_us}')
        again = notify.collect(lambda m: 'READY' in m, 5, 'READY=1 after the reload')
        generation = '2'  # the failed reload keeps generation 2
        expect(again['STATUS'].endswith(f'generation {generation}'), f'STATUS after the reload: {again}')

    # A session open at SIGTERM completes; then STOPPING=1 and exit 0.
    with connect(listen, timeout=10) as sock:
        expect_eq(recv_exact(sock, len(demo.greeting), 'greeting'), demo.greeting, 'greeting before SIGTERM')
        os.kill(d.pid, signal.SIGTERM)
        notify.collect(lambda m: 'STOPPING' in m, 5, 'STOPPING=1')
        sock.sendall(b'still here\n')
        expect_eq(recv_exact(sock, 11, 'echo after SIGTERM'), b'still here\n', 'echo after SIGTERM')
        sock.shutdown(socket.SHUT_WR)
        expect_eof(sock, 'session after SIGTERM')
    expect_eq(d.proc.wait(timeout=10), 0, 'exit code after the last session ended')

    # The order of the lifecycle messages (watchdog pings aside).
    kinds = [next(k for k in ('READY', 'RELOADING', 'STOPPING') if k in m)
             for _, m in notify.messages if any(k in m for k in ('READY', 'RELOADING', 'STOPPING'))]
    expect_eq(kinds, ['READY', 'RELOADING', 'READY', 'RELOADING', 'READY', 'STOPPING'], 'lifecycle messages in order')

    # The abstract namespace works too.
    name = f'@fulcrum-notify-test-{os.getpid()}'
    abstract = NotifySocket('\0' + name[1:])
    d2 = t.daemon({**config, 'services': [{**config['services'][0], 'listen': free_address()}]},
                  name='abstract', env={'NOTIFY_SOCKET': name}, start=False)
    d2.start(wait_ready=False)
    expect_eq(abstract.collect(lambda m: 'READY' in m, 10, 'READY=1 on an abstract socket')['READY'], '1',
              'READY on the abstract socket')
    d2.wait_ready()
    d2.stop()
    expect(not any('WATCHDOG' in m for _, m in abstract.messages), 'WATCHDOG without WATCHDOG_USEC')
