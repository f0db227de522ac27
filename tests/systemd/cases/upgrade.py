"""A binary upgrade in place under the unit as installed (SPEC.md
"Upgrading the binary"), its sandbox included: `systemctl kill -s USR2`.

The build's fulcrum-next (version V+next) is renamed over the installed
fulcrum, as a package upgrade does, and `systemctl kill --kill-who=main -s
USR2 fulcrum` asks for the upgrade; then the installed build again (V,
`upgrades` 2). Meanwhile a bounded loop of short sessions (greeting, a line
echoed, a clean end) runs back to back, and 4 long sessions stream chunks of
seeded random sizes both ways. After each upgrade: the journal's `upgraded`
line names the builds and the count, the unit is active/running with the
same MainPID and NRestarts, /stats says the new version, the count and the
same started_at, and systemd's fd store still holds exactly one socket per
worker and address plus the stats port's (the new image stored the
listeners it carried under their names again). At the end: no session of
the loop failed, the long ones are byte-exact (SHA-256 both ways), and
systemd logged no watchdog timeout.
"""

import os
import shutil
import threading

import harness
from harness import (EchoStream, SessionLoad, expect, expect_eq, get_stats, install_binary, log_stream,
                     wait_until)
from container import DEMO_DIR
from service import LISTEN, UNIT, log_message

DEADLINE = 180
STATS = '127.0.0.1:9100'
LONG_SESSIONS = 4
WORKERS = 2


def upgraded_lines(t):
    return [harness.parse_log_line(m) for m in t.journal_messages('fulcrum') if log_message(m) == 'upgraded']


def stored_fds(t):
    return int(t.c.show(UNIT, 'NFileDescriptorStore')['NFileDescriptorStore'])


def run(t):
    build_root = os.environ['BUILD_ROOT']
    next_build = os.path.join(build_root, 'fulcrum-next')
    expect(os.path.exists(next_build), f'{next_build} is not built (ninja fulcrum-next)')
    installed = t.c.path(t.fulcrum_path)
    # The installed build, kept aside to upgrade back to.
    original = t.c.path(DEMO_DIR + '/fulcrum-installed')
    shutil.copy2(installed, original)

    config = t.config()
    config['global']['workers'] = WORKERS
    config['stats'] = {'listen': STATS}
    t.start(config)
    main = t.c.main_pid(UNIT)
    restarts = t.state()['NRestarts']
    first = get_stats(STATS)
    version = first['version']
    expect_eq(first['upgrades'], 0, '/stats upgrades at start')
    expect_eq(stored_fds(t), WORKERS + 1, 'descriptors in the fd store at start (listeners and stats port)')

    stop_long = threading.Event()
    long_sessions = [EchoStream(LISTEN, seed, stop_long, greeting=True, max_chunk=32 * 1024) for seed in range(LONG_SESSIONS)]
    for session in long_sessions:
        session.start()
    for session in long_sessions:
        session.ready.wait(30)
    expect(all(s.error is None for s in long_sessions),
           f'long sessions before the upgrades: {[s.error for s in long_sessions]}')
    load = SessionLoad(LISTEN, threads=2, max_sessions=40000, gap=0.002, timeout=20, what='connects').start()
    wait_until(lambda: len(load.snapshot()) >= 50, 30, 'the first sessions of the connect loop')

    for number, (build, expected) in enumerate([(next_build, version + '+next'), (original, version)], 1):
        install_binary(build, installed)
        t.c.systemctl('kill', '--kill-who=main', '--signal=USR2', UNIT)

        def upgraded():
            failed = [m for m in t.journal_messages('fulcrum') if log_message(m) == 'upgrade failed, still serving']
            expect(not failed, f'upgrade {number} failed: {failed}')
            return len(upgraded_lines(t)) >= number
        wait_until(upgraded, 60, f'the `upgraded` line of upgrade {number}', interval=0.2)
        line = upgraded_lines(t)[number - 1]
        expect_eq((line.fields.get('from'), line.fields.get('version'), line.fields.get('upgrades')),
                  (version if number == 1 else version + '+next', expected, str(number)),
                  f'upgrade {number}: from, version, upgrades of {line}')
        # The old image sent RELOADING=1, the new one READY=1.
        wait_until(lambda: t.state()['ActiveState'] == 'active', 30, f'the unit active after upgrade {number}')
        state = t.state()
        expect_eq((state['ActiveState'], state['SubState']), ('active', 'running'), f'state after upgrade {number}')
        expect_eq(state['NRestarts'], restarts, f'NRestarts after upgrade {number}')
        expect_eq(t.c.main_pid(UNIT), main, f'MainPID after upgrade {number} (the same process)')
        stats = get_stats(STATS)
        expect_eq((stats['version'], stats['upgrades'], stats['started_at']), (expected, number, first['started_at']),
                  f'/stats version, upgrades, started_at after upgrade {number}')
        expect_eq(stored_fds(t), WORKERS + 1, f'descriptors in the fd store after upgrade {number}')
        done = len(load.snapshot())
        wait_until(lambda: len(load.snapshot()) >= done + 50, 30, f'sessions after upgrade {number}')
        log_stream(f'upgrade {number}: {expected}, PID {main[0]} kept, {len(load.snapshot())} sessions so far')

    stop_long.set()
    for session in long_sessions:
        session.join(30)
        expect(not session.is_alive(), f'{session.name} still running')
        expect(session.error is None, f'{session.name}: {session.error}')
        expect_eq(session.sent.hexdigest(), session.received.hexdigest(), f'{session.name}: SHA-256 both ways')
    sessions = load.stop()
    failed = [s for s in sessions if s.error]
    expect(not failed, f'{len(failed)} of {len(sessions)} connects failed across the upgrades: {failed[:10]}')
    watchdog = [m for m in t.journal_messages('systemd') if 'atchdog' in m]
    expect(not watchdog, f'systemd about the watchdog: {watchdog}')
    log_stream(f'2 upgrades under {len(sessions)} sessions and {LONG_SESSIONS} long ones '
               f'({sum(s.bytes for s in long_sessions)} bytes each way), none failed')
