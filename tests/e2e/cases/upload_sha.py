"""16 clients upload 64 MiB each at once; the server answers with the SHA-256
of what it received. Every byte must arrive intact, EOF must pass through,
and the access log must count exactly what was relayed."""

import socket

from harness import MiB, PatternStream, connect, expect, expect_eq, free_address, hash_to_eof, \
    local_address, log_stream, recv_to_eof, run_threads

DEADLINE = 280
CLIENTS = 16
SIZE = 64 * MiB


def hash_server(conn, peer):
    """Reads to EOF, replies with the hex SHA-256 of it (64 bytes), closes."""
    _, digest = hash_to_eof(conn)
    conn.sendall(digest.encode())


def run(t):
    s1 = t.tcp_server(hash_server, name='s1')
    s2 = t.tcp_server(hash_server, name='s2')
    listen = free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'services': [{
            'name': 'upload',
            'listen': listen,
            'scheduler': 'rr',
            'servers': [{'name': 's1', 'address': s1.address}, {'name': 's2', 'address': s2.address}],
        }],
    })

    def client(i):
        sock = connect(listen, timeout=120)
        with sock:
            me = local_address(sock)
            sent_digest = PatternStream(seed=1000 + i, size=SIZE).send(sock)
            sock.shutdown(socket.SHUT_WR)
            reply = recv_to_eof(sock, limit=1024)  # the digest, then EOF
            expect_eq(reply.decode(errors='replace'), sent_digest, f'client {i}: digest the server computed')
        return me

    log_stream(f'{CLIENTS} clients uploading {SIZE // MiB} MiB each')
    clients = set(run_threads(client, [(i,) for i in range(CLIENTS)], timeout=240))
    expect_eq(len(clients), CLIENTS, 'distinct client addresses')

    # rr over two servers is exact whatever worker accepted the client.
    expect_eq((s1.accepted, s2.accepted), (CLIENTS // 2, CLIENTS // 2), 'sessions per server (s1, s2)')

    d.wait_access_count(CLIENTS)
    d.stop()
    lines = d.access_log_lines()
    expect_eq(len(lines), CLIENTS, 'access log lines')
    expect_eq({line['client'] for line in lines}, clients, 'client addresses in the access log')
    servers = {'s1': s1.address, 's2': s2.address}
    for line in lines:
        expect_eq(line['service'], 'upload', 'service')
        expect(line['server'] in servers, f'unknown server in {line}')
        expect_eq(line['server_addr'], servers[line['server']], f'server_addr of {line["server"]}')
        expect_eq(line['bytes_in'], SIZE, f'bytes_in of {line["client"]}')
        expect_eq(line['bytes_out'], 64, f'bytes_out of {line["client"]}')
        expect_eq(line['end'], 'client_close', f'end of {line["client"]}')
