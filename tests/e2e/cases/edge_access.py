"""At the edge (SPEC.md): allow/deny, source_limits and trusted PROXY
senders, checked at accept before any server is picked. Clients come from
distinct loopback addresses (127.0.0.x: every one of them is this host).

1. `lists`: allow [127.0.0.1, 127.0.0.2], deny [127.0.0.2]. 127.0.0.1
   gets the server's greeting; 127.0.0.2 (denied though allowed: deny wins)
   and 127.0.0.3 (not allowed) are closed at once, the server sees neither;
   `sessions.denied` 2, access-log ends `denied` with their addresses.
2. `conns`: source_limits.connections 5. Five sessions of 127.0.0.4 held
   open, a sixth is closed (`source_limit`); 127.0.0.5 still gets in; once
   one of the five ends, 127.0.0.4 gets in again. `sessions.limited` 1.
3. `rate`: source_limits.rate 10/s. 30 connects of 127.0.0.6 in a row: 10
   are served, plus one per 100 ms the burst took (exactly 10 when it took
   less than 100 ms, the usual case); the others are closed and counted in
   `sessions.limited`.
4. `edge`: accept_proxy_protocol [127.0.0.7]. A PROXY header from 127.0.0.7
   is obeyed (the access log has the header's client and `peer` the real
   one); from 127.0.0.8 the client is closed, `proxy_untrusted`, counted
   in `sessions.denied`. /metrics has the counters (`promtool` checks the
   names in metrics_promtool).
5. 2000 refused connects to `lists`: fewer than 2000 access-log lines, and
   the `log lines suppressed` summaries for `session` carry the rest: the
   lines plus the counts are exactly 2000.
"""

import socket
import time

from harness import expect, expect_eq, free_address, get_ok, get_stats, log_stream, wait_until

DEADLINE = 90


def greeter(conn, peer):
    conn.sendall(b'hello\n')
    while True:
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(data)


class Client(socket.socket):
    refused = False  # reset while connecting


