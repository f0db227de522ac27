"""The configuration files shipped in conf/ pass `fulcrum --check`, and none
calls a feature "not supported yet": every one they mention is implemented
(the reference file once said so of user/group, the stats section and
transparent mode long after they worked)."""

import os
import subprocess

from harness import binary, expect, expect_eq

DEADLINE = 30
CONF = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'conf')


def run(t):
    for name in ('fulcrum.yaml', 'demo.yaml'):
        path = os.path.normpath(os.path.join(CONF, name))
        result = subprocess.run([binary('FULCRUM'), '--check', '-c', path], capture_output=True, timeout=20)
        expect_eq((result.returncode, result.stdout, result.stderr), (0, b'configuration ok\n', b''),
                  f'--check of {path}')
        with open(path) as f:
            stale = [line.strip() for line in f if 'not supported yet' in line.lower()]
        expect(not stale, f'{path} calls features not supported yet: {stale}')
