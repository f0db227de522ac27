"""address_mode: transparent across real routing, IPv4 and IPv6.

Three network namespaces made by the test, joined by veth pairs:

    client 198.18.1.2 / 2001:db8:1::2
      |
    fulcrum 198.18.1.1 / 2001:db8:1::1  and  198.18.2.1 / 2001:db8:2::1
      |
    server 198.18.2.2 / 2001:db8:2::2   (default route via fulcrum)

In fulcrum's namespace tools/transparent-routing.sh applies the policy
routing of docs/transparent.md. Services `v4` and `v6` are transparent: the
server must see the client's own address (198.18.1.2, 2001:db8:1::2);
service `snat` is the default mode, whose server sees fulcrum's 198.18.2.1,
so the test can tell the modes apart, and `snat6` has an IPv6 snat source,
2001:db8:2::10 (a second address of fulcrum's server side). Every session's bytes are echoed and
verified by SHA-256 both ways, and the access log names the real client.
Then `transparent-routing.sh remove` must leave no rule behind, and the
namespaces are deleted, also when the test fails. Root only.
"""

import json
import os
import shutil
import subprocess
import sys

from harness import TestFailure, TestSkip, expect, expect_eq

DEADLINE = 120
SESSIONS = 4
BYTES = 1 << 20
HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(os.path.dirname(HERE), 'peer.py')
ROUTING = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(HERE))), 'tools', 'transparent-routing.sh')

CLIENT4, CLIENT6 = '198.18.1.2', '2001:db8:1::2'
FULCRUM_CLIENT_SIDE4, FULCRUM_CLIENT_SIDE6 = '198.18.1.1', '2001:db8:1::1'
FULCRUM_SERVER_SIDE4, FULCRUM_SERVER_SIDE6 = '198.18.2.1', '2001:db8:2::1'
SERVER4, SERVER6 = '198.18.2.2', '2001:db8:2::2'
SNAT_SOURCE6 = '2001:db8:2::10'


def run_command(*args):
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise TestFailure(f'{" ".join(args)} exited {result.returncode}: {result.stderr.strip()}')
    return result.stdout


def namespace_names():
    return run_command('ip', 'netns', 'list')


class Topology:
    """The three namespaces; delete() removes them (idempotent)."""

    def __init__(self):
        tag = f'fulcrum-{os.getpid()}'
        self.client, self.fulcrum, self.server = f'{tag}-client', f'{tag}-lb', f'{tag}-server'
        self.created = []

    def names(self):
        return [self.client, self.fulcrum, self.server]

    def create(self):
        for ns in self.names():
            run_command('ip', 'netns', 'add', ns)
            self.created.append(ns)
            run_command('ip', '-n', ns, 'link', 'set', 'lo', 'up')
        # Interfaces are created inside the namespaces: nothing touches the
        # host's own network.
        run_command('ip', 'link', 'add', 'c0', 'netns', self.client, 'type', 'veth',
                    'peer', 'name', 'l0', 'netns', self.fulcrum)
        run_command('ip', 'link', 'add', 's0', 'netns', self.server, 'type', 'veth',
                    'peer', 'name', 'l1', 'netns', self.fulcrum)
        for ns, dev, v4, v6 in ((self.client, 'c0', CLIENT4, CLIENT6),
                                (self.fulcrum, 'l0', FULCRUM_CLIENT_SIDE4, FULCRUM_CLIENT_SIDE6),
                                (self.fulcrum, 'l1', FULCRUM_SERVER_SIDE4, FULCRUM_SERVER_SIDE6),
                                (self.server, 's0', SERVER4, SERVER6)):
            run_command('ip', '-n', ns, 'addr', 'add', f'{v4}/24', 'dev', dev)
            run_command('ip', '-n', ns, 'addr', 'add', f'{v6}/64', 'dev', dev, 'nodad')
            run_command('ip', '-n', ns, 'link', 'set', dev, 'up')
        run_command('ip', '-n', self.fulcrum, 'addr', 'add', f'{SNAT_SOURCE6}/64', 'dev', 'l1', 'nodad')
        for ns, gateway4, gateway6 in ((self.client, FULCRUM_CLIENT_SIDE4, FULCRUM_CLIENT_SIDE6),
                                       (self.server, FULCRUM_SERVER_SIDE4, FULCRUM_SERVER_SIDE6)):
            run_command('ip', '-n', ns, 'route', 'add', 'default', 'via', gateway4)
            run_command('ip', '-n', ns, '-6', 'route', 'add', 'default', 'via', gateway6)

    def run_in(self, ns, *args):
        return run_command('ip', 'netns', 'exec', ns, *args)

    def delete(self):
        while self.created:
            subprocess.run(['ip', 'netns', 'delete', self.created.pop()], capture_output=True, timeout=30)


