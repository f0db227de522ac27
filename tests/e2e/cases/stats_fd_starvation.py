"""Slow stats clients cannot starve the daemon of descriptors (issue 15, 2.1).

The issue's reproduction: fulcrum under `prlimit --nofile=256`, a service
`web` (rr over demo servers a and b, health checks every 500 ms, fall 2)
and the stats endpoint with an admin token. 300 slow clients connect to the
stats port and send a request one byte every 3 s; a client that fulcrum
closes connects again at its next turn, as a slowloris tool does. Before
the fix 0 of 50 sessions got through, fulcrum used 87-98 % of a core and
both servers went down with `too many open files`.

While the slow clients keep at it:
  - 50 concurrent sessions through `web`, each uploading 64 KiB and reading
    the greeting and the echo, verified by SHA-256: all 50 complete, 25 on
    each server (rr);
  - a fresh GET /stats answers 200 with both servers `up` and exactly the
    50 sessions; an admin POST (weight 3 for a) answers 200 with the new
    weight, a second one puts it back to 1;
  - no slow client ever receives a byte of an answer;
  - fulcrum uses less than 1 s of CPU over the whole phase (it spun at
    100 % before), and logs no warning or error (no `server ... down`, no
    `accept paused`, no `stats accept paused`).
Then the slow clients close; SIGTERM: exit 0.
"""

import json
import socket
import threading
import time

from harness import PatternStream, expect, expect_eq, free_address, get_stats, http_request, log_stream, \
    parse_address, read_greeting, run_threads, upload_and_check_echo, wait_until, connect

DEADLINE = 150
NOFILE = 256
SLOW_CLIENTS = 300
SLOW_INTERVAL = 3.0
SLOW_MAX_ROUNDS = 30  # bounds the slow clients' thread: 90 s at most
SESSIONS = 50
UPLOAD = 64 * 1024
TOKEN = 'starvation-token'
SLOW_REQUEST = b'GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ' + b'a' * 4096


class SlowClients:
    """`count` connections to the stats port, served in turns every
    `interval` seconds from one thread: each turn sends the next byte of
    SLOW_REQUEST, on a new connection (non-blocking connect, then the byte
    at once) if fulcrum closed the previous one. Counts connects, closes by
    fulcrum, bytes sent and bytes received."""

    def __init__(self, address, count, interval, max_rounds):
        self.host, self.port = parse_address(address)
        self.slots = [None] * count
        self.sent = [0] * count
        self.interval = interval
        self.max_rounds = max_rounds
        self.lock = threading.Lock()
        self.rounds = 0
        self.connects = 0
        self.closed_by_fulcrum = 0
        self.bytes_sent = 0
        self.answer_bytes = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name='slow-clients', daemon=True)
        self.thread.start()

    def _connect(self, i):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex((self.host, self.port))  # EINPROGRESS: completes in the kernel's backlog
        self.slots[i] = sock
        self.sent[i] = 0
        self.connects += 1
        return sock

    def _drop(self, i):
        self.slots[i].close()
        self.slots[i] = None
        self.closed_by_fulcrum += 1

    def _turn(self, i):
        sock = self.slots[i]
        if sock is not None:
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                data = None
            except OSError:
                data = b''
            if data == b'':
                self._drop(i)
                sock = None
            elif data:
                self.answer_bytes += len(data)
        if sock is None:
            sock = self._connect(i)
        if self.sent[i] >= len(SLOW_REQUEST):
            return
        try:
            sock.send(SLOW_REQUEST[self.sent[i]:self.sent[i] + 1])
        except OSError:
            return  # still connecting, or closed: seen at the next turn
        self.sent[i] += 1
        self.bytes_sent += 1

    def _run(self):
        while not self.stopping.is_set() and self.rounds < self.max_rounds:
            with self.lock:
                for i in range(len(self.slots)):
                    self._turn(i)
                self.rounds += 1
            self.stopping.wait(self.interval)

    def counts(self):
        with self.lock:
            return {'rounds': self.rounds, 'connects': self.connects, 'closed by fulcrum': self.closed_by_fulcrum,
                    'bytes sent': self.bytes_sent, 'answer bytes': self.answer_bytes}

    def close(self):
        self.stopping.set()
        self.thread.join(10)
        with self.lock:
            for sock in self.slots:
                if sock is not None:
                    sock.close()
            self.slots = [None] * len(self.slots)


