"""SIGTERM is a graceful stop.

Phase 1: a session open at SIGTERM keeps working, the listening socket is
closed (new connections are refused), and the daemon exits 0 as soon as the
session ends (end=client_close).

Phase 2: with shutdown_timeout: 1s a session that never ends is closed
after about 1 s, the daemon exits 0, and the access log says end=shutdown.
"""

import signal
import socket
import time

from harness import connect, expect, expect_eq, expect_eof, free_address, listening_on, local_address, \
    parse_address, recv_exact, wait_until

DEADLINE = 90


def echo(sock, message, what):
    sock.sendall(message)
    expect_eq(recv_exact(sock, len(message), 'echo'), message, what)


def run(t):
    demo = t.demo_server('echo')

    # Phase 1: an active session outlives the start of the stop.
    listen = free_address()
    port = parse_address(listen)[1]
    d = t.daemon({
        'global': {'workers': 2, 'shutdown_timeout': '30s'},
        'services': [{'name': 'web', 'listen': listen, 'servers': [{'name': 'echo', 'address': demo.address}]}],
    }, name='fulcrum-drain')
    with connect(listen, timeout=10) as sock:
        client = local_address(sock)
        expect_eq(recv_exact(sock, len(demo.greeting), 'greeting'), demo.greeting, 'greeting')
        echo(sock, b'before the stop\n', 'echo before SIGTERM')

        d.send_signal(signal.SIGTERM)
        stopping = d.wait_for_log(lambda r: r.message == 'stopping', timeout=10)[0]
        expect_eq((stopping.fields.get('signal'), stopping.fields.get('sessions')), ('SIGTERM', '1'),
                  'signal and sessions of the stopping line')
        wait_until(lambda: not listening_on(port), 5, f'the listening socket on port {port} to close')
        try:
            connect(listen, timeout=5).close()
            refused = False
        except ConnectionRefusedError:
            refused = True
        expect(refused, 'a new connection was accepted after the stop began')

        echo(sock, b'after the stop began\n', 'echo after SIGTERM')
        time.sleep(0.3)
        expect(d.running(), 'the daemon exited while a session was still active')
        sock.shutdown(socket.SHUT_WR)
        expect_eof(sock, 'the draining session after its half-close')
    expect_eq(d.wait_exit(15), 0, 'exit code once the last session ended')
    d.check_stopped_log()
    lines = d.access_log_lines()
    expect_eq([(line['client'], line['end']) for line in lines], [(client, 'client_close')],
              'access log (client, end) of phase 1')

    # Phase 2: shutdown_timeout closes what is left.
    listen = free_address()
    d = t.daemon({
        'global': {'workers': 2, 'shutdown_timeout': '1s'},
        'services': [{'name': 'web', 'listen': listen, 'servers': [{'name': 'echo', 'address': demo.address}]}],
    }, name='fulcrum-timeout')
    with connect(listen, timeout=10) as sock:
        client = local_address(sock)
        expect_eq(recv_exact(sock, len(demo.greeting), 'greeting'), demo.greeting, 'greeting')
        echo(sock, b'I will never leave\n', 'echo before SIGTERM')
        started = time.monotonic()
        d.send_signal(signal.SIGTERM)
        code = d.wait_exit(10)
        elapsed = time.monotonic() - started
        expect_eq(code, 0, 'exit code after shutdown_timeout')
        expect(0.8 <= elapsed <= 2.5, f'exited {elapsed:.2f}s after SIGTERM with shutdown_timeout 1s')
        try:
            outcome = 'closed' if sock.recv(4096) == b'' else 'data'
        except ConnectionResetError:
            outcome = 'closed'
        except socket.timeout:
            outcome = 'still open'
        expect_eq(outcome, 'closed', 'the lingering client after the daemon exited')
    d.check_stopped_log()
    lines = d.access_log_lines()
    expect_eq([(line['client'], line['end']) for line in lines], [(client, 'shutdown')],
              'access log (client, end) of phase 2')
