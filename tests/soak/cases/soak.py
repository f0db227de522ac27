"""Soak: sessions of every kind for minutes while servers fail, clients
misbehave and the configuration changes; every byte checked, nothing leaks.

Length: SOAK_SECONDS (default 120, what CI runs) of load with faults, after
a WARMUP of load without them. SOAK_SEED replays a run's choices (the seed
is printed first; thread timing still differs from run to run). SOAK_NOFILE
runs the daemon under that open-file limit.

fulcrum: two workers, one service `soak` (retries 2, connect timeout 3 s,
idle timeout 6 s, health checks every second, rise 2, fall 2), the stats
endpoint with an admin token. Its real servers are peer.py processes:
    echo, echo2  the reference (echo2 comes and goes with reloads)
    stall        stops reading and writing for 0.5..2 s at a random byte
    reset        resets (SO_LINGER 0) at a random byte before the end
    blackhole    accepts, never reads; closes after 0.5..8 s, so some of its
                 sessions end by fulcrum's idle timeout instead
    flaky        an echo server killed (SIGKILL) and restarted on its port
Clients (THREADS threads, each session from its own 127.x.y.z address so the
access log names it uniquely) send a request line, then:
    echo         upload SIZE bytes while reading their echo (SHA-256 of what
                 was sent against what came back), half-close, EOF
    upload       upload, half-close, read the server's count and SHA-256
    download     read SIZE bytes of the session's pattern to EOF
    half_close   a download that half-closes right after its request
    slow_reader  a 256 KiB..1 MiB download read one byte a second for 3 s
    reset        echo a few KiB, read a moment, reset (SO_LINGER 0)
Received bytes are compared with the expected ones as they arrive, so a
failed session still tells a correct prefix (truncated, reset) from
corrupted bytes. Meanwhile, at random moments every 0.3..2 s, one of: flaky
is killed (while a session runs on it, if one does within 3 s) and restarted
0.2..2 s later; the file is rewritten (scheduler, weights, echo2 in or out)
and SIGHUP sent; a server other than echo is drained, or made ready again,
through the admin API.

Each session ends as one of: completed (count and SHA-256 exact), or a cause.
Expected causes, and only where they are expected:
    client reset (injected)      reset clients
    server reset (injected)      on reset
    black hole closed            on blackhole (end=server_reset)
    black hole idle timeout      on blackhole (end=idle_timeout)
    server killed                on flaky, for a session alive between a kill
                                 and its end (the process reaped)
Everything else fails the test: every well-behaved client on echo, echo2,
stall (and flaky outside its kills) must complete, a reset must never arrive
as a clean EOF, no byte may differ, nothing may time out or be refused.
Then, load over and drained:
  - one access-log line per session (joined by client address), its server
    the one the cause assumes, its `end` that of the cause, and for completed
    sessions bytes_in/bytes_out exactly what the client sent and received;
  - /stats: the service's sessions total = client sessions, none active or
    rejected, bytes = the access log's sums; for each server that was never
    removed, sessions.total = its access-log lines + its `connect failed`
    lines, connect_failures = those lines, bytes = its access-log sums;
  - no error in the log, `connect failed` and down transitions for flaky
    only; no peer error;
  - every server got sessions;
  - the daemon idles (CPU < 0.3 s over 2 s); its RSS is back within 2 MiB
    of the level after the warm-up (RSS_SLACK_KIB says why; not in
    sanitizer builds); its descriptors other than pipes are exactly those it
    had before any session, and its idle pipes no more than the pools keep
    (16 per worker);
  - SIGTERM: exit 0 with a `stopped` line.
The report: sessions, bytes verified, outcomes by cause and by server,
chaos events, RSS before/peak/after.
"""

import collections
import errno
import glob
import hashlib
import json
import os
import random
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

from harness import MiB, TestFailure, connect, expect, expect_eq, free_address, get_stats, \
    health_transitions, http_request, log_stream, parse_address, rst_close, wait_until, write_config

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import peer  # noqa: E402  (tests/soak/peer.py: the servers and the session data)

