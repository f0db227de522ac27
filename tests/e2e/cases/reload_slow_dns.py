"""A reload whose host name waits on a slow resolver does not stall the main
loop, and a SIGHUP that comes while the daemon is still starting is a reload,
not its death. Root only (a private mount namespace); skipped otherwise.

The test runs a DNS server of its own (UDP port 53 on a random 127.53.x.y):
it answers `A slow.test` with 127.0.0.1 (TTL 0), `AAAA slow.test` with an
empty NOERROR and any other name with NXDOMAIN, but holds every answer while
it is held (a threading.Event), and counts the queries it received. Each
fulcrum runs under `unshare --mount --propagation private` with a
resolv.conf naming that server (`options timeout:30 attempts:1`)
bind-mounted over /etc/resolv.conf, so that its resolver (evdns) asks only it;
the mount namespace dies with the process (same PID: unshare and sh exec).

  - Reload: fulcrum (two workers, stats) starts with service `web` over
    server a (demo server a at its literal 127.0.0.1:PORT: no DNS query);
    a session reaches a. With the DNS answers held, the file is rewritten
    with server b at `slow.test:PORT` (demo server b) and SIGHUP sent. Once
    the `A slow.test` query arrived (the reload waits for its answer),
    GET /stats and GET /healthz must each answer within 5 s: 200 with
    generation still 1, and 200 `ok`; the log has `reloading
    config=FILE by=SIGHUP` and no `reloaded` line yet. (Before the fix the
    file was loaded on the main loop: /stats got no answer, and the test
    fails saying so.) Released: `reloaded generation=2 by=SIGHUP`, `service
    changed service=web settings=same servers_added=b servers_removed=a
    servers_changed=-`, /stats generation 2, exactly one `A slow.test`
    query in all; a session reaches b; the access log holds exactly the two
    sessions (server a then b, each server_addr its demo server's
    127.0.0.1:PORT, bytes_in 65536, bytes_out 65536 + the greeting,
    end=client_close); SIGTERM: exit 0.
  - SIGHUP while starting: with the answers held again, a second fulcrum
    whose file names server b at `slow.test:PORT` from the start is
    launched; once its `A slow.test` query arrived (it is inside its
    start-up load in main(), before any signal handler exists, and has
    logged nothing), it gets SIGHUP. 0.2 s later it must still run (the old
    binary died of it: exit status -1, and the test fails saying so); then
    the answers are released. It must come up listening, log exactly one
    `reloading config=FILE by=SIGHUP` and one `reloaded generation=2
    by=SIGHUP` (the held signal became a reload; exactly two `A slow.test`
    queries of this daemon, start-up and reload), say generation 2 in
    /stats, serve one session to b (access log as above) and exit 0 on
    SIGTERM.

  - An API reload outliving the stats deadline: a third fulcrum (stats with
    an admin token) over server a; with the answers held and server b at
    `slow.test:PORT` in the file, `POST /api/v1/reload` (in a thread) waits
    for the reload. 6 s later — past the stats port's 5 s request deadline,
    which never closes a connection whose answer a reload owes — GET /stats
    still answers (generation 1) and the POST has no answer yet; released,
    the POST is answered 200 `{"ok":true,"generation":2}` and a session
    reaches b.

Each session: the server's greeting, then 64 KiB sent and echoed back,
compared by SHA-256, then a clean EOF after the client's half-close.
"""

import hashlib
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

from harness import TestFailure, TestSkip, connect, expect, expect_eq, free_address, get_stats, http_get, \
    http_request, log_stream, recv_exact, wait_until, write_config

DEADLINE = 60
SLOW_NAME = 'slow.test'
QTYPE_A, QTYPE_AAAA = 1, 28
SESSION_BYTES = 64 * 1024
ANSWER_WAIT = 5  # seconds /stats and /healthz may take while the reload waits for DNS
STATS_DEADLINE = 5  # the stats port's request deadline (kStatsRequestDeadline)


