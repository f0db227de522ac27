"""forwarding: nat and fullnat, TCP and UDP, through the kernel's nftables.

The namespaces of tests/netns/kernel_lab.py (client, lb where fulcrum
runs, servers a and b on lb's bridge, their default routes via lb: nat's
replies come back through it), deleted on exit, also on failure; lb also
has 198.18.1.100 on br0 (fullnat `source`).

The virtual addresses are on no interface: 198.18.10.10 and 2001:db8:10::10.
Each server runs tests/netns/peer.py (TCP echo, UDP answer, both telling
the address they see and which server they are).

1. `nft list ruleset` in lb before the start.
2. Services: nat rr TCP (v4 and v6), fullnat rr TCP (servers see the
   balancer's br0 address), nat rr UDP, fullnat TCP with `source`.
   Through each: sessions echo 256 KiB checked by SHA-256, the server sees
   the client's own address (nat) or the balancer's (fullnat), and rr
   splits exactly: 4 sessions, 2 per server; 10 UDP queries, 5 per server.
   wrr4 (nat wrr UDP, weights 3 and 1): 2000 queries, exactly 1500 and
   500 (SPEC asks within 2 %: numgen walks the smooth cycle exactly).
   maglev4 (nat) and `proxied` (a proxy service on lb, maglev, the same
   servers): from each of 12 client addresses, both send the session to
   the same server, and both servers are chosen.
   /stats counts exactly those new flows per server, and names each
   service's forwarding and protocol; udp4's 10 flows are its active
   sessions (conntrack), and nat4's, nat6's and full4's bytes each way are
   the echoed payload plus at most the headers of the packets counted.
3. Someone deletes fulcrum's ip table; then drain `a` through the admin
   API (run in lb's namespace, where the stats port is): the difference
   fails, fulcrum logs that it installed the whole table again, and the
   next 4 sessions of nat4 all reach `b`. Ready again, then
   60 sessions of 16 KiB run through nat4 while 10 reloads change its
   scheduler (rr, wrr, maglev) and weights: every one echoes exactly (each
   reload is one nft transaction: no moment without a rule).
   Health and `on_server_down: close`: a session holds on its server (the
   one active flow of nat4 in /stats),
   which then goes silent (a drop table in its namespace); it is logged
   down within fall x interval + timeout + 1 s, `flows forgotten` names
   it with 1 flow, the held session's next bytes are reset (its flow is a
   new one to the other server, which has no such connection), the next
   4 sessions reach the other server, and /stats counts 1 closed_on_down.
4. SIGTERM: exit 0, and `nft list ruleset` is exactly what it was before.
5. `fulcrum --flush-kernel` after a SIGKILL: the table a crash left is gone.
6. Without CAP_NET_ADMIN (setpriv dropping it from the bounding set):
   exit 3, with the error at the service's forwarding key.
"""

import json
import os
import signal
import subprocess
import sys
import time

from harness import binary, expect, expect_eq, free_port, wait_until, write_config

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from kernel_lab import (CLIENT4, CLIENT6, LB_CLIENT4, LB_SERVERS4, PEER, SERVERS, lab,  # noqa: E402
                        admin, rr_sessions, run_command, split, stats_json, tcp_sessions, udp_queries)

DEADLINE = 150
BYTES = 256 * 1024
SOURCE4 = '198.18.1.100'  # fullnat `source`: a second address of lb on br0
VIP4, VIP6 = '198.18.10.10', '2001:db8:10::10'
PORT = 9000
TOKEN = 'kernel-test-token'
WRR_FLOWS = 2000
MAGLEV_CLIENTS = [f'198.18.20.{i}' for i in range(10, 22)]  # extra addresses of the client
# What makes a server silent: its namespace drops the port both ways.
SILENCE = """
table inet silence {
  chain input { type filter hook input priority 0; policy accept; tcp dport 9000 drop; }
  chain output { type filter hook output priority 0; policy accept; tcp sport 9000 drop; }
}
"""


