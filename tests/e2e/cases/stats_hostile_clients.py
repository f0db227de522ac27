"""Hostile stats clients neither hurt the proxied sessions nor the endpoint.

A service `web` (rr over demo servers a and b) and the stats endpoint.

Phase 1, all at once:
  - 200 slow clients connect to the stats port and send a request that
    never ends, one byte per second each, for SLOW_SECONDS;
  - 20 garbage requests (seeded random bytes, half of them ending in an
    empty line), one request with 100 KiB of headers in one line and one
    with 100 headers of 1 KiB, one GET /stats with a 1 MiB body;
  - 50 concurrent proxied sessions, each uploading 1 MiB and reading the
    greeting and the echo back, verified by SHA-256.
Every session completes and verifies. /stats still answers while the slow
clients are connected. Every garbage, oversized and big-body request is
answered with a 4xx status or closed, never 200, and closed within 10 s
(the request deadline is 5 s). Every slow client is closed by fulcrum while
it trickles, without a byte of an answer: at the latest 5 s after it was
accepted, earlier if a newer client took its place (16 connections at
most). Then the slow clients close and /stats answers within 5 s, with
exact session and byte counts of the 50 sessions.

Phase 2, kept-alive connections: 16 connections (the cap) each get a
/healthz answer and stay open, idle; fulcrum closes each about 5 s after
its answer (the deadline starts again with each answer), with nothing more
sent. (stats_connection_limits shows what happens beyond the cap.)

The daemon stays up throughout and stops cleanly (exit 0).
"""

import random
import re
import socket
import threading
import time

from harness import upload_and_check_echo, MiB, PatternStream, TestFailure, connect, expect, expect_eq, free_address, get_stats, \
    log_stream, read_greeting, run_threads, wait_until

DEADLINE = 120
SESSIONS = 50
SLOW_CLIENTS = 200
SLOW_SECONDS = 15
GARBAGE = 20
REQUEST_DEADLINE = 5  # kStatsRequestDeadline
HOLD_LIMIT = 16  # kMaxStatsConnections
SLOW_REQUEST = b'GET /stats HTTP/1.1\r\nHost: slow\r\nX-Slow: ' + b'a' * 64


def proxied_session(address, n):
    """1 MiB up and its echo down, concurrently; returns the server's NAME."""
    stream = PatternStream(seed=1000 + n, size=MiB)
    with connect(address, timeout=60) as sock:
        name = read_greeting(sock, f'session {n}: greeting')
        upload_and_check_echo(sock, stream, f'session {n}', timeout=30)
    return name


def raw_exchange(address, data, timeout=10):
    """Sends `data` (from a second thread: fulcrum may answer and close
    before it is all sent) and reads until the connection ends or `timeout`.
    Returns (HTTP status of the first response line or None, how it ended:
    'eof', 'reset' or 'timeout', seconds until then)."""
    start = time.monotonic()
    with connect(address, timeout=timeout) as sock:
        def send():
            try:
                sock.sendall(data)
            except OSError:
                pass  # closed by fulcrum: what it answered is read below
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        received = bytearray()
        ended = 'timeout'
        deadline = start + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                ended = 'reset'
                break
            if not chunk:
                ended = 'eof'
                break
            if len(received) < 65536:
                received += chunk
        elapsed = time.monotonic() - start
    m = re.match(rb'HTTP/1\.[01] (\d{3}) ', bytes(received))
    expect(m is not None or not received, f'not an HTTP response: {bytes(received[:200])!r}')
    return (int(m.group(1)) if m else None), ended, elapsed


