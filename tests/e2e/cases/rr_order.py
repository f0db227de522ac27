"""rr is one rotation for the whole daemon: with two workers and three demo
servers, 30 sequential sessions meet the servers in strict rotation (the
same cyclic order throughout, exactly 10 each), and the access log names the
server each client actually met."""

import collections
import socket

from harness import connect, expect, expect_eq, expect_eof, free_address, local_address, recv_line

DEADLINE = 60
SESSIONS = 30


def run(t):
    demos = [t.demo_server(name) for name in ('a', 'b', 'c')]
    listen = free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'services': [{'name': 'rotation', 'listen': listen, 'scheduler': 'rr',
                      'servers': [{'name': demo.name, 'address': demo.address} for demo in demos]}],
    })

    met = {}  # client address -> server name from its greeting
    order = []
    for i in range(SESSIONS):
        with connect(listen, timeout=10) as sock:
            greeting = recv_line(sock, what='greeting').decode()
            expect(greeting.startswith('hello from '), f'session {i}: greeting {greeting!r}')
            name = greeting[len('hello from '):-1]
            met[local_address(sock)] = name
            order.append(name)
            sock.shutdown(socket.SHUT_WR)
            expect_eof(sock, f'session {i} after its half-close')

    cycle = order[:3]
    expect_eq(sorted(cycle), ['a', 'b', 'c'], f'first three servers (order {order})')
    expect_eq(order, cycle * (SESSIONS // 3), 'server order over 30 sessions')
    expect_eq(collections.Counter(order), {'a': 10, 'b': 10, 'c': 10}, 'sessions per server')

    d.wait_access_count(SESSIONS)
    d.stop()
    lines = d.access_log_lines()
    expect_eq({line['client']: line['server'] for line in lines}, met, 'server of each client in the access log')
