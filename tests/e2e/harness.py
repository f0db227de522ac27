"""Shared pieces of the fulcrum end-to-end tests.

Everything here runs the real binary (env FULCRUM) and the demo server (env
DEMO_SERVER) on loopback only. A test is a module in cases/ with a DEADLINE
in seconds and a run(t) function taking a TestContext; run.py runs one.

What a test gets from here:
  - TestContext: temporary directory, free loopback ports, the daemon, demo
    servers and in-process TCP servers, all cleaned up (by PID) at the end.
  - Daemon: starts `fulcrum -c FILE`, waits for its `listening` lines, parses
    its stderr into LogRecords (parse_log_line: logfmt, `ts level msg`
    first) and the access log into dicts. At cleanup every complete stderr
    line of every fulcrum must be logfmt with a msg, level and fields that
    docs/operations.md's log table lists (log_line_problems), or the test
    fails.
  - TcpServer: a threaded server whose handler runs once per connection and
    whose exceptions fail the test.
  - PatternStream: deterministic pseudo-random bytes, hashed as they are sent.
  - client helpers: connect, recv_exact, recv_line, recv_to_eof, rst_close.
  - the stats endpoint: http_request, http_get, get_stats (JSON) and
    get_metrics (a parsed Prometheus text exposition, Metrics);
    fulcrumctl_notes (the lines below `fulcrumctl servers`' table).
  - the agent check: Agent (answers one line on a given host and port),
    free_port_on (a port free on several loopback addresses).
  - greeting servers for the scheduler tests: read_greeting, greeted_session,
    open_greeted, finish_session, greeting_holder (a TcpServer handler that
    greets and holds).
  - health checks: health_transitions (the `server up` and `server down`
    lines, checked for form), log_time; echo_session and SessionLoad (client
    threads running short echo sessions throughout a test, pausable so that
    a server can be killed with no session on it); DemoServer.kill() and
    demo_server(address=...) to restart one on the same port.
  - peers from Debian packages: require_program (the test is skipped
    without the program, failed in CI).
  - sanitizer builds: route_sanitizer_reports and sanitizer_reports (run.py
    fails a test on any report of its processes).
Standard library only.
"""

import datetime
import fcntl
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

MiB = 1 << 20

SESSION_ENDS = {
    'client_close', 'server_close', 'client_reset', 'server_reset',
    'connect_failed', 'no_server', 'idle_timeout', 'max_lifetime', 'shutdown', 'bad_proxy_header',
    'local_error', 'server_down', 'denied', 'source_limit', 'proxy_untrusted',
    'no_sni_route',
}

ACCESS_LOG_KEYS = ('service', 'client', 'server', 'server_addr', 'bytes_in',
                   'bytes_out', 'duration_ms', 'end')


# --------------------------------------------------------------------------
# Outcomes and assertions


class TestFailure(Exception):
    """The daemon did not behave as the test expects."""


class TestSkip(Exception):
    """A prerequisite of the test is missing on this machine."""


class TestTimeout(BaseException):
    """The test ran past its DEADLINE. A BaseException so that no
    `except Exception` inside a test swallows it."""


def expect(condition, message):
    if not condition:
        raise TestFailure(message)


def expect_eq(actual, expected, what):
    if actual != expected:
        raise TestFailure(f'{what}: expected {expected!r}, got {actual!r}')


def wait_until(predicate, timeout, what, interval=0.01):
    """Polls predicate() until it is true; fails with `what` (or what it
    returns, when it is a function: say what was seen) after timeout
    seconds. Returns the predicate's value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TestFailure(f'timed out after {timeout:g}s waiting for {what() if callable(what) else what}')
        time.sleep(interval)


def require_program(name, package):
    """The path of program `name`. Missing, the test is skipped, except in
    CI (env CI set), where every test must run: tools/deps.sh installs the
    Debian `package` that has it."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get('CI', '').lower() not in ('', '0', 'false'):
            raise TestFailure(f'{name} is not installed (Debian package {package}, see tools/deps.sh); '
                              'in CI this test must run')
        raise TestSkip(f'{name} is not installed (Debian package {package}; tools/deps.sh installs it)')
    return path


# --------------------------------------------------------------------------
# Addresses and ports


def format_address(host, port):
    """'127.0.0.1:PORT' or '[::1]:PORT', the form fulcrum's config and logs use."""
    return f'[{host}]:{port}' if ':' in host else f'{host}:{port}'


def parse_address(text):
    """'127.0.0.1:80' or '[::1]:80' -> (host, port)."""
    m = re.fullmatch(r'\[([0-9A-Fa-f:.]+)\]:(\d+)|([0-9.]+):(\d+)', text)
    if not m:
        raise ValueError(f'not an IP:port address: {text!r}')
    if m.group(1) is not None:
        return m.group(1), int(m.group(2))
    return m.group(3), int(m.group(4))


def family_of(host):
    return socket.AF_INET6 if ':' in host else socket.AF_INET


def ipv6_loopback_available():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(('::1', 0))
        return True
    except OSError:
        return False


_PORT_LOCK_DIR = os.path.join(tempfile.gettempdir(), 'fulcrum-e2e-ports')
_held_port_locks = []  # open lock files: held until this process exits
# Ports this process was given: its own lockf() locks do not stop it (POSIX
# record locks never conflict within one process), so a port picked for a
# listen address that is not bound yet could otherwise be picked again.
_ports_given = set()
_port_lock_mutex = threading.Lock()


