"""A TCP urgent byte (MSG_OOB) is relayed inline like any other byte.

splice(2) never crosses TCP's urgent mark: a relay that only splices spins on
a readable socket it cannot read and loses what follows. The client sends
`abc`, one urgent byte `X`, then `def`: the server must receive `abcXdef`,
then EOF when the client half-closes, and the daemon must not burn CPU while
waiting in between.
"""

import socket
import threading
import time

from harness import connect, expect, expect_eq, expect_eof, free_address

DEADLINE = 60


def run(t):
    received = bytearray()
    finished = threading.Event()

    def collect(conn, peer):
        while True:
            data = conn.recv(65536)
            if not data:
                break
            received.extend(data)
        conn.sendall(b'got ' + bytes(received))
        finished.set()

    server = t.tcp_server(collect, name='collector')
    listen = free_address()
    d = t.daemon({
        'global': {'workers': 1},
        'services': [{'name': 'urgent', 'listen': listen, 'servers': [{'name': 'collector', 'address': server.address}]}],
    })

    with connect(listen, timeout=10) as sock:
        sock.sendall(b'abc')
        time.sleep(0.2)
        sock.send(b'X', socket.MSG_OOB)
        time.sleep(0.1)
        sock.sendall(b'def')
        cpu_before = d.cpu_seconds()
        time.sleep(1.0)
        cpu_used = d.cpu_seconds() - cpu_before
        expect(cpu_used < 0.5, f'the daemon used {cpu_used:.2f}s of CPU in 1 s around an urgent byte (spinning?)')
        sock.shutdown(socket.SHUT_WR)
        expect(finished.wait(10), 'the server never saw EOF')
        expect_eq(bytes(received), b'abcXdef', 'bytes the server received')
        reply = b''
        while len(reply) < len(b'got abcXdef'):
            chunk = sock.recv(100)
            expect(chunk, 'EOF before the whole reply')
            reply += chunk
        expect_eq(reply, b'got abcXdef', 'reply')
        expect_eof(sock, 'client after the reply')

    d.wait_access_count(1)
    d.stop()
    line = d.access_log_lines()[0]
    expect_eq((line['bytes_in'], line['bytes_out'], line['end']), (7, 11, 'client_close'), 'bytes_in, bytes_out, end')
