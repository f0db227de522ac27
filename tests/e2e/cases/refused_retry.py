"""A refused connect is retried on the next server, invisibly to the client.

Service `retry` (retries: 2, rr): a dead address (a bound socket that never
listens, so connects are refused) and a live demo server. 20 sequential
sessions all reach the live server; the dead one shows up only in
`connect failed` warnings, never as end=connect_failed.

Service `all_dead` (retries: 1): two dead addresses. The client is closed
without a byte, both servers are tried once, and the access log says
end=connect_failed.
"""

import socket

from harness import connect, expect, expect_eq, expect_eof, free_address, local_address, recv_exact

DEADLINE = 60
SESSIONS = 20


def check_refusal_warning(record, service, servers):
    f = record.fields
    expect_eq(record.level, 'warn', f'level of {record.raw}')
    expect_eq(f.get('service'), service, f'service of {record.raw}')
    expect(f.get('server') in servers, f'unexpected server in {record.raw}')
    expect_eq(f.get('address'), servers[f['server']], f'address of {record.raw}')
    expect_eq(f.get('error'), 'Connection refused', f'error of {record.raw}')
    expect(f.get('attempt', '').isdigit(), f'attempt is not a number in {record.raw}')


def run(t):
    live = t.demo_server('live')
    dead = t.dead_address()
    dead1, dead2 = t.dead_address(), t.dead_address()
    listen_retry, listen_dead = free_address(), free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'services': [
            {'name': 'retry', 'listen': listen_retry, 'scheduler': 'rr', 'retries': 2,
             'servers': [{'name': 'dead', 'address': dead}, {'name': 'live', 'address': live.address}]},
            {'name': 'all_dead', 'listen': listen_dead, 'scheduler': 'rr', 'retries': 1,
             'servers': [{'name': 'dead1', 'address': dead1}, {'name': 'dead2', 'address': dead2}]},
        ],
    })

    clients = set()
    for i in range(SESSIONS):
        with connect(listen_retry, timeout=10) as sock:
            clients.add(local_address(sock))
            expect_eq(recv_exact(sock, len(live.greeting), 'greeting'), live.greeting, f'session {i}: greeting')
            message = f'session {i} says hi\n'.encode()
            sock.sendall(message)
            expect_eq(recv_exact(sock, len(message), 'echo'), message, f'session {i}: echo')
            sock.shutdown(socket.SHUT_WR)
            expect_eof(sock, f'session {i}: after the client half-closed')

    with connect(listen_dead, timeout=10) as sock:
        dead_client = local_address(sock)
        expect_eof(sock, 'client of a service whose servers all refuse')

    d.wait_access_count(SESSIONS + 1)
    d.stop()

    # rr is one rotation over [dead, live]: at least every other session
    # starts at the dead server, at most all of them do.
    failures = d.find_logs('connect failed', service='retry')
    expect(SESSIONS // 2 <= len(failures) <= SESSIONS,
           f'{len(failures)} `connect failed` lines for {SESSIONS} sessions over [dead, live] with rr')
    for record in failures:
        check_refusal_warning(record, 'retry', {'dead': dead})
    lines = [line for line in d.access_log_lines() if line['service'] == 'retry']
    expect_eq(len(lines), SESSIONS, 'access log lines of service retry')
    expect_eq({line['client'] for line in lines}, clients, 'client addresses in the access log')
    for line in lines:
        expect_eq((line['server'], line['server_addr'], line['end']), ('live', live.address, 'client_close'),
                  f'server, server_addr, end of {line["client"]}')

    failures = d.find_logs('connect failed', service='all_dead')
    expect_eq(len(failures), 2, 'connect attempts on service all_dead (1 + retries: 1)')
    for record in failures:
        check_refusal_warning(record, 'all_dead', {'dead1': dead1, 'dead2': dead2})
    expect_eq(sorted((r.fields['server'], r.fields['attempt']) for r in failures), [('dead1', '1'), ('dead2', '2')]
              if failures[0].fields['server'] == 'dead1' else [('dead1', '2'), ('dead2', '1')],
              '(server, attempt) of the connects tried on all_dead')
    lines = [line for line in d.access_log_lines() if line['service'] == 'all_dead']
    expect_eq(len(lines), 1, 'access log lines of service all_dead')
    expect_eq((lines[0]['client'], lines[0]['server'], lines[0]['server_addr'], lines[0]['bytes_in'],
               lines[0]['bytes_out'], lines[0]['end']),
              (dead_client, '-', '-', 0, 0, 'connect_failed'), 'access log of the all_dead session')
