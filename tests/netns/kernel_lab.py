"""What the kernel forwarding tests (tests/netns/cases/kernel_*.py) share:
their namespaces and the ways they drive them.

    client  198.18.20.2 / 2001:db8:20::2   (default route via lb)
      |  c0 -- l0
    lb      198.18.20.1 / 2001:db8:20::1 on l0; br0 198.18.1.1 / 2001:db8:1::1;
            IPv4 and IPv6 forwarding on
      |  (bridge br0, ports b0 b1)
    a  198.18.1.11 / 2001:db8:1::11    b  198.18.1.12 / 2001:db8:1::12
       (s0 in each; default routes via lb)

Interfaces are made inside the namespaces: nothing touches the host's own
network. delete() removes every namespace made (idempotent).
"""

import json
import os
import subprocess
import sys

from harness import TestFailure, TestSkip, expect_eq, require_program

PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'peer.py')
CLIENT4, CLIENT6 = '198.18.20.2', '2001:db8:20::2'
LB_CLIENT4, LB_CLIENT6 = '198.18.20.1', '2001:db8:20::1'
LB_SERVERS4, LB_SERVERS6 = '198.18.1.1', '2001:db8:1::1'
SERVERS = {'a': ('198.18.1.11', '2001:db8:1::11'), 'b': ('198.18.1.12', '2001:db8:1::12')}

_STATS_REQUEST = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as reply:
    print(reply.read().decode())
"""
_ADMIN_REQUEST = """
import sys, urllib.request
request = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method='POST',
                                 headers={'Authorization': 'Bearer ' + sys.argv[3]})
with urllib.request.urlopen(request, timeout=10) as reply:
    print(reply.status)
"""


def run_command(*args, check=True, env=None, input=None):
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=30, env=env, input=input)
    if check and result.returncode != 0:
        raise TestFailure(f'{" ".join(args)} exited {result.returncode}: {result.stderr.strip()}')
    return result


class Topology:
    def __init__(self, tag):
        tag = f'{tag}{os.getpid()}'
        self.client, self.lb = f'{tag}-client', f'{tag}-lb'
        self.servers = {name: f'{tag}-{name}' for name in SERVERS}
        self.created = []

    def sh(self, ns, *args, check=True, env=None, input=None):
        return run_command('ip', 'netns', 'exec', ns, *args, check=check, env=env, input=input)

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

    def start_servers(self, t, addresses_of):
        """peer.py in each server's namespace, on addresses_of(name), answering
        under its name; returns {name: Popen}."""
        peers = {}
        for name, ns in self.servers.items():
            peer = subprocess.Popen(['ip', 'netns', 'exec', ns, sys.executable, PEER, 'server',
                                     *addresses_of(name)], env={**os.environ, 'PEER_NAME': name},
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            t.register_process(peer, f'server {name}')
            expect_eq(peer.stdout.readline(), 'ready\n', f'server {name} in its namespace')
            peers[name] = peer
        return peers

    def ruleset(self):
        return self.sh(self.lb, 'nft', 'list', 'ruleset').stdout

    def delete(self):
        while self.created:
            subprocess.run(['ip', 'netns', 'delete', self.created.pop()], capture_output=True, timeout=30)


def lab(t, tag, programs=()):
    """The topology of a kernel test, created, and deleted when the test
    ends. Skipped unless root; `programs` are (program, Debian package)
    pairs the test needs beside ip and nft (require_program)."""
    if os.geteuid() != 0:
        raise TestSkip('network namespaces and nftables need root')
    for program, package in (('ip', 'iproute2'), ('nft', 'nftables'), *programs):
        require_program(program, package)
    topology = Topology(tag)
    t.at_cleanup(topology.delete)
    topology.create()
    return topology


def tcp_sessions(topology, target, count, size, source=None):
    """`count` sessions from the client (from `source` if given), each
    echoing `size` random bytes, checked by SHA-256; their results (peer.py
    client)."""
    env = {**os.environ, 'PEER_SOURCE': source} if source else None
    out = topology.sh(topology.client, sys.executable, PEER, 'client', target, str(count), str(size),
                      env=env).stdout
    results = json.loads(out)
    for i, r in enumerate(results):
        expect_eq(r['echoed_bytes'], size, f'{target} session {i}: bytes echoed')
        expect_eq(r['echoed_sha256'], r['sent_sha256'], f'{target} session {i}: SHA-256 of the echo')
    return results


def rr_sessions(topology, service, target, seen, size):
    """4 sessions through an rr service: each echoes exactly, 2 go to each
    server, and every server sees `seen` as the client's address."""
    results = tcp_sessions(topology, target, 4, size)
    expect_eq(split(results), {name: 2 for name in SERVERS}, f'{service}: rr split of 4 sessions')
    expect_eq({r['seen'][0] for r in results}, {seen}, f'{service}: the address the servers see')
    return results


def udp_queries(topology, target, count):
    results = json.loads(topology.sh(topology.client, sys.executable, PEER, 'udp-client', target,
                                     str(count)).stdout)
    expect_eq([q['ok'] for q in results], [True] * count, f'{target}: every answer whole')
    return results


def split(results):
    """Sessions (or queries) per server name."""
    counts = {}
    for r in results:
        counts[r['server']] = counts.get(r['server'], 0) + 1
    return counts


def stats_json(topology, stats):
    """GET /stats from inside lb's namespace, where the stats port is."""
    return json.loads(topology.sh(topology.lb, sys.executable, '-c', _STATS_REQUEST,
                                  f'http://{stats}/stats').stdout)


def admin(topology, stats, service, server, body, token):
    """POST to the admin API from inside lb's namespace; the status."""
    return int(topology.sh(topology.lb, sys.executable, '-c', _ADMIN_REQUEST,
                           f'http://{stats}/api/v1/services/{service}/servers/{server}', json.dumps(body),
                           token).stdout)
