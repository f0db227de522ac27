"""accept_proxy_protocol: the 3 s for the PROXY header are a deadline from
accept, not an idle timeout.

A client sends a valid v1 header one byte every 0.5 s (on a fixed schedule:
byte k at 0.5·k s after connecting). Before the fix the 3 s timer restarted
on every byte, so the whole 43-byte header got through after 21 s and the
session went on to the server: a trickling client held its slot for as
long as it liked. Now fulcrum closes it 3 s after accept, so the client
manages to send at most 8 bytes (those at 0, 0.5, ..., 3.0 s, and one more
should the close be up to 0.5 s late): far from a complete header.

Also: no server connection is made, the access log has one
`end=bad_proxy_header` line without a server, /stats and /metrics count one
proxy header error, and the warning gives the reason `no complete PROXY
header within 3s`.
"""

import socket
import time

from harness import connect, expect, expect_eq, free_address, get_metrics, get_stats, log_stream

DEADLINE = 60
INTERVAL = 0.5  # seconds between two bytes of the header
LIMIT = 3.0  # fulcrum's deadline for the whole header
MOST_BYTES = int(LIMIT / INTERVAL) + 1 + 1


def peer_closed(sock):
    """True when fulcrum has closed (EOF or reset); never blocks."""
    timeout = sock.gettimeout()
    sock.setblocking(False)  # with a timeout, Python would wait for data first
    try:
        return sock.recv(1) == b''
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.settimeout(timeout)


def trickle(sock, header):
    """Sends `header` byte by byte on the fixed schedule until fulcrum
    closes. Returns the bytes sent before the close was seen."""
    start = time.monotonic()
    for k, byte in enumerate(header):
        time.sleep(max(0.0, start + k * INTERVAL - time.monotonic()))
        if peer_closed(sock):
            return k
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return k
    return len(header)


def run(t):
    server = t.tcp_server(lambda conn, peer: conn.recv(1), name='behind')
    listen, stats = free_address(), free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'stats': {'listen': stats},
        'services': [{'name': 'edge', 'listen': listen, 'accept_proxy_protocol': True,
                      'servers': [{'name': 'behind', 'address': server.address}]}],
    })
    host, port = listen.rsplit(':', 1)
    header = f'PROXY TCP4 127.9.9.9 {host} 4242 {port}\r\n'.encode()

    with connect(listen, timeout=30) as sock:
        started = time.monotonic()
        sent = trickle(sock, header)
        took = time.monotonic() - started
    log_stream(f'the client sent {sent} of {len(header)} header bytes in {took:.1f}s')
    expect(sent < len(header),
           f'the client sent the whole {len(header)}-byte header at one byte per {INTERVAL}s over {took:.1f}s '
           f'and was not closed: the {LIMIT:g}s limit restarts on every byte')
    expect(sent <= MOST_BYTES, f'the client sent {sent} header bytes; at most {MOST_BYTES} fit in {LIMIT:g}s')

    d.wait_access_count(1)
    expect_eq(server.accepted, 0, 'server connections')
    expect_eq(get_stats(stats)['services'][0]['sessions']['proxy_header_errors'], 1,
              'proxy_header_errors in /stats')
    metrics, _ = get_metrics(stats)
    expect_eq(metrics.get('fulcrum_service_proxy_header_errors_total', service='edge'), 1,
              'fulcrum_service_proxy_header_errors_total')
    d.stop()
    [line] = d.access_log_lines()
    expect_eq((line['server'], line['bytes_in'], line['end']), ('-', 0, 'bad_proxy_header'), 'access log line')
    expect_eq([(r.level, r.fields.get('reason')) for r in d.logs() if r.message == 'PROXY header rejected'],
              [('warn', f'no complete PROXY header within {LIMIT:g}s')], 'PROXY header rejected lines')
