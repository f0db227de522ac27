"""GET / serves the live dashboard, and a real browser renders /stats with it.

Chromium comes from Debian's chromium package (tools/deps.sh installs it).
Without it the test is skipped, except in CI (CI set), where it fails.
Chromium runs headless with a fresh profile, its background networking off,
every host name unresolvable and every non-loopback URL sent to a dead proxy:
it talks to 127.0.0.1 only. Each run has a timeout, after which its process
group (started by this test) is killed by its id.

A daemon with the stats endpoint and two services:
  - `web` (wrr, health checks): app1 (weight 3), app2, `dead` (nothing
    listens: down), `drained` (weight 0: drain) and `spare` (backup);
  - `db.pool` (rr): pg1, pg2, and pg3 set to maint through the admin API;
    two sni_routes entries, [api.test, *.apps.test] -> pg-api and
    [shop.test] -> pg-apps, shown under a `tr.route` row each;
  - `edge` (rr, health checks with the agent check every 200 ms,
    on_server_down: close): e1 on 127.0.0.2 (weight 4), whose agent says
    `up 50% maxconn:7` (weight 2, max 7), and e2 on 127.0.0.3, where no
    agent listens.
A few sessions run on each, then the page itself is checked (200,
text/html, a viewport meta tag, no external asset), and Chromium renders it
for 5 s of virtual time (--dump-dom). The DOM must show: both services in
order with their listen addresses, scheduler and session totals; every
server row (`tr[data-service][data-server]`) in order with data-state equal
to /stats and the expected state (the drained server "drain", its badge
saying draining; dead "down"; pg3 "maint"), address, weight, backup flag,
session totals and byte titles equal to /stats, a rate, a sparkline and a
"... ago" last change; the header's version and generation; no banner.

Failure cells are orange (class warn) exactly for the servers with failures
in the last minute (`*_last_minute`), and each state cell shows
health.last_error and its age ("connect refused" for dead), nothing where
there is none. Each state cell's span.agent holds health.agent in its data-
attributes and is hidden for the servers without an agent: e1's says
`agent: up 50% maxconn:7 · Ns ago` (plain), e2's `agent: connect
refused` (orange: its agent check fails, and it never answered); each row's
data-closed-on-down is sessions.closed_on_down (0: its span hidden).

Then the same page, served by a stand-in server of this test that answers
/stats twice with documents of its own (the second 50 sessions later, 1 s
of uptime on, with the daemon's rates set to 7.3/s for web and app1) and
503 after: the page must have polled repeatedly at the relative URL, show
the daemon's 7.3/s (not the 50/s its totals would give), show the "stats
unreachable" banner, and keep the last data on screen; app2's lifetime
connect failures without recent ones stay plain, its max cell is orange
(data-full: it reached max_connections), dead's recent failed
checks are orange, its last error shown under its state with its age;
e1's agent reply 2.4 s old shows as `agent: up 50% maxconn:7 · 2s ago`
and its 3 sessions closed on down as `3 sessions closed on down`, e2's 1
as `1 session closed on down`. A stand-in serving
one document only shows that document's rates: the first refresh fills
them. A server name made of HTML in those documents must appear as text,
never as markup.

Screenshots (artefacts, in the test's directory and, when the build
directory is known, copied to BUILD/meson-logs/): dashboard.png at
1280x900, dashboard-phone.png at 390x844 (both while sessions run) and
dashboard-unreachable.png.
"""

import copy
import html.parser
import http.server
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import threading

from agent_check_server import AgentCheckServer
from harness import SessionLoad, TestFailure, TestSkip, echo_session, expect, expect_eq, free_address, \
    free_port_on, get_stats, http_get, http_request, log_stream, parse_address, wait_until

DEADLINE = 150
CHROMIUM_TIMEOUT = 60
VIRTUAL_TIME_MS = 5000
WEB_SESSIONS = 12
DB_SESSIONS = 5
TOKEN = 'dashboard-test-token'
HOSTILE_NAME = '<img src=x onerror="document.title=\'pwned\'">&amp;<b>bold</b>'
EXPECTED_STATES = {
    ('web', 'app1'): 'up', ('web', 'app2'): 'up', ('web', 'dead'): 'down',
    ('web', 'drained'): 'drain', ('web', 'spare'): 'up',
    ('db.pool', 'pg1'): 'up', ('db.pool', 'pg2'): 'up', ('db.pool', 'pg3'): 'maint',
    ('db.pool', 'pg-api'): 'up', ('db.pool', 'pg-apps'): 'up',
    ('edge', 'e1'): 'up', ('edge', 'e2'): 'up',
}
AGENT_LINE = 'up 50% maxconn:7'

BADGE_WORDS = {'up': 'up', 'down': 'down', 'drain': 'drain', 'maint': 'maint'}
SVG_NAMESPACE_HOST = 'http://www.w3.org'  # the SVG namespace URI, not fetched


# --------------------------------------------------------------------------
# A small DOM from Chromium's --dump-dom output

