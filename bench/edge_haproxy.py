#!/usr/bin/env python3
"""fulcrum's edge rules next to HAProxy 2.6's equivalent configuration
(issue 20): the same clients against both, on loopback, and what each
client got. Figures and outcomes only: it never passes or fails.

Both balancers get the same services:

    tls     routes by TLS server name: api.test -> api, exact.apps.test ->
            exact, *.apps.test (one label) and www.test -> apps, anything
            else -> plain (an echo server). fulcrum: sni_routes;
            HAProxy: req.ssl_sni with `tcp-request inspect-delay 2s`.
    strict  api.test only, everything else closed. fulcrum: sni_required;
            HAProxy: `tcp-request content reject unless`.
    lists   allow 127.0.0.1, 127.0.0.2, deny 127.0.0.2.
    conns   5 sessions at once per client. HAProxy: a stick table with
            conn_cur.
    rate    10 new sessions per second per client. HAProxy: conn_rate(1s).
    edge    only 127.0.0.7 may send a PROXY header. HAProxy:
            `tcp-request connection expect-proxy layer4 if { src ... }`.

The backends are the e2e test's (tests/e2e/cases/sni_routes.py): `openssl
s_server -WWW` with a certificate of its own per route, so a client knows
by the certificate where it arrived. Each outcome is the backend reached,
`plain` (the echo server returned the bytes unchanged), `closed`, or what
else happened, with the time the client waited for it.

    python3 bench/edge_haproxy.py [--fulcrum build-bench/fulcrum]

Needs haproxy and openssl (tools/deps.sh installs both). Python 3 standard
library; it uses the e2e harness for processes and clean-up.
"""

import argparse
import os
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'tests', 'e2e'))
sys.path.insert(0, os.path.join(REPO, 'tests', 'e2e', 'cases'))
import harness  # noqa: E402
from edge_access import greeted, greeter, open_from  # noqa: E402
from harness import echo_handler, free_address, parse_address, wait_until  # noqa: E402
from sni_routes import Backend, client_hello, echo_back, fetch_payload  # noqa: E402

SERVICES = ('tls', 'strict', 'lists', 'conns', 'rate', 'edge')


def fulcrum_config(listen, b):
    own = [{'name': 'plain', 'address': b['plain']}]
    return {
        'global': {'workers': 1},
        'services': [
            {'name': 'tls', 'listen': listen['tls'], 'timeouts': {'connect': '2s'}, 'servers': own,
             'sni_routes': [
                 {'names': ['api.test'], 'servers': [{'name': 'api', 'address': b['api']}]},
                 {'names': ['*.apps.test', 'www.test'], 'servers': [{'name': 'apps', 'address': b['apps']}]},
                 {'names': ['exact.apps.test'], 'servers': [{'name': 'exact', 'address': b['exact']}]}]},
            {'name': 'strict', 'listen': listen['strict'], 'timeouts': {'connect': '2s'}, 'sni_required': True,
             'sni_routes': [{'names': ['api.test'], 'servers': [{'name': 'api', 'address': b['api']}]}]},
            {'name': 'lists', 'listen': listen['lists'], 'allow': ['127.0.0.1', '127.0.0.2'],
             'deny': ['127.0.0.2'], 'servers': [{'name': 'g', 'address': b['greeter']}]},
            {'name': 'conns', 'listen': listen['conns'], 'source_limits': {'connections': 5},
             'servers': [{'name': 'g', 'address': b['greeter']}]},
            {'name': 'rate', 'listen': listen['rate'], 'source_limits': {'rate': '10/s'},
             'servers': [{'name': 'g', 'address': b['greeter']}]},
            {'name': 'edge', 'listen': listen['edge'], 'accept_proxy_protocol': ['127.0.0.7'],
             'servers': [{'name': 'g', 'address': b['greeter']}]},
        ],
    }


