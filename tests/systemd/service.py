"""What every test of tests/systemd gets: ServiceTest, for fulcrum.service
in a container booted by setup() with the build installed, the fulcrum user
created, the demo servers answering and the test's threads in the
container's network (see container.py).
"""

import re

import harness
from harness import expect, expect_eq, to_yaml
import container

UNIT = 'fulcrum.service'
LISTEN = '127.0.0.1:8080'


class ServiceTest:
    """What a test gets: the booted container `c` and fulcrum's unit as
    installed (unit_path, config_path, the unit's settings)."""

    def __init__(self, c, unit_path):
        self.c = c
        self.unit_path = unit_path
        with open(c.path(unit_path)) as f:
            self.unit_text = f.read()
        self.settings = {}
        for line in self.unit_text.splitlines():
            if '=' in line and not line.startswith('#'):
                key, value = line.split('=', 1)
                self.settings.setdefault(key.strip(), []).append(value.strip())
        m = re.fullmatch(r'(\S+) -c (\S+)', self.settings['ExecStart'][0])
        expect(m is not None, f'ExecStart is not `FULCRUM -c FILE`: {self.settings["ExecStart"]}')
        self.fulcrum_path, self.config_path = m.group(1), m.group(2)

    @staticmethod
    def config(servers=container.DEMO_PORTS, shutdown_timeout='10s'):
        """A configuration dict: one rr service on LISTEN over the demo servers."""
        return {
            'global': {'workers': 2, 'shutdown_timeout': shutdown_timeout},
            'services': [{'name': 'web', 'listen': LISTEN, 'scheduler': 'rr',
                          'servers': [{'address': f'127.0.0.1:{port}', 'name': str(port)} for port in servers]}],
        }

    def write_config(self, config):
        """The configuration file as docs/systemd.md installs it: 0640, group fulcrum."""
        text = config if isinstance(config, str) else to_yaml(config) + '\n'
        container.write_file(self.c, self.config_path, text, mode=0o640, group='fulcrum')

    def start(self, config=None):
        """Writes `config` (default: config()) and `systemctl start`s fulcrum."""
        self.write_config(config or self.config())
        self.c.systemctl('start', UNIT, timeout=120)

    def state(self):
        return self.c.show(UNIT, 'ActiveState', 'SubState', 'Result', 'MainPID', 'NRestarts', 'StatusText',
                           'ExecMainCode', 'ExecMainStatus')

    def journal_messages(self, identifier=None):
        return [m for ident, m in self.c.journal(UNIT) if identifier is None or ident == identifier]

    def log_problems(self):
        """What is wrong with the lines the fulcrum daemon wrote to the
        journal: each must be logfmt with a msg, level and fields of
        docs/operations.md's log table (harness.log_line_problems), and its
        PRIORITY the one of its level, which journald took from the `<N>`
        prefix fulcrum writes under it. The daemon's lines are those of a
        process whose _CMDLINE lacks `--check`: the `--check` runs of
        ExecStartPre and ExecReload print the command line's output, and
        exit too soon for journald to always record their _CMDLINE, so a
        process is told apart by the _CMDLINE of any of its lines."""
        entries = self.c.journal(UNIT, ('SYSLOG_IDENTIFIER', 'MESSAGE', 'PRIORITY', '_PID', '_CMDLINE'))
        daemons = {pid for ident, _, _, pid, cmdline in entries
                   if ident == 'fulcrum' and cmdline and '--check' not in cmdline.split()}
        lines = [(message, priority) for ident, message, priority, pid, _ in entries
                 if ident == 'fulcrum' and pid in daemons]
        if not lines:
            return ['no line of the fulcrum daemon in the journal']
        problems = []
        for message, priority in lines:
            try:
                level = harness.parse_log_line(message).level
            except ValueError:
                continue  # log_line_problems names it
            if priority != str(harness.SYSLOG_PRIORITY[level]):
                problems.append(f'journal PRIORITY={priority} for a {level} line: {message[:300]!r}')
        text = ''.join(f'{message}\n' for message, _ in lines)
        return harness.log_line_problems(text, 'fulcrum (journal)') + problems

def log_message(text):
    """The msg of a fulcrum log line as the journal keeps it (journald took
    its `<N>` prefix off), or None for other text (`fulcrum --check`'s)."""
    try:
        return harness.parse_log_line(text).message
    except ValueError:
        return None


def setup(c, build_root, meson, demo_server):
    """Installs the build, boots, and readies what every test needs."""
    unit_path = c.install(meson, build_root, demo_server)
    c.boot()
    t = ServiceTest(c, unit_path)
    # The documented install steps (docs/systemd.md): the user from
    # sysusers.d. (sysinit's systemd-sysusers.service has normally made it
    # already; running it again is harmless.)
    c.run(['systemd-sysusers'])
    missing = c.run(['ldd', t.fulcrum_path, container.DEMO_DIR + '/fulcrum-demo-server']).stdout
    expect('not found' not in missing, f'libraries missing in the container:\n{missing}')
    expect_eq(c.show(UNIT, 'FragmentPath')['FragmentPath'], unit_path, 'the unit systemd loaded')
    c.enter_network()
    for port in container.DEMO_PORTS:
        harness.wait_until(lambda: _greets(port), 30, f'the demo server on port {port}', interval=0.05)
    return t


def _greets(port):
    try:
        with harness.connect(f'127.0.0.1:{port}', timeout=5) as sock:
            return harness.read_greeting(sock) == str(port)
    except OSError:
        return False
