"""IPv6 end to end: fulcrum listens on [::1]:PORT and relays to a demo server
on [::1]:PORT2; 4 MiB go through the echo and back intact, and the logs and
/stats (its stats port is IPv6 too) write IPv6 addresses as [::1]:PORT.
(IPv6 across hosts, snat source and transparent: tests/netns.)"""

import socket
import threading

from harness import MiB, PatternStream, TestSkip, connect, expect, expect_eq, expect_eof, free_address, \
    get_stats, hash_exact, ipv6_loopback_available, local_address, recv_exact

DEADLINE = 60
PAYLOAD = PatternStream(seed=66, size=4 * MiB)


def run(t):
    if not ipv6_loopback_available():
        raise TestSkip('no IPv6 loopback (::1) on this machine')
    demo = t.demo_server('six', host='::1')
    listen, stats = free_address('::1'), free_address('::1')
    d = t.daemon({
        'global': {'workers': 2},
        'stats': {'listen': stats},
        'services': [{'name': 'v6', 'listen': [listen], 'servers': [{'name': 'six', 'address': demo.address}]}],
    })
    expect(d.find_logs('listening', service='v6', address=listen), f'no `listening` line with address={listen}')

    with connect(listen, timeout=30) as sock:
        client = local_address(sock)
        expect(client.startswith('[::1]:'), f'client address {client}')
        expect_eq(recv_exact(sock, len(demo.greeting), 'greeting'), demo.greeting, 'greeting')
        sent = []
        sender = threading.Thread(target=lambda: sent.append(PAYLOAD.send(sock)), daemon=True)
        sender.start()
        digest = hash_exact(sock, PAYLOAD.size, 'echo')
        sender.join(30)
        expect(sent, 'sending 4 MiB did not finish')
        expect_eq(digest, sent[0], 'SHA-256 of the 4 MiB echo')
        sock.shutdown(socket.SHUT_WR)
        expect_eof(sock, 'after the client half-closed')

    d.wait_access_count(1)
    service = get_stats(stats)['services'][0]
    expect_eq((service['listen'], [(s['name'], s['address']) for s in service['servers']]),
              ([listen], [('six', demo.address)]), '/stats listen and server addresses')
    d.stop()
    lines = d.access_log_lines()
    expect_eq(len(lines), 1, 'access log lines')
    line = lines[0]
    expect_eq((line['client'], line['server'], line['server_addr'], line['bytes_in'], line['bytes_out'], line['end']),
              (client, 'six', demo.address, PAYLOAD.size, len(demo.greeting) + PAYLOAD.size, 'client_close'),
              'access log client, server, server_addr, bytes_in, bytes_out, end')
