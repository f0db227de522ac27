"""fulcrum's send/expect and HTTP checks reach HAProxy 2.6's verdicts.

fulcrum and HAProxy (mode tcp, its own config in the test's directory,
`haproxy -db`, killed by its PID; states read from `show stat` on its stats
socket) check the same backends with the same interval (250 ms), timeout
(250 ms), rise (2) and fall (2), and must agree on which servers are up.

Redis (tcp-check): one redis-server master m and replicas r1, r2. fulcrum:
`send: "INFO replication\\r\\n"`, `expect: "role:master"`. HAProxy:
`option tcp-check`, `tcp-check send "INFO replication\\r\\n"`, `tcp-check
expect string role:master`.
  - Both: m up, r1 and r2 down, steadily (every sample over 1 s). The
    replicas' reason: fulcrum `expect mismatch`, HAProxy `L7TOUT` (a
    replica answers `role:slave` and keeps the connection open: both wait
    for the string until the timeout).
  - 6 sessions through each reach m, as master, and write to it.
  - Promotion (`REPLICAOF NO ONE` to r1, m and r2 made its replicas): both
    move to r1 up, m and r2 down, within 10 s (generous: (rise + fall) x
    interval is 1 s; both times are printed), steadily; 6 sessions through
    each reach r1, as master, and write to it.

HTTP (httpchk): server a, a demo server's data port, checked on a check
port the test serves (tests/e2e/http_check_server.py). fulcrum: `port: P`,
`http: {path: /primary, status: [200]}`. HAProxy: `option httpchk GET
/primary`, `http-check expect status 200`, `check port P`.
  - Check port answering 200: both up; a session through each is greeted
    by a. Every request at the check port is `GET /primary HTTP/1.1`
    (fulcrum, with a Host header) or `GET /primary HTTP/1.0` (HAProxy,
    without one).
  - 503: both down (fulcrum `http status 503`, HAProxy `L7STS` code 503);
    a session through each is closed without a byte.
  - 200 again: both up, and sessions greeted by a again.

Where HAProxy differs (asserted as observed): at start-up HAProxy holds a
checked server one failed check from down, so r1 and r2 go down after a
single failed check whatever `fall` says (`chkfail`, the failed checks
while up, is 1), while m, up for a while, needs `fall` (its `chkfail`
grows by `fall` at the promotion); fulcrum's `server down` lines say
`streak=2 needed=2` every time. HAProxy's httpchk sends HTTP/1.0 without
a Host header. Without fulcrum's send/expect (a bare connect) the replicas
stay up in fulcrum and the test fails at the first comparison; without the
HTTP probe a stays up through the 503 (both shown by editing the fulcrum
config in a copy of this test).
"""

import time

from harness import TestFailure, expect_eq, free_address, get_stats, greeted_session, \
    health_transitions, log_stream, wait_until
from haproxy_peer import HAProxy, closed_without_a_byte, haproxy_duration
from http_check_server import HttpCheckServer
from redis_peer import Redis, session, start_redis

DEADLINE = 90
INTERVAL, TIMEOUT, RISE, FALL = 0.25, 0.25, 2, 2
BOUND = 10.0     # seconds for both to reach a verdict; (rise + fall) x interval is 1 s
STEADY = 1.0     # seconds over which a verdict, once reached, must hold on both
SESSIONS = 6

FULCRUM_CHECK = {'interval': f'{round(INTERVAL * 1000)}ms', 'timeout': f'{round(TIMEOUT * 1000)}ms',
                 'rise': RISE, 'fall': FALL}
HAPROXY_CHECK = f'check inter {haproxy_duration(INTERVAL)} rise {RISE} fall {FALL}'


