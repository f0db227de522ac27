"""At the open-file limit fulcrum stops accepting until descriptors free up,
without spinning, and every waiting client is served in the end.

Busy, under `prlimit --nofile=64:64`, far too few for 60 sessions at once
(each holds two sockets): 60 clients connect at the same time; each reads
the greeting, checks an echo, holds 0.5 s and closes. All 60 must complete;
the server must never see all 60 at once (the limit really bit); and the
daemon may use less than 1 s of CPU for all of it.

Saturated and idle, under `prlimit --nofile=256:256`, with health checks
and the stats endpoint: 300 clients connect and stay. fulcrum admits what
its descriptor budget (the `fd_budget` of its `started` line) allows, two
descriptors a session, and no more; the others wait in the backlog. Then,
with nothing moving:
  - the daemon uses less than 0.3 s of CPU over 2 s (it does not spin on
    the listeners it cannot serve), and logs no warning (no `accept paused`:
    its own budget kept it off EMFILE) and no error;
  - every admitted client has its greeting, every waiting one nothing yet,
    and none was closed or reset;
  - /stats answers (descriptors are kept aside for it) with the admitted
    sessions active, and the health checks keep the server up.
Then all 300 clients check an echo and close, the waiting ones as slots
free up: all complete; 20 new sessions afterwards complete too; the access
log has 320 clean `client_close` lines; SIGTERM: exit 0.

Drained pipes, under `prlimit --nofile=64:64` with one worker: 5 clients
ask for 4 MiB downloads and do not read, so each session holds a full pipe
(four descriptors); idle clients spend the rest of the budget and more wait.
Then the 5 read their downloads: their pipes empty, and the descriptors must
go to the waiting clients (sessions active = budget / 2 within 10 s), not sit
in the idle pipe pool until some session ends (they did before the fix).
"""

import os
import socket
import time

from harness import TestFailure, connect, echo_handler, expect, expect_eq, expect_eof, family_of, free_address, get_stats, \
    local_address, log_stream, parse_address, recv_exact, run_threads, wait_until

DEADLINE = 210
CLIENTS = 60
NOFILE = 64
HOLD = 0.5
GREETING = b'hello from limited\n'
SATURATED_NOFILE = 256
SATURATED_CLIENTS = 300
NEW_CLIENTS = 20
STALLED = 5
# More than the kernel can buffer on the way (fulcrum's send buffer to the
# client, at most tcp_wmem's 4 MiB, and the client's receive buffer, pinned
# to 64 KiB below) plus a pipe: so the rest waits in fulcrum's pipe.
DOWNLOAD = 16 * 1024 * 1024
STALLED_RCVBUF = 64 * 1024


def greet_and_echo(conn, peer):
    try:
        conn.sendall(GREETING)
        echo_handler(conn, peer)
    except ConnectionResetError:
        # A health check closes as soon as it connected; with the greeting
        # unread, its kernel answers with a reset. Client sessions are
        # checked from the client side (echo, clean EOF).
        return


def echo_and_close(sock, i):
    """A line and its echo, half-close, clean EOF; returns the line's length."""
    message = f'client {i} checking in\n'.encode()
    sock.sendall(message)
    expect_eq(recv_exact(sock, len(message), 'echo'), message, f'client {i}: echo')
    sock.shutdown(socket.SHUT_WR)
    expect_eof(sock, f'client {i} after its half-close')
    return len(message)


def open_file_limits(pid):
    with open(f'/proc/{pid}/limits') as f:
        line = next(line for line in f if line.startswith('Max open files'))
    return line.split()[3:5]


