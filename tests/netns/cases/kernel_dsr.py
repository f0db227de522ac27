"""forwarding: dsr (direct server return), TCP and UDP, IPv4 and IPv6.

The namespaces of tests/netns/kernel_lab.py, deleted on exit, also on
failure: fulcrum in lb with dsr.ingress l0 (the client's side) and
dsr.egress br0 (the servers' bridge); lb is otherwise a plain router. The
servers a and b get the VIPs on lo through tools/dsr-server.sh apply; their
default routes via lb carry their answers to the client, never rewritten.

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
   dsr4's bytes.in: the uploads plus at most the headers of the packets
   counted; nothing out. A reload naming an egress interface that does not
   exist is rejected (the kernel refuses its rules in a dry run) and dsr4
   keeps forwarding: 4 more sessions split 2 and 2.
4. Flow memory: once every session so far has closed, each flow dsr4
   remembers holds its server's closing mark (0x80000000 | number) and
   expires within 10 s. A reload to maglev with `dsr.flows: 2` declares
   the memory anew (empty, size 2); 6 sessions, one after the other, all
   echo exactly although only 2 fit; the memory holds 1 or 2 flows (a
   FIN's rewrite holds a second place until the kernel's garbage
   collection, every second, frees the first);
   /stats counts the packets not remembered (> 0) and exactly one
   `dsr flow memory full` line names dsr4 and flows 2.
5. SIGTERM: `nft list ruleset` in lb is what it was before the start;
   `tools/dsr-server.sh remove` takes the VIPs off and puts arp_ignore and
   arp_announce back.
"""

import json
import os
import re
import signal
import subprocess
import sys

from harness import expect, expect_eq, free_port, wait_until, write_config

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from kernel_lab import (CLIENT4, CLIENT6, PEER, SERVERS, lab, admin, rr_sessions, split,  # noqa: E402
                        stats_json, tcp_sessions, udp_queries)

DEADLINE = 120
BYTES = 256 * 1024
DSR_SERVER = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))), 'tools', 'dsr-server.sh')
VIP4, VIP6 = '198.18.10.20', '2001:db8:10::20'
TOKEN = 'dsr-test-token'


def dsr_server(topology, t, name, action, vip):
    """tools/dsr-server.sh in server `name`'s namespace, with its own state
    directory (/run is shared by every namespace)."""
    env = {**os.environ, 'FULCRUM_DSR_STATE': os.path.join(t.tmpdir, f'dsr-{name}')}
    return topology.sh(topology.servers[name], DSR_SERVER, action, vip, env=env)


def seconds(expires):
    """nft's `1m30s`, `9s492ms` in seconds."""
    units = {'d': 86400, 'h': 3600, 'm': 60, 's': 1, 'ms': 0.001}
    return sum(int(n) * units[u] for n, u in re.findall(r'(\d+)(ms|d|h|m|s)', expires))


def arp_settings(topology, name):
    return [topology.sh(topology.servers[name], 'sysctl', '-n', key).stdout.strip()
            for key in ('net.ipv4.conf.all.arp_ignore', 'net.ipv4.conf.all.arp_announce')]


