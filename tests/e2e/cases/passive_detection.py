"""Failed connects of real sessions count as failed checks, only with health checks on.

One fulcrum, two services, each two demo servers, rr, retries: 1:
  - `checked` (a1, b1): health checks every 10 s (so at most one active
    check per server falls in the test), rise 2, fall 2. 4 sessions reach
    both servers; a1 is killed. Sessions go on one by one: those that pick
    a1 are refused and retried on b1, and after at most 10 sessions a1 is
    down through them: one `msg="server down" service=checked server=a1
    address=ADDRESS reason="connect refused" check=passive streak=2
    needed=2` line, after 2 or more refused connects. Then 20
    more sessions all reach b1 without a connect tried on a1.
  - `unchecked` (a2, b2): health_check: false. a2 is killed; 20 sessions
    all reach b2, and a2 keeps being tried: more than 5 `connect failed`
    lines for it (rr: every other session starts there), no down line.
Every session gets its greeting and echo; the access log has one
client_close line per session.
"""

import collections
import time

from harness import echo_session, expect, expect_eq, free_address, health_transitions, log_stream, wait_until

DEADLINE = 60
RISE, FALL = 2, 2


def run(t):
    demos = {name: t.demo_server(name) for name in ('a1', 'b1', 'a2', 'b2')}
    listen = {'checked': free_address(), 'unchecked': free_address()}
    d = t.daemon({
        'global': {'workers': 2},
        'services': [
            {'name': 'checked', 'listen': listen['checked'], 'scheduler': 'rr', 'retries': 1,
             'health_check': {'interval': '10s', 'timeout': '1s', 'rise': RISE, 'fall': FALL},
             'servers': [{'name': 'a1', 'address': demos['a1'].address},
                         {'name': 'b1', 'address': demos['b1'].address}]},
            {'name': 'unchecked', 'listen': listen['unchecked'], 'scheduler': 'rr', 'retries': 1,
             'health_check': False,
             'servers': [{'name': 'a2', 'address': demos['a2'].address},
                         {'name': 'b2', 'address': demos['b2'].address}]},
        ],
    })
    sessions = collections.Counter()  # (service, server) -> sessions

    def session(service, n):
        name, _ = echo_session(listen[service], n)
        sessions[service, name] += 1
        return name

    def refused(service, server):
        return len(d.find_logs('connect failed', service=service, server=server))

    # Health checks on.
    expect_eq(sorted(session('checked', i) for i in range(4)), ['a1', 'a1', 'b1', 'b1'], 'servers of 4 sessions')
    demos['a1'].kill()
    until_down = 0
    for i in range(10):
        expect_eq(session('checked', 4 + i), 'b1', f'server of session {4 + i} after a1 was killed')
        until_down += 1
        if health_transitions(d, 'checked', 'a1'):
            break
        time.sleep(0.02)  # passive failures are counted on the main thread
    wait_until(lambda: health_transitions(d, 'checked', 'a1'), 1, 'a1 to be down after 10 sessions')
    down = health_transitions(d, 'checked', 'a1')
    log_stream(f'a1 down after {until_down} sessions, {refused("checked", "a1")} refused connects')
    expect_eq([x['record'].raw[x['record'].raw.index(' level='):] for x in down],
              [f' level=warn msg="server down" service=checked server=a1 address={demos["a1"].address} '
               f'reason="connect refused" check=passive streak={FALL} needed={FALL}'], 'health transitions of a1')
    failures_at_down = refused('checked', 'a1')
    expect(failures_at_down >= FALL, f'a1 went down after {failures_at_down} refused connects, fall is {FALL}')
    time.sleep(0.1)
    after = [session('checked', 100 + i) for i in range(20)]
    expect_eq(after, ['b1'] * 20, 'servers of 20 sessions with a1 down')
    expect_eq(refused('checked', 'a1'), failures_at_down, '`connect failed` lines of a1 after it went down')

    # Health checks off.
    demos['a2'].kill()
    servers = [session('unchecked', 200 + i) for i in range(20)]
    expect_eq(servers, ['b2'] * 20, 'servers of 20 sessions on `unchecked` with a2 killed')
    tried = refused('unchecked', 'a2')
    log_stream(f'a2 (no health checks) tried {tried} times in 20 sessions')
    expect(tried > 5, f'a2 tried only {tried} times in 20 sessions without health checks: it left rotation')
    expect_eq(health_transitions(d, 'unchecked'), [], 'health transitions on `unchecked`')

    total = sum(sessions.values())
    d.wait_access_count(total)
    d.stop()
    lines = d.access_log_lines()
    expect_eq(len(lines), total, 'access log lines')
    expect_eq({line['end'] for line in lines}, {'client_close'}, 'end reasons')
    expect_eq(collections.Counter((line['service'], line['server']) for line in lines), sessions,
              'sessions per service and server: access log vs greetings')
