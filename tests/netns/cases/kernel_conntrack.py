"""Active flows counted from a large conntrack table, and the warning when
the table is nearly full.

Only lb's namespace of tests/netns/kernel_lab.py is used (the others are
made and deleted with it). In lb: a `forwarding: nat` UDP service, rr,
VIP 198.18.10.10:53 (routed through lo with source 198.18.1.1, so that
lb's own sockets are its clients), servers a and b on lb's own address
198.18.1.1, ports 5353 and 5354, where a receiver holds each port (no
port-unreachable answers).

1. 20,000 datagrams to the VIP, each from a source port of its own: 20,000
   UDP flows, 10,000 per server (rr), each a conntrack entry marked with
   its server's flow mark for UDP's 30 s. /stats says exactly
   {a: 10000, b: 10000} active: the dump arrives in many netlink reads,
   all of them counted.
2. Datagrams from one socket to 8 more addresses of lb (port by port)
   until lb's conntrack table holds 90 % of nf_conntrack_max (entries
   that are not fulcrum's: every entry counts towards the limit):
   fulcrum logs `conntrack table nearly full`, once, with those numbers.
3. `conntrack -F` in lb: fulcrum logs `conntrack table has room again`,
   and the active flows go back to {a: 0, b: 0}.
The count per netns is compared against the host-wide maximum; nothing of
this touches the host's own table.
"""

import os
import subprocess
import sys

from harness import expect, expect_eq, free_port, wait_until

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from kernel_lab import LB_SERVERS4, lab, run_command, stats_json  # noqa: E402

DEADLINE = 100
VIP = '198.18.10.10'
FLOWS = 20000
FILL_ADDRESSES = [f'198.18.99.{i}' for i in range(1, 9)]

# Run in lb: receivers on both servers' ports, then one datagram per flow,
# each from a source port of its own; prints 'sent' once done.
SEND_FLOWS = """
import socket, sys
host, vip, flows = sys.argv[1], sys.argv[2], int(sys.argv[3])
receivers = []
for port in (5353, 5354):
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.bind((host, port))
    receivers.append(r)
for i in range(flows):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, 20000 + i))
    s.sendto(b'x', (vip, 53))
    s.close()
print('sent', flush=True)
sys.stdin.read()  # the receivers stay until the test closes stdin
"""

# Run in lb: datagrams to FILL_ADDRESSES, port by port, until the table
# holds `target` entries; prints how many it holds.
FILL = """
import socket, sys
target, addresses = int(sys.argv[1]), sys.argv[2:]
def count():
    with open('/proc/sys/net/netfilter/nf_conntrack_count') as f:
        return int(f.read())
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
port = 1
while count() < target and port < 65536:
    for address in addresses:
        try:
            s.sendto(b'x', (address, port))
        except (BlockingIOError, ConnectionRefusedError):
            pass
    port += 1
print(count())
"""


def active(topology, stats):
    found = next(s for s in stats_json(topology, stats)['services'] if s['name'] == 'flows')
    return {v['name']: v['sessions']['active'] for v in found['servers']}


def run(t):
    topology = lab(t, 'kt', [('conntrack', 'conntrack')])
    lb = topology.lb
    run_command('ip', '-n', lb, 'route', 'add', f'{VIP}/32', 'dev', 'lo', 'src', LB_SERVERS4)
    for address in FILL_ADDRESSES:
        run_command('ip', '-n', lb, 'addr', 'add', f'{address}/32', 'dev', 'lo')
    stats = f'127.0.0.1:{free_port()}'
    config = {'global': {'workers': 1}, 'stats': {'listen': stats},
              'services': [{'name': 'flows', 'forwarding': 'nat', 'protocol': 'udp', 'scheduler': 'rr',
                            'listen': f'{VIP}:53',
                            'servers': [{'name': 'a', 'address': f'{LB_SERVERS4}:5353'},
                                        {'name': 'b', 'address': f'{LB_SERVERS4}:5354'}]}]}
    d = t.daemon(config, prefix=['ip', 'netns', 'exec', lb])

    # 1. 20,000 flows, counted exactly.
    sender = subprocess.Popen(['ip', 'netns', 'exec', lb, sys.executable, '-c', SEND_FLOWS, LB_SERVERS4, VIP,
                               str(FLOWS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    t.register_process(sender, 'flow sender')
    expect_eq(sender.stdout.readline(), 'sent\n', f'{FLOWS} datagrams sent')
    seen = []
    wait_until(lambda: seen.append(active(topology, stats)) or seen[-1] == {'a': FLOWS // 2, 'b': FLOWS // 2},
               15, lambda: f'{FLOWS} active flows in /stats, half per server (last seen {seen[-1]})')

    # 2. The table at 90 % of its limit.
    limit = int(topology.sh(lb, 'cat', '/proc/sys/net/netfilter/nf_conntrack_max').stdout)
    target = limit * 9 // 10 + 100
    expect(target <= 65535 * len(FILL_ADDRESSES), f'nf_conntrack_max {limit}: reachable with this test')
    held = int(topology.sh(lb, sys.executable, '-c', FILL, str(target), *FILL_ADDRESSES).stdout)
    expect(held >= target, f'the table holds {held} entries, at least {target}')
    warned = d.wait_for_log(lambda r: r.message == 'conntrack table nearly full', timeout=10)
    entries, limit_logged = int(warned[0].fields['entries']), int(warned[0].fields['max'])
    expect_eq(limit_logged, limit, 'the warning names nf_conntrack_max')
    expect(entries * 10 >= limit * 9, f'the warning came at {entries} entries: 90 % of {limit} or more')

    # 3. Emptied: room again, and no active flow.
    topology.sh(lb, 'conntrack', '-F')
    d.wait_for_log(lambda r: r.message == 'conntrack table has room again', timeout=10)
    seen.clear()
    wait_until(lambda: seen.append(active(topology, stats)) or seen[-1] == {'a': 0, 'b': 0}, 15,
               lambda: f'no active flow once the table is flushed (last seen {seen[-1]})')
    expect_eq(len(d.find_logs('conntrack table nearly full')), 1, 'the warning is logged once')
    sender.stdin.close()
    sender.wait(timeout=10)
    d.stop()
