"""rise and fall count consecutive results: a flapping server flips only on streaks.

Health checks every 100 ms (timeout 50 ms), rise 3, fall 3, on two services
whose only server is a listener the test opens and closes on a schedule
(closed = nothing bound: connects are refused). No client connects, so only
active checks count. The test records when each window really began and
ended (wall clock, the scale of the log's timestamps).

`flap`, server f: open 0.5 s; ten times closed 150 ms / open 150 ms; open
0.8 s; then closed 0.8 s, open 0.8 s, closed 0.8 s, open 0.8 s.
  - its transitions alternate down, up, down, up, ... from up;
  - each down lies in a closed window that had lasted at least
    (fall - 1) x interval x 0.8 by then (3 failed checks in a row: they
    cannot straddle an open window, which any check gap is shorter than),
    and each up likewise in an open window after (rise - 1) x interval x 0.8;
  - consecutive transitions are at least (n - 1) x interval x 0.8 apart
    (n = fall for a down, rise for an up);
  - each of the two 0.8 s closed windows holds exactly one down, each 0.8 s
    open window after them exactly one up, and f is up when they begin.
`blip`, server g: open 0.5 s; five times closed 100 ms (one interval: at
most 2 checks fit) / open 0.9 s. g never goes down, except (allowed, never
seen when the test runs on time) in a closed window the test itself
stretched to (fall - 1) x interval x 0.8 or more.
Every transition line has reason `connect refused` (down) or `check passed`
(up) and (3/3).
"""

import socket
import threading
import time

from harness import TestFailure, expect, expect_eq, free_address, free_port, health_transitions, log_stream, \
    wait_until

DEADLINE = 60
INTERVAL, RISE, FALL = 0.1, 3, 3
SLACK = 0.05  # log timestamps are milliseconds, logged just after the check


class Window:
    def __init__(self, is_open, start, end):
        self.open, self.start, self.end = is_open, start, end

    def holds(self, when):
        return self.start - SLACK <= when <= self.end + SLACK

    def __repr__(self):
        return f'{"open" if self.open else "closed"} {self.start:.3f}..{self.end:.3f} ({self.end - self.start:.3f}s)'


