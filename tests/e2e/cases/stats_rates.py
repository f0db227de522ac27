"""/stats carries the daemon's own rates over the last 10 s, exact to the session and the byte.

One fulcrum (two workers) with two services:
  - `web` (rr): demo servers a and b;
  - `idle`: demo server c, which never gets a session.
Before any session every `rate` (services and servers) is all zero, with
exactly the four SPEC.md fields. Then 20 echo sessions run one after the
other (rr: 10 on a, 10 on b), each with known bytes both ways.

The daemon samples its counters once a second and a rate is the growth over
the last 10 samples divided by 10. So, polled every 0.2 s afterwards, every
figure is k/10 for a whole k no larger than what happened (the sessions and
bytes that fell between the two samples of the window), and while the
window holds all 20 sessions (they take well under the window) one answer
shows exactly: web 2.0 sessions/s and its bytes in and out / 10; a and b
1.0 each with theirs. Each peak never goes down and never lies below the
rate beside it. Once 10 samples have passed without a session every rate is
0 again, and the peaks stay at exactly 2.0 (web), 1.0 (a, b) and 0 (idle).

While the window holds everything, `fulcrumctl status` and `servers` show
those rates (SESS/S, PEAK/S, IN/S, OUT/S) and MAX as /stats has them.
/metrics gains
nothing per second (rates are PromQL's job); its server max_connections
gauge is there.
"""

import os
import subprocess
import time

from harness import TestFailure, binary, echo_session, expect, expect_eq, free_address, get_metrics, get_stats, \
    human_bytes, log_stream

DEADLINE = 100
SESSIONS = 20
POLL = 0.2
RATE_KEYS = ['bytes_in_per_second', 'bytes_out_per_second', 'peak_sessions_per_second', 'sessions_per_second']


def whole(value):
    """Rounded half up, as fulcrumctl rounds bytes per second (llround)."""
    return int(value + 0.5)


def ctl(url, command):
    environment = {k: v for k, v in os.environ.items() if k not in ('FULCRUM_URL', 'FULCRUM_TOKEN_FILE')}
    result = subprocess.run([binary('FULCRUMCTL'), '--url', url, command], stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=30, env=environment)
    expect(result.returncode == 0 and not result.stderr, f'fulcrumctl {command}: {result}')
    return result.stdout.decode()


def table(text, first_line=0):
    lines = text.rstrip('\n').split('\n')[first_line:]
    header = lines[0].split()
    rows = []
    for line in lines[1:]:
        if not line:
            break  # the table ends at a blank line (last errors follow)
        cells = line.split()
        expect_eq(len(cells), len(header), f'cells of {line!r} under {header}')
        rows.append(dict(zip(header, cells)))
    return rows


def rates_of(stats):
    """{'web': rate, ('web', 'a'): rate, ...} from a /stats document."""
    out = {}
    for s in stats['services']:
        out[s['name']] = s['rate']
        for v in s['servers']:
            out[(s['name'], v['name'])] = v['rate']
    return out


def tenths(value, limit, what):
    """`value` is k/10 for a whole k in 0..limit; returns k."""
    k = round(value * 10)
    expect(k / 10 == value and 0 <= k <= limit, f'{what}: {value!r} is not k/10 with k in 0..{limit}')
    return k


