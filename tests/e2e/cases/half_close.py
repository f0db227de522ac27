"""Half-close passes through in both directions and the other direction keeps
flowing.

(a) service `reply_after_eof`: the client sends 1 MiB and shuts down its
    write side; the server reads to EOF, then sends 4 MiB and closes.
(b) service `greet_then_listen`: the server sends a greeting and shuts down
    its write side at once, then keeps reading; the client sees the greeting
    then EOF, and can still send 1 MiB that arrives intact.
"""

import queue
import socket

from harness import MiB, PatternStream, connect, expect_eq, expect_eof, free_address, hash_to_eof, \
    local_address, recv_exact

DEADLINE = 60
UPLOAD = PatternStream(seed=11, size=1 * MiB)
REPLY = PatternStream(seed=12, size=4 * MiB)
GREETING = b'greeting, and that is all from me\n'


def run(t):
    received = queue.Queue()  # (server, byte count, sha256) of what each server read

    def reply_after_eof(conn, peer):
        received.put(('a',) + hash_to_eof(conn))
        REPLY.send(conn)

    def greet_then_listen(conn, peer):
        conn.sendall(GREETING)
        conn.shutdown(socket.SHUT_WR)
        received.put(('b',) + hash_to_eof(conn))

    server_a = t.tcp_server(reply_after_eof, name='a')
    server_b = t.tcp_server(greet_then_listen, name='b')
    listen_a, listen_b = free_address(), free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'services': [
            {'name': 'reply_after_eof', 'listen': listen_a, 'servers': [{'name': 'a', 'address': server_a.address}]},
            {'name': 'greet_then_listen', 'listen': listen_b, 'servers': [{'name': 'b', 'address': server_b.address}]},
        ],
    })

    # (a) upload, half-close, then the whole reply arrives.
    with connect(listen_a, timeout=30) as sock:
        client_a = local_address(sock)
        sent = UPLOAD.send(sock)
        sock.shutdown(socket.SHUT_WR)
        count, digest = hash_to_eof(sock)
    expect_eq(count, REPLY.size, '(a) reply bytes received after half-close')
    expect_eq(digest, REPLY.sha256(), '(a) SHA-256 of the reply')
    expect_eq(received.get(timeout=10), ('a', UPLOAD.size, sent), '(a) what the server read before EOF')

    # (b) the server's EOF reaches the client, the client's bytes still reach the server.
    with connect(listen_b, timeout=30) as sock:
        client_b = local_address(sock)
        expect_eq(recv_exact(sock, len(GREETING), 'greeting'), GREETING, '(b) greeting')
        expect_eof(sock, '(b) after the server shut down its write side')
        sent = UPLOAD.send(sock)
        sock.shutdown(socket.SHUT_WR)
        expect_eq(received.get(timeout=10), ('b', UPLOAD.size, sent), '(b) what the server read after its half-close')
        expect_eof(sock, '(b) after the server closed')

    d.wait_access_count(2)
    d.stop()
    lines = {line['service']: line for line in d.access_log_lines()}
    expect_eq(sorted(lines), ['greet_then_listen', 'reply_after_eof'], 'services in the access log')
    a, b = lines['reply_after_eof'], lines['greet_then_listen']
    expect_eq((a['client'], a['server'], a['bytes_in'], a['bytes_out'], a['end']),
              (client_a, 'a', UPLOAD.size, REPLY.size, 'client_close'), '(a) access log client, server, bytes, end')
    expect_eq((b['client'], b['server'], b['bytes_in'], b['bytes_out'], b['end']),
              (client_b, 'b', UPLOAD.size, len(GREETING), 'server_close'), '(b) access log client, server, bytes, end')
