"""Binary upgrades in place carry every connection over (SPEC.md "Upgrading
the binary").

fulcrum runs from a copy in the test's directory. Ten upgrades alternate two
builds of the same source (fulcrum, version V, and fulcrum-next, V+next),
each installed by renaming the other over the running binary's path, then
asked for by SIGUSR2 (the fourth by POST /api/v1/upgrade, the seventh by
`fulcrumctl upgrade`). Meanwhile:
- 20 long sessions stream both ways slowly (chunks of seeded random sizes,
  each echoed back), all opened before the first upgrade and closed after
  the last: each ends byte-exact (sha256 of what went out = what came back,
  and the access log's bytes_in/bytes_out), end=client_close;
- a bounded connect loop opens short sessions back to back: none is
  refused, reset or cut short.
After each upgrade: the same PID, still running; /stats `version` is the
build just installed, `upgrades` counts them, `started_at` stays, the
configuration generation is one more, counters never go back. At the end:
`upgrades` = 10, the service's session total and bytes are exact, the
process holds the same descriptors as before the first upgrade (nothing
leaked; pipes apart, which the workers pool), and the log holds one
`upgrading`/`upgraded` pair per upgrade.
"""

import json
import os
import signal
import subprocess
import threading
import time

from harness import EchoStream, binary, connect, echo_handler, expect, expect_eq, free_address, get_stats, \
    http_request, install_binary, log_stream, recv_exact, wait_until

DEADLINE = 180
UPGRADES = 10
LONG_SESSIONS = 20
MAX_CONNECTS = 50000  # the connect loop's bound; time stops it first


class ConnectLoop(threading.Thread):
    """Short sessions back to back: connect, 32 bytes out and back, close."""

    def __init__(self, address, stop):
        super().__init__(daemon=True)
        self.address = address
        self.stop = stop
        self.done = 0
        self.failures = []

    def run(self):
        deadline = time.monotonic() + 120
        while not self.stop.is_set() and self.done < MAX_CONNECTS and time.monotonic() < deadline:
            message = os.urandom(16).hex().encode()
            try:
                with connect(self.address, timeout=10) as sock:
                    sock.sendall(message)
                    echoed = recv_exact(sock, len(message), 'echo')
                    if echoed != message:
                        raise AssertionError('echo differs')
                self.done += 1
            except Exception as e:  # noqa: BLE001 - counted, the test fails on any
                self.failures.append(f'{type(e).__name__}: {e}')
                self.done += 1


