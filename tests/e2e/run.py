#!/usr/bin/env python3
"""Runs one fulcrum end-to-end test by name.

    FULCRUM=build/fulcrum DEMO_SERVER=build/fulcrum-demo-server python3 run.py [--cases DIR] NAME
    python3 run.py [--cases DIR] --list

The test is DIR/NAME.py (DIR defaults to cases/ here): a DEADLINE in seconds
and run(t). Exit status: 0 pass, 1 fail (with the reason and the daemon's
last log lines), 77 skip (a prerequisite such as IPv6 loopback is missing),
2 bad usage. With E2E_KEEP=1 the test's files (configs, daemon logs) are kept
on success too.
In sanitizer builds any report from a process of the test fails it, and in
every build a log line of a fulcrum it started that is not logfmt or not in
docs/operations.md's log table.
"""

import importlib.util
import os
import re
import shutil
import signal
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, 'cases')
sys.path.insert(0, HERE)

import harness  # noqa: E402


def test_names(cases):
    return sorted(f[:-3] for f in os.listdir(cases) if f.endswith('.py') and not f.startswith('_'))


def load_case(cases, name):
    spec = importlib.util.spec_from_file_location(f'cases.{name}', os.path.join(cases, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv):
    cases = CASES
    if len(argv) >= 3 and argv[1] == '--cases':
        cases = os.path.abspath(argv[2])
        argv = argv[:1] + argv[3:]
    if len(argv) != 2 or argv[1] in ('-h', '--help'):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    if argv[1] == '--list':
        print('\n'.join(test_names(cases)))
        return 0
    name = argv[1]
    if not re.fullmatch(r'[a-z0-9_]+', name) or name not in test_names(cases):
        print(f'run.py: no test named {name!r}; known: {" ".join(test_names(cases))}', file=sys.stderr)
        return 2

    case = load_case(cases, name)
    ctx = harness.TestContext(name)
    harness.route_sanitizer_reports(ctx)
    harness.arm_deadline(case.DEADLINE, ctx)

    def on_terminate(signum, frame):
        raise harness.TestTimeout(f'stopped by {signal.Signals(signum).name}')
    signal.signal(signal.SIGTERM, on_terminate)
    harness.log_stream(f'{name}: start (deadline {case.DEADLINE}s, files in {ctx.tmpdir})')
    outcome, detail = 'PASS', ''
    try:
        try:
            case.run(ctx)
            ctx.check_servers()
        finally:
            ctx.cleanup()
    except harness.TestSkip as e:
        outcome, detail = 'SKIP', str(e)
    except harness.TestFailure as e:
        outcome, detail = 'FAIL', str(e)
    except harness.TestTimeout as e:
        outcome, detail = 'FAIL', f'{e}\n{traceback.format_exc()}'
    except Exception:
        outcome, detail = 'FAIL', f'unexpected error:\n{traceback.format_exc()}'
    finally:
        signal.alarm(0)
    # So is a log line that is not logfmt or not in docs/operations.md's log
    # table, and a sanitizer report, whatever the test itself concluded.
    if ctx.log_problems:
        also = f'\n(the test itself: {outcome} {detail})' if outcome != 'PASS' else ''
        shown = ctx.log_problems[:20]
        more = f'\n... and {len(ctx.log_problems) - len(shown)} more' if len(ctx.log_problems) > len(shown) else ''
        outcome, detail = 'FAIL', 'log lines not as docs/operations.md lists them:\n' + '\n'.join(shown) + more + also
    reports = harness.sanitizer_reports(ctx)
    if reports:
        also = f'\n(the test itself: {outcome} {detail})' if outcome != 'PASS' else ''
        outcome, detail = 'FAIL', f'sanitizer reports:\n{reports}{also}'

    if outcome == 'FAIL':
        print(f'FAIL {name}: {detail}', flush=True)
        context = ctx.describe_daemons()
        if context:
            print(context, flush=True)
        print(f'(files kept in {ctx.tmpdir})', flush=True)
        return 1
    if os.environ.get('E2E_KEEP'):
        print(f'(E2E_KEEP: files kept in {ctx.tmpdir})', flush=True)
    else:
        shutil.rmtree(ctx.tmpdir, ignore_errors=True)
    if outcome == 'SKIP':
        print(f'SKIP {name}: {detail}', flush=True)
        return 77
    print(f'PASS {name}', flush=True)
    return 0


if __name__ == '__main__':
    code = main(sys.argv)
    sys.stdout.flush()
    # Handler threads of the test servers may still sit in blocking calls:
    # leave without waiting for them.
    os._exit(code)
