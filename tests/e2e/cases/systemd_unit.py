"""systemd/fulcrum.service as meson installs it: `systemd-analyze verify` is
clean, `systemd-analyze security --offline=yes` rates it 2.0 or lower, it
carries the settings operations rely on (Type=notify, ExecStartPre --check,
ExecReload, WatchdogSec, TimeoutStopSec above the default shutdown_timeout,
LimitNOFILE, the fulcrum user, only CAP_NET_BIND_SERVICE), and the sysusers
file parses. tests/systemd runs it under a real systemd.
"""

import os
import re
import shutil
import subprocess

from harness import TestSkip, binary, expect, expect_eq, log_stream

DEADLINE = 60
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, '..', '..', '..'))


def settings(unit_text):
    out = {}
    for line in unit_text.splitlines():
        if '=' in line and not line.startswith('#'):
            key, value = line.split('=', 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def run(t):
    if shutil.which('systemd-analyze') is None:
        if os.environ.get('CI', '') not in ('', '0', 'false'):
            raise AssertionError('systemd-analyze is missing (package systemd)')
        raise TestSkip('systemd-analyze is missing')
    fulcrum = os.path.abspath(binary('FULCRUM'))
    built = os.path.join(os.path.dirname(fulcrum), 'fulcrum.service')
    expect(os.path.exists(built), f'meson did not generate {built}')
    with open(built) as f:
        text = f.read()
    # Point the unit at the binary just built, so that verify can find it.
    unit = t.path('fulcrum.service')
    with open(unit, 'w') as f:
        f.write(re.sub(r'/\S*/sbin/fulcrum', fulcrum, text))

    verify = subprocess.run(['systemd-analyze', 'verify', unit], capture_output=True, text=True, timeout=30)
    expect_eq((verify.returncode, verify.stdout + verify.stderr), (0, ''), 'systemd-analyze verify')

    security = subprocess.run(['systemd-analyze', 'security', '--offline=yes', unit],
                              capture_output=True, text=True, timeout=30)
    match = re.search(r'Overall exposure level for fulcrum\.service: ([0-9.]+)', security.stdout)
    expect(match is not None, f'no exposure level in: {security.stdout[-500:]}')
    log_stream(f'exposure level {match.group(1)}')
    expect(float(match.group(1)) <= 2.0, f'exposure level {match.group(1)} above 2.0')

    s = settings(text)
    expect_eq(s['Type'], ['notify'], 'Type')
    expect(any('--check' in v for v in s['ExecStartPre']), 'ExecStartPre runs --check')
    # The file is checked first, then SIGHUP without /bin/kill (tests/systemd
    # runs both under systemd).
    expect_eq(len(s['ExecReload']), 2, f'ExecReload lines: {s["ExecReload"]}')
    expect(s['ExecReload'][0].endswith('--check -c ' + s['ExecStart'][0].split(' -c ')[1]),
           f'the first ExecReload checks the configuration file: {s["ExecReload"][0]}')
    expect('kill -HUP' in s['ExecReload'][1] and '/bin/kill' not in s['ExecReload'][1],
           f'the second ExecReload sends SIGHUP with the shell\'s kill: {s["ExecReload"][1]}')
    expect_eq(s['KillSignal'], ['SIGTERM'], 'KillSignal')
    stop = int(s['TimeoutStopSec'][0].rstrip('s'))
    expect(stop > 30, f'TimeoutStopSec {stop}s must exceed the default shutdown_timeout of 30s')
    expect(s.get('WatchdogSec'), 'WatchdogSec')
    expect(int(s['LimitNOFILE'][0]) >= 65536, 'LimitNOFILE')
    expect_eq((s['User'], s['Group']), (['fulcrum'], ['fulcrum']), 'User, Group')
    expect_eq(s['AmbientCapabilities'], ['CAP_NET_BIND_SERVICE'], 'AmbientCapabilities')
    expect_eq(s['CapabilityBoundingSet'], ['CAP_NET_BIND_SERVICE'], 'CapabilityBoundingSet')

    sysusers = os.path.join(SOURCE, 'systemd', 'fulcrum.sysusers')
    root = t.path('sysroot')
    os.makedirs(root)
    dry = subprocess.run(['systemd-sysusers', '--dry-run', f'--root={root}', sysusers],
                         capture_output=True, text=True, timeout=30)
    expect_eq(dry.returncode, 0, f'systemd-sysusers --dry-run: {dry.stderr}')
    expect("Creating user 'fulcrum'" in dry.stdout + dry.stderr, f'sysusers creates the user: {dry.stdout}{dry.stderr}')