class HeldDns:
    """A DNS server over UDP on `address`:53. A queries for SLOW_NAME get
    127.0.0.1, AAAA an empty NOERROR, other names NXDOMAIN; while held, no
    answer leaves until release(). `queries` lists (name, qtype) in arrival
    order."""

    def __init__(self, address):
        self.address = address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 53))
        self.sock.settimeout(0.02)
        self.lock = threading.Lock()
        self.queries = []
        self.errors = []
        self._released = threading.Event()
        self._pending = []  # (reply bytes, peer) held back
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name='held-dns', daemon=True)
        self._thread.start()

    def hold(self):
        self._released.clear()

    def release(self):
        self._released.set()

    def all_queries(self):
        with self.lock:
            return list(self.queries)

    def count(self, name=SLOW_NAME, qtype=QTYPE_A):
        with self.lock:
            return sum(1 for q in self.queries if q == (name, qtype))

    def close(self):
        self._closing = True
        self._released.set()
        self._thread.join(5)
        self.sock.close()

    def _send(self, reply, peer):
        try:
            self.sock.sendto(reply, peer)
        except OSError:
            pass  # the asker is gone (a daemon the test killed)

    def _serve(self):
        while not self._closing:
            if self._released.is_set():
                pending, self._pending = self._pending, []
                for reply, peer in pending:
                    self._send(reply, peer)
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                if self._closing:
                    return
                continue
            try:
                reply, question = self._answer(data)
            except ValueError as e:
                with self.lock:
                    self.errors.append(f'bad DNS query {data!r}: {e}')
                continue
            with self.lock:
                self.queries.append(question)
            if self._released.is_set():
                self._send(reply, peer)
            else:
                self._pending.append((reply, peer))

    @staticmethod
    def _answer(query):
        if len(query) < 12:
            raise ValueError('shorter than a header')
        ident, flags, qdcount = struct.unpack('!HHH', query[:6])
        if qdcount != 1 or flags & 0x8000:
            raise ValueError(f'qdcount {qdcount}, flags {flags:#x}')
        labels, pos = [], 12
        while True:
            if pos >= len(query):
                raise ValueError('name runs past the end')
            n = query[pos]
            pos += 1
            if n == 0:
                break
            if n & 0xC0:
                raise ValueError('compressed question name')
            labels.append(query[pos:pos + n].decode('ascii', 'replace').lower())
            pos += n
        qtype, qclass = struct.unpack('!HH', query[pos:pos + 4])
        question_end = pos + 4
        name = '.'.join(labels)
        answers, rcode = b'', 0
        if name != SLOW_NAME:
            rcode = 3  # NXDOMAIN
        elif qtype == QTYPE_A and qclass == 1:
            # the question's name (pointer to offset 12), A, IN, TTL 0, 127.0.0.1
            answers = struct.pack('!HHHIH', 0xC00C, QTYPE_A, 1, 0, 4) + socket.inet_aton('127.0.0.1')
        # QR, opcode and RD copied, AA, RA
        reply_flags = 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | rcode
        header = struct.pack('!HHHHHH', ident, reply_flags, 1, 1 if answers else 0, 0, 0)
        return header + query[12:question_end] + answers, (name, qtype)


def start_dns(t):
    """A HeldDns on a free random 127.53.x.y (so that parallel runs do not meet)."""
    rng = random.SystemRandom()
    for _ in range(50):
        address = f'127.53.{rng.randint(0, 255)}.{rng.randint(1, 254)}'
        try:
            dns = HeldDns(address)
        except OSError:
            continue
        t.at_cleanup(dns.close)
        return dns
    raise TestFailure('no free 127.53.x.y address for port 53')


def namespace_prefix(resolv_path):
    """The command that runs fulcrum with `resolv_path` over /etc/resolv.conf
    in a mount namespace of its own; unshare and sh exec, so the PID is
    fulcrum's."""
    return ['unshare', '--mount', '--propagation', 'private', '--',
            'sh', '-c', 'mount --bind "$0" /etc/resolv.conf && exec "$@"', resolv_path]


def verified_session(listen, name, what):
    """A session through fulcrum to demo server `name`: its greeting, then
    64 KiB echoed back, compared by SHA-256."""
    payload = random.Random(name).randbytes(SESSION_BYTES)
    with connect(listen, timeout=10) as sock:
        greeting = f'hello from {name}\n'.encode()
        expect_eq(recv_exact(sock, len(greeting), f'{what}: greeting'), greeting, f'{what}: greeting')
        sender = threading.Thread(target=sock.sendall, args=(payload,), daemon=True)
        sender.start()
        echo = recv_exact(sock, len(payload), f'{what}: echo')
        sender.join(10)
        expect_eq(hashlib.sha256(echo).hexdigest(), hashlib.sha256(payload).hexdigest(), f'{what}: echo SHA-256')
        sock.shutdown(socket.SHUT_WR)
        expect_eq(sock.recv(1), b'', f'{what}: EOF after the half-close')


def answered_while_held(stats, path):
    """GET `path` with a 5 s timeout; a timeout fails the test saying why."""
    started = time.monotonic()
    try:
        reply = http_get(stats, path, timeout=ANSWER_WAIT)
    except (socket.timeout, TimeoutError):
        raise TestFailure(f'GET {path} gave no answer within {ANSWER_WAIT} s while the reload waited for its DNS '
                          f'answer: the main loop is blocked in the resolver')
    log_stream(f'GET {path} while the DNS answer is held: {reply.status} in {time.monotonic() - started:.3f}s')
    return reply