def descriptors(pid):
    """The process's descriptors by kind: pipes apart (each worker pools up
    to 16 idle ones, as traffic left them), the rest by what they are."""
    kinds = {}
    for fd in os.listdir(f'/proc/{pid}/fd'):
        try:
            target = os.readlink(f'/proc/{pid}/fd/{fd}')
        except FileNotFoundError:
            continue
        kind = target.split(':')[0] if ':[' in target else target
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def run(t):
    builds = [binary('FULCRUM_NEXT'), binary('FULCRUM')]
    versions = []
    for build in builds:
        out = subprocess.run([build, '--version'], capture_output=True, text=True, check=True).stdout
        versions.append(out.split()[1])
    expect(versions[0] == versions[1] + '+next', f'the two builds say {versions}')
    os.mkdir(t.path('bin'))
    executable = t.path('bin/fulcrum')
    install_binary(builds[1], executable)

    echo = t.tcp_server(echo_handler, name='echo')
    listen = free_address()
    stats = free_address()
    token = 'upgrade-test-token-0123456789abcdef'
    token_file = t.token_file(token + '\n')
    d = t.daemon({
        'global': {'workers': 2},
        'stats': {'listen': stats, 'admin_token_file': token_file},
        'services': [{'name': 'web', 'listen': listen, 'timeouts': {'idle': '60s'},
                      'servers': [{'name': 'echo', 'address': echo.address}]}],
    }, executable=executable)
    pid = d.pid
    # Before any stats client: its connection would count.
    descriptors_before = descriptors(pid)
    descriptors_before.pop('pipe', None)
    first = get_stats(stats)
    expect_eq((first['upgrades'], first['version']), (0, versions[1]), 'upgrades and version at start')

    stop_long = threading.Event()
    stop_loop = threading.Event()
    long_sessions = [EchoStream(listen, seed, stop_long) for seed in range(LONG_SESSIONS)]
    for s in long_sessions:
        s.start()
    for s in long_sessions:
        expect(s.ready.wait(20), 'a long session did not connect')
        expect(s.error is None, f'long session before the upgrades: {s.error}')
    loop = ConnectLoop(listen, stop_loop)
    loop.start()
    wait_until(lambda: loop.done >= 50, 20, 'the connect loop to get going')

    previous = first
    for i in range(1, UPGRADES + 1):
        build = builds[(i - 1) % 2]
        version = versions[(i - 1) % 2]
        install_binary(build, executable)
        if i == 4:
            reply = http_request(stats, 'POST', '/api/v1/upgrade',
                                 headers={'Authorization': f'Bearer {token}'})
            expect_eq(reply.status, 202, f'POST /api/v1/upgrade status: {reply.body!r}')
            body = json.loads(reply.body)
            expect_eq((body['ok'], body['version'], body['upgrades'], body['binary']),
                      (True, version, i - 1, executable), 'POST /api/v1/upgrade answer')
        elif i == 7:
            ctl = subprocess.run([binary('FULCRUMCTL'), '--url', f'http://{stats}', '--token-file', token_file,
                                  'upgrade'], capture_output=True, text=True, timeout=60)
            expect_eq(ctl.returncode, 0, f'fulcrumctl upgrade exit code (stderr {ctl.stderr!r})')
            expect(ctl.stdout.startswith(f'upgraded to fulcrum {version} (upgrades {i}'),
                   f'fulcrumctl upgrade says {ctl.stdout!r}')
        else:
            d.send_signal(signal.SIGUSR2)
        d.wait_for_log(lambda r: r.message == 'upgraded', timeout=20, count=i)
        expect(d.running() and d.pid == pid, f'upgrade {i}: the process is not the same one')
        now = wait_until(lambda: get_stats(stats), 10, 'stats after the upgrade')
        expect_eq((now['version'], now['upgrades'], now['started_at']), (version, i, first['started_at']),
                  f'version, upgrades, started_at after upgrade {i}')
        expect_eq(now['config']['generation'], previous['config']['generation'] + 1,
                  f'configuration generation after upgrade {i}')
        before, after = previous['services'][0], now['services'][0]
        for key in ('total',):
            expect(after['sessions'][key] >= before['sessions'][key], f'sessions.{key} went back at upgrade {i}')
        expect(after['bytes']['in'] >= before['bytes']['in'], f'bytes.in went back at upgrade {i}')
        expect_eq(after['sessions']['active'] >= LONG_SESSIONS, True,
                  f'active sessions after upgrade {i}: {after["sessions"]["active"]}')
        previous = now
        done = loop.done
        wait_until(lambda: loop.done >= done + 20, 20, f'connects through the image of upgrade {i}')
        time.sleep(0.3)  # the long sessions stream through this image too
        expect(not loop.failures, f'connects failed around upgrade {i}: {loop.failures[:5]}')

    stop_loop.set()
    loop.join(30)
    stop_long.set()
    for s in long_sessions:
        s.join(30)
    errors = [(i, s.error) for i, s in enumerate(long_sessions) if s.error or s.is_alive()]
    expect(not errors, f'long sessions failed: {errors}')
    for i, s in enumerate(long_sessions):
        expect_eq(s.received.hexdigest(), s.sent.hexdigest(), f'sha256 of long session {i}')
    expect(not loop.failures, f'{len(loop.failures)} of {loop.done} connects failed: {loop.failures[:5]}')
    log_stream(f'{UPGRADES} upgrades: {LONG_SESSIONS} long sessions byte-exact '
               f'({sum(s.bytes for s in long_sessions)} bytes each way), {loop.done} connects, none failed')

    # Exact totals once every session ended.
    sessions = loop.done + LONG_SESSIONS
    wait_until(lambda: get_stats(stats)['services'][0]['sessions']['active'] == 0, 10, 'every session to end')
    d.wait_access_count(sessions, timeout=20)
    final = get_stats(stats)
    service = final['services'][0]
    expect_eq(final['upgrades'], UPGRADES, 'upgrades at the end')
    expect_eq(service['sessions']['total'], sessions, 'sessions.total (connects + long sessions)')
    moved = sum(s.bytes for s in long_sessions) + 32 * loop.done
    expect_eq((service['bytes']['in'], service['bytes']['out']), (moved, moved), 'service bytes in/out')
    lines = d.access_log_lines()
    long_lines = {}
    for line in lines:
        host, port = line['client'].rsplit(':', 1)
        long_lines[(host, int(port))] = line
    for i, s in enumerate(long_sessions):
        line = long_lines.get(s.local)
        expect(line is not None, f'no access log line for long session {i} ({s.local})')
        expect_eq((int(line['bytes_in']), int(line['bytes_out']), line['end']), (s.bytes, s.bytes, 'client_close'),
                  f'access log of long session {i}')
    def without_pipes():
        kinds = descriptors(pid)
        kinds.pop('pipe', None)
        return kinds
    # The stats clients' connections close on the daemon's side shortly
    # after ours.
    wait_until(lambda: without_pipes() == descriptors_before, 5,
               lambda: f'the descriptors held before the upgrades, but pipes: {descriptors_before}; now '
                       f'{without_pipes()}')
    pipes = descriptors(pid).get('pipe', 0)
    expect(pipes <= 2 * 16 * 2 + 2, f'{pipes} pipe ends held: more than the pools and the log keep')
    expect_eq(len(d.find_logs('upgrading')), UPGRADES, '`upgrading` lines')
    expect(not d.find_logs('upgrade failed, still serving'), 'an upgrade failed')
