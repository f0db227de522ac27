"""Why a server failed, and how many times in the last minute, in /stats and fulcrumctl.

One fulcrum (two workers) with three services:
  - `checked` (rr, health checks every 1 s with a 1 s timeout, so that a
    busy machine fails no check of ok, rise 1, fall 2): demo server
    ok and r, an address bound by this test where nothing listens (connects
    refused);
  - `passive` (rr, retries 1, health checks every 8760 h, the longest
    interval, so that the first active one, at a random point of the first
    interval, falls in the test's 70 s once in 450,000 runs): demo servers
    p and q;
  - `unchecked` (rr, retries 1, no health check): demo server u and x, a
    refused address.
Then:
  - r goes down: its health shows last_error "connect refused" and
    last_error_seconds within 0..uptime; checks_failed_last_minute equals
    checks_failed exactly (the daemon is younger than a minute, so every
    failure is in it); ok has last_error null, last_error_seconds null and
    no failure;
  - p is killed and sessions go on: each one that tries p is refused and
    retried on q, counted passively; after p is down its checks_failed
    (all, and in the last minute) equals its `connect failed` log lines
    exactly, and
    its last_error is "connect refused";
  - 10 sessions on `unchecked`: x's connect_failures_last_minute equals its
    connect_failures and its `connect failed` log lines; without health
    checks it has no last_error;
  - a demo server takes r's address: r comes up, checks stop failing. Once
    60 s (samples) have passed, every *_last_minute count is 0 again while
    the totals stay; r keeps its last_error with last_error_seconds past 59;
    `fulcrumctl servers` ends with one `last error` line per server that has
    one (r, p), with the counts of the last minute (0).
"""

import os
import re
import socket
import subprocess
import time

from harness import TestSkip, binary, echo_session, expect, expect_eq, free_port, free_address, get_stats, log_stream, \
    wait_until

DEADLINE = 150


def servers_of(stats):
    return {(s['name'], v['name']): v for s in stats['services'] for v in s['servers']}


def young(uptime):
    """Every failure so far is in the last minute while the daemon is younger
    than that (its first sample holds zeros)."""
    if uptime >= 59:
        raise TestSkip(f'the daemon is {uptime}s old already: the last minute no longer holds every failure')


def logged_failures(d, server, service, name):
    """The server's /stats entry once its `connect failed` log lines (written
    by the log thread, after the counter moved) are as many as its
    connect_failures."""
    def agreed():
        v = server((service, name))
        lines = len(d.find_logs('connect failed', service=service, server=name))
        return v if lines == v['connect_failures'] else None
    return wait_until(agreed, 10, f'{service}/{name}: `connect failed` lines as many as its connect_failures')