def _ephemeral_range():
    try:
        with open('/proc/sys/net/ipv4/ip_local_port_range') as f:
            low, high = (int(x) for x in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def _port_is_free(host, port):
    # Without SO_REUSEADDR: a port that an earlier test's connection still
    # holds in TIME_WAIT is not free for a test that binds it plainly.
    with socket.socket(family_of(host), socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host='127.0.0.1'):
    """A TCP port on `host` that nothing uses now and no other e2e test will
    pick: taken below the kernel's ephemeral range (so no outgoing connection
    grabs it meanwhile) and locked with a per-port lock file that this process
    holds until it exits (so tests running in parallel never share one)."""
    os.makedirs(_PORT_LOCK_DIR, exist_ok=True)
    low, _ = _ephemeral_range()
    first, last = (20000, low - 1) if low > 21000 else (low // 2, low - 1)
    rng = random.SystemRandom()
    with _port_lock_mutex:
        for _ in range(500):
            port = rng.randint(first, last)
            if port in _ports_given:
                continue
            fd = os.open(os.path.join(_PORT_LOCK_DIR, f'{port}.lock'), os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            if not _port_is_free(host, port):
                os.close(fd)
                continue
            _held_port_locks.append(fd)
            _ports_given.add(port)
            return port
    raise TestFailure(f'found no free port on {host}')


def free_port_on(*hosts):
    """A port free on every one of `hosts` (as free_port() picks them): the
    agent check asks each server's address on one port for the service."""
    for _ in range(50):
        port = free_port(hosts[0])
        if all(_port_is_free(host, port) for host in hosts[1:]):
            return port
    raise TestSkip(f'no port free on all of {", ".join(hosts)}')


def free_address(host='127.0.0.1'):
    return format_address(host, free_port(host))


# --------------------------------------------------------------------------
# Configuration files

_PLAIN_SCALAR = re.compile(r'[A-Za-z][A-Za-z0-9_.-]*')
_YAML_WORDS = {'true', 'false', 'yes', 'no', 'on', 'off', 'null', 'y', 'n'}


def _yaml_scalar(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if _PLAIN_SCALAR.fullmatch(value) and value.lower() not in _YAML_WORDS:
            return value
        return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar
    raise TypeError(f'no YAML form for {value!r}')


def to_yaml(value, indent=0):
    """Block-style YAML for nested dicts, lists and scalars. Names stay plain,
    anything else (addresses, durations) is double-quoted."""
    pad = ' ' * indent
    lines = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f'{pad}{key}:')
                lines.append(to_yaml(item, indent + 2))
            elif isinstance(item, list):
                lines.append(f'{pad}{key}: []')
            else:
                lines.append(f'{pad}{key}: {_yaml_scalar(item)}')
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                body = to_yaml(item, indent + 2)
                lines.append(pad + '- ' + body[indent + 2:])
            elif isinstance(item, (dict, list)):
                raise TypeError('empty or nested lists are not used in configs')
            else:
                lines.append(f'{pad}- {_yaml_scalar(item)}')
    else:
        lines.append(pad + _yaml_scalar(value))
    return '\n'.join(lines)


def write_config(path, config):
    """Writes `config` (a dict shaped like fulcrum.yaml, or YAML text) to path."""
    text = config if isinstance(config, str) else to_yaml(config) + '\n'
    with open(path, 'w') as f:
        f.write(text)
    return path


def listen_addresses(config):
    """Every listen address of a config dict, as written."""
    out = []
    for service in config.get('services', []):
        listen = service.get('listen', [])
        out.extend([listen] if isinstance(listen, str) else listen)
    return out


def stats_listen_address(config):
    """The stats endpoint's listen address of a config dict, as written, or
    None when the config has no stats section."""
    stats = config.get('stats')
    return stats.get('listen') if isinstance(stats, dict) else None


# --------------------------------------------------------------------------
# Logs

LOG_LEVELS = ('error', 'warn', 'info', 'debug')
# The `<N>` prefix journald reads a line's priority from (syslog's numbers).
SYSLOG_PRIORITY = {'error': 3, 'warn': 4, 'info': 6, 'debug': 7}

_LOG_TIME = re.compile(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z')
_LOG_PRIORITY = re.compile(r'<([0-7])>')
_LOG_KEY = re.compile(r'[a-z0-9_]+')
# A value fulcrum leaves unquoted: not empty, no space, '=', '"', '\' or
# control character (it quotes those).
_LOG_BARE_VALUE = re.compile(r'[^ ="\\\x00-\x1f\x7f]+')
# A quoted value: the escapes fulcrum writes (JSON's), nothing raw that needs one.
_LOG_QUOTED_VALUE = re.compile(r'"(?:[^"\\\x00-\x1f\x7f]|\\["\\nrt]|\\u[0-9a-f]{4})*"')


class LogRecord:
    """One parsed log line: raw (the line), time (ts), level, message (msg),
    fields (a dict of the other key=value pairs, in line order) and priority
    (the `<N>` journald prefix as an int, or None)."""

    def __init__(self, raw, time_text, level, message, fields, priority=None):
        self.raw = raw
        self.time = time_text
        self.level = level
        self.message = message
        self.fields = fields
        self.priority = priority

    def __repr__(self):
        return f'LogRecord({self.raw!r})'


def parse_logfmt(text):
    """'a=1 b="x y"' -> [('a', '1', False), ('b', 'x y', True)]: (key, value,
    quoted) in order. Strict: pairs separated by one space, every key with a
    value, quoted values unescaped as JSON strings. Raises ValueError naming
    the column where the text stops being logfmt."""
    pairs, pos, n = [], 0, len(text)
    while True:
        m = _LOG_KEY.match(text, pos)
        if not m:
            raise ValueError(f'no key at column {pos}')
        key, pos = m.group(), m.end()
        if text[pos:pos + 1] != '=':
            raise ValueError(f'key {key!r} without =value at column {pos}')
        pos += 1
        quoted = text.startswith('"', pos)
        m = (_LOG_QUOTED_VALUE if quoted else _LOG_BARE_VALUE).match(text, pos)
        if not m:
            raise ValueError(f'{"bad quoted" if quoted else "empty or unquoted"} value of {key!r} at column {pos}')
        value = json.loads(m.group()) if quoted else m.group()
        pairs.append((key, value, quoted))
        pos = m.end()
        if pos == n:
            return pairs
        if text[pos] != ' ' or pos + 1 == n:
            raise ValueError(f'no single space after the value of {key!r} at column {pos}')
        pos += 1


def parse_log_line(line):
    """A LogRecord, or raises ValueError if the line is not fulcrum's logfmt:
    an optional `<N>` priority (journald), then `ts=RFC3339 level=LEVEL
    msg="message"` (msg always quoted) and key=value fields, no key twice;
    N must be LEVEL's syslog priority."""
    priority = None
    m = _LOG_PRIORITY.match(line)
    if m:
        priority = int(m.group(1))
    pairs = parse_logfmt(line[m.end():] if m else line)
    keys = [k for k, _, _ in pairs]
    if keys[:3] != ['ts', 'level', 'msg']:
        raise ValueError(f'the keys do not begin with ts, level, msg: {keys[:3]}')
    if len(set(keys)) != len(keys):
        raise ValueError(f'a key twice: {sorted(k for k in set(keys) if keys.count(k) > 1)}')
    (_, ts, _), (_, level, _), (_, message, quoted) = pairs[:3]
    if not _LOG_TIME.fullmatch(ts):
        raise ValueError(f'ts is not an RFC 3339 UTC time with milliseconds: {ts!r}')
    if level not in LOG_LEVELS:
        raise ValueError(f'unknown level {level!r}')
    if not quoted or not message:
        raise ValueError('msg is not a quoted, non-empty message')
    if priority is not None and priority != SYSLOG_PRIORITY[level]:
        raise ValueError(f'priority <{priority}> for level {level}')
    return LogRecord(line, ts, level, message, {k: v for k, v, _ in pairs[3:]}, priority)


def key_position(path, key):
    """`FILE:LINE:COL` of the first `KEY:` that starts a line (after indentation) in the file."""
    with open(path) as f:
        for number, line in enumerate(f, 1):
            column = line.find(key + ':')
            if column >= 0 and line[:column].strip() == '':
                return f'{path}:{number}:{column + 1}'
    raise TestFailure(f'no {key}: in {path}')


def human_bytes(n):
    """fulcrumctl's byte form: 1023B, 1.5KiB, 5.0MiB."""
    if n < 1024:
        return f'{n}B'
    value, units, i = n / 1024, ['KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'], 0
    while value >= 1023.95 and i + 1 < len(units):
        value /= 1024
        i += 1
    return f'{value:.1f}{units[i]}'


def log_time(record):
    """A LogRecord's timestamp in seconds since the epoch (the scale of time.time())."""
    stamp = datetime.datetime.strptime(record.time, '%Y-%m-%dT%H:%M:%S.%fZ')
    return stamp.replace(tzinfo=datetime.timezone.utc).timestamp()


OPERATIONS_DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'docs', 'operations.md')
_LOG_TABLE_HEADER = '| msg | level | fields | when |'


class LogMessage:
    """One row of docs/operations.md's log table: msg, level (one of
    LOG_LEVELS, or None where the level varies) and fields (the keys the
    line may carry)."""

    def __init__(self, msg, level, fields):
        self.msg, self.level, self.fields = msg, level, fields

    def __repr__(self):
        return f'LogMessage({self.msg!r}, {self.level}, {sorted(self.fields)})'


_documented = None


def documented_log_messages():
    """{msg: LogMessage} from the table under `| msg | level | fields | when |`
    in docs/operations.md: a row is `` | `msg` | level | `key` `key` ... | when | ``."""
    global _documented
    if _documented is None:
        with open(OPERATIONS_DOC, encoding='utf-8') as f:
            lines = f.read().splitlines()
        if _LOG_TABLE_HEADER not in lines:
            raise TestFailure(f'{OPERATIONS_DOC} has no log table ({_LOG_TABLE_HEADER})')
        table = {}
        for line in lines[lines.index(_LOG_TABLE_HEADER) + 2:]:
            if not line.startswith('|'):
                break
            cells = [c.strip() for c in line.strip().strip('|').split('|')]
            m = re.fullmatch(r'`([^`]+)`', cells[0]) if len(cells) == 4 else None
            if not m or m.group(1) in table:
                raise TestFailure(f'{OPERATIONS_DOC}: log table row is not `msg` | level | fields | when, '
                                  f'or repeats a msg: {line!r}')
            table[m.group(1)] = LogMessage(m.group(1), cells[1] if cells[1] in LOG_LEVELS else None,
                                           set(re.findall(r'`([a-z0-9_]+)`', cells[2])))
        _documented = table
    return _documented


def log_line_problems(text, who):
    """What is wrong with the complete lines of `text` (a process's stderr):
    each line that is not fulcrum's logfmt, or whose msg, level or a field
    is not as docs/operations.md's log table lists it. A list of strings
    naming the line; empty when every line is right."""
    documented = documented_log_messages()
    problems = []
    for number, line in enumerate(text[:text.rfind('\n') + 1].splitlines(), 1):
        try:
            r = parse_log_line(line)
        except ValueError as e:
            problems.append(f'{who} stderr line {number} is not logfmt ({e}): {line[:500]!r}')
            continue
        doc = documented.get(r.message)
        if doc is None:
            problems.append(f'{who} stderr line {number}: msg {r.message!r} is not in the log table of '
                            f'docs/operations.md: {line[:500]!r}')
            continue
        if doc.level is not None and r.level != doc.level:
            problems.append(f'{who} stderr line {number}: level {r.level}, the docs say {doc.level}: {line[:500]!r}')
        extra = [k for k in r.fields if k not in doc.fields]
        if extra:
            problems.append(f'{who} stderr line {number}: fields {extra} not listed for {r.message!r} in '
                            f'docs/operations.md: {line[:500]!r}')
    return problems


_TRANSITION_FIELDS = ['service', 'server', 'address', 'reason', 'check', 'streak', 'needed']


def health_transitions(daemon, service=None, server=None):
    """The health state changes `daemon` logged, in log order: `server down`
    (warn) and `server up` (info, reason `check passed`, or `agent says up`
    from an agent), each checked for its fields (service server address
    reason check streak needed, in that order). Returned as dicts: record, time (log_time), service, server,
    address, state (`up` or `down`), reason, streak, needed (ints), check.
    Only those of `service` and `server` when given."""
    out = []
    for r in daemon.logs():
        if r.message not in ('server up', 'server down'):
            continue
        f = r.fields
        state = r.message.split()[1]
        expect_eq(r.level, 'warn' if state == 'down' else 'info', f'level of {r.raw}')
        expect_eq(list(f), _TRANSITION_FIELDS, f'fields of {r.raw}')
        expect(f['check'] in ('active', 'passive', 'agent'), f'check= is not active, passive or agent: {r.raw}')
        try:
            parse_address(f['address'])
        except ValueError:
            raise TestFailure(f'address= is not IP:port: {r.raw}')
        if state == 'up':
            expect_eq(f['reason'], 'agent says up' if f['check'] == 'agent' else 'check passed', f'reason of {r.raw}')
        expect(f['streak'].isdigit() and f['needed'].isdigit(), f'streak= or needed= is not a count: {r.raw}')
        t = dict(record=r, time=log_time(r), service=f['service'], server=f['server'], address=f['address'],
                 state=state, reason=f['reason'], check=f['check'], streak=int(f['streak']),
                 needed=int(f['needed']))
        expect_eq(t['streak'], t['needed'], f'streak= and needed= of {r.raw}: N consecutive results of M needed')
        if (service is None or t['service'] == service) and (server is None or t['server'] == server):
            out.append(t)
    return out


def validate_access_record(record):
    """Checks one `session` line has every access-log field in its form; returns
    its fields as a dict with bytes_in, bytes_out and duration_ms as ints."""
    f = dict(record.fields)
    for key in ACCESS_LOG_KEYS:
        expect(key in f, f'access log line lacks {key}=: {record.raw}')
    for key in ('bytes_in', 'bytes_out', 'duration_ms'):
        expect(re.fullmatch(r'\d+', f[key]) is not None, f'{key} is not a count: {record.raw}')
        f[key] = int(f[key])
    expect(f['end'] in SESSION_ENDS, f'unknown end={f["end"]}: {record.raw}')
    try:
        parse_address(f['client'])
    except ValueError:
        raise TestFailure(f'client= is not IP:port: {record.raw}')
    if f['server'] == '-':
        expect(f['server_addr'] == '-', f'server=- but server_addr set: {record.raw}')
    else:
        try:
            parse_address(f['server_addr'])
        except ValueError:
            raise TestFailure(f'server_addr= is not IP:port: {record.raw}')
    return f


# --------------------------------------------------------------------------
# Sanitizer reports

SANITIZER_OPTION_VARIABLES = ('ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS', 'TSAN_OPTIONS')


def route_sanitizer_reports(ctx):
    """Sends the reports of AddressSanitizer, UndefinedBehaviorSanitizer,
    LeakSanitizer and ThreadSanitizer from every process the test starts
    (they inherit this environment) to files `sanitizer.PID` in the test's
    directory, keeping the options already set. A report there fails the test
    (sanitizer_reports) even when its process went on running (TSan reports
    and continues), was killed at cleanup, or exited with a status the test
    never looks at. Binaries built without sanitizers ignore these variables."""
    prefix = ctx.path('sanitizer')
    for variable in SANITIZER_OPTION_VARIABLES:
        options = os.environ.get(variable)
        os.environ[variable] = f'{options}:log_path={prefix}' if options else f'log_path={prefix}'


def sanitizer_reports(ctx):
    """The text of every sanitizer report the test's processes wrote, '' if none."""
    texts = []
    for name in sorted(os.listdir(ctx.tmpdir)):
        if name.startswith('sanitizer.'):
            with open(ctx.path(name), 'rb') as f:
                texts.append(f'--- {name}:\n' + f.read().decode('utf-8', 'replace'))
    return '\n'.join(texts)


# --------------------------------------------------------------------------
# Processes


def _child_environment():
    """The daemon's environment: ours without journald or systemd hooks, so it
    logs with timestamps and talks to no notify socket."""
    env = dict(os.environ)
    for key in ('JOURNAL_STREAM', 'NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'LISTEN_FDS', 'LISTEN_PID'):
        env.pop(key, None)
    return env


def binary(variable):
    path = os.environ.get(variable)
    if not path:
        raise TestFailure(f'environment variable {variable} is not set (path of the built binary)')
    if not os.access(path, os.X_OK):
        raise TestFailure(f'{variable}={path} is not an executable file')
    return path


def install_binary(source, target):
    """Puts `source` at `target` as a package manager does: a new file
    renamed over the old one (a running binary cannot be written)."""
    staging = target + '.new'
    shutil.copyfile(source, staging)
    os.chmod(staging, 0o755)
    os.rename(staging, target)


def cpu_seconds(pid):
    """utime + stime of a process from /proc/PID/stat, in seconds."""
    with open(f'/proc/{pid}/stat') as f:
        stat = f.read()
    fields = stat[stat.rindex(')') + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
    return (utime + stime) / os.sysconf('SC_CLK_TCK')


class Daemon:
    """The fulcrum binary running `-c FILE` in the foreground, stderr captured
    to a file. Built by TestContext.daemon()."""

    def __init__(self, ctx, config, name='fulcrum', nofile=None, env=None, prefix=None, executable=None):
        self.env = env or {}  # extra environment, e.g. NOTIFY_SOCKET for a test
        # The binary to run (default: $FULCRUM), e.g. a copy an upgrade test
        # replaces while it runs.
        self.executable = executable
        # A command that runs fulcrum in its own process (same PID), e.g.
        # `ip netns exec NS`, setpriv, or valgrind and its options.
        self.prefix = prefix or []
        self.ctx = ctx
        self.name = name
        self.config = config
        self.config_path = write_config(ctx.path(f'{name}.yaml'), config)
        self.stderr_path = ctx.path(f'{name}.stderr')
        self.stdout_path = ctx.path(f'{name}.stdout')
        self.nofile = nofile
        self.proc = None

    @property
    def pid(self):
        return self.proc.pid

    def start(self, wait_ready=True, timeout=20):
        command = [self.executable or binary('FULCRUM'), '-c', self.config_path]
        if self.nofile is not None:
            prlimit = '/usr/bin/prlimit' if os.access('/usr/bin/prlimit', os.X_OK) else None
            if prlimit is None:
                raise TestSkip('prlimit (util-linux) is not installed')
            # prlimit sets the limit on itself and then execs fulcrum: same PID.
            command = [prlimit, f'--nofile={self.nofile}:{self.nofile}', '--'] + command
        command = self.prefix + command
        with open(self.stdout_path, 'wb') as out, open(self.stderr_path, 'wb') as err:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         env={**_child_environment(), **self.env})
        self.ctx.register_process(self.proc, self.name)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout=20):
        """Waits for one `listening` line per listen address of the config,
        and for `stats listening` when the config has a stats section."""
        expected = {parse_address(a) for a in listen_addresses(self.config)}
        stats = stats_listen_address(self.config)
        if stats is not None:
            expected_stats = parse_address(stats)

        def listening():
            seen = set()
            stats_seen = stats is None
            for r in self.logs():
                if r.message in ('listening', 'forwarding', 'stats listening') and 'address' in r.fields:
                    try:
                        address = parse_address(r.fields['address'])
                    except ValueError:
                        continue
                    if r.message in ('listening', 'forwarding'):  # forwarding: in the kernel
                        seen.add(address)
                    elif address == expected_stats:
                        stats_seen = True
            return expected <= seen and stats_seen

        deadline = time.monotonic() + timeout
        while not listening():
            if not self.running():
                raise TestFailure(f'{self.name} exited with {self.proc.returncode} before listening:\n'
                                  + self.stderr_tail())
            if time.monotonic() > deadline:
                also = f' and stats on {stats}' if stats is not None else ''
                raise TestFailure(f'{self.name} not listening on all of {sorted(expected)}{also} after {timeout}s:\n'
                                  + self.stderr_tail())
            time.sleep(0.02)

    # -- logs

    def stderr_text(self):
        with open(self.stderr_path, 'rb') as f:
            return f.read().decode('utf-8', 'replace')

    def stderr_tail(self, lines=40):
        return '\n'.join(self.stderr_text().splitlines()[-lines:])

    def logs(self, strict=False):
        """Every complete stderr line as a LogRecord. Lines that break the log
        format are skipped, or fail the test when strict. (Whatever a test
        reads, TestContext's cleanup checks every line: log_line_problems.)"""
        records = []
        text = self.stderr_text()
        complete = text[:text.rfind('\n') + 1]
        for line in complete.splitlines():
            try:
                records.append(parse_log_line(line))
            except ValueError as e:
                if strict:
                    raise TestFailure(f'{self.name} stderr line breaks the log format ({e}): {line!r}')
        return records

    def find_logs(self, message, **fields):
        """Records with this message whose fields include all of `fields`."""
        return [r for r in self.logs()
                if r.message == message and all(r.fields.get(k) == str(v) for k, v in fields.items())]

    def access_log_lines(self):
        """The access log (`session` lines) as dicts, each checked for form."""
        return [validate_access_record(r) for r in self.logs() if r.message == 'session']

    def wait_for_log(self, pattern, timeout=10, count=1):
        """Waits until `count` stderr lines match `pattern` (a regex searched in
        the raw line, or a predicate on LogRecord); returns the matches."""
        if isinstance(pattern, str):
            regex = re.compile(pattern)

            def match(r):
                return regex.search(r.raw) is not None
            what = repr(pattern)
        else:
            match = pattern
            what = getattr(pattern, '__name__', 'a log line')
        deadline = time.monotonic() + timeout
        while True:
            exited = not self.running()  # read the log after this check
            found = [r for r in self.logs() if match(r)]
            if len(found) >= count:
                return found
            if exited or time.monotonic() > deadline:
                state = f'exited with {self.proc.returncode}' if exited else f'still running after {timeout:g}s'
                raise TestFailure(f'{self.name} {state}; {len(found)} of {count} log lines matching {what}:\n'
                                  + self.stderr_tail())
            time.sleep(0.02)

    def wait_access_count(self, count, timeout=30):
        """Waits until at least `count` access-log lines are written."""
        return self.wait_for_log(lambda r: r.message == 'session', timeout, count)

    # -- lifecycle

    def send_signal(self, sig):
        if self.running():
            os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout):
        """Waits for the process to exit; fails if it does not in time."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TestFailure(f'{self.name} still running {timeout:g}s later:\n' + self.stderr_tail())

    def stop(self, timeout=30, sig=signal.SIGTERM):
        """Graceful stop: the signal, exit code 0, a `stopped` line, and every
        stderr line in the log format."""
        expect(self.running(), f'{self.name} died before the test stopped it '
                               f'(exit {self.proc.returncode}):\n{self.stderr_tail()}')
        os.kill(self.proc.pid, sig)
        code = self.wait_exit(timeout)
        expect_eq(code, 0, f'{self.name} exit code after {signal.Signals(sig).name}')
        self.check_stopped_log()
        return code

    def check_stopped_log(self):
        records = self.logs(strict=True)
        expect(any(r.message == 'stopped' for r in records), f'{self.name} logged no `stopped` line')

    def cpu_seconds(self):
        return cpu_seconds(self.proc.pid)


class DemoServer:
    """fulcrum-demo-server NAME ADDRESS: greets with `hello from NAME\\n`, then
    echoes. Built by TestContext.demo_server(). `label` (default NAME) names
    its output files, so that two demo servers may share a NAME. `address`
    (default: a free port on `host`) restarts a server where a killed one
    listened."""

    def __init__(self, ctx, name, host='127.0.0.1', label=None, address=None):
        self.name = name
        self.address = address or free_address(host)
        self.greeting = f'hello from {name}\n'.encode()
        label = label or name
        self.stdout_path = ctx.path(f'demo-{label}.stdout')
        with open(self.stdout_path, 'wb') as out, open(ctx.path(f'demo-{label}.stderr'), 'wb') as err:
            self.proc = subprocess.Popen([binary('DEMO_SERVER'), name, self.address], stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err, env=_child_environment())
        ctx.register_process(self.proc, f'demo server {name}')
        ready = f'listening {name} {self.address}'

        def is_ready():
            if self.proc.poll() is not None:
                raise TestFailure(f'demo server {name} exited with {self.proc.returncode}')
            with open(self.stdout_path, 'rb') as f:
                return ready in f.read().decode('utf-8', 'replace').splitlines()
        wait_until(is_ready, 10, f'demo server line {ready!r}')

    def kill(self):
        """SIGKILL by PID and reap: its listener and connections vanish at once."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


class TcpServer:
    """A listening socket on loopback; each accepted connection runs
    handler(conn, peer) in its own thread and is closed when it returns.
    Keeps counts (accepted, active, max_active) and the peers seen. An
    exception in a handler is kept in `errors`, and check() fails on it.
    Built by TestContext.tcp_server()."""

    def __init__(self, handler, host='127.0.0.1', name='server', conn_timeout=120, port=None):
        self.name = name
        self.handler = handler
        self.conn_timeout = conn_timeout
        self.lock = threading.Lock()
        self.accepted = 0
        self.active = 0
        self.max_active = 0
        self.peers = []
        self.errors = []
        self.closing = False
        self._conns = set()
        self.sock = socket.socket(family_of(host), socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port or free_port(host)))
        self.sock.listen(4096)
        self.sock.settimeout(0.2)
        self.address = format_address(host, self.sock.getsockname()[1])
        self._thread = threading.Thread(target=self._accept_loop, name=f'{name}-accept', daemon=True)
        self._thread.start()

    def _accept_loop(self):
        while not self.closing:
            try:
                conn, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self.closing:
                    return
                raise
            conn.settimeout(self.conn_timeout)
            with self.lock:
                self.accepted += 1
                self.active += 1
                self.max_active = max(self.max_active, self.active)
                self.peers.append(peer)
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn, peer), name=f'{self.name}-conn', daemon=True).start()

    def _serve(self, conn, peer):
        try:
            self.handler(conn, peer)
        except Exception as e:
            if not self.closing:
                with self.lock:
                    self.errors.append(f'{self.name} handler for {peer}: {type(e).__name__}: {e}')
        finally:
            # Counted as gone before the close, so `active` never counts a
            # connection the peer can already see closed.
            with self.lock:
                self.active -= 1
                self._conns.discard(conn)
            conn.close()

    def check(self):
        with self.lock:
            errors = list(self.errors)
        expect(not errors, 'server side failed:\n' + '\n'.join(errors))

    def stop_listening(self):
        """Closes the listening socket only: new connects are refused while
        the accepted connections stay open (and silent unless their handlers
        speak): a server that dies without a word to its peers."""
        self.closing = True
        self.sock.close()

    def close(self):
        self.stop_listening()
        with self.lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class TestContext:
    """Per-test resources: a temporary directory and everything started in it.
    cleanup() stops it all: servers closed, processes killed by their PID."""

    def __init__(self, name):
        self.name = name
        self.tmpdir = tempfile.mkdtemp(prefix=f'fulcrum-e2e-{name}-')
        self.daemons = []
        self._logs = []  # (who, function returning the text of its stderr so far)
        self.log_problems = []  # what cleanup() found wrong with them (log_line_problems)
        self._processes = []  # (Popen, label)
        self._servers = []
        self._sockets = []
        self._cleanups = []

    def path(self, filename):
        return os.path.join(self.tmpdir, filename)

    def register_process(self, proc, label):
        self._processes.append((proc, label))

    def daemon(self, config, name='fulcrum', start=True, **options):
        """A Daemon for `config` (dict), started and ready unless start=False."""
        d = Daemon(self, config, name=name, **options)
        self.daemons.append(d)
        self.watch_log(d.name, lambda: d.stderr_text() if d.proc is not None else '')
        if start:
            d.start()
        return d

    def demo_server(self, name, host='127.0.0.1', label=None, address=None):
        return DemoServer(self, name, host, label, address)

    def tcp_server(self, handler, host='127.0.0.1', name='server', **options):
        server = TcpServer(handler, host, name, **options)
        self._servers.append(server)
        return server

    def dead_address(self, host='127.0.0.1'):
        """An address where nothing listens and nothing else may bind: a socket
        bound there without listen(), kept for the whole test. Connecting to it
        is refused."""
        s = socket.socket(family_of(host), socket.SOCK_STREAM)
        # As free_port() checked it: connections of earlier tests may still
        # sit in TIME_WAIT on that port, which only SO_REUSEADDR lets pass.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, free_port(host)))
        self._sockets.append(s)
        return format_address(host, s.getsockname()[1])

    def token_file(self, content, name='admin.token'):
        """A file in the test's directory holding `content`, mode 0600 (an
        admin token file others may read draws a warning); its path."""
        path = self.path(name)
        with open(path, 'w') as f:
            f.write(content)
        os.chmod(path, 0o600)
        return path

    def watch_log(self, who, text):
        """Has cleanup() check every complete line of a fulcrum's stderr:
        text() returns what it wrote so far. Daemons are watched already;
        this is for a fulcrum a test starts itself."""
        self._logs.append((who, text))

    def at_cleanup(self, function):
        """Calls function() at cleanup, after every process is killed (last
        registered first), also when the test fails."""
        self._cleanups.append(function)

    def own_socket(self, sock):
        """Closes `sock` (anything with a close()) at cleanup; returns it."""
        self._sockets.append(sock)
        return sock

    def check_servers(self):
        for server in self._servers:
            server.check()

    def cleanup(self):
        """Stops everything, then checks the log of every fulcrum started
        (log_line_problems) into log_problems: the runner fails the test on
        any, whatever the test concluded."""
        for server in self._servers:
            server.close()
        for s in self._sockets:
            s.close()
        kill_processes(self._processes)
        # Before the cleanups: one of them may close what text() reads.
        for who, text in self._logs:
            self.log_problems += log_line_problems(text(), who)
        while self._cleanups:
            self._cleanups.pop()()

    def describe_daemons(self):
        out = []
        for d in self.daemons:
            if d.proc is not None:
                out.append(f'--- {d.name} stderr (last lines), config {d.config_path}:\n{d.stderr_tail()}')
        return '\n'.join(out)


