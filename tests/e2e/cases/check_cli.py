"""The command line: --check, --version, --help, usage errors, exit codes.

- --check on a valid file: stdout exactly `configuration ok\\n`, exit 0, and
  no socket touched (it passes even while the listen port is taken).
- --check on a file with an unknown key and a bad duration: exactly those
  two errors as FILE:LINE:COL: message on stderr, exit 1.
- a missing file: exit 1, with or without --check.
- --version exit 0 `fulcrum X`, --help exit 0 and names SIGHUP, SIGTERM
  and SIGINT; --bogus and a -c without FILE exit 2 with exactly the mistake
  and `Try 'fulcrum --help' for the usage.` on stderr.
- a listen address already in use: exit 3, and the log names the address.
"""

import re
import socket
import subprocess

from harness import TestFailure, binary, expect, expect_eq, free_port, parse_log_line, write_config

DEADLINE = 60

VALID = '''\
global:
  workers: 2
services:
  - name: web
    listen: "127.0.0.1:{port}"
    servers:
      - address: "127.0.0.1:{server_port}"
'''

# Line 3 col 3: an unknown key. Line 8 col 13: a duration without a valid unit.
TWO_ERRORS = '''\
global:
  workers: 2
  frobnicate: 3
services:
  - name: web
    listen: "127.0.0.1:{port}"
    timeouts:
      idle: 12parsecs
    servers:
      - address: "127.0.0.1:{server_port}"
'''


def fulcrum(*args, timeout=10):
    """Runs the binary to completion; (exit code, stdout, stderr)."""
    result = subprocess.run([binary('FULCRUM'), *args], stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=timeout)
    return result.returncode, result.stdout.decode(errors='replace'), result.stderr.decode(errors='replace')


def occupied_port():
    """A listening socket of our own on a free 127.0.0.1 port (no SO_REUSEPORT)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(('127.0.0.1', free_port()))
    sock.listen(8)
    return sock, sock.getsockname()[1]


def run(t):
    holder, port = occupied_port()
    with holder:
        server_port = free_port()
        valid = write_config(t.path('valid.yaml'), VALID.format(port=port, server_port=server_port))
        code, out, err = fulcrum('--check', '-c', valid)
        expect_eq((code, out, err), (0, 'configuration ok\n', ''), '--check on a valid file (exit, stdout, stderr)')

        broken = write_config(t.path('broken.yaml'), TWO_ERRORS.format(port=port, server_port=server_port))
        code, out, err = fulcrum('--check', '-c', broken)
        expect_eq(code, 1, f'--check exit code on a file with two errors (stderr: {err!r})')
        expect_eq(out, '', '--check stdout on a file with two errors')
        errors = []
        for line in err.splitlines():
            m = re.fullmatch(r'(.+):(\d+):(\d+): (.+)', line)
            expect(m is not None, f'--check error not in FILE:LINE:COL: message form: {line!r}')
            errors.append((m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)))
        expect_eq([e[:3] for e in sorted(errors)], [(broken, 3, 3), (broken, 8, 13)],
                  f'(file, line, col) of the errors in {err!r}')
        unknown, duration = sorted(errors)
        expect('frobnicate' in unknown[3], f'the unknown-key error does not name the key: {unknown[3]!r}')
        expect('12parsecs' in duration[3], f'the duration error does not quote the value: {duration[3]!r}')

        missing = t.path('no-such-file.yaml')
        code, out, err = fulcrum('--check', '-c', missing)
        expect_eq(code, 1, '--check exit code on a missing file')
        expect(missing in err and out == '', f'--check on a missing file: stdout {out!r}, stderr {err!r}')
        code, out, err = fulcrum('-c', missing)
        expect_eq(code, 1, f'exit code when starting on a missing file (stderr: {err!r})')

        code, out, err = fulcrum('--version')
        expect_eq(code, 0, '--version exit code')
        expect(re.fullmatch(r'fulcrum \d+\.\d+\.\d+\S*\n', out) is not None, f'--version output {out!r}')

        code, out, err = fulcrum('--help')
        expect_eq(code, 0, '--help exit code')
        expect('--check' in out and '-c' in out, f'--help output does not describe -c and --check: {out!r}')
        for signal_name in ('SIGHUP', 'SIGTERM', 'SIGINT'):
            expect(signal_name in out, f'--help does not mention {signal_name}: {out!r}')

        # A usage error: the mistake and where the usage is, not the usage itself.
        expect_eq(fulcrum('--bogus'), (2, '', "fulcrum: unknown argument '--bogus'\nTry 'fulcrum --help' for the usage.\n"),
                  '--bogus: exit, stdout, stderr')
        expect_eq(fulcrum('-c'), (2, '', "fulcrum: -c needs a FILE\nTry 'fulcrum --help' for the usage.\n"),
                  '-c without a file: exit, stdout, stderr')

        # Starting for real while our socket holds the port: exit 3.
        code, out, err = fulcrum('-c', valid, timeout=15)
        expect_eq(code, 3, f'exit code when the listen address is in use (stderr: {err!r})')
        address = f'address=127.0.0.1:{port}'
        lines = [line for line in err.splitlines() if address in line]
        expect(lines, f'no log line with {address} in: {err!r}')
        expect(any('Address already in use' in line for line in lines),
               f'the log line with {address} does not give the error: {lines}')
        for line in lines:
            try:
                parse_log_line(line)
            except ValueError as e:
                raise TestFailure(f'log line breaks the log format ({e}): {line!r}')