def haproxy_config(listen, b):
    def backend(name, address):
        return f'backend {name}\n    server s {address}\n'
    tracked = ('    stick-table type ip size 64k expire 30s store conn_cur,conn_rate(1s)\n'
               '    tcp-request connection track-sc0 src\n')
    return (
        'global\n    maxconn 4000\n'
        'defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n'
        f'frontend tls\n    bind {listen["tls"]}\n'
        '    tcp-request inspect-delay 2s\n'
        '    tcp-request content accept if { req.ssl_hello_type 1 }\n'
        '    use_backend api if { req.ssl_sni -i api.test }\n'
        '    use_backend exact if { req.ssl_sni -i exact.apps.test }\n'
        '    use_backend apps if { req.ssl_sni -i www.test } || { req.ssl_sni -i -m reg ^[^.]+\\.apps\\.test$ }\n'
        '    default_backend plain\n'
        f'frontend strict\n    bind {listen["strict"]}\n'
        '    tcp-request inspect-delay 2s\n'
        '    tcp-request content reject unless { req.ssl_sni -i api.test }\n'
        '    default_backend api\n'
        f'frontend lists\n    bind {listen["lists"]}\n'
        '    tcp-request connection reject unless { src 127.0.0.1 127.0.0.2 }\n'
        '    tcp-request connection reject if { src 127.0.0.2 }\n'
        '    default_backend greeter\n'
        f'frontend conns\n    bind {listen["conns"]}\n{tracked}'
        '    tcp-request connection reject if { sc0_conn_cur gt 5 }\n'
        '    default_backend greeter\n'
        f'frontend rate\n    bind {listen["rate"]}\n{tracked}'
        '    tcp-request connection reject if { sc0_conn_rate gt 10 }\n'
        '    default_backend greeter\n'
        f'frontend edge\n    bind {listen["edge"]}\n'
        '    tcp-request connection expect-proxy layer4 if { src 127.0.0.7 }\n'
        '    default_backend greeter\n'
        + backend('api', b['api']) + backend('apps', b['apps']) + backend('exact', b['exact'])
        + backend('plain', b['plain']) + backend('greeter', b['greeter']))


def timed(function):
    began = time.monotonic()
    try:
        outcome = function()
    except (ConnectionResetError, BrokenPipeError):
        outcome = 'closed'
    except Exception as e:  # noqa: BLE001 -- any other end is an outcome to show
        outcome = f'failed: {type(e).__name__}'
    return outcome, time.monotonic() - began


def tls_outcome(address, name, backends, **how):
    try:
        cert, digest, _ = fetch_payload(address, name, **how)
    except harness.TestFailure as e:
        return f'failed: {e}'[:60]
    except Exception as e:  # noqa: BLE001
        return 'closed' if 'EOF' in type(e).__name__ or 'EOF' in str(e) else f'failed: {type(e).__name__}'
    for backend in backends:
        if cert == backend.cert_der:
            return backend.name + ('' if digest == backend.payload_sha else ' (file differs)')
    return 'unknown certificate'


def raw_outcome(address, data):
    """`plain` when the echo server returns `data`, `closed` on a close
    before any byte, else the first bytes that came."""
    back = echo_back(address, data)
    if back == data:
        return 'plain'
    return 'closed' if back == b'' else f'other: {back[:12]!r}'


def sni_cases(address, strict, backends):
    long_alpn = [f'p{i}-' + 'x' * 200 for i in range(8)]
    cases = [
        ('tls: api.test', lambda: tls_outcome(address, 'api.test', backends)),
        ('tls: API.TEST', lambda: tls_outcome(address, 'API.TEST', backends)),
        ('tls: shop.apps.test', lambda: tls_outcome(address, 'shop.apps.test', backends)),
        ('tls: exact.apps.test', lambda: tls_outcome(address, 'exact.apps.test', backends)),
        ('tls: www.test', lambda: tls_outcome(address, 'www.test', backends)),
        ('tls: a.b.apps.test', lambda: raw_outcome(address, client_hello('a.b.apps.test')[3])),
        ('tls: other.test', lambda: raw_outcome(address, client_hello('other.test')[3])),
        ('tls: no name', lambda: raw_outcome(address, client_hello(None)[3])),
        ('tls: 1.9 KB hello, 1 record, 50-byte segments',
         lambda: tls_outcome(address, 'shop.apps.test', backends, alpn=long_alpn, segment=50)),
        ('tls: 1.9 KB hello, 4 records',
         lambda: tls_outcome(address, 'shop.apps.test', backends, alpn=long_alpn, record_size=600)),
        ('tls: not TLS (client speaks first)', lambda: raw_outcome(address, b'PING plain text\r\n')),
        ('tls: 100 bytes of a hello, then nothing', lambda: raw_outcome(address, client_hello('api.test')[3][:100])),
        ('strict: api.test', lambda: tls_outcome(strict, 'api.test', backends)),
        ('strict: other.test', lambda: raw_outcome(strict, client_hello('other.test')[3])),
        ('strict: not TLS', lambda: raw_outcome(strict, b'PING plain text\r\n')),
    ]
    return [(label, *timed(case)) for label, case in cases]


