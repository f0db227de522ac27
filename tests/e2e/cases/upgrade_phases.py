"""A binary upgrade carries sessions over wherever they stand, not only
relaying ones (SPEC.md "Upgrading the binary"). Across one SIGUSR2 upgrade
(fulcrum -> fulcrum-next, same PID):
- a client half-way through its PROXY v1 header (accept_proxy_protocol)
  sends the rest after the upgrade: the server gets exactly the bytes after
  the header, and the access log names the header's source as the client;
- a client half-way through its TLS ClientHello (sni_routes) sends the rest
  after the upgrade: the route's server gets the whole hello, byte for byte;
- a session whose connect is still in flight (the server's accept queue is
  full, so its SYN waits for a retransmission) connects after the upgrade
  and relays: its server is the one it was connecting to, and its echo is
  exact;
- a session relaying with bytes held back (its server reads nothing, so
  the client->server pipe and socket buffers fill up) delivers every byte,
  in order, once the server reads after the upgrade (sha256).
Then two more upgrades change the worker count (2 -> 3 -> 1, from the
file): a session opened between them goes on across the second, new
sessions are served under each.
"""

import hashlib
import os
import signal
import socket
import ssl
import threading
import time

from harness import binary, connect, echo_handler, expect, expect_eq, free_address, free_port, get_stats, install_binary, \
    recv_exact

DEADLINE = 90


def client_hello(name):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=name)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class Recorder:
    """A server that accepts one connection and keeps what it reads; it can
    echo, or hold still (read nothing) until released."""

    def __init__(self, backlog=16, hold=False):
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', free_port()))
        self.sock.listen(backlog)
        self.address = f'127.0.0.1:{self.sock.getsockname()[1]}'
        self.received = bytearray()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.conn = None

    def serve(self, echo=False, until=None):
        def run():
            self.conn, _ = self.sock.accept()
            self.release.wait(60)
            while True:
                data = self.conn.recv(65536)
                if not data:
                    break
                self.received.extend(data)
                if echo:
                    self.conn.sendall(data)
                if until is not None and len(self.received) >= until:
                    break
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread


