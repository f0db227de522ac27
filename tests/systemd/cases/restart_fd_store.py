"""Restarts refuse no client: systemd's fd store (FileDescriptorStoreMax=)
keeps fulcrum's listening sockets while one process stops and the next
starts, which takes them up (docs/systemd.md).

systemd 252 keeps a service's fd store across `systemctl restart` (the
restart job is queued throughout) and across a restart by Restart= after
the main process died, and releases it when the unit stops for good.

- Under a bounded loop of short sessions (2 threads back to back: a
  greeting, a line echoed, a clean end), three `systemctl restart`s: each
  ends with a new MainPID, active/running, whose listening sockets on the
  service address are the very sockets (inode numbers) of the first
  process, and the store holding one per worker and address plus the
  stats port's. The old process was stopped by SIGQUIT (the unit's
  RestartKillSignal=), the new one logged `listeners taken from the fd
  store`. No session failed; some began while a restart was under way.
- The main process killed (SIGKILL, with the loop paused so that no
  session is cut): systemd restarts it (NRestarts + 1) and the sessions
  started meanwhile wait in the backlog and go through.
- `systemctl stop`: the store is empty and a client is refused.
"""

import os
import re
import signal
import time

import harness
from harness import SessionLoad, connect, expect, expect_eq, log_stream, wait_until
from service import LISTEN, UNIT, log_message

DEADLINE = 150
RESTARTS = 3
WORKERS = 2
STATS = '127.0.0.1:9100'


def listening_inodes(host_pid, address):
    """The inodes of the TCP sockets the process `host_pid` holds that listen
    on `address` (an IPv4 `IP:PORT`), from its network namespace's
    /proc/net/tcp and its own /proc/PID/fd."""
    host, port = address.rsplit(':', 1)
    a, b, c, d = (int(part) for part in host.split('.'))
    local = f'{d:02X}{c:02X}{b:02X}{a:02X}:{int(port):04X}'
    listening = set()
    with open(f'/proc/{host_pid}/net/tcp') as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[3] == '0A':  # TCP_LISTEN
                listening.add(fields[9])
    held = set()
    for fd in os.listdir(f'/proc/{host_pid}/fd'):
        try:
            m = re.fullmatch(r'socket:\[(\d+)\]', os.readlink(f'/proc/{host_pid}/fd/{fd}'))
        except OSError:
            continue
        if m:
            held.add(m.group(1))
    return listening & held


def stored_fds(t):
    return int(t.c.show(UNIT, 'NFileDescriptorStore')['NFileDescriptorStore'])


def fulcrum_lines(t, message):
    return [harness.parse_log_line(m) for m in t.journal_messages('fulcrum') if log_message(m) == message]


def run(t):
    config = t.config()
    config['global']['workers'] = WORKERS
    config['stats'] = {'listen': STATS}
    t.start(config)
    expect_eq(t.c.show(UNIT, 'FileDescriptorStoreMax')['FileDescriptorStoreMax'], '1024', 'FileDescriptorStoreMax')
    expect_eq(stored_fds(t), WORKERS + 1, 'descriptors in the fd store (a listener per worker, the stats port)')
    main = t.c.main_pid(UNIT)
    sockets = listening_inodes(main[1], LISTEN)
    expect_eq(len(sockets), WORKERS, f'listening sockets of the first process on {LISTEN}')

    load = SessionLoad(LISTEN, threads=2, max_sessions=40000, gap=0.002, timeout=20, what='connects').start()
    wait_until(lambda: len(load.snapshot()) >= 50, 30, 'the first sessions of the loop')
    windows = []  # (began, returned) of each restart
    for i in range(1, RESTARTS + 1):
        began = time.monotonic()
        t.c.systemctl('restart', UNIT)
        windows.append((began, time.monotonic()))
        state = t.state()
        expect_eq((state['ActiveState'], state['SubState']), ('active', 'running'), f'state after restart {i}')
        restarted = t.c.main_pid(UNIT)
        expect(restarted[0] != main[0], f'restart {i}: MainPID still {main[0]}')
        main = restarted
        expect_eq(listening_inodes(main[1], LISTEN), sockets,
                  f'restart {i}: the new process listens on the first process\'s sockets')
        expect_eq(stored_fds(t), WORKERS + 1, f'descriptors in the fd store after restart {i}')
        done = len(load.snapshot())
        wait_until(lambda: len(load.snapshot()) >= done + 50, 30, f'sessions after restart {i}')
        log_stream(f'restart {i} took {windows[-1][1] - windows[-1][0]:.2f}s; new PID {main[0]}')

    # A crash: nothing stops gracefully, systemd restarts the unit.
    restarts = int(t.state()['NRestarts'])
    load.pause()
    os.kill(main[1], signal.SIGKILL)
    load.resume()
    crashed = time.monotonic()

    def restarted_after_crash():
        state = t.state()
        return (state['ActiveState'], state['SubState']) == ('active', 'running') and \
            int(state['NRestarts']) == restarts + 1 and int(state['MainPID']) != main[0]
    wait_until(restarted_after_crash, 30, 'fulcrum restarted after SIGKILL', interval=0.05)
    main = t.c.main_pid(UNIT)
    expect_eq(listening_inodes(main[1], LISTEN), sockets, 'after the crash: the first process\'s sockets')
    done = len(load.snapshot())
    wait_until(lambda: len(load.snapshot()) >= done + 50, 30, 'sessions after the crash')
    log_stream(f'restarted {time.monotonic() - crashed:.2f}s after SIGKILL; new PID {main[0]}')

    sessions = load.stop()
    failed = [s for s in sessions if s.error]
    expect(not failed, f'{len(failed)} of {len(sessions)} sessions failed across the restarts: {failed[:10]}')
    during = [s for s in sessions if any(s.start < returned and s.end > began for began, returned in windows)]
    expect(during, 'no session overlapped a restart: the test did not cover the window')
    waited = [s for s in sessions if s.start < crashed < s.end or crashed <= s.start < crashed + 0.5]
    expect(waited, 'no session started while the crashed process was being restarted')
    log_stream(f'{len(sessions)} sessions, none failed; {len(during)} overlapped a restart, '
               f'{len(waited)} the crash')

    stopping = fulcrum_lines(t, 'stopping')
    expect_eq([r.fields.get('signal') for r in stopping], ['SIGQUIT'] * RESTARTS,
              'the signal of each graceful stop (RestartKillSignal=)')
    taken = fulcrum_lines(t, 'listeners taken from the fd store')
    expect_eq([(r.fields.get('listeners'), r.fields.get('added'), r.fields.get('closed')) for r in taken],
              [(str(WORKERS), '0', '0')] * (RESTARTS + 1), 'the `listeners taken from the fd store` lines')

    # A stop for good: the store is released, clients are refused.
    t.c.systemctl('stop', UNIT)
    expect_eq(stored_fds(t), 0, 'descriptors in the fd store after systemctl stop')
    try:
        with connect(LISTEN, timeout=5):
            refused = False
    except ConnectionRefusedError:
        refused = True
    expect(refused, f'a connect to {LISTEN} after systemctl stop was not refused')