SECONDS = int(os.environ.get('SOAK_SECONDS', '120'))
SEED = int(os.environ.get('SOAK_SEED') or random.SystemRandom().randrange(1 << 32))
# The daemon under `prlimit --nofile=N` when set, so that the faults meet a
# spent descriptor budget too (64 leaves 22 sessions for 24 client threads).
NOFILE = int(os.environ['SOAK_NOFILE']) if os.environ.get('SOAK_NOFILE') else None
WARMUP = 5
# Load, drain and checks after it; a slow log parse on long runs.
DEADLINE = WARMUP + SECONDS + 240 + SECONDS // 10
THREADS = 24
# A bound on sessions, far above what the time allows; each gets its own
# source address from 127.100.0.0 on (10 million below 127.255).
MAX_SESSIONS = min(1000 * (WARMUP + SECONDS), 9_000_000)
WORKERS = 2
# Above the longest quiet spell of a well-behaved session (a 2 s stall, the
# slow reader's 3 s) with room for a loaded host; below the longest black-hole
# holds (8 s), so some of those end by it.
IDLE_TIMEOUT = 6
CLIENT_TIMEOUT = 30  # per socket operation: far beyond any stall, hold or idle timeout
SLOW_BYTES = 3  # the slow reader's one-byte reads, a second apart
TOKEN = 'soak-token'
PEER = os.path.join(os.path.dirname(HERE), 'peer.py')

# Client kinds and how often each is chosen.
CLIENT_KINDS = {'echo': 35, 'download': 20, 'upload': 15, 'half_close': 10, 'reset': 15, 'slow_reader': 5}
VERB = {'echo': 'ECHO', 'upload': 'UPLOAD', 'download': 'DOWNLOAD', 'half_close': 'DOWNLOAD',
        'slow_reader': 'DOWNLOAD', 'reset': 'ECHO'}
SERVERS = ('echo', 'echo2', 'flaky', 'reset', 'stall', 'blackhole')
PEER_KIND = {'echo': 'echo', 'echo2': 'echo', 'flaky': 'echo', 'reset': 'reset', 'stall': 'stall',
             'blackhole': 'blackhole'}
DRAINABLE = ('flaky', 'reset', 'stall', 'blackhole')  # echo always serves; echo2 is removed by reloads
SCHEDULERS = ('rr', 'wrr', 'lc', 'wlc', 'p2c', 'maglev')
INITIAL_WEIGHTS = {'echo': 3, 'echo2': 1, 'flaky': 1, 'reset': 1, 'stall': 1, 'blackhole': 1}
POOL_PIPES = 16  # idle pipes a worker keeps (src/proxy/worker.cpp)
# RSS growth allowed from the end of the warm-up to the end of the load. The
# daemon's whole working set under this load is under 1 MiB above its
# baseline of about 5 MiB (the sampled peak), and the allocator can keep at
# most that much after the load; a leak of 400 bytes a session (a fraction
# of one session's objects) over the ~6000 sessions of a default run is
# more than 2 MiB.
RSS_SLACK_KIB = 2 * 1024
# Sanitizer builds hold freed memory in quarantine and map shadow memory, so
# their RSS says nothing about leaks (LeakSanitizer checks at exit instead):
# meson sets SOAK_CHECK_RSS=0 for them.
CHECK_RSS = os.environ.get('SOAK_CHECK_RSS', '1') == '1'


def draw_size(rng):
    """Mostly small sessions, some of hundreds of KiB, a few of megabytes."""
    r = rng.random()
    if r < 0.6:
        return rng.randint(1, 16 * 1024)
    if r < 0.9:
        return rng.randint(16 * 1024, 512 * 1024)
    return rng.randint(512 * 1024, 8 * MiB)


def source_address(n):
    return f'127.{100 + (n >> 16)}.{(n >> 8) & 255}.{n & 255}'


# --------------------------------------------------------------------------
# Client side


class Corrupt(Exception):
    """Bytes arrived that differ from the expected ones."""


class Truncated(Exception):
    """A clean EOF before every expected byte arrived."""


