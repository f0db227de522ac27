"""SIGHUP reloads under a steady load drop nothing and take effect at once.

fulcrum (two workers, stats endpoint) with service `web` (wrr) on one
address. Two configurations alternate:
  A: servers a (weight 1) and b (weight 1)
  B: servers a (weight 2), b (weight 1) and a new server c (weight 1)
fulcrum starts with A. Four client threads run short echo sessions
(greeting, a line and its echo, half-close, EOF) for about 3 s; meanwhile
the file is rewritten and SIGHUP sent five times: B, A, B, A, B. A long
session opened before the first reload uploads 8 MiB slowly (spread over
the whole load) while reading its echo; after the last reload it half-closes
and the echo must be the upload exactly (byte count and SHA-256).

Then:
  - not one session failed or was refused, the long one included;
  - each reload logged `reloading config=FILE by=SIGHUP`, the changes
    (`service changed service=web settings=same servers_added=c
    servers_removed=- servers_changed=a` for A -> B, the reverse for
    B -> A, `configuration changes generation=G ... services_changed=web`)
    and `reloaded generation=G by=SIGHUP`, G = 2..6 in order; no warning or
    error and no second `listening` line (the address stayed);
  - sessions that began after a reload to B was logged (plus 0.1 s for the
    workers to pick it up) reach c in each of those three windows; sessions
    that began after a reload to A was logged (plus 0.1 s) never reach c;
    in each window every server has its weight's share of the sessions
    (+-1, the smooth wrr bound, +-2 x 4 for the sessions in flight at the
    window's edges);
  - /stats: generation 6, last_reload ok with no error, reloads succeeded 5
    and failed 0; servers a (weight 2), b, c; each server's sessions.total is
    its count in the access log (c's counts carry over while it was out of
    the configuration); /metrics agrees on generation and reload counters;
  - 8 sessions one after another afterwards split a 4, b 2, c 2 (+-1: the
    smooth wrr bound of SPEC.md);
  - the access log has one client_close line per session.
"""

import collections
import re
import signal
import socket
import threading
import time

from harness import MiB, PatternStream, SessionLoad, TestFailure, connect, echo_session, expect, expect_eq, \
    free_address, get_metrics, get_stats, hash_to_eof, local_address, log_stream, read_greeting, write_config

DEADLINE = 60
RELOADS = 5
LONG_SIZE = 8 * MiB
LONG_PIECE = 64 * 1024
LONG_PACE = 0.028  # seconds between pieces: 128 pieces take about 3.6 s
MARGIN = 0.1  # after the `reloaded` line, for every worker to apply the update
FINAL_SESSIONS = 8
THREADS = 4


def wait_reloaded(d, generation, timeout=10):
    """Waits for `reloaded generation=G by=SIGHUP` (reading the raw log:
    cheap while the access log grows); fails at once on `reload failed`.
    Returns time.monotonic() when seen."""
    done = re.compile(rf'^\S+ info reloaded generation={generation} by=SIGHUP$', re.M)
    deadline = time.monotonic() + timeout
    while True:
        text = d.stderr_text()
        if done.search(text):
            return time.monotonic()
        if ' reload failed' in text:
            raise TestFailure(f'a reload failed:\n{d.stderr_tail()}')
        if not d.running() or time.monotonic() > deadline:
            raise TestFailure(f'no `reloaded generation={generation}` line after {timeout}s:\n{d.stderr_tail()}')
        time.sleep(0.01)


