"""/metrics passes `promtool check metrics` with no findings.

promtool comes from Debian's prometheus package (tools/deps.sh installs it,
with a policy-rc.d that keeps its server from starting). Without promtool
the test is skipped, except in CI (CI set), where it fails.

A daemon with two services (one with a drained and a refused server) and
the stats endpoint; /metrics is checked idle, and again after sessions have
moved bytes, failed connects and been rejected, so that every family has
non-zero samples. promtool must exit 0 and print nothing either time.
Also: nothing listens on 9090 (Prometheus's port): installing the package
must not have started a Prometheus server.
"""

import subprocess

from harness import TestFailure, connect, echo_session, expect, expect_eof, expect_eq, free_address, get_metrics, \
    listening_on, log_stream, require_program

DEADLINE = 60
SESSIONS = 12


def promtool_check(promtool, text, when):
    try:
        done = subprocess.run([promtool, 'check', 'metrics'], input=text.encode(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=30)
    except subprocess.TimeoutExpired:
        raise TestFailure(f'promtool check metrics {when}: still running after 30s')
    findings = (done.stdout + done.stderr).decode('utf-8', 'replace')
    expect(done.returncode == 0 and not findings,
           f'promtool check metrics {when}: exit {done.returncode}, output:\n{findings}\n--- metrics:\n{text}')


def run(t):
    promtool = require_program('promtool', 'prometheus')
    expect(not listening_on(9090), 'something listens on port 9090: did installing prometheus start its server?')

    a = t.demo_server('a')
    dead, gone = t.dead_address(), t.dead_address()
    listen_web, listen_gone = free_address(), free_address()
    stats_address = free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'stats': {'listen': stats_address},
        'services': [
            {'name': 'web', 'listen': listen_web, 'scheduler': 'rr', 'retries': 1,
             'servers': [{'name': 'a', 'address': a.address},
                         {'name': 'dead', 'address': dead},
                         {'name': 'drained', 'address': a.address, 'weight': 0}]},
            {'name': 'gone.example-1', 'listen': listen_gone, 'retries': 0,
             'servers': [{'name': 'gone', 'address': gone}]},
        ],
    })

    _, idle = get_metrics(stats_address)
    promtool_check(promtool, idle, 'before any session')

    for n in range(SESSIONS):
        name, _ = echo_session(listen_web, n)
        expect_eq(name, 'a', f'session {n}: server')
    with connect(listen_gone, timeout=10) as sock:
        expect_eof(sock, 'client of a service whose only server refuses')
    d.wait_access_count(SESSIONS + 1)

    metrics, busy = get_metrics(stats_address)
    expect_eq(metrics.get('fulcrum_service_sessions_total', service='web'), SESSIONS, 'web sessions')
    expect_eq(metrics.get('fulcrum_service_sessions_rejected_total', service='gone.example-1'), 1,
              'rejected sessions of gone.example-1')
    expect(metrics.get('fulcrum_server_connect_failures_total', service='web', server='dead') >= 1,
           'dead was never tried')
    promtool_check(promtool, busy, 'after sessions')
    log_stream(f'promtool: no findings on {len(idle.splitlines())} and {len(busy.splitlines())} lines of metrics')
    expect(not listening_on(9090), 'something listens on port 9090')
    d.stop()
