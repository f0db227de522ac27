"""The admin token file is checked the same way by fulcrum and fulcrumctl
(issue 15, 2.8): at most 4 KiB, no control characters in the token (after
the surrounding whitespace), and a warning when group or others may read it.

fulcrum, each time with stats and `admin_token_file`, service `web`
(POS is `CONFIG:LINE:COL` of the admin_token_file key):
  - a 4097-byte file (mode 0600): `--check` exits 1 with exactly `POS:
    admin_token_file FILE is larger than 4 KiB`; started, exit 3 with the
    one error line `cannot start error="POS: admin_token_file FILE is
    larger than 4 KiB"`;
  - a token with a control character inside: the same with `POS:
    admin_token_file FILE: the token holds control characters (a line
    break inside it?)`;
  - a token of 4096 bytes (the largest file) with mode 0640: `--check`
    says `configuration ok` and warns `warning: POS: admin_token_file FILE
    is readable by group or others (mode 0640): chmod 600 it`; the daemon
    starts, logs exactly that one warning (`configuration warning
    warning="POS: ..."`), and that token is accepted by the admin API (a
    reload: 200). The file then grows to 4097 bytes: the next reload is
    refused (422 with the same error) and the old token stays in force.
fulcrumctl against that daemon (its token in a file of mode 0600):
  - `reload` with the 4097-byte file: exit 1, `fulcrumctl: token file FILE
    is larger than 4 KiB`;
  - `reload` with the token in a file of mode 0604: exit 0 and the one
    stderr line `fulcrumctl: warning: token file FILE is readable by group
    or others (mode 0604)`;
  - with mode 0600: exit 0, nothing on stderr.
"""

import json
import os
import subprocess

from harness import binary, expect_eq, free_address, http_request

DEADLINE = 60
TOKEN = 't' * 4096


def write_file(path, content, mode):
    with open(path, 'w') as f:
        f.write(content)
    os.chmod(path, mode)
    return path


def config(t, token_file):
    return {'global': {'workers': 1},
            'stats': {'listen': free_address(), 'admin_token_file': token_file},
            'services': [{'name': 'web', 'listen': free_address(),
                          'servers': [{'name': 'a', 'address': t.demo_server('a', label=f'a-{len(t.daemons)}').address}]}]}


def token_key(path):
    """`FILE:LINE:COL` of admin_token_file in the configuration file."""
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if 'admin_token_file:' in line:
                return f'{path}:{number}:{line.index("admin_token_file:") + 1}'
    raise AssertionError(f'no admin_token_file in {path}')


def check(path):
    result = subprocess.run([binary('FULCRUM'), '--check', '-c', path], stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=30)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def refused_at_start(t, name, token_file, error):
    d = t.daemon(config(t, token_file), name=name, start=False)
    expect_eq(check(d.config_path), (1, '', f'{token_key(d.config_path)}: {error}\n'), f'{name}: --check')
    d.start(wait_ready=False)
    expect_eq(d.wait_exit(20), 3, f'{name}: exit code')
    expect_eq([r.fields for r in d.logs() if r.level == 'error'],
              [{'error': f'{token_key(d.config_path)}: {error}'}], f'{name}: error lines')


def reload(stats, token):
    return http_request(stats, 'POST', '/api/v1/reload', body=b'', headers={'Authorization': f'Bearer {token}'})


def ctl(stats, token_file):
    result = subprocess.run([binary('FULCRUMCTL'), '--url', f'http://{stats}', '--token-file', token_file, 'reload'],
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    return result.returncode, result.stderr.decode('utf-8', 'replace')


def run(t):
    oversized = write_file(t.path('oversized.token'), 'x' * 4097, 0o600)
    refused_at_start(t, 'fulcrum-oversized', oversized,
                     f'admin_token_file {oversized} is larger than 4 KiB')
    control = write_file(t.path('control.token'), '\n abc\x01def \n', 0o600)
    refused_at_start(t, 'fulcrum-control', control,
                     f'admin_token_file {control}: the token holds control characters (a line break inside it?)')

    token_file = write_file(t.path('admin.token'), TOKEN, 0o640)
    d = t.daemon(config(t, token_file), start=False)
    loose_warning = (f'{token_key(d.config_path)}: admin_token_file {token_file} is readable by group or others '
                     f'(mode 0640): chmod 600 it')
    expect_eq(check(d.config_path), (0, 'configuration ok\n', f'warning: {loose_warning}\n'),
              '--check with a token file of mode 0640')
    d.start()
    stats = d.config['stats']['listen']
    expect_eq([(r.message, r.fields) for r in d.logs() if r.level in ('warn', 'error')],
              [('configuration warning', {'warning': loose_warning})],
              'warnings at start with a token file of mode 0640')
    expect_eq(reload(stats, TOKEN).status, 200, 'reload with the 4096-byte token')
    write_file(token_file, TOKEN + 'x', 0o600)
    reply = reload(stats, TOKEN)
    too_large = f'{token_key(d.config_path)}: admin_token_file {token_file} is larger than 4 KiB'
    expect_eq((reply.status, json.loads(reply.body)),
              (422, {'ok': False, 'generation': 2, 'error': too_large, 'errors': [too_large], 'warnings': []}),
              'reload with a 4097-byte token file')
    expect_eq(reload(stats, TOKEN).status, 422, 'the old token after the refused reload')

    own = write_file(t.path('ctl.token'), TOKEN, 0o600)
    write_file(token_file, TOKEN, 0o600)
    expect_eq(ctl(stats, oversized), (1, f'fulcrumctl: token file {oversized} is larger than 4 KiB\n'),
              'fulcrumctl with a 4097-byte token file: exit, stderr')
    loose = write_file(t.path('loose.token'), TOKEN, 0o604)
    expect_eq(ctl(stats, loose),
              (0, f'fulcrumctl: warning: token file {loose} is readable by group or others (mode 0604)\n'),
              'fulcrumctl with a token file of mode 0604: exit, stderr')
    expect_eq(ctl(stats, own), (0, ''), 'fulcrumctl with a token file of mode 0600: exit, stderr')
    d.stop()