def run(t):
    demos = {name: t.demo_server(name) for name in ('a', 'b', 'c')}
    greetings = {name: demo.greeting for name, demo in demos.items()}
    listen, stats_address = free_address(), free_address()

    def config(weights):
        return {'global': {'workers': 2}, 'stats': {'listen': stats_address},
                'services': [{'name': 'web', 'listen': listen, 'scheduler': 'wrr',
                              'servers': [{'name': name, 'address': demos[name].address, 'weight': weight}
                                          for name, weight in weights.items()]}]}
    config_a = config({'a': 1, 'b': 1})
    config_b = config({'a': 2, 'b': 1, 'c': 1})
    d = t.daemon(config_a)

    # The long session: greeting, then 8 MiB up at a slow pace, echo read meanwhile.
    long_sock = connect(listen, timeout=30)
    t.own_socket(long_sock)
    long_client = local_address(long_sock)
    long_server = read_greeting(long_sock, 'long session: greeting')
    stream = PatternStream(seed=4242, size=LONG_SIZE)
    long_result = {}

    def long_upload():
        try:
            for chunk in stream.chunks():
                for i in range(0, len(chunk), LONG_PIECE):
                    long_sock.sendall(chunk[i:i + LONG_PIECE])
                    time.sleep(LONG_PACE)
            long_result['upload_done'] = time.monotonic()
            long_sock.shutdown(socket.SHUT_WR)
        except Exception as e:
            long_result['upload_error'] = f'{type(e).__name__}: {e}'

    def long_download():
        try:
            long_result['echo'] = hash_to_eof(long_sock)
        except Exception as e:
            long_result['echo_error'] = f'{type(e).__name__}: {e}'
    uploader = threading.Thread(target=long_upload, name='long-up', daemon=True)
    downloader = threading.Thread(target=long_download, name='long-down', daemon=True)
    uploader.start()
    downloader.start()

    load = SessionLoad(listen, threads=THREADS, max_sessions=50000, gap=0.002, what='load').start()
    windows = []  # (config name, applied at, until)
    try:
        time.sleep(0.4)
        windows.append(('A', 0.0, None))
        for k in range(RELOADS):
            name, conf = ('B', config_b) if k % 2 == 0 else ('A', config_a)
            write_config(d.config_path, conf)
            sent = time.monotonic()
            windows[-1] = (windows[-1][0], windows[-1][1], sent)
            d.send_signal(signal.SIGHUP)
            applied = wait_reloaded(d, k + 2)
            windows.append((name, applied, None))
            log_stream(f'reload {k + 1}: config {name}, generation {k + 2}, logged {applied - sent:.3f}s after SIGHUP')
            time.sleep(0.5)
        last_reload = time.monotonic()
        time.sleep(0.3)
    finally:
        sessions = load.stop()
    windows[-1] = (windows[-1][0], windows[-1][1], time.monotonic())

    uploader.join(30)
    downloader.join(30)
    expect(not uploader.is_alive() and not downloader.is_alive(), 'the long session still runs 30 s after the load')
    expect('upload_error' not in long_result, f'long session upload: {long_result.get("upload_error")}')
    expect('echo_error' not in long_result, f'long session echo: {long_result.get("echo_error")}')
    expect(long_result['upload_done'] > last_reload,
           'the long upload ended before the last reload: it did not span them all')
    expect_eq(long_result['echo'], (LONG_SIZE, stream.sha256()), 'long session: echo byte count and SHA-256')
    long_sock.close()
    log_stream(f'long session on {long_server}: 8 MiB echoed intact across {RELOADS} reloads')

    failed = [s for s in sessions if s.error is not None]
    log_stream(f'{len(sessions)} load sessions, {len(failed)} failed')
    expect(not failed, f'{len(failed)} of {len(sessions)} load sessions failed, e.g.:\n'
                       + '\n'.join(repr(s) for s in failed[:10]))

    # Which servers the sessions of each configuration reached.
    for k, (name, applied, until) in enumerate(windows):
        inside = [s for s in sessions if applied + (MARGIN if k else 0) <= s.start < until]
        counts = collections.Counter(s.server for s in inside)
        log_stream(f'window {k} (config {name}): {len(inside)} sessions, {dict(sorted(counts.items()))}')
        expect(len(inside) >= 20, f'window {k} (config {name}): only {len(inside)} sessions')
        if name == 'B':
            expect(counts['c'] > 0, f'window {k}: no session reached c after the reload that added it: {counts}')
        else:
            expect_eq(counts['c'], 0, f'window {k}: sessions on c after the reload that removed it')
        # Smooth wrr: each server within +-1 of its share over consecutive
        # picks; sessions in flight at either edge of the window (one per
        # client thread) may belong to the neighbouring one.
        weights = {'A': {'a': 1, 'b': 1}, 'B': {'a': 2, 'b': 1, 'c': 1}}[name]
        for server, weight in weights.items():
            share = len(inside) * weight / sum(weights.values())
            expect(abs(counts[server] - share) <= 1 + 2 * THREADS,
                   f'window {k} (config {name}): {counts[server]} sessions on {server}, expected {share:g} '
                   f'+-{1 + 2 * THREADS}')

    # Afterwards, one after another: the wrr split of B.
    final = collections.Counter(echo_session(listen, 100000 + i)[0] for i in range(FINAL_SESSIONS))
    log_stream(f'{FINAL_SESSIONS} sessions after the reloads: {dict(sorted(final.items()))}')
    for name, share in (('a', 4), ('b', 2), ('c', 2)):
        expect(abs(final[name] - share) <= 1, f'final sessions on {name}: {final[name]}, expected {share} +-1')
    expect_eq(sum(final.values()), FINAL_SESSIONS, 'final sessions on a, b, c')

    # The log of the reloads.
    records = d.logs(strict=True)
    reloading = [r.fields for r in records if r.message == 'reloading']
    expect_eq(reloading, [{'config': d.config_path, 'by': 'SIGHUP'}] * RELOADS, '`reloading` lines')
    reloaded = [r.fields for r in records if r.message == 'reloaded']
    expect_eq(reloaded, [{'generation': str(g), 'by': 'SIGHUP'} for g in range(2, RELOADS + 2)], '`reloaded` lines')
    add_c = {'service': 'web', 'settings': 'same', 'servers_added': 'c', 'servers_removed': '-',
             'servers_changed': 'a'}
    remove_c = {'service': 'web', 'settings': 'same', 'servers_added': '-', 'servers_removed': 'c',
                'servers_changed': 'a'}
    expect_eq([r.fields for r in records if r.message == 'service changed'],
              [add_c if k % 2 == 0 else remove_c for k in range(RELOADS)], '`service changed` lines')
    expect_eq([r.fields for r in records if r.message == 'configuration changes'],
              [{'generation': str(g), 'services_added': '-', 'services_removed': '-', 'services_changed': 'web'}
               for g in range(2, RELOADS + 2)], '`configuration changes` lines')
    expect_eq([r.raw for r in records if r.level in ('warn', 'error')], [], 'warnings and errors')
    expect_eq([r.fields for r in records if r.message == 'listening'], [{'service': 'web', 'address': listen}],
              '`listening` lines (the address stayed: bound once)')
    # Order: each reload's lines come between its `reloading` and `reloaded`.
    order = [r.message for r in records if r.message in ('reloading', 'service changed', 'configuration changes',
                                                         'reloaded')]
    expect_eq(order, ['reloading', 'service changed', 'configuration changes', 'reloaded'] * RELOADS,
              'order of the reload lines')

    # The access log: every session, cleanly closed.
    total = len(sessions) + 1 + FINAL_SESSIONS
    d.wait_access_count(total)
    lines = d.access_log_lines()
    expect_eq(len(lines), total, 'access log lines')
    expect_eq(collections.Counter(line['end'] for line in lines), {'client_close': total}, 'access log end reasons')
    long_line = [line for line in lines if line['client'] == long_client]
    expect_eq(len(long_line), 1, 'access log lines of the long session')
    expect_eq((long_line[0]['server'], long_line[0]['bytes_in'], long_line[0]['bytes_out']),
              (long_server, LONG_SIZE, len(greetings[long_server]) + LONG_SIZE), 'long session: server and bytes')
    by_server = collections.Counter(line['server'] for line in lines)
    greeted = collections.Counter(s.server for s in sessions) + final + collections.Counter([long_server])
    expect_eq(by_server, greeted, 'sessions per server: access log vs greetings')

    # The endpoint.
    stats = get_stats(stats_address)
    expect_eq(stats['config']['generation'], RELOADS + 1, '/stats config.generation')
    last = stats['config']['last_reload']
    expect_eq((last.get('ok'), last.get('error')), (True, None), '/stats last_reload ok, error')
    expect_eq(stats['config'].get('reloads'), {'succeeded': RELOADS, 'failed': 0}, '/stats config.reloads')
    web = stats['services'][0]
    expect_eq([(v['name'], v['weight'], v['state']) for v in web['servers']],
              [('a', 2, 'up'), ('b', 1, 'up'), ('c', 1, 'up')], '/stats servers (name, weight, state)')
    expect_eq({v['name']: v['sessions']['total'] for v in web['servers']}, dict(by_server),
              '/stats sessions.total per server vs the access log')
    expect_eq(web['sessions']['total'], total, '/stats service sessions.total')
    expect_eq(web['sessions']['active'], 0, '/stats service sessions.active')
    metrics, _ = get_metrics(stats_address)
    expect_eq((metrics.get('fulcrum_config_generation'),
               metrics.get('fulcrum_config_reloads_total', result='success'),
               metrics.get('fulcrum_config_reloads_total', result='failure')), (RELOADS + 1, RELOADS, 0),
              '/metrics generation, reloads success, failure')
    d.stop()
