"""Backup servers serve only while no primary server is up.

For each of wrr, rr, maglev (hash_key source_ip), lc, wlc and p2c one
fulcrum (two workers) with three services, each server an in-test server
that greets (connections accepted are counted at the server):
  - `primaries`: p1, p2 (weight 1) and backup b1. 20 sessions: b1 never
    accepts a connection; wrr and rr split them exactly 10/10.
  - `drained`: p1, p2 both weight 0 (drained: not up) and backups b1, b2.
    20 sessions all reach the backups; wrr and rr split them exactly 10/10.
  - `one_left`: p1 weight 0, p2 weight 1, backup b1: one primary is still
    up, so all 20 sessions reach p2.
Sessions are short and sequential, each client from its own address
127.3.X.Y (so maglev spreads them: for maglev both servers of a pair must
get some; lc, wlc and p2c break ties at random, so for them only who may
serve is checked). The access log agrees with the greetings and the
servers' counts.
"""

import collections

from harness import expect, expect_eq, free_address, greeted_session, greeting_holder, log_stream

DEADLINE = 60
SESSIONS = 20
EXACT = ('wrr', 'rr')

# service -> [(server name, weight, backup)], and the servers that may serve.
SERVICES = {
    'primaries': ([('p1', 1, False), ('p2', 1, False), ('b1', 1, True)], ('p1', 'p2')),
    'drained': ([('p1', 0, False), ('p2', 0, False), ('b1', 1, True), ('b2', 1, True)], ('b1', 'b2')),
    'one_left': ([('p1', 0, False), ('p2', 1, False), ('b1', 1, True)], ('p2',)),
}


def client_address(k, i):
    return f'127.3.{k + 1}.{i + 1}'


def phase(t, scheduler):
    servers = {}  # (service, server name) -> TcpServer
    listens = {}
    services = []
    for service, (members, _) in SERVICES.items():
        listens[service] = free_address()
        entries = []
        for name, weight, backup in members:
            server = t.tcp_server(greeting_holder(name), name=f'{scheduler}-{service}-{name}')
            servers[service, name] = server
            entry = {'name': name, 'address': server.address, 'weight': weight}
            if backup:
                entry['backup'] = True
            entries.append(entry)
        config = {'name': service, 'listen': listens[service], 'scheduler': scheduler, 'servers': entries}
        if scheduler == 'maglev':
            config['hash_key'] = 'source_ip'
        services.append(config)
    d = t.daemon({'global': {'workers': 2}, 'services': services}, name=f'fulcrum-{scheduler}')

    met = {}  # client address -> (service, server name)
    for k, (service, (members, serving)) in enumerate(SERVICES.items()):
        counts = collections.Counter()
        for i in range(SESSIONS):
            name, me = greeted_session(listens[service], source=client_address(k, i),
                                       what=f'{scheduler} {service}: session {i}')
            met[me] = (service, name)
            counts[name] += 1
        log_stream(f'{scheduler} {service}: {dict(sorted(counts.items()))}')
        accepted = {name: servers[service, name].accepted for name, _, _ in members}
        expect_eq(accepted, {name: counts[name] for name, _, _ in members},
                  f'{scheduler} {service}: connections accepted by each server vs greetings')
        expect(set(counts) <= set(serving), f'{scheduler} {service}: sessions per server {dict(counts)}, '
                                            f'only {", ".join(serving)} may serve')
        if scheduler in EXACT:
            share = SESSIONS // len(serving)
            expect_eq(dict(counts), {name: share for name in serving}, f'{scheduler} {service}: sessions per server')
        elif scheduler == 'maglev':
            expect_eq(set(counts), set(serving), f'{scheduler} {service}: servers that got sessions')

    d.wait_access_count(len(met))
    d.stop()
    lines = d.access_log_lines()
    expect_eq(len(lines), len(met), f'{scheduler}: access log lines')
    expect_eq({line['end'] for line in lines}, {'client_close'}, f'{scheduler}: end reasons')
    expect_eq({line['client']: (line['service'], line['server']) for line in lines}, met,
              f'{scheduler}: service and server of each client in the access log')
    for line in lines:
        expect_eq(line['server_addr'], servers[line['service'], line['server']].address,
                  f'{scheduler}: server_addr of {line["service"]}/{line["server"]}')


def run(t):
    for scheduler in ('wrr', 'rr', 'maglev', 'lc', 'wlc', 'p2c'):
        phase(t, scheduler)