def run(t):
    ok, p, q, u = t.demo_server('ok'), t.demo_server('p'), t.demo_server('q'), t.demo_server('u')
    x = t.dead_address()
    # r: bound without listen() (refused) until a demo server takes it over.
    r_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    r_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    r_socket.bind(('127.0.0.1', free_port()))
    t.own_socket(r_socket)
    r = f'127.0.0.1:{r_socket.getsockname()[1]}'
    listen = {name: free_address() for name in ('checked', 'passive', 'unchecked')}
    stats_address = free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'stats': {'listen': stats_address},
        'services': [
            {'name': 'checked', 'listen': listen['checked'], 'scheduler': 'rr',
             'health_check': {'interval': '1s', 'timeout': '1s', 'rise': 1, 'fall': 2},
             'servers': [{'name': 'ok', 'address': ok.address}, {'name': 'r', 'address': r}]},
            {'name': 'passive', 'listen': listen['passive'], 'scheduler': 'rr', 'retries': 1,
             'health_check': {'interval': '8760h', 'timeout': '1s', 'rise': 1, 'fall': 2},
             'servers': [{'name': 'p', 'address': p.address}, {'name': 'q', 'address': q.address}]},
            {'name': 'unchecked', 'listen': listen['unchecked'], 'scheduler': 'rr', 'retries': 1,
             'servers': [{'name': 'u', 'address': u.address}, {'name': 'x', 'address': x}]},
        ]})

    def server(key):
        return servers_of(get_stats(stats_address))[key]

    # --- active checks: r down, with its reason
    wait_until(lambda: server(('checked', 'r'))['state'] == 'down', 10, 'checked/r to be down')
    stats = get_stats(stats_address)
    servers = servers_of(stats)
    uptime = stats['uptime_seconds']
    health = servers[('checked', 'r')]['health']
    expect_eq(health['last_error'], 'connect refused', 'checked/r: last_error')
    age = health['last_error_seconds']
    expect(isinstance(age, float) and 0 <= age <= uptime, f'checked/r: last_error_seconds {age!r}, uptime {uptime}')
    expect(health['checks_failed'] >= 2, f'checked/r: {health["checks_failed"]} failed checks, fall is 2')
    young(uptime)
    expect_eq(health['checks_failed_last_minute'], health['checks_failed'], 'checked/r: failed checks in the last minute')
    expect_eq(servers[('checked', 'r')]['connect_failures_last_minute'], 0, 'checked/r: failed connects, last minute')
    for key in (('checked', 'ok'), ('passive', 'p'), ('passive', 'q'), ('unchecked', 'u'), ('unchecked', 'x')):
        v = servers[key]
        expect_eq((v['health']['last_error'], v['health']['last_error_seconds'], v['health']['checks_failed'],
                   v['health']['checks_failed_last_minute'], v['connect_failures_last_minute']),
                  (None, None, 0, 0, 0), f'{key[0]}/{key[1]}: last error, its age and failures before any')
    log_stream(f'checked/r down: {health}')

    # --- passive: p killed, sessions find out
    p.kill()
    for n in range(20):
        expect_eq(echo_session(listen['passive'], n)[0], 'q', f'passive session {n}: server')
        if server(('passive', 'p'))['state'] == 'down':
            break
    wait_until(lambda: server(('passive', 'p'))['state'] == 'down', 5, 'passive/p to be down')
    v = logged_failures(d, server, 'passive', 'p')
    refused = v['connect_failures']
    checks = v['health']['checks_failed']
    expect_eq(checks, refused, 'passive/p: failed checks (each a refused connect of a session)')
    expect_eq(v['health']['checks_failed_last_minute'], checks, 'passive/p: failed checks in the last minute')
    expect_eq(v['health']['last_error'], 'connect refused', 'passive/p: last_error')
    expect_eq(v['connect_failures_last_minute'], refused, 'passive/p: failed connects in the last minute')
    log_stream(f'passive/p down after {refused} refused connects ({checks} failed checks): {v["health"]}')

    # --- no health checks: counted, no reason kept
    for n in range(10):
        expect_eq(echo_session(listen['unchecked'], 100 + n)[0], 'u', f'unchecked session {n}: server')
    v = logged_failures(d, server, 'unchecked', 'x')
    refused_x = v['connect_failures']
    expect(refused_x >= 5, f'unchecked/x tried only {refused_x} times in 10 rr sessions')
    expect_eq((v['connect_failures'], v['connect_failures_last_minute'], v['health']['checks_failed'],
               v['health']['last_error']), (refused_x, refused_x, 0, None),
              'unchecked/x: failed connects (all, last minute), failed checks, last error')

    # --- r comes back; a minute later nothing is recent any more
    r_socket.close()
    t.demo_server('r', address=r)
    wait_until(lambda: server(('checked', 'r'))['state'] == 'up', 10, 'checked/r to be up')
    totals = {key: (v['connect_failures'], v['health']['checks_failed'])
              for key, v in servers_of(get_stats(stats_address)).items()}
    recovered = time.monotonic()

    def all_quiet():
        servers = servers_of(get_stats(stats_address))
        return all(v['connect_failures_last_minute'] == 0 and v['health']['checks_failed_last_minute'] == 0
                   for v in servers.values())
    wait_until(all_quiet, 90, 'every failure count of the last minute to be 0', interval=0.5)
    log_stream(f'every *_last_minute count 0, {time.monotonic() - recovered:.1f}s after r came up')
    stats = get_stats(stats_address)
    servers = servers_of(stats)
    expect_eq({key: (v['connect_failures'], v['health']['checks_failed']) for key, v in servers.items()}, totals,
              'failed connects and checks (totals) after r came up')
    health = servers[('checked', 'r')]['health']
    expect(health['last_error'] == 'connect refused' and health['last_error_seconds'] >= 59,
           f'checked/r: last error kept, a minute old: {health}')

    environment = {k: v for k, v in os.environ.items() if k not in ('FULCRUM_URL', 'FULCRUM_TOKEN_FILE')}
    result = subprocess.run([binary('FULCRUMCTL'), '--url', f'http://{stats_address}', 'servers'],
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=30, env=environment)
    expect(result.returncode == 0 and not result.stderr, f'fulcrumctl servers: {result}')
    out = result.stdout.decode()
    table, errors = out.split('\n\n')
    expect_eq(len(table.split('\n')), 1 + len(servers), 'fulcrumctl servers: table lines')
    lines = errors.rstrip('\n').split('\n')
    expect_eq(len(lines), 2, f'fulcrumctl servers: last error lines in {out!r}')
    for line, name in zip(lines, ('checked/r', 'passive/p')):
        expect(re.fullmatch(rf'last error  {name}: connect refused, (\d+m\d+s|\d+s) ago '
                            r'\(last minute: failed checks 0, failed connects 0\)', line) is not None,
               f'fulcrumctl servers: {line!r}')
    log_stream('fulcrumctl servers:\n' + out)
    d.stop()