def run(t):
    a, b, c = t.demo_server('a'), t.demo_server('b'), t.demo_server('c')
    web, idle, stats_address = free_address(), free_address(), free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'stats': {'listen': stats_address},
        'services': [
            {'name': 'web', 'listen': web, 'scheduler': 'rr',
             'servers': [{'name': 'a', 'address': a.address}, {'name': 'b', 'address': b.address}]},
            {'name': 'idle', 'listen': idle,
             'servers': [{'name': 'c', 'address': c.address, 'max_connections': 7}]},
        ]})
    keys = ['web', ('web', 'a'), ('web', 'b'), 'idle', ('idle', 'c')]

    first = rates_of(get_stats(stats_address))
    for key in keys:
        expect_eq(sorted(first[key]), RATE_KEYS, f'rate fields of {key}')
        expect_eq(first[key], dict.fromkeys(RATE_KEYS, 0), f'rate of {key} before any session')

    # --- the sessions, with their bytes
    greetings = {'a': a.greeting, 'b': b.greeting}
    totals = {key: {'sessions': 0, 'in': 0, 'out': 0} for key in keys}
    started = time.monotonic()
    for n in range(SESSIONS):
        name, _ = echo_session(web, n)
        line = len(f'load session {n}\n')
        for key in ('web', ('web', name)):
            totals[key]['sessions'] += 1
            totals[key]['in'] += line
            totals[key]['out'] += len(greetings[name]) + line
    span = time.monotonic() - started
    d.wait_access_count(SESSIONS)
    expect_eq((totals[('web', 'a')]['sessions'], totals[('web', 'b')]['sessions']), (10, 10), 'rr split')
    log_stream(f'{SESSIONS} sessions in {span:.2f}s: {totals}')

    # --- polls until the window has let everything go again
    plateau = None
    peaks = {key: 0 for key in keys}
    polls = 0
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        stats = get_stats(stats_address)
        polls += 1
        rates = rates_of(stats)
        for key in keys:
            rate, total = rates[key], totals[key]
            tenths(rate['sessions_per_second'], total['sessions'], f'{key} sessions_per_second')
            tenths(rate['bytes_in_per_second'], total['in'], f'{key} bytes_in_per_second')
            tenths(rate['bytes_out_per_second'], total['out'], f'{key} bytes_out_per_second')
            peak = rate['peak_sessions_per_second']
            tenths(peak, total['sessions'], f'{key} peak_sessions_per_second')
            expect(peak >= peaks[key] and peak >= rate['sessions_per_second'],
                   f'{key}: peak {peak} after {peaks[key]}, beside the rate {rate["sessions_per_second"]}')
            peaks[key] = peak
        full = all(rates[key] == {'sessions_per_second': totals[key]['sessions'] / 10,
                                  'bytes_in_per_second': totals[key]['in'] / 10,
                                  'bytes_out_per_second': totals[key]['out'] / 10,
                                  'peak_sessions_per_second': totals[key]['sessions'] / 10} for key in keys)
        if full and plateau is None:
            plateau = stats
            check_ctl(stats_address, stats)
        if plateau is not None and all(rates[key]['sessions_per_second'] == 0 and rates[key]['bytes_in_per_second'] == 0
                                       and rates[key]['bytes_out_per_second'] == 0 for key in keys):
            break
        time.sleep(POLL)
    # 20 short sessions on loopback take far less than the 10 s window.
    expect(plateau is not None, f'no answer showed all {SESSIONS} sessions in the window ({polls} polls, '
                                f'the sessions took {span:.2f}s)')
    expect_eq({key: v['sessions_per_second'] for key, v in rates.items()}, dict.fromkeys(keys, 0),
              'sessions per second 10 samples after the last session')
    expect_eq({key: v['peak_sessions_per_second'] for key, v in rates.items()},
              {'web': 2.0, ('web', 'a'): 1.0, ('web', 'b'): 1.0, 'idle': 0, ('idle', 'c'): 0},
              'peaks once the window is empty')
    log_stream(f'{polls} polls: every figure k/10, the plateau {rates_of(plateau)["web"]}, then all 0')

    metrics, _ = get_metrics(stats_address)
    expect_eq(metrics.types.get('fulcrum_server_max_connections'), 'gauge', '# TYPE fulcrum_server_max_connections')
    expect_eq((metrics.get('fulcrum_server_max_connections', service='web', server='a'),
               metrics.get('fulcrum_server_max_connections', service='idle', server='c')), (0, 7),
              'fulcrum_server_max_connections of web/a and idle/c')
    expect(not [name for name in metrics.names() if 'per_second' in name or name.endswith('_rate')],
           f'per-second families in /metrics: {sorted(metrics.names())}')
    d.stop()


def check_ctl(stats_address, stats):
    """fulcrumctl's rate cells equal those of /stats answers before and after
    it (rates move only once a second: retried until the two agree)."""
    url = f'http://{stats_address}'
    for _ in range(20):
        status, servers = ctl(url, 'status'), ctl(url, 'servers')
        after = get_stats(stats_address)
        if rates_of(after) == rates_of(stats):
            break
        stats = after
    else:
        raise TestFailure('the rates kept moving between /stats answers')
    rows = {row['SERVICE']: row for row in table(status, first_line=5)}
    for s in stats['services']:
        r = s['rate']
        expect_eq({k: rows[s['name']][k] for k in ('SESS/S', 'PEAK/S', 'IN/S', 'OUT/S')},
                  {'SESS/S': f'{r["sessions_per_second"]:.1f}', 'PEAK/S': f'{r["peak_sessions_per_second"]:.1f}',
                   'IN/S': human_bytes(whole(r['bytes_in_per_second'])),
                   'OUT/S': human_bytes(whole(r['bytes_out_per_second']))}, f'status: rates of {s["name"]}')
    rows = {(row['SERVICE'], row['SERVER']): row for row in table(servers)}
    for s in stats['services']:
        for v in s['servers']:
            r = v['rate']
            expect_eq({k: rows[(s['name'], v['name'])][k] for k in ('SESS/S', 'PEAK/S', 'IN/S', 'OUT/S', 'MAX')},
                      {'SESS/S': f'{r["sessions_per_second"]:.1f}',
                       'PEAK/S': f'{r["peak_sessions_per_second"]:.1f}',
                       'IN/S': human_bytes(whole(r['bytes_in_per_second'])),
                       'OUT/S': human_bytes(whole(r['bytes_out_per_second'])),
                       'MAX': str(v['sessions']['max']) if v['sessions']['max'] else '-'},
                      f'servers: rates of {s["name"]}/{v["name"]}')
    log_stream('status:\n' + status + 'servers:\n' + servers)