def run(t):
    os.mkdir(t.path('bin'))
    executable = t.path('bin/fulcrum')
    install_binary(binary('FULCRUM'), executable)

    proxied = Recorder()
    routed = Recorder()
    fallback = Recorder()
    # The connecting session's server: one connection fills its accept
    # queue (backlog 0 holds one), so the next SYN is dropped and retried.
    busy = Recorder(backlog=0)
    filler = socket.create_connection(('127.0.0.1', int(busy.address.rsplit(':', 1)[1])))
    held = Recorder(hold=True)

    addresses = {name: free_address() for name in ('proxied', 'tls', 'connecting', 'held')}
    stats = free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'stats': {'listen': stats},
        'services': [
            {'name': 'proxied', 'listen': addresses['proxied'], 'accept_proxy_protocol': True,
             'servers': [{'name': 'p', 'address': proxied.address}]},
            {'name': 'tls', 'listen': addresses['tls'], 'timeouts': {'connect': '10s'},
             'servers': [{'name': 'plain', 'address': fallback.address}],
             'sni_routes': [{'names': ['api.test'], 'servers': [{'name': 'api', 'address': routed.address}]}]},
            {'name': 'connecting', 'listen': addresses['connecting'], 'timeouts': {'connect': '10s'},
             'servers': [{'name': 'busy', 'address': busy.address}]},
            {'name': 'held', 'listen': addresses['held'],
             'servers': [{'name': 'slow', 'address': held.address}]},
        ],
    }, executable=executable)
    pid = d.pid

    # A PROXY header, half of it now.
    header = b'PROXY TCP4 198.18.7.9 127.0.0.1 40000 80\r\n'
    proxy_client = connect(addresses['proxied'])
    proxy_client.sendall(header[:17])
    proxied_thread = proxied.serve(until=len(b'after the upgrade'))

    # A ClientHello, half of it now.
    hello = client_hello('api.test')
    tls_client = connect(addresses['tls'])
    tls_client.sendall(hello[:len(hello) // 2])
    routed_thread = routed.serve(until=len(hello))

    # A connect that waits for a SYN retransmission.
    connecting_client = connect(addresses['connecting'])
    time.sleep(0.3)
    connecting_sessions = get_stats(stats)['services'][2]['servers'][0]['sessions']
    expect_eq(connecting_sessions['active'], 1, 'the connecting session holds its server before the upgrade')

    # A relay held back: 32 MiB towards a server that reads nothing yet.
    held_thread = held.serve(echo=False, until=32 << 20)
    payload = os.urandom(32 << 20)
    held_client = connect(addresses['held'])
    sender = threading.Thread(target=held_client.sendall, args=(payload,), daemon=True)
    sender.start()
    time.sleep(0.5)
    expect(sender.is_alive(), 'the held-back stream was taken whole before the upgrade (nothing held back)')

    install_binary(binary('FULCRUM_NEXT'), executable)
    d.send_signal(signal.SIGUSR2)
    upgraded = d.wait_for_log(lambda r: r.message == 'upgraded', timeout=20)[0]
    expect_eq(upgraded.fields.get('sessions'), '4', 'sessions carried')
    expect(d.running() and d.pid == pid, 'the process after the upgrade')

    proxy_client.sendall(header[17:] + b'after the upgrade')
    proxied_thread.join(10)
    expect_eq(bytes(proxied.received), b'after the upgrade', 'what the proxied server received')

    tls_client.sendall(hello[len(hello) // 2:])
    routed_thread.join(10)
    expect_eq(bytes(routed.received), hello, 'the hello the route\'s server received')
    expect_eq(bytes(fallback.received), b'', 'what the default server received')

    # Free the busy server's queue: the retransmitted SYN gets through.
    queued, _ = busy.sock.accept()
    queued.close()
    filler.close()
    busy_thread = busy.serve(echo=True, until=len(b'connected after the upgrade'))
    connecting_client.sendall(b'connected after the upgrade')
    expect_eq(recv_exact(connecting_client, 27, 'echo'), b'connected after the upgrade',
              'the echo of the session that was connecting')
    busy_thread.join(10)

    held.release.set()
    held_thread.join(30)
    sender.join(30)
    expect_eq(hashlib.sha256(bytes(held.received)).hexdigest(), hashlib.sha256(payload).hexdigest(),
              'sha256 of the held-back stream')

    for sock in (proxy_client, tls_client, connecting_client, held_client):
        sock.close()
    for recorder in (proxied, routed, busy, held):
        recorder.conn.close()
    lines = d.wait_access_count(4, timeout=15)
    clients = {r.fields['service']: r.fields['client'] for r in lines}
    expect_eq(clients.get('proxied'), '198.18.7.9:40000', 'the proxied session\'s client in the access log')
    servers = {r.fields['service']: r.fields['server'] for r in lines}
    expect_eq((servers.get('tls'), servers.get('connecting'), servers.get('held')), ('api', 'busy', 'slow'),
              'the servers of the carried sessions')

    # The worker count changes between the images (the file's `workers`):
    # the listening sockets are folded onto fewer workers or joined by new
    # ones, and a session open across both upgrades goes on.
    echo_server = t.tcp_server(echo_handler, name='echo')
    with open(d.config_path) as f:
        text = f.read()
    open_session = None
    for workers, build, count in ((3, 'FULCRUM', 2), (1, 'FULCRUM_NEXT', 3)):
        with open(d.config_path, 'w') as f:
            f.write(text.replace('workers: 2', f'workers: {workers}').replace(held.address, echo_server.address))
        install_binary(binary(build), executable)
        d.send_signal(signal.SIGUSR2)
        d.wait_for_log(lambda r: r.message == 'upgraded', timeout=20, count=count)
        started = d.find_logs('started')[-1]
        expect_eq(started.fields.get('workers'), str(workers), f'workers after the upgrade to {workers}')
        if open_session is None:
            open_session = connect(addresses['held'])
        open_session.sendall(f'{workers} workers\n'.encode())
        expect_eq(recv_exact(open_session, 10, 'echo'), f'{workers} workers\n'.encode(),
                  f'the open session after the upgrade to {workers} workers')
        for _ in range(8):
            with connect(addresses['held']) as fresh:
                fresh.sendall(b'ping\n')
                expect_eq(recv_exact(fresh, 5, 'echo'), b'ping\n', f'a new session with {workers} workers')
    open_session.close()
    expect(not d.find_logs('upgrade failed, still serving'), 'an upgrade failed')
