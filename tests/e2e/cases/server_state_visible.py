"""Server state means one thing in /stats, /metrics and fulcrumctl: the state,
the weight in force (slow start included) and when the state last changed.

fulcrum (one worker, stats with an admin token), service `web` (wrr, no
health check, so that a busy machine cannot take a or b down) over:
  - `a`: demo server, weight 100, slow_start 3s;
  - `b`: demo server, weight 100;
  - `m`: demo server, put in maint through the API;
  - `z`: demo server, weight 0 in the file;
and service `checked` over `dead`, a refused address, health checked
(every 100 ms, fall 1), so down.
Steps:
  1. /stats and /metrics agree for every server: `state`, `weight` (in
     force: 100, 100, 0, 0, 0), `configured_weight` (the file's), and
     fulcrum_server_state has exactly one series at 1 per server, the one
     named by /stats, and three at 0; fulcrum_server_up is the health
     verdict (0 only for dead, 1 for m in maint).
  2. `fulcrumctl weight web a 0`: a drains (`state drain, weight 0`), and its
     last_change_seconds restarts (below the time since the change was
     asked, while uptime is above it).
  3. `fulcrumctl ready web a`: a is up with its configured weight back,
     ramping: right after, /stats and /metrics show a weight in force of at
     most 100 * (time since ready) / 3s + 1 and below 100, assigned 100;
     every /stats sample of the ramp is at most that bound and never below
     the one before; at the end (3 s) it is 100.
"""

import subprocess
import time

from harness import binary, expect, expect_eq, free_address, get_metrics, get_stats, wait_until

DEADLINE = 60
TOKEN = 'state-visible-token'
SLOW_START = 3.0
STATES = ('up', 'down', 'drain', 'maint')


def servers_of(stats):
    return {v['name']: v for s in stats['services'] for v in s['servers']}


def service_of(name):
    return 'checked' if name == 'dead' else 'web'


def run(t):
    demos = {name: t.demo_server(name) for name in 'abmz'}
    stats_address = free_address()
    token_file = t.token_file(TOKEN + '\n')
    d = t.daemon({
        'global': {'workers': 1},
        'stats': {'listen': stats_address, 'admin_token_file': token_file},
        'services': [{
            'name': 'web', 'listen': free_address(), 'scheduler': 'wrr',
            'servers': [{'name': 'a', 'address': demos['a'].address, 'weight': 100, 'slow_start': '3s'},
                        {'name': 'b', 'address': demos['b'].address, 'weight': 100},
                        {'name': 'm', 'address': demos['m'].address},
                        {'name': 'z', 'address': demos['z'].address, 'weight': 0}]}, {
            'name': 'checked', 'listen': free_address(),
            'health_check': {'interval': '100ms', 'timeout': '100ms', 'rise': 1, 'fall': 1},
            'servers': [{'name': 'dead', 'address': t.dead_address()}]}],
    })
    url = f'http://{stats_address}'

    def ctl(*args):
        done = subprocess.run([binary('FULCRUMCTL'), '--url', url, '--token-file', token_file, *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
        expect_eq((done.returncode, done.stderr.decode()), (0, ''), f'fulcrumctl {" ".join(args)}')
        return done.stdout.decode()

    ctl('maint', 'web', 'm')
    wait_until(lambda: servers_of(get_stats(stats_address))['dead']['state'] == 'down', 10, 'dead to go down')

    # 1. /stats and /metrics agree.
    servers = servers_of(get_stats(stats_address))
    metrics, _ = get_metrics(stats_address)
    expect_eq({name: (v['state'], v['weight'], v['configured_weight']) for name, v in servers.items()},
              {'a': ('up', 100, 100), 'b': ('up', 100, 100), 'm': ('maint', 0, 1), 'z': ('drain', 0, 0),
               'dead': ('down', 0, 1)}, '/stats state, weight in force and configured weight')
    for name, v in servers.items():
        series = {state: metrics.get('fulcrum_server_state', service=service_of(name), server=name, state=state)
                  for state in STATES}
        expect_eq(series, {state: 1 if state == v['state'] else 0 for state in STATES},
                  f'fulcrum_server_state of {name}')
        expect_eq(metrics.get('fulcrum_server_weight', service=service_of(name), server=name), v['weight'],
                  f'fulcrum_server_weight of {name}')
        expect_eq(metrics.get('fulcrum_server_configured_weight', service=service_of(name), server=name),
                  v['configured_weight'], f'fulcrum_server_configured_weight of {name}')
        expect_eq(metrics.get('fulcrum_server_up', service=service_of(name), server=name), 0 if name == 'dead' else 1,
                  f'fulcrum_server_up of {name} (the health verdict)')

    # 2. A drain by weight 0 is a state change.
    time.sleep(0.3)  # so that "since start" and "since the change" differ
    asked = time.monotonic()
    expect_eq(ctl('weight', 'web', 'a', '0'), 'web/a: state drain, weight 0\n', 'weight web a 0')
    stats = get_stats(stats_address)
    since_asked = time.monotonic() - asked
    a = servers_of(stats)['a']
    expect_eq((a['state'], a['weight']), ('drain', 0), 'a after weight 0')
    expect(a['health']['last_change_seconds'] <= since_asked < stats['uptime_seconds'],
           f'a\'s last_change_seconds {a["health"]["last_change_seconds"]} restarted with the drain '
           f'({since_asked:.3f}s ago; uptime {stats["uptime_seconds"]})')

    # 3. ready: the configured weight back, ramping.
    ready_at = time.monotonic()
    out = ctl('ready', 'web', 'a')
    expect(out.startswith('web/a: state up, weight ') and out.endswith(' (assigned 100)\n'),
           f'ready web a: {out!r}')

    def bound():
        return 100 * (time.monotonic() - ready_at) / SLOW_START + 1

    stats = get_stats(stats_address)
    metrics, _ = get_metrics(stats_address)
    limit = bound()
    a = servers_of(stats)['a']
    weight_metric = metrics.get('fulcrum_server_weight', service='web', server='a')
    expect((a['state'], a['assigned_weight'], a['configured_weight']) == ('up', 100, 100),
           f'a right after ready: {a}')
    expect(1 <= a['weight'] <= limit and a['weight'] < 100,
           f'a\'s weight in force right after ready: {a["weight"]}, at most {limit:.1f} in slow start')
    expect(1 <= weight_metric <= limit and weight_metric < 100,
           f'fulcrum_server_weight of a right after ready: {weight_metric}, at most {limit:.1f}')

    seen = [a['weight']]
    deadline = ready_at + SLOW_START + 5
    while seen[-1] < 100 and time.monotonic() < deadline:
        time.sleep(0.2)
        weight = servers_of(get_stats(stats_address))['a']['weight']
        limit = bound()
        expect(seen[-1] <= weight <= limit, f'a\'s weight {weight} after {seen}: not rising, or above {limit:.1f}')
        seen.append(weight)
    expect_eq(seen[-1], 100, f'a\'s weight at the end of slow start (samples {seen})')
    d.stop()
