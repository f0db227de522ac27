"""Small messages towards a reader that stalls: nothing lost, nothing reordered.

fulcrum copies small reads through a buffer and sends them on at once; what
the receiver cannot take waits in a pipe while the sender is held back. This
drives exactly that: the writer sends 3000 pieces of 1..3000 bytes (about
4.5 MB, seeded) with short pauses, so each read fulcrum makes is small, while
the reader, with a 64 KiB receive buffer, reads nothing for the first 2 s;
then it reads everything. (A smaller buffer than two of loopback's 32 KiB
segments would make TCP crawl on zero-window probes.) Once client -> server (the server stalls), once
server -> client (the client stalls). The bytes read must be the bytes
written: count and SHA-256, and the access log counts them exactly.
"""

import hashlib
import random
import socket
import threading
import time

from harness import connect, expect, expect_eq, free_address, hash_to_eof

DEADLINE = 90
PIECES = 3000
STALL = 2.0  # seconds the reader reads nothing


def pieces(seed):
    rng = random.Random(seed)
    return [rng.randbytes(rng.randint(1, 3000)) for _ in range(PIECES)]


def write_slowly(sock, chunks):
    """Sends each piece, pausing now and then so fulcrum's reads stay small;
    then half-closes."""
    for i, chunk in enumerate(chunks):
        sock.sendall(chunk)
        if i % 10 == 0:
            time.sleep(0.002)
    sock.shutdown(socket.SHUT_WR)


def stalled_read(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    time.sleep(STALL)
    return hash_to_eof(sock)


def expected(chunks):
    data = b''.join(chunks)
    return len(data), hashlib.sha256(data).hexdigest()


def run(t):
    up, down = pieces(1), pieces(2)
    received = {}

    def server(conn, peer):
        if peer_is_uploader(conn):
            received['up'] = stalled_read(conn)
        else:
            write_slowly(conn, down)
            hash_to_eof(conn)

    def peer_is_uploader(conn):
        return conn.recv(1) == b'u'

    srv = t.tcp_server(server)
    listen = free_address()
    d = t.daemon({'global': {'workers': 2},
                  'services': [{'name': 'web', 'listen': listen, 'servers': [{'address': srv.address}]}]})

    # client -> server, the server stalls
    with connect(listen, timeout=30) as sock:
        writer = threading.Thread(target=write_slowly, args=(sock, [b'u'] + up), daemon=True)
        writer.start()
        writer.join(60)
        expect(not writer.is_alive(), 'the upload did not finish')
        expect_eq(hash_to_eof(sock), (0, hashlib.sha256().hexdigest()), 'nothing back, then EOF')
    count, digest = expected(up)
    expect_eq(received.get('up'), (count, digest), 'bytes and SHA-256 the stalled server read')

    # server -> client, the client stalls
    with connect(listen, timeout=30) as sock:
        sock.sendall(b'd')
        sock.shutdown(socket.SHUT_WR)
        got = stalled_read(sock)
    expect_eq(got, expected(down), 'bytes and SHA-256 the stalled client read')

    d.wait_access_count(2)
    d.stop()
    lines = d.access_log_lines()
    expect_eq(sorted((int(line['bytes_in']), int(line['bytes_out'])) for line in lines),
              sorted([(1 + count, 0), (1, expected(down)[0])]), 'access log byte counts')
    expect_eq([line['end'] for line in lines], ['client_close', 'client_close'], 'session ends (the client half-closes first)')
