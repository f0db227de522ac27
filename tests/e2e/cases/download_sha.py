"""16 clients download 64 MiB each at once. Each asks with `SEED SIZE\\n`, the
server streams that deterministic content and closes; the client checks the
SHA-256 of everything it got against the content's own hash."""

from harness import MiB, PatternStream, connect, expect, expect_eq, free_address, hash_to_eof, \
    local_address, log_stream, recv_line, run_threads

DEADLINE = 280
CLIENTS = 16
SIZE = 64 * MiB


def stream_server(conn, peer):
    """Reads `SEED SIZE\\n`, sends PatternStream(SEED, SIZE), closes."""
    seed, size = recv_line(conn, what='request').split()
    PatternStream(int(seed), int(size)).send(conn)


def run(t):
    s1 = t.tcp_server(stream_server, name='s1')
    s2 = t.tcp_server(stream_server, name='s2')
    listen = free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'services': [{
            'name': 'download',
            'listen': listen,
            'scheduler': 'rr',
            'servers': [{'name': 's1', 'address': s1.address}, {'name': 's2', 'address': s2.address}],
        }],
    })

    def client(i):
        seed = 5000 + i
        expected = PatternStream(seed, SIZE).sha256()
        request = f'{seed} {SIZE}\n'.encode()
        sock = connect(listen, timeout=120)
        with sock:
            me = local_address(sock)
            sock.sendall(request)
            count, digest = hash_to_eof(sock)
        expect_eq(count, SIZE, f'client {i}: bytes received')
        expect_eq(digest, expected, f'client {i}: SHA-256 of the download')
        return me, len(request)

    log_stream(f'{CLIENTS} clients downloading {SIZE // MiB} MiB each')
    results = dict(run_threads(client, [(i,) for i in range(CLIENTS)], timeout=240))
    expect_eq(len(results), CLIENTS, 'distinct client addresses')
    expect_eq((s1.accepted, s2.accepted), (CLIENTS // 2, CLIENTS // 2), 'sessions per server (s1, s2)')

    d.wait_access_count(CLIENTS)
    d.stop()
    lines = d.access_log_lines()
    expect_eq(len(lines), CLIENTS, 'access log lines')
    expect_eq({line['client'] for line in lines}, set(results), 'client addresses in the access log')
    for line in lines:
        expect_eq(line['service'], 'download', 'service')
        expect(line['server'] in ('s1', 's2'), f'unknown server in {line}')
        expect_eq(line['bytes_in'], results[line['client']], f'bytes_in of {line["client"]} (the request line)')
        expect_eq(line['bytes_out'], SIZE, f'bytes_out of {line["client"]}')
        expect_eq(line['end'], 'server_close', f'end of {line["client"]}')
