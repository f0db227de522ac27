"""Kernel forwarding (nat, fullnat, dsr; TCP and UDP) driven by real,
well-known peers instead of tests/netns/peer.py: curl against Python's
http.server, iperf3, and dnsmasq asked by a hand-built DNS query.

The namespaces of tests/netns/kernel_lab.py (client, lb, servers a and b
on lb's bridge br0, default routes via lb), plus lb2, a second balancer:

    client c1 198.18.21.2 -- l0 198.18.21.1 lb2
    lb2 m0 198.18.1.2 -- b2, a port of lb's bridge br0

The client also holds 198.18.20.10-21 on c0. All namespaces are deleted at
the end, also on failure, and every process started is killed by its PID.

Each server runs, under its own name:
  - `python3 -m http.server --cgi` on [::]:8080 (every address, the dsr VIPs
    too) over a directory with name.txt (the server's name), big.bin (2 MiB
    of random bytes, different on each server) and cgi-bin/sha256 (a POST
    body's SHA-256, after the server's name); its log names the client
    address it sees for each request;
  - dnsmasq on its own address and the dsr VIP, port 53, answering only
    who.test: 198.18.99.1 from a, 198.18.99.2 from b (no resolv.conf, no
    hosts file, no upstream);
  - `iperf3 -s` on its own address, port 5201.
The dsr VIPs 198.18.10.20 and 2001:db8:10::20 are put on the servers' lo by
tools/dsr-server.sh apply before the peers start.

1. curl, through nat4 and nat6 (VIPs 198.18.10.10, 2001:db8:10::10), full4
   (fullnat) and dsr4, dsr6, each rr: 4 GETs of name.txt, 2 per server; 2
   downloads of big.bin whose SHA-256 is that of a's file once and b's once;
   2 POSTs of the same 1 MiB random body, answered once by each server with
   its SHA-256. Each server's log holds exactly 4 requests of each service,
   all from the client's own address (nat, dsr) or from lb's br0 address
   (fullnat).
2. iperf3 through nat (maglev, TCP and UDP services on VIP:5201, so that the
   control connection and the data flows meet on one server): TCP 2 s, TCP
   --bidir 2 s, UDP at 10 Mbit/s for 2 s. Bytes received in every
   direction (nothing is asserted on speed); every UDP datagram sent was
   received whole or counted lost by the receiver, at most 5 % lost (a busy
   machine drops a few at a socket), none out of order.
3. DNS over UDP through dns4 (nat rr) and dnsdsr (dsr rr) on VIP:53: 4
   queries from 4 open sockets (4 flows) get 2 answers of each server.
   lb's /stats counts exactly the new flows of steps 1 and 3 per server,
   and dsr4's and dsr6's bytes.in for each server exceed one upload.
4. Maglev from two balancers: fulcrum in lb and in lb2 with the same two
   services on VIP 198.18.10.30 (mag_http: TCP, hash of the client address;
   mag_dns: UDP, hash of address and port). First through lb, then through
   lb2 (the client's route to the VIP and the servers' default routes moved
   to lb2: nat replies must pass the balancer that rewrote them): 12 client
   addresses (curl --interface) and 12 source ports (DNS) each reach the
   same server through both balancers, both servers are picked, and each
   balancer's /stats counts exactly its 12 + 12 flows.
5. SIGTERM to both fulcrums: exit 0, each namespace's ruleset as before;
   the peers are stopped, the namespaces deleted and none is left.
"""

import collections
import hashlib
import json
import os
import subprocess
import sys

from harness import MiB, TestFailure, expect, expect_eq, free_port, wait_until

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from kernel_lab import (CLIENT4, CLIENT6, LB_SERVERS4, SERVERS, lab, run_command)  # noqa: E402

