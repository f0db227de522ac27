"""/stats and /metrics hold exactly the sessions and bytes that went through.

Three services (wrr, two workers) and the stats endpoint:
  - `main` (retries 2): demo servers a and b and a refused address r, each
    weight 1. Six sessions, one after another, each upload a different
    number of bytes (1 byte .. 1 MB), half-close and read the greeting and
    the whole echo back (verified by SHA-256).
  - `side`: demo server c (weight 1) and demo server d (weight 0, drained).
    Three sessions of different sizes, all on c.
  - `gone` (retries 0): one refused address x. Two clients are closed
    without a byte: both sessions are rejected.
Then GET /stats must show, exactly: per service sessions (active 0, total,
rejected), bytes in (client -> server: the sums of the uploads) and out
(server -> client: greetings + echoes), local_errors 0; per server the
sessions sent to it, its bytes, its connect failures (those of r counted
from the `connect failed` log lines: a refused connect is the server's,
not a local error), local_errors 0, state up (d: drain), weight, backup, max, health
disabled. The access log agrees session by session. /metrics (parsed as
Prometheus text) carries the same numbers, and the build, generation,
reload and process figures.

Then a burst of short echo sessions from 4 client threads while /stats and
/metrics are polled alternately: no counter ever goes down from one answer
to the next, and after the burst every total is exact again.

Also: uptime_seconds rises with the wall clock, config.generation is 1,
last_reload is ok at an RFC 3339 UTC time of the daemon's start; /healthz
answers `ok`, unknown paths 404, POST /stats 405.
"""

import datetime
import os
import re
import time

from harness import upload_and_check_echo, MiB, PatternStream, SessionLoad, TestFailure, connect, expect, expect_eof, expect_eq, \
    free_address, get_metrics, get_stats, http_get, http_request, local_address, log_stream, \
    read_greeting, wait_until

DEADLINE = 90
MAIN_SIZES = [1, 999, 4096, 65537, 262143, 1000003]
SIDE_SIZES = [7, 7777, 77777]
GONE_SESSIONS = 2
POLLS = 40

SERVICE_COUNTERS = ('total', 'rejected', 'bytes_in', 'bytes_out', 'local_errors')
SERVER_COUNTERS = ('total', 'connect_failures', 'bytes_in', 'bytes_out', 'checks_failed', 'local_errors')


def echo_exact(address, stream, what):
    """Connects, reads the greeting, uploads `stream` (from a second thread)
    and half-closes while reading the echo to EOF; the echo must be the
    upload. Returns (server NAME, client address)."""
    with connect(address, timeout=20) as sock:
        me = local_address(sock)
        name = read_greeting(sock, f'{what}: greeting')
        upload_and_check_echo(sock, stream, what, timeout=20)
    return name, me


def flatten_stats(stats):
    """{service: {counters}}, {(service, server): {counters}} from a /stats document."""
    services, servers = {}, {}
    for s in stats['services']:
        services[s['name']] = {'active': s['sessions']['active'], 'total': s['sessions']['total'],
                               'rejected': s['sessions']['rejected'],
                               'bytes_in': s['bytes']['in'], 'bytes_out': s['bytes']['out'],
                               'local_errors': s['local_errors']}
        for v in s['servers']:
            servers[(s['name'], v['name'])] = {
                'active': v['sessions']['active'], 'total': v['sessions']['total'],
                'connect_failures': v['connect_failures'],
                'bytes_in': v['bytes']['in'], 'bytes_out': v['bytes']['out'],
                'checks_failed': v['health']['checks_failed'], 'local_errors': v['local_errors']}
    return services, servers


