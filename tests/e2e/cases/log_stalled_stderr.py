"""A stderr reader that stops reading never stalls relaying.

fulcrum's stderr is a pipe (64 KiB, like a pipe to journald or `| less`)
that the test does not read. With the access log on, every session writes a
line of about 560 bytes (long service and server names), so the pipe is full
after about 115 sessions and fulcrum's log buffer (1 MiB) after about 2000
more. Then:

1. SESSIONS sessions through the proxy from 4 client threads all complete,
   each byte-exact (greeting, then a 2 KiB upload echoed back: count and
   SHA-256). A worker that blocked in write(2) on the full pipe would stall
   them: each socket operation has a 5 s timeout, so the test fails quickly
   and says so.
2. /stats `log_lines_dropped` is > 0 and /metrics
   `fulcrum_log_lines_dropped_total` is the same. Once the test reads the
   pipe, fulcrum writes what it had queued and a `log lines dropped count=N`
   warning; the counts of those lines add up to `log_lines_dropped`, every
   line read is one whole log line (nothing torn or interleaved), and the
   access lines read plus the dropped lines are exactly SESSIONS.
3. With the pipe full again (the test stops reading, REFILL more sessions
   all complete), SIGTERM: fulcrum exits 0 within a few seconds although
   its reader is stalled (the flush at exit has a bounded wait).
"""

import fcntl
import hashlib
import os
import random
import select
import signal
import socket
import subprocess
import threading
import time

import harness
from harness import connect, expect, expect_eq, free_address, get_metrics, get_stats, \
    hash_to_eof, http_get, log_stream, parse_log_line, read_greeting, wait_until, write_config

DEADLINE = 150
SESSIONS = 4000
REFILL = 400
THREADS = 4
PAYLOAD = 2048
F_SETPIPE_SZ = 1031
PIPE_SIZE = 64 * 1024
SERVICE = 'svc' + 'v' * 200
SERVER = 'srv' + 's' * 200


def one_session(address, seed):
    """Greeting, PAYLOAD bytes up, the same back to EOF: fails unless exact."""
    payload = random.Random(seed).randbytes(PAYLOAD)
    with connect(address, timeout=5) as sock:
        expect_eq(read_greeting(sock), 'echo', f'session {seed}: greeting')
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        expect_eq(hash_to_eof(sock), (PAYLOAD, hashlib.sha256(payload).hexdigest()),
                  f'session {seed}: echo byte count and SHA-256')


def run_sessions(address, first, count):
    """`count` sessions numbered from `first`, from THREADS threads; a thread
    stops at its first failure. Returns (completed, failures)."""
    lock = threading.Lock()
    state = {'next': first, 'done': 0, 'failures': []}

    def client():
        while True:
            with lock:
                if state['next'] >= first + count or state['failures']:
                    return
                seed = state['next']
                state['next'] += 1
            try:
                one_session(address, seed)
            except (OSError, harness.TestFailure) as e:
                with lock:
                    state['failures'].append(f'session {seed}: {type(e).__name__}: {e}')
                return
            with lock:
                state['done'] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    expect(not any(th.is_alive() for th in threads), 'client threads still running after 60 s')
    return state['done'], state['failures']


class PipeReader:
    """Reads the daemon's stderr pipe on demand (start/pause) into `data`."""

    def __init__(self, fd):
        self.fd = fd
        self.data = bytearray()
        self.lock = threading.Lock()
        self.reading = threading.Event()
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            self.reading.wait()
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if not ready or not self.reading.is_set():
                continue
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                self.closed.set()
                return
            with self.lock:
                self.data += chunk

    def text(self):
        with self.lock:
            return self.data.decode('utf-8', 'replace')


def records_of(text):
    """Every complete line as a LogRecord; a line that is not one whole log
    line (torn, interleaved) fails the test."""
    records = []
    for line in text[:text.rfind('\n') + 1].splitlines():
        try:
            records.append(parse_log_line(line))
        except ValueError as e:
            raise harness.TestFailure(f'a stderr line is not one whole log line ({e}): {line[:300]!r}')
    return records


def dropped_in_log(records):
    counts = []
    for r in records:
        if r.message == 'log lines dropped':
            expect_eq(r.level, 'warn', f'level of {r.raw}')
            expect(r.fields.get('count', '').isdigit() and int(r.fields['count']) > 0, f'count= of {r.raw}')
            counts.append(int(r.fields['count']))
    return counts


