"""A second fulcrum on the same addresses exits 3 instead of sharing them.

Listening sockets are SO_REUSEPORT (one per worker), and Linux lets any
process of the same user join such a port: a second instance would have
started and silently taken part of the clients and of the admin requests
(bearer tokens included). fulcrum now checks that nobody listens on an
address before binding its workers' sockets, and binds the stats port
without SO_REUSEPORT.

  1. fulcrum A (two workers, stats) serves `web` on L over demo server a.
  2. fulcrum B with the same file exits 3; its log says `cannot listen
     service=web address=L error="Address already in use"`.
  3. fulcrum C with another service address but A's stats address exits 3
     with `cannot listen service=stats address=S error="Address already in
     use"`.
  4. A foreign process listens on M with SO_REUSEPORT (as a second fulcrum
     would); A's reload adding a service on M is rejected: `reload rejected
     error="cannot listen on M: Address already in use"`, generation stays 1.
  5. Ten sessions to L all reach a through A (B and C never served).
"""

import copy
import signal
import socket

from harness import expect_eq, free_address, get_stats, greeted_session, parse_address, write_config

DEADLINE = 60


def exited_with_3(t, config, name, service, address):
    other = t.daemon(config, name=name, start=False).start(wait_ready=False)
    other.wait_exit(10)
    expect_eq(other.proc.returncode, 3, f'exit code of {name}')
    lines = [r for r in other.logs() if r.message == 'cannot listen']
    expect_eq([(r.fields.get('service'), r.fields.get('address'), r.fields.get('error')) for r in lines],
              [(service, address, 'Address already in use')], f'`cannot listen` lines of {name}')


def run(t):
    a = t.demo_server('a')
    listen, stats = free_address(), free_address()
    config = {'global': {'workers': 2}, 'stats': {'listen': stats},
              'services': [{'name': 'web', 'listen': listen, 'servers': [{'name': 'a', 'address': a.address}]}]}
    first = t.daemon(config, name='fulcrum-a')

    exited_with_3(t, config, 'fulcrum-b', 'web', listen)
    other = copy.deepcopy(config)
    other['services'][0]['listen'] = free_address()
    exited_with_3(t, other, 'fulcrum-c', 'stats', stats)

    taken = free_address()
    foreign = t.own_socket(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    foreign.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    foreign.bind(parse_address(taken))
    foreign.listen(8)
    config['services'].append({'name': 'api', 'listen': taken, 'servers': [{'address': a.address}]})
    write_config(first.config_path, config)
    first.send_signal(signal.SIGHUP)
    first.wait_for_log(lambda r: r.message == 'reload failed, the running configuration stays', timeout=10)
    expect_eq([r.fields.get('error') for r in first.find_logs('reload rejected')],
              [f'cannot listen on {taken}: Address already in use'], '`reload rejected` lines')
    expect_eq(get_stats(stats)['config']['generation'], 1, 'generation after the rejected reload')

    served = [greeted_session(listen, what=f'session {i}')[0] for i in range(10)]
    expect_eq(served, ['a'] * 10, 'servers of ten sessions to the first instance')
    first.stop()
