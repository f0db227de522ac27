"""`on_server_down: close` resets the sessions of a server marked down, and
only those; `keep` leaves them open.

Three servers s1, s2, s3 (each greets a connection with its name and a
newline, then echoes until EOF, and records how a connection that sent
something, so not a health check, ended); one
fulcrum (two workers, rr, idle timeout 60 s, health checks every 200 ms,
timeout 100 ms, rise 2, fall 2) per run. Each run:
  1. 9 client sessions, idle after the greeting and one echoed line: 3 on
     each server (rr).
  2. s3 is put in maint through the admin API, then stops listening; s1
     stops listening. New connects to both are refused, their accepted
     connections stay open and silent: servers dead without a word.
  3. s1 and s3 fail their checks (one `server down` line each, reason
     `connect refused`): s1 goes down, s3 stays in maint (the operator
     wins).
With `on_server_down: close`:
  - every client session on s1 is reset (ConnectionResetError, no EOF and
    no byte) within fall x interval + 1 s = 1.4 s of s1's listener closing;
    s1's side of each is reset too;
  - sessions on s2 (up) and s3 (maint: only `down` closes) stay: each then
    echoes 64 KiB of random bytes byte-exact and ends cleanly;
  - access log: end=server_down for the 3 sessions on s1 (and their
    server=s1), client_close for the 6 others; /stats: s1
    `sessions.closed_on_down` 3, s2 and s3 0; `fulcrumctl servers` says
    `closed      web/s1: 3 sessions closed when it went down` below its
    table, and nothing of the kind for s2 and s3.
With `on_server_down: keep` (the same steps): 1 s after s1 went down, the 3
sessions on s1 are still open (no byte, no EOF, no reset); then each still
relays a line both ways through the dead server's open connection, the test
closes it (s1 sees EOF), and every session ends client_close;
`closed_on_down` is 0 and fulcrumctl prints no `closed` line.
"""

import os
import select
import socket
import threading
import time
import urllib.parse

from harness import connect, expect, expect_eq, free_address, fulcrumctl_notes, get_stats, health_transitions, \
    http_request, log_stream, wait_until

DEADLINE = 90
TOKEN = 'server-down-close-token'
INTERVAL, FALL = 0.2, 2
RESET_BY = FALL * INTERVAL + 1.0  # after s1 stops listening
SERVERS = ('s1', 's2', 's3')
PER_SERVER = 3
PAYLOAD = 64 * 1024


def greeting_server(t, name, outcomes, lock):
    """Greets with its name, echoes until EOF; records 'eof' or 'reset' for
    the connections that sent something (not the health checks)."""
    def handler(conn, peer):
        outcome = 'eof'
        spoke = False
        try:
            conn.sendall(name.encode() + b'\n')
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                spoke = True
                conn.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            outcome = 'reset'
        if spoke:
            with lock:
                outcomes.append(outcome)
    return t.tcp_server(handler, name=name)


def read_line(sock):
    line = b''
    while not line.endswith(b'\n'):
        chunk = sock.recv(1)
        expect(chunk, f'EOF after {line!r} while reading a greeting')
        line += chunk
    return line[:-1].decode()


def post_state(stats, server, state):
    path = f'/api/v1/services/web/servers/{urllib.parse.quote(server)}'
    reply = http_request(stats, 'POST', path, body=f'{{"state":"{state}"}}',
                         headers={'Content-Type': 'application/json', 'Authorization': f'Bearer {TOKEN}'})
    expect_eq(reply.status, 200, f'{state} {server} through the admin API: {reply.body!r}')


def echo_exact(sock, what):
    """64 KiB of random bytes out and back, byte-exact; then a clean end."""
    payload = os.urandom(PAYLOAD)
    sender = threading.Thread(target=sock.sendall, args=(payload,), daemon=True)
    sender.start()
    got = b''
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        expect(chunk, f'{what}: EOF after {len(got)} of {len(payload)} echoed bytes')
        got += chunk
    sender.join(10)
    expect(got == payload, f'{what}: the echo differs from what was sent')
    sock.shutdown(socket.SHUT_WR)
    expect_eq(sock.recv(1), b'', f'{what}: EOF after the echo')