def reload_lines(d):
    return ([r.fields for r in d.find_logs('reloading')], [r.fields for r in d.find_logs('reloaded')])


GREETING_BYTES = len(b'hello from a\n')


def config(listen, stats, server, address):
    return {'global': {'workers': 2}, 'stats': {'listen': stats},
            'services': [{'name': 'web', 'listen': listen, 'servers': [{'name': server, 'address': address}]}]}


def access_lines(d, count):
    """(server, server_addr, bytes_in, bytes_out, end) of the first `count` sessions."""
    d.wait_access_count(count)
    return [(a['server'], a['server_addr'], a['bytes_in'], a['bytes_out'], a['end']) for a in d.access_log_lines()]


def reload_waits_for_dns(t, dns, prefix, demos, slow_b):
    """A reload waiting on DNS leaves the main loop free."""
    listen, stats = free_address(), free_address()
    dns.hold()
    before = dns.count()
    d = t.daemon(config(listen, stats, 'a', demos['a'].address), prefix=prefix)
    verified_session(listen, 'a', 'session at generation 1')
    expect_eq(dns.count(), before, f'`A {SLOW_NAME}` queries of a start with literal addresses')
    write_config(d.config_path, config(listen, stats, 'b', slow_b))
    os.kill(d.pid, signal.SIGHUP)
    wait_until(lambda: dns.count() > before, 10, f'the reload\'s `A {SLOW_NAME}` query')
    log_stream(f'the reload waits for the held answers to {dns.all_queries()}')
    reply = answered_while_held(stats, '/stats')
    expect_eq(reply.status, 200, 'status of /stats while the reload waits for DNS')
    expect_eq(json.loads(reply.body)['config']['generation'], 1, '/stats generation while the reload waits for DNS')
    reply = answered_while_held(stats, '/healthz')
    expect_eq((reply.status, reply.body), (200, b'ok\n'), '/healthz while the reload waits for DNS')
    expect_eq(reload_lines(d), ([{'config': d.config_path, 'by': 'SIGHUP'}], []),
              '`reloading` and `reloaded` lines while the DNS answer is held')
    dns.release()
    d.wait_for_log(lambda r: r.message == 'reloaded' and r.fields == {'generation': '2', 'by': 'SIGHUP'}, timeout=10)
    expect_eq(reload_lines(d), ([{'config': d.config_path, 'by': 'SIGHUP'}], [{'generation': '2', 'by': 'SIGHUP'}]),
              '`reloading` and `reloaded` lines after the DNS answer')
    expect_eq([r.fields for r in d.find_logs('service changed')],
              [{'service': 'web', 'settings': 'same', 'servers_added': 'b', 'servers_removed': 'a',
                'servers_changed': '-'}], '`service changed` line of the reload')
    expect_eq(get_stats(stats)['config']['generation'], 2, '/stats generation after the reload')
    expect_eq(dns.count(), before + 1, f'`A {SLOW_NAME}` queries of the reload')
    verified_session(listen, 'b', f'session at generation 2 (server b at {slow_b})')
    expect_eq(access_lines(d, 2),
              [('a', demos['a'].address, SESSION_BYTES, SESSION_BYTES + GREETING_BYTES, 'client_close'),
               ('b', demos['b'].address, SESSION_BYTES, SESSION_BYTES + GREETING_BYTES, 'client_close')],
              'access log: server, server_addr, bytes_in, bytes_out, end')
    d.stop()


