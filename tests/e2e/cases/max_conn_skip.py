"""A server at its max_connections is passed over; the others take its share.

In-test servers that greet and hold each connection until the client
closes it (counted at the servers); fulcrum with two workers. Sessions are
opened one after another, each waiting for its greeting, and kept open.
  - wrr, a (max_connections 2) and b: sessions until a holds 2 (3 or 4 of
    them: the cycle is a, b), then 10 more all go to b. One of a's sessions
    is closed: of the next 2 new sessions exactly one goes to a (one full
    cycle), and then a is full again and the next one goes to b.
  - wlc and p2c, a (weight 10, max_connections 2) and b (weight 1): a is the
    lighter until it is full: 12 sessions end 2 on a, 10 on b.
  - maglev (hash_key source_ip), a (max_connections 2) and b: first every
    client 127.4.0.N (N = 1..30) makes a short session to learn its server;
    then each opens a held session: the first 2 clients of a reach a, every
    later client of a goes to b, and b's clients stay on b.
All sessions are then closed cleanly; the access log has a client_close line
per session, client and server as the greetings said, per server as the
servers counted.
"""

import collections

from harness import expect, expect_eq, finish_session, free_address, greeted_session, greeting_holder, \
    local_address, log_stream, open_greeted, wait_until

DEADLINE = 60
LIMIT = 2


class Phase:
    def __init__(self, t, scheduler, servers_config):
        self.scheduler = scheduler
        self.servers = {name: t.tcp_server(greeting_holder(name), name=f'{scheduler}-{name}')
                        for name in servers_config}
        self.listen = free_address()
        service = {'name': 'limited', 'listen': self.listen, 'scheduler': scheduler,
                   'servers': [dict(name=name, address=self.servers[name].address, **options)
                               for name, options in servers_config.items()]}
        if scheduler == 'maglev':
            service['hash_key'] = 'source_ip'
        self.d = t.daemon({'global': {'workers': 2}, 'services': [service]}, name=f'fulcrum-{scheduler}')
        self.held = []  # (socket, server name)
        self.met = {}
        self.closed = 0

    def open(self, what, source=None):
        sock, name = open_greeted(self.listen, source=source, what=f'{self.scheduler}: {what}')
        self.held.append((sock, name))
        self.met[local_address(sock)] = name
        return name

    def short(self, what, source=None):
        name, me = greeted_session(self.listen, source=source, what=f'{self.scheduler}: {what}')
        self.met[me] = name
        self.closed += 1
        return name

    def close_one(self, server):
        entry = next(e for e in self.held if e[1] == server)
        self.held.remove(entry)
        finish_session(entry[0], f'{self.scheduler}: closing a session of {server}')
        self.closed += 1
        # Gone at the server is not yet gone in fulcrum: wait for its access log line.
        self.d.wait_access_count(self.closed)

    def active(self):
        return {name: server.active for name, server in self.servers.items()}

    def held_counts(self):
        counts = collections.Counter(name for _, name in self.held)
        return {name: counts[name] for name in self.servers}

    def expect_held(self, expected, what):
        expect_eq(self.held_counts(), expected, f'{self.scheduler}: sessions held per server {what} (greetings)')
        expect_eq(self.active(), expected, f'{self.scheduler}: sessions held at the servers {what}')
        expect(self.servers['a'].max_active <= LIMIT,
               f'{self.scheduler}: a held {self.servers["a"].max_active} at once, max_connections {LIMIT}')

    def abandon(self):
        for sock, _ in self.held:
            sock.close()

    def finish(self):
        for i, (sock, _) in enumerate(self.held):
            finish_session(sock, f'{self.scheduler}: held session {i}')
        self.held = []
        wait_until(lambda: all(n == 0 for n in self.active().values()), 10,
                   f'{self.scheduler}: the servers to see every session closed')
        self.d.wait_access_count(len(self.met))
        self.d.stop()
        lines = self.d.access_log_lines()
        expect_eq(len(lines), len(self.met), f'{self.scheduler}: access log lines')
        expect_eq({line['end'] for line in lines}, {'client_close'}, f'{self.scheduler}: end reasons')
        expect_eq({line['client']: line['server'] for line in lines}, self.met,
                  f'{self.scheduler}: server of each client in the access log')
        expect_eq(dict(collections.Counter(line['server'] for line in lines)),
                  {name: server.accepted for name, server in self.servers.items() if server.accepted},
                  f'{self.scheduler}: access log sessions per server vs connections the servers accepted')


def run_phase(phase, body):
    try:
        body(phase)
    except BaseException:
        phase.abandon()
        raise
    phase.finish()


def wrr_body(p):
    for i in range(4):
        p.open(f'session {i}')
        if p.held_counts()['a'] == LIMIT:
            break
    log_stream(f'wrr: a full after {len(p.held)} sessions: {[name for _, name in p.held]}')
    expect_eq(p.held_counts()['a'], LIMIT, f'wrr: sessions on a after {len(p.held)} sessions (cycle a, b)')
    before_b = p.held_counts()['b']
    later = [p.open(f'session while a is full {i}') for i in range(10)]
    expect_eq(later, ['b'] * 10, 'wrr: servers of the 10 sessions opened while a is full')
    p.expect_held({'a': LIMIT, 'b': before_b + 10}, 'while a is full')

    p.close_one('a')
    cycle = [p.open(f'session after a freed a slot {i}') for i in range(2)]
    log_stream(f'wrr: after one of a\'s sessions closed: {cycle}')
    expect_eq(sorted(cycle), ['a', 'b'], 'wrr: servers of the 2 sessions after a freed one slot')
    expect_eq(p.open('session with a full again'), 'b', 'wrr: server of the next session (a full again)')
    p.expect_held({'a': LIMIT, 'b': before_b + 12}, 'at the end')


def lighter_body(p):
    servers = [p.open(f'session {i}') for i in range(12)]
    log_stream(f'{p.scheduler}: {servers}')
    p.expect_held({'a': LIMIT, 'b': 10}, 'after 12 sessions')


def maglev_body(p):
    clients = [f'127.4.0.{n}' for n in range(1, 31)]
    home = {source: p.short(f'probe from {source}', source=source) for source in clients}
    homes = collections.Counter(home.values())
    log_stream(f'maglev: clients per server {dict(sorted(homes.items()))}')
    expect(homes['a'] > LIMIT and homes['b'] > 0, f'maglev: 30 clients map {dict(homes)}; the test needs more than '
                                                   f'{LIMIT} on a and some on b')
    on_a = 0
    for source in clients:
        name = p.open(f'held session from {source}', source=source)
        if home[source] == 'a' and on_a < LIMIT:
            expect_eq(name, 'a', f'maglev: server of {source} (home a, a holds {on_a})')
            on_a += 1
        else:
            expect_eq(name, 'b', f'maglev: server of {source} (home {home[source]}, a holds {on_a})')
    p.expect_held({'a': LIMIT, 'b': len(clients) - LIMIT}, 'after every client opened one')


def run(t):
    run_phase(Phase(t, 'wrr', {'a': {'max_connections': LIMIT}, 'b': {}}), wrr_body)
    for scheduler in ('wlc', 'p2c'):
        run_phase(Phase(t, scheduler, {'a': {'weight': 10, 'max_connections': LIMIT}, 'b': {'weight': 1}}),
                  lighter_body)
    run_phase(Phase(t, 'maglev', {'a': {'max_connections': LIMIT}, 'b': {}}), maglev_body)
