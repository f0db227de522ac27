"""A PROXY header forwarded for a client of the other address family than
the listener it came through.

With accept_proxy_protocol the client address comes from the incoming
header, so it may be IPv6 behind an IPv4 listener, or IPv4 behind an IPv6
one, while the destination in the forwarded header is the listener's own
address. The forwarded header must then name both as IPv6, the IPv4 one
mapped (::ffff:a.b.c.d), as HAProxy does: v1 `PROXY TCP6 <v6> <mapped v4>
...` and v2 with the TCP6 family and 36 address bytes. Before the fix
fulcrum sent `PROXY TCP6 2001:db8::7 127.0.0.1 ...` (an invalid line) and v2
destination bytes read from the wrong structure.

Four services, each with its own test server that compares the header it
receives with the exact expected bytes before answering `ok` and echoing:
an IPv6 source claimed to an IPv4 listener and an IPv4 source claimed to an
IPv6 listener (skipped without IPv6 loopback), each forwarded as v1 and v2.
The claimed sources are only written in headers: no traffic goes there.
"""

import socket
import struct

from harness import TestFailure, connect, echo_handler, expect, expect_eq, expect_eof, free_address, ipv6_loopback_available, \
    log_stream, parse_address, recv_exact

DEADLINE = 60
V2_SIGNATURE = b'\r\n\r\n\x00\r\nQUIT\n'
CLAIMED_V6 = ('2001:db8::7', 4242)
CLAIMED_V4 = ('127.9.9.9', 4343)
PAYLOAD = b'client bytes after the header\n'


def v2_tcp(src, src_port, dst, dst_port):
    """A v2 PROXY header over TCP for two addresses of one family."""
    family = socket.AF_INET6 if ':' in src else socket.AF_INET
    addresses = socket.inet_pton(family, src) + socket.inet_pton(family, dst)
    body = addresses + struct.pack('!HH', src_port, dst_port)
    return V2_SIGNATURE + bytes([0x21, 0x21 if family == socket.AF_INET6 else 0x11]) + \
        struct.pack('!H', len(body)) + body


def mapped(host):
    """The IPv6 form of an IPv4 address: ::ffff:a.b.c.d."""
    return host if ':' in host else f'::ffff:{host}'


def read_header(conn):
    """The header's bytes, framed by its own syntax (v1: up to CRLF, at most
    107 bytes; v2: 16 bytes and the length they announce)."""
    first = recv_exact(conn, 1, 'header')
    if first == b'P':
        line = first
        while not line.endswith(b'\r\n'):
            expect(len(line) < 107, f'v1 line longer than 107 bytes: {line!r}')
            line += recv_exact(conn, 1, 'v1 header')
        return line
    head = first + recv_exact(conn, 15, 'v2 header')
    return head + recv_exact(conn, struct.unpack('!H', head[14:16])[0], 'v2 addresses')


def checking_echo(expected):
    """A server that fails (TcpServer keeps the error) unless the header is
    exactly `expected`, then answers `ok` and echoes until EOF."""
    def handler(conn, peer):
        header = read_header(conn)
        if header != expected:
            raise AssertionError(f'header {header!r}, expected {expected!r}')
        conn.sendall(b'ok\n')
        echo_handler(conn, peer)
    return handler


def session(name, listen, incoming, server):
    """Sends the claimed header and a payload; the server's `ok` says the
    forwarded header was exact; then the echo and a clean end."""
    with connect(listen, timeout=10) as sock:
        sock.sendall(incoming + PAYLOAD)
        try:
            reply = recv_exact(sock, 3, 'the server\'s verdict')
        except (TestFailure, ConnectionResetError) as e:
            server.check()  # fails with the header the server got
            raise TestFailure(f'{e}, and the server saw nothing wrong')
        expect_eq(reply, b'ok\n', 'the server\'s verdict on the forwarded header')
        expect_eq(recv_exact(sock, len(PAYLOAD), 'echo'), PAYLOAD, 'echo after the header')
        sock.shutdown(socket.SHUT_WR)
        expect_eof(sock, 'end')


def run(t):
    cases = []  # (service name, listen address, incoming header, expected forwarded header, claimed client)
    listen_hosts = [('v4', '127.0.0.1', CLAIMED_V6)]
    if ipv6_loopback_available():
        listen_hosts.append(('v6', '::1', CLAIMED_V4))
    else:
        log_stream('no IPv6 loopback: only the IPv6 client behind the IPv4 listener is tested')
    for listener_family, host, (claimed, claimed_port) in listen_hosts:
        for version in ('v1', 'v2'):
            listen = free_address(host)
            _, port = parse_address(listen)
            # The incoming header's own destination is ignored: the forwarded
            # one names the address the proxy connected to, fulcrum's listener.
            if version == 'v1':
                family = 'TCP6' if ':' in claimed else 'TCP4'
                incoming = f'PROXY {family} {claimed} {claimed} {claimed_port} {port}\r\n'.encode()
                expected = f'PROXY TCP6 {mapped(claimed)} {mapped(host)} {claimed_port} {port}\r\n'.encode()
            else:
                incoming = v2_tcp(claimed, claimed_port, claimed, port)
                expected = v2_tcp(mapped(claimed), claimed_port, mapped(host), port)
            name = f'{listener_family}_listener_{version}'
            client = f'[{claimed}]:{claimed_port}' if ':' in claimed else f'{claimed}:{claimed_port}'
            cases.append((name, listen, version, incoming, expected, client))

    servers = {name: t.tcp_server(checking_echo(expected), name=name)
               for name, _, _, _, expected, _ in cases}
    d = t.daemon({
        'global': {'workers': 2},
        'services': [{'name': name, 'listen': listen, 'accept_proxy_protocol': True, 'proxy_protocol': version,
                      'servers': [{'name': name, 'address': servers[name].address}]}
                     for name, listen, version, _, _, _ in cases],
    })

    # Every case runs, so that a failure shows each pair's header.
    failures = []
    for name, listen, _, incoming, expected, _ in cases:
        try:
            session(name, listen, incoming, servers[name])
            log_stream(f'{name}: forwarded {expected!r}')
        except (TestFailure, OSError) as e:
            failures.append(f'{name}: {e}')
    expect(not failures, 'forwarded headers:\n' + '\n'.join(failures))
    for name, _, _, _, _, _ in cases:
        expect_eq(servers[name].accepted, 1, f'{name}: server connections')

    d.wait_access_count(len(cases))
    d.stop()
    lines = {line['service']: line for line in d.access_log_lines()}
    for name, _, _, _, _, client in cases:
        line = lines[name]
        expect_eq((line['client'], line['bytes_in'], line['bytes_out'], line['end']),
                  (client, len(PAYLOAD), 3 + len(PAYLOAD), 'client_close'), f'{name}: access log line')
