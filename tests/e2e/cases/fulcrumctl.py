"""fulcrumctl, the operator's client, against a real daemon.

One fulcrum (two workers, stats with an admin token whose file has
whitespace around it) with two services:
  - `web` (wrr): demo servers a and b, weight 1 each;
  - `side` (wrr, retries 1): demo server c and a refused address r, so that
    r gathers connect failures while every session lands on c.
Known sessions go through both (uploads of known sizes on `side`), one
session on `side` and one on `web`/a stay open, then:
  - `status`: version, uptime, generation 1, last reload ok at the daemon's
    start, and per service its scheduler, active/total/rejected sessions,
    bytes in/out in human form, the daemon's rates (sessions/s, its peak,
    bytes in/out per second) and servers up/total, all as /stats has them;
  - `servers`: the exact header line, one row per server with address,
    state, weight, backup, sessions, MAX (c has max_connections 1: FULL
    while the held side session is on it), rates, failures, checks failed
    and last change, all as /stats has them;
  - `--json status` and `--json servers` print /stats itself (services
    equal but for the ever-growing last_change_seconds); FULCRUM_URL
    stands in for --url, and --url wins over it;
  - `drain web a`: the confirmation line, a gets no new session (10 go to
    b) while its open session still relays, `ready` (with --json and
    FULCRUM_TOKEN_FILE) restores the 1:1 split; `weight web a 3` makes the
    split 30:10 over 40 sessions, `weight web a 0` sends nothing to a,
    `ready web a` then brings back its configured weight 1, and `maint web
    b` sends everything to a; confirmations show the weight in force and,
    when it differs, the assigned one;
  - errors, each one line on stderr and exit 1: a wrong token (401), no
    token (401), an unknown server (404), an unreadable token file, a bad
    weight in the daemon's eyes never leaves fulcrumctl (exit 2, usage);
    a dead address (`cannot reach ...: Connection refused`), a server that
    accepts and never answers (`no reply within 5s`, after ~5 s), a reply
    that is not JSON; a second daemon without admin_token_file: status
    works, drain answers 403;
  - `reload`: `reloaded: configuration generation 2`, `--json` the daemon's
    reply; a broken file: exit 1 with its first error, the generation
    stays, and `status` shows the failed reload;
  - bad usage: exit 2, the mistake and a pointer to --help on stderr.
"""

import collections
import json
import os
import re
import socket
import subprocess
import time

from harness import TestFailure, binary, connect, expect, expect_eq, finish_session, free_address, get_stats, \
    greeted_session, human_bytes, log_stream, open_greeted, read_greeting, recv_exact, wait_until

DEADLINE = 90
TOKEN = 'e2e-Token_0123456789abcdef'
SIDE_UPLOADS = [3000, 70000, 5, 1]


class Ctl:
    """One finished fulcrumctl run: code, out, err (text)."""

    def __init__(self, code, out, err, seconds):
        self.code, self.out, self.err, self.seconds = code, out, err, seconds

    def __repr__(self):
        return f'exit {self.code}, stdout {self.out!r}, stderr {self.err!r}'


def ctl(*args, url=None, env=None, timeout=30):
    """Runs fulcrumctl with `args` (after --url URL when given); its
    environment has no FULCRUM_URL or FULCRUM_TOKEN_FILE unless `env` sets
    them."""
    command = [binary('FULCRUMCTL')] + (['--url', url] if url else []) + list(args)
    environment = {k: v for k, v in os.environ.items() if k not in ('FULCRUM_URL', 'FULCRUM_TOKEN_FILE')}
    environment.update(env or {})
    start = time.monotonic()
    result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                            env=environment)
    return Ctl(result.returncode, result.stdout.decode('utf-8', 'replace'),
               result.stderr.decode('utf-8', 'replace'), time.monotonic() - start)


def ok(result, what):
    expect(result.code == 0 and result.err == '', f'{what}: {result}')
    return result.out


def fails(result, code, err, what):
    """Exit `code`, nothing on stdout, exactly the line `err` on stderr."""
    expect_eq((result.code, result.out, result.err), (code, '', err + '\n'), f'{what}: exit, stdout, stderr')