class SlowClients:
    """`count` connections to the stats port, each sending SLOW_REQUEST one
    byte per second from one thread, until stop() or `seconds` have passed.
    Counts connections that fulcrum closed meanwhile, and bytes received."""

    def __init__(self, address, count, seconds):
        self.socks = []
        for _ in range(count):
            sock = connect(address, timeout=5)
            sock.setblocking(False)
            self.socks.append(sock)
        self.closed_by_peer = 0
        self.received = 0
        self.sent = 0
        self.seconds = seconds
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name='slow-clients', daemon=True)
        self.thread.start()

    def _run(self):
        deadline = time.monotonic() + self.seconds
        alive = list(self.socks)
        i = 0
        while not self.stopping.is_set() and time.monotonic() < deadline and i < len(SLOW_REQUEST):
            byte = SLOW_REQUEST[i:i + 1]
            still = []
            for sock in alive:
                try:
                    data = sock.recv(4096)
                    if data == b'':
                        self.closed_by_peer += 1
                        continue
                    self.received += len(data)
                except BlockingIOError:
                    pass
                except OSError:
                    self.closed_by_peer += 1
                    continue
                try:
                    sock.send(byte)
                except OSError:
                    self.closed_by_peer += 1
                    continue
                still.append(sock)
            alive = still
            i += 1
            self.sent = i
            self.stopping.wait(1.0)

    def close(self):
        """Stops the thread and closes every connection (also at cleanup)."""
        self.stopping.set()
        self.thread.join(5)
        for sock in self.socks:
            sock.close()

    def stop(self):
        self.close()
        expect(not self.thread.is_alive(), 'slow client thread still running')


def garbage_requests():
    rng = random.Random(4242)
    out = []
    for i in range(GARBAGE):
        body = rng.randbytes(rng.randint(1, 4096))
        if i % 2:
            body += b'\r\n\r\n'
        out.append(body)
    return out