def flatten_metrics(metrics, service_names, server_keys):
    """The same shape as flatten_stats, read from /metrics."""
    services = {name: {
        'active': metrics.get('fulcrum_service_sessions_active', service=name),
        'total': metrics.get('fulcrum_service_sessions_total', service=name),
        'rejected': metrics.get('fulcrum_service_sessions_rejected_total', service=name),
        'bytes_in': metrics.get('fulcrum_service_bytes_in_total', service=name),
        'bytes_out': metrics.get('fulcrum_service_bytes_out_total', service=name),
        'local_errors': metrics.get('fulcrum_service_local_errors_total', service=name)} for name in service_names}
    servers = {(service, server): {
        'active': metrics.get('fulcrum_server_sessions_active', service=service, server=server),
        'total': metrics.get('fulcrum_server_sessions_total', service=service, server=server),
        'connect_failures': metrics.get('fulcrum_server_connect_failures_total', service=service, server=server),
        'bytes_in': metrics.get('fulcrum_server_bytes_in_total', service=service, server=server),
        'bytes_out': metrics.get('fulcrum_server_bytes_out_total', service=service, server=server),
        'checks_failed': metrics.get('fulcrum_server_health_checks_failed_total', service=service, server=server),
        'local_errors': metrics.get('fulcrum_server_local_errors_total', service=service, server=server)}
        for service, server in server_keys}
    # Counts are integers in the text too.
    for table in (services, servers):
        for key, counters in table.items():
            for counter, value in counters.items():
                expect(value == int(value), f'metrics: {counter} of {key} is not an integer: {value}')
                counters[counter] = int(value)
    return services, servers


def is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_shape(stats, config_services, addresses):
    """Every field the SPEC names, with its type and its configured value."""
    for key in ('version', 'uptime_seconds', 'config', 'services'):
        expect(key in stats, f'/stats lacks {key}')
    expect(isinstance(stats['version'], str) and stats['version'], f'/stats version: {stats["version"]!r}')
    expect(isinstance(stats['uptime_seconds'], (int, float)) and not isinstance(stats['uptime_seconds'], bool)
           and stats['uptime_seconds'] >= 0, f'/stats uptime_seconds: {stats["uptime_seconds"]!r}')
    expect_eq([s['name'] for s in stats['services']], [s['name'] for s in config_services], 'services in /stats')
    for service, conf in zip(stats['services'], config_services):
        name = service['name']
        expect_eq(service['listen'], [conf['listen']], f'{name}: listen')
        expect_eq(service['scheduler'], 'wrr', f'{name}: scheduler')
        expect_eq(sorted(service['sessions']), ['active', 'denied', 'limited', 'proxy_header_errors', 'rejected',
                                                'total'],
                  f'{name}: sessions keys')
        expect_eq(sorted(service['bytes']), ['in', 'out'], f'{name}: bytes keys')
        for value in list(service['sessions'].values()) + list(service['bytes'].values()):
            expect(is_count(value), f'{name}: a count that is not a non-negative integer: {service}')
        expect_eq([v['name'] for v in service['servers']], [v['name'] for v in conf['servers']],
                  f'{name}: servers')
        for server, server_conf in zip(service['servers'], conf['servers']):
            what = f'{name}/{server["name"]}'
            expect_eq(server['address'], addresses[server['name']], f'{what}: address')
            expect_eq(server['weight'], server_conf['weight'], f'{what}: weight')
            expect_eq(server['state'], 'drain' if server_conf['weight'] == 0 else 'up', f'{what}: state')
            expect_eq(server['backup'], False, f'{what}: backup')
            expect_eq(sorted(server['sessions']), ['active', 'closed_on_down', 'max', 'total'],
                      f'{what}: sessions keys')
            expect_eq(server['sessions']['max'], 0, f'{what}: sessions.max (no limit configured)')
            expect_eq(server['sessions']['closed_on_down'], 0, f'{what}: sessions.closed_on_down (keep)')
            expect_eq(sorted(server['bytes']), ['in', 'out'], f'{what}: bytes keys')
            for key in ('enabled', 'checks_failed', 'last_change_seconds'):
                expect(key in server['health'], f'{what}: health lacks {key}')
            expect_eq(server['health']['enabled'], False, f'{what}: health.enabled (no health_check)')
            change = server['health']['last_change_seconds']
            expect(isinstance(change, (int, float)) and not isinstance(change, bool)
                   and 0 <= change <= stats['uptime_seconds'] + 0.001,
                   f'{what}: health.last_change_seconds {change!r} not within 0..uptime')
            for value in [server['sessions']['active'], server['sessions']['total'], server['connect_failures'],
                          server['bytes']['in'], server['bytes']['out'], server['health']['checks_failed']]:
                expect(is_count(value), f'{what}: a count that is not a non-negative integer: {server}')


