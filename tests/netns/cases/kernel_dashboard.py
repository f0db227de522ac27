"""Kernel forwarding on the dashboard, in fulcrumctl and in /metrics.

The namespaces of tests/netns/kernel_lab.py (client, lb where fulcrum
runs, servers a and b running tests/netns/peer.py on port 9000, TCP and
UDP), deleted on exit, also on failure. fulcrum in lb, its stats endpoint
on 127.0.0.1 of lb's namespace (reachable only there), with four services:
  - `tcp`: nat, rr, TCP, VIP 198.18.10.10:80;
  - `dns`: nat, rr, UDP, VIP 198.18.10.10:53;
  - `direct`: dsr, rr, TCP, VIP 198.18.10.20:9000 (no traffic: its replies
    would go direct, so the page and fulcrumctl show no packets out);
  - `proxied`: a proxy, rr, on lb's 198.18.20.1:8080.

1. 4 sessions of 64 KiB through `tcp` (2 per server, echoed exactly), 6
   UDP queries through `dns` (3 per server), 2 sessions through `proxied`.
2. /stats counts those flows per server and packets both ways for `tcp`
   and `dns`; the nft counters are read every second, so the test waits
   until two /stats documents 1.5 s apart agree on every service's and
   server's packets, bytes and session totals (the settled figures).
3. Headless Chromium, run inside lb's namespace (`ip netns exec`, the
   Chromium class of tests/e2e/cases/dashboard_chromium.py), renders the
   dashboard (--dump-dom). Each section's data-forwarding and
   data-protocol are /stats'; its chip (span.svc-forwarding) says exactly
   `nat · tcp`, `nat · udp`, `dsr · tcp`, and is hidden and empty for the
   proxy. Sections and server rows carry data-packets-in/-out equal to the
   settled /stats (empty for the proxy), and the bytes tiles and the rows'
   bytes cells say exactly `N packets` (N with thousands separators; hidden
   and empty for the proxy); `direct`'s bytes-out tile says `–` and its
   packets `replies go direct`, in the tile and in its rows. /stats after
   the page is still the settled one. A screenshot, dashboard-kernel.png
   (1280x900), is left in the test's directory and BUILD/meson-logs/.
4. fulcrumctl (FULCRUMCTL, inside lb's namespace, --url
   http://127.0.0.1:PORT): `status` has exactly the headers STATUS_HEADERS,
   its MODE column says `nat/tcp`, `nat/udp`, `dsr/tcp`, `proxy/tcp`, and
   PACKETS_IN/PACKETS_OUT are the settled /stats' (`-` for the proxy and
   for dsr's out); `servers` has exactly SERVERS_HEADERS and the same
   packet columns per server.
5. /metrics, fetched inside lb's namespace, passes `promtool check metrics`
   with no finding (promtool missing: skipped, and in CI a failure), and
   holds exactly the lines
   `fulcrum_server_packets_in_total{service="tcp",server="a"} N` (and out,
   and the services' fulcrum_service_packets_*_total, and dsr's
   fulcrum_service_packets_not_remembered_total) with N from the settled
   /stats; no packet sample for the proxy.
6. SIGTERM: exit 0.
"""

import os
import shutil
import subprocess
import sys
import time

from harness import binary, expect, expect_eq, free_port, log_stream, require_program, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), 'e2e', 'cases'))
from dashboard_chromium import Chromium, build_root, find_chromium  # noqa: E402
from kernel_lab import (CLIENT4, LB_CLIENT4, SERVERS, lab, rr_sessions, split, stats_json,  # noqa: E402
                        tcp_sessions, udp_queries)

DEADLINE = 100
PORT = 9000
VIP4, DSR_VIP4 = '198.18.10.10', '198.18.10.20'
BYTES = 64 * 1024
QUERIES = 6
PROXY_SESSIONS = 2
KERNEL = ('tcp', 'dns', 'direct')
CHIPS = {'tcp': 'nat \u00b7 tcp', 'dns': 'nat \u00b7 udp', 'direct': 'dsr \u00b7 tcp', 'proxied': ''}
MODES = {'tcp': 'nat/tcp', 'dns': 'nat/udp', 'direct': 'dsr/tcp', 'proxied': 'proxy/tcp'}
DASH = '\u2013'
STATUS_HEADERS = ('SERVICE SCHEDULER MODE ACTIVE TOTAL REJECTED BYTES_IN BYTES_OUT PACKETS_IN PACKETS_OUT SESS/S '
                  'PEAK/S IN/S OUT/S UP')