def run(t):
    topology = lab(t, 'fd')
    for name in SERVERS:
        expect_eq(arp_settings(topology, name), ['0', '0'], f'{name}: ARP settings before apply')
        dsr_server(topology, t, name, 'apply', VIP4)
        dsr_server(topology, t, name, 'apply', VIP6)
        expect_eq(arp_settings(topology, name), ['1', '2'], f'{name}: ARP settings after apply')
    # On the VIPs for the clients, on their own addresses for the checks.
    topology.start_servers(t, lambda name: [f'{VIP4}:80', f'[{VIP6}]:80', f'{SERVERS[name][0]}:80',
                                            f'[{SERVERS[name][1]}]:80'])

    ruleset_before = topology.ruleset()
    stats = f'127.0.0.1:{free_port()}'
    token = t.token_file(TOKEN + '\n')

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

    # Health checks see both servers up before traffic (a check keeps each
    # server's neighbour entry fresh too, which fwd needs).
    wait_until(lambda: all(v['state'] == 'up' for s in stats_json(topology, stats)['services'] for v in s['servers']), 10,
               'every server up')

    # 1.
    dsr4 = rr_sessions(topology, 'dsr4', f'{VIP4}:80', CLIENT4, BYTES)
    rr_sessions(topology, 'dsr6', f'[{VIP6}]:80', CLIENT6, BYTES)
    queries = udp_queries(topology, f'{VIP4}:80', 10)
    expect_eq(split(queries), {'a': 5, 'b': 5}, 'udp4: rr split of 10 queries')

    # 2. A held flow keeps its server through a drain and a weight change.
    held = subprocess.Popen(['ip', 'netns', 'exec', topology.client, sys.executable, PEER, 'hold', f'{VIP4}:80',
                             str(BYTES)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    t.register_process(held, 'held session')
    greeting = json.loads(held.stdout.readline())
    mine = greeting['server']
    other = 'b' if mine == 'a' else 'a'
    expect_eq(admin(topology, stats, 'dsr4', mine, {'state': 'drain'}, TOKEN), 200, f'drain {mine}')
    expect_eq(admin(topology, stats, 'dsr4', other, {'weight': 5}, TOKEN), 200, f'weight 5 for {other}')
    after = tcp_sessions(topology, f'{VIP4}:80', 4, BYTES)
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
        service = next(s for s in stats_json(topology, stats)['services'] if s['name'] == 'dsr4')
        return {v['name']: v['sessions']['total'] for v in service['servers']}, \
            {v['name']: v['bytes']['in'] for v in service['servers']}
    wait_until(lambda: dsr4_totals()[0] == expected, 10, f'dsr4 new flows per server {expected}')
    # bytes.in at layer 3: the uploads plus at most 80 bytes of IPv4 and
    # TCP headers per packet and an eighth for segments sent again (dsr
    # never sees the replies).
    wait_until(lambda: all(dsr4_totals()[1][name] >= BYTES * expected[name] for name in SERVERS), 10,
               'dsr4: bytes.in of the uploads counted')
    service = next(s for s in stats_json(topology, stats)['services'] if s['name'] == 'dsr4')
    for server in service['servers']:
        name, bytes_in, packets_in = server['name'], server['bytes']['in'], server['packets']['in']
        expect(BYTES * expected[name] <= bytes_in <= BYTES * expected[name] * 9 // 8 + 80 * packets_in,
               f'dsr4 {name}: bytes.in {bytes_in} = its {expected[name]} uploads of {BYTES} + headers of '
               f'{packets_in} packets')
        expect_eq((server['bytes']['out'], server['packets']['out']), (0, 0), f'dsr4 {name}: nothing out')

    expect_eq(admin(topology, stats, 'dsr4', mine, {'state': 'ready'}, TOKEN), 200, f'{mine} ready again')
    # A reload the kernel refuses (an egress interface that does not exist)
    # is rejected in a dry run, and the rules in force keep forwarding.
    broken = json.loads(json.dumps(config))
    broken['services'][0]['dsr']['egress'] = 'nosuch0'
    write_config(d.config_path, broken)
    d.send_signal(signal.SIGHUP)
    rejected = d.wait_for_log(lambda r: r.message == 'reload rejected', timeout=10)
    expect(rejected[0].fields['error'].startswith('kernel rules refused: Error: Interface does not exist'),
           f'the rejected reload\'s error: {rejected[0].fields["error"][:200]}')
    reload_state = stats_json(topology, stats)['config']
    expect_eq((reload_state['generation'], reload_state['last_reload']['ok']), (1, False),
              'generation and last reload after the refused one')
    rr_sessions(topology, 'dsr4', f'{VIP4}:80', CLIENT4, BYTES)

    # 4. Flow memory.
    def remembered():
        """dsr4's flow memory (map s1_flows): [(mark, seconds left)]."""
        text = topology.sh(topology.lb, 'nft', 'list', 'map', 'netdev', 'fulcrum', 's1_flows').stdout
        return text, [(int(mark, 16), seconds(expires))
                      for expires, mark in re.findall(r'expires (\S+) : (0x[0-9a-f]+)', text)]

    def all_closing():
        flows = remembered()[1]
        return flows and all(mark & 0x80000000 and left <= 10 for mark, left in flows)
    wait_until(all_closing, 15, 'dsr4: every remembered flow closing, expiring within 10 s')

    small = json.loads(json.dumps(config))
    small['services'][0]['scheduler'] = 'maglev'
    small['services'][0]['dsr']['flows'] = 2
    write_config(d.config_path, small)
    d.send_signal(signal.SIGHUP)
    d.wait_for_log(lambda r: r.message == 'reloaded', timeout=10)
    text, flows = remembered()
    expect('size 2' in text and flows == [], f'dsr4: the memory declared anew, empty:\n{text}')
    tcp_sessions(topology, f'{VIP4}:80', 6, BYTES)
    # A FIN's rewrite takes a second place until the kernel's garbage
    # collection (every second) frees the first: 1 or 2 flows are held.
    held_flows = len(remembered()[1])
    expect(1 <= held_flows <= 2, f'dsr4: {held_flows} flows remembered with room for 2')

    def not_remembered():
        return next(s for s in stats_json(topology, stats)['services']
                    if s['name'] == 'dsr4')['packets_not_remembered']
    wait_until(lambda: not_remembered() > 0, 10, 'dsr4: packets not remembered counted')
    full = d.wait_for_log(lambda r: r.message == 'dsr flow memory full', timeout=10)
    expect_eq([(r.fields['service'], r.fields['flows']) for r in full], [('dsr4', '2')],
              'the flow memory warning')

    # 5.
    d.stop()
    expect_eq(topology.ruleset(), ruleset_before,
              'nft list ruleset after the stop')
    for name in SERVERS:
        dsr_server(topology, t, name, 'remove', VIP4)
        dsr_server(topology, t, name, 'remove', VIP6)
        expect_eq(arp_settings(topology, name), ['0', '0'], f'{name}: ARP settings after remove')
        addresses = topology.sh(topology.servers[name], 'ip', 'addr', 'show', 'dev', 'lo').stdout
        expect(VIP4 not in addresses and VIP6 not in addresses, f'{name}: VIPs off lo after remove')
