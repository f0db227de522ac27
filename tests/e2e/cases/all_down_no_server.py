"""With every server down a client is closed at once: end=no_server, nothing tried.

Service `web`: demo servers s1, s2, health checks every 200 ms (timeout
100 ms, rise 2, fall 2), connect timeout 5 s, retries: 1. A first session
reaches a server. Both are killed; the active checks take both down within
fall x interval + 1 s (no client connects meanwhile). Then 10 clients, one
after another: each is closed (EOF or reset) within 1 s without a byte. The
access log has their 10 lines with server=- bytes 0/0 end=no_server, and no
connect was tried on the dead servers (no `connect failed` line).
"""

import socket
import time

from harness import connect, echo_session, expect, expect_eq, free_address, health_transitions, local_address, \
    log_stream, wait_until

DEADLINE = 60
INTERVAL, RISE, FALL = 0.2, 2, 2
CLIENTS = 10


def run(t):
    demos = {name: t.demo_server(name) for name in ('s1', 's2')}
    listen = free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'services': [{'name': 'web', 'listen': listen, 'retries': 1, 'timeouts': {'connect': '5s'},
                      'health_check': {'interval': '200ms', 'timeout': '100ms', 'rise': RISE, 'fall': FALL},
                      'servers': [{'name': name, 'address': demo.address} for name, demo in demos.items()]}],
    })
    first, first_client = echo_session(listen, 0)
    expect(first in demos, f'first session greeted by {first!r}')

    for demo in demos.values():
        demo.kill()
    down_by = FALL * INTERVAL * 1.1 + 1.0
    wait_until(lambda: len(health_transitions(d, 'web')) >= 2, down_by,
               f'both servers down (up to {down_by:g}s after they were killed)')
    transitions = health_transitions(d, 'web')
    expect_eq(sorted((x['server'], x['state'], x['reason'], x['streak'], x['check']) for x in transitions),
              [('s1', 'down', 'connect refused', FALL, 'active'), ('s2', 'down', 'connect refused', FALL, 'active')],
              'health transitions')
    time.sleep(0.1)

    clients, waits = [], []
    for i in range(CLIENTS):
        with connect(listen, timeout=10) as sock:
            clients.append(local_address(sock))
            start = time.monotonic()
            try:
                data = sock.recv(4096)
                outcome = 'closed' if data == b'' else f'data {data!r}'
            except ConnectionResetError:
                outcome = 'closed'
            except socket.timeout:
                outcome = 'still open after 10 s'
            waits.append(time.monotonic() - start)
        expect_eq(outcome, 'closed', f'client {i} with every server down')
    log_stream(f'clients closed after {", ".join(f"{w * 1000:.0f}" for w in waits)} ms')
    expect(max(waits) <= 1.0, f'clients closed after up to {max(waits):.3f}s; expected at once (1 s at most)')

    d.wait_access_count(CLIENTS + 1)
    time.sleep(0.1)
    d.stop()
    expect_eq(d.find_logs('connect failed'), [], '`connect failed` lines (connects tried on down servers)')
    expect_eq(len(health_transitions(d, 'web')), 2, 'health transitions in all')
    lines = d.access_log_lines()
    expect_eq(len(lines), CLIENTS + 1, 'access log lines')
    expect_eq((lines[0]['client'], lines[0]['server'], lines[0]['end']), (first_client, first, 'client_close'),
              'access log line of the first session')
    expect_eq(sorted(line['client'] for line in lines[1:]), sorted(clients), 'clients in the access log')
    for line in lines[1:]:
        expect_eq((line['server'], line['server_addr'], line['bytes_in'], line['bytes_out'], line['end']),
                  ('-', '-', 0, 0, 'no_server'), f'access log line of {line["client"]}')
