"""POST /api/v1/reload: the admin token, the new generation, a broken file's error.

fulcrum (two workers, stats with admin_token_file), service `web` (rr) over
demo server a.
  - Without an Authorization header: 401 (WWW-Authenticate: Bearer); with a
    wrong token: 401; GET: 405 (Allow: POST). None of them reloads: no
    `reloading` line, generation 1. Both 401s are logged (`admin
    authentication failed`, their peer, path and reason).
  - With the token, the file unchanged: 200,
    `{"ok":true,"generation":2,"errors":[],"warnings":[]}`
    (application/json); the log says `reloading config=FILE by=IP:PORT` and
    `reloaded generation=2 by=IP:PORT`, IP:PORT being the client's own
    address. With server b added to the file: 200, generation 3, and rr now
    alternates a and b.
  - A broken file (an unknown key, a bad duration): 422,
    `{"ok":false,"generation":3,"error":E,"errors":[E,E2],"warnings":[]}`
    with E and E2 the lines `fulcrum --check` prints for the file; both
    errors logged as `reload rejected`; /stats generation 3, last_reload
    {ok false, error E, errors [E, E2]}, reloads succeeded
    2 and failed 1; /metrics failure 1. Sessions still alternate a and b.
  - The file fixed with `global.workers: 3` and a new stats.listen: 200,
    generation 4; the answer, /stats' last_reload and two `configuration
    warning` log lines carry the warnings `FILE:L:C: global.workers changes
    need a restart; 2 workers keep running, not 3` and `FILE:L:C:
    stats.listen changes need a restart; the stats endpoint stays at
    ADDRESS`, at the keys' positions; the endpoint still
    answers on its old address, nothing listens on the new one; the other
    change of the file (server c added) is in force: rr cycles a, b, c.
  - The token file is re-read by a reload: after a new token is written
    and a reload made with the old one (200), the old token gets 401 and
    the new one 200.
  - A second daemon without admin_token_file answers 403 and does not reload.
"""

import http.client
import json
import subprocess

from harness import binary, expect, expect_eq, free_address, get_metrics, get_stats, greeted_session, \
    key_position, listening_on, log_stream, parse_address, write_config

DEADLINE = 60
TOKEN = 'reload-api-token-1'
NEW_TOKEN = 'reload-api-token-2'


def post_reload(stats_address, token=None, method='POST'):
    """One request on its own connection; returns (status, headers, body
    bytes, the client's own 'IP:PORT')."""
    host, port = parse_address(stats_address)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.connect()
        me = '%s:%d' % conn.sock.getsockname()[:2]
        headers = {} if token is None else {'Authorization': f'Bearer {token}'}
        conn.request(method, '/api/v1/reload', body=b'' if method == 'POST' else None, headers=headers)
        response = conn.getresponse()
        return response.status, response.headers, response.read(), me
    finally:
        conn.close()


def reload_ok(stats_address, generation, token=TOKEN, warnings=()):
    status, headers, body, me = post_reload(stats_address, token)
    expected = {'ok': True, 'generation': generation, 'errors': [], 'warnings': list(warnings)}
    expect_eq((status, headers.get('Content-Type'), body),
              (200, 'application/json', (json.dumps(expected, separators=(',', ':')) + '\n').encode()),
              f'reload to generation {generation}: status, Content-Type, body')
    return me