def run(t):
    a, b = t.demo_server('a'), t.demo_server('b')
    listen = free_address()
    stats_address = free_address()
    d = t.daemon({'global': {'workers': 2}, 'stats': {'listen': stats_address},
                  'services': [{'name': 'web', 'listen': listen, 'scheduler': 'rr',
                                'servers': [{'name': 'a', 'address': a.address},
                                            {'name': 'b', 'address': b.address}]}]})
    greetings = {'a': len(a.greeting), 'b': len(b.greeting)}

    # --- phase 1
    slow = SlowClients(stats_address, SLOW_CLIENTS, SLOW_SECONDS)
    t.own_socket(slow)
    started = time.monotonic()
    log_stream(f'{SLOW_CLIENTS} slow clients connected')

    hostile = [(f'garbage {i}', data) for i, data in enumerate(garbage_requests())]
    hostile.append(('100 KiB header line',
                    b'GET /stats HTTP/1.1\r\nHost: x\r\nX-Big: ' + b'b' * (100 * 1024) + b'\r\n\r\n'))
    hostile.append(('100 headers of 1 KiB', b'GET /stats HTTP/1.1\r\nHost: x\r\n'
                    + b''.join(b'X-H%d: ' % k + b'h' * 1024 + b'\r\n' for k in range(100)) + b'\r\n'))
    hostile.append(('1 MiB body', b'GET /stats HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n' % MiB
                    + bytes(MiB)))
    outcomes = [None] * len(hostile)

    def hostile_client(k):
        outcomes[k] = raw_exchange(stats_address, hostile[k][1], timeout=2 * REQUEST_DEADLINE)
    hostile_threads = [threading.Thread(target=hostile_client, args=(k,), daemon=True) for k in range(len(hostile))]
    for th in hostile_threads:
        th.start()

    names = run_threads(proxied_session, [(listen, n) for n in range(SESSIONS)], timeout=60, what='session')
    log_stream(f'{SESSIONS} sessions verified after {time.monotonic() - started:.1f}s: '
               f'a {names.count("a")}, b {names.count("b")}')
    expect_eq(sorted(set(names)), ['a', 'b'], 'servers of the sessions')

    before = time.monotonic()
    during = get_stats(stats_address, timeout=5)
    log_stream(f'/stats answered in {time.monotonic() - before:.3f}s with {SLOW_CLIENTS} slow clients connected')
    expect_eq(during['services'][0]['name'], 'web', 'service in /stats')

    for th in hostile_threads:
        th.join(3 * REQUEST_DEADLINE)
    expect(not any(th.is_alive() for th in hostile_threads), 'hostile clients still running')
    for (what, _), (status, ended, elapsed) in zip(hostile, outcomes):
        log_stream(f'{what}: status {status}, {ended} after {elapsed:.2f}s')
        expect(status is None or 400 <= status <= 499, f'{what}: answered with status {status}')
        expect(ended != 'timeout', f'{what}: connection still open after {2 * REQUEST_DEADLINE}s')
    expect(d.running(), f'fulcrum exited with {d.proc.returncode}')

    wait_until(lambda: slow.closed_by_peer == SLOW_CLIENTS, REQUEST_DEADLINE + 3,
               f'fulcrum to close all {SLOW_CLIENTS} slow clients', interval=0.1)
    expect(time.monotonic() - started < SLOW_SECONDS - 1,
           'phase 1 took longer than the slow clients last: raise SLOW_SECONDS')
    expect_eq(slow.received, 0, 'bytes received by the slow clients')
    slow.stop()
    log_stream(f'slow clients closed after sending {slow.sent} bytes each')

    def stats_answers():
        try:
            return get_stats(stats_address, timeout=1)
        except (OSError, TestFailure):
            return None
    stats = wait_until(stats_answers, 5, '/stats to answer after the slow clients closed', interval=0.1)
    d.wait_access_count(SESSIONS)
    stats = get_stats(stats_address)
    web = stats['services'][0]
    expect_eq((web['sessions'], web['bytes']),
              ({'active': 0, 'total': SESSIONS, 'rejected': 0, 'proxy_header_errors': 0,
                'denied': 0, 'limited': 0},
               {'in': SESSIONS * MiB, 'out': SESSIONS * MiB + sum(greetings[n] for n in names)}),
              'web sessions and bytes after the sessions')
    for server in web['servers']:
        expect_eq((server['sessions']['total'], server['bytes']['in']),
                  (names.count(server['name']), names.count(server['name']) * MiB),
                  f'sessions.total and bytes.in of {server["name"]}')

    # --- phase 2: kept-alive connections idle out with the request deadline
    request = f'GET /healthz HTTP/1.1\r\nHost: {stats_address}\r\n\r\n'.encode()
    answer = re.compile(rb'HTTP/1\.1 200 OK\r\n.*?\r\n\r\nok\n', re.S)
    held, answered_at = [], []
    for k in range(HOLD_LIMIT):
        sock = t.own_socket(connect(stats_address, timeout=5))
        sock.sendall(request)
        data = b''
        while not answer.fullmatch(data):
            chunk = sock.recv(4096)
            expect(chunk and len(data) < 4096, f'held connection {k}: no full /healthz answer: {data!r}')
            data += chunk
        held.append(sock)
        answered_at.append(time.monotonic())

    closed_after = []
    for k, sock in enumerate(held):
        sock.settimeout(max(0.1, answered_at[k] + 3 * REQUEST_DEADLINE - time.monotonic()))
        try:
            rest = sock.recv(4096)
        except socket.timeout:
            raise TestFailure(f'held connection {k} still open {3 * REQUEST_DEADLINE}s after its answer')
        except ConnectionResetError:
            rest = b''
        expect_eq(rest, b'', f'held connection {k}: bytes after the answer')
        closed_after.append(time.monotonic() - answered_at[k])
    log_stream(f'held connections closed {min(closed_after):.2f}..{max(closed_after):.2f}s after their answers')
    expect(REQUEST_DEADLINE - 0.5 <= min(closed_after) and max(closed_after) <= REQUEST_DEADLINE + 2.5,
           f'idle held connections closed {min(closed_after):.2f}..{max(closed_after):.2f}s after their answers, '
           f'expected about {REQUEST_DEADLINE}s')
    for sock in held:
        sock.close()
    expect(d.running(), f'fulcrum exited with {d.proc.returncode}')
    get_stats(stats_address)
    d.stop()
