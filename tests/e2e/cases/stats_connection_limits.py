"""The stats port's connection limits (issue 15, 2.1): an absolute request
deadline, a cap on connections that keep-alive clients cannot lock, and
accept errors that pause instead of spinning.

fulcrum with one worker, the stats endpoint, no health checks.

Deadline: a client that trickles a request one byte every 0.25 s (about
25 s for the whole request) is closed by fulcrum before its request is
complete, with no answer: the 5 s deadline counts from the accept and is not
renewed by each byte (it was an idle timeout before, which the trickle kept
alive to the end). The same for a keep-alive connection that got one answer
and then trickles its second request: the deadline starts again after each
answer.

Cap: 100 connections, one after the other, each send GET /healthz,
read the whole answer and stay open (keep-alive). Every one is answered at
once: when all MAX_CONNECTIONS (16) are taken, the newcomer takes the place
of the connection idle the longest. Right after the 100th answer, exactly
connections 0..83 are closed by fulcrum (clean EOF, no other byte) and the
last 16 are open; each of them gets a second answer on its connection.
(Before, 64 connections held the port and the 65th waited for their 5 s
idle timeout.)

Accept errors: the daemon's soft open-file limit is lowered to 3 from
outside (`prlimit --pid`), so its next accept fails with EMFILE, and a
client sends GET /healthz. fulcrum logs exactly one `stats accept paused
error="Too many open files"` and uses less than 0.3 s of CPU over 2 s (it
spun before, with libevent's `[warn] Error from accept() call` lines on
stderr). The limit restored, the waiting client is answered 200 and
`stats accept resumed` is logged once. Every stderr line is in the log
format; SIGTERM: exit 0.
"""

import os
import re
import socket
import subprocess
import threading
import time

from harness import TestFailure, TestSkip, connect, expect, expect_eq, free_address, http_get, log_stream

DEADLINE = 120
MAX_CONNECTIONS = 16  # kMaxStatsConnections
HELD = 100
TRICKLE_GAP = 0.25
ANSWER = re.compile(rb'HTTP/1\.1 200 OK\r\n.*?\r\n\r\nok\n', re.S)


def healthz_request(stats):
    return f'GET /healthz HTTP/1.1\r\nHost: {stats}\r\n\r\n'.encode()


def read_answer(sock, what, timeout=10):
    """Reads one whole /healthz answer (200, body `ok`)."""
    sock.settimeout(timeout)
    data = b''
    while not ANSWER.fullmatch(data):
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            raise TestFailure(f'{what}: no answer within {timeout}s (got {data!r})')
        expect(chunk and len(data) < 4096, f'{what}: no whole /healthz answer: {data + chunk!r}')
        data += chunk


def closed_by_peer(sock):
    """True on a clean EOF, False while the connection is open with nothing
    to read; fails on any byte or a reset."""
    sock.setblocking(False)
    try:
        data = sock.recv(4096)
    except BlockingIOError:
        return False
    except ConnectionResetError:
        raise TestFailure('a held connection was reset instead of closed')
    finally:
        sock.setblocking(True)
    expect_eq(data, b'', 'bytes on an idle held connection')
    return True


def trickle(sock, request):
    """Sends `request` one byte every TRICKLE_GAP seconds until fulcrum closes
    the connection. Returns (bytes sent, bytes received)."""
    received = b''
    sock.setblocking(False)
    for sent in range(len(request)):
        try:
            data = sock.recv(4096)
            if not data:
                return sent, received
            received += data
        except BlockingIOError:
            pass
        except ConnectionResetError:
            return sent, received
        try:
            sock.send(request[sent:sent + 1])
        except (BrokenPipeError, ConnectionResetError):
            return sent, received
        time.sleep(TRICKLE_GAP)
    sock.settimeout(10)
    try:
        received += sock.recv(4096)
    except (socket.timeout, ConnectionResetError):
        pass
    return len(request), received


