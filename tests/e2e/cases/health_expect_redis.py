"""send/expect checks find the Redis master, and follow a promotion.

Three real redis-server processes on 127.0.0.1 (no persistence): master m
and replicas r1, r2 (`--replicaof m`). One fulcrum service `redis` (rr)
over the three, health checks every 200 ms, timeout 200 ms, rise 1, fall 1,
`send: "INFO replication\\r\\n"`, `expect: "role:master"`.
  - r1 and r2 go down, each with exactly one line `level=warn msg="server
    down" service=redis server=rN address=ADDRESS reason="expect mismatch"
    check=active streak=1 needed=1` (a replica answers `role:slave` and
    keeps the connection open); their /stats health.last_error is `expect
    mismatch`; m never goes down and has no last_error.
  - 9 sessions through fulcrum all reach m: `INFO server` says m's port,
    `INFO replication` holds role:master, and SET then GET of a key works
    (a replica would answer -READONLY).
  - Promotion: `REPLICAOF NO ONE` to r1, then `REPLICAOF 127.0.0.1 R1PORT`
    to m and to r2. Within 5 s (the bound is (rise + fall) x interval, 0.4 s,
    plus a check's timeout and jitter; the time taken is printed) /stats shows
    r1 up and m down; m's down line says `expect mismatch`, r1's up line
    `check passed`, and m's last_error is `expect mismatch`.
  - 9 more sessions all reach r1, as master, and write to it.
On the issue17 configuration without the probe (send/expect ignored, a bare
connect) every redis-server passes the check and the replicas never go down.
"""

import time

from harness import expect_eq, free_address, get_stats, health_transitions, log_stream, wait_until
from redis_peer import Redis, session, start_redis

DEADLINE = 60
INTERVAL, RISE, FALL = 0.2, 1, 1
PROMOTION_BOUND = 5.0


def run(t):
    m = start_redis(t, 'm')
    r1 = start_redis(t, 'r1', replica_of=m)
    r2 = start_redis(t, 'r2', replica_of=m)
    port_of = {int(a.split(':')[1]): name for name, a in (('m', m), ('r1', r1), ('r2', r2))}
    listen, stats_address = free_address(), free_address()
    d = t.daemon({
        'stats': {'listen': stats_address},
        'services': [{'name': 'redis', 'listen': listen, 'scheduler': 'rr',
                      'health_check': {'interval': '200ms', 'timeout': '200ms', 'rise': RISE, 'fall': FALL,
                                       'send': 'INFO replication\r\n', 'expect': 'role:master'},
                      'servers': [{'name': 'm', 'address': m}, {'name': 'r1', 'address': r1},
                                  {'name': 'r2', 'address': r2}]}],
    })

    def servers():
        return {v['name']: v for s in get_stats(stats_address)['services'] for v in s['servers']}

    def states():
        return {name: v['state'] for name, v in servers().items()}

    def logged(counts):
        """Whether each server has that many transitions logged: the log
        thread writes them after /stats shows the new state."""
        return all(len(health_transitions(d, 'redis', name)) == n for name, n in counts.items())

    wait_until(lambda: states() == {'m': 'up', 'r1': 'down', 'r2': 'down'}, 5, 'r1 and r2 down, m up')
    wait_until(lambda: logged({'r1': 1, 'r2': 1}), 5, 'the down lines of r1 and r2')
    for name, address in (('r1', r1), ('r2', r2)):
        transitions = health_transitions(d, 'redis', name)
        expect_eq([(x['state'], x['reason'], x['check'], x['streak']) for x in transitions],
                  [('down', 'expect mismatch', 'active', FALL)], f'health transitions of {name}')
        raw = transitions[0]['record'].raw
        expect_eq(raw[raw.index(' level='):],
                  f' level=warn msg="server down" service=redis server={name} address={address} '
                  f'reason="expect mismatch" check=active streak={FALL} needed={FALL}', f'the down line of {name}')
    expect_eq(health_transitions(d, 'redis', 'm'), [], 'health transitions of m')
    now = servers()
    expect_eq({name: v['health']['last_error'] for name, v in now.items()},
              {'m': None, 'r1': 'expect mismatch', 'r2': 'expect mismatch'}, 'health.last_error')

    reached = [session(listen, n) for n in range(9)]
    expect_eq([(port_of[p], role, written) for p, role, written in reached], [('m', 'master', True)] * 9,
              'server, role and write of 9 sessions')

    # --- promotion: r1 becomes the master, m and r2 its replicas
    with Redis(r1) as conn:
        expect_eq(conn.command('REPLICAOF', 'NO', 'ONE'), 'OK', 'REPLICAOF NO ONE to r1')
    for name, address in (('m', m), ('r2', r2)):
        with Redis(address) as conn:
            expect_eq(conn.command('REPLICAOF', '127.0.0.1', r1.split(':')[1]), 'OK', f'REPLICAOF r1 to {name}')
    promoted = time.monotonic()
    wait_until(lambda: states() == {'m': 'down', 'r1': 'up', 'r2': 'down'}, PROMOTION_BOUND,
               f'r1 up and m down within {PROMOTION_BOUND:g}s of the promotion', interval=0.02)
    took = time.monotonic() - promoted
    log_stream(f'traffic moved to r1 {took:.3f}s after the promotion '
               f'((rise + fall) x interval = {(RISE + FALL) * INTERVAL:g}s, plus a check timeout and jitter)')
    wait_until(lambda: logged({'m': 1, 'r1': 2}), 5, 'the down line of m and the up line of r1')
    expect_eq([(x['state'], x['reason'], x['streak']) for x in health_transitions(d, 'redis', 'm')],
              [('down', 'expect mismatch', FALL)], 'health transitions of m')
    expect_eq([(x['state'], x['reason'], x['streak']) for x in health_transitions(d, 'redis', 'r1')],
              [('down', 'expect mismatch', FALL), ('up', 'check passed', RISE)], 'health transitions of r1')
    expect_eq(len(health_transitions(d, 'redis', 'r2')), 1, 'health transitions of r2 (down once)')
    expect_eq(servers()['m']['health']['last_error'], 'expect mismatch', 'health.last_error of m')

    reached = [session(listen, 100 + n) for n in range(9)]
    expect_eq([(port_of[p], role, written) for p, role, written in reached], [('r1', 'master', True)] * 9,
              'server, role and write of 9 sessions after the promotion')
    d.stop()