def kill_processes(processes):
    """SIGKILL each still-running process by its own PID, then reap it."""
    for proc, _ in processes:
        if proc.poll() is None:
            try:
                proc.kill()
            except OSError:
                pass
    for proc, _ in processes:
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


# --------------------------------------------------------------------------
# Stats endpoint: HTTP requests and the Prometheus text format


class HttpReply:
    """One HTTP response: status (int), reason, headers (an
    http.client.HTTPMessage: case-insensitive get()), body (bytes)."""

    def __init__(self, status, reason, headers, body):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body

    def __repr__(self):
        return f'HttpReply({self.status} {self.reason}, {len(self.body)} bytes)'


def http_request(address, method, path, body=None, headers=None, timeout=10):
    """One request on its own connection to 'IP:PORT' / '[IPv6]:PORT';
    returns an HttpReply with the whole body. Connection errors propagate."""
    host, port = parse_address(address)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return HttpReply(response.status, response.reason, response.headers, response.read())
    finally:
        conn.close()


def http_get(address, path, timeout=10):
    return http_request(address, 'GET', path, timeout=timeout)


def get_ok(address, path, content_type, timeout=10):
    """GET that must answer 200 with this Content-Type; returns the body as text."""
    reply = http_get(address, path, timeout)
    expect_eq(reply.status, 200, f'status of GET {path}')
    expect_eq(reply.headers.get('Content-Type'), content_type, f'Content-Type of GET {path}')
    return reply.body.decode('utf-8')


