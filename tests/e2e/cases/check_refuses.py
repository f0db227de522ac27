"""`fulcrum --check` refuses what start-up refuses, with the same lines.

For each case the file passes the loader, and fails a check start-up makes
before it binds anything. `--check` exits 1 with exactly the error lines
(FILE:LINE:COL of the key concerned, then the message), and fulcrum started
on the same file exits 3 with one `cannot start error="..."` log line per
error, the same texts:
  - `stats.admin_token_file` names a file that does not exist;
  - it names a directory;
  - run as nobody (setpriv, no capability; skipped when not root),
    `global.user: root`: `not running as root, cannot switch to user
    "root"`;
  - both a missing token file and, as nobody, `global.user: root`: both
    errors, in file order;
  - under `prlimit --nofile=32:32`, an open-file limit too small for even a
    few sessions (the file's name, no position: the limit is not in it).
A file without those problems is `configuration ok` and starts.
"""

import os
import subprocess

from harness import binary, expect_eq, free_address, key_position

DEADLINE = 60
NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']


def refused_alike(t, name, config, errors_at, prefix=()):
    """--check and start on `config`: the errors are `errors_at` [(key,
    message)] at their keys' positions (key None: the file's name only)."""
    d = t.daemon(config, name=name, start=False, prefix=list(prefix))
    errors = [f'{key_position(d.config_path, key) if key else d.config_path}: {message}' for key, message in errors_at]
    check = subprocess.run([*prefix, binary('FULCRUM'), '--check', '-c', d.config_path], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=20)
    expect_eq((check.returncode, check.stdout, check.stderr), (1, '', ''.join(e + '\n' for e in errors)),
              f'{name}: --check exit, stdout, stderr')
    d.start(wait_ready=False)
    expect_eq(d.wait_exit(20), 3, f'{name}: exit code of the start')
    expect_eq([(r.message, r.fields) for r in d.logs(strict=True) if r.level == 'error'],
              [('cannot start', {'error': e}) for e in errors], f'{name}: error lines of the start')


def run(t):
    demo = t.demo_server('a')

    def config(token_file=None, user=None):
        stats = {'listen': free_address()}
        if token_file:
            stats['admin_token_file'] = token_file
        config = {'global': {'workers': 1}, 'stats': stats,
                  'services': [{'name': 'web', 'listen': free_address(),
                                'servers': [{'name': 'a', 'address': demo.address}]}]}
        if user:
            config['global']['user'] = user
        return config

    missing = t.path('missing.token')
    refused_alike(t, 'missing-token', config(token_file=missing),
                  [('admin_token_file', f'cannot read admin_token_file {missing}: No such file or directory')])
    refused_alike(t, 'directory-token', config(token_file=t.tmpdir),
                  [('admin_token_file', f'cannot read admin_token_file {t.tmpdir}: Is a directory')])

    if os.geteuid() == 0:
        os.chmod(t.tmpdir, 0o755)  # nobody reads its configuration file there
        refused_alike(t, 'user-as-nobody', config(user='root'),
                      [('user', 'not running as root, cannot switch to user "root"')], prefix=NOBODY)
        refused_alike(t, 'both', config(token_file=missing, user='root'),
                      [('user', 'not running as root, cannot switch to user "root"'),
                       ('admin_token_file', f'cannot read admin_token_file {missing}: No such file or directory')],
                      prefix=NOBODY)

    # 1 listener + the stats port + its 16 clients + a margin of 8, and
    # stdio: 29 kept, so 32 leaves 3, fewer than the 4 a session needs.
    refused_alike(t, 'open-file-limit', config(),
                  [(None, 'the open-file limit (32) is too small: this configuration keeps 29 descriptors for '
                          'itself (listeners, health checks, the stats port) and needs at least 4 more for '
                          'sessions; raise LimitNOFILE= (systemd) or ulimit -n')],
                  prefix=['prlimit', '--nofile=32:32'])

    good = t.daemon(config(token_file=t.token_file('s3cret\n')), name='good', start=False)
    check = subprocess.run([binary('FULCRUM'), '--check', '-c', good.config_path], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=20)
    expect_eq((check.returncode, check.stdout, check.stderr), (0, 'configuration ok\n', ''), 'good: --check')
    good.start()
    good.stop()
