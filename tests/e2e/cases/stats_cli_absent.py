"""Without a `stats` section there is no stats endpoint.

A config with one service and no stats section passes --check and runs:
sessions go through, no `stats listening` line is logged, nothing listens
on a port picked for the endpoint (connects are refused), and the daemon's
only listening sockets are the service's (read from /proc: its socket
descriptors matched against the LISTEN entries of /proc/net/tcp{,6}), so
it did not fall back to some default stats port such as 9100.
"""

import os
import subprocess

from harness import binary, connect, echo_session, expect, expect_eq, free_port, format_address, free_address, \
    listening_on, parse_address

DEADLINE = 30
SESSIONS = 3


def listening_ports(pid):
    """TCP ports of the LISTEN sockets that process `pid` holds."""
    inodes = set()
    for fd in os.listdir(f'/proc/{pid}/fd'):
        try:
            target = os.readlink(f'/proc/{pid}/fd/{fd}')
        except OSError:
            continue
        if target.startswith('socket:['):
            inodes.add(target[len('socket:['):-1])
    ports = set()
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == '0A' and parts[9] in inodes:
                        ports.add(int(parts[1].rsplit(':', 1)[1], 16))
        except FileNotFoundError:
            continue
    return ports


def run(t):
    a = t.demo_server('a')
    listen = free_address()
    would_be = free_port()
    config = {'global': {'workers': 2},
              'services': [{'name': 'web', 'listen': listen, 'servers': [{'name': 'a', 'address': a.address}]}]}
    d = t.daemon(config, start=False)
    check = subprocess.run([binary('FULCRUM'), '--check', '-c', d.config_path], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=10)
    expect_eq((check.returncode, check.stdout, check.stderr), (0, b'configuration ok\n', b''),
              '--check of a config without stats: exit, stdout, stderr')
    d.start()

    for n in range(SESSIONS):
        expect_eq(echo_session(listen, n)[0], 'a', f'session {n}: server')
    expect_eq(d.find_logs('stats listening'), [], '`stats listening` lines without a stats section')
    expect(not listening_on(would_be), f'something listens on {would_be}, the port kept for the endpoint')
    try:
        connect(format_address('127.0.0.1', would_be), timeout=2).close()
        refused = False
    except ConnectionRefusedError:
        refused = True
    expect(refused, f'a connect to 127.0.0.1:{would_be} succeeded with no stats section')
    expect_eq(listening_ports(d.pid), {parse_address(listen)[1]}, 'ports the daemon listens on')
    d.wait_access_count(SESSIONS)
    d.stop()
