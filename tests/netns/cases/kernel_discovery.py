"""Servers from DNS in a kernel forwarding mode (issue 21): discovery feeds
the control plane, which programs nftables as for servers of the file.

The namespaces of tests/netns/kernel_lab.py (client, lb, servers a and b
on lb's bridge). dnsmasq runs in lb's namespace on 127.0.0.1:5353 with a
records file naming both servers `app.svc.test` (TTL 1 s); fulcrum, in lb,
has `forwarding: nat`, `scheduler: rr` on 198.18.10.10:80 with
`discover: {name: "app.svc.test:9000", interval: 1s}` and
`global.resolvers` pointing at it.

1. Both servers appear in /stats (`198.18.1.11:9000` and
   `198.18.1.12:9000`, discovered); 4 sessions split 2 and 2, each echoing
   64 KiB exactly, the servers seeing the client.
2. b leaves the records (SIGHUP of dnsmasq): once it is gone from /stats
   (no flow held it), 4 sessions all reach a.
3. b comes back: 4 sessions split 2 and 2 again.
4. SIGTERM: exit 0 and lb's ruleset is as before.
"""

import os
import subprocess
import sys

from harness import expect_eq, wait_until

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from kernel_lab import CLIENT4, SERVERS, lab, rr_sessions, split, stats_json, tcp_sessions  # noqa: E402

DEADLINE = 120
PORT = 9000
VIP4 = '198.18.10.10'
DNS_PORT = 5353
BYTES = 64 * 1024


def servers_in_stats(topology, stats):
    service = next(s for s in stats_json(topology, stats)['services'] if s['name'] == 'nat4')
    return {v['name']: v.get('discovered', False) for v in service['servers']}


def run(t):
    topology = lab(t, 'fq', [('dnsmasq', 'dnsmasq-base')])
    topology.start_servers(t, lambda name: [f'{SERVERS[name][0]}:{PORT}'])
    hosts = t.path('dns-hosts')

    def records(names):
        with open(hosts, 'w') as f:
            f.write(''.join(f'{SERVERS[name][0]} app.svc.test\n' for name in names))
    records(['a', 'b'])
    conf = t.path('dnsmasq.conf')
    with open(conf, 'w') as f:
        f.write(f'no-resolv\nno-hosts\nlocal=/svc.test/\naddn-hosts={hosts}\nlocal-ttl=1\n')
    dns = subprocess.Popen(['ip', 'netns', 'exec', topology.lb, 'dnsmasq', '--keep-in-foreground',
                            f'--conf-file={conf}', '--listen-address=127.0.0.1', f'--port={DNS_PORT}',
                            '--bind-interfaces', '--user=root', '--group=root',
                            f'--pid-file={t.path("dnsmasq.pid")}'],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t.register_process(dns, 'dnsmasq')

    ruleset_before = topology.ruleset()
    stats = '127.0.0.1:9100'
    config = {'global': {'workers': 1, 'resolvers': [f'127.0.0.1:{DNS_PORT}']},
              'stats': {'listen': stats},
              'services': [{'name': 'nat4', 'forwarding': 'nat', 'scheduler': 'rr', 'listen': f'{VIP4}:80',
                            'discover': {'name': f'app.svc.test:{PORT}', 'interval': '1s'}}]}
    d = t.daemon(config, prefix=['ip', 'netns', 'exec', topology.lb])
    both = {f'{SERVERS[name][0]}:{PORT}': True for name in ('a', 'b')}

    # 1. Both discovered, and the kernel forwards to both.
    wait_until(lambda: servers_in_stats(topology, stats) == both, 15, 'nat4: both servers discovered')
    rr_sessions(topology, 'nat4', f'{VIP4}:80', CLIENT4, BYTES)

    # 2. b leaves DNS.
    records(['a'])
    dns.send_signal(1)  # SIGHUP: dnsmasq reads its records file again
    gone = {f'{SERVERS["a"][0]}:{PORT}': True}
    wait_until(lambda: servers_in_stats(topology, stats) == gone, 15, 'nat4: b gone from /stats')
    expect_eq(split(tcp_sessions(topology, f'{VIP4}:80', 4, BYTES)), {'a': 4}, 'nat4: 4 sessions without b')

    # 3. b back.
    records(['a', 'b'])
    dns.send_signal(1)
    wait_until(lambda: servers_in_stats(topology, stats) == both, 15, 'nat4: b back')
    rr_sessions(topology, 'nat4', f'{VIP4}:80', CLIENT4, BYTES)

    # 4. A clean stop.
    d.stop()
    expect_eq(topology.ruleset(), ruleset_before, "lb's ruleset after the stop")