DURATION = re.compile(r'\d+d\d+h|\d+h\d+m|\d+m\d+s|\d+s')


def duration_seconds(text):
    """A duration as fulcrumctl prints it -> (low, high) bounds in seconds."""
    m = re.fullmatch(r'(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?', text)
    expect(m is not None and DURATION.fullmatch(text), f'not a fulcrumctl duration: {text!r}')
    d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    low = d * 86400 + h * 3600 + mi * 60 + s
    unit = 3600 if m.group(1) else 60 if m.group(2) else 1
    return low, low + unit


def parse_table(text, what):
    """Rows of a table (header line, then rows of whitespace-free cells) as dicts."""
    lines = text.rstrip('\n').split('\n')
    header = lines[0].split()
    rows = []
    for line in lines[1:]:
        cells = line.split()
        expect_eq(len(cells), len(header), f'{what}: cells in {line!r} under {header}')
        rows.append(dict(zip(header, cells)))
    return header, rows


def echo_upload(address, size, what):
    """A session with a demo server: greeting, `size` bytes up, half-close,
    the same bytes back, EOF. Returns the server's name."""
    payload = bytes((i * 7 + 3) % 251 for i in range(size))
    with connect(address, timeout=10) as sock:
        name = read_greeting(sock, f'{what}: greeting')
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        echo = bytearray()
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            echo += chunk
        expect(bytes(echo) == payload, f'{what}: echo of {size} bytes differs ({len(echo)} bytes back)')
    return name


def split(listen, n, what):
    """n sequential sessions; the servers' greetings counted."""
    return collections.Counter(greeted_session(listen, what=f'{what} {i}')[0] for i in range(n))


def without_last_change(services):
    """Services without what moves by itself: last_change_seconds, and the
    rates (the daemon samples once a second)."""
    out = json.loads(json.dumps(services))
    for service in out:
        service.pop('rate', None)
        for server in service['servers']:
            server['health'].pop('last_change_seconds', None)
            server.pop('rate', None)
    return out


def rates_of(stats):
    return [(s['rate'], [v['rate'] for v in s['servers']]) for s in stats['services']]


def ctl_and_stats(command, url, stats_address):
    """fulcrumctl `command`'s output, and a /stats answer whose rates are
    those of answers before and after it (they move once a second)."""
    for _ in range(20):
        before = get_stats(stats_address)
        out = ok(ctl(command, url=url), command)
        after = get_stats(stats_address)
        if rates_of(before) == rates_of(after):
            return out, after
    raise TestFailure(f'{command}: the rates kept moving between /stats answers')


def whole(value):
    """Rounded half up, as fulcrumctl rounds bytes per second."""
    return int(value + 0.5)


def rate_cells(rate):
    return {'SESS/S': f'{rate["sessions_per_second"]:.1f}', 'IN/S': human_bytes(whole(rate['bytes_in_per_second'])),
            'OUT/S': human_bytes(whole(rate['bytes_out_per_second']))}


def check_status(text, stats):
    lines = text.split('\n')
    head = {}
    for line in lines[:4]:
        m = re.fullmatch(r'(version|uptime|generation|last reload) +(\S.*)', line)
        expect(m is not None, f'status: head line {line!r}')
        head[m.group(1)] = m.group(2)
    expect_eq(head['version'], stats['version'], 'status: version')
    low, high = duration_seconds(head['uptime'])
    expect(low <= stats['uptime_seconds'] + 2 and stats['uptime_seconds'] < high + 2,
           f'status: uptime {head["uptime"]} vs /stats {stats["uptime_seconds"]}')
    expect_eq(head['generation'], str(stats['config']['generation']), 'status: generation')
    expect_eq(head['last reload'], f'ok at {stats["config"]["last_reload"]["at"]}', 'status: last reload')
    expect_eq(lines[4], '', 'status: blank line after the head')
    header, rows = parse_table('\n'.join(lines[5:]), 'status table')
    expect_eq(header, ['SERVICE', 'SCHEDULER', 'ACTIVE', 'TOTAL', 'REJECTED', 'BYTES_IN', 'BYTES_OUT', 'SESS/S',
                       'PEAK/S', 'IN/S', 'OUT/S', 'UP'], 'status: columns')
    expected = [{'SERVICE': s['name'], 'SCHEDULER': s['scheduler'], 'ACTIVE': str(s['sessions']['active']),
                 'TOTAL': str(s['sessions']['total']), 'REJECTED': str(s['sessions']['rejected']),
                 'BYTES_IN': human_bytes(s['bytes']['in']), 'BYTES_OUT': human_bytes(s['bytes']['out']),
                 **rate_cells(s['rate']), 'PEAK/S': f'{s["rate"]["peak_sessions_per_second"]:.1f}',
                 'UP': f'{sum(v["state"] == "up" for v in s["servers"])}/{len(s["servers"])}'}
                for s in stats['services']]
    expect_eq(rows, expected, 'status: rows')


