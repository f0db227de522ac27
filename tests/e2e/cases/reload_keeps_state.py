"""A reload keeps the live state of servers that stay, matched by (service, server name).

fulcrum (two workers, stats with an admin token), service `web` (wrr,
retries 2, health checks every 200 ms, rise 2, fall 2) over demo servers a,
b, c (weight 1 each) and d, an address that refuses (weight 1).
  1. d goes down by its health checks (one `server down` line for web/d) before
     any session. Nine sessions one after another (each session of the test
     reads the greeting, sends a line and reads its echo): 3 on each of a, b, c
     (+-1, SPEC.md's smooth wrr bound).
  2. Through the admin API a is drained and b's weight set to 5 (both
     answered 200 with the server's new state, its weight in force — 0 for
     the drained a — and the configured weight 1).
  3. SIGHUP with the file unchanged: `reloaded generation=2`, `configuration
     changes generation=2 services_added=- services_removed=-
     services_changed=-` and no `service changed` line. /stats right after:
     every counter as before the reload (sessions total, bytes in and out,
     connect failures of each server and of the service; d's failed checks
     not fewer), a still `drain`, d still `down`, b's weight back to the
     configured 1; the weight in force is 0 for a and d (also in /metrics;
     d's fulcrum_server_up 0, b's and c's 1). 0.6 s later d
     has still only its one `down` transition and no server has another.
     Eight sessions: none on a or d, b and c 4 each +-1 (weight 5 would
     give b 6 or 7). No connect to d was ever tried by a session.
  4. SIGHUP without a and c (generation 3): `service changed ...
     servers_removed=a,c`; /stats lists b and d only; four sessions, all b.
  5. SIGHUP with a and c back (generation 4). A server that left the
     configuration was forgotten once its last session ended (SPEC.md): a
     and c come back afresh, `up` with weight 1, zero counters and a
     last_change_seconds no older than the reload, and a's drain, set by
     the operator before it left, is gone. Six sessions: a, b and c 2 each
     +-1.
  6. SIGHUP with c moved to another address (a second demo server that
     greets as c2), same name: `servers_changed=c`; c's counters continue
     and the sessions sent to c now reach c2 (six sessions: a, b and c2 2
     each +-1).
Every session of the test ends with client_close in the access log, and
each server's counters in /stats (sessions total, bytes in and out) are the
sums of its access-log lines (for a and c, those since they came back), the
service's those of all lines.
"""

import collections
import json
import signal

from harness import expect, expect_eq, free_address, get_metrics, get_stats, echo_session, health_transitions, \
    http_request, log_stream, wait_until, write_config

DEADLINE = 60
TOKEN = 'reload-keeps-state-token'
COUNTERS = ('total', 'bytes_in', 'bytes_out', 'connect_failures')


def server_counters(stats):
    out = {}
    for v in stats['services'][0]['servers']:
        out[v['name']] = {'total': v['sessions']['total'], 'bytes_in': v['bytes']['in'],
                          'bytes_out': v['bytes']['out'], 'connect_failures': v['connect_failures']}
    return out


def service_counters(stats):
    s = stats['services'][0]
    return {'total': s['sessions']['total'], 'rejected': s['sessions']['rejected'],
            'bytes_in': s['bytes']['in'], 'bytes_out': s['bytes']['out']}


def servers_by_name(stats):
    return {v['name']: v for v in stats['services'][0]['servers']}


def within_one(counts, shares, what):
    for name, share in shares.items():
        expect(abs(counts[name] - share) <= 1, f'{what}: {counts[name]} sessions on {name}, expected {share} +-1 '
                                               f'({dict(counts)})')
    expect_eq(sum(counts.values()), sum(shares.values()), f'{what}: sessions in all')