def sessions_through(topology, target):
    out = topology.run_in(topology.client, sys.executable, PEER, 'client', target, str(SESSIONS), str(BYTES))
    results = json.loads(out)
    for i, r in enumerate(results):
        expect_eq(r['echoed_bytes'], BYTES, f'{target} session {i}: bytes echoed')
        expect_eq(r['echoed_sha256'], r['sent_sha256'], f'{target} session {i}: SHA-256 of the echo')
    return results


def run(t):
    if os.geteuid() != 0:
        raise TestSkip('network namespaces need root')
    for tool in ('ip', 'nft'):
        if shutil.which(tool) is None:
            raise TestFailure(f'{tool} is not installed (packages iproute2, nftables: tools/deps.sh)')
    topology = Topology()
    # Registered before anything exists: runs after every process is killed.
    t.at_cleanup(topology.delete)
    topology.create()
    topology.run_in(topology.fulcrum, ROUTING, 'apply')

    server = subprocess.Popen(['ip', 'netns', 'exec', topology.server, sys.executable, PEER, 'server',
                               f'{SERVER4}:9000', f'[{SERVER6}]:9000'],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t.register_process(server, 'netns server')
    expect_eq(server.stdout.readline(), 'ready\n', 'the server in its namespace')

    listen4, listen6 = f'{FULCRUM_CLIENT_SIDE4}:8080', f'[{FULCRUM_CLIENT_SIDE6}]:8080'
    listen_snat, listen_snat6 = f'{FULCRUM_CLIENT_SIDE4}:8081', f'[{FULCRUM_CLIENT_SIDE6}]:8081'
    d = t.daemon({
        'global': {'workers': 2},
        'services': [
            {'name': 'v4', 'listen': listen4, 'address_mode': 'transparent',
             'servers': [{'name': 's4', 'address': f'{SERVER4}:9000'}]},
            {'name': 'v6', 'listen': listen6, 'address_mode': 'transparent',
             'servers': [{'name': 's6', 'address': f'[{SERVER6}]:9000'}]},
            {'name': 'snat', 'listen': listen_snat,
             'servers': [{'name': 's4', 'address': f'{SERVER4}:9000'}]},
            {'name': 'snat6', 'listen': listen_snat6, 'source': SNAT_SOURCE6,
             'servers': [{'name': 's6', 'address': f'[{SERVER6}]:9000'}]},
        ],
    }, prefix=['ip', 'netns', 'exec', topology.fulcrum])

    clients = {}
    for service, target, seen_expected in (('v4', listen4, CLIENT4), ('v6', listen6, CLIENT6),
                                           ('snat', listen_snat, FULCRUM_SERVER_SIDE4),
                                           ('snat6', listen_snat6, SNAT_SOURCE6)):
        for i, r in enumerate(sessions_through(topology, target)):
            expect_eq(r['seen'][0], seen_expected, f'{service} session {i}: address the server sees')
            host, port = r['local']
            clients[f'[{host}]:{port}' if ':' in host else f'{host}:{port}'] = service
    expect_eq(sorted(set(clients.values())), ['snat', 'snat6', 'v4', 'v6'], 'services used')

    d.wait_access_count(4 * SESSIONS)
    d.stop()
    lines = d.access_log_lines()
    expect_eq({line['client']: line['service'] for line in lines}, clients, 'clients in the access log')
    expect_eq(sorted({line['end'] for line in lines}), ['client_close'], 'session ends')

    # `remove` takes back exactly what `apply` added.
    topology.run_in(topology.fulcrum, ROUTING, 'remove')
    expect_eq(topology.run_in(topology.fulcrum, 'nft', 'list', 'tables'), '', 'nftables tables after remove')
    for family in ('-4', '-6'):
        rules = topology.run_in(topology.fulcrum, 'ip', family, 'rule', 'show')
        expect('fwmark' not in rules, f'no fwmark rule after remove ({family}): {rules}')
        expect_eq(topology.run_in(topology.fulcrum, 'ip', family, 'route', 'show', 'table', '100'), '',
                  f'table 100 after remove ({family})')

    server.kill()
    server.wait(10)
    topology.delete()
    listed = namespace_names()
    for ns in topology.names():
        expect(ns not in listed, f'namespace {ns} deleted')
