"""maglev: a client keeps its server, in every fulcrum with the same servers.

Four demo servers a, b, c, d; every fulcrum has two workers.
  - hash_key source_ip, instance `first`: 64 clients, each bound to its own
    address 127.1.X.Y, make 3 sessions each: all 3 meet the same server, and
    the 64 clients are spread over at least 3 of the 4 servers.
  - instance `same` (other listen port, same servers in the same order),
    instance `shuffled` (the server list in another order) and instance
    `moved` (the same names, but at the addresses of a second set of demo
    servers with the same names): every client meets the same server (by
    name) there, 3 sessions out of 3.
  - hash_key source_ip_port, instances `port` and `port_shuffled`: 32
    sessions from one client address (different ports) meet more than one
    server; and 16 times a client (address and port) holds a session to
    `port` while the same address and port connects to `port_shuffled`: both
    meet the same server.
Each instance's access log names for each client the server it met, and its
per-server counts are the greetings' counts.
"""

import collections
import socket

from harness import expect, expect_eof, expect_eq, free_address, greeted_session, local_address, log_stream, \
    parse_address, read_greeting

DEADLINE = 60
NAMES = ['a', 'b', 'c', 'd']
SHUFFLED = ['c', 'a', 'd', 'b']
CLIENTS = 64
ROUNDS = 3
PORT_SESSIONS = 32
PORT_PAIRS = 16


def client_address(i):
    return f'127.1.{1 + i // 8}.{1 + (i % 8) * 31}'


def run(t):
    demos = {name: t.demo_server(name) for name in NAMES}
    moved_demos = {name: t.demo_server(name, label=f'{name}-moved') for name in NAMES}
    addresses = {}  # instance label -> server name -> address

    def start(label, order, hash_key, servers=demos):
        listen = free_address()
        addresses[label] = {name: servers[name].address for name in order}
        d = t.daemon({
            'global': {'workers': 2},
            'services': [{'name': 'sticky', 'listen': listen, 'scheduler': 'maglev', 'hash_key': hash_key,
                          'servers': [{'name': name, 'address': servers[name].address} for name in order]}],
        }, name=f'fulcrum-{label}')
        return d, listen

    instances = {label: start(label, order, 'source_ip', servers)
                 for label, order, servers in (('first', NAMES, demos), ('same', NAMES, demos),
                                               ('shuffled', SHUFFLED, demos), ('moved', NAMES, moved_demos))}

    # Client address -> server, and per instance: client ip:port -> server.
    home = {}
    met = {label: {} for label in instances}
    for label, (d, listen) in instances.items():
        for i in range(CLIENTS):
            source = client_address(i)
            for r in range(ROUNDS):
                name, me = greeted_session(listen, source=source, what=f'{label}: client {source} session {r}')
                expect_eq(parse_address(me)[0], source, 'client source address')
                met[label][me] = name
                if source not in home:
                    home[source] = name
                expect_eq(name, home[source], f'{label}: server of client {source} in session {r} '
                                              f'(its first session met {home[source]})')
        log_stream(f'{label}: every client met its server {ROUNDS} times out of {ROUNDS}')
    spread = collections.Counter(home.values())
    log_stream(f'clients per server: {dict(sorted(spread.items()))}')
    expect(len(spread) >= 3, f'{CLIENTS} clients met only {dict(spread)}')

    # hash_key source_ip_port.
    port_d, port_listen = start('port', NAMES, 'source_ip_port')
    shuffled_d, shuffled_listen = start('port_shuffled', SHUFFLED, 'source_ip_port')
    met['port'], met['port_shuffled'] = {}, {}
    one_client = '127.1.200.1'
    seen = collections.Counter()
    for i in range(PORT_SESSIONS):
        name, me = greeted_session(port_listen, source=one_client, what=f'port: session {i}')
        met['port'][me] = name
        seen[name] += 1
    log_stream(f'source_ip_port: {PORT_SESSIONS} sessions from {one_client} met {dict(sorted(seen.items()))}')
    expect(len(seen) > 1, f'{PORT_SESSIONS} sessions from {one_client} (different ports) all met {dict(seen)}')

    def bound_socket(source, port):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.settimeout(10)
        s.bind((source, port))
        return s

    def finish(sock, what):
        sock.shutdown(socket.SHUT_WR)
        expect_eof(sock, what)
        sock.close()

    for i in range(PORT_PAIRS):
        source = client_address(i)
        first = bound_socket(source, 0)
        second = None
        try:
            first.connect(parse_address(port_listen))
            name_first = read_greeting(first, f'pair {i}: greeting from port')
            me = local_address(first)
            second = bound_socket(source, parse_address(me)[1])
            second.connect(parse_address(shuffled_listen))
            name_second = read_greeting(second, f'pair {i}: greeting from port_shuffled')
            expect_eq(local_address(second), me, f'pair {i}: client address of the second session')
            expect_eq(name_second, name_first, f'pair {i}: server of client {me} in port_shuffled '
                                               f'(port sent it to {name_first})')
            met['port'][me] = name_first
            met['port_shuffled'][me] = name_second
            finish(first, f'pair {i}: port session')
            finish(second, f'pair {i}: port_shuffled session')
        finally:
            first.close()
            if second is not None:
                second.close()
    instances['port'] = (port_d, port_listen)
    instances['port_shuffled'] = (shuffled_d, shuffled_listen)

    for label, (d, _) in instances.items():
        d.wait_access_count(len(met[label]))
        d.stop()
        lines = d.access_log_lines()
        expect_eq(len(lines), len(met[label]), f'{label}: access log lines')
        expect_eq({line['end'] for line in lines}, {'client_close'}, f'{label}: end reasons')
        expect_eq({line['client']: line['server'] for line in lines}, met[label],
                  f'{label}: server of each client in the access log')
        expect_eq(collections.Counter(line['server'] for line in lines), collections.Counter(met[label].values()),
                  f'{label}: sessions per server in the access log')
        for line in lines:
            expect_eq(line['server_addr'], addresses[label][line['server']],
                      f'{label}: server_addr of {line["server"]}')
