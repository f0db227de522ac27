"""wrr splits exactly by weight over the whole daemon.

Two workers, three demo servers with weights 1, 2, 3 (a cycle of 6). Phase
1: 600 sequential sessions meet the servers exactly 100/200/300 times, and
every window of 6 consecutive sessions from a cycle boundary holds each
server exactly its weight. Phase 2: 6 client threads run 100 sessions each
at the same time (600 again, accepted by either worker): still exactly
100/200/300, since the workers share one cycle. The access log names, for
every client address, the server whose greeting that client read, and its
per-server counts are the same.
"""

import collections

from harness import expect_eq, free_address, greeted_session, log_stream, run_threads

DEADLINE = 120
WEIGHTS = {'a': 1, 'b': 2, 'c': 3}
CYCLE = sum(WEIGHTS.values())
SESSIONS = 600
THREADS = 6


def run(t):
    demos = [t.demo_server(name) for name in WEIGHTS]
    listen = free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'services': [{'name': 'weighted', 'listen': listen, 'scheduler': 'wrr',
                      'servers': [{'name': demo.name, 'address': demo.address, 'weight': WEIGHTS[demo.name]}
                                  for demo in demos]}],
    })
    expected = {name: weight * SESSIONS // CYCLE for name, weight in WEIGHTS.items()}
    # (client address, server name from its greeting) of every session. A
    # list, not a dict: over 1200 sessions the kernel may reuse a client port.
    met = []

    # Phase 1: sequential.
    order = []
    for i in range(SESSIONS):
        name, me = greeted_session(listen, what=f'sequential session {i}')
        met.append((me, name))
        order.append(name)
    expect_eq(dict(collections.Counter(order)), expected, 'sequential sessions per server')
    for start in range(0, SESSIONS, CYCLE):
        window = collections.Counter(order[start:start + CYCLE])
        expect_eq(dict(window), WEIGHTS, f'servers of sequential sessions {start}..{start + CYCLE - 1} '
                                         f'(order {"".join(order[start:start + CYCLE])})')
    log_stream(f'sequential: {dict(collections.Counter(order))}')

    # Phase 2: concurrent threads sharing the same cycle.
    def client_thread(k):
        seen = []
        for i in range(SESSIONS // THREADS):
            seen.append(greeted_session(listen, what=f'thread {k} session {i}'))
        return seen

    results = run_threads(client_thread, [(k,) for k in range(THREADS)], timeout=90, what='client thread')
    concurrent = collections.Counter()
    for seen in results:
        for name, me in seen:
            met.append((me, name))
            concurrent[name] += 1
    expect_eq(dict(concurrent), expected, f'concurrent sessions per server ({THREADS} threads)')
    log_stream(f'concurrent: {dict(concurrent)}')

    d.wait_access_count(2 * SESSIONS)
    d.stop()
    lines = d.access_log_lines()
    expect_eq(len(lines), 2 * SESSIONS, 'access log lines')
    expect_eq({line['end'] for line in lines}, {'client_close'}, 'end reasons')
    expect_eq(dict(collections.Counter(line['server'] for line in lines)),
              {name: 2 * count for name, count in expected.items()}, 'sessions per server in the access log')
    expect_eq(collections.Counter((line['client'], line['server']) for line in lines), collections.Counter(met),
              'client and server of each session in the access log')
    addresses = {demo.name: demo.address for demo in demos}
    for line in lines:
        expect_eq(line['server_addr'], addresses[line['server']], f'server_addr of {line["server"]}')
