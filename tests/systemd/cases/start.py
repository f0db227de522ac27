"""`systemctl start fulcrum` with the unit as meson installs it returns only
once fulcrum is ready: active/running, its STATUS= line, the listener
accepting at once, and in the journal fulcrum's `started` (logged right
before READY=1) before systemd's `Started`. Then 8 concurrent 4 MiB
sessions through fulcrum to the demo servers (rr over both) come back
byte-exact, and the access log in the journal counts them exactly.
"""

import re

from harness import (MiB, PatternStream, connect, expect, expect_eq, log_stream, read_greeting, run_threads,
                     upload_and_check_echo, wait_until)
from service import LISTEN, UNIT, log_message

DEADLINE = 120
SESSIONS = 8
SIZE = 4 * MiB


def session(n):
    with connect(LISTEN, timeout=30) as sock:
        name = read_greeting(sock, f'session {n}: greeting')
        upload_and_check_echo(sock, PatternStream(seed=n, size=SIZE), f'session {n}', timeout=60)
    return name


def run(t):
    expect_eq(t.state()['ActiveState'], 'inactive', 'fulcrum before systemctl start')
    t.start()
    state = t.state()
    expect_eq((state['ActiveState'], state['SubState']), ('active', 'running'), 'state after systemctl start')
    expect(re.fullmatch(r'serving 1 services, 0 sessions, configuration generation 1', state['StatusText']),
           f'StatusText after start: {state["StatusText"]!r}')

    # No retry: READY=1 came after the listener was bound.
    with connect(LISTEN, timeout=10) as sock:
        expect(read_greeting(sock) in ('9001', '9002'), 'a greeting right after systemctl start')

    journal = t.c.journal(UNIT)
    checked = next((i for i, (who, m) in enumerate(journal) if who == 'fulcrum' and m == 'configuration ok'), None)
    ready = next((i for i, (who, m) in enumerate(journal) if who == 'fulcrum' and log_message(m) == 'started'), None)
    done = next((i for i, (who, m) in enumerate(journal) if who == 'systemd' and m.startswith('Started ')), None)
    expect(None not in (checked, ready, done), f'journal lacks `configuration ok`, `started` or `Started`: {journal}')
    expect(checked < ready < done, f'ExecStartPre check, fulcrum ready, then systemd done: {journal}')

    names = run_threads(session, [(n,) for n in range(SESSIONS)], timeout=120, what='session')
    expect_eq(sorted(set(names)), ['9001', '9002'], 'servers reached (rr over both)')
    log_stream(f'{SESSIONS} sessions of {SIZE} bytes each came back byte-exact')

    # The access log goes to the journal with everything else fulcrum prints
    # (a line lands a moment after its session closed).
    def finished():
        return [m for m in t.journal_messages('fulcrum') if log_message(m) == 'session']
    wait_until(lambda: len(finished()) >= SESSIONS + 1, 15, 'the access log lines in the journal', interval=0.2)
    lines = finished()
    expect_eq(len(lines), SESSIONS + 1, f'access log lines in the journal: {lines}')
    uploads = [m for m in lines if re.search(rf'\bbytes_in={SIZE}\b', m)]
    expect_eq(len(uploads), SESSIONS, f'access log lines with bytes_in={SIZE}: {lines}')
