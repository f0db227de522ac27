"""SNI routing (SPEC.md "At the edge"): fulcrum reads the TLS ClientHello,
routes by its server name and forwards the hello unchanged, without
terminating TLS.

Backends: one `openssl s_server -WWW` per route, each with its own
self-signed certificate (CN = its name) and its own random 200 KB file; a
client knows which backend it reached by the certificate it got (compared
byte for byte with the backend's) and checks the file by sha256. The
service's own `servers` is an echo server: a client routed there gets back
exactly what it sent, so a hello that reaches it comes back unchanged.

Service `tls` routes [api.test] -> api, ["*.apps.test", www.test] -> apps,
[exact.apps.test] -> exact (listed after the wildcard: exact names still
win), timeouts.connect 2s.
1. Python ssl: api.test -> api; shop.apps.test -> apps (wildcard);
   exact.apps.test -> exact; a.b.apps.test (two labels under the `*`),
   other.test and a hello without a name -> the echo server, which returns
   the hello's bytes unchanged.
2. openssl s_client: -servername API.TEST -> api (case-insensitive),
   -servername www.test -> apps.
3. A 2 KB hello (long ALPN list, as post-quantum key shares make them)
   split into 4 TLS records of at most 600 bytes and written in 50-byte
   TCP segments 10 ms apart -> apps, file sha256-exact.
4. A non-TLS client -> the echo server at once; a client that sends 100
   bytes of a hello and stops is routed at the deadline as one without a
   name: the echo server gets exactly those 100 bytes.
5. Service `strict` (sni_required, route [api.test] only): api.test is
   served; no name, other.test and a non-TLS client are closed with
   end=no_sni_route, counted in sessions.denied (3), nothing reaches a
   server.
6. /stats gives each route server its route's names; each server's
   sessions.total is exact; the access log's bytes_in of an echoed hello
   is the hello's size; `fulcrumctl servers` shows the ROUTE column.
7. A reload moving www.test to api's route and adding new.test to exact's:
   new clients follow at once, and each server's sessions.total goes on.
"""

import hashlib
import os
import signal
import socket
import ssl
import subprocess
import time

from harness import (binary, echo_handler, expect, expect_eq, free_address, get_stats, log_stream,
                     parse_address, wait_until, write_config)

DEADLINE = 120
PAYLOAD_SIZE = 200 * 1000


class Backend:
    """`openssl s_server -WWW` serving `payload` from its own directory with
    a self-signed certificate for `cn`."""

    def __init__(self, t, name, cn):
        self.name = name
        self.dir = t.path(name)
        os.makedirs(self.dir)
        key, cert = os.path.join(self.dir, 'key.pem'), os.path.join(self.dir, 'cert.pem')
        made = subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
                               '-nodes', '-subj', f'/CN={cn}', '-days', '2', '-keyout', key, '-out', cert],
                              capture_output=True, text=True, timeout=30)
        expect(made.returncode == 0, f'openssl req for {cn}: {made.stderr}')
        with open(cert) as f:
            self.cert_pem = f.read()
        self.cert_der = ssl.PEM_cert_to_DER_cert(self.cert_pem)
        payload = os.urandom(PAYLOAD_SIZE)
        self.payload_sha = hashlib.sha256(payload).hexdigest()
        with open(os.path.join(self.dir, 'payload'), 'wb') as f:
            f.write(payload)
        self.address = free_address()
        log = open(os.path.join(self.dir, 's_server.log'), 'w')
        t.at_cleanup(log.close)
        proc = subprocess.Popen(['openssl', 's_server', '-accept', self.address, '-cert', cert, '-key', key,
                                 '-WWW', '-quiet'], cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)
        t.register_process(proc, f's_server {name}')

        def listening():
            try:
                socket.create_connection(parse_address(self.address), timeout=1).close()
                return True
            except OSError:
                return False
        wait_until(listening, 10, f's_server {name} listening on {self.address}', interval=0.05)