SERVERS_HEADER = re.compile(r'SERVICE +SERVER +ADDRESS +STATE  WEIGHT  BACKUP  ACTIVE +MAX  TOTAL  SESS/S  PEAK/S +IN/S +'
                            r'OUT/S  FAILURES  CHECKS_FAILED  LAST_CHANGE')


def max_cell(sessions):
    if sessions['max'] == 0:
        return '-'
    return 'FULL' if sessions['active'] >= sessions['max'] else str(sessions['max'])


def check_servers(text, stats):
    expect(SERVERS_HEADER.fullmatch(text.split('\n')[0]) is not None, f'servers: header line {text.split(chr(10))[0]!r}')
    header, rows = parse_table(text, 'servers table')
    expected = []
    for s in stats['services']:
        for v in s['servers']:
            expected.append({'SERVICE': s['name'], 'SERVER': v['name'], 'ADDRESS': v['address'], 'STATE': v['state'],
                             'WEIGHT': str(v['weight']), 'BACKUP': 'yes' if v['backup'] else 'no',
                             'ACTIVE': str(v['sessions']['active']), 'MAX': max_cell(v['sessions']),
                             'TOTAL': str(v['sessions']['total']), **rate_cells(v['rate']),
                             'PEAK/S': f'{v["rate"]["peak_sessions_per_second"]:.1f}',
                             'FAILURES': str(v['connect_failures']),
                             'CHECKS_FAILED': str(v['health']['checks_failed'])})
    changes = [row.pop('LAST_CHANGE') for row in rows]
    expect_eq(rows, expected, 'servers: rows')
    for change, (s, v) in zip(changes, [(s, v) for s in stats['services'] for v in s['servers']]):
        low, high = duration_seconds(change)
        seconds = v['health']['last_change_seconds']
        expect(low <= seconds + 2 and seconds < high + 2,
               f'servers: LAST_CHANGE {change} of {s["name"]}/{v["name"]} vs /stats {seconds}')
    return rows


def silent_server(conn, peer):
    """Takes the request and never answers (until the client goes)."""
    while conn.recv(4096):
        pass


def not_json_server(conn, peer):
    """Answers any request with 200 and a body that is not JSON."""
    request = b''
    while b'\r\n\r\n' not in request:
        chunk = conn.recv(4096)
        if not chunk:
            return  # fulcrumctl's reachability probe: connects and closes
        request += chunk
    body = b'{"a":1,}\n'
    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n'
                 b'Content-Length: %d\r\n\r\n%s' % (len(body), body))


