"""`systemctl reload fulcrum` as operators use it.

- Under a bounded stream of short sessions, six reloads alternate between
  one server (9001) and two (9001, 9002): each `systemctl reload` exits 0,
  `systemctl status` then shows fulcrum's STATUS= line with the new
  configuration generation, sessions started after it returned use the new
  server set, none of the sessions fails, and the main process stays.
- `systemctl reload` waits for fulcrum: with the main process stopped
  (SIGSTOP) it does not return and the unit stays `reloading`; continued,
  it returns 0 with the next generation.
- A broken file: `systemctl reload` exits non-zero (ExecReload's --check
  fails, its error is in the journal), fulcrum is never signalled and
  keeps serving the old configuration, the unit stays active.
"""

import os
import re
import signal
import threading
import time

from harness import SessionLoad, expect, expect_eq, greeted_session, log_stream, wait_until
from container import status_line
from service import LISTEN, UNIT, log_message

DEADLINE = 180
RELOADS = 6


def expect_generation(t, generation, what):
    status = status_line(t.c.systemctl('status', '--lines=0', UNIT).stdout)
    expect(status is not None and re.fullmatch(rf'serving 1 services, \d+ sessions, configuration generation '
                                               rf'{generation}', status),
           f'{what}: systemctl status shows {status!r}, expected configuration generation {generation}')


def run(t):
    one = t.config(servers=(9001,))
    two = t.config(servers=(9001, 9002))
    t.start(one)
    main = t.c.main_pid(UNIT)
    expect_generation(t, 1, 'after start')

    load = SessionLoad(LISTEN, threads=2, max_sessions=20000, gap=0.005, timeout=10, what='load').start()
    wait_until(lambda: len(load.snapshot()) >= 20, 30, 'the first load sessions')
    phases = []  # (reload began, systemctl reload returned, the servers it put in force)
    generation = 1
    for i in range(RELOADS):
        config = two if i % 2 == 0 else one
        t.write_config(config)
        began = time.monotonic()
        t.c.systemctl('reload', UNIT)
        phases.append((began, time.monotonic(), {s['name'] for s in config['services'][0]['servers']}))
        generation += 1
        expect_generation(t, generation, f'reload {i + 1}')
        done = len(load.snapshot())
        wait_until(lambda: len(load.snapshot()) >= done + 20, 30, f'sessions after reload {i + 1}')
    sessions = load.stop()
    failed = [s for s in sessions if s.error]
    expect(not failed, f'{len(failed)} of {len(sessions)} sessions failed across the reloads: {failed[:10]}')
    # A session that began after a reload had returned and ended before the
    # next one began met that reload's configuration.
    for s in sessions:
        for k, (_, returned, servers) in enumerate(phases):
            next_began = phases[k + 1][0] if k + 1 < len(phases) else float('inf')
            if returned < s.start and s.end < next_began:
                expect(s.server in servers, f'{s} used a server outside {sorted(servers)} (reload {k + 1})')
    expect_eq(t.c.main_pid(UNIT), main, 'main process after the reloads (no restart)')
    log_stream(f'{RELOADS} reloads under {len(sessions)} sessions, none failed')

    # systemctl reload returns only after fulcrum's READY=1.
    inside, host = main
    os.kill(host, signal.SIGSTOP)
    try:
        t.write_config(two)
        result = {}
        reloader = threading.Thread(target=lambda: result.update(
            done=t.c.systemctl('reload', UNIT, check=False)), daemon=True)
        reloader.start()
        wait_until(lambda: t.state()['ActiveState'] == 'reloading', 10, 'the unit to be reloading')
        time.sleep(2)
        expect(reloader.is_alive(), 'systemctl reload returned while fulcrum was stopped')
        expect_eq(t.state()['ActiveState'], 'reloading', 'unit state while fulcrum is stopped')
    finally:
        os.kill(host, signal.SIGCONT)
    reloader.join(30)
    expect(not reloader.is_alive(), 'systemctl reload still running 30 s after fulcrum continued')
    expect_eq(result['done'].returncode, 0, f'systemctl reload exit code ({result["done"].stderr})')
    generation += 1
    expect_generation(t, generation, 'the reload that waited')

    # A broken file: the reload fails before fulcrum hears of it.
    reloading_lines = len([m for m in t.journal_messages('fulcrum') if log_message(m) == 'reloading'])
    t.write_config('global:\n  workers: 2\n  bogus_key: 1\nservices: []\n')
    failed_reload = t.c.systemctl('reload', UNIT, check=False)
    expect(failed_reload.returncode != 0, 'systemctl reload of a broken file exited 0')
    state = t.state()
    expect_eq((state['ActiveState'], state['SubState']), ('active', 'running'), 'state after the failed reload')
    expect_eq(t.c.main_pid(UNIT), main, 'main process after the failed reload')
    expect_generation(t, generation, 'after the failed reload')
    messages = t.journal_messages('fulcrum')
    expect(any(m.startswith(f'{t.config_path}:3:3: ') and 'bogus_key' in m for m in messages),
           f'the --check error (FILE:3:3: ... bogus_key) in the journal: {messages[-5:]}')
    expect_eq(len([m for m in messages if log_message(m) == 'reloading']), reloading_lines,
              'fulcrum `reloading` lines (it must not have been signalled)')
    names = {greeted_session(LISTEN)[0] for _ in range(4)}
    expect_eq(names, {'9001', '9002'}, 'servers of the old configuration, still serving')
    log_stream('a broken file fails the reload; the old configuration serves on')