VOID_ELEMENTS = {'area', 'base', 'br', 'col', 'embed', 'hr', 'img', 'input', 'link', 'meta', 'source', 'track', 'wbr'}


class Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children = []

    def text(self):
        return ''.join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self):
        for c in self.children:
            if isinstance(c, Node):
                yield c
                yield from c.walk()

    def find_all(self, tag=None, cls=None, **attrs):
        """Descendants with this tag, this class among their classes and
        these attribute values (data_service= means data-service)."""
        wanted = {k.replace('_', '-'): v for k, v in attrs.items()}
        out = []
        for n in self.walk():
            if tag is not None and n.tag != tag:
                continue
            if cls is not None and cls not in n.attrs.get('class', '').split():
                continue
            if all(n.attrs.get(k) == v for k, v in wanted.items()):
                out.append(n)
        return out

    def find(self, tag=None, cls=None, what=None, **attrs):
        found = self.find_all(tag, cls, **attrs)
        expect(len(found) == 1, f'{what or "element"}: expected one <{tag or "*"} class={cls} {attrs}>, '
                                f'found {len(found)}')
        return found[0]

    def by_id(self, ident):
        found = [n for n in self.walk() if n.attrs.get('id') == ident]
        expect(len(found) == 1, f'expected one element with id={ident!r}, found {len(found)}')
        return found[0]


