"""`systemctl stop fulcrum` with a session open: the unit goes
`deactivating` with STATUS=stopping, new clients are refused, the open
session still relays and ends cleanly when its client is done, then
fulcrum exits 0 by itself: `systemctl stop` returns within
global.shutdown_timeout with Result=success and a `stopped` line in the
journal, and nothing was killed.
"""

import socket
import threading
import time

from harness import connect, expect, expect_eof, expect_eq, log_stream, open_greeted, recv_exact, wait_until
from service import LISTEN, UNIT, log_message

DEADLINE = 120
SHUTDOWN_TIMEOUT = 10
HOLD = 2  # seconds the session stays open after stop began


def refused():
    try:
        with connect(LISTEN, timeout=5):
            return False
    except ConnectionRefusedError:
        return True


def run(t):
    t.start(t.config(shutdown_timeout=f'{SHUTDOWN_TIMEOUT}s'))
    sock, _ = open_greeted(LISTEN)
    result = {}

    def stop():
        began = time.monotonic()
        result['stop'] = t.c.systemctl('stop', UNIT, check=False, timeout=90)
        result['took'] = time.monotonic() - began
    stopper = threading.Thread(target=stop, daemon=True)
    with sock:
        stopper.start()
        wait_until(lambda: t.state()['ActiveState'] == 'deactivating', 10, 'the unit to be deactivating')
        expect_eq(t.state()['StatusText'], 'stopping', 'StatusText while stopping')
        wait_until(refused, 10, 'new clients to be refused')
        time.sleep(HOLD)
        expect(stopper.is_alive(), 'systemctl stop returned while a session was open')
        line = b'still here\n'
        sock.sendall(line)
        expect_eq(recv_exact(sock, len(line), 'echo during the stop'), line, 'echo during the stop')
        sock.shutdown(socket.SHUT_WR)
        expect_eof(sock, 'the session during the stop')
    stopper.join(SHUTDOWN_TIMEOUT + 30)
    expect(not stopper.is_alive(), 'systemctl stop still running')
    expect_eq(result['stop'].returncode, 0, f'systemctl stop exit code ({result["stop"].stderr})')
    expect(HOLD <= result['took'] < SHUTDOWN_TIMEOUT,
           f'systemctl stop took {result["took"]:.1f}s (the session held it {HOLD}s; shutdown_timeout '
           f'{SHUTDOWN_TIMEOUT}s)')

    state = t.state()
    expect_eq((state['ActiveState'], state['SubState'], state['Result']), ('inactive', 'dead', 'success'),
              'state after systemctl stop')
    expect_eq(state['ExecMainStatus'], '0', 'fulcrum\'s exit status')
    expect(any(log_message(m) == 'stopped' for m in t.journal_messages('fulcrum')), 'fulcrum logged `stopped`')
    expect(f'{UNIT}: Deactivated successfully.' in t.journal_messages('systemd'),
           'systemd: the main process exited cleanly (Deactivated successfully)')
    killed = [m for m in t.journal_messages('systemd') if 'SIGKILL' in m or 'timed out' in m]
    expect(not killed, f'systemd had to kill: {killed}')
    log_stream(f'stopped in {result["took"]:.1f}s with a session open for {HOLD}s of it')
