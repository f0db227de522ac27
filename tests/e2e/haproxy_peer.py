"""HAProxy beside fulcrum, for the tests that compare their health checks.

HAProxy(t, PROXIES) writes haproxy.cfg in the test's directory: a `global`
section with an admin stats socket there, `defaults` in mode tcp, then the
`listen` sections PROXIES (text). It runs `haproxy -f FILE -db` (in the
foreground, never a daemon, so the test's context kills it by its PID) and
waits until the stats socket answers. servers(PROXY) reads `show stat`:
each server's row by name, with `state` added in fulcrum's words.
"""

import csv
import socket
import subprocess

from harness import TestFailure, connect, expect_eq, require_program, wait_until

# `show stat` status words and the fulcrum state they match. HAProxy adds
# detail after the word: `UP 1/2` (up, one failed check towards fall),
# `DOWN 1/2` (down, one passed check towards rise), `DOWN (agent)`,
# `DRAIN (agent)`; `no check` is a server without health checks, in
# service like fulcrum's `up`.
STATES = {'UP': 'up', 'DOWN': 'down', 'DRAIN': 'drain', 'MAINT': 'maint', 'no': 'up'}


class HAProxy:
    def __init__(self, t, proxies, name='haproxy'):
        self.name = name
        self.socket_path = t.path(f'{name}.sock')
        self.config_path = t.path(f'{name}.cfg')
        self.log_path = t.path(f'{name}.log')
        with open(self.config_path, 'w') as f:
            f.write('# Written by the test (tests/e2e/haproxy_peer.py).\n'
                    'global\n'
                    f'    stats socket {self.socket_path} mode 600 level admin\n'
                    'defaults\n'
                    '    mode tcp\n'
                    '    timeout connect 1s\n'
                    '    timeout client 30s\n'
                    '    timeout server 30s\n'
                    + proxies)
        haproxy = require_program('haproxy', 'haproxy')
        with open(self.log_path, 'wb') as out:
            self.proc = subprocess.Popen([haproxy, '-f', self.config_path, '-db'], stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT)
        t.register_process(self.proc, name)

        def answers():
            if self.proc.poll() is not None:
                raise TestFailure(f'{name} exited with {self.proc.returncode}: {self.log()}')
            try:
                return 'Version:' in self.command('show info')
            except OSError:
                return False
        wait_until(answers, 10, f'{name}\'s stats socket {self.socket_path}', interval=0.05)

    def log(self):
        with open(self.log_path, 'rb') as f:
            return f.read().decode('utf-8', 'replace')

    def command(self, text):
        """One command on the stats socket; its whole answer (HAProxy closes
        the connection after it)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(self.socket_path)
            s.sendall(text.encode() + b'\n')
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    return b''.join(chunks).decode('utf-8', 'replace')
                chunks.append(data)

    def servers(self, proxy):
        """`show stat` of `proxy`: {server name: its row (column name: text)},
        each row with `state` added (STATES)."""
        lines = self.command('show stat').splitlines()
        if not lines or not lines[0].startswith('# '):
            raise TestFailure(f'{self.name}: `show stat` answered {lines[:3]!r}')
        header = lines[0][2:].split(',')
        out = {}
        for values in csv.reader(line for line in lines[1:] if line):
            row = dict(zip(header, values))
            if row['pxname'] != proxy or row['svname'] in ('FRONTEND', 'BACKEND'):
                continue
            word = row['status'].split(' ', 1)[0]
            if word not in STATES:
                raise TestFailure(f'{self.name}: unknown status {row["status"]!r} of {proxy}/{row["svname"]}')
            row['state'] = STATES[word]
            out[row['svname']] = row
        return out

    def states(self, proxy):
        return {name: row['state'] for name, row in self.servers(proxy).items()}


def haproxy_duration(seconds):
    """A duration in HAProxy's syntax (milliseconds)."""
    return f'{round(seconds * 1000)}ms'


def closed_without_a_byte(address, what):
    """A session to `address` (fulcrum or HAProxy whose only server is out)
    gets no byte and is closed (EOF or reset)."""
    with connect(address, timeout=5) as sock:
        try:
            data = sock.recv(4096)
        except ConnectionResetError:
            data = b''
    expect_eq(data, b'', f'{what}: bytes from a balancer whose only server is out')
