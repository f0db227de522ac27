"""When health checks take every primary down the backup serves; a primary back takes over.

Service `web`: primaries p1, p2 and backup b1 (demo servers), rr,
retries: 2, two workers, health checks every 200 ms (timeout 100 ms,
rise 2, fall 2). Two client threads run short echo sessions throughout:
  1. 1 s with all up: sessions reach p1 and p2 only.
  2. p1 and p2 are killed (the load paused around the kill, so no session
     is on them). Within fall x interval + 1 s = 1.4 s both are down; for
     the next second every session reaches b1 and no connect is tried on
     p1 or p2 any more.
  3. p1 is started again on its port: within rise x interval + 1 s = 1.4 s
     sessions reach p1, and once one has, no session that starts later
     reaches b1; the load runs 1 s more.
No session fails at any point (the sessions caught in the switch are
retried), the transitions are p1 down, p2 down, p1 up, and the access log
has one client_close line per session.
"""

import collections
import time

from harness import SessionLoad, expect, expect_eq, free_address, health_transitions, log_stream, wait_until

DEADLINE = 60
INTERVAL, RISE, FALL = 0.2, 2, 2
DOWN_BY = FALL * INTERVAL + 1.0
UP_BY = RISE * INTERVAL + 1.0


def run(t):
    demos = {name: t.demo_server(name) for name in ('p1', 'p2', 'b1')}
    listen = free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'services': [{'name': 'web', 'listen': listen, 'scheduler': 'rr', 'retries': 2,
                      'health_check': {'interval': '200ms', 'timeout': '100ms', 'rise': RISE, 'fall': FALL},
                      'servers': [{'name': 'p1', 'address': demos['p1'].address},
                                  {'name': 'p2', 'address': demos['p2'].address},
                                  {'name': 'b1', 'address': demos['b1'].address, 'backup': True}]}],
    })

    def refusals():
        return len(d.find_logs('connect failed', service='web'))

    load = SessionLoad(listen, threads=2, gap=0.005, what='load').start()
    try:
        # 1. Primaries serve.
        time.sleep(1.0)
        phase1 = load.snapshot()
        counts = collections.Counter(s.server for s in phase1)
        log_stream(f'phase 1: {len(phase1)} sessions, per server {dict(sorted(counts.items(), key=str))}')
        expect_eq(set(counts), {'p1', 'p2'}, 'servers reached with the primaries up')

        # 2. Both primaries die.
        load.pause()
        demos['p1'].kill()
        demos['p2'].kill()
        killed = time.monotonic()
        load.resume()
        log_stream('phase 2: p1 and p2 killed')
        time.sleep(max(0.0, killed + DOWN_BY - time.monotonic()))
        downs = health_transitions(d, 'web')
        expect_eq(sorted((x['server'], x['state'], x['reason']) for x in downs),
                  [('p1', 'down', 'connect refused'), ('p2', 'down', 'connect refused')],
                  f'health transitions {DOWN_BY:g}s after p1 and p2 were killed')
        refused_before = refusals()
        mark = time.monotonic()
        time.sleep(1.0)
        refused_after = refusals()
        window = [s for s in load.snapshot() if s.start >= mark]
        log_stream(f'phase 2: {refused_before} refused connects, then {len(window)} sessions in 1 s: '
                   f'{dict(collections.Counter(s.server for s in window))}')
        expect(window, 'no session ran in the second with p1 and p2 down')
        expect_eq(collections.Counter(s.server for s in window), {'b1': len(window)},
                  'servers of the sessions with every primary down')
        expect_eq(refused_after, refused_before, '`connect failed` lines while p1 and p2 are down')

        # 3. p1 returns.
        demos['p1'] = t.demo_server('p1', label='p1-again', address=demos['p1'].address)
        restarted = time.monotonic()
        log_stream('phase 3: p1 restarted')
        wait_until(lambda: [s for s in load.snapshot() if s.server == 'p1' and s.start >= restarted], UP_BY,
                   f'a session to reach p1 again (up to {UP_BY:g}s after its restart)')
        back = time.monotonic() - restarted
        time.sleep(1.0)
    finally:
        sessions = load.stop()

    failed = [s for s in sessions if s.error is not None]
    log_stream(f'{len(sessions)} sessions, {len(failed)} failed; p1 served again {back:.3f}s after its restart')
    expect(not failed, f'{len(failed)} of {len(sessions)} sessions failed, e.g.:\n'
                       + '\n'.join(repr(s) for s in failed[:10]))
    after = [s for s in sessions if s.start >= restarted]
    first_p1_end = min(s.end for s in after if s.server == 'p1')
    late_b1 = [s for s in after if s.server == 'b1' and s.start > first_p1_end]
    expect(not late_b1, f'{len(late_b1)} sessions reached b1 though they started after one had reached p1 again, '
                        f'e.g. {late_b1[:5]}')
    last_b1 = max((s.start for s in after if s.server == 'b1'), default=restarted)
    expect(last_b1 - restarted <= UP_BY, f'a session reached b1 {last_b1 - restarted:.3f}s after p1 restarted')
    tail = [s for s in sessions if s.start >= first_p1_end]
    expect_eq(collections.Counter(s.server for s in tail), {'p1': len(tail)},
              'servers of the sessions after p1 served again')

    transitions = health_transitions(d, 'web')
    expect_eq(sorted((x['server'], x['state']) for x in transitions), [('p1', 'down'), ('p1', 'up'), ('p2', 'down')],
              'health transitions')
    expect_eq([x['state'] for x in transitions if x['server'] == 'p1'], ['down', 'up'], 'order of p1 transitions')
    for x in transitions:
        expect_eq(x['streak'], FALL if x['state'] == 'down' else RISE, f'streak of {x["record"].raw}')
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