def rfc3339_utc(text, what):
    m = re.fullmatch(r'(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z', text)
    expect(m is not None, f'{what}: {text!r} is not RFC 3339 UTC (YYYY-MM-DDTHH:MM:SS[.frac]Z)')
    try:
        stamp = datetime.datetime.strptime(m.group(1), '%Y-%m-%dT%H:%M:%S')
    except ValueError:
        raise TestFailure(f'{what}: {text!r} is not a valid date and time')
    fraction = float('0' + m.group(2)) if m.group(2) else 0.0
    return stamp.replace(tzinfo=datetime.timezone.utc).timestamp() + fraction


def run(t):
    a, b, c, d_server = t.demo_server('a'), t.demo_server('b'), t.demo_server('c'), t.demo_server('d')
    r, x = t.dead_address(), t.dead_address()
    addresses = {'a': a.address, 'b': b.address, 'r': r, 'c': c.address, 'd': d_server.address, 'x': x}
    greetings = {'a': a.greeting, 'b': b.greeting, 'c': c.greeting, 'd': d_server.greeting}
    listen = {'main': free_address(), 'side': free_address(), 'gone': free_address()}
    stats_address = free_address()
    services = [
        {'name': 'main', 'listen': listen['main'], 'scheduler': 'wrr', 'retries': 2,
         'servers': [{'name': 'a', 'address': a.address, 'weight': 1},
                     {'name': 'b', 'address': b.address, 'weight': 1},
                     {'name': 'r', 'address': r, 'weight': 1}]},
        {'name': 'side', 'listen': listen['side'], 'scheduler': 'wrr',
         'servers': [{'name': 'c', 'address': c.address, 'weight': 1},
                     {'name': 'd', 'address': d_server.address, 'weight': 0}]},
        {'name': 'gone', 'listen': listen['gone'], 'scheduler': 'wrr', 'retries': 0,
         'servers': [{'name': 'x', 'address': x, 'weight': 1}]},
    ]
    before_start = time.time()
    d = t.daemon({'global': {'workers': 2}, 'stats': {'listen': stats_address}, 'services': services})
    server_keys = [(s['name'], v['name']) for s in services for v in s['servers']]
    service_names = [s['name'] for s in services]

    # --- the endpoint before any session: all zero, the fixed figures right
    first = get_stats(stats_address)
    first_wall = time.time()
    check_shape(first, services, addresses)
    expect_eq(first['config']['generation'], 1, 'config.generation')
    reload = first['config']['last_reload']
    expect_eq((reload.get('ok'), reload.get('error')), (True, None), 'config.last_reload ok, error')
    at = rfc3339_utc(reload.get('at'), 'config.last_reload.at')
    expect(int(before_start) <= at <= first_wall,
           f'config.last_reload.at {reload["at"]} is not between the daemon start ({before_start:.3f}) '
           f'and the first answer ({first_wall:.3f})')
    start_services, start_servers = flatten_stats(first)
    expect(all(v == 0 for counters in list(start_services.values()) + list(start_servers.values())
               for v in counters.values()), f'/stats counters before any session: {start_services} {start_servers}')

    # --- plain HTTP behaviour
    healthz = http_get(stats_address, '/healthz')
    expect_eq((healthz.status, healthz.body), (200, b'ok\n'), 'GET /healthz status and body')
    for path in ('/nope', '/stats/extra', '/metricsx'):
        expect_eq(http_get(stats_address, path).status, 404, f'status of GET {path}')
    expect_eq(http_request(stats_address, 'POST', '/stats', body=b'{}').status, 405, 'status of POST /stats')

    # --- known sessions
    sessions = []  # (service, server, bytes uploaded, client address)
    for i, size in enumerate(MAIN_SIZES):
        name, me = echo_exact(listen['main'], PatternStream(seed=100 + i, size=size), f'main session {i}')
        sessions.append(('main', name, size, me))
    for i, size in enumerate(SIDE_SIZES):
        name, me = echo_exact(listen['side'], PatternStream(seed=200 + i, size=size), f'side session {i}')
        sessions.append(('side', name, size, me))
    gone_clients = []
    for i in range(GONE_SESSIONS):
        with connect(listen['gone'], timeout=10) as sock:
            gone_clients.append(local_address(sock))
            expect_eof(sock, f'gone session {i}: a client of a service whose only server refuses')
    log_stream('sessions: ' + ', '.join(f'{service}:{server}:{size}' for service, server, size, _ in sessions))
    expect(all(server in ('a', 'b') for service, server, _, _ in sessions if service == 'main'),
           'main sessions greeted by a server other than a and b')
    expect(all(server == 'c' for service, server, _, _ in sessions if service == 'side'),
           'side sessions greeted by a server other than c')

    # Counters are added when a session ends, before its access log line.
    known = len(sessions) + GONE_SESSIONS
    d.wait_access_count(known)
    log = {line['client']: line for line in d.access_log_lines()}
    for service, server, size, me in sessions:
        line = log.get(me)
        expect(line is not None, f'no access log line for client {me}')
        expect_eq((line['service'], line['server'], line['bytes_in'], line['bytes_out'], line['end']),
                  (service, server, size, len(greetings[server]) + size, 'client_close'),
                  f'access log service, server, bytes_in, bytes_out, end of {me}')
    for me in gone_clients:
        line = log.get(me)
        expect(line is not None, f'no access log line for client {me}')
        expect_eq((line['service'], line['server'], line['bytes_in'], line['bytes_out'], line['end']),
                  ('gone', '-', 0, 0, 'connect_failed'), f'access log of gone client {me}')
    refusals = {name: len(d.find_logs('connect failed', service=service, server=name))
                for service, name in (('main', 'r'), ('gone', 'x'))}
    for service, name in server_keys:
        if name not in refusals:
            expect_eq(len(d.find_logs('connect failed', service=service, server=name)), 0,
                      f'`connect failed` lines of {service}/{name}')
    expect(refusals['r'] >= 1, f'r was never tried in {len(MAIN_SIZES)} wrr sessions over a, b, r')
    expect_eq(refusals['x'], GONE_SESSIONS, '`connect failed` lines of gone/x (retries 0: one per session)')
    log_stream(f'connect failures from the log: {refusals}')

    def expected_counters(extra_main=()):
        """{service: counters}, {(service, server): counters} for the known
        sessions plus `extra_main` ((server, bytes in, bytes out) on main).
        A server's sessions.total counts every session sent to it, those
        whose connect then failed included: r's total is its failures."""
        services_x = {name: dict.fromkeys(('active', 'total', 'rejected', 'bytes_in', 'bytes_out',
                                           'local_errors'), 0) for name in service_names}
        servers_x = {key: dict.fromkeys(('active', 'total', 'connect_failures', 'bytes_in', 'bytes_out',
                                         'checks_failed', 'local_errors'), 0) for key in server_keys}
        flows = [(service, server, size, len(greetings[server]) + size) for service, server, size, _ in sessions]
        flows += [('main', server, bytes_in, bytes_out) for server, bytes_in, bytes_out in extra_main]
        for service, server, bytes_in, bytes_out in flows:
            for counters in (services_x[service], servers_x[(service, server)]):
                counters['total'] += 1
                counters['bytes_in'] += bytes_in
                counters['bytes_out'] += bytes_out
        services_x['gone']['total'] = services_x['gone']['rejected'] = GONE_SESSIONS
        for service, name in (('main', 'r'), ('gone', 'x')):
            servers_x[(service, name)]['total'] = servers_x[(service, name)]['connect_failures'] = refusals[name]
        return services_x, servers_x

    def check_exact(expected, when):
        want_services, want_servers = expected
        stats = get_stats(stats_address)
        check_shape(stats, services, addresses)
        got_services, got_servers = flatten_stats(stats)
        for name in service_names:
            expect_eq(got_services[name], want_services[name], f'/stats {when}: service {name}')
        for key in server_keys:
            expect_eq(got_servers[key], want_servers[key], f'/stats {when}: server {key[0]}/{key[1]}')
        metrics, _ = get_metrics(stats_address)
        got_services, got_servers = flatten_metrics(metrics, service_names, server_keys)
        for name in service_names:
            expect_eq(got_services[name], want_services[name], f'/metrics {when}: service {name}')
        for key in server_keys:
            expect_eq(got_servers[key], want_servers[key], f'/metrics {when}: server {key[0]}/{key[1]}')
        for service in services:
            for server in service['servers']:
                labels = {'service': service['name'], 'server': server['name']}
                expect_eq(metrics.get('fulcrum_server_weight', **labels), server['weight'],
                          f'/metrics fulcrum_server_weight of {labels}')
                expect_eq(metrics.get('fulcrum_server_up', **labels), 1,
                          f'/metrics fulcrum_server_up of {labels} (no health checks: up)')
        return stats, metrics

    stats, metrics = check_exact(expected_counters(), 'after the known sessions')
    log_stream(f'exact after {known} sessions: ' + ', '.join(
        f'{s["name"]} total={s["sessions"]["total"]} in={s["bytes"]["in"]} out={s["bytes"]["out"]}'
        for s in stats['services']))

    # --- the fixed figures of /metrics
    version = stats['version']
    expect_eq(metrics.get('fulcrum_build_info', version=version), 1, 'fulcrum_build_info{version} (the /stats one)')
    expect_eq(metrics.get('fulcrum_config_generation'), 1, 'fulcrum_config_generation')
    expect_eq((metrics.get('fulcrum_config_reloads_total', result='success'),
               metrics.get('fulcrum_config_reloads_total', result='failure')), (0, 0),
              'fulcrum_config_reloads_total success, failure')
    types = {'fulcrum_build_info': 'gauge', 'fulcrum_config_generation': 'gauge',
             'fulcrum_config_reloads_total': 'counter', 'fulcrum_service_sessions_active': 'gauge',
             'fulcrum_service_sessions_total': 'counter', 'fulcrum_service_sessions_rejected_total': 'counter',
             'fulcrum_service_bytes_in_total': 'counter', 'fulcrum_service_bytes_out_total': 'counter',
             'fulcrum_server_up': 'gauge', 'fulcrum_server_weight': 'gauge', 'fulcrum_server_sessions_active': 'gauge',
             'fulcrum_server_sessions_total': 'counter', 'fulcrum_server_connect_failures_total': 'counter',
             'fulcrum_server_bytes_in_total': 'counter', 'fulcrum_server_bytes_out_total': 'counter',
             'fulcrum_server_health_checks_failed_total': 'counter', 'process_open_fds': 'gauge',
             'fulcrum_service_local_errors_total': 'counter', 'fulcrum_server_local_errors_total': 'counter',
             'process_max_fds': 'gauge', 'process_resident_memory_bytes': 'gauge',
             'process_cpu_seconds_total': 'counter', 'process_start_time_seconds': 'gauge'}
    for name, kind in types.items():
        expect_eq(metrics.types.get(name), kind, f'# TYPE of {name}')
    with open(f'/proc/{d.pid}/limits') as f:
        soft_nofile = next(int(line.split()[3]) for line in f if line.startswith('Max open files'))
    expect_eq(metrics.get('process_max_fds'), soft_nofile, 'process_max_fds (the soft RLIMIT_NOFILE)')
    # Idle, the daemon's descriptors stay put; while it renders /metrics it
    # holds one more: the stats connection asking.
    counts = []

    def settled():
        counts.append(len(os.listdir(f'/proc/{d.pid}/fd')))
        return len(counts) >= 5 and len(set(counts[-5:])) == 1
    wait_until(settled, 10, 'the daemon\'s descriptor count to settle', interval=0.05)
    open_fds = get_metrics(stats_address)[0].get('process_open_fds')
    expect_eq(open_fds, counts[-1] + 1, f'process_open_fds (/proc/PID/fd had {counts[-1]} before the request)')
    resident = metrics.get('process_resident_memory_bytes')
    expect(MiB <= resident <= 4096 * MiB, f'process_resident_memory_bytes {resident}: not 1 MiB..4 GiB')
    cpu = metrics.get('process_cpu_seconds_total')
    expect(0 <= cpu <= d.cpu_seconds() + 0.05, f'process_cpu_seconds_total {cpu} vs /proc: {d.cpu_seconds()}')
    log_stream(f'process: open_fds {open_fds:g}, resident {resident / MiB:.1f} MiB, cpu {cpu:.3f}s')
    started = metrics.get('process_start_time_seconds')
    expect(abs(started - at) <= 1, f'process_start_time_seconds {started} vs last_reload.at {at}')

    # --- uptime follows the wall clock
    u1, w1 = get_stats(stats_address)['uptime_seconds'], time.monotonic()
    time.sleep(1.2)
    u2, w2 = get_stats(stats_address)['uptime_seconds'], time.monotonic()
    expect(1.1 <= u2 - u1 <= (w2 - w1) + 0.1, f'uptime_seconds went {u1} -> {u2} in {w2 - w1:.3f}s')

    # --- a burst with polls in between: no counter ever goes back
    load = SessionLoad(listen['main'], threads=4, max_sessions=5000, gap=0.001, what='burst').start()
    previous, polls, busy = None, [], 0
    for i in range(POLLS):
        if i % 2 == 0:
            got_services, got_servers = flatten_stats(get_stats(stats_address))
        else:
            got_services, got_servers = flatten_metrics(get_metrics(stats_address)[0], service_names, server_keys)
        busy += got_services['main']['active'] > 0
        current = {('service', name, k): got_services[name][k] for name in service_names for k in SERVICE_COUNTERS}
        current.update({('server', key, k): got_servers[key][k] for key in server_keys for k in SERVER_COUNTERS})
        if previous is not None:
            back = {k: (previous[k], v) for k, v in current.items() if v < previous[k]}
            expect(not back, f'poll {i} ({"/stats" if i % 2 == 0 else "/metrics"}): counters went back: {back}')
        previous = current
        polls.append(got_services['main']['total'])
        time.sleep(0.03)
    burst = load.stop()
    failed = [s for s in burst if s.error]
    expect(not failed, f'{len(failed)} burst sessions failed: {failed[:5]}')
    expect(len(set(polls)) >= 5, f'the polls saw main\'s total change only {len(set(polls))} times: {polls}')
    log_stream(f'burst: {len(burst)} sessions; {POLLS} polls saw main total {polls[0]}..{polls[-1]}, '
               f'active > 0 in {busy}')

    d.wait_access_count(known + len(burst))
    # echo_session: `load session N\n` up, greeting + the same line down.
    extra = [(s.server, len(f'load session {s.n}\n'), len(greetings[s.server]) + len(f'load session {s.n}\n'))
             for s in burst]
    refusals['r'] = len(d.find_logs('connect failed', service='main', server='r'))
    check_exact(expected_counters(extra), 'after the burst')
    expect_eq(sum(line['service'] == 'main' for line in d.access_log_lines()), len(MAIN_SIZES) + len(burst),
              'access log lines of service main')
    d.stop()
