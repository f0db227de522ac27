"""The stats endpoint answers only requests addressed to it (issue 15, 2.8):
against DNS rebinding, a request whose Host header is neither the address
the client connected to (`IP:PORT`, `[IPv6]:PORT`) nor `localhost` or
`localhost:PORT` is answered `421 Misdirected Request`. A request without a
Host header (HTTP/1.0) is served.

fulcrum with stats on 127.0.0.1:P and an admin token:
  - GET /stats with Host `127.0.0.1:P`, `localhost:P`, `LocalHost:P`,
    `localhost`, and with no Host header at all (HTTP/1.0): 200;
  - Host `evil.example:P`, `evil.example`, `127.0.0.1:OTHER`,
    `127.0.0.2:P`, `localhost:OTHER`, `127.0.0.1` (port 80 implied) and an
    empty Host: 421 with the body `Host must be the stats listen address or
    localhost`;
  - the same for /, /metrics, /healthz and an admin POST with the right
    token (421, and the change is not made: the weight stays 1);
  - the harness's own requests, fulcrumctl (`status`) and the dashboard's
    address (GET / with Host 127.0.0.1:P) keep working.
fulcrum with stats on [::1]:Q (when IPv6 loopback exists): Host `[::1]:Q`
and `[0:0:0:0:0:0:0:1]:Q` (the same address written out): 200; `[::2]:Q`,
`::1:Q`, `127.0.0.1:Q`: 421.
No warning at start: the stats addresses are loopback.
"""

import re
import subprocess

from harness import binary, connect, expect, expect_eq, free_address, get_stats, http_get, \
    ipv6_loopback_available, log_stream, parse_address

DEADLINE = 60
TOKEN = 'host-check-token'
REFUSED = b'Host must be the stats listen address or localhost\n'


def raw(stats, method, path, host, body=b'', version='1.1', token=None):
    """One request with exactly this Host header (None: no Host header);
    returns (status, body)."""
    lines = [f'{method} {path} HTTP/{version}', 'Connection: close']
    if host is not None:
        lines.append(f'Host: {host}')
    if token is not None:
        lines.append(f'Authorization: Bearer {token}')
    if method == 'POST':
        lines.append(f'Content-Length: {len(body)}')
    request = ('\r\n'.join(lines) + '\r\n\r\n').encode() + body
    with connect(stats, timeout=10) as sock:
        sock.sendall(request)
        data = b''
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    m = re.match(rb'HTTP/1\.[01] (\d{3}) [^\r]*\r\n(.*?)\r\n\r\n(.*)', data, re.S)
    expect(m is not None, f'not an HTTP answer to {method} {path} Host {host!r}: {data[:200]!r}')
    return int(m.group(1)), m.group(3)


def run(t):
    a = t.demo_server('a')
    stats = free_address()
    port = parse_address(stats)[1]
    other = port + 1 if port < 65535 else port - 1
    token_file = t.token_file(TOKEN + '\n')
    d = t.daemon({'global': {'workers': 1}, 'stats': {'listen': stats, 'admin_token_file': token_file},
                  'services': [{'name': 'web', 'listen': free_address(),
                                'servers': [{'name': 'a', 'address': a.address}]}]})

    for host in (stats, f'localhost:{port}', f'LocalHost:{port}', 'localhost'):
        status, _ = raw(stats, 'GET', '/stats', host)
        expect_eq(status, 200, f'GET /stats with Host {host!r}')
    status, _ = raw(stats, 'GET', '/stats', None, version='1.0')
    expect_eq(status, 200, 'GET /stats without a Host header (HTTP/1.0)')

    bad = [f'evil.example:{port}', 'evil.example', f'127.0.0.1:{other}', f'127.0.0.2:{port}',
           f'localhost:{other}', '127.0.0.1', '']
    for host in bad:
        for path in ('/stats', '/', '/metrics', '/healthz'):
            expect_eq(raw(stats, 'GET', path, host), (421, REFUSED), f'GET {path} with Host {host!r}')
        expect_eq(raw(stats, 'POST', '/api/v1/services/web/servers/a', host, b'{"weight":9}', token=TOKEN),
                  (421, REFUSED), f'admin POST with Host {host!r}')
    expect_eq(get_stats(stats)['services'][0]['servers'][0]['weight'], 1, 'weight after refused admin POSTs')
    expect_eq(d.find_logs('admin change'), [], '`admin change` lines after refused admin POSTs')
    log_stream(f'Host check on {stats}: {len(bad)} wrong Host values refused on every path')

    expect_eq(http_get(stats, '/').status, 200, 'the dashboard page at its own address')
    status, body = raw(stats, 'GET', '/', stats)
    expect_eq(status, 200, 'GET / with the Host a browser sends')
    ctl = subprocess.run([binary('FULCRUMCTL'), '--url', f'http://{stats}', 'status'], stdin=subprocess.DEVNULL,
                         capture_output=True, timeout=30)
    expect_eq((ctl.returncode, ctl.stderr), (0, b''), 'fulcrumctl status: exit, stderr')
    ctl = subprocess.run([binary('FULCRUMCTL'), '--url', f'http://localhost:{port}', 'status'],
                         stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    expect_eq((ctl.returncode, ctl.stderr), (0, b''), 'fulcrumctl status through localhost: exit, stderr')
    expect_eq([r.raw for r in d.logs() if r.level in ('warn', 'error')], [], 'warnings and errors')

    if ipv6_loopback_available():
        stats6 = free_address('::1')
        port6 = parse_address(stats6)[1]
        d6 = t.daemon({'global': {'workers': 1}, 'stats': {'listen': stats6},
                       'services': [{'name': 'web', 'listen': free_address(),
                                     'servers': [{'name': 'a', 'address': a.address}]}]}, name='fulcrum-v6')
        for host in (stats6, f'[0:0:0:0:0:0:0:1]:{port6}', f'localhost:{port6}'):
            status, _ = raw(stats6, 'GET', '/stats', host)
            expect_eq(status, 200, f'GET /stats on {stats6} with Host {host!r}')
        for host in (f'[::2]:{port6}', f'::1:{port6}', f'127.0.0.1:{port6}'):
            expect_eq(raw(stats6, 'GET', '/stats', host), (421, REFUSED), f'GET /stats on {stats6} with Host {host!r}')
        expect_eq([r.raw for r in d6.logs() if r.level in ('warn', 'error')], [], 'warnings and errors (IPv6)')
        d6.stop()
    d.stop()
