"""The unit's watchdog: with fulcrum's main process stopped (SIGSTOP from
the host) the WATCHDOG=1 pings stop; systemd logs a watchdog timeout within
WatchdogSec, ends the process with result `watchdog`, restarts it
(Restart=on-failure) as a new main process, and fulcrum serves again.
"""

import os
import re
import signal
import time

from harness import PatternStream, connect, expect, log_stream, read_greeting, upload_and_check_echo, \
    wait_until
from service import LISTEN, UNIT

DEADLINE = 120


def seconds(text):
    """systemd's `10s`, `1min 30s`, `500ms` as seconds."""
    units = {'min': 60, 's': 1, 'ms': 0.001, 'us': 0.000001}
    total = 0.0
    for word in text.split():
        number = word.rstrip('abcdefghijklmnopqrstuvwxyz')
        total += float(number) * units[word[len(number):]]
    return total


def run(t):
    t.start()
    inside, host = t.c.main_pid(UNIT)
    limit = seconds(t.c.show(UNIT, 'WatchdogUSec')['WatchdogUSec'])
    expect(0 < limit <= 60, f'WatchdogSec of the unit: {limit}s')
    restarts = int(t.state()['NRestarts'])

    os.kill(host, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        wait_until(lambda: any('Watchdog timeout' in m for m in t.journal_messages('systemd')), limit + 15,
                   'systemd\'s watchdog timeout', interval=0.2)
    finally:
        # Normally systemd has already killed it (SIGABRT, then SIGCONT).
        if os.path.exists(f'/proc/{host}'):
            os.kill(host, signal.SIGCONT)
    noticed = time.monotonic() - stopped
    # The last ping came at most WatchdogSec/2 before the stop.
    expect(limit / 2 - 1 <= noticed <= limit + 5, f'watchdog timeout {noticed:.1f}s after the stop (limit {limit}s)')
    log_stream(f'watchdog timeout {noticed:.1f}s after SIGSTOP (WatchdogSec={limit:g}s)')

    wait_until(lambda: any(m.endswith("Failed with result 'watchdog'.") for m in t.journal_messages('systemd')),
               15, 'result watchdog in the journal', interval=0.2)

    def restarted():
        state = t.state()
        return (state['ActiveState'], state['SubState']) == ('active', 'running') and \
            int(state['NRestarts']) == restarts + 1 and int(state['MainPID']) != inside
    wait_until(restarted, 30, 'fulcrum restarted by systemd', interval=0.2)
    wait_until(lambda: not os.path.exists(f'/proc/{host}'), 10, 'the old main process to be gone')

    with connect(LISTEN, timeout=10) as sock:
        name = read_greeting(sock)
        upload_and_check_echo(sock, PatternStream(seed=7, size=1 << 20), 'session after the restart')
    expect(name in ('9001', '9002'), f'greeting after the restart: {name}')
    status = t.state()['StatusText']
    expect(re.fullmatch(r'serving 1 services, \d+ sessions, configuration generation 1', status),
           f'StatusText of the new process: {status!r}')
