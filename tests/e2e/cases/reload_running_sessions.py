"""Running sessions finish under the configuration they started with; new ones take the new one.

fulcrum (two workers) with service `web`: rr over demo servers a and b,
timeouts.idle 1s. Two sessions are opened (rr: one on a, one on b), then
SIGHUP with: servers a and c (b removed), timeouts.idle 4s.
  - The session on b, the removed server, keeps working: a line every 0.3 s
    for 2.4 s, each echoed, then a half-close and a clean EOF. Access log:
    server b, client_close, its exact bytes.
  - The session on a, silent since its greeting, is cut by the old idle
    timeout: its access-log line says idle_timeout after 0.9..3 s (the new
    4 s would give at least 3.9 s); the client sees the connection end.
  - New sessions alternate a and c (never b).
  - A new session left silent is not cut after the old 1 s: it still echoes
    a line 2 s after its greeting, and is then cut by the new timeout 3.9..8 s
    after that line (access log idle_timeout).
"""

import socket
import signal
import time

from harness import connect, expect, expect_eof, expect_eq, free_address, greeted_session, local_address, \
    log_stream, read_greeting, recv_exact, wait_until, write_config

DEADLINE = 60


def ends_without_data(sock, what):
    """Waits (up to the socket's timeout) for the connection to end: EOF or a
    reset, not data."""
    try:
        data = sock.recv(4096)
    except ConnectionResetError:
        return 'reset'
    expect_eq(data, b'', f'{what}: bytes where the end was expected')
    return 'eof'


def run(t):
    demos = {name: t.demo_server(name) for name in ('a', 'b', 'c')}
    listen = free_address()

    def config(servers, idle):
        return {'global': {'workers': 2},
                'services': [{'name': 'web', 'listen': listen, 'scheduler': 'rr', 'timeouts': {'idle': idle},
                              'servers': [{'name': s, 'address': demos[s].address} for s in servers]}]}
    d = t.daemon(config('ab', '1s'))

    held = {}
    for i in range(2):
        sock = t.own_socket(connect(listen, timeout=10))
        held[read_greeting(sock, f'held session {i}: greeting')] = (sock, local_address(sock), time.monotonic())
    expect_eq(sorted(held), ['a', 'b'], 'servers of the two held sessions')

    write_config(d.config_path, config('ac', '4s'))
    d.send_signal(signal.SIGHUP)
    d.wait_for_log(lambda r: r.message == 'reloaded' and r.fields.get('generation') == '2', 10)
    expect_eq([r.fields for r in d.find_logs('service changed')],
              [{'service': 'web', 'settings': 'changed', 'servers_added': 'c', 'servers_removed': 'b',
                'servers_changed': '-'}], '`service changed` line')

    # The session on the removed server b keeps going.
    sock_b, client_b, _ = held['b']
    sent = 0
    for k in range(8):
        line = f'line {k} to b after it left the configuration\n'.encode()
        sock_b.sendall(line)
        expect_eq(recv_exact(sock_b, len(line), f'echo {k} from b'), line, f'echo {k} from b')
        sent += len(line)
        time.sleep(0.3)
    sock_b.shutdown(socket.SHUT_WR)
    expect_eof(sock_b, 'session on b after its half-close')
    sock_b.close()
    log_stream('the session on b, removed by the reload, ran 2.4 s more and ended cleanly')

    # The silent session on a was cut by the old idle timeout (1 s).
    sock_a, client_a, _ = held['a']
    sock_a.settimeout(10)
    how = ends_without_data(sock_a, 'silent session on a')
    sock_a.close()

    def line_of(client):
        found = [x for x in d.access_log_lines() if x['client'] == client]
        return found[0] if found else None
    old = wait_until(lambda: line_of(client_a), 5, 'the access log line of the silent session on a')
    expect_eq((old['server'], old['end']), ('a', 'idle_timeout'), 'silent session on a: server, end')
    expect(900 <= old['duration_ms'] <= 3000,
           f'silent session on a cut after {old["duration_ms"]} ms: not the old idle timeout of 1 s')
    on_b = wait_until(lambda: line_of(client_b), 5, 'the access log line of the session on b')
    expect_eq((on_b['server'], on_b['end'], on_b['bytes_in'], on_b['bytes_out']),
              ('b', 'client_close', sent, len(demos['b'].greeting) + sent), 'session on b: server, end, bytes')
    log_stream(f'silent session on a: {how} after {old["duration_ms"]} ms (idle_timeout, the old 1 s)')

    # New sessions: a and c.
    names = [greeted_session(listen, what=f'new session {i}')[0] for i in range(4)]
    expect(names in (['a', 'c'] * 2, ['c', 'a'] * 2), f'new sessions after the reload: {names}')

    # A new silent session lives by the new idle timeout (4 s).
    sock = t.own_socket(connect(listen, timeout=15))
    client_new = local_address(sock)
    read_greeting(sock, 'new silent session: greeting')
    time.sleep(2.0)
    line = b'still open after 2 s of silence\n'
    sock.sendall(line)
    expect_eq(recv_exact(sock, len(line), 'new silent session: echo'), line, 'new silent session: echo after 2 s')
    quiet_from = time.monotonic()
    ends_without_data(sock, 'new silent session')
    quiet = time.monotonic() - quiet_from
    sock.close()
    expect(3.9 <= quiet <= 8, f'new silent session ended {quiet:.3f}s after its last byte: not the new 4 s')
    new = wait_until(lambda: line_of(client_new), 5, 'the access log line of the new silent session')
    expect_eq(new['end'], 'idle_timeout', 'new silent session: end')
    log_stream(f'new silent session: cut {quiet:.3f}s after its last byte (the new 4 s)')
    d.stop()
