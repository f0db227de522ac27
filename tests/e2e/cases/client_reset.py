"""A client that resets its connection (SO_LINGER {1, 0}) makes fulcrum reset
the server side too: the server's read fails with ECONNRESET instead of a
clean EOF, and the access log says end=client_reset."""

import queue
import socket

from harness import connect, expect_eq, free_address, local_address, recv_exact, rst_close

DEADLINE = 60
SESSIONS = 4
PING = b'ping\n'
ACK = b'ack\n'


def run(t):
    outcomes = queue.Queue()  # what each server connection saw after its ack

    def ack_then_read(conn, peer):
        recv_exact(conn, len(PING), 'ping')
        conn.sendall(ACK)
        try:
            data = conn.recv(4096)
            outcomes.put('clean EOF' if data == b'' else f'data {data!r}')
        except ConnectionResetError:
            outcomes.put('reset')
        except socket.timeout:
            outcomes.put('nothing within the timeout')

    server = t.tcp_server(ack_then_read, conn_timeout=10)
    listen = free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'services': [{'name': 'resetting', 'listen': listen, 'servers': [{'name': 'srv', 'address': server.address}]}],
    })

    clients = set()
    for i in range(SESSIONS):
        sock = connect(listen, timeout=10)
        clients.add(local_address(sock))
        sock.sendall(PING)
        expect_eq(recv_exact(sock, len(ACK), 'ack'), ACK, f'session {i}: ack')
        rst_close(sock)
        expect_eq(outcomes.get(timeout=15), 'reset', f'session {i}: what the server saw after the client reset')

    d.wait_access_count(SESSIONS)
    d.stop()
    lines = d.access_log_lines()
    expect_eq(len(lines), SESSIONS, 'access log lines')
    expect_eq({line['client'] for line in lines}, clients, 'client addresses in the access log')
    for line in lines:
        expect_eq((line['server'], line['bytes_in'], line['bytes_out'], line['end']),
                  ('srv', len(PING), len(ACK), 'client_reset'), f'access log server, bytes, end of {line["client"]}')