SERVERS_HEADERS = ('SERVICE SERVER ADDRESS STATE WEIGHT BACKUP ACTIVE MAX TOTAL SESS/S PEAK/S IN/S OUT/S PACKETS_IN '
                   'PACKETS_OUT FAILURES CHECKS_FAILED LAST_CHANGE')
_METRICS_REQUEST = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as reply:
    sys.stdout.buffer.write(reply.read())
"""


def services():
    servers = [{'name': name, 'address': f'{hosts[0]}:{PORT}'} for name, hosts in SERVERS.items()]
    return [
        {'name': 'tcp', 'forwarding': 'nat', 'scheduler': 'rr', 'listen': f'{VIP4}:80', 'servers': servers},
        {'name': 'dns', 'forwarding': 'nat', 'protocol': 'udp', 'scheduler': 'rr', 'listen': f'{VIP4}:53',
         'servers': servers},
        {'name': 'direct', 'forwarding': 'dsr', 'scheduler': 'rr', 'listen': f'{DSR_VIP4}:{PORT}',
         'dsr': {'ingress': 'l0', 'egress': 'br0'}, 'servers': servers},
        {'name': 'proxied', 'scheduler': 'rr', 'listen': f'{LB_CLIENT4}:8080', 'servers': servers},
    ]


def figures(stats):
    """What must not move once traffic stopped: per service and server,
    sessions.total, bytes and packets (None: no packets, a proxy)."""
    def of(entry):
        packets = entry.get('packets')
        return (entry['sessions']['total'], entry['bytes']['in'], entry['bytes']['out'],
                None if packets is None else (packets['in'], packets['out']))
    return {s['name']: (of(s), {v['name']: of(v) for v in s['servers']}) for s in stats['services']}


def packets_text(n):
    return f'{n:,} packet{"" if n == 1 else "s"}'


def check_packets_span(span, expected, where):
    """span.packets: `expected` as its text, hidden when it is empty."""
    expect_eq((span.text(), 'hidden' in span.attrs), (expected, expected == ''), f'{where}: packets shown')


def check_dom(dom, stats):
    sections = dom.find_all('section', cls='service')
    expect_eq([s.attrs.get('data-service') for s in sections], [s['name'] for s in stats['services']],
              'services on the page')
    for section, service in zip(sections, stats['services']):
        name = service['name']
        kernel = name in KERNEL
        direct = service['forwarding'] == 'dsr'
        where = f'dashboard: {name}'
        expect_eq((section.attrs.get('data-forwarding'), section.attrs.get('data-protocol')),
                  (service['forwarding'], service['protocol']), f'{where}: data-forwarding, data-protocol')
        chip = section.find('span', cls='svc-forwarding', what=where)
        expect_eq((chip.text(), 'hidden' in chip.attrs), (CHIPS[name], not kernel), f'{where}: forwarding chip')
        packets = service.get('packets')
        expect_eq(packets is not None, kernel, f'{where}: packets in /stats')
        expect_eq((section.attrs.get('data-packets-in'), section.attrs.get('data-packets-out')),
                  (str(packets['in']), str(packets['out'])) if kernel else ('', ''),
                  f'{where}: data-packets-in, data-packets-out')
        expect_eq(section.attrs.get('data-sessions-total'), str(service['sessions']['total']),
                  f'{where}: data-sessions-total')
        tile_in = section.find('div', cls='tile-bytes-in', what=where)
        tile_out = section.find('div', cls='tile-bytes-out', what=where)
        check_packets_span(tile_in.find('div', cls='packets', what=where),
                           packets_text(packets['in']) if kernel else '', f'{where}: bytes-in tile')
        check_packets_span(tile_out.find('div', cls='packets', what=where),
                           'replies go direct' if direct else packets_text(packets['out']) if kernel else '',
                           f'{where}: bytes-out tile')
        if direct:
            expect_eq(tile_out.find('div', cls='tile-value', what=where).text(), DASH,
                      f'{where}: bytes out (replies go direct)')
        rows = section.find_all('tr', cls='server')
        expect_eq([r.attrs.get('data-server') for r in rows], [v['name'] for v in service['servers']],
                  f'{where}: server rows')
        for row, server in zip(rows, service['servers']):
            here = f'{where}/{server["name"]}'
            p = server.get('packets')
            expect_eq((row.attrs.get('data-packets-in'), row.attrs.get('data-packets-out')),
                      (str(p['in']), str(p['out'])) if kernel else ('', ''),
                      f'{here}: data-packets-in, data-packets-out')
            expect_eq(row.attrs.get('data-sessions-total'), str(server['sessions']['total']),
                      f'{here}: data-sessions-total')
            cell_in = row.find('td', cls='c-in', what=here)
            cell_out = row.find('td', cls='c-out', what=here)
            expect_eq(cell_in.attrs.get('title'), f'{server["bytes"]["in"]:,} bytes', f'{here}: bytes in')
            check_packets_span(cell_in.find('span', cls='packets', what=here),
                               packets_text(p['in']) if kernel else '', f'{here}: bytes-in cell')
            check_packets_span(cell_out.find('span', cls='packets', what=here),
                               'replies go direct' if direct else packets_text(p['out']) if kernel else '',
                               f'{here}: bytes-out cell')
            if not kernel:  # a proxy's cells say what they said before kernel forwarding
                expect_eq(cell_out.attrs.get('title'), f'{server["bytes"]["out"]:,} bytes', f'{here}: bytes out')


def table(text, what, headers):
    """The rows of fulcrumctl's table in `text` (the first one after the
    blank line that follows `status`'s header lines, or the first line
    for `servers`), each a dict of header -> cell (every cell is a word);
    its headers must be `headers`."""
    lines = text.split('\n\n')[1 if what == 'status' else 0].splitlines()
    expect_eq(lines[0].split(), headers.split(), f'fulcrumctl {what}: the table\'s headers')
    headers = lines[0].split()
    rows = []
    for line in lines[1:]:
        cells = line.split()
        expect_eq(len(cells), len(headers), f'fulcrumctl {what}: cells of {line!r} under {headers}')
        rows.append(dict(zip(headers, cells)))
    return rows


def packet_cells(entry, direct):
    p = entry.get('packets')
    if p is None:
        return ('-', '-')
    return (str(p['in']), '-' if direct else str(p['out']))


def check_fulcrumctl(topology, stats_address, stats):
    def ctl(*args):
        return topology.sh(topology.lb, binary('FULCRUMCTL'), '--url', f'http://{stats_address}', *args).stdout
    status = table(ctl('status'), 'status', STATUS_HEADERS)
    expect_eq([r['SERVICE'] for r in status], [s['name'] for s in stats['services']], 'fulcrumctl status: rows')
    for row, service in zip(status, stats['services']):
        expect_eq((row['MODE'], row['PACKETS_IN'], row['PACKETS_OUT'], row['TOTAL']),
                  (MODES[service['name']], *packet_cells(service, service['forwarding'] == 'dsr'),
                   str(service['sessions']['total'])),
                  f'fulcrumctl status: {service["name"]}: MODE, PACKETS_IN, PACKETS_OUT, TOTAL')
    servers = table(ctl('servers'), 'servers', SERVERS_HEADERS)
    expected = [(s['name'], v['name'], *packet_cells(v, s['forwarding'] == 'dsr'), str(v['sessions']['total']))
                for s in stats['services'] for v in s['servers']]
    expect_eq([(r['SERVICE'], r['SERVER'], r['PACKETS_IN'], r['PACKETS_OUT'], r['TOTAL']) for r in servers],
              expected, 'fulcrumctl servers: SERVICE, SERVER, PACKETS_IN, PACKETS_OUT, TOTAL')


def check_metrics(t, topology, stats_address, stats):
    text = topology.sh(topology.lb, sys.executable, '-c', _METRICS_REQUEST,
                       f'http://{stats_address}/metrics').stdout
    with open(t.path('metrics.txt'), 'w') as f:
        f.write(text)
    promtool = require_program('promtool', 'prometheus')
    done = subprocess.run([promtool, 'check', 'metrics'], input=text, capture_output=True, text=True, timeout=30)
    findings = done.stdout + done.stderr
    expect(done.returncode == 0 and not findings,
           f'promtool check metrics: exit {done.returncode}, output:\n{findings}')
    lines = set(text.splitlines())
    wanted = []
    for service in stats['services']:
        if service['name'] not in KERNEL:
            continue
        for way in ('in', 'out'):
            wanted.append(f'fulcrum_service_packets_{way}_total{{service="{service["name"]}"}} '
                          f'{service["packets"][way]}')
            for server in service['servers']:
                wanted.append(f'fulcrum_server_packets_{way}_total{{service="{service["name"]}",'
                              f'server="{server["name"]}"}} {server["packets"][way]}')
        if service['forwarding'] == 'dsr':
            wanted.append(f'fulcrum_service_packets_not_remembered_total{{service="{service["name"]}"}} '
                          f'{service["packets_not_remembered"]}')
    expect_eq([w for w in wanted if w not in lines], [], '/metrics: packet samples equal to /stats missing')
    proxy = [line for line in lines if line.startswith('fulcrum_') and '_packets_' in line
             and 'service="proxied"' in line]
    expect_eq(proxy, [], '/metrics: packet samples of the proxy')
    return len(wanted)


def run(t):
    topology = lab(t, 'fb')
    chromium = Chromium(t, find_chromium(), prefix=['ip', 'netns', 'exec', topology.lb])
    topology.start_servers(t, lambda name: [f'{SERVERS[name][0]}:{PORT}'])
    stats_address = f'127.0.0.1:{free_port()}'
    d = t.daemon({'global': {'workers': 1}, 'stats': {'listen': stats_address}, 'services': services()},
                 prefix=['ip', 'netns', 'exec', topology.lb])

    # 1.
    rr_sessions(topology, 'tcp', f'{VIP4}:80', CLIENT4, BYTES)
    queries = udp_queries(topology, f'{VIP4}:53', QUERIES)
    expect_eq(split(queries), {'a': QUERIES // 2, 'b': QUERIES // 2}, 'dns: rr split of the queries')
    proxied = tcp_sessions(topology, f'{LB_CLIENT4}:8080', PROXY_SESSIONS, BYTES)
    expect_eq(split(proxied), {'a': 1, 'b': 1}, 'proxied: rr split')

    # 2. Counted, then settled.
    totals = {'tcp': {'a': 2, 'b': 2}, 'dns': {'a': QUERIES // 2, 'b': QUERIES // 2}, 'direct': {'a': 0, 'b': 0},
              'proxied': {'a': 1, 'b': 1}}

    def counted():
        stats = stats_json(topology, stats_address)
        return ({s['name']: {v['name']: v['sessions']['total'] for v in s['servers']} for s in stats['services']}
                == totals and all(v['packets'][way] > 0 for s in stats['services'] if s['name'] in ('tcp', 'dns')
                                  for v in s['servers'] for way in ('in', 'out')))
    wait_until(counted, 10, 'flows and packets of tcp and dns counted per server in /stats')
    previous = [figures(stats_json(topology, stats_address))]

    def settled():
        time.sleep(1.5)
        now = figures(stats_json(topology, stats_address))
        same, previous[0] = now == previous[0], now
        return same
    wait_until(settled, 20, 'two /stats documents 1.5 s apart with the same packets, bytes and totals')
    stats = stats_json(topology, stats_address)
    expect_eq(figures(stats), previous[0], '/stats still settled')
    for name in ('tcp', 'dns'):
        service = next(s for s in stats['services'] if s['name'] == name)
        expect_eq(service['packets'], {way: sum(v['packets'][way] for v in service['servers']) for way in ('in', 'out')},
                  f'{name}: the service\'s packets, the sum of its servers\'')

    # 3. The dashboard, inside lb's namespace.
    dom = chromium.dump_dom(f'http://{stats_address}/', 'dump-dom in lb')
    expect_eq(dom.by_id('status').attrs.get('data-status'), 'live', 'status pill')
    check_dom(dom, stats)
    expect_eq(figures(stats_json(topology, stats_address)), figures(stats), '/stats after the page loaded')
    log_stream('dashboard: forwarding chips, packets of ' +
               ', '.join(f'{s["name"]} {s["packets"]["in"]}/{s["packets"]["out"]}' for s in stats['services']
                         if 'packets' in s) + ' as in /stats')

    shot = chromium.screenshot(f'http://{stats_address}/', t.path('dashboard-kernel.png'), 1280, 900,
                               'screenshot in lb')
    root = build_root()
    if root is not None:
        shutil.copyfile(shot, os.path.join(root, 'meson-logs', 'dashboard-kernel.png'))

    # 4. fulcrumctl.
    check_fulcrumctl(topology, stats_address, stats)

    # 5. /metrics.
    samples = check_metrics(t, topology, stats_address, stats)
    log_stream(f'fulcrumctl status and servers: modes and packets as in /stats; /metrics: {samples} packet samples')

    # 6.
    d.stop()
