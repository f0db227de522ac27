"""lc and wlc place each new session on the least loaded server.

Three in-test servers that greet and then hold each connection until the
client closes it; fulcrum with two workers.
  - lc: 30 sessions opened one after another (each waits for its greeting)
    and kept open: the servers hold exactly 10/10/10. Then 3 of them are
    closed on server a, and 3 new sessions all go back to a.
  - wlc, weights 1, 2, 3: 60 such sessions: exactly 10/20/30, which is
    where (active + 1) / weight is level whatever order ties were broken in.
    Then 6 of them are closed on the weight-3 server only, and 6 new
    sessions all go back to it (it is the only one below its share).
Every session is then closed cleanly. Held counts are taken at the servers
and from the greetings; the access log has one client_close line per
session, per server as the servers counted.
"""

import collections

from harness import expect_eq, finish_session, free_address, greeting_holder, local_address, log_stream, \
    open_greeted, wait_until

DEADLINE = 60
NAMES = ('a', 'b', 'c')


def phase(t, scheduler, weights, sessions, refill):
    servers = {name: t.tcp_server(greeting_holder(name), name=f'{scheduler}-{name}') for name in NAMES}
    listen = free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'services': [{'name': 'least', 'listen': listen, 'scheduler': scheduler,
                      'servers': [{'name': name, 'address': servers[name].address, 'weight': weights[name]}
                                  for name in NAMES]}],
    }, name=f'fulcrum-{scheduler}')
    total_weight = sum(weights.values())
    share = {name: sessions * weights[name] // total_weight for name in NAMES}

    held = []  # (socket, server name)
    met = {}
    closed = 0

    def open_one(what):
        sock, name = open_greeted(listen, what=what)
        held.append((sock, name))
        met[local_address(sock)] = name
        return name

    def held_at_servers():
        return {name: servers[name].active for name in NAMES}

    try:
        for i in range(sessions):
            open_one(f'{scheduler}: session {i}')
        counts = collections.Counter(name for _, name in held)
        log_stream(f'{scheduler}: held {dict(sorted(counts.items()))}')
        expect_eq(dict(counts), share, f'{scheduler}: sessions per server after {sessions} sessions')
        expect_eq(held_at_servers(), share, f'{scheduler}: sessions held at the servers')

        if refill:
            # Close `refill` sessions of the heaviest server, then open as many.
            heaviest = max(NAMES, key=lambda name: weights[name])
            victims = [entry for entry in held if entry[1] == heaviest][:refill]
            for sock, _ in victims:
                held.remove((sock, heaviest))
                finish_session(sock, f'{scheduler}: closing a session of {heaviest}')
                closed += 1
            wait_until(lambda: servers[heaviest].active == share[heaviest] - refill, 10,
                       f'{scheduler}: {heaviest} to see {refill} sessions closed')
            # Closed at the server is not yet closed in fulcrum: wait for the access log.
            d.wait_access_count(closed)
            refilled = [open_one(f'{scheduler}: refill session {i}') for i in range(refill)]
            log_stream(f'{scheduler}: {refill} new sessions after closing {refill} on {heaviest}: {refilled}')
            expect_eq(refilled, [heaviest] * refill, f'{scheduler}: servers of the new sessions')
            expect_eq(held_at_servers(), share, f'{scheduler}: sessions held at the servers after the refill')
    except BaseException:
        for sock, _ in held:
            sock.close()
        raise
    for i, (sock, _) in enumerate(held):
        finish_session(sock, f'{scheduler}: held session {i}')

    wait_until(lambda: held_at_servers() == {name: 0 for name in NAMES}, 10,
               f'{scheduler}: the servers to see every session closed')
    d.wait_access_count(len(met))
    d.stop()
    lines = d.access_log_lines()
    expect_eq(len(lines), len(met), f'{scheduler}: access log lines')
    expect_eq({line['end'] for line in lines}, {'client_close'}, f'{scheduler}: end reasons')
    expect_eq({line['client']: line['server'] for line in lines}, met,
              f'{scheduler}: server of each client in the access log')
    expect_eq(dict(collections.Counter(line['server'] for line in lines)),
              {name: servers[name].accepted for name in NAMES},
              f'{scheduler}: access log sessions per server vs connections the servers accepted')


def run(t):
    phase(t, 'lc', {'a': 1, 'b': 1, 'c': 1}, 30, refill=3)
    phase(t, 'wlc', {'a': 1, 'b': 2, 'c': 3}, 60, refill=6)