def proxied_session(address, n):
    """64 KiB up and its echo down; returns ('ok', NAME) or ('error', reason)
    (never raises, so that every outcome is counted)."""
    stream = PatternStream(seed=7000 + n, size=UPLOAD)
    try:
        with connect(address, timeout=20) as sock:
            name = read_greeting(sock, f'session {n}: greeting')
            upload_and_check_echo(sock, stream, f'session {n}', timeout=20)
        return 'ok', name
    except Exception as e:
        return 'error', f'{type(e).__name__}: {e}'


def admin_weight(stats, weight):
    reply = http_request(stats, 'POST', '/api/v1/services/web/servers/a', body=json.dumps({'weight': weight}),
                         headers={'Authorization': f'Bearer {TOKEN}', 'Content-Type': 'application/json'},
                         timeout=10)
    expect_eq(reply.status, 200, f'admin POST weight {weight} while the slow clients are connected')
    expect_eq(json.loads(reply.body)['weight'], weight, f'weight in the answer to the admin POST ({weight})')


def run(t):
    a, b = t.demo_server('a'), t.demo_server('b')
    listen, stats = free_address(), free_address()
    token_file = t.token_file(TOKEN + '\n')
    check = {'interval': '500ms', 'timeout': '500ms', 'rise': 2, 'fall': 2}
    d = t.daemon({'global': {'workers': 2},
                  'stats': {'listen': stats, 'admin_token_file': token_file},
                  'services': [{'name': 'web', 'listen': listen, 'scheduler': 'rr', 'health_check': check,
                                'servers': [{'name': 'a', 'address': a.address},
                                            {'name': 'b', 'address': b.address}]}]},
                 nofile=NOFILE)
    wait_until(lambda: all(s['state'] == 'up' for s in get_stats(stats)['services'][0]['servers']), 10,
               'both servers up before the slow clients')
    cpu_before = d.cpu_seconds()
    started = time.monotonic()

    slow = SlowClients(stats, SLOW_CLIENTS, SLOW_INTERVAL, SLOW_MAX_ROUNDS)
    t.own_socket(slow)
    # Some slow connections reach the request deadline meanwhile (5 s).
    wait_until(lambda: slow.counts()['rounds'] >= 3, 4 * SLOW_INTERVAL, 'three rounds of the slow clients')
    log_stream(f'slow clients: {slow.counts()}')

    outcomes = run_threads(proxied_session, [(listen, n) for n in range(SESSIONS)], timeout=90, what='session')
    done = [name for kind, name in outcomes if kind == 'ok']
    errors = [reason for kind, reason in outcomes if kind == 'error']
    log_stream(f'sessions: {len(done)} of {SESSIONS} verified (a {done.count("a")}, b {done.count("b")}); '
               f'{len(errors)} failed' + (f', first: {errors[0]}' if errors else ''))
    expect_eq(len(done), SESSIONS, 'sessions verified while the slow clients are connected')
    expect_eq((done.count('a'), done.count('b')), (SESSIONS // 2, SESSIONS // 2), 'rr split of the sessions')

    web = get_stats(stats)['services'][0]
    log_stream(f'/stats while the slow clients are connected: servers '
               f'{[(s["name"], s["state"]) for s in web["servers"]]}, sessions {web["sessions"]}')
    expect_eq([(s['name'], s['state']) for s in web['servers']], [('a', 'up'), ('b', 'up')],
              'server states while the slow clients are connected')
    d.wait_access_count(SESSIONS)
    expect_eq(get_stats(stats)['services'][0]['sessions']['total'], SESSIONS, 'sessions.total in /stats')
    admin_weight(stats, 3)
    admin_weight(stats, 1)

    counts = slow.counts()
    cpu = d.cpu_seconds() - cpu_before
    log_stream(f'slow clients after {time.monotonic() - started:.1f}s: {counts}; daemon CPU {cpu:.2f}s')
    expect(counts['rounds'] < SLOW_MAX_ROUNDS, 'the slow clients ran out of rounds before the checks were done')
    expect_eq(counts['answer bytes'], 0, 'bytes of an answer received by slow clients')
    expect(cpu < 1.0, f'the daemon used {cpu:.2f}s of CPU with {SLOW_CLIENTS} slow stats clients (spinning?)')
    expect_eq([r.raw for r in d.logs() if r.level in ('warn', 'error')], [],
              'warnings and errors while the slow clients are connected')
    slow.close()
    d.stop()
