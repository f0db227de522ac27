"""The configuration files shipped in conf/ pass `fulcrum --check`."""

import os
import subprocess

from harness import binary, expect_eq

DEADLINE = 30
CONF = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'conf')


def run(t):
    for name in ('fulcrum.yaml', 'demo.yaml'):
        path = os.path.normpath(os.path.join(CONF, name))
        result = subprocess.run([binary('FULCRUM'), '--check', '-c', path], capture_output=True, timeout=20)
        expect_eq((result.returncode, result.stdout, result.stderr), (0, b'configuration ok\n', b''),
                  f'--check of {path}')