def fulcrumctl_notes(stats_address, timeout=30):
    """The lines `fulcrumctl servers` prints below its table (last errors,
    agents, sessions closed on down), against the stats endpoint at
    `stats_address`."""
    result = subprocess.run([binary('FULCRUMCTL'), '--url', f'http://{stats_address}', 'servers'],
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    out = result.stdout.decode('utf-8', 'replace')
    expect(result.returncode == 0 and not result.stderr, f'fulcrumctl servers: exit {result.returncode}, '
                                                         f'stdout {out!r}, stderr {result.stderr!r}')
    _, _, notes = out.partition('\n\n')
    return notes.splitlines()


def get_stats(address, timeout=10):
    """GET /stats, parsed as JSON."""
    text = get_ok(address, '/stats', 'application/json', timeout)
    try:
        return json.loads(text)
    except ValueError as e:
        raise TestFailure(f'GET /stats is not JSON ({e}): {text[:500]!r}')


METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

_METRIC_NAME = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
_SAMPLE_LINE = re.compile(rf'(?P<name>{_METRIC_NAME})(?:\{{(?P<labels>[^}}]*)\}})? (?P<value>\S+)')
_LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


class Metrics:
    """A parsed Prometheus text exposition (format 0.0.4): `types` and
    `helps` by family name, `samples` {(name, ((label, value), ...)): float}
    with labels sorted. get(name, **labels) is one sample's value."""

    def __init__(self, text):
        self.types, self.helps, self.samples = {}, {}, {}
        expect(text.endswith('\n'), 'metrics text does not end with a newline')
        for number, line in enumerate(text[:-1].split('\n'), 1):
            where = f'metrics line {number} {line!r}'
            if line.startswith('# HELP ') or line.startswith('# TYPE '):
                parts = line.split(' ', 3)
                expect(len(parts) == 4 and re.fullmatch(_METRIC_NAME, parts[2]), f'{where}: bad comment')
                table = self.helps if parts[1] == 'HELP' else self.types
                expect(parts[2] not in table, f'{where}: second {parts[1]} for {parts[2]}')
                table[parts[2]] = parts[3]
                continue
            m = _SAMPLE_LINE.fullmatch(line)
            expect(m is not None, f'{where}: not a sample line')
            labels = []
            text_labels = m.group('labels') or ''
            pos = 0
            while pos < len(text_labels):
                pair = _LABEL_PAIR.match(text_labels, pos)
                expect(pair is not None, f'{where}: bad labels')
                value = re.sub(r'\\(.)', lambda x: '\n' if x.group(1) == 'n' else x.group(1), pair.group(2))
                labels.append((pair.group(1), value))
                pos = pair.end()
            expect(len({k for k, _ in labels}) == len(labels), f'{where}: repeated label')
            try:
                value = float(m.group('value'))
            except ValueError:
                raise TestFailure(f'{where}: value is not a number')
            key = (m.group('name'), tuple(sorted(labels)))
            expect(key not in self.samples, f'{where}: repeated sample')
            expect(m.group('name') in self.types, f'{where}: sample before its # TYPE line')
            self.samples[key] = value

    def get(self, name, **labels):
        key = (name, tuple(sorted((k, str(v)) for k, v in labels.items())))
        if key not in self.samples:
            raise TestFailure(f'metrics lack {name}{labels}')
        return self.samples[key]

    def names(self):
        return {name for name, _ in self.samples}


def get_metrics(address, timeout=10):
    """GET /metrics, parsed; also returns the text: (Metrics, text)."""
    text = get_ok(address, '/metrics', METRICS_CONTENT_TYPE, timeout)
    return Metrics(text), text


# --------------------------------------------------------------------------
# Deterministic data


class PatternStream:
    """`size` deterministic pseudo-random bytes for `seed`, unrelated between
    seeds. Made of 1 MiB windows at seeded random offsets into a 2 MiB random
    pool, so no two chunks line up and generating costs no more than memcpy."""

    CHUNK = MiB

    def __init__(self, seed, size):
        rng = random.Random(seed)
        self._pool = rng.randbytes(2 * self.CHUNK)
        self._offset_seed = rng.getrandbits(64)
        self.size = size

    def chunks(self):
        rng = random.Random(self._offset_seed)
        pool = memoryview(self._pool)
        left = self.size
        while left > 0:
            n = min(self.CHUNK, left)
            offset = rng.randrange(0, self.CHUNK + 1)
            yield pool[offset:offset + n]
            left -= n

    def sha256(self):
        h = hashlib.sha256()
        for chunk in self.chunks():
            h.update(chunk)
        return h.hexdigest()

    def send(self, sock):
        """Sends the whole stream; returns the SHA-256 hex of what was sent."""
        h = hashlib.sha256()
        for chunk in self.chunks():
            sock.sendall(chunk)
            h.update(chunk)
        return h.hexdigest()


# --------------------------------------------------------------------------
# Client-side socket helpers


def connect(address, timeout=10, source=None):
    """A connected TCP socket to 'IP:PORT' / '[IPv6]:PORT' with `timeout` on
    every operation."""
    host, port = parse_address(address)
    s = socket.socket(family_of(host), socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        if source is not None:
            s.bind((source, 0))
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


def local_address(sock):
    host, port = sock.getsockname()[:2]
    return format_address(host, port)


def recv_exact(sock, n, what='data'):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), MiB))
        if not chunk:
            raise TestFailure(f'EOF after {len(buf)} of {n} bytes of {what}')
        buf += chunk
    return bytes(buf)


