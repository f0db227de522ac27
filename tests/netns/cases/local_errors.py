"""fulcrum's own failures are not the servers': with its source ports used
up, connects fail with EADDRNOTAVAIL, and that counts as `local_errors`
(service and server), never as a connect failure or a failed health check.

The test makes a network namespace of its own with only loopback, narrows
its ephemeral port range (net.ipv4.ip_local_port_range is per namespace) to
8 ports and binds a socket to each of them: every connect that leaves the
port to the kernel now fails with EADDRNOTAVAIL, as when a fixed snat
`source` has no port left towards a server. The test's own sockets bind
explicit ports below that range; its main thread joins the namespace before
it creates any socket or thread.

fulcrum (2 workers) runs there with one service: `source: 127.0.0.2`, two
servers a and b, rr, `retries: 1`, health checks every 200 ms with
`fall: 1` (one failed check would take a server down). While the ports are
held:
  - the health checks of both servers hit EADDRNOTAVAIL: each is logged as
    a `health check local error` and counted on the server, and neither
    server goes down (before the fix both went down at the first check);
  - 4 clients connect: each session tries one server, then (a local error is
    retried like a failed connect, within `retries`) the other, and ends
    with `end=local_error`: 8 `local error` warnings, attempts 1 and 2.
Then the ports are released and 2 sessions echo 256 KiB each, verified by
SHA-256 (both servers still serve). /stats and /metrics: the service has
local_errors 8 and 4 rejected sessions; each server has connect_failures 0,
checks_failed 0, state up, and local_errors = its 4 session attempts + its
logged health check local errors (exact); promtool accepts /metrics. The
namespace is deleted at the end, also when the test fails. Root only.
"""

import ctypes
import os
import shutil
import socket
import subprocess

from harness import PatternStream, TestFailure, TestSkip, connect, echo_handler, expect, expect_eq, family_of, \
    free_address, free_port, get_metrics, get_stats, health_transitions, log_stream, parse_address, \
    upload_and_check_echo, wait_until

DEADLINE = 90
PORT_RANGE = (60000, 60007)
SOURCE = '127.0.0.2'
SESSIONS = 4
ECHO_BYTES = 256 * 1024
EADDRNOTAVAIL_TEXT = os.strerror(99)  # glibc's text for EADDRNOTAVAIL, as fulcrum logs it
CLONE_NEWNET = 0x40000000
IP_BIND_ADDRESS_NO_PORT = 24


def run_command(*args):
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise TestFailure(f'{" ".join(args)} exited {result.returncode}: {result.stderr.strip()}')
    return result.stdout


