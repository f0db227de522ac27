"""HTTP health checks (`health_check.http`) on a check port beside the data port.

One fulcrum, health checks every 1 s (timeout 1 s, rise 2, fall 2: a busy
machine fails no check),
five services of one server each, the data port a demo server's and the
check port (`health_check.port`) one served by the test:
  - `flip`: `http: {path: /primary?role=leader, host: db.test:8008}`, the
    check port answering 200, then 503, then 200 again. Every request the
    check port sees is exactly `GET /primary?role=leader HTTP/1.1` with one
    Host header, `db.test:8008`. On 503 the server goes down: /stats
    `health.last_error` is `http status 503` and the `server down` line says
    reason="http status 503"; on 200 it comes back up.
  - `only204`: `http: {status: [204]}`, no path or host: requests are `GET /
    HTTP/1.1` with Host `127.0.0.1:CHECKPORT` (the checked address). The
    check port answers 200, a failure here (`http status 200`); then 204,
    and the server comes up.
  - `refused`: the check port refuses connects: `connect refused`.
  - `garbage`: the check port answers `hello` and closes: `http protocol
    error`.
  - `silent`: the check port reads and never answers: `timeout`.
"""

from harness import expect, expect_eq, wait_until
from http_check_server import CheckedServices, HttpCheckServer

DEADLINE = 90
CHECK = {'interval': '1s', 'timeout': '1s', 'rise': 2, 'fall': 2}



def garbage(conn, peer):
    conn.recv(4096)
    conn.sendall(b'hello\n')


def silent(conn, peer):
    while conn.recv(4096):
        pass


def run(t):
    flip = HttpCheckServer(t, 'flip-check')
    only204 = HttpCheckServer(t, 'only204-check')
    refused = t.dead_address()
    garbage_server = t.tcp_server(garbage, name='garbage-check')
    silent_server = t.tcp_server(silent, name='silent-check')
    check_ports = {
        'flip': (flip.port, {'path': '/primary?role=leader', 'host': 'db.test:8008'}),
        'only204': (only204.port, {'status': [204]}),
        'refused': (int(refused.rsplit(':', 1)[1]), {'path': '/'}),
        'garbage': (int(garbage_server.address.rsplit(':', 1)[1]), {'path': '/'}),
        'silent': (int(silent_server.address.rsplit(':', 1)[1]), {'path': '/'}),
    }
    checked = CheckedServices(t, check_ports, CHECK)
    d, server, goes = checked.daemon, checked.server, checked.goes

    # --- the failures, each with its reason
    goes('refused', 'down', 'connect refused')
    goes('garbage', 'down', 'http protocol error')
    goes('silent', 'down', 'timeout')
    goes('only204', 'down', 'http status 200')

    # --- flip: up on 200, down on 503, up again on 200
    wait_until(lambda: len(flip.seen()) >= 3, 10, 'three checks at flip\'s check port', interval=0.05)
    expect_eq(server('flip')['state'], 'up', 'flip/s while its check port answers 200')
    expect_eq(server('flip')['health']['checks_failed'], 0, 'flip/s: failed checks while answering 200')
    flip.status = 503
    goes('flip', 'down', 'http status 503')
    flip.status = 200
    goes('flip', 'up', 'check passed')
    for request in flip.seen():
        expect_eq((request.line, request.header('Host')), ('GET /primary?role=leader HTTP/1.1', ['db.test:8008']),
                  f'flip: request line and Host headers of {request}')

    # --- only204: up once the check port answers 204
    only204.status = 204
    goes('only204', 'up', 'check passed')
    for request in only204.seen():
        expect_eq((request.line, request.header('Host')), ('GET / HTTP/1.1', [f'127.0.0.1:{only204.port}']),
                  f'only204: request line and Host headers of {request}')
    expect(not flip.handshake_errors and not only204.handshake_errors, 'no TLS on plain check ports')
    t.check_servers()
    d.stop()