class Expect:
    """The bytes a session should receive, checked piece by piece as they
    arrive (so a broken session still shows whether its prefix was right),
    with the SHA-256 of everything received."""

    def __init__(self, chunks, size):
        self._chunks = iter(chunks)
        self._chunk = b''  # the expected chunk being matched, from _at on
        self._at = 0
        self.size = size
        self.count = 0
        self._sha = hashlib.sha256()

    def feed(self, data):
        self._sha.update(data)
        pos = 0
        while pos < len(data):
            if self._at == len(self._chunk):
                chunk = next(self._chunks, None)
                if chunk is None:
                    raise Corrupt(f'{len(data) - pos} bytes beyond the {self.size} expected')
                self._chunk, self._at = bytes(chunk), 0
            n = min(len(data) - pos, len(self._chunk) - self._at)
            if data[pos:pos + n] != self._chunk[self._at:self._at + n]:
                raise Corrupt(f'bytes {self.count}..{self.count + n} differ from the expected ones')
            self.count += n
            pos += n
            self._at += n

    def receive(self, sock):
        """Reads to EOF; fails unless every expected byte came."""
        while True:
            data = sock.recv(peer.PIECE)
            if not data:
                break
            self.feed(data)
        if self.count < self.size:
            raise Truncated(f'EOF after {self.count} of {self.size} bytes')

    def verify(self, sha):
        if self._sha.hexdigest() != sha:
            raise Corrupt(f'SHA-256 of the {self.count} bytes received differs from the expected one')


def send_pattern(sock, pattern, limit=None):
    """Sends the pattern (its first `limit` bytes); returns their SHA-256."""
    h = hashlib.sha256()
    left = pattern.size if limit is None else limit
    for chunk in pattern.chunks():
        if left <= 0:
            break
        piece = chunk[:left]
        sock.sendall(piece)
        h.update(piece)
        left -= len(piece)
    return h.hexdigest()


