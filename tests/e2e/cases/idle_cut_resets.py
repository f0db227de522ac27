"""A session the idle timeout cuts off mid-stream ends in a reset, never in a
clean EOF that would make a truncated stream look complete.

The server sends 8 MiB; the client reads 64 KiB and then stops reading
(idle: 1s). When fulcrum closes the session, the client must see a reset
after fewer than 8 MiB, not EOF.
"""

import socket
import time

from harness import MiB, connect, expect, expect_eq, free_address

DEADLINE = 60
SIZE = 8 * MiB


def run(t):
    def flood(conn, peer):
        payload = b'x' * SIZE
        try:
            conn.sendall(payload)
        except OSError:
            pass  # fulcrum resets us when it gives up: expected

    server = t.tcp_server(flood, name='flood')
    listen = free_address()
    d = t.daemon({
        'global': {'workers': 1},
        'services': [{'name': 'cut', 'listen': listen, 'timeouts': {'idle': '1s'},
                      'servers': [{'name': 'flood', 'address': server.address}]}],
    })

    with connect(listen, timeout=20) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        got = 0
        while got < 64 * 1024:
            chunk = sock.recv(65536)
            expect(chunk, 'EOF before the client stopped reading')
            got += len(chunk)
        time.sleep(3.0)  # stop reading: the session goes idle and is cut
        outcome = None
        try:
            while True:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    outcome = 'eof'
                    break
                got += len(chunk)
        except ConnectionResetError:
            outcome = 'reset'
    expect(got < SIZE, f'the client got all {got} bytes: the session was not cut')
    expect_eq(outcome, 'reset', f'how the cut-off client saw the end after {got} bytes')

    d.wait_access_count(1)
    d.stop()
    expect_eq(d.access_log_lines()[0]['end'], 'idle_timeout', 'end')
