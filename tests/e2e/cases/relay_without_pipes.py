"""When every descriptor of the budget is held by sessions, those sessions
still relay (without pipes), notice their peers closing, and the clients
waiting in the backlog are served as slots free up.

fulcrum runs under `prlimit --nofile=64`: its budget allows about 20 idle
sessions, two descriptors each, so none is left for a pipe. 40 clients
connect; those admitted must still echo 256 KiB verified by hash and see
EOF; then they close one by one and every waiting client gets its turn.
"""

import hashlib
import os
import socket
import threading
import time

from harness import echo_handler, connect, expect, expect_eq, expect_eof, free_address, recv_exact, wait_until

DEADLINE = 120
CLIENTS = 40
NOFILE = 64
PAYLOAD = 256 * 1024


def run(t):
    server = t.tcp_server(echo_handler, name='echo')
    listen = free_address()
    d = t.daemon({
        'global': {'workers': 1},
        'services': [{'name': 'tight', 'listen': listen, 'servers': [{'name': 'echo', 'address': server.address}]}],
    }, nofile=NOFILE)

    # Connect everyone: the kernel completes every handshake (backlog), and
    # fulcrum accepts only what its budget admits.
    socks = [connect(listen, timeout=30) for _ in range(CLIENTS)]
    wait_until(lambda: server.accepted > 0, 10, 'a first admitted session')
    time.sleep(1.0)  # let fulcrum admit all it can
    admitted = server.accepted
    expect(0 < admitted < CLIENTS, f'{admitted} of {CLIENTS} sessions admitted under nofile={NOFILE}')

    failures = []

    def exchange(i, sock):
        try:
            payload = os.urandom(PAYLOAD)
            sender = threading.Thread(target=sock.sendall, args=(payload,))
            sender.start()
            echoed = recv_exact(sock, PAYLOAD, f'echo of client {i}')
            sender.join()
            if hashlib.sha256(echoed).digest() != hashlib.sha256(payload).digest():
                failures.append(f'client {i}: echo differs')
            sock.shutdown(socket.SHUT_WR)
            expect_eof(sock, f'client {i} after its half-close')
        except Exception as error:  # reported below with the client number
            failures.append(f'client {i}: {error}')
        finally:
            sock.close()

    # All clients at once: the admitted ones relay without pipes, finish,
    # and let the waiting ones in.
    threads = [threading.Thread(target=exchange, args=(i, s)) for i, s in enumerate(socks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    expect(not any(thread.is_alive() for thread in threads), 'some clients never finished')
    expect_eq(failures, [], 'client failures')
    expect_eq(server.accepted, CLIENTS, 'sessions that reached the server')

    d.wait_access_count(CLIENTS)
    d.stop()
    lines = d.access_log_lines()
    expect_eq(len(lines), CLIENTS, 'access log lines')
    for line in lines:
        expect_eq((line['bytes_in'], line['bytes_out'], line['end']), (PAYLOAD, PAYLOAD, 'client_close'),
                  f'bytes_in, bytes_out, end of {line["client"]}')