def half_close(sock):
    """shutdown(SHUT_WR), unless a reset already closed the socket: then the
    next read reports that reset (ECONNRESET), or its absence."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError as e:
        if e.errno != errno.ENOTCONN:
            raise


class ClientSession:
    """One session as its client saw it. result: completed, client_reset,
    reset (a reset arrived), truncated, corrupt, timeout, connect_error or
    error; received: bytes that matched the expected ones."""

    def __init__(self, n, kind, ident, size):
        self.n, self.kind, self.ident, self.size = n, kind, ident, size
        self.source = source_address(n)
        self.start = self.end = None
        self.result, self.detail = None, ''
        self.received = 0
        self.request = f'{VERB[kind]} {ident} {size}\n'.encode()
        self.sha = None  # upload: SHA-256 of what was sent

    def expected_bytes(self):
        """(bytes_in, bytes_out) of a completed session, as fulcrum counts them."""
        if self.kind == 'upload':
            return len(self.request) + self.size, len(self.reply())
        if VERB[self.kind] == 'ECHO':
            return len(self.request) + self.size, self.size
        return len(self.request), self.size

    def reply(self):
        return f'{self.size} {self.sha}\n'.encode()

    def __repr__(self):
        return (f'session {self.n} ({self.kind} {VERB[self.kind]} {self.size} B from {self.source}, '
                f'{self.start:.3f}..{self.end:.3f}): {self.result} {self.detail}')


class Load:
    """Client threads running sessions back to back until a time limit."""

    def __init__(self, listen, pool, seed):
        self.listen, self.pool, self.seed = listen, pool, seed
        self.lock = threading.Lock()
        self.sessions = []
        self.started = 0

    def run(self, seconds, label):
        until = time.monotonic() + seconds
        threads = [threading.Thread(target=self._thread, args=(until, random.Random(f'{self.seed}/{label}/{k}')),
                                    name=f'{label}-{k}', daemon=True) for k in range(THREADS)]
        for th in threads:
            th.start()
        # A session lasts at most a few CLIENT_TIMEOUTs (connect, upload, echo).
        for th in threads:
            th.join(max(0.0, until + 4 * CLIENT_TIMEOUT - time.monotonic()))
        hung = [th.name for th in threads if th.is_alive()]
        expect(not hung, f'client threads still running {4 * CLIENT_TIMEOUT}s after the {label} load: {hung}')

    def _thread(self, until, rng):
        kinds, weights = list(CLIENT_KINDS), list(CLIENT_KINDS.values())
        while time.monotonic() < until:
            with self.lock:
                if self.started >= MAX_SESSIONS:
                    return
                self.started += 1
                n = self.started
            kind = rng.choices(kinds, weights)[0]
            size = rng.randint(256 * 1024, MiB) if kind == 'slow_reader' else draw_size(rng)
            s = ClientSession(n, kind, rng.getrandbits(63), size)
            self._session(s, rng)
            with self.lock:
                self.sessions.append(s)

    def _session(self, s, rng):
        pattern = peer.Pattern(self.pool, s.ident, s.size)
        expected = Expect(pattern.chunks(), s.size)
        s.start = time.monotonic()
        try:
            sock = connect(self.listen, timeout=CLIENT_TIMEOUT, source=s.source)
        except OSError as e:
            s.end = time.monotonic()
            s.result, s.detail = 'connect_error', f'{type(e).__name__}: {e}'
            return
        try:
            with sock:
                sock.sendall(s.request)
                getattr(self, f'_{s.kind}')(sock, s, pattern, expected, rng)
        except Corrupt as e:
            s.result, s.detail = 'corrupt', str(e)
        except Truncated as e:
            s.result, s.detail = 'truncated', str(e)
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as e:
            s.result, s.detail = 'reset', type(e).__name__
        except socket.timeout:
            s.result = 'timeout'
        except Exception as e:  # anything else is judged unexpected, with its text
            s.result, s.detail = 'error', f'{type(e).__name__}: {e}'
        s.end = time.monotonic()
        s.received = expected.count

    def _echo(self, sock, s, pattern, expected, rng):
        """Uploads and reads the echo from this one thread: a reset is then
        reported to the reader, never consumed by a sending thread (after
        which the reader would see a plain EOF)."""
        sock.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        chunks, pending, sent = pattern.chunks(), b'', hashlib.sha256()
        while True:
            ready = selector.select(CLIENT_TIMEOUT)
            if not ready:
                raise TimeoutError(f'nothing moved for {CLIENT_TIMEOUT}s')
            events = ready[0][1]
            if events & selectors.EVENT_WRITE:
                if not pending:
                    pending = next(chunks, None)
                    if pending is None:
                        half_close(sock)
                        selector.modify(sock, selectors.EVENT_READ)
                        continue
                    sent.update(pending)
                try:
                    pending = pending[sock.send(pending):]
                except BlockingIOError:
                    pass
            if events & selectors.EVENT_READ:
                try:
                    data = sock.recv(peer.PIECE)
                except BlockingIOError:
                    continue
                if not data:
                    break
                expected.feed(data)
        selector.close()
        if expected.count < s.size:
            raise Truncated(f'EOF after {expected.count} of {s.size} bytes')
        expected.verify(sent.hexdigest())
        s.result = 'completed'

    def _upload(self, sock, s, pattern, expected, rng):
        s.sha = send_pattern(sock, pattern)
        half_close(sock)
        reply = s.reply()
        answer = Expect([reply], len(reply))
        try:
            answer.receive(sock)
        finally:
            expected.count = answer.count
        answer.verify(hashlib.sha256(reply).hexdigest())
        s.result = 'completed'

    def _download(self, sock, s, pattern, expected, rng):
        expected.receive(sock)
        expected.verify(pattern.sha256())
        s.result = 'completed'

    def _half_close(self, sock, s, pattern, expected, rng):
        half_close(sock)
        self._download(sock, s, pattern, expected, rng)

    def _slow_reader(self, sock, s, pattern, expected, rng):
        for _ in range(SLOW_BYTES):
            data = sock.recv(1)
            if not data:
                break  # receive() below reports the early EOF
            expected.feed(data)
            time.sleep(1.0)
        self._download(sock, s, pattern, expected, rng)

    def _reset(self, sock, s, pattern, expected, rng):
        send_pattern(sock, pattern, limit=rng.randint(0, min(s.size, 64 * 1024)))
        until = time.monotonic() + rng.uniform(0.0, 0.5)
        while (left := until - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(peer.PIECE)
            except socket.timeout:
                break
            if not data:
                raise Truncated(f'EOF after {expected.count} bytes, before the client reset')
            expected.feed(data)
        rst_close(sock)
        s.result = 'client_reset'


# --------------------------------------------------------------------------
# Servers, configuration, chaos


class PeerProcess:
    """peer.py KIND ADDRESS SEED as a process of the test, ready once it
    prints its `listening` line."""

    def __init__(self, ctx, name, seed, address=None, incarnation=0):
        self.name = name
        self.address = address or free_address()
        label = f'peer-{name}-{incarnation}'
        self.stdout_path, self.stderr_path = ctx.path(f'{label}.stdout'), ctx.path(f'{label}.stderr')
        with open(self.stdout_path, 'wb') as out, open(self.stderr_path, 'wb') as err:
            self.proc = subprocess.Popen([sys.executable, PEER, PEER_KIND[name], self.address, str(seed)],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        ctx.register_process(self.proc, label)
        ready = f'listening {PEER_KIND[name]} {self.address}'

        def is_ready():
            expect(self.proc.poll() is None, f'{label} exited with {self.proc.returncode}')
            with open(self.stdout_path) as f:
                return ready in f.read().splitlines()
        wait_until(is_ready, 10, f'{label}: {ready!r}')

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)


def service_config(listen, peers, scheduler, weights):
    """The service with the servers named in `weights`, in SERVERS order."""
    return {'name': 'soak', 'listen': listen, 'scheduler': scheduler, 'retries': 2,
            'timeouts': {'connect': '3s', 'idle': f'{IDLE_TIMEOUT}s'},
            'health_check': {'interval': '1s', 'timeout': '1s', 'rise': 2, 'fall': 2},
            'servers': [{'name': name, 'address': peers[name].address, 'weight': weights[name]}
                        for name in SERVERS if name in weights]}


class Chaos:
    """Faults and changes at random moments, from one thread: kills of flaky,
    reloads, drains. Also samples the daemon's RSS."""

    def __init__(self, t, d, config, peers, stats, seed):
        self.t, self.d, self.config, self.peers, self.stats = t, d, config, peers, stats
        self.rng = random.Random(f'{seed}/chaos')
        self.seed = seed
        self.kills = []  # (SIGKILL sent, process reaped) in time.monotonic()
        self.reloads = []  # (scheduler, weights)
        self.admin = []  # (server, state)
        self.drained = None
        self.generation = 1
        self.incarnation = 0
        self.rss_peak = 0
        self.error = None

    def run(self, until):
        try:
            while time.monotonic() < until:
                self.rss_peak = max(self.rss_peak, rss_kib(self.d.pid))
                time.sleep(self.rng.uniform(0.3, 2.0))
                getattr(self, self.rng.choice(('kill', 'reload', 'drain')))()
            self.settle()
        except BaseException as e:  # noqa: B036 -- reported by the main thread
            self.error = e

    def kill(self):
        # Aimed at a running session when one comes within 3 s: a kill
        # between sessions only tests the retries.
        aim_until = time.monotonic() + 3
        while not self.active('flaky') and time.monotonic() < aim_until:
            time.sleep(0.05)
        flaky = self.peers['flaky']
        # The process dies some time after the signal, and its listener
        # completes handshakes until then: what it cuts off is any session
        # alive from the signal until it is reaped.
        signalled = time.monotonic()
        flaky.kill()
        self.kills.append((signalled, time.monotonic()))
        time.sleep(self.rng.uniform(0.2, 2.0))
        self.incarnation += 1
        self.peers['flaky'] = PeerProcess(self.t, 'flaky', self.seed, flaky.address, self.incarnation)

    def active(self, name):
        """The server's active sessions, from /stats."""
        servers = get_stats(self.stats)['services'][0]['servers']
        return next(v['sessions']['active'] for v in servers if v['name'] == name)

    def reload(self):
        scheduler = self.rng.choice(SCHEDULERS)
        weights = {name: self.rng.randint(2, 4) if name == 'echo' else self.rng.randint(1, 3)
                   for name in SERVERS if name != 'echo2' or self.rng.random() < 0.5}
        self.apply(scheduler, weights)

    def apply(self, scheduler, weights):
        self.config['services'] = [service_config(self.config['services'][0]['listen'], self.peers, scheduler,
                                                  weights)]
        write_config(self.d.config_path, self.config)
        self.generation += 1
        self.d.send_signal(signal.SIGHUP)
        wait_until(lambda: get_stats(self.stats)['config']['generation'] == self.generation, 10,
                   f'configuration generation {self.generation}')
        last = get_stats(self.stats)['config']['last_reload']
        expect(last['ok'], f'reload to generation {self.generation} failed: {last}')
        self.reloads.append((scheduler, weights))

    def drain(self):
        if self.drained is None:
            name, state = self.rng.choice(DRAINABLE), 'drain'
        else:
            name, state = self.drained, 'ready'
        reply = http_request(self.stats, 'POST', f'/api/v1/services/soak/servers/{name}',
                             body=json.dumps({'state': state}),
                             headers={'Authorization': f'Bearer {TOKEN}', 'Content-Type': 'application/json'})
        expect_eq(reply.status, 200, f'admin {state} {name}: status ({reply.body[:200]!r})')
        self.drained = name if state == 'drain' else None
        self.admin.append((name, state))

    def settle(self):
        """Every server back: none drained, the first configuration."""
        if self.drained is not None:
            self.drain()
        self.apply('wrr', INITIAL_WEIGHTS)