def still_open(sock):
    """Nothing to read, no EOF, no reset: the session is open and silent."""
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def scenario(t, policy):
    log_stream(f'--- on_server_down: {policy}')
    lock = threading.Lock()
    outcomes = {name: [] for name in SERVERS}
    servers = {name: greeting_server(t, name, outcomes[name], lock) for name in SERVERS}
    listen, stats = free_address(), free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'stats': {'listen': stats, 'admin_token_file': t.token_file(TOKEN + '\n', name=f'{policy}.token')},
        'services': [{'name': 'web', 'listen': listen, 'scheduler': 'rr', 'timeouts': {'idle': '60s'},
                      'on_server_down': policy,
                      'health_check': {'interval': '200ms', 'timeout': '100ms', 'rise': 2, 'fall': FALL},
                      'servers': [{'name': name, 'address': servers[name].address} for name in SERVERS]}],
    }, name=f'fulcrum-{policy}')

    # 1. Idle sessions, three per server.
    sessions = {name: [] for name in SERVERS}
    for _ in range(PER_SERVER * len(SERVERS)):
        sock = connect(listen, timeout=20)
        name = read_line(sock)
        sock.sendall(b'hello\n')
        expect_eq(read_line(sock), 'hello', f'echo by {name}')
        sessions[name].append(sock)
    expect_eq({name: len(socks) for name, socks in sessions.items()}, {name: PER_SERVER for name in SERVERS},
              'sessions per server (rr)')

    # 2. s3 in maint, then s3 and s1 dead without a word.
    post_state(stats, 's3', 'maint')
    servers['s3'].stop_listening()
    servers['s1'].stop_listening()
    dead_at = time.monotonic()

    # 3. s1 goes down, s3 stays in maint.
    wait_until(lambda: health_transitions(d, 'web', 's1'), RESET_BY, f's1 marked down within {RESET_BY:g}s')
    expect_eq([(x['state'], x['reason']) for x in health_transitions(d, 'web', 's1')], [('down', 'connect refused')],
              'health transitions of s1')
    ends = {}
    if policy == 'close':
        for i, sock in enumerate(sessions['s1']):
            # At least a little: a timeout of 0 would make the socket non-blocking.
            sock.settimeout(max(0.01, dead_at + RESET_BY - time.monotonic()))
            try:
                data = sock.recv(1)
                ends[i] = 'eof' if not data else f'bytes {data!r}'
            except ConnectionResetError:
                ends[i] = 'reset'
            except socket.timeout:
                ends[i] = 'still open'
            ends[i] = (ends[i], round(time.monotonic() - dead_at, 3))
        log_stream(f'client sessions on s1 (end, seconds after s1 died): {ends}')
        expect_eq([end for end, _ in ends.values()], ['reset'] * PER_SERVER,
                  f'how the clients on s1 saw their session end within {RESET_BY:g}s')
        wait_until(lambda: len(outcomes['s1']) == PER_SERVER, 10, "s1's side of its sessions to end")
        expect_eq(outcomes['s1'], ['reset'] * PER_SERVER, "how s1's side of its sessions ended")
    else:
        time.sleep(max(0.0, dead_at + RESET_BY + 1.0 - time.monotonic()))
        expect_eq([still_open(sock) for sock in sessions['s1']], [True] * PER_SERVER,
                  f'client sessions on s1 open {RESET_BY + 1:g}s after it died')
        expect_eq(outcomes['s1'], [], "s1's side of its sessions ended")
        for i, sock in enumerate(sessions['s1']):
            sock.sendall(b'still here\n')
            expect_eq(read_line(sock), 'still here', f'line echoed by dead s1 on session {i}')
            sock.close()
        wait_until(lambda: len(outcomes['s1']) == PER_SERVER, 10, "s1's side of its sessions to end")
        expect_eq(outcomes['s1'], ['eof'] * PER_SERVER, "how s1's side of its sessions ended")
    for sock in sessions['s1']:
        sock.close()
    # s3's checks failed as well: its verdict is down, its state stays maint.
    wait_until(lambda: health_transitions(d, 'web', 's3'), 10, 's3 to fail its checks')
    expect_eq([(x['state'], x['reason']) for x in health_transitions(d, 'web', 's3')], [('down', 'connect refused')],
              'health transitions of s3')
    states = {v['name']: v['state'] for v in get_stats(stats)['services'][0]['servers']}
    expect_eq(states, {'s1': 'down', 's2': 'up', 's3': 'maint'}, 'states in /stats')

    # Sessions on s2 (up) and s3 (maint) were never touched.
    for name in ('s2', 's3'):
        for i, sock in enumerate(sessions[name]):
            expect(still_open(sock), f'session {i} on {name} ended by itself')
            echo_exact(sock, f'session {i} on {name}')
            sock.close()

    total = PER_SERVER * len(SERVERS)
    d.wait_access_count(total)
    closed = {v['name']: v['sessions']['closed_on_down'] for v in get_stats(stats)['services'][0]['servers']}
    closed_lines = [line for line in fulcrumctl_notes(stats) if line.startswith('closed ')]
    d.stop()
    lines = d.access_log_lines()
    expect_eq(len(lines), total, 'access log lines')
    s1_end = 'server_down' if policy == 'close' else 'client_close'
    expect_eq(sorted((line['server'], line['end']) for line in lines),
              sorted([('s1', s1_end)] * PER_SERVER + [('s2', 'client_close')] * PER_SERVER
                     + [('s3', 'client_close')] * PER_SERVER),
              'server and end of each access log line')
    expect_eq(closed, {'s1': PER_SERVER if policy == 'close' else 0, 's2': 0, 's3': 0},
              '/stats sessions.closed_on_down')
    expect_eq(closed_lines, [f'closed      web/s1: {PER_SERVER} sessions closed when it went down'] if policy == 'close'
              else [], '`closed` lines of fulcrumctl servers')
    for name in ('s2', 's3'):
        expect_eq(outcomes[name], ['eof'] * PER_SERVER, f"how {name}'s side of its sessions ended")
    for server in servers.values():
        server.check()


def run(t):
    scenario(t, 'close')
    scenario(t, 'keep')
