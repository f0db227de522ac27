"""max_lifetime closes a session once it is that old (+-10%), however busy it is.

Service with max_lifetime: 1s (idle timeout 10 m) in front of an in-test
server that greets, echoes, and notes how each connection ended (EOF or
reset). Four clients at once, each exchanging one byte every 100 ms (every
byte echoed) until fulcrum closes the session: each sees a reset or EOF
0.9 s to 1.6 s after it connected; the server side of each sees a reset.
Their access-log lines say end=max_lifetime, duration_ms 900..1600, and
bytes_in equals the bytes the client got echoed (at least 8 each). A fifth
client talks the same way for 0.5 s and closes: end=client_close, every
byte echoed, its server side saw a clean EOF.
"""

import collections
import socket
import threading
import time

from harness import connect, expect, expect_eq, expect_eof, free_address, local_address, log_stream, recv_exact, \
    run_threads, wait_until

DEADLINE = 60
LONG_CLIENTS = 4
LOWER, UPPER = 0.9, 1.6  # 1 s -10%, +10% and a generous margin for scheduling


def run(t):
    ends = collections.Counter()
    lock = threading.Lock()

    def handler(conn, peer):
        outcome = 'eof'
        try:
            conn.sendall(b'hello from lifetime\n')
            while True:
                data = conn.recv(4096)
                if not data:
                    break
                conn.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            outcome = 'reset'
        with lock:
            ends[outcome] += 1

    server = t.tcp_server(handler, name='lifetime')
    listen = free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'services': [{'name': 'aged', 'listen': listen, 'max_lifetime': '1s', 'timeouts': {'idle': '10m'},
                      'servers': [{'name': 'lifetime', 'address': server.address}]}],
    })

    def talker(k, seconds=None):
        """Echoes a byte every 100 ms until fulcrum closes the session (or for
        `seconds`, then closes it). Returns (client address, bytes echoed,
        how it ended, seconds since connect)."""
        start = time.monotonic()
        with connect(listen, timeout=10) as sock:
            me = local_address(sock)
            expect_eq(recv_exact(sock, 20, 'greeting'), b'hello from lifetime\n', f'client {k}: greeting')
            echoed = 0
            while seconds is None or time.monotonic() - start < seconds:
                byte = bytes([0x61 + echoed % 26])
                try:
                    sock.sendall(byte)
                    got = sock.recv(1)
                except (ConnectionResetError, BrokenPipeError):
                    return me, echoed, 'reset', time.monotonic() - start
                if got == b'':
                    return me, echoed, 'eof', time.monotonic() - start
                expect_eq(got, byte, f'client {k}: echo of byte {echoed}')
                echoed += 1
                expect(echoed < 100, f'client {k}: still open after {echoed} bytes in '
                                     f'{time.monotonic() - start:.3f}s')
                time.sleep(0.1)
            sock.shutdown(socket.SHUT_WR)
            expect_eof(sock, f'client {k} after its half-close')
            return me, echoed, 'closed', time.monotonic() - start

    results = run_threads(talker, [(k,) for k in range(LONG_CLIENTS)] + [(LONG_CLIENTS, 0.5)], 30, 'client')
    long_results, (short_client, short_echoed, short_end, _) = results[:LONG_CLIENTS], results[LONG_CLIENTS]
    log_stream('long sessions: ' + ', '.join(f'{end} after {elapsed:.3f}s, {echoed} bytes'
                                              for _, echoed, end, elapsed in long_results))
    for k, (_, echoed, end, elapsed) in enumerate(long_results):
        expect(end in ('reset', 'eof'), f'client {k}: ended with {end}')
        expect(LOWER <= elapsed <= UPPER, f'client {k}: closed {elapsed:.3f}s after it connected, '
                                          f'expected {LOWER}..{UPPER}s (max_lifetime 1s +-10%)')
        expect(echoed >= 8, f'client {k}: only {echoed} bytes echoed before the close')
    expect_eq(short_end, 'closed', 'the short session')

    d.wait_access_count(LONG_CLIENTS + 1)

    def server_ends():
        with lock:
            return dict(ends) if sum(ends.values()) == LONG_CLIENTS + 1 else None
    wait_until(server_ends, 10, 'the server to see every connection end')
    d.stop()
    server_ends = server_ends()
    expect_eq(server_ends, {'reset': LONG_CLIENTS, 'eof': 1}, 'how the connections ended at the server')
    lines = {line['client']: line for line in d.access_log_lines()}
    expect_eq(sorted(lines), sorted([r[0] for r in results]), 'clients in the access log')
    for k, (me, echoed, _, _) in enumerate(long_results):
        line = lines[me]
        expect_eq(line['end'], 'max_lifetime', f'end of long session {k}')
        expect(900 <= line['duration_ms'] <= 1600, f'duration_ms of long session {k}: {line["duration_ms"]}')
        # The last byte sent may have reached the server without its echo making it back.
        expect(echoed <= line['bytes_in'] <= echoed + 1, f'bytes_in of long session {k}: {line["bytes_in"]}, '
                                                         f'{echoed} bytes echoed')
    line = lines[short_client]
    expect_eq((line['end'], line['bytes_in'], line['bytes_out']), ('client_close', short_echoed, 20 + short_echoed),
              'end, bytes_in, bytes_out of the short session')
    expect(server.accepted == LONG_CLIENTS + 1, f'server accepted {server.accepted} connections')
