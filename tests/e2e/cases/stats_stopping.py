"""While fulcrum stops, /healthz and the reload API say so (issue 15, 2.8).

fulcrum (shutdown_timeout 30 s) with the stats endpoint and an admin token,
service `web` over a demo echo server. Before the stop: GET /healthz is
`200 ok`. A session is opened and kept open, then SIGTERM: once the
`stopping` line is logged, while that session keeps the daemon alive,
  - GET /healthz answers `503` with the body `stopping` (a load balancer in
    front of fulcrum takes it out of rotation);
  - POST /api/v1/reload with the right token answers `503` (`stopping`) and
    reloads nothing (no `reloading` line, generation 1 in /stats);
  - GET /stats still answers 200.
The session still echoes; it ends and the daemon exits 0.
"""

import signal
import socket

from harness import connect, expect, expect_eof, expect_eq, free_address, get_stats, http_get, http_request, \
    recv_exact

DEADLINE = 60
TOKEN = 'stopping-token'


def echo(sock, message, what):
    sock.sendall(message)
    expect_eq(recv_exact(sock, len(message), 'echo'), message, what)


def reload(stats):
    return http_request(stats, 'POST', '/api/v1/reload', body=b'', headers={'Authorization': f'Bearer {TOKEN}'})


def run(t):
    demo = t.demo_server('echo')
    listen, stats = free_address(), free_address()
    token_file = t.token_file(TOKEN + '\n')
    d = t.daemon({'global': {'workers': 2, 'shutdown_timeout': '30s'},
                  'stats': {'listen': stats, 'admin_token_file': token_file},
                  'services': [{'name': 'web', 'listen': listen,
                                'servers': [{'name': 'echo', 'address': demo.address}]}]})
    healthz = http_get(stats, '/healthz')
    expect_eq((healthz.status, healthz.body), (200, b'ok\n'), 'GET /healthz while serving')

    with connect(listen, timeout=10) as sock:
        expect_eq(recv_exact(sock, len(demo.greeting), 'greeting'), demo.greeting, 'greeting')
        echo(sock, b'before the stop\n', 'echo before SIGTERM')
        d.send_signal(signal.SIGTERM)
        d.wait_for_log(lambda r: r.message == 'stopping', timeout=10)

        healthz = http_get(stats, '/healthz')
        expect_eq((healthz.status, healthz.body), (503, b'stopping\n'), 'GET /healthz while stopping')
        reply = reload(stats)
        expect_eq((reply.status, reply.body), (503, b'stopping\n'), 'POST /api/v1/reload while stopping')
        expect_eq(d.find_logs('reloading'), [], '`reloading` lines after a reload asked while stopping')
        expect_eq(get_stats(stats)['config']['generation'], 1, 'generation in /stats while stopping')

        echo(sock, b'after the stop began\n', 'echo while stopping')
        expect(d.running(), 'the daemon exited while a session was still active')
        sock.shutdown(socket.SHUT_WR)
        expect_eof(sock, 'the session after its half-close')
    expect_eq(d.wait_exit(15), 0, 'exit code once the last session ended')
    d.check_stopped_log()