class Namespace:
    """A network namespace with loopback up and a narrow ephemeral port
    range; enter() moves the calling thread into it, leave() back."""

    def __init__(self):
        self.name = f'fulcrum-{os.getpid()}-local'
        self.created = False
        self._host = None

    def create(self):
        run_command('ip', 'netns', 'add', self.name)
        self.created = True
        run_command('ip', '-n', self.name, 'link', 'set', 'lo', 'up')
        run_command('ip', 'netns', 'exec', self.name, 'sysctl', '-q', '-w',
                    f'net.ipv4.ip_local_port_range={PORT_RANGE[0]} {PORT_RANGE[1]}')

    def _setns(self, fd, what):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f'setns {what}')

    def enter(self):
        self._host = os.open('/proc/thread-self/ns/net', os.O_RDONLY | os.O_CLOEXEC)
        fd = os.open(f'/run/netns/{self.name}', os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._setns(fd, f'into {self.name}')
        finally:
            os.close(fd)

    def leave(self):
        if self._host is not None:
            self._setns(self._host, 'back into the host\'s network namespace')
            os.close(self._host)
            self._host = None

    def delete(self):
        if self.created:
            subprocess.run(['ip', 'netns', 'delete', self.name], capture_output=True, timeout=30)
            self.created = False


def hold_ports():
    """A socket bound to each port of the range (no SO_REUSEADDR): the
    kernel then has no port to give a connect. Returns them."""
    holders = []
    for port in range(PORT_RANGE[0], PORT_RANGE[1] + 1):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(('0.0.0.0', port))
        holders.append(s)
    return holders


def connect_from_source(address):
    """A connect as fulcrum makes it: from SOURCE, the port left to connect()."""
    host, port = parse_address(address)
    with socket.socket(family_of(host), socket.SOCK_STREAM) as s:
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((SOURCE, 0))
        s.settimeout(5)
        s.connect((host, port))


def refused_client(listen, i):
    """A client from an explicit port (the range is used up) that fulcrum
    must close without a byte. Returns its address."""
    host, port = parse_address(listen)
    with socket.socket(family_of(host), socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.bind(('127.0.0.1', free_port()))
        s.connect((host, port))
        me = '%s:%d' % s.getsockname()
        s.sendall(f'client {i}\n'.encode())
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b''
        expect_eq(data, b'', f'client {i}: what fulcrum sent before closing')
    return me


def health_local_errors(d, server):
    return d.find_logs('health check local error', service='svc', server=server)


def promtool_check(text):
    promtool = shutil.which('promtool')
    if promtool is None:
        log_stream('promtool is not installed: /metrics not checked by it (tests/e2e metrics_promtool does)')
        return
    done = subprocess.run([promtool, 'check', 'metrics'], input=text.encode(), capture_output=True, timeout=30)
    findings = (done.stdout + done.stderr).decode('utf-8', 'replace')
    expect(done.returncode == 0 and not findings, f'promtool check metrics: exit {done.returncode}:\n{findings}')


def run(t):
    if os.geteuid() != 0:
        raise TestSkip('network namespaces need root')
    if shutil.which('ip') is None:
        raise TestFailure('ip is not installed (package iproute2: tools/deps.sh)')
    ns = Namespace()
    # Cleanups run last registered first: leave the namespace, then delete it.
    t.at_cleanup(ns.delete)
    ns.create()
    t.at_cleanup(ns.leave)
    ns.enter()

    holders = hold_ports()
    server_a = t.tcp_server(echo_handler, name='a')
    server_b = t.tcp_server(echo_handler, name='b')
    try:
        connect_from_source(server_a.address)
        raise TestFailure('a connect from the used-up port range went through: the test\'s premise fails')
    except OSError as e:
        expect_eq(e.errno, 99, f'errno of a connect with every port held ({e})')

    listen, stats = free_address(), free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'stats': {'listen': stats},
        'services': [{'name': 'svc', 'listen': listen, 'source': SOURCE, 'scheduler': 'rr', 'retries': 1,
                      'health_check': {'interval': '200ms', 'timeout': '200ms', 'rise': 1, 'fall': 1},
                      'servers': [{'name': 'a', 'address': server_a.address},
                                  {'name': 'b', 'address': server_b.address}]}],
    }, prefix=['ip', 'netns', 'exec', ns.name])

    def checks_hit_the_limit():
        changes = [c['record'].raw for c in health_transitions(d)]
        expect(not changes, 'a server changed state while only fulcrum was short of ports:\n' + '\n'.join(changes))
        return all(len(health_local_errors(d, s)) >= 3 for s in ('a', 'b'))
    wait_until(checks_hit_the_limit, 20, '3 health check local errors of each server')

    clients = [refused_client(listen, i) for i in range(SESSIONS)]
    d.wait_access_count(SESSIONS)
    expect_eq(server_a.accepted + server_b.accepted, 0, 'connections that reached a server with no port left')

    for s in holders:
        s.close()
    for i in range(2):
        with connect(listen, timeout=20) as sock:
            upload_and_check_echo(sock, PatternStream(i, ECHO_BYTES), f'echo session {i} after the ports freed up')
    expect(not health_transitions(d), 'a server changed state')

    service = get_stats(stats)['services'][0]
    servers = {s['name']: s for s in service['servers']}
    expect_eq(service.get('local_errors'), 2 * SESSIONS, 'the service\'s local_errors in /stats')
    expect_eq(service['sessions']['rejected'], SESSIONS, 'rejected sessions')
    metrics, text = get_metrics(stats)
    expect_eq(metrics.get('fulcrum_service_local_errors_total', service='svc'), 2 * SESSIONS,
              'fulcrum_service_local_errors_total')
    for name in ('a', 'b'):
        server = servers[name]
        expect_eq((server['state'], server['connect_failures'], server['health']['checks_failed']),
                  ('up', 0, 0), f'server {name}: state, connect_failures, health.checks_failed')
        # The checks stopped failing when the ports were freed; their log
        # lines are written as they are counted.
        checks = len(health_local_errors(d, name))
        expect_eq(server.get('local_errors'), SESSIONS + checks,
                  f'server {name}: local_errors ({SESSIONS} session attempts + {checks} logged health checks)')
        expect_eq(metrics.get('fulcrum_server_local_errors_total', service='svc', server=name),
                  server['local_errors'], f'fulcrum_server_local_errors_total of {name}')
        expect_eq(metrics.get('fulcrum_server_connect_failures_total', service='svc', server=name), 0,
                  f'fulcrum_server_connect_failures_total of {name}')
        expect_eq(metrics.get('fulcrum_server_health_checks_failed_total', service='svc', server=name), 0,
                  f'fulcrum_server_health_checks_failed_total of {name}')
        for r in health_local_errors(d, name):
            expect_eq((r.level, r.fields.get('address'), r.fields.get('error')),
                      ('warn', server['address'], EADDRNOTAVAIL_TEXT), f'health check local error line {r.raw}')
    promtool_check(text)
    log_stream(f'local errors: service {service["local_errors"]}, '
               + ', '.join(f'server {n} {servers[n]["local_errors"]}' for n in ('a', 'b')))

    d.stop()
    expect_eq(d.find_logs('connect failed'), [], 'connect failed lines')
    attempts = sorted((r.fields.get('attempt'), r.fields.get('error')) for r in d.find_logs('local error', service='svc'))
    expect_eq(attempts, [('1', EADDRNOTAVAIL_TEXT)] * SESSIONS + [('2', EADDRNOTAVAIL_TEXT)] * SESSIONS,
              'local error lines (attempt, error)')
    lines = d.access_log_lines()
    ns.leave()
    ns.delete()
    expect(ns.name not in run_command('ip', 'netns', 'list'), f'namespace {ns.name} deleted')
    refused = sorted((l['client'], l['server'], l['bytes_in'], l['end']) for l in lines if l['client'] in clients)
    expect_eq(refused, sorted((c, '-', 0, 'local_error') for c in clients), 'access log of the refused clients')
    expect_eq(sorted((l['server'], l['end']) for l in lines if l['client'] not in clients),
              [('a', 'client_close'), ('b', 'client_close')], 'access log of the echo sessions (rr)')
