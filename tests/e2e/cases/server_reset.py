"""A server that resets its connection (SO_LINGER {1, 0}) makes fulcrum reset
the client too: the client's read fails with ECONNRESET instead of a clean
EOF, and the access log says end=server_reset."""

import queue

from harness import connect, expect_eq, free_address, local_address, recv_exact, rst_close

DEADLINE = 60
SESSIONS = 4
PING = b'ping\n'


def run(t):
    got = queue.Queue()

    def read_then_reset(conn, peer):
        got.put(recv_exact(conn, len(PING), 'ping'))
        rst_close(conn)

    server = t.tcp_server(read_then_reset)
    listen = free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'services': [{'name': 'resetting', 'listen': listen, 'servers': [{'name': 'rst', 'address': server.address}]}],
    })

    clients = set()
    for i in range(SESSIONS):
        with connect(listen, timeout=10) as sock:
            clients.add(local_address(sock))
            sock.sendall(PING)
            expect_eq(got.get(timeout=10), PING, f'session {i}: bytes the server read before its reset')
            try:
                data = sock.recv(4096)
                outcome = 'clean EOF' if data == b'' else f'data {data!r}'
            except ConnectionResetError:
                outcome = 'reset'
            expect_eq(outcome, 'reset', f'session {i}: what the client saw after the server reset')

    d.wait_access_count(SESSIONS)
    d.stop()
    lines = d.access_log_lines()
    expect_eq(len(lines), SESSIONS, 'access log lines')
    expect_eq({line['client'] for line in lines}, clients, 'client addresses in the access log')
    for line in lines:
        expect_eq((line['server'], line['bytes_in'], line['bytes_out'], line['end']),
                  ('rst', len(PING), 0, 'server_reset'), f'access log server, bytes, end of {line["client"]}')