# --------------------------------------------------------------------------
# The daemon's resources


def rss_kib(pid):
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise TestFailure(f'no VmRSS in /proc/{pid}/status')


def descriptors(pid):
    """(pipes, others) open in the process."""
    pipes = others = 0
    for entry in os.listdir(f'/proc/{pid}/fd'):
        try:
            target = os.readlink(f'/proc/{pid}/fd/{entry}')
        except FileNotFoundError:
            continue  # closed meanwhile
        if target.startswith('pipe:'):
            pipes += 1
        else:
            others += 1
    return pipes, others


def quiet_descriptors(pid):
    """Descriptors besides pipes: the least of ten looks 0.1 s apart, so that
    a short-lived socket (a check's socket reopened after an error) is not
    counted."""
    looks = []
    for _ in range(10):
        looks.append(descriptors(pid)[1])
        time.sleep(0.1)
    return min(looks)


def wait_drained(d, stats, count):
    """Waits until fulcrum logged `count` sessions and none is active."""
    d.wait_access_count(count, timeout=60)
    wait_until(lambda: get_stats(stats)['services'][0]['sessions']['active'] == 0, 30, 'no active session')


# --------------------------------------------------------------------------
# Judging the sessions


def classify(s, line, kills):
    """(cause, the access-log ends it allows) of a session's end, `completed`
    for a verified one; (None, none) when its client and server kinds cannot
    produce its result."""
    server, result = line['server'], s.result
    killed = server == 'flaky' and any(s.start < reaped and sent < s.end for sent, reaped in kills)
    if result == 'client_reset' and s.kind == 'reset':
        # The server's own reset, or its death, may cross the client's reset.
        crossed = {'server_reset', 'server_close'} if killed or server in ('reset', 'blackhole') else set()
        return 'client reset (injected)', {'client_reset'} | crossed
    if result == 'completed' and s.kind != 'reset' and server in ('echo', 'echo2', 'stall', 'flaky'):
        return 'completed', {'client_close', 'server_close'}
    if result == 'reset' and server == 'reset':
        return 'server reset (injected)', {'server_reset'}
    if result == 'reset' and server == 'blackhole':
        if line['end'] == 'idle_timeout':
            return 'black hole idle timeout', {'idle_timeout'}
        return 'black hole closed', {'server_reset'}
    if result in ('reset', 'truncated') and killed:
        # A client that had sent everything and half-closed before the
        # server died saw its EOF come first: to fulcrum that session ended
        # like any other, by the client (seen once in 5,947 sessions of a
        # CI run: an echo of 6822 bytes, 0 echoed, end=client_close).
        ends = {'server_reset', 'server_close'}
        if result == 'truncated':
            ends.add('client_close')
        return 'server killed', ends
    return None, set()


