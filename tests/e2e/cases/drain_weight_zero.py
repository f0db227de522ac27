"""weight 0 drains a server, with every scheduler.

For each of wrr, rr, lc, wlc, p2c and maglev (hash_key source_ip): a fresh
fulcrum (two workers) with servers a (weight 1), b (weight 0), c (weight 1),
each an in-test server that greets and holds the connection. 40 clients,
each from its own address 127.2.X.Y, open sessions one after another and
keep them open. Server b never accepts a connection (counted at b itself).
  - wrr, rr, lc, wlc: exactly 20 on a and 20 on c (lc and wlc: each new
    session goes to the server with fewer held sessions).
  - p2c: two random choices, so not exact: a and c each hold 15..25.
  - maglev: the clients are spread by hash: both a and c hold some.
Then every session is closed cleanly, and the access log has 40 client_close
lines whose per-server counts and client -> server pairs are the greetings'.
"""

import collections

from harness import expect, expect_eq, finish_session, free_address, greeting_holder, local_address, log_stream, \
    open_greeted, wait_until

DEADLINE = 60
SESSIONS = 40
WEIGHTS = {'a': 1, 'b': 0, 'c': 1}
EXACT = ('wrr', 'rr', 'lc', 'wlc')
SCHEDULERS = EXACT + ('p2c', 'maglev')


def client_address(i):
    return f'127.2.{1 + i // 16}.{1 + i % 16}'


def phase(t, scheduler):
    servers = {name: t.tcp_server(greeting_holder(name), name=f'{scheduler}-{name}') for name in WEIGHTS}
    listen = free_address()
    service = {'name': 'drained', 'listen': listen, 'scheduler': scheduler,
               'servers': [{'name': name, 'address': server.address, 'weight': WEIGHTS[name]}
                           for name, server in servers.items()]}
    if scheduler == 'maglev':
        service['hash_key'] = 'source_ip'
    d = t.daemon({'global': {'workers': 2}, 'services': [service]}, name=f'fulcrum-{scheduler}')

    held = []
    met = {}
    try:
        for i in range(SESSIONS):
            sock, name = open_greeted(listen, source=client_address(i), what=f'{scheduler}: session {i}')
            held.append(sock)
            met[local_address(sock)] = name
        counts = collections.Counter(met.values())
        log_stream(f'{scheduler}: {dict(sorted(counts.items()))}')
        expect_eq(servers['b'].accepted, 0, f'{scheduler}: connections accepted by b (weight 0)')
        expect_eq(counts['b'], 0, f'{scheduler}: sessions greeted by b (weight 0)')
        expect_eq({name: servers[name].active for name in WEIGHTS}, {name: counts[name] for name in WEIGHTS},
                  f'{scheduler}: sessions held at each server')
        if scheduler in EXACT:
            expect_eq(dict(counts), {'a': SESSIONS // 2, 'c': SESSIONS // 2}, f'{scheduler}: sessions per server')
        elif scheduler == 'p2c':
            expect(all(15 <= counts[name] <= 25 for name in ('a', 'c')),
                   f'{scheduler}: sessions per server {dict(counts)}, expected 15..25 on a and c')
        else:
            expect(counts['a'] > 0 and counts['c'] > 0, f'{scheduler}: {SESSIONS} clients all met {dict(counts)}')
    except BaseException:
        for sock in held:
            sock.close()
        raise
    for i, sock in enumerate(held):
        finish_session(sock, f'{scheduler}: held session {i}')

    wait_until(lambda: all(server.active == 0 for server in servers.values()), 10,
               f'{scheduler}: the servers to see every session closed')
    d.wait_access_count(SESSIONS)
    d.stop()
    lines = d.access_log_lines()
    expect_eq(len(lines), SESSIONS, f'{scheduler}: access log lines')
    expect_eq({line['end'] for line in lines}, {'client_close'}, f'{scheduler}: end reasons')
    expect_eq({line['client']: line['server'] for line in lines}, met,
              f'{scheduler}: server of each client in the access log')
    expect_eq(collections.Counter(line['server'] for line in lines),
              collections.Counter({name: servers[name].accepted for name in WEIGHTS if servers[name].accepted}),
              f'{scheduler}: access log sessions per server vs connections the servers accepted')


def run(t):
    for scheduler in SCHEDULERS:
        phase(t, scheduler)
