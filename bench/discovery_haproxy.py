#!/usr/bin/env python3
"""fulcrum's DNS discovery next to HAProxy 2.6's `resolvers` with
`server-template` (issue 21): the same dnsmasq (TTL 1 s), the same SRV
records, the same clients. Figures and outcomes only: it never passes or
fails.

For each balancer:
  - start: how long from launching the balancer until both SRV targets
    take sessions;
  - weights: how 40 sessions split between weights 3 and 1;
  - remove: how long after dnsmasq drops a target until no new session
    goes to it, and whether a session open on it meanwhile still echoes;
  - DNS down for 40 s: whether the servers keep serving (HAProxy's `hold`
    periods, here at their defaults, against fulcrum's "keep the last
    answer");
  - DNS back with the target again: how long until it takes sessions.

    python3 bench/discovery_haproxy.py [--fulcrum build-bench/fulcrum]

Needs haproxy and dnsmasq (tools/deps.sh). Python 3 standard library; it
uses the e2e harness and the discovery_dns test's dnsmasq helper.
"""

import argparse
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'tests', 'e2e'))
sys.path.insert(0, os.path.join(REPO, 'tests', 'e2e', 'cases'))
import harness  # noqa: E402
from discovery_dns import Dnsmasq  # noqa: E402
from harness import connect, free_address, free_port, read_greeting, wait_until  # noqa: E402


def greeting_of(address):
    """The server's name, or None when the balancer closes the client."""
    try:
        with connect(address, timeout=3) as sock:
            return read_greeting(sock)
    except Exception:  # noqa: BLE001 -- refused, reset or closed: no server
        return None


def time_until(predicate, limit):
    began = time.monotonic()
    while time.monotonic() - began < limit:
        if predicate():
            return time.monotonic() - began
        time.sleep(0.05)
    return None


def both_serve(address):
    seen = {greeting_of(address) for _ in range(8)}
    return {'app1', 'app2'} <= seen


def scenario(listen, dns, records, srv, app2_port, launched):
    """`launched`: when the balancer was started (monotonic)."""
    out = {}
    wait_until(lambda: both_serve(listen), 30, 'both targets serving')
    out['start'] = time.monotonic() - launched
    names = [greeting_of(listen) for _ in range(40)]
    out['weights'] = f'{names.count("app1")}/{names.count("app2")}'
    # A session on app2, then app2 leaves DNS.
    held = None
    for _ in range(8):
        sock = connect(listen, timeout=3)
        if read_greeting(sock) == 'app2':
            held = sock
            break
        sock.close()
    dns.write(records, [entry for entry in srv if entry[1] != app2_port])
    dns.stop()
    dns.start()
    out['remove'] = time_until(lambda: all(greeting_of(listen) != 'app2' for _ in range(6)), 60)
    if held is not None:
        try:
            held.sendall(b'still there\n')
            out['held session'] = 'echoes' if held.recv(64) == b'still there\n' else 'broken'
        except OSError:
            out['held session'] = 'reset'
        held.close()
    # DNS down for 40 s.
    dns.stop()
    served = 0
    tries = 0
    end = time.monotonic() + 40
    while time.monotonic() < end:
        tries += 1
        served += greeting_of(listen) is not None
        time.sleep(1)
    out['DNS down 40 s'] = f'{served} of {tries} connects served'
    dns.write(records, srv)
    dns.start()
    out['back'] = time_until(lambda: both_serve(listen), 60)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--fulcrum', default=os.path.join(REPO, 'build-bench', 'fulcrum'))
    args = parser.parse_args()
    os.environ['FULCRUM'] = os.path.abspath(args.fulcrum)
    os.environ.setdefault('DEMO_SERVER', os.path.join(os.path.dirname(os.path.abspath(args.fulcrum)),
                                                      'fulcrum-demo-server'))
    t = harness.TestContext('discovery-haproxy')
    results = {}
    try:
        port_a, port_b = free_port(), free_port()
        t.demo_server('app1', address=f'127.0.0.1:{port_a}')
        t.demo_server('app2', address=f'127.0.0.1:{port_b}')
        records = [('127.0.0.1', 'app1.svc.test'), ('127.0.0.1', 'app2.svc.test')]
        srv = [('app1.svc.test', port_a, 3), ('app2.svc.test', port_b, 1)]

        dns = Dnsmasq(t, free_port())
        dns.write(records, srv)
        dns.start()
        listen = free_address()
        launched = time.monotonic()
        d = t.daemon({'global': {'workers': 1, 'resolvers': [f'127.0.0.1:{dns.port}']},
                      'services': [{'name': 'app', 'listen': listen, 'scheduler': 'wrr',
                                    'discover': {'name': '_app._tcp.svc.test', 'interval': '1s'}}]})
        results['fulcrum'] = scenario(listen, dns, records, srv, port_b, launched)
        d.stop()
        dns.stop()

        dns = Dnsmasq(t, free_port())
        dns.write(records, srv)
        dns.start()
        listen = free_address()
        path = t.path('haproxy.cfg')
        with open(path, 'w') as f:
            f.write('global\n    maxconn 1000\n'
                    'defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n'
                    '    timeout server 30s\n'
                    f'resolvers local\n    nameserver dns1 127.0.0.1:{dns.port}\n'
                    '    accepted_payload_size 4096\n    resolve_retries 2\n'
                    '    timeout resolve 1s\n    timeout retry 1s\n'
                    f'frontend app\n    bind {listen}\n    default_backend app\n'
                    'backend app\n    balance roundrobin\n'
                    '    server-template app 4 _app._tcp.svc.test resolvers local init-addr none\n')
        launched = time.monotonic()
        proc = subprocess.Popen(['haproxy', '-db', '-f', path], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=open(t.path('haproxy.log'), 'w'))
        t.register_process(proc, 'haproxy')
        results['haproxy'] = scenario(listen, dns, records, srv, port_b, launched)
    finally:
        t.cleanup()
    version = subprocess.run(['haproxy', '-v'], capture_output=True, text=True).stdout.split()[2]
    print(f'{"":22} {"fulcrum":32} haproxy {version}')
    for key in results['fulcrum']:
        def show(value):
            if value is None:
                return 'never (limit reached)'
            return f'{value:.2f} s' if isinstance(value, float) else str(value)
        print(f'{key:22} {show(results["fulcrum"][key]):32} {show(results["haproxy"].get(key))}')


if __name__ == '__main__':
    main()