class ScheduledServer:
    """A listener on a fixed port, open or closed (nothing bound) along a
    schedule of (open?, seconds); open from the start, and again after the
    schedule until close(). Accepted connections are closed at once.
    windows() tells what really happened."""

    def __init__(self, t, name, schedule):
        self.name = name
        self.port = free_port()
        self.address = f'127.0.0.1:{self.port}'
        self.schedule = schedule
        self.errors = []
        self.lock = threading.Lock()
        self.past = []
        self.stopping = threading.Event()
        self.finished = threading.Event()
        self.sock = None
        self._listen()
        self.since = time.time()
        self._thread = threading.Thread(target=self._run, name=f'{name}-schedule', daemon=True)
        t.own_socket(self)  # closed at cleanup

    def _listen(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(('127.0.0.1', self.port))
        s.listen(64)
        s.settimeout(0.01)
        self.sock = s

    def _set(self, is_open):
        if is_open == (self.sock is not None):
            return
        before = time.time()
        if is_open:
            self._listen()
        else:
            self.sock.close()
            self.sock = None
        after = time.time()
        with self.lock:
            self.past.append(Window(not is_open, self.since, before))
            self.since = after

    def _accept_until(self, deadline):
        while time.monotonic() < deadline and not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
                conn.close()
            except socket.timeout:
                pass

    def start(self):
        self._thread.start()

    def _run(self):
        try:
            at = time.monotonic()
            for is_open, seconds in self.schedule:
                at += seconds
                self._set(is_open)
                if is_open:
                    self._accept_until(at)
                else:
                    self.stopping.wait(max(0.0, at - time.monotonic()))
                if self.stopping.is_set():
                    return
            self._set(True)
            self.finished.set()
            self._accept_until(float('inf'))
        except Exception as e:
            self.errors.append(f'{self.name}: {type(e).__name__}: {e}')
            self.finished.set()

    def windows(self):
        """Every window so far, the current one ending now."""
        with self.lock:
            return self.past + [Window(self.sock is not None, self.since, time.time())]

    def close(self):
        self.stopping.set()
        self._thread.join(5)
        if self.sock is not None:
            self.sock.close()


def check_streaks(transitions, windows, what):
    """Each down inside a closed window that had lasted (fall - 1) x interval
    x 0.8, each up likewise in an open one; consecutive transitions spaced by
    at least (n - 1) x interval x 0.8."""
    previous = None
    for x in transitions:
        n = FALL if x['state'] == 'down' else RISE
        need = (n - 1) * INTERVAL * 0.8
        inside = [w for w in windows if w.open == (x['state'] == 'up') and w.holds(x['time'])]
        expect(inside, f'{what}: {x["record"].raw}\n  lies in no {"open" if x["state"] == "up" else "closed"} window: '
                       f'{windows}')
        expect(any(x['time'] - w.start >= need for w in inside),
               f'{what}: {x["record"].raw}\n  came less than {need:.3f}s into its window {inside}: '
               f'fewer than {n} results in a row')
        if previous is not None:
            expect(x['time'] - previous['time'] >= need,
                   f'{what}: {x["record"].raw}\n  only {x["time"] - previous["time"]:.3f}s after '
                   f'{previous["record"].raw}')
        previous = x


def run(t):
    flap_schedule = [(True, 0.5)] + [(False, 0.15), (True, 0.15)] * 10 + [(True, 0.8)] \
        + [(False, 0.8), (True, 0.8)] * 2
    blip_schedule = [(True, 0.5)] + [(False, 0.1), (True, 0.9)] * 5
    f = ScheduledServer(t, 'f', flap_schedule)
    g = ScheduledServer(t, 'g', blip_schedule)
    health = {'interval': '100ms', 'timeout': '50ms', 'rise': RISE, 'fall': FALL}
    d = t.daemon({
        'global': {'workers': 1},
        'services': [{'name': 'flap', 'listen': free_address(), 'health_check': health,
                      'servers': [{'name': 'f', 'address': f.address}]},
                     {'name': 'blip', 'listen': free_address(), 'health_check': health,
                      'servers': [{'name': 'g', 'address': g.address}]}],
    })
    f.start()
    g.start()
    wait_until(lambda: f.finished.is_set() and g.finished.is_set(), 30, 'the schedules to run through')
    expect(not f.errors and not g.errors, f'scheduled servers: {f.errors + g.errors}')
    # f ends open: wait for it to be back up.
    up_by = RISE * INTERVAL * 1.1 + 1.0
    try:
        wait_until(lambda: [x['state'] for x in health_transitions(d, 'flap', 'f')][-1:] == ['up'], up_by,
                   f'f to be up again after its last open window began (up to {up_by:g}s)')
    except TestFailure:
        pass  # reported with the full picture below
    f_windows, g_windows = f.windows(), g.windows()
    f.close()
    g.close()

    transitions = health_transitions(d, 'flap', 'f')
    origin = f_windows[0].start
    log_stream('f: ' + ', '.join(f'{x["state"]} at {x["time"] - origin:.3f}s' for x in transitions))
    for x in transitions:
        expect_eq((x['reason'], x['streak'], x['address']),
                  ('connect refused' if x['state'] == 'down' else 'check passed',
                   FALL if x['state'] == 'down' else RISE, f.address), f'reason, streak, address of {x["record"].raw}')
        expect_eq(x['check'], 'active', f'check= of {x["record"].raw} (no client ever connected)')
    states = [x['state'] for x in transitions]
    expect_eq(states, ['down', 'up'] * (len(states) // 2) + ['down'] * (len(states) % 2),
              'f: transitions alternate from up')
    check_streaks(transitions, f_windows, 'f')

    # The last four windows are the long ones: closed, open, closed, open (still open at the end).
    long_windows = f_windows[-4:]
    expect_eq([w.open for w in long_windows], [False, True, False, True], 'f: the last four windows')
    first_long = long_windows[0].start
    before = [x for x in transitions if x['time'] < first_long - SLACK]
    expect_eq(len(before) % 2, 0, f'f: transitions before its first 0.8 s closed window (even: up by then): '
                                  f'{[x["record"].raw for x in before]}')
    for w in long_windows:
        inside = [x['state'] for x in transitions if w.holds(x['time'])]
        expect_eq(inside, ['up' if w.open else 'down'], f'f: transitions in its {w}')
    expect_eq(len(transitions), len(before) + 4, 'f: transitions in all')

    g_transitions = health_transitions(d, 'blip', 'g')
    closed = [w for w in g_windows if not w.open]
    log_stream('g closed windows: ' + ', '.join(f'{w.end - w.start:.3f}s' for w in closed))
    expect_eq(len(closed), 5, 'g: closed windows')
    stretched = [w for w in closed if w.end - w.start >= (FALL - 1) * INTERVAL * 0.8]
    for x in g_transitions:
        expect(x['state'] == 'up' or any(w.holds(x['time']) for w in stretched),
               f'g went down though never refused for {FALL} checks in a row: {x["record"].raw}\n'
               f'closed windows: {closed}')
    if not stretched:
        expect_eq([x['record'].raw for x in g_transitions], [], 'g: transitions')
    d.stop()