def run(t):
    demos = {name: t.demo_server(name) for name in ('a', 'b', 'c', 'c2')}
    dead = t.dead_address()
    listen, stats_address = free_address(), free_address()
    token_file = t.token_file(TOKEN + '\n')
    addresses = {'a': demos['a'].address, 'b': demos['b'].address, 'c': demos['c'].address, 'd': dead}

    def config(names, c_address=None):
        at = dict(addresses, c=c_address or addresses['c'])
        return {'global': {'workers': 2}, 'stats': {'listen': stats_address, 'admin_token_file': token_file},
                'services': [{'name': 'web', 'listen': listen, 'scheduler': 'wrr', 'retries': 2,
                              'health_check': {'interval': '200ms', 'timeout': '100ms', 'rise': 2, 'fall': 2},
                              'servers': [{'name': name, 'address': at[name], 'weight': 1} for name in names]}]}

    reloads = 0

    def reload(conf=None):
        nonlocal reloads
        if conf is not None:
            write_config(d.config_path, conf)
        d.send_signal(signal.SIGHUP)
        reloads += 1
        results = d.wait_for_log(lambda r: r.message in ('reloaded', 'reload failed, the running configuration '
                                                                     'stays'), 10, reloads)
        expect_eq((results[-1].message, results[-1].fields), ('reloaded', {'generation': str(reloads + 1),
                                                                           'by': 'SIGHUP'}),
                  f'result of reload {reloads}')

    sessions = 0

    def run_sessions(n, what):
        """n echo sessions one after another, each sending a line of its own
        length; returns the sessions per greeting server."""
        nonlocal sessions
        names = []
        for _ in range(n):
            sessions += 1
            names.append(echo_session(listen, sessions)[0])
        return collections.Counter(names)

    def admin(server, body):
        reply = http_request(stats_address, 'POST', f'/api/v1/services/web/servers/{server}',
                             body=json.dumps(body).encode(), headers={'Authorization': f'Bearer {TOKEN}'})
        expect_eq(reply.status, 200, f'status of the admin change {body} of {server}: {reply.body!r}')
        return json.loads(reply.body)

    d = t.daemon(config('abcd'))

    # 1. d down, then sessions on a, b, c.
    wait_until(lambda: health_transitions(d, 'web', 'd'), 5, 'd to go down by its health checks')
    expect_eq(servers_by_name(get_stats(stats_address))['d']['state'], 'down', 'state of d')
    within_one(run_sessions(9, 'first'), {'a': 3, 'b': 3, 'c': 3}, 'first sessions')

    # 2. Operator changes.
    changed = admin('a', {'state': 'drain'})
    expect_eq((changed['name'], changed['state'], changed['weight'], changed['configured_weight']),
              ('a', 'drain', 0, 1), 'a after the drain')
    changed = admin('b', {'weight': 5})
    expect_eq((changed['name'], changed['state'], changed['weight'], changed['configured_weight']),
              ('b', 'up', 5, 1), 'b after the weight change')
    d.wait_access_count(sessions)
    before = get_stats(stats_address)
    expect_eq({name: v['weight'] for name, v in servers_by_name(before).items()}, {'a': 0, 'b': 5, 'c': 1, 'd': 0},
              'weights in force before the reload')

    # 3. The same file again.
    reload()
    after = get_stats(stats_address)
    expect_eq([r.fields for r in d.find_logs('configuration changes')],
              [{'generation': '2', 'services_added': '-', 'services_removed': '-', 'services_changed': '-'}],
              '`configuration changes` lines')
    expect_eq(d.find_logs('service changed'), [], '`service changed` lines for an unchanged file')
    expect_eq(after['config']['generation'], 2, '/stats generation')
    expect_eq(server_counters(after), server_counters(before), 'server counters across the reload')
    expect_eq(service_counters(after), service_counters(before), 'service counters across the reload')
    checks_before = servers_by_name(before)['d']['health']['checks_failed']
    checks_after = servers_by_name(after)['d']['health']['checks_failed']
    expect(checks_after >= checks_before, f'd\'s failed checks went back: {checks_before} -> {checks_after}')
    expect_eq({name: (v['state'], v['weight']) for name, v in servers_by_name(after).items()},
              {'a': ('drain', 0), 'b': ('up', 1), 'c': ('up', 1), 'd': ('down', 0)},
              'state and weight in force of each server after the reload')
    metrics, _ = get_metrics(stats_address)
    expect_eq([metrics.get('fulcrum_server_weight', service='web', server=name) for name in 'abcd'], [0, 1, 1, 0],
              '/metrics weights after the reload')
    # (a is left out: fulcrum_server_up is the health verdict, which drain does not change.)
    expect_eq([metrics.get('fulcrum_server_up', service='web', server=name) for name in 'bcd'], [1, 1, 0],
              '/metrics fulcrum_server_up of b, c, d after the reload')
    log_stream(f'reload of the same file: counters kept {server_counters(after)}')
    counts = run_sessions(8, 'after the same file')
    expect_eq((counts['a'], counts['d']), (0, 0), f'sessions on a (drained) and d (down): {dict(counts)}')
    within_one(counts, {'b': 4, 'c': 4}, 'sessions after the same file')
    wait_until(lambda: servers_by_name(get_stats(stats_address))['d']['health']['checks_failed'] >= checks_after + 3,
               5, 'three more failed checks of d')
    expect_eq([(x['server'], x['state']) for x in health_transitions(d, 'web')], [('d', 'down')],
              'health transitions (d went down once, before the reload; nothing since)')

    # 4. a and c leave.
    d.wait_access_count(sessions)
    left = server_counters(get_stats(stats_address))
    reload(config('bd'))
    expect_eq([r.fields for r in d.find_logs('service changed')],
              [{'service': 'web', 'settings': 'same', 'servers_added': '-', 'servers_removed': 'a,c',
                'servers_changed': '-'}], '`service changed` lines')
    expect_eq([v['name'] for v in get_stats(stats_address)['services'][0]['servers']], ['b', 'd'],
              '/stats servers without a and c')
    expect_eq(dict(run_sessions(4, 'without a and c')), {'b': 4}, 'sessions without a and c')

    # 5. a and c come back.
    d.wait_access_count(sessions)
    sessions_before_return = sessions
    reload(config('abcd'))
    expect_eq([r.fields for r in d.find_logs('service changed')][1:],
              [{'service': 'web', 'settings': 'same', 'servers_added': 'a,c', 'servers_removed': '-',
                'servers_changed': '-'}], '`service changed` line of the return')
    back = get_stats(stats_address)
    now = server_counters(back)
    log_stream(f'a and c back: a {servers_by_name(back)["a"]["state"]} {now["a"]}, c {now["c"]}; '
               f'when they left: a {left["a"]}, c {left["c"]}')
    zero = {'total': 0, 'bytes_in': 0, 'bytes_out': 0, 'connect_failures': 0}
    expect_eq((now['a'], now['c']), (zero, zero), 'a\'s and c\'s counters after they returned')
    for name in 'ac':
        server = servers_by_name(back)[name]
        expect_eq((server['state'], server['weight']), ('up', 1), f'{name}\'s state and weight after it returned')
        expect(server['health']['last_change_seconds'] <= back['uptime_seconds'] - after['uptime_seconds'],
               f'{name}\'s last_change_seconds {server["health"]["last_change_seconds"]} is older than its return')
    expect_eq(servers_by_name(back)['d']['state'], 'down', 'd\'s state after a and c returned')
    counts = run_sessions(6, 'a and c back')
    expect_eq(counts['d'], 0, f'sessions on d: {dict(counts)}')
    within_one(counts, {'a': 2, 'b': 2, 'c': 2}, 'sessions after a and c returned')

    # 6. c moves to another address under the same name.
    reload(config('abcd', c_address=demos['c2'].address))
    expect_eq([r.fields for r in d.find_logs('service changed')][2:],
              [{'service': 'web', 'settings': 'same', 'servers_added': '-', 'servers_removed': '-',
                'servers_changed': 'c'}], '`service changed` line of the move')
    c_total = server_counters(get_stats(stats_address))['c']['total']
    counts = run_sessions(6, 'c moved')
    expect_eq((counts['c'], counts['d']), (0, 0), f'sessions after the move: {dict(counts)}')
    within_one(counts, {'a': 2, 'b': 2, 'c2': 2}, 'sessions after c moved (c2 greets for c)')
    d.wait_access_count(sessions)
    final = get_stats(stats_address)
    expect_eq(servers_by_name(final)['c']['address'], demos['c2'].address, 'c\'s address in /stats')
    expect_eq(server_counters(final)['c']['total'], c_total + counts['c2'], 'c\'s sessions.total after the move')

    # Totals against the access log.
    lines = d.access_log_lines()
    expect_eq(len(lines), sessions, 'access log lines')
    expect_eq(collections.Counter(line['end'] for line in lines), {'client_close': sessions},
              'access log end reasons')
    logged = {name: {'total': 0, 'bytes_in': 0, 'bytes_out': 0, 'connect_failures': 0} for name in 'abcd'}
    for number, line in enumerate(lines):
        name = 'c' if line['server'] == 'c2' else line['server']
        if name in 'ac' and number < sessions_before_return:
            continue  # counted by the a and c forgotten at their removal
        entry = logged[name]
        entry['total'] += 1
        entry['bytes_in'] += line['bytes_in']
        entry['bytes_out'] += line['bytes_out']
    expect_eq(server_counters(final), logged, '/stats counters per server vs the access log')
    expect_eq(service_counters(final), {'total': sessions, 'rejected': 0,
                                        'bytes_in': sum(line['bytes_in'] for line in lines),
                                        'bytes_out': sum(line['bytes_out'] for line in lines)},
              '/stats service counters vs the access log')
    expect_eq(d.find_logs('connect failed'), [], '`connect failed` lines (no session tried d)')
    d.stop()
