"""`source:` sets the address fulcrum connects to servers from.

Service `snat` has source: 127.0.0.2 and its server must see connections
from 127.0.0.2; service `plain` has no source, and its server sees 127.0.0.1
(so the test can tell the two apart). Clients connect from 127.0.0.1.
"""

from harness import connect, expect_eq, free_address, local_address, recv_line

DEADLINE = 60
SESSIONS = 3


def tell_peer(conn, peer):
    conn.sendall(f'you are {peer[0]}\n'.encode())


def run(t):
    snat_server = t.tcp_server(tell_peer, name='snat')
    plain_server = t.tcp_server(tell_peer, name='plain')
    listen_snat, listen_plain = free_address(), free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'services': [
            {'name': 'snat', 'listen': listen_snat, 'source': '127.0.0.2',
             'servers': [{'name': 'snat', 'address': snat_server.address}]},
            {'name': 'plain', 'listen': listen_plain, 'servers': [{'name': 'plain', 'address': plain_server.address}]},
        ],
    })

    clients = {}
    for i in range(SESSIONS):
        for service, listen, expected in (('snat', listen_snat, '127.0.0.2'), ('plain', listen_plain, '127.0.0.1')):
            with connect(listen, timeout=10) as sock:
                clients[local_address(sock)] = service
                expect_eq(recv_line(sock).decode(), f'you are {expected}\n', f'{service} session {i}: peer seen by the server')

    expect_eq([peer[0] for peer in snat_server.peers], ['127.0.0.2'] * SESSIONS, 'peers of the snat server')
    expect_eq([peer[0] for peer in plain_server.peers], ['127.0.0.1'] * SESSIONS, 'peers of the plain server')

    d.wait_access_count(2 * SESSIONS)
    d.stop()
    lines = d.access_log_lines()
    expect_eq({line['client']: line['service'] for line in lines}, clients, 'clients and services in the access log')