def busy(t):
    server = t.tcp_server(greet_and_echo, name='echo')
    listen = free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'services': [{'name': 'scarce', 'listen': listen, 'servers': [{'name': 'echo', 'address': server.address}]}],
    }, nofile=NOFILE)
    expect_eq(open_file_limits(d.pid), [str(NOFILE), str(NOFILE)], 'the daemon\'s open-file limits (soft, hard)')

    def client(i):
        with connect(listen, timeout=60) as sock:
            me = local_address(sock)
            expect_eq(recv_exact(sock, len(GREETING), 'greeting'), GREETING, f'client {i}: greeting')
            time.sleep(HOLD)
            return me, echo_and_close(sock, i)

    cpu_before = d.cpu_seconds()
    started = time.monotonic()
    results = dict(run_threads(client, [(i,) for i in range(CLIENTS)], timeout=120))
    elapsed = time.monotonic() - started
    cpu_used = d.cpu_seconds() - cpu_before
    log_stream(f'busy: {CLIENTS} clients done in {elapsed:.2f}s; at most {server.max_active} sessions at once; '
               f'daemon CPU {cpu_used:.2f}s')

    expect_eq(len(results), CLIENTS, 'distinct client addresses')
    expect(server.max_active < CLIENTS,
           f'all {CLIENTS} sessions were open at once under nofile={NOFILE}: the limit did not apply')
    expect(cpu_used < 1.0, f'the daemon used {cpu_used:.2f}s of CPU in {elapsed:.2f}s at its fd limit (spinning?)')

    d.wait_access_count(CLIENTS)
    d.stop()
    lines = d.access_log_lines()
    expect_eq(len(lines), CLIENTS, 'access log lines')
    expect_eq({line['client'] for line in lines}, set(results), 'client addresses in the access log')
    for line in lines:
        sent = results[line['client']]
        expect_eq((line['end'], line['bytes_in'], line['bytes_out']), ('client_close', sent, len(GREETING) + sent),
                  f'end, bytes_in, bytes_out of {line["client"]}')


def has_greeting(sock):
    """True if the greeting is there to read, False if nothing is yet; fails
    on anything else (EOF, a reset, other bytes). Reads nothing."""
    timeout = sock.gettimeout()
    sock.setblocking(False)  # with a timeout, Python would wait for data first
    try:
        data = sock.recv(len(GREETING), socket.MSG_PEEK)
    except BlockingIOError:
        return False
    except ConnectionResetError:
        raise TestFailure('a waiting client was reset')
    finally:
        sock.settimeout(timeout)
    expect(GREETING.startswith(data) and data, f'a waiting client read {data!r} (EOF if empty)')
    return True


def saturated(t):
    server = t.tcp_server(greet_and_echo, name='echo')
    listen, stats = free_address(), free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'stats': {'listen': stats},
        'services': [{'name': 'scarce', 'listen': listen,
                      'health_check': {'interval': '500ms', 'timeout': '500ms', 'rise': 2, 'fall': 2},
                      'servers': [{'name': 'echo', 'address': server.address}]}],
    }, name='fulcrum-256', nofile=SATURATED_NOFILE)
    limit = str(SATURATED_NOFILE)
    expect_eq(open_file_limits(d.pid), [limit, limit], 'the daemon\'s open-file limits (soft, hard)')
    budget = int(d.find_logs('started')[0].fields['fd_budget'])
    admissible = budget // 2
    expect(admissible < SATURATED_CLIENTS, f'a budget of {budget} descriptors admits all {SATURATED_CLIENTS}')

    # Every handshake completes in the kernel's backlog, admitted or not.
    socks = [t.own_socket(connect(listen, timeout=60)) for _ in range(SATURATED_CLIENTS)]

    def active():
        return get_stats(stats)['services'][0]['sessions']['active']
    wait_until(lambda: active() >= admissible, 30, f'{admissible} active sessions')
    time.sleep(1.0)  # anything beyond the budget would be admitted by now
    expect_eq(active(), admissible, f'sessions admitted with a budget of {budget} descriptors')
    wait_until(lambda: sum(has_greeting(s) for s in socks) == admissible, 10,
               f'greetings at the {admissible} admitted clients')

    cpu = d.cpu_seconds()
    time.sleep(2.0)
    cpu = d.cpu_seconds() - cpu
    fds = len(os.listdir(f'/proc/{d.pid}/fd'))
    log_stream(f'saturated: {admissible} of {SATURATED_CLIENTS} admitted (budget {budget} descriptors), '
               f'{fds} descriptors open; daemon CPU {cpu:.2f}s over 2 s')
    expect(cpu < 0.3, f'the daemon used {cpu:.2f}s of CPU in 2 s, saturated and idle (spinning?)')
    expect_eq(sum(has_greeting(s) for s in socks), admissible, 'clients with a greeting (none closed or reset)')
    service = get_stats(stats)['services'][0]
    expect_eq((service['sessions']['active'], service['servers'][0]['state']), (admissible, 'up'),
              '/stats at the limit: active sessions, the server\'s state')
    expect_eq([r.raw for r in d.logs() if r.level in ('warn', 'error')], [], 'warnings and errors at the limit')

    # Everyone checks an echo and closes; the waiting ones get in as slots free up.
    def client(i, sock):
        expect_eq(recv_exact(sock, len(GREETING), 'greeting'), GREETING, f'client {i}: greeting')
        echo_and_close(sock, i)
    started = time.monotonic()
    run_threads(client, list(enumerate(socks)), timeout=120)
    log_stream(f'saturated: all {SATURATED_CLIENTS} clients served in {time.monotonic() - started:.1f}s '
               f'as descriptors freed up')
    for i in range(NEW_CLIENTS):
        with connect(listen, timeout=30) as sock:
            client(SATURATED_CLIENTS + i, sock)

    total = SATURATED_CLIENTS + NEW_CLIENTS
    d.wait_access_count(total)
    d.stop()
    lines = d.access_log_lines()
    expect_eq(len(lines), total, 'access log lines')
    expect_eq({line['end'] for line in lines}, {'client_close'}, 'end reasons')


