"""A dead server leaves rotation and comes back when it returns; no client notices.

Service `web`: demo servers a, b, c, rr, retries: 2, two workers, health
checks every 200 ms (timeout 100 ms, rise 2, fall 2). Two client threads run
short echo sessions (greeting, a line and its echo, half-close, EOF) all
through the test:
  1. 1 s with every server up: all three serve.
  2. b is killed (between sessions: the load is paused around the kill, so
     no session is on b when it dies). Sessions that pick b are refused there
     and retried on a or c. After fall x interval + 1 s = 1.4 s b must be
     down: for the next 1.5 s fulcrum tries no connect to b at all (no new
     `connect failed` line for b) while sessions go on, and the log has
     exactly one `server down` line for web/b (`reason="connect refused"
     streak=2 needed=2`).
  3. b is started again on its port: within rise x interval + 1 s = 1.4 s
     sessions reach b again, after one `server up` line for web/b
     (`reason="check passed" streak=2 needed=2`); the load runs 0.5 s more.
Across all phases every session succeeds (greeting, echo, EOF), a and c
never go down, and the access log has one client_close line per session.
"""

import collections
import time

from harness import SessionLoad, expect, expect_eq, free_address, health_transitions, log_stream, wait_until

DEADLINE = 60
INTERVAL, RISE, FALL = 0.2, 2, 2
DOWN_BY = FALL * INTERVAL + 1.0  # after the kill
UP_BY = RISE * INTERVAL + 1.0  # after the restart


def run(t):
    demos = {name: t.demo_server(name) for name in ('a', 'b', 'c')}
    listen = free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'services': [{'name': 'web', 'listen': listen, 'scheduler': 'rr', 'retries': 2,
                      'health_check': {'interval': '200ms', 'timeout': '100ms', 'rise': RISE, 'fall': FALL},
                      'servers': [{'name': name, 'address': demo.address} for name, demo in demos.items()]}],
    })

    def refusals_of_b():
        return len(d.find_logs('connect failed', service='web', server='b'))

    load = SessionLoad(listen, threads=2, gap=0.005, what='load').start()
    try:
        # 1. All up.
        time.sleep(1.0)
        phase1 = load.snapshot()
        counts = collections.Counter(s.server for s in phase1 if s.error is None)
        log_stream(f'phase 1: {len(phase1)} sessions, per server {dict(sorted(counts.items()))}')
        expect_eq(set(counts), {'a', 'b', 'c'}, 'servers reached with all up')

        # 2. b dies.
        load.pause()
        demos['b'].kill()
        killed = time.monotonic()
        load.resume()
        log_stream('phase 2: b killed')
        time.sleep(max(0.0, killed + DOWN_BY - time.monotonic()))
        downs = health_transitions(d, 'web', 'b')
        expect_eq([(x['state'], x['reason'], x['streak']) for x in downs], [('down', 'connect refused', FALL)],
                  f'health transitions of b {DOWN_BY:g}s after it was killed')
        refused_before = refusals_of_b()
        mark = time.monotonic()
        time.sleep(1.5)
        refused_after = refusals_of_b()
        tried = [s for s in load.snapshot() if s.start >= mark]
        log_stream(f'phase 2: b down ({downs[0]["check"]} check); {refused_before} refused connects to b, '
                   f'{len(tried)} sessions in the 1.5 s after')
        expect(len(tried) > 0, 'no session ran in the 1.5 s with b down')
        expect_eq(refused_after, refused_before, f'`connect failed` lines for b: connects tried to b while down '
                                                 f'({len(tried)} sessions in 1.5 s)')
        expect_eq(len(health_transitions(d, 'web', 'b')), 1, 'health transitions of b while it is dead')

        # 3. b returns.
        demos['b'] = t.demo_server('b', label='b-again', address=demos['b'].address)
        restarted = time.monotonic()
        log_stream('phase 3: b restarted')

        def b_serves():
            return [s for s in load.snapshot() if s.server == 'b' and s.start >= restarted]
        wait_until(b_serves, UP_BY, f'a session to reach b again (up to {UP_BY:g}s after its restart)')
        back = time.monotonic() - restarted
        time.sleep(0.5)
    finally:
        sessions = load.stop()

    failed = [s for s in sessions if s.error is not None]
    log_stream(f'{len(sessions)} sessions, {len(failed)} failed; b served again {back:.3f}s after its restart')
    expect(not failed, f'{len(failed)} of {len(sessions)} sessions failed, e.g.:\n'
                       + '\n'.join(repr(s) for s in failed[:10]))
    transitions = health_transitions(d, 'web', 'b')
    expect_eq([(x['state'], x['reason'], x['streak']) for x in transitions],
              [('down', 'connect refused', FALL), ('up', 'check passed', RISE)], 'health transitions of b')
    expect_eq(transitions[0]['address'], demos['b'].address, 'address= of b in its transitions')
    expect_eq([x['record'].raw for x in health_transitions(d, 'web') if x['server'] != 'b'], [],
              'health transitions of a and c')
    counts = collections.Counter(s.server for s in sessions if s.error is None)
    log_stream(f'sessions per server: {dict(sorted(counts.items()))}')

    d.wait_access_count(len(sessions))
    d.stop()
    lines = d.access_log_lines()
    expect_eq(len(lines), len(sessions), 'access log lines (one per session)')
    logged = {line['client'] for line in lines}
    expect(logged == load.clients, f'clients in the access log: {len(load.clients - logged)} of the sessions missing, '
                                   f'{len(logged - load.clients)} unknown ones')
    expect_eq(collections.Counter(line['end'] for line in lines), {'client_close': len(sessions)},
              'end reasons in the access log')
    expect_eq(collections.Counter(line['server'] for line in lines), counts,
              'sessions per server: access log vs greetings')
