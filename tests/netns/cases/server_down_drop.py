"""`on_server_down: close` with a server that goes silent: its packets are
dropped, so nothing (no RST, no FIN, no ICMP) tells fulcrum or the client
that it is gone. Only the health checks find out, and the client's session
must end when they do, not at the idle timeout.

Two network namespaces made by the test, joined by a veth pair:

    fulcrum 198.18.4.1  (with the test's own sockets: the main thread
      |                  joins this namespace before it makes any)
    server  198.18.4.2  (tests/netns/peer.py: greets with `peer IP PORT SERVER`,
                         then echoes, on port 9000)

fulcrum (1 worker) has one service: the primary `far` (198.18.4.2:9000)
and the backup `spare` (127.0.0.1, greets `hello from spare`, then echoes),
so every session goes to `far` while it is up and to `spare` once it is
down; health checks (plain connect) every 200 ms, timeout 200 ms, rise 1,
fall 2; idle timeout 60 s, connect timeout 30 s, retries 1. Each run:
  1. A session to `far`: its greeting names fulcrum's 198.18.4.1, 64 KiB of
     random bytes are echoed byte-exact; the session stays open, idle.
  2. An nftables table of the test's own in the server's namespace drops
     every packet to and from port 9000 (the data and the check port).
  3. At once a second client connects: fulcrum picks `far` and its connect
     hangs (the SYN is dropped). /stats shows `far` up with 2 active
     sessions, so this session was connecting to `far` before it went down.
  4. `far` fails 2 checks, `connect timeout` each (the probe's deadline
     came before any answer): one `server down` line with that reason.
With `on_server_down: close`, within fall x interval + 1 s = 1.4 s of the
drop (the checks need at most fall x (1.1 interval + timeout) = 0.84 s):
  - the first client's session is reset (ConnectionResetError: no byte,
    no EOF);
  - the connecting session gives `far` up and goes to `spare`: its client
    reads `hello from spare`, then 64 KiB echo byte-exact;
  - /stats: `far` down, health.last_error `connect timeout`,
    sessions.closed_on_down 1 (only the relaying session: the connecting
    one moved), `spare` 0; the access log: far/server_down and
    spare/client_close.
With `on_server_down: keep` (the same steps), 1 s after `far` went down and
no sooner than 1.4 s after the drop, neither client has seen a byte, an EOF
or a reset: the first session waits for its idle timeout, the second for
its connect timeout (no session line is logged yet); closed_on_down is 0.
fulcrum's graceful stop (shutdown_timeout 1 s) then ends both with
`end=shutdown` on `far`.
The nftables table and the namespaces are deleted at the end, also when the
test fails (the test checks they are gone). Root only.
"""

import ctypes
import os
import select
import shutil
import socket
import subprocess
import sys
import time

from harness import TestFailure, TestSkip, connect, echo_handler, expect, expect_eq, free_address, get_stats, \
    health_transitions, log_stream, recv_exact, recv_line, wait_until

DEADLINE = 90
HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(os.path.dirname(HERE), 'peer.py')
CLONE_NEWNET = 0x40000000

FULCRUM_SIDE, SERVER = '198.18.4.1', '198.18.4.2'
SERVER_PORT = 9000
TABLE = 'fulcrum_test_drop'  # the test's own nftables table, in the server's namespace only
INTERVAL, TIMEOUT, FALL = 0.2, 0.2, 2
END_BY = FALL * INTERVAL + 1.0  # seconds after the drop (the bound)
PAYLOAD = 64 * 1024


