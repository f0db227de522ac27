"""A broken file is rejected by SIGHUP with every error; the old configuration runs on.

fulcrum (two workers, stats endpoint) with service `web` (rr) over demo
servers a and b. Six sessions one after another alternate a, b. A session is
opened on the service and held.

The file is replaced by one that would add server c but has two errors (an
unknown scheduler and a weight of 5000), then SIGHUP:
  - both errors are logged, in file order, as `error reload rejected
    error="FILE:LINE:COL: message"` with the line and column of the bad
    value and the very text `fulcrum --check` prints for the same file,
    then `reload failed, the running configuration stays errors=2
    generation=1`; no `reloaded` line, no change logged;
  - the held session still echoes; six new sessions still alternate a, b
    (c is never reached);
  - /stats: generation 1, last_reload {ok false, at: the time of the
    reload, error: the first error}, reloads failed 1 and succeeded 0, the
    servers still a and b; /metrics: generation 1, reloads failure 1 and
    success 0.
Then the file is fixed (a, b, c) and SIGHUP again: `reloaded generation=2`,
last_reload ok with error null, reloads succeeded 1 and failed 1 (the
failure stays counted), /metrics success 1 and failure 1, and rr now cycles
over a, b, c. The held session still echoes and ends cleanly.
"""

import collections
import datetime
import re
import signal
import socket
import subprocess
import time

from harness import TestFailure, binary, connect, expect, expect_eof, expect_eq, free_address, get_metrics, \
    get_stats, greeted_session, log_stream, read_greeting, recv_exact, to_yaml, write_config

DEADLINE = 60


def rfc3339_utc(text, what):
    m = re.fullmatch(r'(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z', text or '')
    expect(m is not None, f'{what}: {text!r} is not RFC 3339 UTC')
    stamp = datetime.datetime.strptime(m.group(1), '%Y-%m-%dT%H:%M:%S').replace(tzinfo=datetime.timezone.utc)
    return stamp.timestamp() + (float('0' + m.group(2)) if m.group(2) else 0.0)


def position(text, line_marker, token):
    """1-based (line, column) of `token` on the first line holding `line_marker`."""
    for number, line in enumerate(text.split('\n'), 1):
        if line_marker in line:
            return number, line.index(token, line.index(line_marker)) + 1
    raise TestFailure(f'{line_marker!r} is not in the config text')


def wait_reload_result(d, count, timeout=10):
    """Waits for the count-th `reloaded` or `reload failed...` line; returns
    the records of both kinds so far."""
    def is_result(r):
        return r.message in ('reloaded', 'reload failed, the running configuration stays')
    return d.wait_for_log(is_result, timeout, count)


def echo_line(sock, text, what):
    line = text.encode() + b'\n'
    sock.sendall(line)
    expect_eq(recv_exact(sock, len(line), what), line, what)