def haproxy_config(redis, redis_listen, web, web_listen, check_port):
    text = ('listen redis\n'
            f'    bind {redis_listen}\n'
            '    balance roundrobin\n'
            f'    timeout check {haproxy_duration(TIMEOUT)}\n'
            '    option tcp-check\n'
            '    tcp-check send "INFO replication\\r\\n"\n'
            '    tcp-check expect string role:master\n')
    text += ''.join(f'    server {name} {address} {HAPROXY_CHECK}\n' for name, address in redis.items())
    text += ('listen web\n'
             f'    bind {web_listen}\n'
             '    balance roundrobin\n'
             f'    timeout check {haproxy_duration(TIMEOUT)}\n'
             '    option httpchk GET /primary\n'
             '    http-check expect status 200\n'
             f'    server a {web} {HAPROXY_CHECK} port {check_port}\n')
    return text


def run(t):
    redis = {'m': start_redis(t, 'm')}
    redis['r1'] = start_redis(t, 'r1', replica_of=redis['m'])
    redis['r2'] = start_redis(t, 'r2', replica_of=redis['m'])
    port_of = {int(address.split(':')[1]): name for name, address in redis.items()}
    web = t.demo_server('a')
    check = HttpCheckServer(t, 'a-check')

    listen = {name: {'fulcrum': free_address(), 'haproxy': free_address()} for name in ('redis', 'web')}
    stats_address = free_address()
    d = t.daemon({
        'stats': {'listen': stats_address},
        'services': [
            {'name': 'redis', 'listen': listen['redis']['fulcrum'], 'scheduler': 'rr',
             'health_check': dict(FULCRUM_CHECK, send='INFO replication\r\n', expect='role:master'),
             'servers': [{'name': name, 'address': address} for name, address in redis.items()]},
            {'name': 'web', 'listen': listen['web']['fulcrum'], 'scheduler': 'rr',
             'health_check': dict(FULCRUM_CHECK, port=check.port, http={'path': '/primary', 'status': [200]}),
             'servers': [{'name': 'a', 'address': web.address}]},
        ],
    })
    h = HAProxy(t, haproxy_config(redis, listen['redis']['haproxy'], web.address, listen['web']['haproxy'],
                                  check.port))

    def fulcrum_servers(service):
        return {v['name']: v for s in get_stats(stats_address)['services'] if s['name'] == service
                for v in s['servers']}

    def fulcrum_states(service):
        return {name: v['state'] for name, v in fulcrum_servers(service).items()}

    def agree(service, expected, what):
        """Waits for both balancers to show `expected` (server: state) for
        `service`, then checks that both keep it for STEADY seconds."""
        began = time.monotonic()
        took = {}

        def reached():
            for who, states in (('fulcrum', fulcrum_states), ('haproxy', h.states)):
                if who not in took and states(service) == expected:
                    took[who] = time.monotonic() - began
            return len(took) == 2
        try:
            wait_until(reached, BOUND, f'{what}: {expected} on fulcrum and HAProxy', interval=0.02)
        except TestFailure as e:
            raise TestFailure(f'{e}; fulcrum shows {fulcrum_states(service)}, HAProxy {h.states(service)}')
        log_stream(f'{what}: fulcrum after {took["fulcrum"]:.2f}s, HAProxy after {took["haproxy"]:.2f}s')
        steady_until = time.monotonic() + STEADY
        while time.monotonic() < steady_until:
            expect_eq(fulcrum_states(service), expected, f'{what}: fulcrum, held for {STEADY:g}s')
            expect_eq(h.states(service), expected, f'{what}: HAProxy, held for {STEADY:g}s')
            time.sleep(0.1)

    def sessions_reach(name, first):
        for who in ('fulcrum', 'haproxy'):
            reached = [session(listen['redis'][who], first + n) for n in range(SESSIONS)]
            expect_eq([(port_of[p], role, written) for p, role, written in reached],
                      [(name, 'master', True)] * SESSIONS, f'server, role and write of {SESSIONS} sessions via {who}')

    def reasons(expected_fulcrum, expected_haproxy, service):
        """The failure reasons each balancer gives for its down servers."""
        expect_eq({n: v['health']['last_error'] for n, v in fulcrum_servers(service).items() if v['state'] == 'down'},
                  expected_fulcrum, f'fulcrum: health.last_error of {service}\'s down servers')
        expect_eq({n: (row['check_status'].lstrip('* '), row['check_code'])
                   for n, row in h.servers(service).items() if row['state'] == 'down'},
                  expected_haproxy, f'HAProxy: check_status and check_code of {service}\'s down servers')

    def failed_while_up(haproxy_counts, what):
        """How many failed checks took each down server down: fulcrum's
        `server down` lines say `fall` (streak=FALL needed=FALL), every
        time; HAProxy's `chkfail` (failed checks while up) says
        `haproxy_counts`."""
        for name in haproxy_counts:
            wait_until(lambda: health_transitions(d, 'redis', name), 5, f'the `server down` line of {name}')
            expect_eq([(x['state'], x['streak'], x['needed']) for x in health_transitions(d, 'redis', name)][-1],
                      ('down', FALL, FALL), f'{what}: fulcrum\'s last transition of {name}')
        expect_eq({name: int(h.servers('redis')[name]['chkfail']) for name in haproxy_counts}, haproxy_counts,
                  f'{what}: HAProxy\'s chkfail (failed checks while up)')

    # --- Redis: only the master passes
    agree('redis', {'m': 'up', 'r1': 'down', 'r2': 'down'}, 'redis: only the master up')
    reasons({'r1': 'expect mismatch', 'r2': 'expect mismatch'}, {'r1': ('L7TOUT', ''), 'r2': ('L7TOUT', '')},
            'redis')
    failed_while_up({'r1': 1, 'r2': 1}, 'at start-up')
    sessions_reach('m', 0)

    # --- promotion: r1 becomes the master, m and r2 its replicas
    m_failed_before = int(h.servers('redis')['m']['chkfail'])
    with Redis(redis['r1']) as conn:
        expect_eq(conn.command('REPLICAOF', 'NO', 'ONE'), 'OK', 'REPLICAOF NO ONE to r1')
    for name in ('m', 'r2'):
        with Redis(redis[name]) as conn:
            expect_eq(conn.command('REPLICAOF', '127.0.0.1', redis['r1'].split(':')[1]), 'OK',
                      f'REPLICAOF r1 to {name}')
    agree('redis', {'m': 'down', 'r1': 'up', 'r2': 'down'}, 'redis: after the promotion, only r1 up')
    reasons({'m': 'expect mismatch', 'r2': 'expect mismatch'}, {'m': ('L7TOUT', ''), 'r2': ('L7TOUT', '')},
            'redis')
    failed_while_up({'m': m_failed_before + FALL, 'r2': 1}, 'after the promotion')
    sessions_reach('r1', 100)

    # --- HTTP: 200 up, 503 down, 200 up again
    agree('web', {'a': 'up'}, 'web: check port answering 200')
    for who in ('fulcrum', 'haproxy'):
        expect_eq(greeted_session(listen['web'][who], what=f'web via {who}')[0], 'a', f'web via {who}: greeted by')
    check.status = 503
    agree('web', {'a': 'down'}, 'web: check port answering 503')
    reasons({'a': 'http status 503'}, {'a': ('L7STS', '503')}, 'web')
    for who in ('fulcrum', 'haproxy'):
        closed_without_a_byte(listen['web'][who], f'web via {who} while a is down')
    check.status = 200
    agree('web', {'a': 'up'}, 'web: check port answering 200 again')
    for who in ('fulcrum', 'haproxy'):
        expect_eq(greeted_session(listen['web'][who], what=f'web via {who}')[0], 'a', f'web via {who}: greeted by')
    requests = check.seen()
    kinds = {(r.line, tuple(r.header('Host'))) for r in requests}
    expect_eq(kinds, {('GET /primary HTTP/1.1', (f'127.0.0.1:{check.port}',)), ('GET /primary HTTP/1.0', ())},
              f'request lines and Host headers of the {len(requests)} requests at the check port')
    d.stop()
