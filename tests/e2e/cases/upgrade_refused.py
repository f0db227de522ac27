"""A binary upgrade the new binary cannot take changes nothing (SPEC.md
"Upgrading the binary"): the old binary keeps serving, logs the reason
(`upgrade failed, still serving`), answers it, and shows it in /stats.

fulcrum runs from a copy in the test's directory, with a session open all
along. Installed at its path in turn, each asked for by SIGUSR2 or POST
/api/v1/upgrade:
- a binary whose check fails at once (/bin/false): `the check exited with 1`;
- one that exits 0 and says nothing (not a fulcrum): refused, it does not
  say which state it reads;
- one that reads another state version: refused before any exec;
- the real next build while the configuration file on disk has an error:
  its check's error line, FILE:LINE:COL;
- no file at all: the check cannot run;
- a slow check (2 s): a second request meanwhile is 409 `an upgrade is
  under way` (logged `upgrade refused`);
- during a graceful stop: 503.
Each time: same PID, version and `upgrades` 0, `upgrade.last_failure` holds
the error, the open session still echoes, new sessions work. At the end the
open session is byte-exact.
"""

import json
import os
import shutil
import signal
import socket
import stat
import time

from harness import binary, connect, echo_handler, expect, expect_eq, free_address, get_metrics, get_stats, \
    http_request, recv_exact

DEADLINE = 90


def install_file(path, content=None, source=None):
    staging = path + '.new'
    if source is not None:
        shutil.copyfile(source, staging)
    else:
        with open(staging, 'w') as f:
            f.write(content)
    os.chmod(staging, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    os.rename(staging, path)


def run(t):
    os.mkdir(t.path('bin'))
    executable = t.path('bin/fulcrum')
    install_file(executable, source=binary('FULCRUM'))
    echo = t.tcp_server(echo_handler, name='echo')
    listen = free_address()
    stats = free_address()
    token = 'refused-upgrade-token-0123456789abcdef'
    token_file = t.token_file(token + '\n')
    config = {
        'global': {'workers': 2, 'shutdown_timeout': '20s'},
        'stats': {'listen': stats, 'admin_token_file': token_file},
        'services': [{'name': 'web', 'listen': listen, 'servers': [{'name': 'echo', 'address': echo.address}]}],
    }
    d = t.daemon(config, executable=executable)
    pid = d.pid
    start = get_stats(stats)
    auth = {'Authorization': f'Bearer {token}'}
    session = connect(listen, timeout=10)
    sent = bytearray()

    def still_serving(what):
        message = f'still serving after {what}\n'.encode()
        session.sendall(message)
        sent.extend(message)
        expect_eq(recv_exact(session, len(message), 'echo'), message, f'the open session after {what}')
        with connect(listen, timeout=10) as fresh:
            fresh.sendall(b'new session\n')
            expect_eq(recv_exact(fresh, 12, 'echo'), b'new session\n', f'a new session after {what}')
        now = get_stats(stats)
        expect(d.running() and d.pid == pid, f'the process after {what}')
        expect_eq((now['version'], now['upgrades'], now['started_at'], now['config']['generation']),
                  (start['version'], 0, start['started_at'], 1), f'version, upgrades, started_at after {what}')
        return now

    def failure_logged(count, error, what):
        lines = d.wait_for_log(lambda r: r.message == 'upgrade failed, still serving', timeout=15, count=count)
        expect_eq((lines[count - 1].fields.get('binary'), lines[count - 1].fields.get('error')), (executable, error),
                  f'the failure line of {what}')
        now = still_serving(what)
        expect_eq(now['upgrade']['last_failure']['error'], error, f'/stats upgrade.last_failure after {what}')
        expect_eq(now['upgrade']['in_progress'], False, f'upgrade.in_progress after {what}')

    # A check that fails.
    install_file(executable, source='/bin/false')
    d.send_signal(signal.SIGUSR2)
    failure_logged(1, 'the check exited with 1', '/bin/false')

    # Exits at once, saying nothing: not an upgradable fulcrum.
    install_file(executable, '#!/bin/sh\nexit 0\n')
    reply = http_request(stats, 'POST', '/api/v1/upgrade', headers=auth)
    silent = 'the binary does not say which upgrade state it reads (not an upgradable fulcrum)'
    expect_eq((reply.status, json.loads(reply.body)),
              (422, {'ok': False, 'binary': executable, 'error': silent}), 'POST answer for a silent binary')
    failure_logged(2, silent, 'a binary that exits at once')

    # Another state version: refused before the exec.
    install_file(executable, '#!/bin/sh\necho "configuration ok"\necho "state version 99 (fulcrum 9.9.9)"\n')
    d.send_signal(signal.SIGUSR2)
    failure_logged(3, 'the binary reads upgrade state version 99, this one writes 1', 'state version 99')

    # The real next build, but the file on disk now has an error.
    install_file(executable, source=binary('FULCRUM_NEXT'))
    with open(d.config_path) as f:
        good = f.read()
    with open(d.config_path, 'w') as f:
        f.write(good.replace('  workers: 2', '  workers: 2\n  wokers: 3'))
    d.send_signal(signal.SIGUSR2)
    failure_logged(4, f'the check exited with 1: {d.config_path}:3:3: unknown key "wokers" in global',
                   'a configuration error')
    with open(d.config_path, 'w') as f:
        f.write(good)

    # No binary at the path.
    os.unlink(executable)
    d.send_signal(signal.SIGUSR2)
    failure_logged(5, f'cannot run {executable}: No such file or directory', 'a missing binary')

    # A slow check: a second request meanwhile is refused, not queued.
    install_file(executable, '#!/bin/sh\nsleep 2\nexit 1\n')
    d.send_signal(signal.SIGUSR2)
    d.wait_for_log(lambda r: r.message == 'upgrade requested', timeout=10, count=6)
    reply = http_request(stats, 'POST', '/api/v1/upgrade', headers=auth)
    expect_eq((reply.status, json.loads(reply.body)['error']), (409, 'an upgrade is under way'),
              'POST during a slow check')
    refused = d.wait_for_log(lambda r: r.message == 'upgrade refused', timeout=5)
    expect_eq(refused[0].fields.get('error'), 'an upgrade is under way', 'the refused line')
    expect(get_stats(stats)['upgrade']['in_progress'], 'upgrade.in_progress during the slow check')
    failure_logged(6, 'the check exited with 1', 'a slow check')
    expect_eq(get_metrics(stats)[0].get('fulcrum_upgrades_total'), 0, 'fulcrum_upgrades_total')

    # Once a stop has begun: 503, and the stop goes on.
    d.send_signal(signal.SIGTERM)
    d.wait_for_log(lambda r: r.message == 'stopping', timeout=10)
    reply = http_request(stats, 'POST', '/api/v1/upgrade', headers=auth)
    expect_eq((reply.status, json.loads(reply.body)['error']), (503, 'stopping'), 'POST during the stop')
    session.shutdown(socket.SHUT_WR)
    rest = bytearray()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        chunk = session.recv(65536)
        if not chunk:
            break
        rest.extend(chunk)
    session.close()
    expect_eq(len(rest), 0, 'bytes after the last echo')
    expect_eq(d.wait_exit(15), 0, 'exit code of the stop')
    lines = d.access_log_lines()
    long_lines = [(int(line['bytes_in']), int(line['bytes_out']), line['end']) for line in lines
                  if int(line['bytes_in']) != 12]
    expect_eq(long_lines, [(len(sent), len(sent), 'client_close')], 'the open session\'s access log line')
