#!/usr/bin/env python3
"""The real servers of the soak test, one process each, and the session data
that the test and these servers both generate.

    peer.py KIND IP:PORT SEED

Serves KIND on IP:PORT until killed (the test kills it by PID), one thread
per connection, and prints `listening KIND IP:PORT` once it accepts. SEED is
the soak run's seed, from which both sides build the same data pool.

A client first sends one request line, then the session goes on as asked:
    ECHO ID SIZE      every byte that follows is echoed back until the
                      client's EOF; then the server closes
    DOWNLOAD ID SIZE  the server sends Pattern(ID, SIZE), then closes
    UPLOAD ID SIZE    the server reads to EOF and answers `COUNT SHA256\\n`
                      (what it received), then closes
SIZE is at least 1. KIND says what the server does to that flow:
    echo       nothing: the reference
    reset      at a byte drawn below SIZE (of what it echoes, sends or
               receives) it resets the connection (SO_LINGER 0)
    stall      at a byte drawn up to SIZE it stops reading and writing for
               0.5..2 s, then goes on
    blackhole  accepts and never reads nor writes; after 0.5..8 s it closes
               (a reset, since the request line sits unread)
Fault points come from a generator seeded with KIND and ID, so a session
meets the same fault in a replay. Peers going away (reset, broken pipe) end a
connection quietly; anything else is printed to stderr as `peer error: ...`,
which fails the test.
"""

import hashlib
import random
import socket
import struct
import sys
import threading
import time
import traceback

PIECE = 64 * 1024  # bytes per send/recv and per Pattern chunk
POOL_BYTES = 1 << 20
TIMEOUT = 60  # seconds per socket operation: longer than any fault holds
REQUEST_LIMIT = 100  # a request line is far shorter
VERBS = ('ECHO', 'DOWNLOAD', 'UPLOAD')
KINDS = ('echo', 'reset', 'stall', 'blackhole')


def make_pool(seed):
    """The random bytes every Pattern of a run is cut from: POOL_BYTES plus
    one PIECE, so a chunk may start anywhere in the first POOL_BYTES."""
    return memoryview(random.Random(seed).randbytes(POOL_BYTES + PIECE))


class Pattern:
    """The SIZE bytes of session ID: PIECE-long slices of the pool at offsets
    drawn from a generator seeded with ID. Cheap to make on both sides (no
    copy), different for every ID, and no two chunks line up."""

    def __init__(self, pool, ident, size):
        self.pool, self.ident, self.size = pool, ident, size

    def chunks(self):
        rng = random.Random(self.ident)
        left = self.size
        while left > 0:
            n = min(PIECE, left)
            offset = rng.randrange(POOL_BYTES)
            yield self.pool[offset:offset + n]
            left -= n

    def sha256(self):
        h = hashlib.sha256()
        for chunk in self.chunks():
            h.update(chunk)
        return h.hexdigest()


class Fault:
    """What a server of KIND does to one session: `at` is the byte of the
    flow where it strikes (None: never)."""

    def __init__(self, kind, ident, size):
        rng = random.Random(f'{kind}/{ident}')
        self.kind = kind
        self.at = None
        if kind == 'reset':
            self.at = rng.randrange(size)
        elif kind == 'stall':
            self.at = rng.randrange(size + 1)
            self.pause = rng.uniform(0.5, 2.0)

    def split(self, done, data):
        """`data` continues the flow after `done` bytes: returns the part
        before the fault point and the rest (empty when the point is not in
        this piece)."""
        if self.at is None or not done <= self.at < done + len(data):
            return data, b''
        return data[:self.at - done], data[self.at - done:]

    def strike(self, conn):
        """At the fault point: stall, or reset and end the connection."""
        self.at = None
        if self.kind == 'stall':
            time.sleep(self.pause)
            return
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        raise PeerGone('reset by the fault')


class PeerGone(Exception):
    """The connection ended early, on purpose or by the other side."""


def read_request(conn):
    """The request line's words and whatever followed it in the same read."""
    buf = b''
    while b'\n' not in buf:
        data = conn.recv(PIECE)
        if not data:
            # Health checks connect and close without a word.
            raise PeerGone('closed before a request')
        buf += data
        if len(buf) > REQUEST_LIMIT and b'\n' not in buf[:REQUEST_LIMIT]:
            raise ValueError(f'no request line in {buf[:REQUEST_LIMIT]!r}')
    line, rest = buf.split(b'\n', 1)
    words = line.decode('ascii').split()
    if len(words) != 3 or words[0] not in VERBS or int(words[2]) < 1:
        raise ValueError(f'bad request line {line!r}')
    return words[0], int(words[1]), int(words[2]), rest


def send_flow(conn, fault, done, data):
    """Sends `data` as bytes done.. of the flow, striking at the fault point."""
    before, after = fault.split(done, data)
    conn.sendall(before)
    if after:
        fault.strike(conn)
        conn.sendall(after)
    return done + len(data)


def echo(conn, fault, data):
    done = 0
    while True:
        if data:
            done = send_flow(conn, fault, done, data)
        data = conn.recv(PIECE)
        if not data:
            return


def download(conn, fault, pattern):
    done = 0
    for chunk in pattern.chunks():
        done = send_flow(conn, fault, done, chunk)


def upload(conn, fault, data):
    h = hashlib.sha256()
    done = 0
    while True:
        before, after = fault.split(done, data)
        h.update(before)
        done += len(before)
        if after:
            fault.strike(conn)
            h.update(after)
            done += len(after)
        data = conn.recv(PIECE)
        if not data:
            break
    conn.sendall(f'{done} {h.hexdigest()}\n'.encode())


def serve_connection(kind, conn, pool, hold_rng):
    with conn:
        conn.settimeout(TIMEOUT)
        try:
            if kind == 'blackhole':
                time.sleep(hold_rng.uniform(0.5, 8.0))
                return
            verb, ident, size, rest = read_request(conn)
            fault = Fault(kind, ident, size)
            if verb == 'ECHO':
                echo(conn, fault, rest)
            elif verb == 'DOWNLOAD':
                download(conn, fault, Pattern(pool, ident, size))
            else:
                upload(conn, fault, rest)
        except (PeerGone, ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            pass
        except Exception:
            print(f'peer error: {kind}: {traceback.format_exc()}', file=sys.stderr, flush=True)


def main(argv):
    if len(argv) != 4 or argv[1] not in KINDS:
        print(__doc__, file=sys.stderr)
        return 2
    kind, address, seed = argv[1], argv[2], int(argv[3])
    host, _, port = address.rpartition(':')
    pool = make_pool(seed)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, int(port)))
    listener.listen(1024)
    print(f'listening {kind} {address}', flush=True)
    # Hold times of the black hole: one generator for the process, used by
    # the accepting thread only.
    hold = random.Random(f'{seed}/{kind}/hold')
    while True:
        conn, _ = listener.accept()
        hold_rng = random.Random(hold.getrandbits(64))
        threading.Thread(target=serve_connection, args=(kind, conn, pool, hold_rng), daemon=True).start()


if __name__ == '__main__':
    sys.exit(main(sys.argv))
