"""forwarding: dsr (direct server return), TCP and UDP, IPv4 and IPv6.

Namespaces made by the test (deleted on exit, also on failure):

    client  198.18.20.2 / 2001:db8:20::2   (default route via lb)
      |  c0 -- l0
    lb      198.18.20.1 / 2001:db8:20::1 on l0 (dsr.ingress), a plain router
            br0 198.18.1.1 / 2001:db8:1::1 (dsr.egress)
      |  (bridge br0)
    a  198.18.1.11 / 2001:db8:1::11    b  198.18.1.12 / 2001:db8:1::12
       the VIPs on lo through tools/dsr-server.sh apply; default routes via
       lb, so their answers to the client are routed, never rewritten

The VIPs are 198.18.10.20 and 2001:db8:10::20; each server's peer.py listens
on them (port 80, TCP and UDP) under its name (PEER_NAME).

1. dsr4 and dsr6 (rr): 4 sessions each echo 256 KiB (SHA-256), 2 per
   server, and the servers see the client's own address; udp4 (rr): 10
   queries, one flow each, 5 per server, each answer whole.
2. Flow memory: a session is opened and holds; its server is drained
   through the admin API and the other one weighted 5; the held session
   then sends 256 KiB, which reach the same server and come back exact,
   while 4 new sessions all go to the other server.
3. /stats: new flows per server (dsr4: a and b as scheduled), and
   bytes.in counted for dsr4's servers.
4. SIGTERM: `nft list ruleset` in lb is what it was before the start;
   `tools/dsr-server.sh remove` takes the VIPs off and puts arp_ignore and
   arp_announce back.
"""

import json
import os
import shutil
import subprocess
import sys

from harness import TestFailure, TestSkip, expect, expect_eq, free_port, wait_until

DEADLINE = 120
BYTES = 256 * 1024
HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(os.path.dirname(HERE), 'peer.py')
DSR_SERVER = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(HERE))), 'tools', 'dsr-server.sh')

CLIENT4, CLIENT6 = '198.18.20.2', '2001:db8:20::2'
LB_CLIENT4, LB_CLIENT6 = '198.18.20.1', '2001:db8:20::1'
LB_SERVERS4, LB_SERVERS6 = '198.18.1.1', '2001:db8:1::1'
SERVERS = {'a': ('198.18.1.11', '2001:db8:1::11'), 'b': ('198.18.1.12', '2001:db8:1::12')}
VIP4, VIP6 = '198.18.10.20', '2001:db8:10::20'
TOKEN = 'dsr-test-token'

STATS_REQUEST = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as reply:
    print(reply.read().decode())
"""
ADMIN_REQUEST = """
import sys, urllib.request
request = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method='POST',
                                 headers={'Authorization': 'Bearer ' + sys.argv[3]})
with urllib.request.urlopen(request, timeout=10) as reply:
    print(reply.status)