def open_from(source, address, timeout=5):
    """A connection from `source`; fulcrum's reset of a refused client may
    reach the socket before connect() returns, and the socket says so on
    its first read then (greeted)."""
    host, port = address.rsplit(':', 1)
    sock = Client(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    try:
        sock.connect((host, int(port)))
    except ConnectionResetError:
        sock.refused = True
    return sock


def greeted(sock):
    """The server's greeting arrives (True), or fulcrum closes (False)."""
    if sock.refused:
        return False
    try:
        data = sock.recv(6)
    except ConnectionResetError:
        return False
    if data == b'':
        return False
    expect_eq(data, b'hello\n', 'greeting')
    return True


def sessions_of(stats, name):
    return next(s for s in stats['services'] if s['name'] == name)['sessions']


def run(t):
    server = t.tcp_server(greeter, name='behind')
    backend = [{'name': 'behind', 'address': server.address}]
    addresses = {name: free_address() for name in ('lists', 'conns', 'rate', 'edge')}
    stats_address = free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'stats': {'listen': stats_address},
        'services': [
            {'name': 'lists', 'listen': addresses['lists'], 'allow': ['127.0.0.1', '127.0.0.2'],
             'deny': ['127.0.0.2/32'], 'servers': backend},
            {'name': 'conns', 'listen': addresses['conns'], 'source_limits': {'connections': 5},
             'servers': backend},
            {'name': 'rate', 'listen': addresses['rate'], 'source_limits': {'rate': '10/s'}, 'servers': backend},
            {'name': 'edge', 'listen': addresses['edge'], 'accept_proxy_protocol': ['127.0.0.7'],
             'servers': backend},
        ],
    })

    # 1. allow and deny.
    with open_from('127.0.0.1', addresses['lists']) as sock:
        expect(greeted(sock), '127.0.0.1 (allowed) is served')
    accepted = server.accepted
    for source in ('127.0.0.2', '127.0.0.3'):
        with open_from(source, addresses['lists']) as sock:
            expect(not greeted(sock), f'{source} closed at once')
    wait_until(lambda: sessions_of(get_stats(stats_address), 'lists')['denied'] == 2, 5, 'lists: denied 2')
    expect_eq(server.accepted, accepted, 'the server saw no denied client')
    ends = [(r['client'].rsplit(':', 1)[0], r['server'], r['end']) for r in d.access_log_lines()
            if r['service'] == 'lists' and r['end'] == 'denied']
    expect_eq(sorted(ends), [('127.0.0.2', '-', 'denied'), ('127.0.0.3', '-', 'denied')], 'access log of the denied')

    # 2. Concurrent sessions per client.
    held = [open_from('127.0.0.4', addresses['conns']) for _ in range(5)]
    for sock in held:
        expect(greeted(sock), 'one of five sessions of 127.0.0.4')
    with open_from('127.0.0.4', addresses['conns']) as sock:
        expect(not greeted(sock), 'the sixth session of 127.0.0.4 is closed')
    with open_from('127.0.0.5', addresses['conns']) as sock:
        expect(greeted(sock), '127.0.0.5 still gets in')
    held.pop().close()
    wait_until(lambda: sessions_of(get_stats(stats_address), 'conns')['active'] == 4, 5, 'conns: 4 active')
    with open_from('127.0.0.4', addresses['conns']) as sock:
        expect(greeted(sock), '127.0.0.4 gets in again after one of its sessions ended')
    for sock in held:
        sock.close()
    expect_eq(sessions_of(get_stats(stats_address), 'conns')['limited'], 1, 'conns: limited')

    # 3. New sessions per second per client.
    socks = []
    began = time.monotonic()
    for _ in range(30):
        socks.append(open_from('127.0.0.6', addresses['rate']))
    took = time.monotonic() - began
    served = sum(greeted(sock) for sock in socks)
    for sock in socks:
        sock.close()
    most = 10 + int(took * 10)
    expect(10 <= served <= most, f'rate 10/s: {served} of 30 connects served in {took:.3f} s (10 to {most})')
    if took < 0.1:
        expect_eq(served, 10, 'rate 10/s: 30 connects within 100 ms')
    log_stream(f'rate 10/s: {served} of 30 connects served, {30 - served} limited, in {took * 1000:.0f} ms')
    wait_until(lambda: sessions_of(get_stats(stats_address), 'rate')['limited'] == 30 - served, 5,
               f'rate: limited {30 - served}')

    # 4. Trusted PROXY senders.
    host, port = addresses['edge'].rsplit(':', 1)
    header = f'PROXY TCP4 127.9.9.9 {host} 4242 {port}\r\n'.encode()
    with open_from('127.0.0.7', addresses['edge']) as sock:
        sock.sendall(header)
        expect(greeted(sock), 'a PROXY header from 127.0.0.7 (trusted)')
        peer_port = sock.getsockname()[1]
    with open_from('127.0.0.8', addresses['edge']) as sock:
        try:
            sock.sendall(header)
        except OSError:
            pass
        expect(not greeted(sock), 'a PROXY header from 127.0.0.8 (untrusted): closed')
    wait_until(lambda: sessions_of(get_stats(stats_address), 'edge')['denied'] == 1, 5, 'edge: denied 1')
    lines = [r for r in d.access_log_lines() if r['service'] == 'edge']
    expect_eq(sorted((r['client'], r.get('peer', '-'), r['end']) for r in lines if r['end'] != 'proxy_untrusted'),
              [('127.9.9.9:4242', f'127.0.0.7:{peer_port}', 'client_close')], 'edge: client and peer in the access log')
    expect_eq([r['client'].rsplit(':', 1)[0] for r in lines if r['end'] == 'proxy_untrusted'], ['127.0.0.8'],
              'edge: the untrusted sender in the access log')
    text = get_ok(stats_address, '/metrics', 'text/plain; version=0.0.4; charset=utf-8')
    for name, value in (('denied', 1), ('limited', 0)):
        line = f'fulcrum_service_sessions_{name}_total{{service="edge"}} {value}'
        expect(line in text.splitlines(), f'/metrics: {line}')

    # 5. Refused clients' log lines are rate-limited, with summaries.
    before = len([r for r in d.access_log_lines() if r['end'] == 'denied'])
    for _ in range(2000):
        with open_from('127.0.0.3', addresses['lists']) as sock:
            greeted(sock)
    wait_until(lambda: sessions_of(get_stats(stats_address), 'lists')['denied'] == 2002, 10, 'lists: denied 2002')

    def accounted():
        logged = len([r for r in d.access_log_lines() if r['end'] == 'denied']) - before
        suppressed = sum(int(r.fields['count']) for r in d.logs()
                         if r.message == 'log lines suppressed' and r.fields.get('message') == 'session')
        return logged, suppressed
    wait_until(lambda: sum(accounted()) == 2000, 10, lambda: f'lines plus suppressed: {accounted()}')
    logged, suppressed = accounted()
    expect(logged < 2000 and suppressed > 0, f'2000 refusals: {logged} lines, {suppressed} suppressed')
    log_stream(f'2000 refused connects: {logged} access-log lines, {suppressed} in summaries')
    d.stop()