DEADLINE = 150
DSR_SERVER = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))), 'tools', 'dsr-server.sh')
VIP4, VIP6 = '198.18.10.10', '2001:db8:10::10'
DSR4, DSR6 = '198.18.10.20', '2001:db8:10::20'
MAGLEV_VIP = '198.18.10.30'
HTTP_PORT, IPERF_PORT = 8080, 5201
BIG = 2 * MiB
UPLOAD = MiB
DNS_NAME = 'who.test'
DNS_ANSWERS = {'a': '198.18.99.1', 'b': '198.18.99.2'}  # what each server's dnsmasq says who.test is
# lb2: its link to the client, and its address on the servers' bridge.
LB2_CLIENT4, CLIENT_LB2_4, LB2_SERVERS4 = '198.18.21.1', '198.18.21.2', '198.18.1.2'
MAGLEV_CLIENTS = [f'198.18.20.{i}' for i in range(10, 22)]  # extra addresses of the client
MAGLEV_PORTS = list(range(41000, 41012))  # source ports of the DNS queries hashed with their address
CGI_SHA256 = """#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
printf '%s ' {name}
head -c "$CONTENT_LENGTH" | sha256sum | cut -d ' ' -f 1
"""
# A DNS client (RFC 1035, standard library only), run in the client's
# namespace: argv host port name source ports; ports is a comma-separated
# list, one socket (one flow) each, 0 for any port. Every socket stays open
# until all have been answered. Prints a JSON list: {local, address}.
_DNS_QUERIES = r"""
import json, os, socket, struct, sys

def question(name):
    labels = b''.join(bytes([len(part)]) + part.encode() for part in name.split('.'))
    return labels + b'\0' + struct.pack('!HH', 1, 1)  # type A, class IN

def ask(sock, name):
    ident = int.from_bytes(os.urandom(2), 'big')
    q = question(name)
    sock.send(struct.pack('!6H', ident, 0x0100, 1, 0, 0, 0) + q)  # recursion desired, 1 question
    reply = sock.recv(512)
    rid, flags, qdcount, ancount, _, _ = struct.unpack('!6H', reply[:12])
    if (rid, flags & 0x800f, qdcount, ancount) != (ident, 0x8000, 1, 1) or reply[12:12 + len(q)] != q:
        raise SystemExit(f'not one answer to query {ident}: {reply.hex()}')
    at = 12 + len(q)
    if reply[at] & 0xc0 == 0xc0:  # the owner name as a pointer
        at += 2
    else:
        while reply[at]:
            at += 1 + reply[at]
        at += 1
    rtype, rclass, _, length = struct.unpack('!HHIH', reply[at:at + 10])
    if (rtype, rclass, length) != (1, 1, 4):
        raise SystemExit(f'not an A record: {reply.hex()}')
    return socket.inet_ntoa(reply[at + 10:at + 14])

host, port, name, source = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
sockets = []
for local_port in (int(p) for p in sys.argv[5].split(',')):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    sock.bind((source, local_port))
    sock.connect((host, port))
    sockets.append(sock)
print(json.dumps([{'local': list(s.getsockname()), 'address': ask(s, name)} for s in sockets]))
"""