def services(source_port):
    def servers(v6=False):
        return [{'name': name, 'address': f'[{hosts[1]}]:{PORT}' if v6 else f'{hosts[0]}:{PORT}'}
                for name, hosts in SERVERS.items()]
    return [
        {'name': 'nat4', 'forwarding': 'nat', 'scheduler': 'rr', 'listen': f'{VIP4}:80', 'servers': servers(),
         'health_check': {'interval': '300ms', 'timeout': '300ms', 'rise': 1, 'fall': 2},
         'on_server_down': 'close'},
        {'name': 'nat6', 'forwarding': 'nat', 'scheduler': 'rr', 'listen': f'[{VIP6}]:80',
         'servers': servers(True)},
        {'name': 'full4', 'forwarding': 'fullnat', 'scheduler': 'rr', 'listen': f'{VIP4}:81',
         'servers': servers()},
        {'name': 'udp4', 'forwarding': 'nat', 'protocol': 'udp', 'scheduler': 'rr', 'listen': f'{VIP4}:53',
         'servers': servers()},
        {'name': 'src4', 'forwarding': 'fullnat', 'scheduler': 'wrr', 'source': SOURCE4,
         'listen': f'{VIP4}:{source_port}', 'servers': servers()},
        {'name': 'wrr4', 'forwarding': 'nat', 'protocol': 'udp', 'scheduler': 'wrr', 'listen': f'{VIP4}:54',
         'servers': [{**server, 'weight': weight} for server, weight in zip(servers(), (3, 1))]},
        {'name': 'maglev4', 'forwarding': 'nat', 'scheduler': 'maglev', 'listen': f'{VIP4}:83',
         'servers': servers()},
        {'name': 'proxied', 'scheduler': 'maglev', 'listen': f'{LB_CLIENT4}:8083', 'servers': servers()},
    ]


def service_stats(topology, stats, service):
    """Per server of `service` in /stats: active sessions, bytes and packets
    each way."""
    found = next(s for s in stats_json(topology, stats)['services'] if s['name'] == service)
    return {'active': {v['name']: v['sessions']['active'] for v in found['servers']},
            **{f'{kind}_{way}': {v['name']: v[kind][way] for v in found['servers']}
               for kind in ('bytes', 'packets') for way in ('in', 'out')}}


def wait_active(topology, stats, expected, what):
    """Waits until nat4's active flows per server are `expected`; failing,
    says what /stats and lb's conntrack table last held."""
    seen = []

    def failure():
        table = topology.sh(topology.lb, 'conntrack', '-L', check=False).stdout.strip()
        return f'nat4: {what} (last seen {seen[-1]}; conntrack in lb:\n{table[-1500:]})'
    wait_until(lambda: seen.append(service_stats(topology, stats, 'nat4')['active']) or seen[-1] == expected, 10,
               failure)