def recv_line(sock, limit=4096, what='a line'):
    """Reads byte by byte up to and including '\\n' (so nothing after the line
    is consumed)."""
    buf = bytearray()
    while len(buf) < limit:
        b = sock.recv(1)
        if not b:
            raise TestFailure(f'EOF before the end of {what} (got {bytes(buf)!r})')
        buf += b
        if b == b'\n':
            return bytes(buf)
    raise TestFailure(f'{what} longer than {limit} bytes')


def recv_to_eof(sock, limit=256 * MiB):
    buf = bytearray()
    while True:
        chunk = sock.recv(MiB)
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            raise TestFailure(f'more than {limit} bytes before EOF')


def hash_to_eof(sock):
    """Reads to EOF; returns (byte count, SHA-256 hex)."""
    h = hashlib.sha256()
    buf = bytearray(256 * 1024)
    view = memoryview(buf)
    total = 0
    while True:
        n = sock.recv_into(buf)
        if n == 0:
            return total, h.hexdigest()
        h.update(view[:n])
        total += n


def hash_exact(sock, n, what='data'):
    """Reads exactly n bytes; returns their SHA-256 hex."""
    h = hashlib.sha256()
    buf = bytearray(256 * 1024)
    view = memoryview(buf)
    left = n
    while left > 0:
        got = sock.recv_into(buf, min(left, len(buf)))
        if got == 0:
            raise TestFailure(f'EOF after {n - left} of {n} bytes of {what}')
        h.update(view[:got])
        left -= got
    return h.hexdigest()