def run(t):
    demo = t.demo_server('echo')
    listen = free_address()
    stats = free_address()
    config = {
        'global': {'workers': 2, 'log_level': 'debug', 'access_log': True},
        'stats': {'listen': stats},
        'services': [{'name': SERVICE, 'listen': listen, 'scheduler': 'rr',
                      'servers': [{'name': SERVER, 'address': demo.address}]}],
    }
    config_path = write_config(t.path('fulcrum.yaml'), config)
    read_fd, write_fd = os.pipe()
    fcntl.fcntl(write_fd, F_SETPIPE_SZ, PIPE_SIZE)
    t.at_cleanup(lambda: os.close(read_fd))
    # The test's own environment without journald or notify hooks, as Daemon uses.
    proc = subprocess.Popen([harness.binary('FULCRUM'), '-c', config_path], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=write_fd, env=harness._child_environment())
    os.close(write_fd)
    t.register_process(proc, 'fulcrum')
    reader = PipeReader(read_fd)
    t.watch_log('fulcrum', reader.text)

    def ready():
        expect(proc.poll() is None, f'fulcrum exited with {proc.returncode} at start')
        try:
            return http_get(stats, '/healthz', timeout=2).status == 200
        except OSError:
            return False
    wait_until(ready, 20, 'GET /healthz answering 200')

    # 1. Sessions while nobody reads fulcrum's stderr.
    start = time.monotonic()
    done, failures = run_sessions(listen, 0, SESSIONS)
    expect(not failures and done == SESSIONS,
           f'{SESSIONS - done} of {SESSIONS} sessions did not complete while fulcrum\'s stderr was not read '
           f'(a worker blocked writing a log line?); first failures:\n' + '\n'.join(failures[:4]))
    log_stream(f'{SESSIONS} sessions byte-exact in {time.monotonic() - start:.1f}s with stderr stalled')

    # 2. The count of dropped lines, then the lines themselves.
    dropped = get_stats(stats).get('log_lines_dropped')
    expect(isinstance(dropped, int) and dropped > 0, f'/stats log_lines_dropped after {SESSIONS} sessions '
           f'with stderr stalled: {dropped!r}')
    metrics, _ = get_metrics(stats)
    expect_eq(metrics.get('fulcrum_log_lines_dropped_total'), float(dropped), 'fulcrum_log_lines_dropped_total')
    expect_eq(metrics.types.get('fulcrum_log_lines_dropped_total'), 'counter', 'type of the metric')
    reader.reading.set()

    def summaries_complete():
        return sum(dropped_in_log(records_of(reader.text()))) == dropped
    wait_until(summaries_complete, 20, f'`log lines dropped` lines counting {dropped} lines in all')
    expect_eq(get_stats(stats)['log_lines_dropped'], dropped, 'log_lines_dropped once the pipe is read')
    records = records_of(reader.text())
    access = [harness.validate_access_record(r) for r in records if r.message == 'session']
    expect_eq(len(access) + dropped, SESSIONS, 'access lines read + lines dropped')
    expect(all((a['service'], a['server'], a['bytes_in'], a['bytes_out'], a['end']) ==
               (SERVICE, SERVER, PAYLOAD, len(demo.greeting) + PAYLOAD, 'client_close') for a in access),
           'an access line with other service, server, byte counts or end')
    log_stream(f'{dropped} lines dropped, {len(access)} access lines read, '
               f'summaries: {dropped_in_log(records)}')

    # 3. Stalled again: exit must not wait for the reader for ever.
    reader.reading.clear()
    time.sleep(0.3)  # the reader thread's select() returns and it stops reading
    done, failures = run_sessions(listen, SESSIONS, REFILL)
    expect(not failures and done == REFILL, f'{REFILL - done} of {REFILL} sessions did not complete with '
           f'stderr stalled again; first failures:\n' + '\n'.join(failures[:4]))
    os.kill(proc.pid, signal.SIGTERM)
    try:
        code = proc.wait(15)
    except subprocess.TimeoutExpired:
        raise harness.TestFailure('fulcrum still running 15 s after SIGTERM with its stderr reader stalled')
    expect_eq(code, 0, 'exit code after SIGTERM')
    reader.reading.set()
    reader.closed.wait(10)
    expect(reader.closed.is_set(), 'stderr pipe not closed after fulcrum exited')
    records_of(reader.text())