def sighup_while_starting(t, dns, prefix, demos, slow_b):
    """A SIGHUP during start-up is held and becomes a reload."""
    dns.hold()
    before = dns.count()
    listen, stats = free_address(), free_address()
    d = t.daemon(config(listen, stats, 'b', slow_b), name='fulcrum-starting', prefix=prefix, start=False)
    d.start(wait_ready=False)
    wait_until(lambda: dns.count() > before, 10, f'the start-up `A {SLOW_NAME}` query of the second daemon')
    expect(d.running(), f'the second daemon exited with {d.proc.returncode} before its start-up query was answered')
    expect_eq(d.logs(), [], 'log lines of the second daemon before its configuration is loaded')
    log_stream('the second daemon is inside its start-up load: SIGHUP, then the DNS answer')
    os.kill(d.pid, signal.SIGHUP)
    time.sleep(0.2)  # time enough for a SIGHUP with its default action to kill
    if not d.running():
        code = d.proc.returncode
        why = ' (killed by SIGHUP)' if code == -signal.SIGHUP else ''
        raise TestFailure(f'the second daemon exited with {code}{why} on a SIGHUP during its start-up, '
                          f'instead of holding it for a reload')
    dns.release()
    d.wait_ready(timeout=10)
    d.wait_for_log(lambda r: r.message == 'reloaded' and r.fields == {'generation': '2', 'by': 'SIGHUP'}, timeout=10)
    expect_eq(reload_lines(d),
              ([{'config': d.config_path, 'by': 'SIGHUP'}], [{'generation': '2', 'by': 'SIGHUP'}]),
              '`reloading` and `reloaded` lines of the SIGHUP sent during start-up')
    expect_eq(dns.count(), before + 2, f'`A {SLOW_NAME}` queries of the second daemon (start-up, reload)')
    expect_eq(get_stats(stats)['config']['generation'], 2, '/stats generation of the second daemon')
    verified_session(listen, 'b', 'session through the second daemon')
    expect_eq(access_lines(d, 1), [('b', demos['b'].address, SESSION_BYTES, SESSION_BYTES + GREETING_BYTES,
                                    'client_close')], 'access log of the second daemon')
    d.stop()


def api_reload_outlives_deadline(t, dns, prefix, demos, slow_b):
    """An API reload held longer than the stats request deadline is answered."""
    dns.hold()
    before = dns.count()
    listen, stats = free_address(), free_address()
    token = 'slow-dns-token'
    conf = config(listen, stats, 'a', demos['a'].address)
    conf['stats']['admin_token_file'] = t.token_file(token + '\n')
    d = t.daemon(conf, name='fulcrum-api', prefix=prefix)
    conf = config(listen, stats, 'b', slow_b)
    conf['stats']['admin_token_file'] = t.token_file(token + '\n')
    write_config(d.config_path, conf)
    answer = {}

    def post():
        try:
            answer['reply'] = http_request(stats, 'POST', '/api/v1/reload',
                                           headers={'Authorization': f'Bearer {token}'}, timeout=30)
        except Exception as e:  # reported below, in the test's thread
            answer['error'] = repr(e)
    poster = threading.Thread(target=post, daemon=True)
    poster.start()
    wait_until(lambda: dns.count() > before, 10, f'the API reload\'s `A {SLOW_NAME}` query')
    time.sleep(STATS_DEADLINE + 1)
    reply = answered_while_held(stats, '/stats')
    expect_eq(json.loads(reply.body)['config']['generation'], 1, '/stats generation while the API reload waits')
    expect(not answer, f'the API reload was answered before its DNS answer: {answer}')
    dns.release()
    poster.join(20)
    expect('reply' in answer, f'the API reload got no answer: {answer.get("error", "still waiting")}')
    expect_eq((answer['reply'].status, json.loads(answer['reply'].body)),
              (200, {'ok': True, 'generation': 2, 'errors': [], 'warnings': []}),
              'answer of the API reload held past the stats deadline')
    verified_session(listen, 'b', 'session after the API reload')
    d.stop()


def setup(t):
    """Skips unless root with unshare; returns (dns, prefix, demos, slow_b)."""
    if os.geteuid() != 0:
        raise TestSkip('needs root for a private mount namespace and port 53')
    if shutil.which('unshare') is None:
        raise TestSkip('unshare (util-linux) is not installed')
    dns = start_dns(t)
    resolv = t.path('resolv.conf')
    resolv_text = f'nameserver {dns.address}\noptions timeout:30 attempts:1\n'
    with open(resolv, 'w') as f:
        f.write(resolv_text)
    prefix = namespace_prefix(resolv)
    probe = subprocess.run(prefix + ['cat', '/etc/resolv.conf'], capture_output=True, text=True, timeout=10)
    if probe.returncode != 0:
        raise TestSkip(f'cannot bind-mount a resolv.conf in a mount namespace: {probe.stderr.strip()}')
    expect_eq(probe.stdout, resolv_text, 'resolv.conf seen inside the namespace')
    demos = {name: t.demo_server(name) for name in ('a', 'b')}
    slow_b = f'{SLOW_NAME}:{demos["b"].address.rsplit(":", 1)[1]}'
    return dns, prefix, demos, slow_b


def run(t):
    dns, prefix, demos, slow_b = setup(t)
    reload_waits_for_dns(t, dns, prefix, demos, slow_b)
    sighup_while_starting(t, dns, prefix, demos, slow_b)
    api_reload_outlives_deadline(t, dns, prefix, demos, slow_b)
    with dns.lock:
        expect(not dns.errors, 'DNS server: ' + '; '.join(dns.errors))
