"""fulcrumctl shows every error and warning of a reload, in both forms, and
the admin API's 404 names the unknown name and the nearest known one.

One fulcrum (one worker, stats with an admin token), service `web` over
demo servers `alpha` and `beta`:
  - the file rewritten with 5 errors: `fulcrumctl reload` exits 1 with
    `fulcrumctl: reload failed: 5 errors (the running configuration stays,
    generation 1)` and then one `fulcrumctl: error: FILE:LINE:COL: message`
    line for each, exactly the lines `fulcrum --check` prints for the file;
    `--json reload` exits 1 and prints the daemon's JSON, whose `errors`
    are those 5 and `error` the first;
  - the file fixed but with `global.workers: 3` and a stats.listen of its
    own: `fulcrumctl reload` exits 0 and prints `reloaded: configuration
    generation 2` then `warning: FILE:2:3: global.workers changes need a
    restart; 1 worker keeps running, not 3` and the stats.listen warning;
    `--json reload` (generation 3) holds the same two in `warnings`;
  - `drain web alpah`: exit 1, `fulcrumctl: no such server "alpah" in
    service "web"; did you mean "alpha"? (404)`; `drain wbe alpha`: `no such
    service "wbe"; did you mean "web"? (404)`; `drain web gamma`: no
    suggestion.
"""

import json
import subprocess

from harness import binary, expect_eq, free_address

DEADLINE = 60
TOKEN = 'ctl-reload-report-token'

BROKEN = '''\
global:
  workers: 1
  frobnicate: 3
stats:
  listen: "{stats}"
  admin_token_file: {token_file}
services:
  - name: web
    listen: "127.0.0.1:190130"
    scheduler: fastest
    timeouts:
      idle: 1h30m
    servers:
      - {{name: alpha, address: "{alpha}", weight: 2000}}
      - {{name: beta, address: "{beta}"}}
'''

CHANGED = '''\
global:
  workers: 3
stats:
  listen: "{other_stats}"
  admin_token_file: {token_file}
services:
  - name: web
    listen: "{listen}"
    servers:
      - {{name: alpha, address: "{alpha}"}}
      - {{name: beta, address: "{beta}"}}
'''


def run_binary(*args):
    result = subprocess.run([binary(args[0]), *args[1:]], stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=30)
    return result.returncode, result.stdout, result.stderr


def run(t):
    alpha, beta = t.demo_server('alpha'), t.demo_server('beta')
    token_file = t.token_file(TOKEN + '\n')
    stats, listen = free_address(), free_address()
    d = t.daemon({'global': {'workers': 1},
                  'stats': {'listen': stats, 'admin_token_file': token_file},
                  'services': [{'name': 'web', 'listen': listen,
                                'servers': [{'name': 'alpha', 'address': alpha.address},
                                            {'name': 'beta', 'address': beta.address}]}]})
    url = f'http://{stats}'

    def ctl(*args):
        return run_binary('FULCRUMCTL', '--url', url, '--token-file', token_file, *args)

    # --- five errors
    path = d.config_path
    broken = BROKEN.format(stats=stats, token_file=token_file, alpha=alpha.address, beta=beta.address)
    with open(path, 'w') as f:
        f.write(broken)
    weight_column = broken.splitlines()[13].index('2000') + 1
    errors = [f'{path}:3:3: unknown key "frobnicate" in global',
              f'{path}:9:13: invalid port "190130", expected 1 to 65535',
              f'{path}:10:16: expected one of rr, wrr, lc, wlc, maglev, p2c, got "fastest"',
              f'{path}:12:13: invalid duration "1h30m": compound durations are not supported, use 90m',
              f'{path}:14:{weight_column}: expected an integer from 0 to 1000, got "2000"']
    expect_eq(run_binary('FULCRUM', '--check', '-c', path), (1, '', ''.join(e + '\n' for e in errors)),
              '--check of the file with five errors')
    expect_eq(ctl('reload'),
              (1, '', 'fulcrumctl: reload failed: 5 errors (the running configuration stays, generation 1)\n' +
               ''.join(f'fulcrumctl: error: {e}\n' for e in errors)),
              'reload of the file with five errors: exit, stdout, stderr')
    code, out, err = ctl('--json', 'reload')
    expect_eq((code, json.loads(out), err),
              (1, {'ok': False, 'generation': 1, 'error': errors[0], 'errors': errors, 'warnings': []}, ''),
              '--json reload of the file with five errors: exit, JSON, stderr')

    # --- what needs a restart: applied, with warnings
    other_stats = free_address()
    with open(path, 'w') as f:
        f.write(CHANGED.format(other_stats=other_stats, token_file=token_file, listen=listen,
                               alpha=alpha.address, beta=beta.address))
    warnings = [f'{path}:2:3: global.workers changes need a restart; 1 worker keeps running, not 3',
                f'{path}:4:3: stats.listen changes need a restart; the stats endpoint stays at {stats}']
    expect_eq(run_binary('FULCRUM', '--check', '-c', path), (0, 'configuration ok\n', ''),
              '--check of the file changing workers and stats.listen')
    expect_eq(ctl('reload'),
              (0, 'reloaded: configuration generation 2\n' + ''.join(f'warning: {w}\n' for w in warnings), ''),
              'reload changing workers and stats.listen: exit, stdout, stderr')
    code, out, err = ctl('--json', 'reload')
    expect_eq((code, json.loads(out), err),
              (0, {'ok': True, 'generation': 3, 'errors': [], 'warnings': warnings}, ''),
              '--json reload changing workers and stats.listen: exit, JSON, stderr')

    # --- unknown names: which one, and the nearest
    expect_eq(ctl('drain', 'web', 'alpah'),
              (1, '', 'fulcrumctl: no such server "alpah" in service "web"; did you mean "alpha"? (404)\n'),
              'drain of a mistyped server')
    expect_eq(ctl('drain', 'wbe', 'alpha'),
              (1, '', 'fulcrumctl: no such service "wbe"; did you mean "web"? (404)\n'),
              'drain in a mistyped service')
    expect_eq(ctl('drain', 'web', 'gamma'), (1, '', 'fulcrumctl: no such server "gamma" in service "web" (404)\n'),
              'drain of a server with no near name')
    d.stop()
