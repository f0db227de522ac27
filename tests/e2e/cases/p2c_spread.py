"""p2c keeps the loads of the servers close to their weights.

In-test servers that greet and hold each connection; fulcrum with two
workers and scheduler p2c. Sessions are opened one after another (each
waits for its greeting) and kept open. The choices are random, so splits
are not exact, but with the lighter of two random servers always chosen
they stay near the weights:
  - four servers of weight 1, 200 sessions: each holds 35..65 (50 each is
    the even split), 200 in all;
  - servers light (weight 1) and heavy (weight 3), 100 sessions: light holds
    15..35 (25 is the weighted split).
Counted at the servers and from the greetings. All sessions are then closed
cleanly, and the access log has a client_close line per session, per server
as the servers counted.
"""

import collections

from harness import expect, expect_eq, finish_session, free_address, greeting_holder, local_address, log_stream, \
    open_greeted, wait_until

DEADLINE = 60


def phase(t, label, weights, sessions, bounds):
    servers = {name: t.tcp_server(greeting_holder(name), name=f'{label}-{name}') for name in weights}
    listen = free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'services': [{'name': 'two_choices', 'listen': listen, 'scheduler': 'p2c',
                      'servers': [{'name': name, 'address': servers[name].address, 'weight': weight}
                                  for name, weight in weights.items()]}],
    }, name=f'fulcrum-{label}')

    held = []
    met = {}
    try:
        for i in range(sessions):
            sock, name = open_greeted(listen, what=f'{label}: session {i}')
            held.append(sock)
            met[local_address(sock)] = name
        counts = collections.Counter(met.values())
        at_servers = {name: servers[name].active for name in weights}
        log_stream(f'{label}: held {dict(sorted(counts.items()))}')
        expect_eq(at_servers, {name: counts[name] for name in weights},
                  f'{label}: sessions held at the servers vs greetings')
        expect_eq(sum(at_servers.values()), sessions, f'{label}: sessions held in all')
        for name, (low, high) in bounds.items():
            expect(low <= at_servers[name] <= high,
                   f'{label}: sessions per server {at_servers}: {name} should hold {low}..{high}')
    except BaseException:
        for sock in held:
            sock.close()
        raise
    for i, sock in enumerate(held):
        finish_session(sock, f'{label}: held session {i}')

    wait_until(lambda: all(server.active == 0 for server in servers.values()), 10,
               f'{label}: the servers to see every session closed')
    d.wait_access_count(sessions)
    d.stop()
    lines = d.access_log_lines()
    expect_eq(len(lines), sessions, f'{label}: access log lines')
    expect_eq({line['end'] for line in lines}, {'client_close'}, f'{label}: end reasons')
    expect_eq({line['client']: line['server'] for line in lines}, met,
              f'{label}: server of each client in the access log')
    expect_eq(dict(collections.Counter(line['server'] for line in lines)),
              {name: servers[name].accepted for name in weights if servers[name].accepted},
              f'{label}: access log sessions per server vs connections the servers accepted')


def run(t):
    equal = {'a': 1, 'b': 1, 'c': 1, 'd': 1}
    phase(t, 'equal', equal, 200, {name: (35, 65) for name in equal})
    phase(t, 'weighted', {'light': 1, 'heavy': 3}, 100, {'light': (15, 35)})