def run(t):
    demos = {name: t.demo_server(name) for name in ('a', 'b', 'c')}
    listen, stats_address = free_address(), free_address()

    def config(servers, scheduler='rr', weight_of_c=1):
        entries = [{'name': name, 'address': demos[name].address} for name in servers]
        for entry in entries:
            if entry['name'] == 'c':
                entry['weight'] = weight_of_c
        return {'global': {'workers': 2}, 'stats': {'listen': stats_address},
                'services': [{'name': 'web', 'listen': listen, 'scheduler': scheduler, 'servers': entries}]}
    d = t.daemon(config(['a', 'b']))

    def sessions(n, what):
        return [greeted_session(listen, what=f'{what} {i}')[0] for i in range(n)]

    first = sessions(6, 'before')
    expect(first in (['a', 'b'] * 3, ['b', 'a'] * 3), f'rr over a, b before the reload: {first}')
    held = t.own_socket(connect(listen, timeout=10))
    held_server = read_greeting(held, 'held session: greeting')
    echo_line(held, 'before any reload', 'held session: echo before the reload')

    # --- a broken file: two errors
    broken = to_yaml(config(['a', 'b', 'c'], scheduler='bogus', weight_of_c=5000)) + '\n'
    write_config(d.config_path, broken)
    scheduler_at = position(broken, 'scheduler: bogus', 'bogus')
    weight_at = position(broken, 'weight: 5000', '5000')
    check = subprocess.run([binary('FULCRUM'), '--check', '-c', d.config_path], capture_output=True, text=True,
                           timeout=10)
    expect_eq(check.returncode, 1, '--check exit code for the broken file')
    check_errors = check.stderr.splitlines()
    expect_eq(len(check_errors), 2, f'--check errors for the broken file ({check.stderr!r})')
    expect_eq([e.split(': ', 1)[0] for e in check_errors],
              [f'{d.config_path}:{line}:{col}' for line, col in (scheduler_at, weight_at)],
              '--check: FILE:LINE:COL of the two errors')
    log_stream('--check: ' + ' | '.join(check_errors))

    before = time.time()
    d.send_signal(signal.SIGHUP)
    wait_reload_result(d, 1)
    after = time.time()
    records = d.logs(strict=True)
    rejected = [r for r in records if r.message == 'reload rejected']
    expect_eq([(r.level, r.fields) for r in rejected], [('error', {'error': e}) for e in check_errors],
              '`reload rejected` lines (the errors of --check, in order)')
    failed = [r for r in records if r.message == 'reload failed, the running configuration stays']
    expect_eq([(r.level, r.fields) for r in failed], [('error', {'errors': '2', 'generation': '1'})],
              '`reload failed` line')
    expect_eq([r.fields for r in records if r.message == 'reloading'],
              [{'config': d.config_path, 'by': 'SIGHUP'}], '`reloading` line')
    for message in ('reloaded', 'service changed', 'configuration changes'):
        expect_eq([r.raw for r in records if r.message == message], [], f'`{message}` lines after a rejected file')
    order = [r.message for r in records if r.level == 'error' or r.message == 'reloading']
    expect_eq(order, ['reloading', 'reload rejected', 'reload rejected',
                      'reload failed, the running configuration stays'], 'order of the reload lines')

    # The old configuration runs on.
    echo_line(held, 'after the rejected reload', 'held session: echo after the rejected reload')
    second = sessions(6, 'after the rejected reload')
    expect(second in (['a', 'b'] * 3, ['b', 'a'] * 3), f'rr over a, b after the rejected reload: {second}')
    stats = get_stats(stats_address)
    cfg = stats['config']
    expect_eq(cfg['generation'], 1, '/stats generation after the rejected reload')
    last = cfg['last_reload']
    expect_eq((last.get('ok'), last.get('error')), (False, check_errors[0]), '/stats last_reload ok, error')
    at = rfc3339_utc(last.get('at'), 'last_reload.at')
    expect(int(before) <= at <= after, f'last_reload.at {last["at"]} is not the time of the reload '
                                       f'({before:.3f}..{after:.3f})')
    expect_eq(cfg.get('reloads'), {'succeeded': 0, 'failed': 1}, '/stats reloads after the rejected reload')
    web = stats['services'][0]
    expect_eq((web['scheduler'], [v['name'] for v in web['servers']]), ('rr', ['a', 'b']),
              '/stats scheduler and servers after the rejected reload')
    metrics, _ = get_metrics(stats_address)
    expect_eq((metrics.get('fulcrum_config_generation'),
               metrics.get('fulcrum_config_reloads_total', result='success'),
               metrics.get('fulcrum_config_reloads_total', result='failure'),
               metrics.get('fulcrum_config_last_reload_successful')), (1, 0, 1, 0),
              '/metrics generation, reloads success, failure, last reload successful after the rejected reload')
    log_stream(f'rejected: generation 1 kept, last_reload error {last["error"]!r}')

    # --- the file fixed: a, b, c
    write_config(d.config_path, config(['a', 'b', 'c']))
    d.send_signal(signal.SIGHUP)
    results = wait_reload_result(d, 2)
    expect_eq((results[-1].message, results[-1].fields), ('reloaded', {'generation': '2', 'by': 'SIGHUP'}),
              'result of the reload of the fixed file')
    expect_eq([r.fields for r in d.find_logs('service changed')],
              [{'service': 'web', 'settings': 'same', 'servers_added': 'c', 'servers_removed': '-',
                'servers_changed': '-'}], '`service changed` lines')
    stats = get_stats(stats_address)
    cfg = stats['config']
    expect_eq(cfg['generation'], 2, '/stats generation after the good reload')
    expect_eq((cfg['last_reload'].get('ok'), cfg['last_reload'].get('error')), (True, None),
              '/stats last_reload ok, error after the good reload')
    expect_eq(cfg.get('reloads'), {'succeeded': 1, 'failed': 1}, '/stats reloads after the good reload')
    expect_eq([v['name'] for v in stats['services'][0]['servers']], ['a', 'b', 'c'], '/stats servers')
    metrics, _ = get_metrics(stats_address)
    expect_eq((metrics.get('fulcrum_config_generation'),
               metrics.get('fulcrum_config_reloads_total', result='success'),
               metrics.get('fulcrum_config_reloads_total', result='failure'),
               metrics.get('fulcrum_config_last_reload_successful')), (2, 1, 1, 1),
              '/metrics generation, reloads success, failure, last reload successful after the good reload')
    third = sessions(9, 'after the good reload')
    expect(all(sorted(third[i:i + 3]) == ['a', 'b', 'c'] for i in (0, 3, 6)),
           f'rr over a, b, c after the good reload: {third}')
    expect(third[0:3] == third[3:6] == third[6:9], f'rr keeps one order: {third}')

    echo_line(held, 'after the good reload', 'held session: echo after the good reload')
    held.shutdown(socket.SHUT_WR)
    expect_eof(held, 'held session after its half-close')
    held.close()
    total = 6 + 6 + 9 + 1
    d.wait_access_count(total)
    lines = d.access_log_lines()
    expect_eq(collections.Counter(line['end'] for line in lines), {'client_close': total}, 'access log end reasons')
    log_stream(f'held session on {held_server} lived through both reloads; sessions after the fix: {third}')
    d.stop()
