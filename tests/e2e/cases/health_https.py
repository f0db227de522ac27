"""HTTPS health checks (`health_check.http.tls`, `verify`).

A self-signed certificate for CN=localhost is made with `openssl req -x509`
in the test's directory. One fulcrum, health checks every 1 s (timeout
1 s, rise 2, fall 2: a busy machine fails no check), services of one
server each (a demo server), each checked on a check port
(`health_check.port`) served by the test:
  - `tls`: `tls: true` against a TLS check port with that certificate: the
    server stays up, no check fails, and the check port sees `GET /health
    HTTP/1.1` with Host `127.0.0.1:CHECKPORT`. Then the check port answers
    503: down with `http status 503` (the status is read through TLS); 200
    again: up. Only the first check's handshake is a full one: every later
    check resumes the server's session.
  - `verify`: `tls: true, verify: true, host: localhost` against the same
    kind of port: down with `tls certificate not verified: self-signed
    certificate` (/stats health.last_error and the `server down` line); no
    request reaches the check port.
  - `plain`: `tls: true` against a plain-HTTP check port: down with `tls
    handshake failed`.
  - `refused`: `tls: true` against a port that refuses connects: down with
    `connect refused`.
"""

import ssl
import subprocess

from harness import expect, expect_eq, wait_until
from http_check_server import CheckedServices, HttpCheckServer

DEADLINE = 90
CHECK = {'interval': '1s', 'timeout': '1s', 'rise': 2, 'fall': 2}



def self_signed(t):
    """An ssl.SSLContext serving a fresh self-signed certificate for CN=localhost."""
    key, cert = t.path('check.key'), t.path('check.crt')
    result = subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost',
                             '-days', '1', '-keyout', key, '-out', cert],
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    expect(result.returncode == 0, f'openssl req: {result}')
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def run(t):
    context = self_signed(t)
    tls = HttpCheckServer(t, 'tls-check', tls=context)
    verify = HttpCheckServer(t, 'verify-check', tls=context)
    plain = HttpCheckServer(t, 'plain-check')
    refused = t.dead_address()
    check_ports = {
        'tls': (tls.port, {'path': '/health', 'tls': True}),
        'verify': (verify.port, {'tls': True, 'verify': True, 'host': 'localhost'}),
        'plain': (plain.port, {'tls': True}),
        'refused': (int(refused.rsplit(':', 1)[1]), {'tls': True}),
    }
    checked = CheckedServices(t, check_ports, CHECK)
    d, server, goes = checked.daemon, checked.server, checked.goes

    goes('verify', 'down', 'tls certificate not verified: self-signed certificate')
    goes('plain', 'down', 'tls handshake failed')
    goes('refused', 'down', 'connect refused')
    expect_eq(verify.seen(), [], 'requests past a certificate that was not verified')
    expect(verify.handshake_errors, 'the verify check port saw no failed handshake')

    # --- tls: up through TLS; a 503 read through TLS takes it down
    wait_until(lambda: len(tls.seen()) >= 3, 10, 'three checks at the TLS check port', interval=0.05)
    v = server('tls')
    expect_eq((v['state'], v['health']['checks_failed']), ('up', 0),
              f'tls/s: state and failed checks while its check port answers 200 ({v["health"]})')
    tls.status = 503
    goes('tls', 'down', 'http status 503')
    tls.status = 200
    goes('tls', 'up', 'check passed')
    for request in tls.seen():
        expect_eq((request.line, request.header('Host')), ('GET /health HTTP/1.1', [f'127.0.0.1:{tls.port}']),
                  f'tls: request line and Host headers of {request}')
    expect_eq(tls.handshake_errors, [], 'failed handshakes at the TLS check port')
    # The first check's handshake is a full one; every later check resumes
    # the session the server gave (TLS 1.3 tickets), whatever the status.
    resumed = tls.resumed
    expect(len(resumed) >= 6, f'handshakes at the TLS check port: {resumed}')
    expect_eq((resumed[0], resumed[1:].count(False)), (False, 0),
              f'the first handshake full, no later one full ({resumed})')
    t.check_servers()
    d.stop()