"""


def run_command(*args, check=True, env=None):
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=30, env=env)
    if check and result.returncode != 0:
        raise TestFailure(f'{" ".join(args)} exited {result.returncode}: {result.stderr.strip()}')
    return result


class Topology:
    def __init__(self, tmpdir):
        tag = f'fd{os.getpid()}'
        self.client, self.lb = f'{tag}-client', f'{tag}-lb'
        self.servers = {name: f'{tag}-{name}' for name in SERVERS}
        self.created = []
        self.tmpdir = tmpdir

    def sh(self, ns, *args, check=True, env=None):
        return run_command('ip', 'netns', 'exec', ns, *args, check=check, env=env)

    def dsr_server(self, name, action, vip):
        env = {**os.environ, 'FULCRUM_DSR_STATE': os.path.join(self.tmpdir, f'dsr-{name}')}
        return self.sh(self.servers[name], DSR_SERVER, action, vip, env=env)

    def create(self):
        for ns in [self.client, self.lb, *self.servers.values()]:
            run_command('ip', 'netns', 'add', ns)
            self.created.append(ns)
            run_command('ip', '-n', ns, 'link', 'set', 'lo', 'up')
        run_command('ip', 'link', 'add', 'c0', 'netns', self.client, 'type', 'veth', 'peer', 'name', 'l0',
                    'netns', self.lb)
        run_command('ip', '-n', self.lb, 'link', 'add', 'br0', 'type', 'bridge')
        self.address(self.client, 'c0', CLIENT4, CLIENT6)
        self.address(self.lb, 'l0', LB_CLIENT4, LB_CLIENT6)
        self.address(self.lb, 'br0', LB_SERVERS4, LB_SERVERS6)
        for i, (name, ns) in enumerate(self.servers.items()):
            run_command('ip', 'link', 'add', 's0', 'netns', ns, 'type', 'veth', 'peer', 'name', f'b{i}',
                        'netns', self.lb)
            run_command('ip', '-n', self.lb, 'link', 'set', f'b{i}', 'master', 'br0', 'up')
            self.address(ns, 's0', *SERVERS[name])
            run_command('ip', '-n', ns, 'route', 'add', 'default', 'via', LB_SERVERS4)
            run_command('ip', '-n', ns, '-6', 'route', 'add', 'default', 'via', LB_SERVERS6)
        run_command('ip', '-n', self.client, 'route', 'add', 'default', 'via', LB_CLIENT4)
        run_command('ip', '-n', self.client, '-6', 'route', 'add', 'default', 'via', LB_CLIENT6)
        self.sh(self.lb, 'sysctl', '-qw', 'net.ipv4.ip_forward=1')
        self.sh(self.lb, 'sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1')

    def address(self, ns, dev, v4, v6):
        run_command('ip', '-n', ns, 'addr', 'add', f'{v4}/24', 'dev', dev)
        run_command('ip', '-n', ns, 'addr', 'add', f'{v6}/64', 'dev', dev, 'nodad')
        run_command('ip', '-n', ns, 'link', 'set', dev, 'up')

    def delete(self):
        while self.created:
            subprocess.run(['ip', 'netns', 'delete', self.created.pop()], capture_output=True, timeout=30)


def tcp_sessions(topology, target, count):
    out = topology.sh(topology.client, sys.executable, PEER, 'client', target, str(count), str(BYTES)).stdout
    results = json.loads(out)
    for i, r in enumerate(results):
        expect_eq(r['echoed_bytes'], BYTES, f'{target} session {i}: bytes echoed')
        expect_eq(r['echoed_sha256'], r['sent_sha256'], f'{target} session {i}: SHA-256 of the echo')
    return results


def split(results):
    counts = {}
    for r in results:
        counts[r['server']] = counts.get(r['server'], 0) + 1
    return counts


def arp_settings(topology, name):
    return [topology.sh(topology.servers[name], 'sysctl', '-n', key).stdout.strip()
            for key in ('net.ipv4.conf.all.arp_ignore', 'net.ipv4.conf.all.arp_announce')]


def run(t):
    if os.geteuid() != 0:
        raise TestSkip('network namespaces and nftables need root')
    for tool in ('ip', 'nft'):
        if shutil.which(tool) is None:
            raise TestFailure(f'{tool} is not installed (tools/deps.sh)')
    topology = Topology(t.tmpdir)
    t.at_cleanup(topology.delete)
    topology.create()
    for name in SERVERS:
        expect_eq(arp_settings(topology, name), ['0', '0'], f'{name}: ARP settings before apply')
        topology.dsr_server(name, 'apply', VIP4)
        topology.dsr_server(name, 'apply', VIP6)
        expect_eq(arp_settings(topology, name), ['1', '2'], f'{name}: ARP settings after apply')
        # On the VIPs for the clients, on its own addresses for the checks.
        hosts = SERVERS[name]
        peer = subprocess.Popen(['ip', 'netns', 'exec', topology.servers[name], sys.executable, PEER, 'server',
                                 f'{VIP4}:80', f'[{VIP6}]:80', f'{hosts[0]}:80', f'[{hosts[1]}]:80'],
                                env={**os.environ, 'PEER_NAME': name},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t.register_process(peer, f'server {name}')
        expect_eq(peer.stdout.readline(), 'ready\n', f'server {name} in its namespace')

    ruleset_before = topology.sh(topology.lb, 'nft', 'list', 'ruleset').stdout
    stats = f'127.0.0.1:{free_port()}'
    token = os.path.join(t.tmpdir, 'token')
    with open(token, 'w') as f:
        f.write(TOKEN + '\n')
    os.chmod(token, 0o600)

    def service(name, vip, protocol='tcp', v6=False):
        return {'name': name, 'forwarding': 'dsr', 'protocol': protocol, 'scheduler': 'rr', 'listen': vip,
                'dsr': {'ingress': 'l0', 'egress': 'br0'},
                'health_check': {'interval': '500ms', 'timeout': '500ms'},
                'servers': [{'name': n, 'address': f'[{hosts[1]}]:80' if v6 else f'{hosts[0]}:80'}
                            for n, hosts in SERVERS.items()]}
    config = {'global': {'workers': 1}, 'stats': {'listen': stats, 'admin_token_file': token},
              'services': [service('dsr4', f'{VIP4}:80'), service('dsr6', f'[{VIP6}]:80', v6=True),
                           service('udp4', f'{VIP4}:80', 'udp')]}
    d = t.daemon(config, prefix=['ip', 'netns', 'exec', topology.lb])

    def stats_json():
        out = topology.sh(topology.lb, sys.executable, '-c', STATS_REQUEST, f'http://{stats}/stats').stdout
        return json.loads(out)

    def admin(server, body):
        out = topology.sh(topology.lb, sys.executable, '-c', ADMIN_REQUEST,
                          f'http://{stats}/api/v1/services/dsr4/servers/{server}', json.dumps(body), TOKEN).stdout
        return int(out)

    # Health checks see both servers up before traffic (a check keeps each
    # server's neighbour entry fresh too, which fwd needs).
    wait_until(lambda: all(v['state'] == 'up' for s in stats_json()['services'] for v in s['servers']), 10,
               'every server up')

    # 1.
    dsr4 = tcp_sessions(topology, f'{VIP4}:80', 4)
    expect_eq(split(dsr4), {'a': 2, 'b': 2}, 'dsr4: rr split of 4 sessions')
    expect_eq({r['seen'][0] for r in dsr4}, {CLIENT4}, 'dsr4: the servers see the client')
    dsr6 = tcp_sessions(topology, f'[{VIP6}]:80', 4)
    expect_eq(split(dsr6), {'a': 2, 'b': 2}, 'dsr6: rr split of 4 sessions')
    expect_eq({r['seen'][0] for r in dsr6}, {CLIENT6}, 'dsr6: the servers see the client')
    queries = json.loads(topology.sh(topology.client, sys.executable, PEER, 'udp-client', f'{VIP4}:80',
                                     '10').stdout)
    expect_eq([q['ok'] for q in queries], [True] * 10, 'udp4: every answer whole')
    expect_eq(split(queries), {'a': 5, 'b': 5}, 'udp4: rr split of 10 queries')

    # 2. A held flow keeps its server through a drain and a weight change.
    held = subprocess.Popen(['ip', 'netns', 'exec', topology.client, sys.executable, PEER, 'hold', f'{VIP4}:80',
                             str(BYTES)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    t.register_process(held, 'held session')
    greeting = json.loads(held.stdout.readline())
    mine = greeting['server']
    other = 'b' if mine == 'a' else 'a'
    expect_eq(admin(mine, {'state': 'drain'}), 200, f'drain {mine}')
    expect_eq(admin(other, {'weight': 5}), 200, f'weight 5 for {other}')
    after = tcp_sessions(topology, f'{VIP4}:80', 4)
    expect_eq(split(after), {other: 4}, f'new sessions after draining {mine}')
    out, err = held.communicate('go\n', timeout=30)
    expect_eq(held.returncode, 0, f'the held session: {err.strip()}')
    result = json.loads(out)
    expect_eq((result['server'], result['echoed_bytes'], result['echoed_sha256']),
              (mine, BYTES, result['sent_sha256']), 'the held session, on its server, exact')

    # 3. Counters.
    expected = {'a': split(dsr4).get('a', 0) + (1 if mine == 'a' else 0) + (4 if other == 'a' else 0),
                'b': split(dsr4).get('b', 0) + (1 if mine == 'b' else 0) + (4 if other == 'b' else 0)}

    def dsr4_totals():
        service = next(s for s in stats_json()['services'] if s['name'] == 'dsr4')
        return {v['name']: v['sessions']['total'] for v in service['servers']}, \
            {v['name']: v['bytes']['in'] for v in service['servers']}
    wait_until(lambda: dsr4_totals()[0] == expected, 10, f'dsr4 new flows per server {expected}')
    totals, bytes_in = dsr4_totals()
    for name in SERVERS:
        expect(bytes_in[name] > BYTES * expected[name],
               f'dsr4 {name}: bytes.in {bytes_in[name]} covers its {expected[name]} uploads of {BYTES}')

    # 4.
    d.stop()
    expect_eq(topology.sh(topology.lb, 'nft', 'list', 'ruleset').stdout, ruleset_before,
              'nft list ruleset after the stop')
    for name in SERVERS:
        topology.dsr_server(name, 'remove', VIP4)
        topology.dsr_server(name, 'remove', VIP6)
        expect_eq(arp_settings(topology, name), ['0', '0'], f'{name}: ARP settings after remove')
        addresses = topology.sh(topology.servers[name], 'ip', 'addr', 'show', 'dev', 'lo').stdout
        expect(VIP4 not in addresses and VIP6 not in addresses, f'{name}: VIPs off lo after remove')
