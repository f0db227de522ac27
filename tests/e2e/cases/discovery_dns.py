"""Servers from DNS (SPEC.md "Servers from DNS") against a real DNS server:
dnsmasq started by the test on 127.0.0.1 and a free port, answering from a
records file it re-reads on SIGHUP (A records) and from its configuration
(SRV records: it restarts to change them), TTL 1 s. `global.resolvers`
points at it: the machine's own nameserver is never asked.

Services:
  srv  scheduler wrr, discover _app._tcp.svc.test (SRV: app1 port A weight
       3, app2 port B weight 1, both at 127.0.0.1), interval 1s;
  hosts  scheduler rr, discover hosts.svc.test:PORT (A records 127.0.0.11
       and .12, later .13), interval 1s.

1. The initial sets: srv has app1.svc.test:A (weight 3) and
   app2.svc.test:B (weight 1), hosts 127.0.0.11:PORT and 127.0.0.12:PORT;
   40 sessions on srv go 30 and 10 exactly (smooth wrr).
2. Add: .13 joins hosts after a SIGHUP of dnsmasq; 6 sessions go 2, 2, 2;
   the older servers' session counts go on (not reset).
3. Remove, with a session open: a session to .11 echoes 1 MiB both ways
   while .11 leaves the answer: /stats shows it `drain`, no new session
   goes to it, the open session ends sha256-exact, then .11 disappears.
4. DNS down (dnsmasq killed): discovery.errors grows, last_error says why,
   the servers stay and serve; `discovery failed` is logged once.
5. A reload (SIGHUP of fulcrum) while the resolver is down: /healthz
   answers within 1 s throughout, the reload succeeds, the discovered
   servers are still there and serve.
6. TTL and interval: with the resolver back and local-ttl 3, hosts asks
   once per 3 s, not every interval (dnsmasq's query log: 2 to 4 queries
   in 9 s).
"""

import hashlib
import os
import signal
import socket
import subprocess
import time

from harness import (connect, echo_session, expect, expect_eq, free_address, free_port,
                     free_port_on, get_stats, http_get, log_stream, read_greeting, wait_until,
                     write_config)

DEADLINE = 150