def deadline_phase(t, stats):
    request = (f'GET /healthz HTTP/1.1\r\nHost: {stats}\r\nX-Pad: ' + 'a' * 60 + '\r\n\r\n').encode()
    results = {}

    def fresh():
        with connect(stats) as sock:
            results['fresh'] = trickle(sock, request)

    def kept_alive():
        with connect(stats) as sock:
            sock.sendall(healthz_request(stats))
            read_answer(sock, 'the first request of the keep-alive connection')
            results['kept alive'] = trickle(sock, request)
    threads = [threading.Thread(target=f, daemon=True) for f in (fresh, kept_alive)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(len(request) * TRICKLE_GAP + 20)
    for what in ('fresh', 'kept alive'):
        expect(what in results, f'{what} trickling client did not finish')
        sent, received = results[what]
        log_stream(f'deadline: {what} trickling connection closed after {sent} of {len(request)} bytes, '
                   f'{len(received)} bytes received')
        expect_eq(received, b'', f'{what} trickling connection: bytes received')
        expect(sent < len(request), f'{what} trickling connection: fulcrum let the whole request '
                                    f'({len(request)} bytes, one every {TRICKLE_GAP}s) arrive')


def cap_phase(t, stats):
    held = []
    for k in range(HELD):
        sock = t.own_socket(connect(stats, timeout=10))
        sock.sendall(healthz_request(stats))
        read_answer(sock, f'held connection {k}')
        held.append(sock)
    closed = [k for k, sock in enumerate(held) if closed_by_peer(sock)]
    log_stream(f'cap: {HELD} connections answered; closed by fulcrum: {len(closed)} '
               f'({closed[:3]}..{closed[-3:]})')
    expect_eq(closed, list(range(HELD - MAX_CONNECTIONS)),
              f'connections closed by fulcrum after {HELD} keep-alive answers')
    for k in range(HELD - MAX_CONNECTIONS, HELD):
        held[k].sendall(healthz_request(stats))
        read_answer(held[k], f'second request of held connection {k}')
    for sock in held:
        sock.close()


def open_file_limits(pid):
    with open(f'/proc/{pid}/limits') as f:
        line = next(line for line in f if line.startswith('Max open files'))
    return line.split()[3:5]


def accept_error_phase(t, d, stats):
    prlimit = '/usr/bin/prlimit'
    if not os.access(prlimit, os.X_OK):
        raise TestSkip('prlimit (util-linux) is not installed')
    soft, hard = open_file_limits(d.pid)
    subprocess.run([prlimit, '--pid', str(d.pid), f'--nofile=3:{hard}'], check=True, timeout=10)
    try:
        cpu = d.cpu_seconds()
        client = t.own_socket(connect(stats))
        client.sendall(healthz_request(stats))
        time.sleep(2.0)
        cpu = d.cpu_seconds() - cpu
    finally:
        subprocess.run([prlimit, '--pid', str(d.pid), f'--nofile={soft}:{hard}'], check=True, timeout=10)
    paused = [r.fields for r in d.logs() if r.message == 'stats accept paused']
    log_stream(f'accept errors: daemon CPU {cpu:.2f}s over 2 s at the limit; stats accept paused lines: {paused}')
    expect(cpu < 0.3, f'the daemon used {cpu:.2f}s of CPU in 2 s while accept() failed (spinning?)')
    expect_eq(paused, [{'address': stats, 'error': 'Too many open files'}], '`stats accept paused` lines')
    read_answer(client, 'the client that waited while accept() failed')
    resumed = d.wait_for_log(lambda r: r.message == 'stats accept resumed')
    expect_eq([r.fields for r in resumed], [{'address': stats}], '`stats accept resumed` lines')
    client.close()


def run(t):
    a = t.demo_server('a')
    stats = free_address()
    d = t.daemon({'global': {'workers': 1}, 'stats': {'listen': stats},
                  'services': [{'name': 'web', 'listen': free_address(),
                                'servers': [{'name': 'a', 'address': a.address}]}]})
    deadline_phase(t, stats)
    cap_phase(t, stats)
    expect_eq(http_get(stats, '/healthz').status, 200, 'GET /healthz after the cap phase')
    accept_error_phase(t, d, stats)
    expect_eq(http_get(stats, '/healthz').status, 200, 'GET /healthz at the end')
    d.stop()