def judge(sessions, lines, kills):
    """Joins sessions with their access-log lines; returns the causes
    (Counter), the causes per server, and the unexpected sessions."""
    by_source = {}
    for line in lines:
        host = parse_address(line['client'])[0]
        expect(host not in by_source, f'two access-log lines for client {host}')
        by_source[host] = line
    causes, per_server, unexpected = collections.Counter(), collections.defaultdict(collections.Counter), []
    for s in sessions:
        line = by_source.get(s.source)
        if line is None:
            unexpected.append(f'{s}: no access-log line')
            continue
        cause, ends = classify(s, line, kills)
        where = f'{s}; server {line["server"]}, end={line["end"]}'
        if cause is None:
            unexpected.append(where)
        elif line['end'] not in ends:
            unexpected.append(f'{where}: not an end of {cause}')
        elif cause == 'completed' and (line['bytes_in'], line['bytes_out']) != s.expected_bytes():
            unexpected.append(f'{where}: access log bytes_in, bytes_out {line["bytes_in"]}, {line["bytes_out"]}, '
                              f'expected {s.expected_bytes()}')
        causes[cause or 'UNEXPECTED'] += 1
        per_server[line['server']][cause or 'UNEXPECTED'] += 1
    return causes, per_server, unexpected


def verified_bytes(sessions):
    """(up, down): bytes of completed sessions checked by hash, per direction."""
    up = down = 0
    for s in sessions:
        if s.result != 'completed':
            continue
        if VERB[s.kind] in ('ECHO', 'UPLOAD'):
            up += s.size
        if VERB[s.kind] in ('ECHO', 'DOWNLOAD'):
            down += s.size
    return up, down