def download_then_hold(conn, peer):
    """Sends DOWNLOAD bytes if the client asks with `GET\\n`, then holds the
    connection until the client half-closes."""
    if conn.recv(64).startswith(b'GET'):
        conn.sendall(bytes(DOWNLOAD))
    while conn.recv(65536):
        pass


def stalled_client(listen):
    """A client whose receive buffer cannot grow (set before connecting, so
    receive autotuning, which could reach tcp_rmem's maximum, stays off)."""
    host, port = parse_address(listen)
    sock = socket.socket(family_of(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF)
    sock.settimeout(30)
    sock.connect((host, port))
    return sock


def drained_pipes(t):
    server = t.tcp_server(download_then_hold, name='download')
    listen, stats = free_address(), free_address()
    d = t.daemon({
        'global': {'workers': 1},  # one pipe pool
        'stats': {'listen': stats},
        'services': [{'name': 'scarce', 'listen': listen,
                      'servers': [{'name': 'download', 'address': server.address}]}],
    }, name='fulcrum-pipes', nofile=NOFILE)
    budget = int(d.find_logs('started')[0].fields['fd_budget'])

    def active():
        return get_stats(stats)['services'][0]['sessions']['active']

    # Downloads the clients do not read: each session holds a full pipe.
    stalled = [t.own_socket(stalled_client(listen)) for _ in range(STALLED)]
    for sock in stalled:
        sock.sendall(b'GET\n')
    wait_until(lambda: active() == STALLED, 10, f'{STALLED} stalled downloads')
    time.sleep(1.0)  # their pipes fill
    # Idle clients take the rest of the budget; the others wait.
    idle = [t.own_socket(connect(listen, timeout=30)) for _ in range(budget)]
    admitted = STALLED + (budget - STALLED * 4) // 2
    wait_until(lambda: active() == admitted, 10, f'{admitted} sessions: the budget spent')
    time.sleep(1.0)
    expect_eq(active(), admitted, f'sessions with {STALLED} pipes held and a budget of {budget} descriptors')

    # The downloads are read: their pipes empty, and their descriptors must
    # go to the waiting clients, not to the idle pipe pool.
    for sock in stalled:
        recv_exact(sock, DOWNLOAD, 'download')
    wait_until(lambda: active() == budget // 2, 10,
               f'{budget // 2} sessions once the {STALLED} drained pipes gave their descriptors back')
    log_stream(f'drained pipes: {admitted} sessions with {STALLED} pipes held, {budget // 2} once they drained '
               f'(budget {budget} descriptors)')

    for i, sock in enumerate(stalled + idle):
        sock.shutdown(socket.SHUT_WR)
        expect_eof(sock, f'client {i} after its half-close')
    d.wait_access_count(STALLED + budget)
    d.stop()
    expect_eq({line['end'] for line in d.access_log_lines()}, {'client_close'}, 'end reasons')


def run(t):
    busy(t)
    saturated(t)
    drained_pipes(t)