def run_command(*args, stdin=None):
    result = subprocess.run(list(args), input=stdin, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise TestFailure(f'{" ".join(args)} exited {result.returncode}: {result.stderr.strip()}')
    return result.stdout


class Topology:
    """fulcrum's and the server's namespaces joined by a veth pair; enter()
    moves the calling thread into fulcrum's, leave() back; delete() removes
    both (idempotent)."""

    def __init__(self):
        tag = f'fulcrum-{os.getpid()}'
        self.fulcrum, self.server = f'{tag}-lb', f'{tag}-far'
        self.created = []
        self._host = None

    def names(self):
        return [self.fulcrum, self.server]

    def create(self):
        for ns in self.names():
            run_command('ip', 'netns', 'add', ns)
            self.created.append(ns)
            run_command('ip', '-n', ns, 'link', 'set', 'lo', 'up')
        # Both ends are created inside the namespaces: nothing touches the
        # host's own network.
        run_command('ip', 'link', 'add', 'l0', 'netns', self.fulcrum, 'type', 'veth',
                    'peer', 'name', 's0', 'netns', self.server)
        for ns, dev, address in ((self.fulcrum, 'l0', FULCRUM_SIDE), (self.server, 's0', SERVER)):
            run_command('ip', '-n', ns, 'addr', 'add', f'{address}/24', 'dev', dev)
            run_command('ip', '-n', ns, 'link', 'set', dev, 'up')

    def run_in(self, ns, *args, stdin=None):
        return run_command('ip', 'netns', 'exec', ns, *args, stdin=stdin)

    def _setns(self, fd, what):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f'setns {what}')

    def enter(self):
        self._host = os.open('/proc/thread-self/ns/net', os.O_RDONLY | os.O_CLOEXEC)
        fd = os.open(f'/run/netns/{self.fulcrum}', os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._setns(fd, f'into {self.fulcrum}')
        finally:
            os.close(fd)

    def leave(self):
        if self._host is not None:
            self._setns(self._host, 'back into the host\'s network namespace')
            os.close(self._host)
            self._host = None

    def delete(self):
        while self.created:
            subprocess.run(['ip', 'netns', 'delete', self.created.pop()], capture_output=True, timeout=30)

    # -- the drop rule

    def drop_server_port(self):
        """Every packet to or from the server's port is dropped in the
        server's namespace, silently: its sockets stay as they are."""
        self.run_in(self.server, 'nft', '-f', '-', stdin=f"""
table inet {TABLE} {{
  chain in {{ type filter hook input priority 0; policy accept; tcp dport {SERVER_PORT} drop; }}
  chain out {{ type filter hook output priority 0; policy accept; tcp sport {SERVER_PORT} drop; }}
}}
""")

    def remove_drop(self):
        self.run_in(self.server, 'nft', 'delete', 'table', 'inet', TABLE)

    def remove_drop_if_there(self):
        """For the cleanup: the namespace may be gone already."""
        if self.server in self.created:
            subprocess.run(['ip', 'netns', 'exec', self.server, 'nft', 'delete', 'table', 'inet', TABLE],
                           capture_output=True, timeout=30)

    def tables(self):
        return self.run_in(self.server, 'nft', 'list', 'tables')


def spare_handler(conn, peer):
    """Greets, then echoes until EOF. A health check closes with a reset
    when the greeting arrives, before it sends anything: that is no error."""
    try:
        conn.sendall(b'hello from spare\n')
        first = conn.recv(65536)
    except (ConnectionResetError, BrokenPipeError):
        return
    if first:
        conn.sendall(first)
        echo_handler(conn, peer)


def echo_round_trip(sock, what):
    """64 KiB of random bytes out and back, byte-exact, the session left open."""
    payload = os.urandom(PAYLOAD)
    sock.sendall(payload)
    expect(recv_exact(sock, PAYLOAD, f'{what}: echo') == payload, f'{what}: the echo differs from what was sent')


def silent(sock):
    """Nothing to read, no EOF, no reset: the session is open and silent."""
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def far_of(stats):
    servers = {s['name']: s for s in get_stats(stats)['services'][0]['servers']}
    return servers['far'], servers['spare']


def scenario(t, topology, spare, policy):
    log_stream(f'--- on_server_down: {policy}')
    listen, stats = free_address(), free_address()
    d = t.daemon({
        'global': {'workers': 1, 'shutdown_timeout': '1s'},
        'stats': {'listen': stats},
        'services': [{'name': 'svc', 'listen': listen, 'on_server_down': policy, 'retries': 1,
                      'timeouts': {'idle': '60s', 'connect': '30s'},
                      'health_check': {'interval': '200ms', 'timeout': '200ms', 'rise': 1, 'fall': FALL},
                      'servers': [{'name': 'far', 'address': f'{SERVER}:{SERVER_PORT}'},
                                  {'name': 'spare', 'address': spare.address, 'backup': True}]}],
    }, name=f'fulcrum-{policy}', prefix=['ip', 'netns', 'exec', topology.fulcrum])

    # 1. A relaying session to far.
    relaying = t.own_socket(connect(listen, timeout=20))
    expect_eq(recv_line(relaying, what='greeting of far').decode().split()[:2], ['peer', FULCRUM_SIDE],
              'greeting of far (the address it sees)')
    echo_round_trip(relaying, 'session to far')
    far, _ = far_of(stats)
    expect_eq((far['state'], far['sessions']['active']), ('up', 1), 'far before the drop: state, active sessions')

    # 2. far goes silent.
    dropped_at = time.monotonic()
    topology.drop_server_port()

    # 3. A session that connects to far after the drop, before it is down.
    connecting = t.own_socket(connect(listen, timeout=20))

    def connecting_to_far():
        far, _ = far_of(stats)
        expect_eq(far['state'], 'up', 'far\'s state while the second session starts (the premise)')
        return far['sessions']['active'] == 2
    wait_until(connecting_to_far, 5, 'a second active session on far')
    log_stream(f'second session connecting to far {time.monotonic() - dropped_at:.3f}s after the drop')

    # 4. far goes down, its checks timed out.
    wait_until(lambda: health_transitions(d, 'svc', 'far'), max(0.01, dropped_at + END_BY - time.monotonic()),
               f'far marked down within {END_BY:g}s of the drop')
    log_stream(f'far down {time.monotonic() - dropped_at:.3f}s after the drop (seen by the test)')
    expect_eq([(x['state'], x['reason'], x['check']) for x in health_transitions(d, 'svc', 'far')],
              [('down', 'connect timeout', 'active')], 'health transitions of far')

    if policy == 'close':
        # At least a little: a timeout of 0 would make the socket non-blocking.
        relaying.settimeout(max(0.01, dropped_at + END_BY - time.monotonic()))
        try:
            data = relaying.recv(1)
            end = 'eof' if not data else f'bytes {data!r}'
        except ConnectionResetError:
            end = 'reset'
        except socket.timeout:
            end = 'still open'
        log_stream(f'relaying session: {end} {time.monotonic() - dropped_at:.3f}s after the drop')
        expect_eq(end, 'reset', f'how the session on far ended within {END_BY:g}s of the drop')

        connecting.settimeout(max(0.01, dropped_at + END_BY - time.monotonic()))
        try:
            greeting = recv_line(connecting, what='greeting of the moved session').decode()
        except socket.timeout:
            greeting = 'nothing'
        log_stream(f'connecting session: {greeting.strip()!r} {time.monotonic() - dropped_at:.3f}s after the drop')
        expect_eq(greeting, 'hello from spare\n', f'greeting of the connecting session within {END_BY:g}s of the drop')
        connecting.settimeout(20)
        echo_round_trip(connecting, 'session moved to spare')
        connecting.shutdown(socket.SHUT_WR)
        expect_eq(connecting.recv(1), b'', 'EOF after the moved session\'s half-close')
        d.wait_access_count(2)
    else:
        down_at = health_transitions(d, 'svc', 'far')[0]['time']
        # Both: at least 1 s after far went down, and past the close bound.
        time.sleep(max(0.0, dropped_at + END_BY - time.monotonic(), down_at + 1.0 - time.time()))
        expect_eq((silent(relaying), silent(connecting)), (True, True),
                  f'both sessions open and silent 1 s after far went down ({time.monotonic() - dropped_at:.3f}s '
                  'after the drop): (relaying, connecting)')
        expect_eq(d.access_log_lines(), [], 'session lines before the stop')

    far, spare_stats = far_of(stats)
    expect_eq((far['state'], far['health']['last_error']), ('down', 'connect timeout'),
              'far in /stats: state, health.last_error')
    expect_eq((far['sessions']['closed_on_down'], spare_stats['sessions']['closed_on_down']),
              (1 if policy == 'close' else 0, 0), '/stats sessions.closed_on_down of far and spare')

    d.stop()
    lines = d.access_log_lines()
    expected = [('far', 'server_down'), ('spare', 'client_close')] if policy == 'close' \
        else [('far', 'shutdown'), ('far', 'shutdown')]
    expect_eq(sorted((line['server'], line['end']) for line in lines), expected, 'server and end of each session')
    relaying.close()
    connecting.close()

    # The premise, seen from outside fulcrum: far takes no connect.
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect((SERVER, SERVER_PORT))
        raise TestFailure('a connect to far went through the drop rule')
    except socket.timeout:
        pass
    finally:
        probe.close()
    topology.remove_drop()


def run(t):
    if os.geteuid() != 0:
        raise TestSkip('network namespaces need root')
    for tool in ('ip', 'nft'):
        if shutil.which(tool) is None:
            raise TestFailure(f'{tool} is not installed (packages iproute2, nftables: tools/deps.sh)')
    topology = Topology()
    # Cleanups run last registered first, after every process is killed:
    # leave fulcrum's namespace, drop the table, delete the namespaces.
    t.at_cleanup(topology.delete)
    topology.create()
    t.at_cleanup(topology.remove_drop_if_there)

    with open(t.path('peer.stderr'), 'wb') as err:
        server = subprocess.Popen(['ip', 'netns', 'exec', topology.server, sys.executable, PEER, 'server',
                                   f'{SERVER}:{SERVER_PORT}'],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True)
    t.register_process(server, 'netns server')
    expect_eq(server.stdout.readline(), 'ready\n', 'the server in its namespace')

    t.at_cleanup(topology.leave)
    topology.enter()
    spare = t.tcp_server(spare_handler, name='spare')

    scenario(t, topology, spare, 'close')
    scenario(t, topology, spare, 'keep')

    expect_eq(topology.tables(), '', 'nftables tables in the server\'s namespace after the runs')
    server.kill()
    server.wait(10)
    topology.leave()
    topology.delete()
    listed = run_command('ip', 'netns', 'list')
    for ns in topology.names():
        expect(ns not in listed, f'namespace {ns} deleted')