def sha256_file(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def make_sites(t):
    """Each server's web root: name.txt, big.bin (its own random bytes) and
    cgi-bin/sha256; returns {name: (root, SHA-256 of big.bin)}. The CGI
    script runs as nobody (http.server drops root), so the test's directory
    is made traversable."""
    os.chmod(t.tmpdir, 0o711)
    sites = {}
    for name in SERVERS:
        root = t.path(f'www-{name}')
        os.makedirs(os.path.join(root, 'cgi-bin'))
        with open(os.path.join(root, 'name.txt'), 'w') as f:
            f.write(name)
        with open(os.path.join(root, 'big.bin'), 'wb') as f:
            f.write(os.urandom(BIG))
        script = os.path.join(root, 'cgi-bin', 'sha256')
        with open(script, 'w') as f:
            f.write(CGI_SHA256.format(name=name))
        os.chmod(script, 0o755)
        os.chmod(root, 0o755)
        sites[name] = (root, sha256_file(os.path.join(root, 'big.bin')))
    return sites


def start(t, ns, label, command, cwd=None):
    """`command` in namespace `ns`, its output to a file of the test's
    directory (read by the checks; kept on failure), killed by its PID at
    cleanup. Returns (Popen, path of its output)."""
    path = t.path(f'{label}.log')
    with open(path, 'wb') as out:
        proc = subprocess.Popen(['ip', 'netns', 'exec', ns, *command], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, cwd=cwd)
    t.register_process(proc, label)
    return proc, path


def wait_listening(topology, ns, protocol, port, what):
    """Until a socket of `ns` listens on (or, UDP, is bound to) `port`."""
    flag = '-ltn' if protocol == 'tcp' else '-lun'
    wait_until(lambda: topology.sh(ns, 'ss', '-H', flag, f'sport = :{port}').stdout.strip(), 10, what,
               interval=0.05)


def dsr_apply(topology, t, name):
    """tools/dsr-server.sh apply for both dsr VIPs on server `name`, with
    its own state directory (/run is shared by every namespace)."""
    env = {**os.environ, 'FULCRUM_DSR_STATE': os.path.join(t.tmpdir, f'dsr-{name}')}
    for vip in (DSR4, DSR6):
        topology.sh(topology.servers[name], DSR_SERVER, 'apply', vip, env=env)


def start_peers(topology, t, sites):
    """http.server, dnsmasq and iperf3 -s in each server's namespace, each
    listening; returns ({name: path of http.server's log}, [every Popen])."""
    logs, procs = {}, []
    for name, ns in topology.servers.items():
        address4 = SERVERS[name][0]
        root = sites[name][0]
        proc, logs[name] = start(t, ns, f'http-{name}',
                                 [sys.executable, '-u', '-m', 'http.server', '--cgi', '--bind', '::',
                                  '--directory', root, str(HTTP_PORT)], cwd=root)
        procs.append(proc)
        procs.append(start(t, ns, f'dnsmasq-{name}', [
            'dnsmasq', '--no-daemon', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--no-poll',
            '--port=53', '--bind-interfaces', f'--listen-address={address4},{DSR4}', '--local=/test/',
            f'--address=/{DNS_NAME}/{DNS_ANSWERS[name]}', '--log-facility=-'])[0])
        procs.append(start(t, ns, f'iperf3-{name}', ['iperf3', '-s', '-B', address4, '-p', str(IPERF_PORT),
                                                      '--forceflush'])[0])
        wait_listening(topology, ns, 'tcp', HTTP_PORT, f'http.server in {name}')
        wait_listening(topology, ns, 'udp', 53, f'dnsmasq in {name}')
        wait_listening(topology, ns, 'tcp', IPERF_PORT, f'iperf3 -s in {name}')
    return logs, procs


def add_second_balancer(topology):
    """Namespace lb2: linked to the client (c1 -- l0) and to lb's bridge
    (m0 -- b2), forwarding on, its route back to the client's addresses.
    Deleted with the topology."""
    lb2 = topology.lb + '2'
    run_command('ip', 'netns', 'add', lb2)
    topology.created.append(lb2)
    run_command('ip', '-n', lb2, 'link', 'set', 'lo', 'up')
    run_command('ip', 'link', 'add', 'c1', 'netns', topology.client, 'type', 'veth', 'peer', 'name', 'l0',
                'netns', lb2)
    run_command('ip', 'link', 'add', 'm0', 'netns', lb2, 'type', 'veth', 'peer', 'name', 'b2',
                'netns', topology.lb)
    run_command('ip', '-n', topology.lb, 'link', 'set', 'b2', 'master', 'br0', 'up')
    for ns, dev, address in ((topology.client, 'c1', CLIENT_LB2_4), (lb2, 'l0', LB2_CLIENT4),
                             (lb2, 'm0', LB2_SERVERS4)):
        run_command('ip', '-n', ns, 'addr', 'add', f'{address}/24', 'dev', dev)
        run_command('ip', '-n', ns, 'link', 'set', dev, 'up')
    run_command('ip', '-n', lb2, 'route', 'add', '198.18.20.0/24', 'via', CLIENT_LB2_4)
    topology.sh(lb2, 'sysctl', '-qw', 'net.ipv4.ip_forward=1')
    return lb2


def servers(port, v6=False):
    return [{'name': name, 'address': f'[{hosts[1]}]:{port}' if v6 else f'{hosts[0]}:{port}'}
            for name, hosts in SERVERS.items()]


def maglev_services():
    """The two services both balancers run, identically."""
    return [
        {'name': 'mag_http', 'forwarding': 'nat', 'scheduler': 'maglev', 'listen': f'{MAGLEV_VIP}:80',
         'servers': servers(HTTP_PORT)},
        {'name': 'mag_dns', 'forwarding': 'nat', 'protocol': 'udp', 'scheduler': 'maglev',
         'hash_key': 'source_ip_port', 'listen': f'{MAGLEV_VIP}:53', 'servers': servers(53)},
    ]


def lb_services():
    dsr = {'forwarding': 'dsr', 'scheduler': 'rr', 'dsr': {'ingress': 'l0', 'egress': 'br0'},
           'health_check': {'interval': '500ms', 'timeout': '500ms'}}
    return [
        {'name': 'nat4', 'forwarding': 'nat', 'scheduler': 'rr', 'listen': f'{VIP4}:80',
         'servers': servers(HTTP_PORT)},
        {'name': 'nat6', 'forwarding': 'nat', 'scheduler': 'rr', 'listen': f'[{VIP6}]:80',
         'servers': servers(HTTP_PORT, v6=True)},
        {'name': 'full4', 'forwarding': 'fullnat', 'scheduler': 'rr', 'listen': f'{VIP4}:81',
         'servers': servers(HTTP_PORT)},
        {'name': 'dsr4', **dsr, 'listen': f'{DSR4}:{HTTP_PORT}', 'servers': servers(HTTP_PORT)},
        {'name': 'dsr6', **dsr, 'listen': f'[{DSR6}]:{HTTP_PORT}', 'servers': servers(HTTP_PORT, v6=True)},
        {'name': 'iperf_tcp', 'forwarding': 'nat', 'scheduler': 'maglev', 'listen': f'{VIP4}:{IPERF_PORT}',
         'servers': servers(IPERF_PORT)},
        {'name': 'iperf_udp', 'forwarding': 'nat', 'protocol': 'udp', 'scheduler': 'maglev',
         'listen': f'{VIP4}:{IPERF_PORT}', 'servers': servers(IPERF_PORT)},
        {'name': 'dns4', 'forwarding': 'nat', 'protocol': 'udp', 'scheduler': 'rr', 'listen': f'{VIP4}:53',
         'servers': servers(53)},
        {'name': 'dnsdsr', **dsr, 'protocol': 'udp', 'listen': f'{DSR4}:53', 'servers': servers(53)},
        *maglev_services(),
    ]


def curl(topology, *args):
    """curl in the client's namespace: no .curlrc (-q), no proxy, no URL
    globbing (IPv6 brackets), bounded in time; its stdout."""
    return topology.sh(topology.client, 'curl', '-q', '-sS', '-g', '--fail', '--noproxy', '*',
                       '--connect-timeout', '5', '--max-time', '20', *args).stdout


def stats_json(topology, ns, stats):
    return json.loads(curl_in(topology, ns, f'http://{stats}/stats'))


def curl_in(topology, ns, url):
    return topology.sh(ns, 'curl', '-q', '-sS', '--fail', '--noproxy', '*', '--max-time', '10', url).stdout


def seen_by_servers(logs, service):
    """{server: [client address of each request tagged ?via=SERVICE]} from
    http.server's logs (IPv4 clients of its dual-stack socket appear as
    ::ffff:IPv4)."""
    seen = {}
    for name, path in logs.items():
        with open(path) as f:
            seen[name] = [line.split(' ', 1)[0].removeprefix('::ffff:') for line in f
                          if f'?via={service} ' in line]
    return seen


def http_through(topology, t, logs, sites, service, base, seen):
    """Step 1 for one rr service at base URL `base`: names, downloads,
    uploads, and what the servers saw."""
    tag = f'?via={service}'
    names = [t.path(f'{service}-name{i}') for i in range(4)]
    bigs = [t.path(f'{service}-big{i}') for i in range(2)]
    args = []
    for path in names:
        args += [f'{base}/name.txt{tag}', '-o', path]
    for path in bigs:
        args += [f'{base}/big.bin{tag}', '-o', path]
    curl(topology, *args)
    answered = []
    for path in names:
        with open(path) as f:
            answered.append(f.read())
    expect_eq(collections.Counter(answered), {'a': 2, 'b': 2}, f'{service}: rr split of 4 GETs of name.txt')
    expect_eq(sorted(sha256_file(path) for path in bigs), sorted(site[1] for site in sites.values()),
              f'{service}: SHA-256 of 2 downloads of big.bin (one from each server, rr)')
    body = t.path('upload.bin')
    echoed = curl(topology, '--data-binary', f'@{body}', '-H', 'Expect:', f'{base}/cgi-bin/sha256{tag}',
                  f'{base}/cgi-bin/sha256{tag}').split('\n')
    expect_eq(sorted(echoed), ['', f'a {sha256_file(body)}', f'b {sha256_file(body)}'],
              f'{service}: 2 POSTs of {UPLOAD} bytes, their SHA-256 from each server once')
    expect_eq(seen_by_servers(logs, service), {name: [seen] * 4 for name in SERVERS},
              f'{service}: requests and the client address each server logged')


def iperf3(topology, t, label, *args):
    """iperf3 -c through the nat VIP; the `end` of its JSON report (kept in
    the test's directory as iperf3-LABEL.json)."""
    out = topology.sh(topology.client, 'iperf3', '-c', VIP4, '-p', str(IPERF_PORT), '-t', '2', '-J',
                      '--connect-timeout', '5000', *args).stdout
    with open(t.path(f'iperf3-{label}.json'), 'w') as f:
        f.write(out)
    report = json.loads(out)
    expect('error' not in report, f'iperf3 {" ".join(args)}: {report.get("error")}')
    return report['end']


def iperf3_checks(topology, t):
    """Step 2."""
    tcp = iperf3(topology, t, 'tcp')
    expect(tcp['sum_received']['bytes'] > 0, f'iperf3 TCP: bytes received {tcp["sum_received"]["bytes"]}')
    bidir = iperf3(topology, t, 'bidir', '--bidir')
    for key in ('sum_received', 'sum_received_bidir_reverse'):
        expect(bidir[key]['bytes'] > 0, f'iperf3 TCP --bidir: {key} bytes {bidir[key]["bytes"]}')
    udp = iperf3(topology, t, 'udp', '-u', '-b', '10M')
    sent, received = udp['sum_sent'], udp['sum_received']
    expect(sent['packets'] > 0, f'iperf3 UDP: datagrams sent {sent["packets"]}')
    # A busy machine may drop a few datagrams at a socket (CI runs several
    # tests at once): every datagram is accounted for, received whole or
    # counted lost, and few are lost.
    size = sent['bytes'] // sent['packets']
    lost = received['lost_packets']
    expect_eq((received['packets'], received['bytes'], sent['bytes'] % sent['packets']),
              (sent['packets'], (sent['packets'] - lost) * size, 0),
              f'iperf3 UDP: datagrams of {size} bytes, each received whole or lost ({lost} lost)')
    expect(lost * 20 <= sent['packets'], f'iperf3 UDP: {lost} of {sent["packets"]} datagrams lost (at most 5 %)')
    expect_eq([stream['udp']['out_of_order'] for stream in udp['streams']], [0],
              'iperf3 UDP: datagrams out of order')


def dns_queries(topology, host, ports, source='0.0.0.0'):
    """One query for who.test from the client to host:53 per port (0: any);
    the name of the server that answered each, by its address."""
    out = topology.sh(topology.client, sys.executable, '-c', _DNS_QUERIES, host, '53', DNS_NAME, source,
                      ','.join(str(p) for p in ports)).stdout
    by_answer = {address: name for name, address in DNS_ANSWERS.items()}
    results = json.loads(out)
    expect(all(r['address'] in by_answer for r in results), f'{host}: answers {results}')
    return [by_answer[r['address']] for r in results]


def maglev_picks(topology, via):
    """Step 4 through one balancer: the server of each client address
    (mag_http, tagged ?via=mag-VIA) and of each source port (mag_dns)."""
    http = {source: curl(topology, '--interface', source, f'http://{MAGLEV_VIP}/name.txt?via=mag-{via}')
            for source in MAGLEV_CLIENTS}
    dns = dict(zip(MAGLEV_PORTS, dns_queries(topology, MAGLEV_VIP, MAGLEV_PORTS, CLIENT4)))
    return http, dns


def totals(topology, ns, stats, services, key=('sessions', 'total')):
    """{service: {server: that counter, if not 0}} from the /stats of the
    fulcrum in `ns`, for the named services."""
    return {s['name']: {v['name']: v[key[0]][key[1]] for v in s['servers'] if v[key[0]][key[1]]}
            for s in stats_json(topology, ns, stats)['services'] if s['name'] in services}


def wait_totals(topology, ns, stats, expected, what):
    """Until the counters of the fulcrum in `ns` (read every second) are
    `expected`; else fails showing what they are."""
    try:
        wait_until(lambda: totals(topology, ns, stats, expected) == expected, 10, what)
    except TestFailure:
        expect_eq(totals(topology, ns, stats, expected), expected, what)
        raise


def stop_processes(procs):
    """SIGTERM to each by its PID, then reaped (cleanup kills what is left)."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(10)


def run(t):
    topology = lab(t, 'fp', [('ss', 'iproute2'), ('curl', 'curl'), ('iperf3', 'iperf3'),
                             ('dnsmasq', 'dnsmasq-base')])
    lb2 = add_second_balancer(topology)
    for source in MAGLEV_CLIENTS:
        run_command('ip', '-n', topology.client, 'addr', 'add', f'{source}/24', 'dev', 'c0')
    for name in SERVERS:
        dsr_apply(topology, t, name)
    sites = make_sites(t)
    with open(t.path('upload.bin'), 'wb') as f:
        f.write(os.urandom(UPLOAD))
    logs, peers = start_peers(topology, t, sites)
    # Each dnsmasq, asked directly (routed by lb, no VIP): its own answer.
    for name, hosts in SERVERS.items():
        expect_eq(dns_queries(topology, hosts[0], [0]), [name], f'dnsmasq in {name}, asked directly')

    rulesets_before = {ns: topology.sh(ns, 'nft', 'list', 'ruleset').stdout for ns in (topology.lb, lb2)}
    stats = f'127.0.0.1:{free_port()}'  # in lb and in lb2, each on its own loopback
    d = t.daemon({'global': {'workers': 1}, 'stats': {'listen': stats}, 'services': lb_services()},
                 prefix=['ip', 'netns', 'exec', topology.lb])
    d2 = t.daemon({'global': {'workers': 1}, 'stats': {'listen': stats}, 'services': maglev_services()},
                  name='fulcrum-lb2', prefix=['ip', 'netns', 'exec', lb2])
    # The dsr services check their servers (which keeps lb's neighbour
    # entries for them fresh: fwd needs them); every server up first.
    wait_until(lambda: all(v['state'] == 'up' for s in stats_json(topology, topology.lb, stats)['services']
                           for v in s['servers']), 10, 'every server of lb up')

    # 1. curl and http.server.
    for service, base, seen in (('nat4', f'http://{VIP4}', CLIENT4), ('nat6', f'http://[{VIP6}]', CLIENT6),
                                ('full4', f'http://{VIP4}:81', LB_SERVERS4),
                                ('dsr4', f'http://{DSR4}:{HTTP_PORT}', CLIENT4),
                                ('dsr6', f'http://[{DSR6}]:{HTTP_PORT}', CLIENT6)):
        http_through(topology, t, logs, sites, service, base, seen)

    # 2. iperf3.
    iperf3_checks(topology, t)

    # 3. DNS over UDP, 4 flows each.
    for service, vip in (('dns4', VIP4), ('dnsdsr', DSR4)):
        answered = dns_queries(topology, vip, [0] * 4)
        expect_eq(collections.Counter(answered), {'a': 2, 'b': 2}, f'{service}: rr split of 4 DNS queries')
    # The flows of steps 1 and 3 in lb's counters: 8 TCP connections per
    # HTTP service, 4 queries per DNS service; dsr counts the clients'
    # bytes (each server got one 1 MiB POST per service).
    flows = {**{s: {'a': 4, 'b': 4} for s in ('nat4', 'nat6', 'full4', 'dsr4', 'dsr6')},
             'dns4': {'a': 2, 'b': 2}, 'dnsdsr': {'a': 2, 'b': 2}}
    wait_totals(topology, topology.lb, stats, flows, 'lb /stats: new flows per server')
    for service, counted in totals(topology, topology.lb, stats, ('dsr4', 'dsr6'), ('bytes', 'in')).items():
        expect(sorted(counted) == ['a', 'b'] and min(counted.values()) > UPLOAD,
               f'{service}: bytes.in per server {counted}, each above one upload of {UPLOAD}')

    # 4. Maglev from two balancers: through lb, then through lb2.
    http1, dns1 = maglev_picks(topology, 'lb')
    run_command('ip', '-n', topology.client, 'route', 'add', f'{MAGLEV_VIP}/32', 'via', LB2_CLIENT4)
    for ns in topology.servers.values():
        run_command('ip', '-n', ns, 'route', 'replace', 'default', 'via', LB2_SERVERS4)
    http2, dns2 = maglev_picks(topology, 'lb2')
    expect_eq(http2, http1, 'mag_http: the server of each client address, through lb2 vs lb')
    expect_eq(dns2, dns1, 'mag_dns: the server of each source port, through lb2 vs lb')
    expect_eq((set(http1.values()), set(dns1.values())), ({'a', 'b'}, {'a', 'b'}),
              'maglev: both servers picked by some client')
    for via, picks in (('lb', http1), ('lb2', http2)):
        logged = sorted((source, name) for name, sources in seen_by_servers(logs, f'mag-{via}').items()
                        for source in sources)
        expect_eq(logged, sorted(picks.items()), f'mag_http through {via}: the client each server logged')
    expected = {'mag_http': dict(collections.Counter(http1.values())),
                'mag_dns': dict(collections.Counter(dns1.values()))}
    for ns in (topology.lb, lb2):
        wait_totals(topology, ns, stats, expected, f'{ns} /stats: maglev flows per server')

    # 5. Stop and clean up, checked.
    d.stop()
    d2.stop()
    for ns, before in rulesets_before.items():
        expect_eq(topology.sh(ns, 'nft', 'list', 'ruleset').stdout, before, f'{ns}: nft list ruleset after the stop')
    stop_processes(peers)
    names = list(topology.created)
    topology.delete()
    left = run_command('ip', 'netns', 'list').stdout.split()
    expect_eq([ns for ns in names if ns in left], [], 'namespaces left after delete')
