"""accept_proxy_protocol: true — clients are proxies that send a PROXY
header first. Valid v1 and v2 headers: the source they carry is the client
everywhere (the access log, and the v1 header fulcrum forwards to the
server). Garbage, a truncated header, a 200-byte v1 line and a header that
never completes: each client is closed (the last after the 3 s limit),
counted in /stats (`proxy_header_errors` 4, `rejected` 0: rejected counts
only sessions no server could take, as its help text says), logged with its
reason, and no server connection is made.
"""

import socket
import struct
import time

from harness import connect, expect, expect_eq, free_address, get_stats

DEADLINE = 60
CLAIMED = ('127.9.9.9', 4242)  # only written in headers: no traffic goes there
V2_SIGNATURE = b'\r\n\r\n\x00\r\nQUIT\n'


def v1_echo(conn, peer):
    line = b''
    while not line.endswith(b'\r\n'):
        byte = conn.recv(1)
        if not byte:
            return
        line += byte
    conn.sendall(line)  # the header fulcrum forwarded, back to the client
    while True:
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(data)


def closed(sock, timeout):
    """True when the peer closes (EOF or reset) within `timeout` seconds."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b''
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def run(t):
    server = t.tcp_server(v1_echo, name='behind')
    listen = free_address()
    stats = free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'stats': {'listen': stats},
        'services': [{'name': 'edge', 'listen': listen, 'accept_proxy_protocol': True, 'proxy_protocol': 'v1',
                      'servers': [{'name': 'behind', 'address': server.address}]}],
    })
    host, port = listen.rsplit(':', 1)
    v1 = f'PROXY TCP4 {CLAIMED[0]} {host} {CLAIMED[1]} {port}\r\n'.encode()
    v2 = (V2_SIGNATURE + b'\x21\x11' + struct.pack('!H', 12) + socket.inet_aton(CLAIMED[0]) +
          socket.inet_aton(host) + struct.pack('!HH', CLAIMED[1], int(port)))
    for name, header in (('v1', v1), ('v2', v2)):
        with connect(listen, timeout=10) as sock:
            sock.sendall(header + b'payload\n')  # header and data in one segment
            expected = f'PROXY TCP4 {CLAIMED[0]} {host} {CLAIMED[1]} {port}\r\n'.encode() + b'payload\n'
            got = b''
            while len(got) < len(expected):
                chunk = sock.recv(4096)
                expect(chunk, f'{name}: EOF after {got!r}')
                got += chunk
            expect_eq(got, expected, f'{name}: forwarded header and payload')
            sock.shutdown(socket.SHUT_WR)
    expect_eq(server.accepted, 2, 'server connections for the valid headers')

    bad = [('garbage', b'GET / HTTP/1.1\r\nHost: x\r\n\r\n', False),
           ('truncated', b'PROXY TCP4 127.9.9.9 ', True),
           ('long v1 line', b'PROXY TCP4 ' + b'1' * 189, False)]
    for name, data, close_after in bad:
        with connect(listen, timeout=10) as sock:
            sock.sendall(data)
            if close_after:
                sock.shutdown(socket.SHUT_WR)
            expect(closed(sock, 5), f'{name}: not closed by fulcrum')
    with connect(listen, timeout=10) as sock:
        sock.sendall(b'PROXY TCP4 127.9')
        start = time.monotonic()
        expect(closed(sock, 10), 'a header that never completes: not closed')
        waited = time.monotonic() - start
        expect(2.5 <= waited <= 6, f'a header that never completes was closed after {waited:.1f}s (limit 3s)')
    expect_eq(server.accepted, 2, 'server connections after the bad headers (none made)')

    d.wait_access_count(6)
    service = get_stats(stats)['services'][0]
    expect_eq(service['sessions']['proxy_header_errors'], 4, 'proxy_header_errors in /stats')
    expect_eq(service['sessions']['rejected'], 0, 'rejected in /stats (bad headers are not rejections)')
    d.stop()
    lines = d.access_log_lines()
    good = [l for l in lines if l['end'] != 'bad_proxy_header']
    expect_eq(sorted(l['client'] for l in good), [f'{CLAIMED[0]}:{CLAIMED[1]}'] * 2, 'clients of the valid sessions')
    expect_eq(sum(1 for l in lines if l['end'] == 'bad_proxy_header' and l['server'] == '-'), 4,
              'bad_proxy_header sessions without a server')
    reasons = sorted(r.fields['reason'] for r in d.logs() if r.message == 'PROXY header rejected')
    expect_eq(reasons, sorted(['not a PROXY protocol header', 'connection closed before a complete PROXY header',
                               'v1 header longer than 107 bytes', 'no complete PROXY header within 3s']),
              'logged reasons')
