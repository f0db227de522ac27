"""proxy_protocol: v1 | v2 — fulcrum sends the PROXY header before any
client byte, and the server learns the client's own address and port and
the address the client connected to (TCP4 from 127.3.4.5, TCP6 from ::1).
The test servers parse the headers strictly (HAProxy's specification) and
then echo; the echo proves no client byte came before or inside the header.
"""

import socket
import struct

from harness import connect, echo_handler, expect, expect_eof, expect_eq, format_address, free_address, local_address, \
    parse_address, recv_exact

DEADLINE = 60
V2_SIGNATURE = b'\r\n\r\n\x00\r\nQUIT\n'


def read_v1(conn):
    line = b''
    while not line.endswith(b'\r\n'):
        byte = conn.recv(1)
        if not byte or len(line) > 107:
            raise AssertionError(f'bad v1 header {line!r}')
        line += byte
    words = line[:-2].decode('ascii').split(' ')
    if len(words) != 6 or words[0] != 'PROXY' or words[1] not in ('TCP4', 'TCP6'):
        raise AssertionError(f'bad v1 header {line!r}')
    family = socket.AF_INET if words[1] == 'TCP4' else socket.AF_INET6
    for host in words[2:4]:
        socket.inet_pton(family, host)  # strict: a literal of the announced family
    for port in words[4:6]:
        if not port.isdigit() or str(int(port)) != port or not 0 < int(port) < 65536:
            raise AssertionError(f'bad port in {line!r}')
    return format_address(words[2], int(words[4])), format_address(words[3], int(words[5]))


def exact(conn, n):
    data = b''
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise AssertionError('EOF inside the header')
        data += chunk
    return data


def read_v2(conn):
    head = exact(conn, 16)
    if head[:12] != V2_SIGNATURE or head[12] != 0x21 or head[13] not in (0x11, 0x21):
        raise AssertionError(f'bad v2 header {head!r}')
    length = struct.unpack('!H', head[14:16])[0]
    body = exact(conn, length)
    if head[13] == 0x11:
        if length != 12:
            raise AssertionError(f'TCP4 length {length}')
        src, dst = socket.inet_ntop(socket.AF_INET, body[0:4]), socket.inet_ntop(socket.AF_INET, body[4:8])
        sport, dport = struct.unpack('!HH', body[8:12])
    else:
        if length != 36:
            raise AssertionError(f'TCP6 length {length}')
        src, dst = socket.inet_ntop(socket.AF_INET6, body[0:16]), socket.inet_ntop(socket.AF_INET6, body[16:32])
        sport, dport = struct.unpack('!HH', body[32:36])
    return format_address(src, sport), format_address(dst, dport)


def proxied_echo(reader):
    def handler(conn, peer):
        src, dst = reader(conn)
        conn.sendall(f'{src} {dst}\n'.encode())
        echo_handler(conn, peer)
    return handler


def run(t):
    v1 = t.tcp_server(proxied_echo(read_v1), name='v1')
    v2 = t.tcp_server(proxied_echo(read_v2), name='v2')
    v1_6 = t.tcp_server(proxied_echo(read_v1), host='::1', name='v1-6')
    v2_6 = t.tcp_server(proxied_echo(read_v2), host='::1', name='v2-6')
    listens = {name: free_address(host) for name, host in
               [('v1', '127.0.0.1'), ('v2', '127.0.0.1'), ('v1-6', '::1'), ('v2-6', '::1')]}
    servers = {'v1': v1, 'v2': v2, 'v1-6': v1_6, 'v2-6': v2_6}
    d = t.daemon({
        'global': {'workers': 2},
        'services': [{'name': name.replace('-', '_'), 'listen': listens[name],
                      'proxy_protocol': name.split('-')[0],
                      'servers': [{'address': servers[name].address}]} for name in listens],
    })
    for name, listen in listens.items():
        source = '127.3.4.5' if '6' not in name else None
        with connect(listen, timeout=10, source=source) as sock:
            me = local_address(sock)
            sock.sendall(b'first client bytes\n')
            line = b''
            while not line.endswith(b'\n'):
                chunk = sock.recv(1)
                expect(chunk, f'{name}: EOF before the server\'s line')
                line += chunk
            src, dst = line.decode().strip().split(' ')
            expect_eq(src, me, f'{name}: client address the server saw')
            expect_eq(parse_address(dst), parse_address(listen), f'{name}: address the client connected to')
            expect_eq(recv_exact(sock, 19, 'echo'), b'first client bytes\n', f'{name}: echo after the header')
            sock.shutdown(socket.SHUT_WR)
            expect_eof(sock, f'{name}: end')
        if source:
            expect(me.startswith('127.3.4.5:'), f'client bound to 127.3.4.5: {me}')
    d.wait_access_count(4)
    d.stop()
    for line in d.access_log_lines():
        expect_eq((line['bytes_in'], line['end']), (19, 'client_close'), f'header bytes are not client bytes: {line}')