def check_stats(stats, lines, sessions, connect_failed):
    """/stats against the access log and the client's count."""
    service = stats['services'][0]
    expect_eq((service['sessions']['total'], service['sessions']['active'], service['sessions']['rejected']),
              (len(sessions), 0, 0), '/stats service sessions total, active, rejected')
    expect_eq((service['bytes']['in'], service['bytes']['out']),
              (sum(line['bytes_in'] for line in lines), sum(line['bytes_out'] for line in lines)),
              '/stats service bytes in, out vs the access log')
    servers = {v['name']: v for v in service['servers']}
    for name in SERVERS:
        if name == 'echo2':
            continue  # removed and added again by reloads: its counters are not the whole story
        mine = [line for line in lines if line['server'] == name]
        v = servers[name]
        expect_eq((v['sessions']['total'], v['connect_failures'], v['bytes']['in'], v['bytes']['out']),
                  (len(mine) + connect_failed[name], connect_failed[name], sum(line['bytes_in'] for line in mine),
                   sum(line['bytes_out'] for line in mine)),
                  f'/stats server {name} sessions.total, connect_failures, bytes in, out vs the access log')


def run(t):
    log_stream(f'seed {SEED} (replay with SOAK_SEED={SEED}), {SECONDS}s of load after a {WARMUP}s warm-up, '
               f'{THREADS} client threads' + (f', open-file limit {NOFILE}' if NOFILE else ''))
    pool = peer.make_pool(SEED)
    peers = {name: PeerProcess(t, name, SEED) for name in SERVERS}
    token_file = t.path('admin.token')
    with open(token_file, 'w') as f:
        f.write(TOKEN)
    listen, stats = free_address(), free_address()
    config = {
        'global': {'workers': WORKERS, 'shutdown_timeout': '5s'},
        'stats': {'listen': stats, 'admin_token_file': token_file},
        'services': [service_config(listen, peers, 'wrr', INITIAL_WEIGHTS)],
    }
    d = t.daemon(config, nofile=NOFILE)

    load = Load(listen, pool, SEED)
    load.run(WARMUP, 'warmup')
    wait_drained(d, stats, len(load.sessions))
    # With no session open, after the warm-up: by then every server's check
    # socket is open (a TCP check keeps its socket), and all of these must
    # remain at the end, no more.
    fds_start = quiet_descriptors(d.pid)
    rss_base = rss_kib(d.pid)
    log_stream(f'warm-up: {len(load.sessions)} sessions; RSS {rss_base} KiB, {fds_start} descriptors besides pipes')

    chaos = Chaos(t, d, config, peers, stats, SEED)
    started = time.monotonic()
    cpu_start = d.cpu_seconds()
    chaos_thread = threading.Thread(target=chaos.run, args=(started + SECONDS,), name='chaos', daemon=True)
    chaos_thread.start()
    warmup_sessions = len(load.sessions)
    load.run(SECONDS, 'soak')
    chaos_thread.join(60)
    expect(not chaos_thread.is_alive(), 'the chaos thread still runs a minute after the load')
    if chaos.error is not None:
        raise chaos.error
    cpu_used = d.cpu_seconds() - cpu_start
    sessions = sorted(load.sessions, key=lambda s: s.n)
    log_stream(f'load: {len(sessions) - warmup_sessions} sessions in {time.monotonic() - started:.0f}s; '
               f'daemon CPU {cpu_used:.1f}s; '
               f'{len(chaos.kills)} kills of flaky, {len(chaos.reloads)} reloads, {len(chaos.admin)} admin changes')
    expect(len(load.sessions) < MAX_SESSIONS, f'the load ran out of sessions ({MAX_SESSIONS})')

    wait_drained(d, stats, len(sessions))
    cpu_idle = d.cpu_seconds()
    time.sleep(2.0)
    cpu_idle = d.cpu_seconds() - cpu_idle
    rss_end = rss_kib(d.pid)

    lines = d.access_log_lines()
    expect_eq(len(lines), len(sessions), 'access-log lines vs client sessions')
    causes, per_server, unexpected = judge(sessions, lines, chaos.kills)
    up, down = verified_bytes(sessions)
    prefix = sum(s.received for s in sessions if s.result != 'completed')
    log_stream(f'sessions {len(sessions)} (the warm-up\'s included): '
               + ', '.join(f'{n} {c}' for c, n in causes.most_common()))
    log_stream(f'bytes verified by SHA-256 in completed sessions: {up / MiB:.1f} MiB up, {down / MiB:.1f} MiB down; '
               f'{prefix / MiB:.1f} MiB more checked as correct prefixes of failed sessions')
    for name in SERVERS:
        log_stream(f'  {name}: ' + ', '.join(f'{n} {c}' for c, n in per_server[name].most_common()))
    kinds = collections.Counter((s.kind, s.result) for s in sessions)
    log_stream('clients: ' + ', '.join(f'{k}/{r} {n}' for (k, r), n in sorted(kinds.items())))
    log_stream('schedulers reloaded: ' + ', '.join(f'{s} {n}' for s, n in collections.Counter(
        s for s, _ in chaos.reloads).most_common()))
    log_stream(f'RSS: {rss_base} KiB after the warm-up, peak {chaos.rss_peak} KiB, {rss_end} KiB after the load; '
               f'daemon CPU {cpu_idle:.2f}s over 2 s idle')
    expect(not unexpected, f'{len(unexpected)} sessions ended unexpectedly, e.g.:\n' + '\n'.join(unexpected[:30]))
    idle = [name for name in SERVERS if not per_server[name]]
    expect(not idle, f'servers that got no session: {idle}')

    # The log: errors none, failed connects and down transitions on flaky only.
    records = d.logs()
    expect_eq([r.raw for r in records if r.level == 'error'], [], 'error lines')
    connect_failed = collections.Counter(r.fields.get('server') for r in records if r.message == 'connect failed')
    expect(set(connect_failed) <= {'flaky'}, f'failed connects to servers other than flaky: {connect_failed}')
    downs = [h['server'] for h in health_transitions(d) if h['state'] == 'down']
    expect(set(downs) <= {'flaky'}, f'servers other than flaky went down: {collections.Counter(downs)}')
    for path in sorted(glob.glob(t.path('peer-*.stderr'))):
        with open(path) as f:
            expect_eq(f.read(), '', f'{os.path.basename(path)} (every incarnation of every server)')
    check_stats(get_stats(stats), lines, sessions, connect_failed)

    # Resources: no spin, memory and descriptors back.
    expect(cpu_idle < 0.3, f'the idle daemon used {cpu_idle:.2f}s of CPU in 2 s (spinning?)')
    if CHECK_RSS:
        expect(rss_end <= rss_base + RSS_SLACK_KIB, f'RSS {rss_end} KiB after the load, {rss_base} KiB after the '
                                                    f'warm-up (allowed {RSS_SLACK_KIB} KiB more)')
    wait_until(lambda: descriptors(d.pid)[1] == fds_start, 10, f'{fds_start} descriptors besides pipes')
    pipes = descriptors(d.pid)[0]
    expect(pipes <= 2 * POOL_PIPES * WORKERS, f'{pipes} pipe descriptors open with no session')
    log_stream(f'descriptors back to {fds_start} besides pipes, {pipes // 2} idle pipes')
    d.stop()
