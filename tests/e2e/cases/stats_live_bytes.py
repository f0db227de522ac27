"""Byte counters move while a long session runs (at most a second behind),
not only when it ends, and end exact.

A client uploads 1 MiB through an echo server and reads it back, waits
1.2 s, then moves one more byte each way (bytes are published at most once
a second, on activity). While the session is still open, /stats must count
at least the first MiB both ways; after it ends, exactly what moved.
"""

import socket
import time

from harness import MiB, connect, expect, expect_eof, expect_eq, free_address, get_stats, recv_exact

DEADLINE = 60


def run(t):
    demo = t.demo_server('live')
    listen = free_address()
    stats = free_address()
    t.daemon({
        'global': {'workers': 1},
        'stats': {'listen': stats},
        'services': [{'name': 'web', 'listen': listen, 'servers': [{'name': 'live', 'address': demo.address}]}],
    })
    payload = bytes(range(256)) * (MiB // 256)
    with connect(listen, timeout=20) as sock:
        expect_eq(recv_exact(sock, len(demo.greeting), 'greeting'), demo.greeting, 'greeting')
        sock.sendall(payload)
        expect_eq(recv_exact(sock, len(payload), 'echo'), payload, 'echo of 1 MiB')
        time.sleep(1.2)
        sock.sendall(b'x')
        expect_eq(recv_exact(sock, 1, 'one more byte'), b'x', 'echo of one byte')
        time.sleep(0.2)
        service = get_stats(stats)['services'][0]
        server = service['servers'][0]
        expect_eq((service['sessions']['active'], server['sessions']['active']), (1, 1), 'the session is still open')
        for what, counters in (('service', service['bytes']), ('server', server['bytes'])):
            expect(counters['in'] >= MiB, f'{what} bytes.in while the session runs: {counters}')
            expect(counters['out'] >= MiB + len(demo.greeting), f'{what} bytes.out while the session runs: {counters}')
        sock.shutdown(socket.SHUT_WR)
        expect_eof(sock, 'session end')
    time.sleep(0.3)
    service = get_stats(stats)['services'][0]
    expect_eq(service['bytes'], {'in': MiB + 1, 'out': len(demo.greeting) + MiB + 1}, 'bytes after the session ended')
    expect_eq(service['servers'][0]['bytes'], service['bytes'], 'server bytes after the session ended')