def expect_eof(sock, what='connection'):
    """The next read is a clean EOF (not data, not a reset)."""
    try:
        data = sock.recv(4096)
    except ConnectionResetError:
        raise TestFailure(f'{what}: reset where a clean EOF was expected')
    expect_eq(data, b'', f'{what}: bytes where EOF was expected')


def rst_close(sock):
    """Closes with SO_LINGER {1, 0}: the peer gets a RST, not a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    sock.close()


def read_greeting(sock, what='greeting'):
    """Reads one `hello from NAME` line (fulcrum-demo-server, greeting_holder)
    and returns NAME."""
    line = recv_line(sock, what=what).decode('utf-8', 'replace')
    prefix = 'hello from '
    expect(line.startswith(prefix) and len(line) > len(prefix) + 1, f'{what}: {line!r}')
    return line[len(prefix):-1]


def upload_and_check_echo(sock, stream, what, timeout=30):
    """Sends `stream` (a PatternStream) from a thread, half-closes, and
    hashes the echo to EOF at the same time; fails unless the echo is the
    upload exactly (byte count and SHA-256)."""
    sent = {}

    def upload():
        try:
            sent['sha'] = stream.send(sock)
            sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            sent['error'] = e
    sender = threading.Thread(target=upload, daemon=True)
    sender.start()
    count, digest = hash_to_eof(sock)
    sender.join(timeout)
    expect(not sender.is_alive(), f'{what}: upload still running after the echo ended')
    expect('error' not in sent, f'{what}: upload failed: {sent.get("error")}')
    expect_eq((count, digest), (stream.size, sent['sha']), f'{what}: echo byte count and SHA-256')


def echo_handler(conn, peer):
    """A TcpServer handler echoing every byte back until EOF."""
    while True:
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(data)


def greeted_session(address, source=None, timeout=10, what='session'):
    """One whole session with a greeting server: connect (from `source` when
    given), read the greeting, half-close, expect a clean EOF. Returns
    (NAME from the greeting, the client's own address)."""
    with connect(address, timeout=timeout, source=source) as sock:
        name = read_greeting(sock, f'{what}: greeting')
        me = local_address(sock)
        finish_session(sock, what)
    return name, me


def open_greeted(address, source=None, timeout=10, what='session'):
    """A session left open: connect, read the greeting. Returns (socket, NAME);
    the caller closes the socket."""
    sock = connect(address, timeout=timeout, source=source)
    try:
        return sock, read_greeting(sock, f'{what}: greeting')
    except BaseException:
        sock.close()
        raise


def finish_session(sock, what='session'):
    """Half-closes, expects a clean EOF (the server closes after the client's
    EOF: fulcrum-demo-server and greeting_holder do), closes the socket."""
    try:
        sock.shutdown(socket.SHUT_WR)
        expect_eof(sock, f'{what} after its half-close')
    finally:
        sock.close()


def greeting_holder(name):
    """A TcpServer handler that greets with `hello from NAME\\n` and then holds
    the connection, discarding what arrives, until the peer half-closes. The
    server's `active` counts the sessions it holds."""
    greeting = f'hello from {name}\n'.encode()

    def handler(conn, peer):
        conn.sendall(greeting)
        while conn.recv(4096):
            pass
    return handler


def listening_on(port):
    """True while some socket is in LISTEN state on this TCP port (IPv4 or
    IPv6), read from /proc/net/tcp{,6}."""
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local, state = parts[1], parts[3]
                    if state == '0A' and int(local.rsplit(':', 1)[1], 16) == port:
                        return True
        except FileNotFoundError:
            continue
    return False


def run_threads(function, args_list, timeout, what='client'):
    """Runs function(*args) for each args in its own thread, all at once.
    Returns the results in order; fails with every error if any raised, or
    if some were still running after `timeout` seconds."""
    results = [None] * len(args_list)
    errors = [None] * len(args_list)

    def body(i, args):
        try:
            results[i] = function(*args)
        except BaseException as e:
            errors[i] = f'{type(e).__name__}: {e}'

    threads = [threading.Thread(target=body, args=(i, a), name=f'{what}-{i}', daemon=True)
               for i, a in enumerate(args_list)]
    for th in threads:
        th.start()
    deadline = time.monotonic() + timeout
    for th in threads:
        th.join(max(0.0, deadline - time.monotonic()))
    hung = [i for i, th in enumerate(threads) if th.is_alive()]
    failed = [(i, e) for i, e in enumerate(errors) if e is not None]
    problems = [f'{what} {i}: {e}' for i, e in failed[:20]]
    if hung:
        problems.append(f'{len(hung)} {what}s still running after {timeout}s: {hung[:20]}')
    if problems:
        raise TestFailure(f'{len(failed)} of {len(args_list)} {what}s failed:\n' + '\n'.join(problems))
    return results


class LoadSession:
    """One session of a SessionLoad: n (1, 2, ... in start order), thread,
    start and end (time.monotonic()), server (the greeting's NAME, or None)
    and error (None when the session went through)."""

    def __init__(self, n, thread, start, end, server, error):
        self.n, self.thread, self.start, self.end = n, thread, start, end
        self.server, self.error = server, error

    def __repr__(self):
        return (f'LoadSession(#{self.n} thread {self.thread} {self.start:.3f}..{self.end:.3f} '
                f'server={self.server} error={self.error})')


def echo_session(address, n, timeout=5, clients=None):
    """A short session with a greeting echo server: read the greeting, send a
    line, read its echo, half-close, expect a clean EOF. Returns (NAME, the
    client's own address); the address is also added to the set `clients`
    (when given) as soon as it is connected."""
    with connect(address, timeout=timeout) as sock:
        me = local_address(sock)
        if clients is not None:
            clients.add(me)
        name = read_greeting(sock, f'session {n}: greeting')
        line = f'load session {n}\n'.encode()
        sock.sendall(line)
        expect_eq(recv_exact(sock, len(line), 'echo'), line, f'session {n}: echo')
        sock.shutdown(socket.SHUT_WR)
        expect_eof(sock, f'session {n} after its half-close')
    return name, me


class EchoStream(threading.Thread):
    """A long session streaming both ways: chunks of seeded random sizes
    (1 to max_chunk bytes), each read back from an echo server, with a short
    random pause between them, until `stop` is set; then a half-close and a
    clean EOF expected. `sent` and `received` hash both directions, `bytes`
    counts each way, `local` is the client's address, `ready` is set once it
    is connected (and greeted, with greeting=True: a demo server's line
    first). An exception ends it and stays in `error`."""

    def __init__(self, address, seed, stop, greeting=False, max_chunk=24 * 1024):
        super().__init__(daemon=True, name=f'stream-{seed}')
        self.address = address
        self.random = random.Random(seed)
        self.stop = stop
        self.greeting = greeting
        self.max_chunk = max_chunk
        self.sent = hashlib.sha256()
        self.received = hashlib.sha256()
        self.bytes = 0
        self.error = None
        self.ready = threading.Event()
        self.local = None

    def run(self):
        try:
            with connect(self.address, timeout=30) as sock:
                self.local = sock.getsockname()
                if self.greeting:
                    read_greeting(sock, f'{self.name}: greeting')
                self.ready.set()
                while not self.stop.is_set():
                    chunk = self.random.randbytes(self.random.randint(1, self.max_chunk))
                    sock.sendall(chunk)
                    self.sent.update(chunk)
                    self.received.update(recv_exact(sock, len(chunk), f'{self.name}: echo'))
                    self.bytes += len(chunk)
                    self.stop.wait(self.random.uniform(0.002, 0.03))
                sock.shutdown(socket.SHUT_WR)
                if sock.recv(1):
                    raise AssertionError('bytes after the echo of everything sent')
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = f'{type(e).__name__}: {e}'
            self.ready.set()


class SessionLoad:
    """Short echo sessions (echo_session) against `address`, one after
    another in each of `threads` client threads, `gap` seconds apart, until
    stop() or `max_sessions` in all. Every session is kept in `sessions` (a
    LoadSession), failures too, and its client address in `clients`. pause() waits until no session is in flight
    and holds new ones back until resume(), so that a server can be killed
    with no session of the load on it."""

    def __init__(self, address, threads=2, max_sessions=4000, gap=0.005, timeout=5, what='load'):
        self.address = address
        self.max_sessions = max_sessions
        self.gap = gap
        self.timeout = timeout
        self.cond = threading.Condition()
        self.sessions = []
        self.clients = set()
        self.started = 0
        self.in_flight = 0
        self.paused = False
        self.stopping = False
        self._threads = [threading.Thread(target=self._run, args=(k,), name=f'{what}-{k}', daemon=True)
                         for k in range(threads)]

    def start(self):
        for th in self._threads:
            th.start()
        return self

    def _run(self, k):
        while True:
            with self.cond:
                while self.paused and not self.stopping:
                    self.cond.wait(0.1)
                if self.stopping or self.started >= self.max_sessions:
                    return
                self.started += 1
                n = self.started
                self.in_flight += 1
            start = time.monotonic()
            server, error, me = None, None, set()
            try:
                server, _ = echo_session(self.address, n, self.timeout, me)
            except Exception as e:
                error = f'{type(e).__name__}: {e}'
            end = time.monotonic()
            with self.cond:
                self.sessions.append(LoadSession(n, k, start, end, server, error))
                self.clients |= me
                self.in_flight -= 1
                self.cond.notify_all()
            time.sleep(self.gap)

    def pause(self, timeout=10):
        with self.cond:
            self.paused = True
            deadline = time.monotonic() + timeout
            while self.in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TestFailure(f'{self.in_flight} load sessions still in flight {timeout:g}s after pause()')
                self.cond.wait(left)

    def resume(self):
        with self.cond:
            self.paused = False
            self.cond.notify_all()

    def snapshot(self):
        with self.cond:
            return list(self.sessions)

    def stop(self, timeout=15):
        """Stops the threads (each finishes its session); fails if the load ran
        out of sessions before (so the phases were not covered) or a thread
        hangs. Returns every session in start order."""
        with self.cond:
            exhausted = self.started >= self.max_sessions
            self.stopping = True
            self.cond.notify_all()
        deadline = time.monotonic() + timeout
        for th in self._threads:
            th.join(max(0.0, deadline - time.monotonic()))
        hung = [th.name for th in self._threads if th.is_alive()]
        expect(not hung, f'load threads still running {timeout:g}s after stop(): {hung}')
        expect(not exhausted, f'the load ran out of sessions ({self.max_sessions}) before the test ended')
        return sorted(self.sessions, key=lambda s: s.n)


def log_stream(message):
    """Progress lines on stdout (meson keeps them in the test log)."""
    print(f'[{time.strftime("%H:%M:%S")}] {message}', flush=True)


def arm_deadline(seconds, ctx):
    """SIGALRM raises TestTimeout in the main thread after `seconds`; a last
    resort timer kills every process of `ctx` and exits 1 if cleanup itself
    hangs 30 s later."""
    def on_alarm(signum, frame):
        raise TestTimeout(f'test ran past its deadline of {seconds}s')
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)

    def last_resort():
        print(f'FAIL {ctx.name}: hung past deadline + 30s; killing its processes', flush=True)
        kill_processes(ctx._processes)
        os._exit(1)
    timer = threading.Timer(seconds + 30, last_resort)
    timer.daemon = True
    timer.start()