def client_context(alpn=None):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the certificate is compared with each backend's below
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def connect(address):
    sock = socket.create_connection(parse_address(address), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def client_hello(name, alpn=None):
    """A TLS connection's first flight (its ClientHello) and the TLS object
    that goes on with it."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context(alpn).wrap_bio(incoming, outgoing, server_hostname=name)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return tls, incoming, outgoing, outgoing.read()


def in_records(hello, size):
    """The hello's handshake message split over TLS records of at most
    `size` bytes of body (as a TLS stack may write it)."""
    expect(hello[0] == 0x16, 'the first flight is a handshake record')
    version, body = hello[1:3], hello[5:]
    expect_eq(len(body), int.from_bytes(hello[3:5], 'big'), 'the first flight is one record')
    return b''.join(bytes([0x16]) + version + len(body[i:i + size]).to_bytes(2, 'big') + body[i:i + size]
                    for i in range(0, len(body), size))


def fetch_payload(address, name, alpn=None, record_size=None, segment=None):
    """GET /payload over TLS through fulcrum, the hello written as asked:
    (the server's certificate, the file's sha256, the hello's size)."""
    tls, incoming, outgoing, hello = client_hello(name, alpn)
    first = in_records(hello, record_size) if record_size else hello
    with connect(address) as sock:
        step = segment or len(first)
        for i in range(0, len(first), step):
            sock.sendall(first[i:i + step])
            if segment:
                time.sleep(0.01)

        def pump():
            data = sock.recv(65536)
            if data:
                incoming.write(data)
            else:
                incoming.write_eof()
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if pending := outgoing.read():
                    sock.sendall(pending)
                pump()
        tls.write(b'GET /payload HTTP/1.0\r\n\r\n')
        sock.sendall(outgoing.read())
        response = bytearray()
        while True:
            try:
                chunk = tls.read(65536)
            except ssl.SSLWantReadError:
                pump()
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
            if not chunk:
                break
            response += chunk
    head, _, body = bytes(response).partition(b'\r\n\r\n')
    expect(head.startswith(b'HTTP/1.0 200'), f'{name}: response {head[:60]!r}')
    return tls.getpeercert(binary_form=True), hashlib.sha256(body).hexdigest(), len(hello)


def expect_backend(address, name, backend, **how):
    cert, digest, hello_size = fetch_payload(address, name, **how)
    expect(cert == backend.cert_der, f'{name}: reached {backend.name} (its certificate)')
    expect_eq(digest, backend.payload_sha, f'{name}: sha256 of {backend.name}\'s file')
    return hello_size


def echo_back(address, data):
    """Sends `data` and reads as many bytes back, or what came before a close."""
    with connect(address) as sock:
        sock.sendall(data)
        back = b''
        while len(back) < len(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            back += chunk
    return back


def expect_echoed(address, data, what):
    """`data` reaches the echo server (the service's own servers) unchanged."""
    back = echo_back(address, data)
    expect(back == data, f'{what}: the echo server returned the {len(data)} bytes sent unchanged '
                         f'({len(back)} bytes back)')


def expect_closed(address, data, what):
    with connect(address) as sock:
        try:
            sock.sendall(data)
            got = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            got = b''
    expect_eq(got, b'', f'{what}: closed without a byte')


def s_client_certificate(address, name):
    result = subprocess.run(['openssl', 's_client', '-connect', address, '-servername', name],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    expect(result.returncode == 0, f's_client -servername {name}: {result.stderr[-400:]}')
    begin, end = '-----BEGIN CERTIFICATE-----', '-----END CERTIFICATE-----'
    out = result.stdout
    expect(begin in out and end in out, f's_client -servername {name} printed no certificate')
    return out[out.index(begin):out.index(end) + len(end)]


def run(t):
    api = Backend(t, 'api', 'api.test')
    apps = Backend(t, 'apps', 'apps.test')
    exact = Backend(t, 'exact', 'exact.apps.test')
    plain = t.tcp_server(echo_handler, name='plain')
    tls_address, strict_address, stats_address = free_address(), free_address(), free_address()

    def config(api_names, apps_names, exact_names):
        return {
            'global': {'workers': 2},
            'stats': {'listen': stats_address},
            'services': [
                {'name': 'tls', 'listen': tls_address, 'timeouts': {'connect': '2s'},
                 'servers': [{'name': 'plain', 'address': plain.address}],
                 'sni_routes': [
                     {'names': api_names, 'servers': [{'name': 'api', 'address': api.address}]},
                     {'names': apps_names, 'servers': [{'name': 'apps', 'address': apps.address}]},
                     {'names': exact_names, 'servers': [{'name': 'exact', 'address': exact.address}]},
                 ]},
                {'name': 'strict', 'listen': strict_address, 'sni_required': True,
                 'sni_routes': [{'names': ['api.test'],
                                 'servers': [{'name': 'strict-api', 'address': api.address}]}]},
            ],
        }
    d = t.daemon(config(['api.test'], ['*.apps.test', 'www.test'], ['exact.apps.test']))

    # 1. Exact names, the wildcard's one label, exact before wildcard, and
    # clients of no route.
    expect_backend(tls_address, 'api.test', api)
    expect_backend(tls_address, 'shop.apps.test', apps)
    expect_backend(tls_address, 'exact.apps.test', exact)
    echoed_hellos = []
    for name in ('a.b.apps.test', 'other.test', None):
        hello = client_hello(name)[3]
        expect_echoed(tls_address, hello, f'a hello for {name or "no name"}')
        echoed_hellos.append(len(hello))

    # 2. openssl s_client, upper case.
    expect_eq(s_client_certificate(tls_address, 'API.TEST').strip(), api.cert_pem.strip(),
              's_client -servername API.TEST reached api')
    expect_eq(s_client_certificate(tls_address, 'www.test').strip(), apps.cert_pem.strip(),
              's_client -servername www.test reached apps')

    # 3. A long hello in several records and small segments.
    long_alpn = [f'p{i}-' + 'x' * 200 for i in range(8)]
    size = expect_backend(tls_address, 'shop.apps.test', apps, alpn=long_alpn, record_size=600, segment=50)
    expect(size > 1500, f'the long hello has {size} bytes (over 1500)')
    log_stream(f'a {size}-byte hello in {-(-(size - 5) // 600)} records and 50-byte segments reached apps')

    # 4. Not TLS; a hello cut short (routed when timeouts.connect ends).
    expect_echoed(tls_address, b'PING plain text\r\n', 'a non-TLS client')
    partial = client_hello('api.test')[3][:100]
    began = time.monotonic()
    expect_echoed(tls_address, partial, 'the first 100 bytes of a hello, then nothing')
    log_stream(f'a cut hello was routed to the default servers after {time.monotonic() - began:.2f} s '
               '(timeouts.connect 2s)')

    # 5. sni_required.
    expect_backend(strict_address, 'api.test', api)
    accepted = plain.accepted
    for name in (None, 'other.test'):
        expect_closed(strict_address, client_hello(name)[3], f'strict: a hello for {name or "no name"}')
    expect_closed(strict_address, b'PING plain text\r\n', 'strict: a non-TLS client')

    def services():
        return {s['name']: s for s in get_stats(stats_address)['services']}
    wait_until(lambda: services()['strict']['sessions']['denied'] == 3, 5, 'strict: sessions.denied 3')

    # 6. /stats, the access log, fulcrumctl.
    stats = get_stats(stats_address)
    servers = {(s['name'], v['name']): v for s in stats['services'] for v in s['servers']}
    routes = {key: v.get('route') for key, v in servers.items()}
    expect_eq(routes, {('tls', 'plain'): None, ('tls', 'api'): ['api.test'],
                       ('tls', 'apps'): ['*.apps.test', 'www.test'], ('tls', 'exact'): ['exact.apps.test'],
                       ('strict', 'strict-api'): ['api.test']}, '/stats: route of each server')
    totals = {key: v['sessions']['total'] for key, v in servers.items()}
    expect_eq(totals, {('tls', 'plain'): 5, ('tls', 'api'): 2, ('tls', 'apps'): 3, ('tls', 'exact'): 1,
                       ('strict', 'strict-api'): 1}, '/stats: sessions.total of each server')
    expect_eq(services()['tls']['sessions']['denied'], 0, 'tls: nothing denied')
    expect_eq(plain.accepted, accepted, 'strict: the closed clients reached no server')
    lines = d.access_log_lines()
    expect_eq(sorted(r['end'] for r in lines if r['service'] == 'strict'),
              ['client_close', 'no_sni_route', 'no_sni_route', 'no_sni_route'], 'strict: access-log ends')
    echoed = sorted(int(r['bytes_in']) for r in lines if r['service'] == 'tls' and r['server'] == 'plain')
    expect_eq(echoed, sorted(echoed_hellos + [len(b'PING plain text\r\n'), 100]),
              'bytes_in of the sessions of the echo server: the hellos\' sizes')
    ctl = subprocess.run([binary('FULCRUMCTL'), '--url', f'http://{stats_address}', 'servers'],
                         capture_output=True, text=True, timeout=30)
    expect(ctl.returncode == 0, f'fulcrumctl servers: {ctl.stderr}')
    rows = [line.split() for line in ctl.stdout.splitlines()]
    expect_eq(rows[0][:4], ['SERVICE', 'SERVER', 'ROUTE', 'ADDRESS'], 'fulcrumctl servers: header')
    expect_eq([row[:3] for row in rows[1:6]],
              [['tls', 'plain', '-'], ['tls', 'api', 'api.test'], ['tls', 'apps', '*.apps.test,www.test'],
               ['tls', 'exact', 'exact.apps.test'], ['strict', 'strict-api', 'api.test']],
              'fulcrumctl servers: the ROUTE column')

    # 7. A reload moves www.test to api's route and gives exact a new name:
    # new clients follow, the servers keep their counters.
    write_config(d.config_path, config(['api.test', 'www.test'], ['*.apps.test'], ['exact.apps.test', 'new.test']))
    d.send_signal(signal.SIGHUP)
    d.wait_for_log(lambda r: r.message == 'reloaded' and r.fields.get('generation') == '2', 10)
    expect_eq(s_client_certificate(tls_address, 'www.test').strip(), api.cert_pem.strip(),
              'after the reload, www.test reaches api')
    expect_backend(tls_address, 'new.test', exact)
    expect_backend(tls_address, 'shop.apps.test', apps)
    servers = {v['name']: v for v in services()['tls']['servers']}
    expect_eq({name: (v['sessions']['total'], v.get('route')) for name, v in servers.items()},
              {'plain': (5, None), 'api': (3, ['api.test', 'www.test']), 'apps': (4, ['*.apps.test']),
               'exact': (2, ['exact.apps.test', 'new.test'])}, 'after the reload: totals and routes')
    d.stop()