def served_from(source, address):
    with open_from(source, address) as sock:
        return 'served' if greeted(sock) else 'closed'


def limit_cases(listen):
    rows = [(f'lists: from {source}', *timed(lambda s=source: served_from(s, listen['lists'])))
            for source in ('127.0.0.1', '127.0.0.2', '127.0.0.3')]
    held = [open_from('127.0.0.4', listen['conns']) for _ in range(5)]
    served = sum(greeted(sock) for sock in held)
    rows.append(('conns: 5 held + a 6th', *timed(lambda: f'{served} of 5 served, 6th '
                                                 + served_from('127.0.0.4', listen['conns']))))
    for sock in held:
        sock.close()
    began = time.monotonic()
    socks = [open_from('127.0.0.6', listen['rate']) for _ in range(30)]
    took = time.monotonic() - began
    count = sum(greeted(sock) for sock in socks)
    for sock in socks:
        sock.close()
    rows.append(('rate: 30 connects in a row', f'{count} served', took))
    host, port = listen['edge'].rsplit(':', 1)
    header = f'PROXY TCP4 127.9.9.9 {host} 4242 {port}\r\n'.encode()
    for source in ('127.0.0.7', '127.0.0.8'):
        def proxy_client(source=source):
            with open_from(source, listen['edge']) as sock:
                sock.sendall(header)
                return 'served' if greeted(sock) else 'closed'
        rows.append((f'edge: PROXY header from {source}', *timed(proxy_client)))
    return rows


def wait_listening(address):
    def up():
        try:
            socket.create_connection(parse_address(address), timeout=1).close()
            return True
        except OSError:
            return False
    wait_until(up, 10, f'{address} listening', interval=0.05)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--fulcrum', default=os.path.join(REPO, 'build-bench', 'fulcrum'))
    args = parser.parse_args()
    os.environ['FULCRUM'] = os.path.abspath(args.fulcrum)
    t = harness.TestContext('edge-haproxy')
    try:
        backends = [Backend(t, 'api', 'api.test'), Backend(t, 'apps', 'apps.test'),
                    Backend(t, 'exact', 'exact.apps.test')]
        b = {backend.name: backend.address for backend in backends}
        b['plain'] = t.tcp_server(echo_handler, name='plain').address
        b['greeter'] = t.tcp_server(greeter, name='greeter').address
        results = {}
        listen = {name: free_address() for name in SERVICES}
        d = t.daemon(fulcrum_config(listen, b))
        results['fulcrum'] = sni_cases(listen['tls'], listen['strict'], backends) + limit_cases(listen)
        d.stop()
        listen = {name: free_address() for name in SERVICES}
        path = t.path('haproxy.cfg')
        with open(path, 'w') as f:
            f.write(haproxy_config(listen, b))
        proc = subprocess.Popen(['haproxy', '-db', '-f', path], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=open(t.path('haproxy.log'), 'w'))
        t.register_process(proc, 'haproxy')
        for address in listen.values():
            wait_listening(address)
        time.sleep(1.1)  # the rate table must not count wait_listening's connects
        results['haproxy'] = sni_cases(listen['tls'], listen['strict'], backends) + limit_cases(listen)
    finally:
        t.cleanup()
    print(f'{"client":46} {"fulcrum":38} {"haproxy " + haproxy_version()}')
    for (label, ours, our_time), (_, theirs, their_time) in zip(results['fulcrum'], results['haproxy']):
        print(f'{label:46} {ours[:28]:28} {our_time * 1000:7.0f} ms {theirs[:28]:28} {their_time * 1000:7.0f} ms')


def haproxy_version():
    out = subprocess.run(['haproxy', '-v'], capture_output=True, text=True).stdout
    return out.split()[2] if out else '?'


if __name__ == '__main__':
    main()