def run(t):
    a, b, c = t.demo_server('a'), t.demo_server('b'), t.demo_server('c')
    r = t.dead_address()
    token_file = t.token_file(f'\n  {TOKEN} \n\n')
    wrong_token_file = t.token_file(TOKEN + 'x\n', 'wrong.token')
    stats_address = free_address()
    url = f'http://{stats_address}'
    web, side = free_address(), free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'stats': {'listen': stats_address, 'admin_token_file': token_file},
        'services': [
            {'name': 'web', 'listen': web, 'scheduler': 'wrr',
             'servers': [{'name': 'a', 'address': a.address, 'weight': 1},
                         {'name': 'b', 'address': b.address, 'weight': 1}]},
            {'name': 'side', 'listen': side, 'scheduler': 'wrr', 'retries': 1,
             'servers': [{'name': 'c', 'address': c.address, 'weight': 1, 'max_connections': 1},
                         {'name': 'r', 'address': r, 'weight': 1}]},
        ]})

    # --- known traffic, two sessions left open
    expect_eq(split(web, 10, 'web session'), {'a': 5, 'b': 5}, 'web: sessions per server before any change')
    def c_active():
        return next(v for v in get_stats(stats_address)['services'][1]['servers'] if v['name'] == 'c')[
            'sessions']['active']

    for i, size in enumerate(SIDE_UPLOADS):
        # c takes one session at a time: the client sees the end of the last
        # one a moment before fulcrum (maybe on the other worker) frees c.
        wait_until(lambda: c_active() == 0, 10, f'c free before side session {i}')
        expect_eq(echo_upload(side, size, f'side session {i}'), 'c', f'side session {i}: server')
    d.wait_access_count(10 + len(SIDE_UPLOADS))
    held_side, name = open_greeted(side, what='held side session')
    expect_eq(name, 'c', 'held side session: server')
    # wrr: the next web session goes to a (the cycle restarted at a after 10).
    held_a, name = open_greeted(web, what='held web session')
    expect_eq(name, 'a', 'held web session: server')
    wait_until(lambda: get_stats(stats_address)['services'][0]['sessions']['active'] == 1, 10,
               'the held web session in /stats')

    # --- status and servers
    status, stats = ctl_and_stats('status', url, stats_address)
    check_status(status, stats)
    log_stream('status:\n' + status)
    servers_out, stats = ctl_and_stats('servers', url, stats_address)
    rows = check_servers(servers_out, stats)
    log_stream('servers:\n' + servers_out)
    expect_eq([(row['SERVICE'], row['SERVER']) for row in rows], [('web', 'a'), ('web', 'b'), ('side', 'c'),
                                                                   ('side', 'r')], 'servers: rows in order')
    expect(int(rows[3]['FAILURES']) >= 1, f'side/r: no connect failure shown: {rows[3]}')
    expect_eq((rows[2]['ACTIVE'], rows[2]['MAX']), ('1', 'FULL'), 'side/c with the held session: ACTIVE, MAX')
    side_stats = stats['services'][1]
    expect_eq(side_stats['bytes']['in'], sum(SIDE_UPLOADS), 'side: bytes in (the uploads)')

    # --- --json: /stats itself; FULCRUM_URL; --url wins
    for command in ('status', 'servers'):
        raw = ok(ctl('--json', command, env={'FULCRUM_URL': url}), f'--json {command} with FULCRUM_URL')
        try:
            printed = json.loads(raw)
        except ValueError as e:
            raise TestFailure(f'--json {command}: not JSON ({e}): {raw[:300]!r}')
        current = get_stats(stats_address)
        expect_eq(sorted(printed), sorted(current), f'--json {command}: top-level keys')
        expect_eq(without_last_change(printed['services']), without_last_change(current['services']),
                  f'--json {command}: services')
    dead = t.dead_address()
    ok(ctl('status', url=url, env={'FULCRUM_URL': f'http://{dead}'}), '--url over a dead FULCRUM_URL')
    fails(ctl('status', env={'FULCRUM_URL': f'http://{dead}'}), 1,
          f'fulcrumctl: cannot reach http://{dead}: Connection refused', 'status with a dead FULCRUM_URL')

    # --- drain: no new sessions for a, its open session goes on
    out = ok(ctl('--token-file', token_file, 'drain', 'web', 'a', url=url), 'drain web a')
    expect_eq(out, 'web/a: state drain, weight 0 (assigned 1)\n', 'drain web a: confirmation')
    expect_eq(get_stats(stats_address)['services'][0]['servers'][0]['state'], 'drain', '/stats state of a')
    expect_eq(split(web, 10, 'web session while a drains'), {'b': 10}, 'web: sessions while a drains')
    held_a.sendall(b'still here\n')
    expect_eq(recv_exact(held_a, 11, 'echo on the drained server'), b'still here\n', 'echo on a while draining')
    drained = check_servers(*ctl_and_stats('servers', url, stats_address))
    expect_eq(drained[0]['STATE'], 'drain', 'servers: state of a while it drains')

    # --- ready (FULCRUM_TOKEN_FILE, --json) restores it
    out = ok(ctl('--json', 'ready', 'web', 'a', url=url, env={'FULCRUM_TOKEN_FILE': token_file}), 'ready web a')
    reply = json.loads(out)
    expect_eq((reply['name'], reply['state'], reply['weight']), ('a', 'up', 1), 'ready --json: name, state, weight')
    expect_eq(reply['address'], a.address, 'ready --json: address')
    got = split(web, 10, 'web session after ready')
    expect_eq(dict(got), {'a': 5, 'b': 5}, 'web: sessions after ready')

    # --- weight changes the split
    out = ok(ctl('--token-file', token_file, 'weight', 'web', 'a', '3', url=url), 'weight web a 3')
    expect_eq(out, 'web/a: state up, weight 3\n', 'weight web a 3: confirmation')
    expect_eq(dict(split(web, 40, 'web session at weight 3')), {'a': 30, 'b': 10}, 'web: sessions at weights 3:1')
    out = ok(ctl('--token-file', token_file, 'weight', 'web', 'a', '0', url=url), 'weight web a 0')
    expect_eq(out, 'web/a: state drain, weight 0\n', 'weight web a 0: confirmation')
    expect_eq(dict(split(web, 6, 'web session at weight 0')), {'b': 6}, 'web: sessions with a at weight 0')
    # ready ends a drain by weight 0 too: back to the file's weight.
    out = ok(ctl('--token-file', token_file, 'ready', 'web', 'a', url=url), 'ready web a after weight 0')
    expect_eq(out, 'web/a: state up, weight 1\n', 'ready web a after weight 0: confirmation')

    # --- maint b, a back at 1: everything to a
    out = ok(ctl('--token-file', token_file, 'maint', 'web', 'b', url=url), 'maint web b')
    expect_eq(out, 'web/b: state maint, weight 0 (assigned 1)\n', 'maint web b: confirmation')
    expect_eq(dict(split(web, 6, 'web session with b in maintenance')), {'a': 6}, 'web: sessions with b in maint')
    ok(ctl('--token-file', token_file, 'ready', 'web', 'b', url=url), 'ready web b')
    expect_eq(dict(split(web, 4, 'web session after ready b')), {'a': 2, 'b': 2}, 'web: sessions after ready b')

    # --- errors from the daemon and around it
    fails(ctl('--token-file', wrong_token_file, 'drain', 'web', 'a', url=url), 1,
          'fulcrumctl: the daemon rejected the token (401)', 'drain with a wrong token')
    fails(ctl('drain', 'web', 'a', url=url), 1,
          'fulcrumctl: the daemon rejected the request without a token (401); '
          'give one with --token-file or FULCRUM_TOKEN_FILE', 'drain without a token')
    fails(ctl('--token-file', token_file, 'drain', 'web', 'nope', url=url), 1,
          'fulcrumctl: no such server "nope" in service "web" (404)', 'drain of an unknown server')
    fails(ctl('--token-file', token_file, 'drain', 'nope', 'a', url=url), 1,
          'fulcrumctl: no such service "nope" (404)', 'drain in an unknown service')
    missing = t.path('missing.token')
    fails(ctl('--token-file', missing, 'drain', 'web', 'a', url=url), 1,
          f'fulcrumctl: cannot read token file {missing}: No such file or directory', 'an unreadable token file')
    states = [v['state'] for v in get_stats(stats_address)['services'][0]['servers']]
    expect_eq(states, ['up', 'up'], 'web: states after the refused writes')

    fails(ctl('status', url=f'http://{dead}'), 1, f'fulcrumctl: cannot reach http://{dead}: Connection refused',
          'status of a dead address')
    silent = t.tcp_server(silent_server, name='silent')
    result = ctl('servers', url=f'http://{silent.address}')
    fails(result, 1, f'fulcrumctl: cannot reach http://{silent.address}: no reply within 5s', 'a silent server')
    expect(4.5 <= result.seconds <= 8, f'a silent server: fulcrumctl gave up after {result.seconds:.2f}s, not ~5s')
    bad = t.tcp_server(not_json_server, name='not-json')
    fails(ctl('status', url=f'http://{bad.address}'), 1,
          "fulcrumctl: the daemon's reply is not valid JSON (line 1, column 8: trailing comma in an object)",
          'a reply that is not JSON')

    # --- bad usage: exit 2, the mistake and where the usage is
    for args, message in [((), 'no command given'),
                          (('frobnicate',), "unknown command 'frobnicate'"),
                          (('drain', 'web'), 'drain takes SERVICE SERVER, got 1 argument'),
                          (('weight', 'web', 'a', '1001'), "weight must be an integer 0..1000, got '1001'"),
                          (('weight', 'web', 'a', '-1'), "weight must be an integer 0..1000, got '-1'"),
                          (('--bogus', 'status'), "unknown option '--bogus'"),
                          (('--url', 'https://x', 'status'),
                           "invalid URL 'https://x': only http:// is supported (the stats endpoint speaks plain HTTP)")]:
        result = ctl(*args)
        expect_eq((result.code, result.out, result.err),
                  (2, '', f"fulcrumctl: {message}\nTry 'fulcrumctl --help' for the usage.\n"), f'usage error {args}')
    help_text = ok(ctl('--help'), '--help')
    expect(help_text.startswith('usage: fulcrumctl '), f'--help: {help_text[:80]!r}')
    expect_eq(ok(ctl('--version'), '--version'), f'fulcrumctl {stats["version"]}\n', '--version')

    # --- reload: the new generation; a broken file: the first error, the old generation stays
    out = ok(ctl('--token-file', token_file, 'reload', url=url), 'reload')
    expect_eq(out, 'reloaded: configuration generation 2\n', 'reload: confirmation')
    reply = json.loads(ok(ctl('--json', '--token-file', token_file, 'reload', url=url), 'reload --json'))
    expect_eq((reply.get('ok'), reply.get('generation')), (True, 3), 'reload --json: ok, generation')
    with open(d.config_path) as f:
        good_config = f.read()
    with open(d.config_path, 'w') as f:
        f.write(good_config + 'frobnicate: 1\n')
    bad_line = good_config.count('\n') + 1
    fails(ctl('--token-file', token_file, 'reload', url=url), 1,
          f'fulcrumctl: reload failed: {d.config_path}:{bad_line}:1: unknown key "frobnicate" at top level '
          f'(the running configuration stays, generation 3)', 'reload of a broken file')
    with open(d.config_path, 'w') as f:
        f.write(good_config)
    head = ok(ctl('status', url=url), 'status after the failed reload').split('\n')
    expect_eq(head[2], 'generation   3', 'status: generation after two reloads and a failed one')
    expect(head[3].startswith('last reload  failed at ') and 'frobnicate' in head[3],
           f'status: last reload after the failed one: {head[3]!r}')
    log_stream('status after the failed reload:\n' + '\n'.join(head[:4]))

    finish_session(held_side, 'held side session')
    finish_session(held_a, 'held web session')
    d.wait_access_count(10 + len(SIDE_UPLOADS) + 2 + 10 + 10 + 40 + 6 + 6 + 4)
    expect(len(d.find_logs('admin change')) >= 7, 'admin change log lines for the writes')
    d.stop()

    # --- a daemon without admin_token_file: reads work, writes answer 403
    plain_stats = free_address()
    plain_listen = free_address()
    plain = t.daemon({'global': {'workers': 1}, 'stats': {'listen': plain_stats},
                      'services': [{'name': 'web', 'listen': plain_listen,
                                    'servers': [{'name': 'a', 'address': a.address}]}]}, name='fulcrum-no-token')
    plain_url = f'http://{plain_stats}'
    check_servers(*ctl_and_stats('servers', plain_url, plain_stats))
    fails(ctl('--token-file', token_file, 'drain', 'web', 'a', url=plain_url), 1,
          'fulcrumctl: the daemon has no admin token configured (403)', 'drain without a token configured')
    fails(ctl('drain', 'web', 'a', url=plain_url), 1,
          'fulcrumctl: the daemon has no admin token configured (403)', 'drain with neither token')
    expect_eq(get_stats(plain_stats)['services'][0]['servers'][0]['state'], 'up', 'state after a refused drain')
    plain.stop()