class Dnsmasq:
    """dnsmasq on 127.0.0.1:PORT in the foreground, as root (the test's
    directory is private), logging its queries."""

    def __init__(self, t, port):
        self.t = t
        self.port = port
        self.hosts = t.path('dns-hosts')
        self.conf = t.path('dnsmasq.conf')
        self.log = t.path('dnsmasq.log')
        self.proc = None

    def write(self, hosts, srv, ttl=1):
        with open(self.hosts, 'w') as f:
            f.write(''.join(f'{address} {name}\n' for address, name in hosts))
        with open(self.conf, 'w') as f:
            f.write('no-resolv\nno-hosts\nlocal=/svc.test/\nlog-queries\n'
                    f'addn-hosts={self.hosts}\nlocal-ttl={ttl}\n')
            for target, port, weight in srv:
                f.write(f'srv-host=_app._tcp.svc.test,{target},{port},10,{weight}\n')

    def start(self):
        self.proc = subprocess.Popen(
            ['dnsmasq', '--keep-in-foreground', f'--conf-file={self.conf}', '--listen-address=127.0.0.1',
             f'--port={self.port}', '--bind-interfaces', '--user=root', '--group=root',
             f'--pid-file={self.t.path("dnsmasq.pid")}', f'--log-facility={self.log}'],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.t.register_process(self.proc, 'dnsmasq')

        def answering():
            if self.proc.poll() is not None:
                raise AssertionError(f'dnsmasq exited with {self.proc.returncode}')
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(0.2)
                # A query for probe.svc.test A: any answer means it serves.
                query = bytes.fromhex('beef01000001000000000000') + b'\x05probe\x03svc\x04test\x00\x00\x01\x00\x01'
                s.sendto(query, ('127.0.0.1', self.port))
                try:
                    return s.recv(512)[:2] == b'\xbe\xef'
                except socket.timeout:
                    return False
        wait_until(answering, 10, 'dnsmasq answering', interval=0.05)

    def stop(self):
        self.proc.kill()
        self.proc.wait(10)

    def reread(self):
        self.proc.send_signal(signal.SIGHUP)

    def queries(self, name):
        with open(self.log) as f:
            return sum(1 for line in f if f'query[A] {name} ' in line)


def servers_of(stats, service):
    return {v['name']: v for v in next(s for s in stats['services'] if s['name'] == service)['servers']}


def service_of(stats, name):
    return next(s for s in stats['services'] if s['name'] == name)


def run(t):
    port_a, port_b = free_port(), free_port()
    app1, app2 = t.demo_server('app1', address=f'127.0.0.1:{port_a}'), t.demo_server('app2', address=f'127.0.0.1:{port_b}')
    hosts_port = free_port_on('127.0.0.11', '127.0.0.12', '127.0.0.13')
    backends = {host: t.demo_server(host, address=f'{host}:{hosts_port}') for host in
                ('127.0.0.11', '127.0.0.12', '127.0.0.13')}
    dns = Dnsmasq(t, free_port())
    records = [('127.0.0.1', 'app1.svc.test'), ('127.0.0.1', 'app2.svc.test'),
               ('127.0.0.11', 'hosts.svc.test'), ('127.0.0.12', 'hosts.svc.test')]
    srv = [('app1.svc.test', port_a, 3), ('app2.svc.test', port_b, 1)]
    dns.write(records, srv)
    dns.start()
    srv_listen, hosts_listen, stats_address = free_address(), free_address(), free_address()
    config = {
        'global': {'workers': 2, 'resolvers': [f'127.0.0.1:{dns.port}']},
        'stats': {'listen': stats_address},
        'services': [
            {'name': 'srv', 'listen': srv_listen, 'scheduler': 'wrr',
             'discover': {'name': '_app._tcp.svc.test', 'interval': '1s'}},
            {'name': 'hosts', 'listen': hosts_listen, 'scheduler': 'rr',
             'discover': {'name': f'hosts.svc.test:{hosts_port}', 'interval': '1s'}},
        ],
    }
    d = t.daemon(config)

    # 1. The initial sets.
    wait_until(lambda: len(servers_of(get_stats(stats_address), 'srv')) == 2 and
               len(servers_of(get_stats(stats_address), 'hosts')) == 2, 10, 'both sets discovered')
    stats = get_stats(stats_address)
    expect_eq({name: (v['address'], v['weight'], v['backup'], v.get('discovered'))
               for name, v in servers_of(stats, 'srv').items()},
              {f'app1.svc.test:{port_a}': (f'127.0.0.1:{port_a}', 3, False, True),
               f'app2.svc.test:{port_b}': (f'127.0.0.1:{port_b}', 1, False, True)}, 'srv: servers from SRV')
    expect_eq(sorted(servers_of(stats, 'hosts')), [f'127.0.0.11:{hosts_port}', f'127.0.0.12:{hosts_port}'],
              'hosts: servers from A records')
    discovery = service_of(stats, 'srv')['discovery']
    expect_eq((discovery['name'], discovery['servers'], discovery['errors'], discovery['last_error']),
              ('_app._tcp.svc.test', 2, 0, None), 'srv: /stats discovery')
    names = [echo_session(srv_listen, n)[0] for n in range(40)]
    expect_eq((names.count('app1'), names.count('app2')), (30, 10), 'srv: 40 sessions by SRV weights 3:1')

    # 2. A server added.
    before = {name: v['sessions']['total'] for name, v in servers_of(get_stats(stats_address), 'hosts').items()}
    for n in range(4):
        echo_session(hosts_listen, n)
    dns.write(records + [('127.0.0.13', 'hosts.svc.test')], srv)
    dns.reread()
    wait_until(lambda: len(servers_of(get_stats(stats_address), 'hosts')) == 3, 10, 'hosts: .13 added')
    totals = {name: v['sessions']['total'] for name, v in servers_of(get_stats(stats_address), 'hosts').items()}
    expect_eq(sum(totals.values()), sum(before.values()) + 4, 'hosts: counters went on through the change')
    names = [echo_session(hosts_listen, 100 + n)[0] for n in range(6)]
    expect_eq(sorted(names), sorted(['127.0.0.11', '127.0.0.12', '127.0.0.13'] * 2), 'hosts: 6 sessions, 2 each')

    # 3. A server removed while a session to it runs.
    gone = f'127.0.0.11:{hosts_port}'
    sock = None
    for n in range(3):
        candidate = connect(hosts_listen)
        if read_greeting(candidate) == '127.0.0.11':
            sock = t.own_socket(candidate)
            break
        candidate.close()
    expect(sock is not None, 'a session on .11')
    payload = os.urandom(1 << 20)
    sent_hash, got_hash = hashlib.sha256(payload), hashlib.sha256()
    half = len(payload) // 2
    sock.sendall(payload[:half])
    got = 0
    while got < half:
        chunk = sock.recv(65536)
        got += len(chunk)
        got_hash.update(chunk)
    dns.write([r for r in records if r[0] != '127.0.0.11'] + [('127.0.0.13', 'hosts.svc.test')], srv)
    dns.reread()
    wait_until(lambda: servers_of(get_stats(stats_address), 'hosts').get(gone, {}).get('state') == 'drain', 10,
               '.11 drains once out of the answer')
    names = [echo_session(hosts_listen, 200 + n)[0] for n in range(4)]
    expect('127.0.0.11' not in names, f'no new session on the departing .11: {names}')
    sock.sendall(payload[half:])
    sock.shutdown(socket.SHUT_WR)
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += len(chunk)
        got_hash.update(chunk)
    expect_eq((got, got_hash.hexdigest()), (len(payload), sent_hash.hexdigest()),
              'the session on the departing server, echoed whole')
    sock.close()
    wait_until(lambda: gone not in servers_of(get_stats(stats_address), 'hosts'), 10, '.11 gone once idle')
    log_stream('a departing server drained: its session ended sha256-exact, then it left /stats')

    # 4. The DNS server down.
    dns.stop()
    wait_until(lambda: service_of(get_stats(stats_address), 'hosts')['discovery']['errors'] >= 2, 10,
               'hosts: discovery errors while DNS is down')
    stats = get_stats(stats_address)
    expect_eq(sorted(servers_of(stats, 'hosts')), [f'127.0.0.12:{hosts_port}', f'127.0.0.13:{hosts_port}'],
              'hosts: the last known servers stay')
    last_error = service_of(stats, 'hosts')['discovery']['last_error']
    expect(last_error == f'no answer from 127.0.0.1:{dns.port}: Connection refused',
           f'hosts: last_error {last_error!r}')
    names = [echo_session(hosts_listen, 300 + n)[0] for n in range(4)]
    expect_eq(sorted(names), sorted(['127.0.0.12', '127.0.0.13'] * 2), 'hosts: serving while DNS is down')
    failures = [r for r in d.find_logs('discovery failed, the known servers stay') if r.fields['service'] == 'hosts']
    expect_eq(len(failures), 1, 'one `discovery failed` line for hosts while the reason stays the same')

    # 5. A reload while the resolver is unreachable.
    write_config(d.config_path, config)
    d.send_signal(signal.SIGHUP)
    slowest = 0.0
    end = time.monotonic() + 3
    while time.monotonic() < end:
        began = time.monotonic()
        reply = http_get(stats_address, '/healthz', timeout=1)
        expect_eq(reply.status, 200, '/healthz during the reload')
        slowest = max(slowest, time.monotonic() - began)
        time.sleep(0.05)
    d.wait_for_log(lambda r: r.message == 'reloaded' and r.fields.get('generation') == '2', 10)
    expect(slowest < 1.0, f'/healthz answered within 1 s during the reload (slowest {slowest:.3f} s)')
    stats = get_stats(stats_address)
    expect_eq((sorted(servers_of(stats, 'hosts')), sorted(servers_of(stats, 'srv'))),
              ([f'127.0.0.12:{hosts_port}', f'127.0.0.13:{hosts_port}'],
               [f'app1.svc.test:{port_a}', f'app2.svc.test:{port_b}']),
              'after the reload: the discovered servers stay')
    names = [echo_session(srv_listen, 400 + n)[0] for n in range(4)]
    expect_eq(sorted(names), ['app1', 'app1', 'app1', 'app2'], 'srv serves after the reload')

    # 6. TTL over interval: the resolver back with TTL 3 s.
    dns.write([('127.0.0.12', 'hosts.svc.test'), ('127.0.0.13', 'hosts.svc.test')] + records[:2], srv, ttl=3)
    dns.start()
    wait_until(lambda: dns.queries('hosts.svc.test') >= 1, 10, 'hosts asked again')
    first = dns.queries('hosts.svc.test')
    time.sleep(9)
    asked = dns.queries('hosts.svc.test') - first
    # At the TTL's end: 3 in 9 s (asking every interval would be 9).
    expect(2 <= asked <= 4, f'hosts asked {asked} times in 9 s with TTL 3 s and interval 1 s (2 to 4)')
    log_stream(f'TTL 3 s, interval 1 s: {asked} queries for hosts.svc.test in 9 s')
    d.stop()
