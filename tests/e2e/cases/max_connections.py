"""max_connections: clients beyond the limit wait (in the backlog), they are
neither refused nor reset, and are served as slots free up.

Phase 1, service max_connections: 4. Phase 2, global max_connections: 4
shared by two services. Both with two workers. The server holds every
connection until the test releases one; 10 clients connect at once. Exactly
4 reach the server (and over 1 s never more); then the test releases them one
by one, each release lets exactly one more in, and all 10 complete.

Phase 3, churn: global max_connections 2, two workers whose listeners pause
and wake as slots free up. 200 clients connect at once and send their line
while they wait; the server answers each at once and closes. All 200 get
their own answer (their early bytes waited intact in the backlog), none is
refused or reset, the server never holds more than 2, and the access log has
200 `server_close` lines. A lost wake-up of a paused listener would leave
clients waiting with free slots: the phase would time out.
"""

import threading
import time

from harness import TestFailure, connect, expect, expect_eq, free_address, log_stream, recv_line, recv_to_eof, run_threads, \
    wait_until

DEADLINE = 120
CLIENTS = 10
LIMIT = 4
CHURN_CLIENTS = 200
CHURN_LIMIT = 2


def phase(t, label, make_config):
    gate = threading.Semaphore(0)

    def held(conn, peer):
        """Reads the client's line, waits for a release, answers, closes."""
        line = recv_line(conn, what='client line')
        if not gate.acquire(timeout=60):
            raise TestFailure('never released')
        conn.sendall(b'done: ' + line)

    server = t.tcp_server(held, name=f'{label}-server')
    config, listens = make_config(server.address)
    d = t.daemon(config, name=f'fulcrum-{label}')

    finished = []
    finished_lock = threading.Lock()

    def client(i):
        with connect(listens[i % len(listens)], timeout=60) as sock:
            line = f'client {i}\n'.encode()
            sock.sendall(line)
            reply = recv_to_eof(sock, limit=1024)
            expect_eq(reply, b'done: ' + line, f'client {i}: reply')
        with finished_lock:
            finished.append(i)

    errors = []

    def run_clients():
        try:
            run_threads(client, [(i,) for i in range(CLIENTS)], timeout=90)
        except Exception as e:
            errors.append(e)
    clients = threading.Thread(target=run_clients, daemon=True)
    clients.start()

    wait_until(lambda: server.accepted >= LIMIT, 15, f'{label}: {LIMIT} connections at the server')
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        expect(server.accepted == LIMIT and server.active <= LIMIT,
               f'{label}: {server.accepted} connections reached the server with a limit of {LIMIT}')
        time.sleep(0.01)
    log_stream(f'{label}: {LIMIT} held at the server, the other {CLIENTS - LIMIT} waiting')

    for released in range(1, CLIENTS + 1):
        gate.release()
        wait_until(lambda: len(finished) >= released, 15, f'{label}: client #{released} to finish')
        admitted = min(LIMIT + released, CLIENTS)
        wait_until(lambda: server.accepted >= admitted, 15, f'{label}: connection #{admitted} to reach the server')
        expect(server.accepted == admitted and server.max_active <= LIMIT,
               f'{label}: after {released} releases {server.accepted} connections reached the server '
               f'(expected {admitted}), at most {server.max_active} at once (limit {LIMIT})')
    clients.join(30)
    expect(not clients.is_alive(), f'{label}: clients still running')
    if errors:
        raise errors[0]
    expect_eq(sorted(finished), list(range(CLIENTS)), f'{label}: clients that completed')

    d.wait_access_count(CLIENTS)
    d.stop()
    lines = d.access_log_lines()
    expect_eq(len(lines), CLIENTS, f'{label}: access log lines')
    expect_eq({line['end'] for line in lines}, {'server_close'}, f'{label}: end reasons')


def run(t):
    def service_limit(server_address):
        listen = free_address()
        return {
            'global': {'workers': 2},
            'services': [{'name': 'limited', 'listen': listen, 'max_connections': LIMIT,
                          'servers': [{'name': 'held', 'address': server_address}]}],
        }, [listen]

    def global_limit(server_address):
        listen_a, listen_b = free_address(), free_address()
        return {
            'global': {'workers': 2, 'max_connections': LIMIT},
            'services': [
                {'name': 'a', 'listen': listen_a, 'servers': [{'name': 'held', 'address': server_address}]},
                {'name': 'b', 'listen': listen_b, 'servers': [{'name': 'held', 'address': server_address}]},
            ],
        }, [listen_a, listen_b]

    phase(t, 'service', service_limit)
    phase(t, 'global', global_limit)
    churn(t)


def churn(t):
    def answer(conn, peer):
        conn.sendall(b'done: ' + recv_line(conn, what='client line'))

    server = t.tcp_server(answer, name='churn-server')
    listen = free_address()
    d = t.daemon({
        'global': {'workers': 2, 'max_connections': CHURN_LIMIT},
        'services': [{'name': 'churn', 'listen': listen, 'servers': [{'name': 'answer', 'address': server.address}]}],
    }, name='fulcrum-churn')

    def client(i):
        with connect(listen, timeout=60) as sock:
            line = f'client {i}\n'.encode()
            sock.sendall(line)
            expect_eq(recv_to_eof(sock, limit=1024), b'done: ' + line, f'client {i}: reply')

    started = time.monotonic()
    run_threads(client, [(i,) for i in range(CHURN_CLIENTS)], timeout=90)
    log_stream(f'churn: {CHURN_CLIENTS} clients through {CHURN_LIMIT} slots in {time.monotonic() - started:.1f}s, '
               f'at most {server.max_active} at the server')
    expect(server.max_active <= CHURN_LIMIT, f'{server.max_active} connections at the server at once, '
                                             f'limit {CHURN_LIMIT}')
    d.wait_access_count(CHURN_CLIENTS)
    d.stop()
    lines = d.access_log_lines()
    expect_eq(len(lines), CHURN_CLIENTS, 'churn: access log lines')
    expect_eq({line['end'] for line in lines}, {'server_close'}, 'churn: end reasons')