def run(t):
    demos = {name: t.demo_server(name) for name in ('a', 'b', 'c')}
    listen, stats_address = free_address(), free_address()
    token_file = t.token_file(TOKEN + '\n')

    def config(servers, workers=2, stats_listen=stats_address):
        return {'global': {'workers': workers},
                'stats': {'listen': stats_listen, 'admin_token_file': token_file},
                'services': [{'name': 'web', 'listen': listen, 'scheduler': 'rr',
                              'servers': [{'name': s, 'address': demos[s].address} for s in servers]}]}

    def greeters(n, what):
        return [greeted_session(listen, what=f'{what} {i}')[0] for i in range(n)]

    d = t.daemon(config('a'))

    # --- refused requests reload nothing
    status, headers, body, no_token_peer = post_reload(stats_address)
    expect_eq((status, headers.get('WWW-Authenticate')), (401, 'Bearer'), 'reload without a token')
    status, _, _, wrong_token_peer = post_reload(stats_address, 'not-the-token')
    expect_eq(status, 401, 'reload with a wrong token')
    status, headers, _, _ = post_reload(stats_address, TOKEN, method='GET')
    expect_eq((status, headers.get('Allow')), (405, 'POST'), 'GET /api/v1/reload')
    expect_eq(d.find_logs('reloading'), [], '`reloading` lines after refused requests')
    expect_eq(get_stats(stats_address)['config']['generation'], 1, 'generation after refused requests')

    # --- with the token
    me = reload_ok(stats_address, 2)
    expect_eq([r.fields for r in d.find_logs('reloading')], [{'config': d.config_path, 'by': me}],
              '`reloading` line of an API reload')
    expect_eq([r.fields for r in d.find_logs('reloaded')], [{'generation': '2', 'by': me}],
              '`reloaded` line of an API reload')
    write_config(d.config_path, config('ab'))
    reload_ok(stats_address, 3)
    first = greeters(4, 'a and b')
    expect(first in (['a', 'b'] * 2, ['b', 'a'] * 2), f'rr over a and b at generation 3: {first}')
    log_stream(f'reloads by {me}: generation 3, sessions {first}')

    # --- a broken file
    with open(d.config_path) as f:
        good = f.read()
    broken = good.replace('  workers: 2\n', '  workers: 2\n  shutdown_timeout: "ten seconds"\n') + 'frobnicate: 1\n'
    expect(broken != good + 'frobnicate: 1\n', 'the broken file did not get its bad duration')
    write_config(d.config_path, broken)
    check = subprocess.run([binary('FULCRUM'), '--check', '-c', d.config_path], capture_output=True, text=True,
                           timeout=10)
    check_errors = check.stderr.splitlines()
    expect_eq((check.returncode, len(check_errors)), (1, 2), f'--check of the broken file: {check.stderr!r}')
    expect_eq(check_errors[1], f'{d.config_path}:{broken.count(chr(10))}:1: unknown key "frobnicate" at top level',
              '--check: the second error')
    status, headers, body, _ = post_reload(stats_address, TOKEN)
    expect_eq((status, headers.get('Content-Type')), (422, 'application/json'), 'reload of a broken file')
    expect_eq(json.loads(body), {'ok': False, 'generation': 3, 'error': check_errors[0], 'errors': check_errors,
                                 'warnings': []},
              'body of the reload of a broken file')
    expect_eq([r.fields['error'] for r in d.find_logs('reload rejected')], check_errors, '`reload rejected` lines')
    stats = get_stats(stats_address)
    expect_eq((stats['config']['generation'], stats['config']['last_reload']['ok'],
               stats['config']['last_reload']['error'], stats['config']['last_reload']['errors'],
               stats['config']['reloads']),
              (3, False, check_errors[0], check_errors, {'succeeded': 2, 'failed': 1}),
              '/stats config after the broken file')
    metrics, _ = get_metrics(stats_address)
    expect_eq((metrics.get('fulcrum_config_generation'),
               metrics.get('fulcrum_config_reloads_total', result='success'),
               metrics.get('fulcrum_config_reloads_total', result='failure')), (3, 2, 1),
              '/metrics after the broken file')
    second = greeters(4, 'after the broken file')
    expect(second in (['a', 'b'] * 2, ['b', 'a'] * 2), f'rr over a and b after the broken file: {second}')
    log_stream(f'broken file: 422 {check_errors[0]!r}')

    # --- settings that need a restart: warned about, the rest applied
    other_stats = free_address()
    write_config(d.config_path, config('abc', workers=3, stats_listen=other_stats))
    restart_warnings = [f'{key_position(d.config_path, "workers")}: global.workers changes need a restart; '
                        '2 workers keep running, not 3',
                        f'{key_position(d.config_path, "listen")}: stats.listen changes need a restart; '
                        f'the stats endpoint stays at {stats_address}']
    reload_ok(stats_address, 4, warnings=restart_warnings)
    warnings = [(r.message, r.fields) for r in d.logs() if r.level == 'warn']
    expect_eq(warnings, [('admin authentication failed',
                          {'peer': no_token_peer, 'path': '/api/v1/reload', 'reason': 'no token'}),
                         ('admin authentication failed',
                          {'peer': wrong_token_peer, 'path': '/api/v1/reload', 'reason': 'wrong token'}),
                         ('configuration warning', {'warning': restart_warnings[0]}),
                         ('configuration warning', {'warning': restart_warnings[1]})],
              'warnings: the refused reloads, then those of a reload changing workers and stats.listen')
    expect_eq(get_stats(stats_address)['config']['last_reload']['warnings'], restart_warnings,
              '/stats last_reload warnings')
    expect(not listening_on(parse_address(other_stats)[1]), 'something listens on the new stats.listen')
    expect_eq(get_stats(stats_address)['config']['generation'], 4, 'generation on the old stats address')
    third = greeters(6, 'a, b and c')
    expect(all(sorted(third[i:i + 3]) == ['a', 'b', 'c'] for i in (0, 3)), f'rr over a, b, c: {third}')
    started = [r.fields for r in d.find_logs('started')]
    expect_eq(started[0]['workers'], '2', 'workers at start')
    log_stream(f'generation 4: warnings logged, rr over {third}')

    # --- the token file is read again by a reload
    with open(token_file, 'w') as f:
        f.write(NEW_TOKEN + '\n')
    reload_ok(stats_address, 5, token=TOKEN, warnings=restart_warnings)
    status, _, _, _ = post_reload(stats_address, TOKEN)
    expect_eq(status, 401, 'reload with the token of before the reload')
    reload_ok(stats_address, 6, token=NEW_TOKEN, warnings=restart_warnings)

    # --- no admin token configured: 403
    plain_listen, plain_stats = free_address(), free_address()
    plain = t.daemon({'global': {'workers': 1}, 'stats': {'listen': plain_stats},
                      'services': [{'name': 'web', 'listen': plain_listen,
                                    'servers': [{'name': 'a', 'address': demos['a'].address}]}]},
                     name='fulcrum-no-token')
    status, _, _, _ = post_reload(plain_stats, TOKEN)
    expect_eq(status, 403, 'reload with no admin token configured')
    expect_eq(plain.find_logs('reloading'), [], '`reloading` lines of the daemon without a token')
    expect_eq(get_stats(plain_stats)['config']['generation'], 1, 'generation of the daemon without a token')
    plain.stop()

    total = 4 + 4 + 6
    d.wait_access_count(total)
    expect_eq(len(d.access_log_lines()), total, 'access log lines')
    d.stop()