def run(t):
    topology = lab(t, 'fk', [('setpriv', 'util-linux')])
    run_command('ip', '-n', topology.lb, 'addr', 'add', f'{SOURCE4}/24', 'dev', 'br0')
    for source in MAGLEV_CLIENTS:
        run_command('ip', '-n', topology.client, 'addr', 'add', f'{source}/24', 'dev', 'c0')
    servers = topology.start_servers(t, lambda name: [f'{SERVERS[name][0]}:{PORT}', f'[{SERVERS[name][1]}]:{PORT}'])

    ruleset_before = topology.ruleset()
    stats = f'127.0.0.1:{free_port()}'
    token = t.token_file(TOKEN + '\n')
    config = {'global': {'workers': 1}, 'stats': {'listen': stats, 'admin_token_file': token},
              'services': services(82)}
    prefix = ['ip', 'netns', 'exec', topology.lb]
    d = t.daemon(config, prefix=prefix)

    # 2. Each service, each family and protocol.
    nat4 = rr_sessions(topology, 'nat4', f'{VIP4}:80', CLIENT4, BYTES)
    nat6 = rr_sessions(topology, 'nat6', f'[{VIP6}]:80', CLIENT6, BYTES)
    full4 = rr_sessions(topology, 'full4', f'{VIP4}:81', LB_SERVERS4, BYTES)
    src4 = tcp_sessions(topology, f'{VIP4}:82', 2, BYTES)
    expect_eq({r['seen'][0] for r in src4}, {SOURCE4}, 'src4: the servers see `source`')
    queries = udp_queries(topology, f'{VIP4}:53', 10)
    expect_eq(split(queries), {'a': 5, 'b': 5}, 'udp4: rr split of 10 queries (one flow each)')
    expect_eq({q['seen'][0] for q in queries}, {CLIENT4}, 'udp4: the servers see the client')
    # Active flows are conntrack's: each query's flow lives 30 s after it.
    wait_until(lambda: service_stats(topology, stats, 'udp4')['active'] == {'a': 5, 'b': 5}, 10,
               'udp4: sessions.active per server, its flows in conntrack')
    # Bytes and packets per direction, at layer 3 (nft counters on every
    # packet of the flows): the echoed payload plus at most 80 bytes of IPv4
    # and TCP headers per packet, 100 for IPv6, and what TCP sent again (a
    # busy machine drops a segment now and then): up to an eighth more.
    for service, results, headers in (('nat4', nat4, 80), ('nat6', nat6, 100), ('full4', full4, 80)):
        payload = {name: count * BYTES for name, count in split(results).items()}
        wait_until(lambda: all(service_stats(topology, stats, service)['bytes_in'][name] >= payload[name]
                               and service_stats(topology, stats, service)['bytes_out'][name] >= payload[name]
                               for name in payload), 10, f'{service}: bytes of its sessions counted')
        counted = service_stats(topology, stats, service)
        for name in payload:
            for way in ('in', 'out'):
                bytes_, packets = counted['bytes_' + way][name], counted['packets_' + way][name]
                expect(payload[name] <= bytes_ <= payload[name] * 9 // 8 + packets * headers,
                       f'{service} {name}: bytes.{way} {bytes_} = {payload[name]} of payload '
                       f'+ headers of {packets} packets (+ retransmissions)')

    # Maglev: the kernel's map and the proxy's scheduler pick the same
    # server for each of 12 client addresses.
    kernel_pick, proxy_pick = {}, {}
    for source in MAGLEV_CLIENTS:
        kernel_pick[source] = tcp_sessions(topology, f'{VIP4}:83', 1, 1024, source=source)[0]['server']
        proxy_pick[source] = tcp_sessions(topology, f'{LB_CLIENT4}:8083', 1, 1024, source=source)[0]['server']
    expect_eq(kernel_pick, proxy_pick, 'maglev: the server of each client, kernel vs proxy')
    expect_eq(set(kernel_pick.values()), {'a', 'b'}, 'maglev: both servers chosen by some client')

    # Counters of new flows, per server (nft counters read every second).
    # wrr: weights 3 and 1 over 2000 flows (numgen walks the smooth cycle).
    weighted = udp_queries(topology, f'{VIP4}:54', WRR_FLOWS)
    expect_eq(split(weighted), {'a': WRR_FLOWS * 3 // 4, 'b': WRR_FLOWS // 4}, f'wrr4: {WRR_FLOWS} flows, weights 3:1')
    maglev_totals = {}
    for name in kernel_pick.values():
        maglev_totals[name] = maglev_totals.get(name, 0) + 1
    expected_totals = {'nat4': split(nat4), 'nat6': split(nat6), 'full4': split(full4), 'src4': split(src4),
                       'udp4': split(queries), 'wrr4': split(weighted), 'maglev4': maglev_totals,
                       'proxied': maglev_totals}

    def totals():
        return {s['name']: {v['name']: v['sessions']['total'] for v in s['servers'] if v['sessions']['total']}
                for s in stats_json(topology, stats)['services']}
    wait_until(lambda: totals() == expected_totals, 10, 'new flows counted per server in /stats')
    modes = {s['name']: (s['forwarding'], s['protocol']) for s in stats_json(topology, stats)['services']}
    expect_eq(modes, {'nat4': ('nat', 'tcp'), 'nat6': ('nat', 'tcp'), 'full4': ('fullnat', 'tcp'),
                      'udp4': ('nat', 'udp'), 'src4': ('fullnat', 'tcp'), 'wrr4': ('nat', 'udp'),
                      'maglev4': ('nat', 'tcp'), 'proxied': ('proxy', 'tcp')},
              'forwarding and protocol in /stats')

    # 3. Drain a: new flows go to b. Someone deleted fulcrum's table
    # before: the drain's difference fails, and the whole table is
    # installed again at once.
    topology.sh(topology.lb, 'nft', 'delete', 'table', 'ip', 'fulcrum')
    expect_eq(admin(topology, stats, 'nat4', 'a', {'state': 'drain'}, TOKEN), 200,
              'drain a through the admin API')
    d.wait_for_log(lambda r: r.message == 'kernel rules replaced after a failed change', timeout=10)
    drained = tcp_sessions(topology, f'{VIP4}:80', 4, BYTES)
    expect_eq(split(drained), {'b': 4}, 'nat4 after draining a')
    expect_eq(admin(topology, stats, 'nat4', 'a', {'state': 'ready'}, TOKEN), 200,
              'a ready again')

    # Sessions through 10 reloads.
    loop = subprocess.Popen(['ip', 'netns', 'exec', topology.client, sys.executable, PEER, 'client', f'{VIP4}:80',
                             '60', str(16 * 1024)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t.register_process(loop, 'session loop')
    for n in range(10):
        changed = services(82)
        changed[0]['scheduler'] = ('rr', 'wrr', 'maglev')[n % 3]
        changed[0]['servers'][1]['weight'] = 1 + n % 3
        write_config(d.config_path, {**config, 'services': changed})
        d.send_signal(signal.SIGHUP)
        d.wait_for_log(lambda r: r.message == 'reloaded', timeout=10, count=n + 1)
    out, err = loop.communicate(timeout=60)
    expect_eq(loop.returncode, 0, f'the session loop through the reloads: {err.strip()}')
    results = json.loads(out)
    expect_eq(len(results), 60, 'sessions through the reloads')
    expect_eq([r['echoed_sha256'] == r['sent_sha256'] and r['echoed_bytes'] == 16 * 1024 for r in results],
              [True] * 60, 'every session through the reloads echoed exactly')

    # Health and on_server_down: close. A session holds on its server, which
    # then goes silent (a drop table in its namespace): it is marked down,
    # its flow's conntrack entry is forgotten, and the held session's next
    # bytes become a new flow to the other server, which resets it.
    held = subprocess.Popen(['ip', 'netns', 'exec', topology.client, sys.executable, PEER, 'hold', f'{VIP4}:80',
                             str(BYTES)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    t.register_process(held, 'held session')
    victim = json.loads(held.stdout.readline())['server']
    survivor = 'b' if victim == 'a' else 'a'
    # Closed sessions (TIME_WAIT) are no active flows: only the held one is.
    wait_active(topology, stats, {victim: 1, survivor: 0}, 'the held session is the one active flow')
    topology.sh(topology.servers[victim], 'nft', '-f', '-', check=True, input=SILENCE)
    silenced = time.monotonic()
    d.wait_for_log(lambda r: r.message == 'server down' and r.fields.get('service') == 'nat4'
                   and r.fields.get('server') == victim, timeout=10)
    took = time.monotonic() - silenced
    expect(took <= 0.6 + 0.3 + 1.0, f'nat4 {victim} marked down {took:.2f} s after going silent '
                                    '(fall x interval + timeout + 1 s)')
    forgotten = d.wait_for_log(lambda r: r.message == 'flows forgotten', timeout=10)
    expect_eq([(r.fields['service'], r.fields['server'], r.fields['flows']) for r in forgotten],
              [('nat4', victim, '1')], 'flows forgotten')
    out, err = held.communicate('go\n', timeout=30)
    # The reset reaches the sending thread or the reading one (then exit 1).
    expect('ConnectionResetError' in err and (held.returncode != 0 or json.loads(out)['echoed_bytes'] < BYTES),
           f'the held session is reset once its flow is forgotten (exit {held.returncode}): {err.strip()[-300:]}')
    after = tcp_sessions(topology, f'{VIP4}:80', 4, BYTES)
    expect_eq(split(after), {survivor: 4}, f'nat4 after {victim} went down')
    closed = {v['name']: v['sessions']['closed_on_down'] for s in stats_json(topology, stats)['services']
              if s['name'] == 'nat4' for v in s['servers']}
    expect_eq(closed, {victim: 1, survivor: 0}, 'nat4 closed_on_down in /stats')
    wait_active(topology, stats, {victim: 0, survivor: 0}, 'no active flow once the held one is forgotten and reset')

    # 4. Stop: the ruleset is what it was.
    d.stop()
    expect_eq(topology.ruleset(), ruleset_before,
              'nft list ruleset after the stop')

    # 5. A crash leaves the table; --flush-kernel removes it.
    crashed = t.daemon({'global': {'workers': 1}, 'services': services(82)}, name='crashed', prefix=prefix)
    crashed.send_signal(signal.SIGKILL)
    crashed.proc.wait(10)
    expect('table ip fulcrum' in topology.sh(topology.lb, 'nft', 'list', 'tables').stdout,
           'the table a SIGKILL left')
    flushed = run_command(*prefix, binary('FULCRUM'), '--flush-kernel', check=False)
    expect_eq((flushed.returncode, flushed.stdout, flushed.stderr), (0, '', ''), 'fulcrum --flush-kernel')
    expect_eq(topology.ruleset(), ruleset_before,
              'nft list ruleset after --flush-kernel')

    # 6. No CAP_NET_ADMIN: exit 3, the reason at the forwarding key.
    denied = t.daemon({'services': services(82)[:1]}, name='denied', start=False,
                      prefix=[*prefix, 'setpriv', '--inh-caps=-all', '--bounding-set=-net_admin'])
    denied.start(wait_ready=False)
    expect_eq(denied.wait_exit(20), 3, 'exit code without CAP_NET_ADMIN')
    errors = [r.fields.get('error') for r in denied.logs() if r.level == 'error']
    with open(denied.config_path) as f:
        line = next(n for n, text in enumerate(f, 1) if 'forwarding:' in text)
    expect_eq(errors, [f'{denied.config_path}:{line}:5: service nat4: forwarding nat needs CAP_NET_ADMIN '
                       'to program nftables'], 'error without CAP_NET_ADMIN')
