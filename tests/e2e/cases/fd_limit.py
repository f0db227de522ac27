"""At the open-file limit fulcrum stops accepting until descriptors free up,
without spinning, and every waiting client is served in the end.

fulcrum runs under `prlimit --nofile=64:64`, far too few for 60 sessions at
once (each holds two sockets). 60 clients connect at the same time; each
reads the greeting, checks an echo, holds 0.5 s and closes. All 60 must
complete; the server must never see all 60 at once (the limit really bit);
and while saturated the daemon may use less than 1 s of CPU.
"""

import socket
import time

from harness import connect, expect, expect_eq, expect_eof, free_address, local_address, log_stream, \
    recv_exact, run_threads

DEADLINE = 150
CLIENTS = 60
NOFILE = 64
HOLD = 0.5
GREETING = b'hello from limited\n'


def greet_and_echo(conn, peer):
    conn.sendall(GREETING)
    while True:
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(data)


def run(t):
    server = t.tcp_server(greet_and_echo, name='echo')
    listen = free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'services': [{'name': 'scarce', 'listen': listen, 'servers': [{'name': 'echo', 'address': server.address}]}],
    }, nofile=NOFILE)

    with open(f'/proc/{d.pid}/limits') as f:
        limit_line = next(line for line in f if line.startswith('Max open files'))
    expect_eq(limit_line.split()[3:5], [str(NOFILE), str(NOFILE)], 'the daemon\'s open-file limits (soft, hard)')

    def client(i):
        with connect(listen, timeout=60) as sock:
            me = local_address(sock)
            expect_eq(recv_exact(sock, len(GREETING), 'greeting'), GREETING, f'client {i}: greeting')
            message = f'client {i} checking in\n'.encode()
            sock.sendall(message)
            expect_eq(recv_exact(sock, len(message), 'echo'), message, f'client {i}: echo')
            time.sleep(HOLD)
            sock.shutdown(socket.SHUT_WR)
            expect_eof(sock, f'client {i} after its half-close')
        return me, len(message)

    cpu_before = d.cpu_seconds()
    started = time.monotonic()
    results = dict(run_threads(client, [(i,) for i in range(CLIENTS)], timeout=120))
    elapsed = time.monotonic() - started
    cpu_used = d.cpu_seconds() - cpu_before
    log_stream(f'{CLIENTS} clients done in {elapsed:.2f}s; at most {server.max_active} sessions at once; '
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