class DomBuilder(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node('#document', {}, None)
        self.current = self.root

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: (v if v is not None else '') for k, v in attrs}, self.current)
        self.current.children.append(node)
        if tag not in VOID_ELEMENTS:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Node(tag, {k: (v if v is not None else '') for k, v in attrs}, self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse_dom(text):
    builder = DomBuilder()
    builder.feed(text)
    builder.close()
    return builder.root


def digits(text):
    return text.replace(',', '').strip()


# --------------------------------------------------------------------------
# Chromium


def find_chromium():
    for name in ('chromium', 'chromium-browser'):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get('CI', '').lower() not in ('', '0', 'false'):
        raise TestFailure('chromium is not installed (Debian package chromium, see tools/deps.sh); '
                          'in CI this test must run')
    raise TestSkip('chromium is not installed (Debian package chromium; tools/deps.sh installs it)')


class Chromium:
    """Runs headless Chromium once per call, each time with a fresh profile
    and home directory under the test's directory; `prefix` goes before its
    command (tests/netns/cases/kernel_dashboard.py: `ip netns exec NS`, which
    execs Chromium in the same process)."""

    def __init__(self, t, path, prefix=()):
        self.t = t
        self.path = path
        self.prefix = list(prefix)
        self.runs = 0

    def run(self, url, extra, what):
        self.runs += 1
        base = self.t.path(f'chromium-{self.runs}')
        profile, home = os.path.join(base, 'profile'), os.path.join(base, 'home')
        os.makedirs(profile)
        os.makedirs(home)
        command = self.prefix + [
            self.path, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
            '--disable-background-networking', '--disable-component-update', '--disable-sync',
            '--disable-extensions', '--disable-default-apps', '--no-default-browser-check', '--disable-dev-shm-usage',
            '--mute-audio', '--hide-scrollbars', '--disable-breakpad', '--disable-crash-reporter',
            # Loopback only: no host name resolves, and any non-loopback URL
            # would go to a proxy where nothing listens (loopback bypasses it).
            '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1', '--proxy-server=127.0.0.1:9',
            f'--user-data-dir={profile}', f'--virtual-time-budget={VIRTUAL_TIME_MS}',
        ] + extra + [url]
        env = {k: v for k, v in os.environ.items() if k not in ('DISPLAY', 'WAYLAND_DISPLAY', 'DBUS_SESSION_BUS_ADDRESS')}
        env.update(HOME=home, XDG_CONFIG_HOME=os.path.join(home, '.config'),
                   XDG_CACHE_HOME=os.path.join(home, '.cache'), TMPDIR=base)
        stderr_path = os.path.join(base, 'stderr')
        with open(stderr_path, 'wb') as err:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                    env=env, start_new_session=True)
        self.t.register_process(proc, f'chromium ({what})')
        try:
            try:
                out, _ = proc.communicate(timeout=CHROMIUM_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._kill_group(proc)
                proc.communicate(timeout=10)
                raise TestFailure(f'chromium ({what}) still running after {CHROMIUM_TIMEOUT}s; killed. '
                                  f'stderr:\n{self._tail(stderr_path)}')
        finally:
            # Helpers (crashpad, zygotes) of this run are in its process group.
            self._kill_group(proc)
        expect(proc.returncode == 0, f'chromium ({what}) exited with {proc.returncode}; '
                                     f'stderr:\n{self._tail(stderr_path)}')
        return out.decode('utf-8', 'replace')

    @staticmethod
    def _kill_group(proc):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    @staticmethod
    def _tail(path, lines=30):
        with open(path, 'rb') as f:
            return '\n'.join(f.read().decode('utf-8', 'replace').splitlines()[-lines:])

    def dump_dom(self, url, what):
        text = self.run(url, ['--dump-dom'], what)
        expect('<html' in text, f'chromium ({what}) dumped no document: {text[:300]!r}')
        with open(self.t.path(f'dom-{self.runs}.html'), 'w') as f:
            f.write(text)
        return parse_dom(text)

    def screenshot(self, url, path, width, height, what):
        if os.path.exists(path):
            os.unlink(path)
        self.run(url, [f'--screenshot={path}', f'--window-size={width},{height}'], what)
        expect(os.path.exists(path), f'chromium ({what}) wrote no screenshot {path}')
        with open(path, 'rb') as f:
            head = f.read(24)
        expect(head[:8] == b'\x89PNG\r\n\x1a\n', f'{path} is not a PNG')
        size = struct.unpack('>II', head[16:24])
        expect_eq(size, (width, height), f'size of {path}')
        return path


# --------------------------------------------------------------------------
# The page and its DOM


def check_page(stats_address):
    reply = http_get(stats_address, '/')
    expect_eq(reply.status, 200, 'status of GET /')
    expect_eq(reply.headers.get('Content-Type'), 'text/html; charset=utf-8', 'Content-Type of GET /')
    page = reply.body.decode('utf-8')
    expect(page.lstrip().lower().startswith('<!doctype html>'), 'GET / is not an HTML document')
    expect(re.search(r'<meta name="viewport" content="width=device-width[^"]*"', page) is not None,
           'the page has no viewport meta tag')
    lowered = page.lower()
    for banned in ('<link', '<iframe', '<img', '@import', 'url('):
        expect(banned not in lowered, f'the page refers to an external resource ({banned})')
    expect(re.search(r'<script[^>]*\bsrc\s*=', lowered) is None, 'the page loads a script')
    for url in re.findall(r'(?:https?:)?//[A-Za-z0-9.-]+', page):
        expect(url == SVG_NAMESPACE_HOST, f'the page names an external URL: {url}')
    expect(re.search(r"""fetch\(\s*['"]stats['"]""", page) is not None,
           'the page does not poll the relative URL stats')
    head = http_request(stats_address, 'HEAD', '/')
    expect_eq(head.status, 200, 'status of HEAD /')
    return reply


def check_services(dom, stats, what, before=None):
    """Both services and every server row as in `stats`, in order. Health
    checks go on meanwhile: a server's failed checks on the page may be
    anywhere from `before` (a document from before the page loaded) to
    `stats`."""
    earlier = {(s['name'], v['name']): v['health']['checks_failed']
               for s in (before or stats)['services'] for v in s['servers']}
    sections = dom.find_all('section', cls='service')
    expect_eq([s.attrs.get('data-service') for s in sections], [s['name'] for s in stats['services']],
              f'{what}: services on the page')
    for section, service in zip(sections, stats['services']):
        name = service['name']
        where = f'{what}: service {name}'
        expect_eq(section.find('h2', cls='svc-name', what=where).text(), name, f'{where}: heading')
        expect_eq(section.attrs.get('data-sessions-total'), str(service['sessions']['total']),
                  f'{where}: data-sessions-total')
        expect_eq(section.attrs.get('data-sessions-active'), str(service['sessions']['active']),
                  f'{where}: data-sessions-active')
        total_tile = section.find('div', cls='tile-total', what=where)
        expect_eq(digits(total_tile.find('div', cls='tile-value', what=where).text()),
                  str(service['sessions']['total']), f'{where}: Total tile')
        rejected_tile = section.find('div', cls='tile-rejected', what=where)
        expect_eq(digits(rejected_tile.find('div', cls='tile-value', what=where).text()),
                  str(service['sessions']['rejected']), f'{where}: Rejected tile')
        expect_eq(section.find('span', cls='svc-scheduler', what=where).text(), service['scheduler'],
                  f'{where}: scheduler')
        expect_eq([c.text() for c in section.find_all('code', cls='svc-address')], service['listen'],
                  f'{where}: listen addresses')
        expect(section.find('div', cls='tile-rate', what=where).find_all('svg', cls='spark'),
               f'{where}: no sparkline in the rate tile')

        rows = section.find_all('tr', cls='server')
        expect_eq([(r.attrs.get('data-service'), r.attrs.get('data-server')) for r in rows],
                  [(name, v['name']) for v in service['servers']], f'{where}: server rows')
        expect_eq(table_rows(section, where), expected_table_rows(service), f'{where}: rows with their routes')
        for row, server in zip(rows, service['servers']):
            check_row(row, server, f'{what}: {name}/{server["name"]}',
                      earlier.get((name, server['name']), server['health']['checks_failed']), before is None)
    return sections


def table_rows(section, where):
    """The server table's rows in order: ('route', names) for an sni_routes
    entry's heading, (server, data-route) for a server."""
    out = []
    for row in section.find('tbody', what=where).children:
        if not isinstance(row, Node):
            continue
        if 'route' in row.attrs.get('class', '').split():
            out.append(('route', row.attrs.get('data-route'), row.text()))
        else:
            out.append((row.attrs.get('data-server'), row.attrs.get('data-route')))
    return out


def expected_table_rows(service):
    """A route's servers follow one heading row naming the route."""
    out, last = [], ''
    for server in service['servers']:
        route = ', '.join(server.get('route') or [])
        if route and route != last:
            out.append(('route', route, 'route: ' + route))
        last = route
        out.append((server['name'], route))
    return out


def check_row(row, server, where, checks_failed_before, fixed_rates):
    def cell(key):
        return row.find('td', cls=f'c-{key}', what=where)

    state = server['state']
    expect_eq(row.attrs.get('data-state'), state, f'{where}: data-state')
    badge = cell('state').find('span', cls='state', what=where)
    expect(BADGE_WORDS.get(state, state) in badge.text().lower(),
           f'{where}: state badge says {badge.text()!r} for {state}')
    expect(f'state-{state}' in badge.attrs.get('class', '').split(), f'{where}: badge class {badge.attrs}')
    expect_eq(cell('name').text(), server['name'], f'{where}: name cell')
    expect_eq(cell('address').text(), server['address'], f'{where}: address cell')
    expect_eq(digits(cell('weight').text()), str(server['weight']), f'{where}: weight cell')
    expect_eq(row.attrs.get('data-weight'), str(server['weight']), f'{where}: data-weight')
    expect_eq(cell('backup').text(), 'backup' if server['backup'] else 'no', f'{where}: backup cell')
    expect_eq(row.attrs.get('data-sessions-total'), str(server['sessions']['total']),
              f'{where}: data-sessions-total')
    expect_eq(digits(cell('total').text()), str(server['sessions']['total']), f'{where}: total cell')
    expect_eq(digits(cell('active').text()), str(server['sessions']['active']), f'{where}: active cell')
    expected_max = '\u221e' if server['sessions']['max'] == 0 else str(server['sessions']['max'])
    expect_eq(digits(cell('max').text()), expected_max, f'{where}: max cell')
    full = 0 < server['sessions']['max'] <= server['sessions']['active']
    expect_eq((row.attrs.get('data-full'), 'warn' in cell('max').attrs.get('class', '').split()),
              ('true' if full else 'false', full), f'{where}: data-full and an orange max cell')
    expect_eq(cell('in').attrs.get('title'), f'{server["bytes"]["in"]:,} bytes', f'{where}: bytes in')
    expect_eq(cell('out').attrs.get('title'), f'{server["bytes"]["out"]:,} bytes', f'{where}: bytes out')
    expect(re.fullmatch(r'\d+(\.\d+)? (B|KiB|MiB|GiB)', cell('in').text()) is not None,
           f'{where}: bytes in cell {cell("in").text()!r}')
    expect_eq(digits(cell('fail').text()), str(server['connect_failures']), f'{where}: connect failures cell')
    recent = server['connect_failures_last_minute']
    expect_eq('warn' in cell('fail').attrs.get('class', '').split(), recent > 0,
              f'{where}: connect failures orange ({recent} in the last minute)')
    recent_checks = server['health']['checks_failed_last_minute']
    expect_eq('warn' in cell('checks').attrs.get('class', '').split(), recent_checks > 0,
              f'{where}: failed checks orange ({recent_checks} in the last minute)')
    last_error = server['health']['last_error']
    why = cell('state').find('span', cls='last-error', what=where)
    expect_eq(why.attrs.get('data-last-error'), last_error or '', f'{where}: data-last-error')
    if last_error is None:
        expect_eq((why.text(), 'hidden' in why.attrs), ('', True), f'{where}: last error under the state')
    else:
        expect(re.fullmatch(re.escape(last_error) + r' \u00b7 (\d+m \d+s|\d+s) ago', why.text()) is not None,
               f'{where}: last error under the state {why.text()!r}')
        expect_eq('warn' in why.attrs.get('class', '').split(), recent_checks > 0,
                  f'{where}: last error orange ({recent_checks} failed checks in the last minute)')
    check_agent(cell('state').find('span', cls='agent', what=where), server['health']['agent'], where, fixed_rates)
    closed = server['sessions']['closed_on_down']
    expect_eq(row.attrs.get('data-closed-on-down'), str(closed), f'{where}: data-closed-on-down')
    closed_span = cell('state').find('span', cls='closed-on-down', what=where)
    expected_closed = f'{closed} session{"" if closed == 1 else "s"} closed on down' if closed else ''
    expect_eq((closed_span.text(), 'hidden' in closed_span.attrs), (expected_closed, closed == 0),
              f'{where}: sessions closed on down under the state')
    if fixed_rates:
        expect_eq(row.attrs.get('data-rate'), f'{server["rate"]["sessions_per_second"]:g}', f'{where}: data-rate')
    else:  # the daemon's window slides on while the page loads: one of its tenths
        rate = float(row.attrs.get('data-rate', 'nan'))
        expect(rate >= 0 and round(rate * 10) / 10 == rate, f'{where}: data-rate {row.attrs.get("data-rate")!r}')
    checks = cell('checks').attrs.get('data-checks-failed', '')
    expect(checks.isdigit() and checks_failed_before <= int(checks) <= server['health']['checks_failed'],
           f'{where}: data-checks-failed {checks!r}, expected {checks_failed_before}..'
           f'{server["health"]["checks_failed"]}')
    rate = cell('rate')
    expect(re.fullmatch(r'(\d[\d,]*(\.\d+)?/s|\u2013)', rate.find('span', cls='rate-value', what=where).text()),
           f'{where}: rate cell {rate.text()!r}')
    expect(rate.find_all('svg', cls='spark'), f'{where}: no sparkline')
    expect(re.fullmatch(r'(\d+d \d+h|\d+h \d+m|\d+m \d+s|\d+s) ago', cell('change').text()) is not None,
           f'{where}: last change {cell("change").text()!r}')


def check_agent(span, agent, where, exact_age):
    """span.agent as health.agent says (None: no agent, hidden); the reply's
    age exactly as in `agent` when `exact_age` (a document the page showed
    as is), else any."""
    def attr(value):
        return '' if value is None else str(value)
    if agent is None:
        expect_eq(({k: span.attrs.get(k) for k in ('data-reply', 'data-error', 'data-says')}, span.text(),
                   'hidden' in span.attrs),
                  ({'data-reply': '', 'data-error': '', 'data-says': ''}, '', True), f'{where}: no agent')
        return
    expect_eq({k: span.attrs.get(k) for k in ('data-reply', 'data-error', 'data-says', 'data-admin',
                                              'data-weight-percent', 'data-max-connections', 'hidden')},
              {'data-reply': attr(agent['reply']), 'data-error': attr(agent['last_error']),
               'data-says': agent['says'], 'data-admin': agent['admin'],
               'data-weight-percent': attr(agent['weight_percent']),
               'data-max-connections': attr(agent['max_connections']), 'hidden': None},
              f'{where}: agent data- attributes')
    failed = agent['last_error'] is not None
    if agent['reply'] is None:
        said = re.escape(agent['last_error'] if failed else 'agent: no reply yet')
    else:
        age = (re.escape(f'{int(agent["reply_seconds"])}s') if exact_age and agent['reply_seconds'] < 60
               else r'(\d+m \d+s|\d+s)')
        said = re.escape(f'agent: {agent["reply"]} \u00b7 ') + age + ' ago'
        if failed:
            said += re.escape(f' \u00b7 last check: {agent["last_error"]}')
    expect(re.fullmatch(said, span.text()) is not None, f'{where}: agent under the state {span.text()!r}')
    expect_eq('warn' in span.attrs.get('class', '').split(), failed, f'{where}: agent orange (its check failing)')


def check_header(dom, stats, what):
    expect_eq(dom.by_id('version').text(), 'v' + stats['version'], f'{what}: version')
    expect_eq(dom.by_id('generation').attrs.get('data-generation'), str(stats['config']['generation']),
              f'{what}: generation')
    expect_eq(dom.by_id('reload').attrs.get('data-ok'), 'true', f'{what}: last reload ok')
    expect(re.fullmatch(r'(\d+d \d+h|\d+h \d+m|\d+m \d+s|\d+s)', dom.by_id('uptime').text()) is not None,
           f'{what}: uptime {dom.by_id("uptime").text()!r}')
    # The PID's start and its binary upgrades.
    process = dom.by_id('process')
    started = stats['started_at'].replace('T', ' ').replace('Z', ' UTC')
    upgrades = stats['upgrades']
    expect_eq((process.attrs.get('data-started-at'), process.attrs.get('data-upgrades'), process.text()),
              (stats['started_at'], str(upgrades),
               f'since {started} \u00b7 {upgrades} upgrade{"" if upgrades == 1 else "s"}'),
              f'{what}: the process field')


# --------------------------------------------------------------------------
# A stand-in for the stats endpoint: the real page, /stats from a script


class StandIn:
    """Serves `page` (bytes) at / and, at /stats, each document of `documents`
    once in turn, then 503; each load of the page starts the sequence again.
    Counts the /stats requests since the last page load."""

    def __init__(self, page, csp, documents):
        self.page, self.csp = page, csp
        self.documents = [json.dumps(d).encode() for d in documents]
        self.stats_requests = 0
        self.other_requests = []
        self.lock = threading.Lock()
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == '/':
                    with stand_in.lock:
                        stand_in.stats_requests = 0
                    self._send(200, 'text/html; charset=utf-8', stand_in.page, csp=True)
                    return
                if self.path == '/stats':
                    with stand_in.lock:
                        n = stand_in.stats_requests
                        stand_in.stats_requests += 1
                    if n < len(stand_in.documents):
                        self._send(200, 'application/json', stand_in.documents[n])
                    else:
                        self._send(503, 'text/plain', b'stand-in: unavailable\n')
                    return
                with stand_in.lock:
                    stand_in.other_requests.append(self.path)
                self._send(404, 'text/plain', b'not found\n')

            def _send(self, code, content_type, body, csp=False):
                self.send_response(code)
                self.send_header('Content-Type', content_type)
                self.send_header('Content-Length', str(len(body)))
                self.send_header('Cache-Control', 'no-store')
                if csp and stand_in.csp:
                    self.send_header('Content-Security-Policy', stand_in.csp)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        host, port = parse_address(free_address())
        self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.address = f'{host}:{port}'
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={'poll_interval': 0.1},
                                       name='stand-in', daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def set_rate(entry, sessions):
    entry['rate'] = {'sessions_per_second': sessions, 'bytes_in_per_second': 0, 'bytes_out_per_second': 0,
                     'peak_sessions_per_second': sessions}


def stand_in_documents(stats):
    """Two /stats documents from a real one: the second 1 s of uptime and 50
    sessions (all on web/app1) later, the daemon's rates 7.3/s on web and
    app1 (0 elsewhere); app2 with lifetime connect failures but none in the
    last minute and at its max_connections, dead with failed checks in the
    last minute; db.pool gets a server named in HTML; edge's e1 an agent
    reply 2.4 s old and 3 sessions closed on down, e2 1."""
    first = copy.deepcopy(stats)
    db = next(s for s in first['services'] if s['name'] == 'db.pool')
    hostile = copy.deepcopy(db['servers'][0])
    hostile['name'] = HOSTILE_NAME
    hostile['address'] = '<i>127.0.0.1:1</i>'
    db['servers'].append(hostile)
    second = copy.deepcopy(first)
    second['uptime_seconds'] = first['uptime_seconds'] + 1.0
    web = next(s for s in second['services'] if s['name'] == 'web')
    web['sessions']['total'] += 50
    app1 = next(v for v in web['servers'] if v['name'] == 'app1')
    app1['sessions']['total'] += 50
    for document in (first, second):
        for service in document['services']:
            set_rate(service, 0)
            for server in service['servers']:
                set_rate(server, 0)
                server['connect_failures_last_minute'] = 0
                server['health']['checks_failed_last_minute'] = 0
    set_rate(web, 7.3)
    set_rate(app1, 7.3)
    app2 = next(v for v in web['servers'] if v['name'] == 'app2')
    app2['connect_failures'] = 9
    app2['sessions']['active'] = app2['sessions']['max']  # 100: full
    dead = next(v for v in web['servers'] if v['name'] == 'dead')
    dead['health']['checks_failed_last_minute'] = 3
    dead['health']['last_error'] = 'connect refused'
    dead['health']['last_error_seconds'] = 4.2
    edge = {v['name']: v for v in next(s for s in second['services'] if s['name'] == 'edge')['servers']}
    edge['e1']['health']['agent']['reply_seconds'] = 2.4
    edge['e1']['sessions']['closed_on_down'] = 3
    edge['e2']['sessions']['closed_on_down'] = 1
    return first, second


# --------------------------------------------------------------------------


def build_root():
    """The meson build directory (for meson-logs/), or None."""
    for candidate in (os.environ.get('MESON_BUILD_ROOT'), os.path.dirname(os.path.abspath(os.environ['FULCRUM']))):
        if candidate and os.path.isdir(os.path.join(candidate, 'meson-logs')):
            return candidate
    return None


def run(t):
    chromium = Chromium(t, find_chromium())

    app1, app2, spare = t.demo_server('app1'), t.demo_server('app2'), t.demo_server('spare')
    pg1, pg2, pg3 = t.demo_server('pg1'), t.demo_server('pg2'), t.demo_server('pg3')
    dead = t.dead_address()
    e1, e2 = t.demo_server('e1', host='127.0.0.2'), t.demo_server('e2', host='127.0.0.3')
    agent_port = free_port_on('127.0.0.2', '127.0.0.3')
    AgentCheckServer(t, 'agent', AGENT_LINE, host='127.0.0.2', port=agent_port)  # none on 127.0.0.3: e2's fails
    listen_web, listen_web2, listen_db = free_address(), free_address(), free_address()
    stats_address = free_address()
    token_path = t.token_file(TOKEN + '\n')
    d = t.daemon({
        'global': {'workers': 2},
        'stats': {'listen': stats_address, 'admin_token_file': token_path},
        'services': [
            {'name': 'web', 'listen': [listen_web, listen_web2], 'scheduler': 'wrr', 'retries': 1,
             'health_check': {'interval': '500ms', 'timeout': '300ms', 'rise': 1, 'fall': 1},
             'servers': [{'name': 'app1', 'address': app1.address, 'weight': 3},
                         {'name': 'app2', 'address': app2.address, 'max_connections': 100},
                         {'name': 'dead', 'address': dead},
                         {'name': 'drained', 'address': app1.address, 'weight': 0},
                         {'name': 'spare', 'address': spare.address, 'backup': True}]},
            # Its servers speak first, and a service with sni_routes waits
            # up to timeouts.connect for a client's TLS hello.
            {'name': 'db.pool', 'listen': listen_db, 'scheduler': 'rr', 'timeouts': {'connect': '300ms'},
             'servers': [{'name': 'pg1', 'address': pg1.address},
                         {'name': 'pg2', 'address': pg2.address},
                         {'name': 'pg3', 'address': pg3.address}],
             # Clients naming these in a TLS hello; none here: the rows are
             # shown under their routes.
             'sni_routes': [{'names': ['api.test', '*.apps.test'],
                             'servers': [{'name': 'pg-api', 'address': pg1.address}]},
                            {'names': ['shop.test'], 'servers': [{'name': 'pg-apps', 'address': pg2.address}]}]},
            {'name': 'edge', 'listen': free_address(), 'scheduler': 'rr', 'on_server_down': 'close',
             'health_check': {'interval': '500ms', 'timeout': '300ms', 'rise': 1, 'fall': 1,
                              'agent': {'port': agent_port, 'interval': '200ms'}},
             'servers': [{'name': 'e1', 'address': e1.address, 'weight': 4},
                         {'name': 'e2', 'address': e2.address}]},
        ],
    })

    def server_states():
        return {(s['name'], v['name']): v['state'] for s in get_stats(stats_address)['services'] for v in s['servers']}
    wait_until(lambda: server_states()[('web', 'dead')] == 'down', 10, 'web/dead to be down')

    def edge_agents():
        servers = next(s for s in get_stats(stats_address)['services'] if s['name'] == 'edge')['servers']
        return {v['name']: (v['weight'], v['health']['agent']['reply'], v['health']['agent']['last_error'])
                for v in servers}
    wait_until(lambda: edge_agents() == {'e1': (2, AGENT_LINE, None), 'e2': (1, None, 'agent: connect refused')},
               10, 'edge: e1 at weight 2 after its agent\'s word, e2\'s agent check failed')
    reply = http_request(stats_address, 'POST', '/api/v1/services/db.pool/servers/pg3',
                         body=json.dumps({'state': 'maint'}),
                         headers={'Authorization': f'Bearer {TOKEN}', 'Content-Type': 'application/json'})
    expect_eq(reply.status, 200, f'status of setting pg3 to maint: {reply.body[:200]!r}')
    expect_eq(server_states(), EXPECTED_STATES, 'server states in /stats before any session')

    for n in range(WEB_SESSIONS):
        echo_session(listen_web if n % 2 else listen_web2, n)
    for n in range(DB_SESSIONS):
        echo_session(listen_db, 100 + n)
    d.wait_access_count(WEB_SESSIONS + DB_SESSIONS)

    page_reply = check_page(stats_address)
    url = f'http://{stats_address}/'

    # The page in Chromium against the daemon.
    before = get_stats(stats_address)
    dom = chromium.dump_dom(url, 'dump-dom')
    stats = get_stats(stats_address)
    expect_eq(server_states(), EXPECTED_STATES, 'server states in /stats')
    expect_eq(next(s for s in stats['services'] if s['name'] == 'web')['sessions']['total'], WEB_SESSIONS,
              'web sessions in /stats')
    expect_eq(next(s for s in stats['services'] if s['name'] == 'db.pool')['sessions']['total'], DB_SESSIONS,
              'db.pool sessions in /stats')
    expect(dom.by_id('banner').attrs.get('hidden') is not None, 'the unreachable banner shows while /stats answers')
    expect_eq(dom.by_id('status').attrs.get('data-status'), 'live', 'status pill')
    check_header(dom, stats, 'dashboard')
    check_services(dom, stats, 'dashboard', before)
    drained = dom.find('tr', cls='server', data_service='web', data_server='drained', what='drained row')
    expect('draining' in drained.text(), f'the drained row does not say draining: {drained.text()!r}')
    edge = dom.find('section', cls='service', data_service='edge', what='edge section')
    agents = {name: edge.find('tr', cls='server', data_server=name, what=f'{name} row').find('span', cls='agent',
                                                                                         what=f'{name} agent')
              for name in ('e1', 'e2')}
    keys = ('data-reply', 'data-error', 'data-says', 'data-admin', 'data-weight-percent', 'data-max-connections')
    expect_eq({name: {k: span.attrs.get(k) for k in keys} for name, span in agents.items()},
              {'e1': {'data-reply': AGENT_LINE, 'data-error': '', 'data-says': 'up', 'data-admin': 'ready',
                      'data-weight-percent': '50', 'data-max-connections': '7'},
               'e2': {'data-reply': '', 'data-error': 'agent: connect refused', 'data-says': 'up',
                      'data-admin': 'ready', 'data-weight-percent': '', 'data-max-connections': ''}},
              'the agents\' data- attributes')
    expect(re.fullmatch(r'agent: up 50% maxconn:7 \u00b7 \d+s ago', agents['e1'].text()) is not None,
           f'e1\'s agent under its state: {agents["e1"].text()!r}')
    expect_eq(agents['e2'].text(), 'agent: connect refused', 'e2\'s agent under its state')
    log_stream(f'dashboard DOM: {len(stats["services"])} services, '
               f'{sum(len(s["servers"]) for s in stats["services"])} server rows match /stats')

    # Screenshots while sessions run, so that rates and sparklines move.
    shots = {}
    load = SessionLoad(listen_web, threads=2, max_sessions=100000, gap=0.01, what='web-load').start()
    load_db = SessionLoad(listen_db, threads=1, max_sessions=100000, gap=0.02, what='db-load').start()
    try:
        shots['dashboard.png'] = chromium.screenshot(url, t.path('dashboard.png'), 1280, 900, 'laptop screenshot')
        shots['dashboard-phone.png'] = chromium.screenshot(url, t.path('dashboard-phone.png'), 390, 844,
                                                           'phone screenshot')
    finally:
        sessions = load.stop() + load_db.stop()
    failed = [s for s in sessions if s.error]
    expect(not failed, f'{len(failed)} of {len(sessions)} load sessions failed: {failed[:5]}')

    # The same page against a stand-in that stops answering.
    stand_in_stats = get_stats(stats_address)
    first, second = stand_in_documents(stand_in_stats)
    stand_in = StandIn(page_reply.body, page_reply.headers.get('Content-Security-Policy'), [first, second])
    try:
        dom = chromium.dump_dom(f'http://{stand_in.address}/', 'dump-dom, stats failing')
        polls = stand_in.stats_requests
        expect(polls >= 3, f'the page polled /stats {polls} times in {VIRTUAL_TIME_MS} ms of virtual time')
        expect_eq(stand_in.other_requests, [], 'requests to the stand-in other than / and /stats')
        banner = dom.by_id('banner')
        expect(banner.attrs.get('hidden') is None, 'no banner after /stats failed')
        expect('stats unreachable' in banner.text().lower(), f'banner text: {banner.text()!r}')
        expect_eq(dom.by_id('status').attrs.get('data-status'), 'unreachable', 'status pill after failures')
        check_services(dom, second, 'dashboard, stats failing')
        edge = dom.find('section', cls='service', data_service='edge', what='edge section')
        shown = {name: (row.find('span', cls='agent', what=name).text(),
                        row.find('span', cls='closed-on-down', what=name).text(), row.attrs.get('data-closed-on-down'))
                 for name, row in ((r.attrs['data-server'], r) for r in edge.find_all('tr', cls='server'))}
        expect_eq(shown, {'e1': ('agent: up 50% maxconn:7 \u00b7 2s ago', '3 sessions closed on down', '3'),
                          'e2': ('agent: connect refused', '1 session closed on down', '1')},
                  'edge: agents and sessions closed on down')
        web = dom.find('section', cls='service', data_service='web', what='web section')
        expect_eq(web.find('div', cls='tile-rate', what='web').find('div', cls='tile-value', what='web').text(),
                  '7.3/s', 'web session rate: the daemon\'s, not the 50/s of the totals 1 s apart')
        rates = {r.attrs['data-server']: r.find('span', cls='rate-value', what='rate').text()
                 for r in web.find_all('tr', cls='server')}
        expect_eq(rates, {'app1': '7.3/s', 'app2': '0/s', 'dead': '0/s', 'drained': '0/s', 'spare': '0/s'},
                  'web server rates')
        hostile = dom.find('tr', cls='server', data_service='db.pool', data_server=HOSTILE_NAME, what='HTML-named row')
        expect_eq(hostile.find('td', cls='c-name', what='HTML-named row').text(), HOSTILE_NAME,
                  'a server name made of HTML, shown as text')
        main = dom.by_id('services')
        for tag in ('img', 'b', 'i'):
            expect(not main.find_all(tag), f'a <{tag}> element from the JSON made it into the page')
        title = dom.find('head', what='head').find('title', what='document title').text()
        expect('pwned' not in title, f'markup from the JSON ran: title {title!r}')
        shots['dashboard-unreachable.png'] = chromium.screenshot(
            f'http://{stand_in.address}/', t.path('dashboard-unreachable.png'), 1280, 900, 'unreachable screenshot')
    finally:
        stand_in.close()
    # One document only: its rates show at once.
    only = copy.deepcopy(first)
    set_rate(next(s for s in only['services'] if s['name'] == 'web'), 4.5)
    stand_in = StandIn(page_reply.body, page_reply.headers.get('Content-Security-Policy'), [only])
    try:
        dom = chromium.dump_dom(f'http://{stand_in.address}/', 'dump-dom, one stats document')
        check_services(dom, only, 'dashboard, one stats document')
        web = dom.find('section', cls='service', data_service='web', what='web section')
        expect_eq(web.find('div', cls='tile-rate', what='web').find('div', cls='tile-value', what='web').text(),
                  '4.5/s', 'web session rate from the first (and only) document')
    finally:
        stand_in.close()
    log_stream(f'stand-in: {polls} polls, the daemon\'s 7.3/s rates, banner shown, last data kept, HTML names inert; '
               f'one document: its 4.5/s at once')

    root = build_root()
    for name, path in shots.items():
        if root is not None:
            target = os.path.join(root, 'meson-logs', name)
            shutil.copyfile(path, target)
            log_stream(f'screenshot {name}: {target}')
        else:
            log_stream(f'screenshot {name}: {path} (kept with E2E_KEEP=1)')
    d.stop()
