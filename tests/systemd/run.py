#!/usr/bin/env python3
"""Runs one test of fulcrum under a real systemd (tests/systemd) by name.

    BUILD_ROOT=build MESON=meson DEMO_SERVER=build/fulcrum-demo-server python3 run.py NAME
    python3 run.py --list

Root only (it boots a container with systemd-nspawn); exit 77 (skip)
otherwise. The test is cases/NAME.py: a DEADLINE in seconds and run(t),
t being a ServiceTest: the container booted with the build installed, the
fulcrum user created, the demo servers up and the test's threads in the
container's network. The first run builds the cached root file system
(rootfs.py) before the deadline starts. Exit status: 0 pass, 1 fail, 77
skip, 2 bad usage. The run's directory (overlay, console log) is kept on
failure, or always with E2E_KEEP=1.
"""

import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import threading
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, 'cases')
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..', 'e2e'))

from harness import TestFailure, TestSkip, TestTimeout, log_stream  # noqa: E402
import container  # noqa: E402
import rootfs  # noqa: E402
from service import setup  # noqa: E402

TOOLS = ('systemd-nspawn', 'debootstrap', 'unshare', 'nsenter', 'setpriv')


def main(argv):
    names = sorted(f[:-3] for f in os.listdir(CASES) if f.endswith('.py'))
    if len(argv) != 2 or argv[1] in ('-h', '--help'):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    if argv[1] == '--list':
        print('\n'.join(names))
        return 0
    name = argv[1]
    if name not in names:
        print(f'run.py: no test named {name!r}; known: {" ".join(names)}', file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print(f'SKIP systemd_{name}: needs root (boots a container with systemd-nspawn)', flush=True)
        return 77
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        print(f'FAIL systemd_{name}: missing {" ".join(missing)} (tools/deps.sh installs them: '
              'packages systemd-container, debootstrap, util-linux)', flush=True)
        return 1
    build_root, meson, demo_server = (os.environ.get(v) for v in ('BUILD_ROOT', 'MESON', 'DEMO_SERVER'))
    if not (build_root and meson and demo_server):
        print('run.py: set BUILD_ROOT, MESON and DEMO_SERVER (meson test does)', file=sys.stderr)
        return 2

    spec = importlib.util.spec_from_file_location(f'cases.{name}', os.path.join(CASES, f'{name}.py'))
    case = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(case)

    try:
        tree, _lock = rootfs.acquire(log_stream)  # the lock is held until exit
    except (RuntimeError, OSError, TestFailure) as e:
        print(f'FAIL systemd_{name}: no root file system: {e}', flush=True)
        return 1

    workdir = tempfile.mkdtemp(prefix=f'fulcrum-systemd-{name}-')
    c = container.Container(workdir, tree)
    log_stream(f'{name}: start (deadline {case.DEADLINE}s, files in {workdir})')

    def on_alarm(signum, frame):
        raise TestTimeout(f'test ran past its deadline of {case.DEADLINE}s')

    def on_terminate(signum, frame):
        raise TestTimeout(f'stopped by {signal.Signals(signum).name}')
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_terminate)
    signal.alarm(case.DEADLINE)

    # Last resort if even the cleanup hangs: kill the container by PID.
    def last_resort():
        print(f'FAIL systemd_{name}: hung past deadline + 90s; killing the container', flush=True)
        for pid in (c.init_pid, c.process.pid if c.process else None):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        os._exit(1)
    timer = threading.Timer(case.DEADLINE + 90, last_resort)
    timer.daemon = True
    timer.start()

    outcome, detail = 'PASS', ''
    try:
        t = setup(c, build_root, meson, demo_server)
        case.run(t)
        problems = t.log_problems()
        if problems:
            raise TestFailure('fulcrum\'s lines in the journal not as docs/operations.md lists them:\n'
                              + '\n'.join(problems[:20]))
    except TestSkip as e:
        outcome, detail = 'SKIP', str(e)
    except TestFailure as e:
        outcome, detail = 'FAIL', str(e)
    except TestTimeout as e:
        outcome, detail = 'FAIL', f'{e}\n{traceback.format_exc()}'
    except Exception:
        outcome, detail = 'FAIL', f'unexpected error:\n{traceback.format_exc()}'
    signal.alarm(0)
    # From here on nothing interrupts the cleanup (the last resort aside).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if outcome == 'FAIL' and c.init_pid is not None and c.process.poll() is None:
        print('--- the container\'s journal (last lines):\n' + c.journal_tail(), flush=True)
    left = c.destroy()
    timer.cancel()
    if left:
        outcome = 'FAIL'
        detail += '\nthe container left things behind (now removed):\n' + '\n'.join(left)
    else:
        log_stream('container gone: no process, cgroup or mount of the run left')

    if outcome == 'FAIL':
        print(f'FAIL systemd_{name}: {detail}', flush=True)
        console = c.console_tail()
        if console:
            print(f'--- container console (last lines):\n{console}', flush=True)
        print(f'(files kept in {workdir})', flush=True)
        return 1
    if os.environ.get('E2E_KEEP'):
        print(f'(E2E_KEEP: files kept in {workdir})', flush=True)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if outcome == 'SKIP':
        print(f'SKIP systemd_{name}: {detail}', flush=True)
        return 77
    print(f'PASS systemd_{name}', flush=True)
    return 0


if __name__ == '__main__':
    code = main(sys.argv)
    sys.stdout.flush()
    os._exit(code)  # client threads may still sit in blocking calls
