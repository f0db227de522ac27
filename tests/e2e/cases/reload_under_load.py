"""SIGHUP reloads under a steady load drop nothing and take effect at once.

fulcrum (two workers, stats endpoint) with service `web` (wrr) on one
address. Two configurations alternate:
  A: web: servers a (weight 1) and b (weight 1); no service `api`
  B: web: servers a (weight 2), b (weight 1) and a new server c (weight 1);
     plus a second service `api` on its own address, over demo server d
fulcrum starts with A. Four client threads run short echo sessions
(greeting, a line and its echo, half-close, EOF) on web for about 6 s
(bounded: at most 50000 sessions); meanwhile the file is rewritten and SIGHUP
sent twenty times, about 0.25 s apart (longer when fewer than 20 sessions
completed in a window: each must hold that many): B, A, B, A, ... (the last
one A).
After each reload has been logged the test
  - polls /stats: generation G, and for servers a and b of web (they stay in
    both configurations) sessions.total, bytes.in and bytes.out never
    decrease from one poll to the next (nor across the rejected reload
    below): the totals are never reset;
  - in a B window: one echo session of its own to api, which must reach d;
  - at the end of an A window: api's address refuses connections (expected:
    api is removed; no client of the load goes there, so this is no failure
    of the load).
A long session opened before the first reload uploads 8 MiB slowly (16 KiB
pieces, paced until the reloads, the rejected one included, are over, then
the rest at once) while reading its echo; it then half-closes and the echo
must be the upload exactly (byte count and SHA-256).

Then:
  - not one load session failed or was refused, the long one included, and
    every api session of the B windows went through;
  - each reload logged `reloading config=FILE by=SIGHUP`, the changes
    (`service changed service=web settings=same servers_added=c
    servers_removed=- servers_changed=a` and `configuration changes
    generation=G services_added=api services_removed=- services_changed=web`
    for A -> B; `service changed service=web settings=same servers_added=-
    servers_removed=c servers_changed=a` and `configuration changes
    generation=G services_added=- services_removed=api services_changed=web`
    for B -> A) and `reloaded generation=G by=SIGHUP`, G = 2..21 in order;
    `listening service=api address=API` once per A -> B (ten times, between
    that reload's `reloading` and its changes), `listening service=web` once
    only (web's address is never bound again); no warning, and no error but
    those of the rejected file;
  - sessions that began after a reload to B was logged (plus 0.1 s for the
    workers to pick it up) and ended before the next SIGHUP reach c in each
    of those ten windows; those of the A windows (same bounds) never reach c;
    in each window every server has its weight's share of the sessions
    (+-1, the smooth wrr bound, +-2 x 4 for the sessions in flight at the
    window's edges);
  - 8 web sessions one after another afterwards split a 4, b 4 (+-1: the
    smooth wrr bound of SPEC.md);
  - then the file is replaced by an invalid one (config B with an unknown
    scheduler) and SIGHUP: `reload rejected error=E` and `reload failed, the
    running configuration stays errors=1 generation=21`, no `reloaded`; the
    old configuration keeps serving (two web sessions reach a and b, never c;
    api is still not listening); /stats: generation still 21, last_reload
    {ok: false, error: E} (E names the file and the bad value), reloads
    succeeded 20 and failed 1, web still a, b; /metrics agrees;
  - /stats at the end: servers a (weight 1), b (weight 1); a's and b's
    sessions.total are their counts in the access log (so nothing was lost
    across the reloads), web's sessions.total all web sessions, none active;
  - the access log has one client_close line per session (web and api).
"""

import collections
import re
import signal
import socket
import threading
import time

from harness import MiB, PatternStream, SessionLoad, TestFailure, connect, echo_session, expect, expect_eq, \
    free_address, get_metrics, get_stats, hash_to_eof, local_address, log_stream, parse_address, \
    read_greeting, to_yaml, wait_until, write_config

DEADLINE = 60
RELOADS = 20
SPACING = 0.25  # seconds from one SIGHUP to the next
LONG_SIZE = 8 * MiB
LONG_PIECE = 16 * 1024
LONG_PACE = 0.02  # seconds between pieces until the reloads are over (the last piece waits for that)
MARGIN = 0.1  # after the `reloaded` line, for every worker to apply the update
MIN_WINDOW_SESSIONS = 20
WINDOW_LIMIT = 10  # seconds a window may wait for its sessions
FINAL_SESSIONS = 8
THREADS = 4
STAYED = ('a', 'b')  # web's servers in both configurations


def wait_reloaded(d, generation, timeout=10):
    """Waits for `msg="reloaded" generation=G by=SIGHUP` (reading the raw
    log: cheap while the access log grows); fails at once on `reload
    failed`. Returns time.monotonic() when seen."""
    done = re.compile(rf'^ts=\S+ level=info msg="reloaded" generation={generation} by=SIGHUP$', re.M)
    deadline = time.monotonic() + timeout
    while True:
        text = d.stderr_text()
        if done.search(text):
            return time.monotonic()
        if 'msg="reload failed' in text:
            raise TestFailure(f'a reload failed:\n{d.stderr_tail()}')
        if not d.running() or time.monotonic() > deadline:
            raise TestFailure(f'no `reloaded generation={generation}` line after {timeout}s:\n{d.stderr_tail()}')
        time.sleep(0.01)


def web_totals(stats, what):
    """{server: (sessions.total, bytes.in, bytes.out)} of web's servers in a /stats reply."""
    webs = [s for s in stats['services'] if s['name'] == 'web']
    expect_eq(len(webs), 1, f'{what}: services named web in /stats')
    return {v['name']: (v['sessions']['total'], v['bytes']['in'], v['bytes']['out']) for v in webs[0]['servers']}


def run(t):
    demos = {name: t.demo_server(name) for name in ('a', 'b', 'c', 'd')}
    greetings = {name: demo.greeting for name, demo in demos.items()}
    listen, api_listen, stats_address = free_address(), free_address(), free_address()

    def config(weights, api=False, scheduler='wrr'):
        services = [{'name': 'web', 'listen': listen, 'scheduler': scheduler,
                     'servers': [{'name': name, 'address': demos[name].address, 'weight': weight}
                                 for name, weight in weights.items()]}]
        if api:
            services.append({'name': 'api', 'listen': api_listen, 'scheduler': 'rr',
                             'servers': [{'name': 'd', 'address': demos['d'].address}]})
        return {'global': {'workers': 2}, 'stats': {'listen': stats_address}, 'services': services}
    config_a = config({'a': 1, 'b': 1})
    config_b = config({'a': 2, 'b': 1, 'c': 1}, api=True)
    d = t.daemon(config_a)

    def expect_refused(what):
        try:
            with socket.create_connection(parse_address(api_listen), timeout=5):
                pass
        except ConnectionRefusedError:
            return
        except OSError as e:
            raise TestFailure(f'{what}: connecting to api\'s address {api_listen}: {type(e).__name__}: {e}')
        raise TestFailure(f'{what}: api\'s address {api_listen} still accepts connections')
    expect_refused('before any reload')

    # /stats totals of a and b: never decreasing from one poll to the next.
    polls = []  # (label, {server: (total, bytes in, bytes out)})

    def poll_stats(label, generation):
        stats = get_stats(stats_address)
        expect_eq(stats['config']['generation'], generation, f'/stats config.generation {label}')
        totals = web_totals(stats, label)
        for name in STAYED:
            expect(name in totals, f'/stats {label}: web server {name} missing: {sorted(totals)}')
            if polls:
                before_label, before = polls[-1]
                for i, field in enumerate(('sessions.total', 'bytes.in', 'bytes.out')):
                    expect(totals[name][i] >= before[name][i],
                           f'/stats web server {name} {field} went down: {before[name][i]} {before_label}, '
                           f'{totals[name][i]} {label} (reset by the reload?)')
        polls.append((label, totals))
        return stats
    poll_stats('before the reloads', 1)

    # The long session: greeting, then 8 MiB up at a slow pace, echo read meanwhile.
    long_sock = connect(listen, timeout=30)
    t.own_socket(long_sock)
    long_client = local_address(long_sock)
    long_server = read_greeting(long_sock, 'long session: greeting')
    stream = PatternStream(seed=4242, size=LONG_SIZE)
    long_result = {}
    release_long = threading.Event()  # set when the reloads are over: the rest goes at once

    def long_upload():
        try:
            sent = 0
            for chunk in stream.chunks():
                for i in range(0, len(chunk), LONG_PIECE):
                    piece = chunk[i:i + LONG_PIECE]
                    if sent + len(piece) == LONG_SIZE:
                        release_long.wait(DEADLINE)  # the last piece only after the reloads
                    long_sock.sendall(piece)
                    sent += len(piece)
                    if not release_long.is_set():
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
    api_sessions = []  # (window index, server) of the api sessions of the B windows
    try:
        time.sleep(0.4)
        windows.append(('A', 0.0, None))
        for k in range(RELOADS):
            name, conf = ('B', config_b) if k % 2 == 0 else ('A', config_a)
            generation = k + 2
            write_config(d.config_path, conf)
            sent = time.monotonic()
            windows[-1] = (windows[-1][0], windows[-1][1], sent)
            d.send_signal(signal.SIGHUP)
            applied = wait_reloaded(d, generation)
            windows.append((name, applied, None))
            poll_stats(f'after reload {k + 1} (config {name})', generation)
            polled = time.monotonic()
            if name == 'B':
                try:
                    server, _ = echo_session(api_listen, 200000 + k)
                except Exception as e:
                    raise TestFailure(f'reload {k + 1} (config B): a session to api failed: '
                                      f'{type(e).__name__}: {e}')
                expect_eq(server, 'd', f'reload {k + 1} (config B): the api session\'s server')
                api_sessions.append((len(windows) - 1, server))
            checked = time.monotonic()
            time.sleep(max(0.0, sent + SPACING - time.monotonic()))
            # A slow or busy host completes fewer sessions in SPACING: the
            # window lasts until enough lie wholly inside it (bounded).
            wait_until(lambda: sum(1 for s in load.snapshot() if s.start >= applied + MARGIN)
                       >= MIN_WINDOW_SESSIONS, WINDOW_LIMIT, f'reload {k + 1}: {MIN_WINDOW_SESSIONS} sessions')
            if name == 'A':
                # At the end of the A window (the workers have long applied
                # the update): api's address refuses. Not listening_on():
                # /proc/net/tcp is slow to read with the load's TIME_WAIT.
                expect_refused(f'reload {k + 1} (config A)')
            log_stream(f'reload {k + 1}: config {name}, generation {generation}, '
                       f'logged {applied - sent:.3f}s after SIGHUP, /stats {polled - applied:.3f}s, '
                       f'api {checked - polled:.3f}s, window {time.monotonic() - applied:.3f}s')
        last_reload = time.monotonic()
        time.sleep(0.3)
    finally:
        sessions = load.stop()
    windows[-1] = (windows[-1][0], windows[-1][1], time.monotonic())
    expect(uploader.is_alive(), 'the long upload ended before the last reload: it did not span them all '
                                f'({long_result})')

    failed = [s for s in sessions if s.error is not None]
    log_stream(f'{len(sessions)} load sessions, {len(failed)} failed; '
               f'{len(api_sessions)} api sessions in the B windows')
    expect(not failed, f'{len(failed)} of {len(sessions)} load sessions failed, e.g.:\n'
                       + '\n'.join(repr(s) for s in failed[:10]))
    b_windows = [k for k, (name, _, _) in enumerate(windows) if name == 'B']
    expect_eq(sorted(k for k, _ in api_sessions), b_windows, 'B windows with a successful api session')

    # Which servers the sessions of each configuration reached.
    for k, (name, applied, until) in enumerate(windows):
        # Wholly inside: a session begun just before the next SIGHUP may be
        # accepted after that reload was applied (seen on a loaded 2-CPU host).
        inside = [s for s in sessions if applied + (MARGIN if k else 0) <= s.start and s.end < until]
        counts = collections.Counter(s.server for s in inside)
        log_stream(f'window {k} (config {name}): {len(inside)} sessions, {dict(sorted(counts.items()))}')
        expect(len(inside) >= MIN_WINDOW_SESSIONS, f'window {k} (config {name}): only {len(inside)} sessions')
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

    # Afterwards, one after another: the wrr split of A (the last reload).
    final = collections.Counter(echo_session(listen, 100000 + i)[0] for i in range(FINAL_SESSIONS))
    log_stream(f'{FINAL_SESSIONS} sessions after the reloads: {dict(sorted(final.items()))}')
    for name, share in (('a', 4), ('b', 4)):
        expect(abs(final[name] - share) <= 1, f'final sessions on {name}: {final[name]}, expected {share} +-1')
    expect_eq(sum(final.values()), FINAL_SESSIONS, 'final sessions on a, b')
    poll_stats('after the final sessions', RELOADS + 1)

    # An invalid file: rejected, the running configuration (A) keeps serving.
    write_config(d.config_path, to_yaml(config({'a': 2, 'b': 1, 'c': 1}, api=True, scheduler='bogus')) + '\n')
    d.send_signal(signal.SIGHUP)
    d.wait_for_log(lambda r: r.message == 'reload failed, the running configuration stays', 10)
    records = d.logs(strict=True)
    rejected = [r.fields.get('error') for r in records if r.message == 'reload rejected']
    expect_eq(len(rejected), 1, f'`reload rejected` lines of the invalid file ({rejected})')
    error = rejected[0]
    expect(error.startswith(f'{d.config_path}:') and 'bogus' in error,
           f'`reload rejected` error {error!r} does not name the file and the bad value')
    expect_eq([r.fields for r in records if r.message == 'reload failed, the running configuration stays'],
              [{'errors': '1', 'generation': str(RELOADS + 1)}], '`reload failed` line')
    after_invalid = collections.Counter(echo_session(listen, 300000 + i)[0] for i in range(2))
    expect_eq(after_invalid, collections.Counter({'a': 1, 'b': 1}), 'web sessions after the invalid file')
    expect_refused('after the invalid file (api is in the bad file only)')
    stats = poll_stats('after the invalid file', RELOADS + 1)
    last = stats['config']['last_reload']
    expect_eq((last.get('ok'), last.get('error')), (False, error), '/stats last_reload ok, error after the invalid file')
    expect_eq(stats['config'].get('reloads'), {'succeeded': RELOADS, 'failed': 1}, '/stats config.reloads')
    expect_eq([(s['name'], s['scheduler'], [v['name'] for v in s['servers']]) for s in stats['services']],
              [('web', 'wrr', ['a', 'b'])], '/stats services after the invalid file')
    log_stream(f'invalid file rejected: generation {RELOADS + 1} kept, last_reload error {error!r}')

    # The long session: the rest of its upload now, then its echo.
    release_long.set()
    uploader.join(30)
    downloader.join(30)
    expect(not uploader.is_alive() and not downloader.is_alive(), 'the long session still runs 30 s after the load')
    expect('upload_error' not in long_result, f'long session upload: {long_result.get("upload_error")}')
    expect('echo_error' not in long_result, f'long session echo: {long_result.get("echo_error")}')
    expect(long_result['upload_done'] > last_reload,
           'the long upload ended before the last reload: it did not span them all')
    expect_eq(long_result['echo'], (LONG_SIZE, stream.sha256()), 'long session: echo byte count and SHA-256')
    long_sock.close()
    log_stream(f'long session on {long_server}: 8 MiB echoed intact across {RELOADS} reloads and the invalid file')

    # The log of the reloads.
    records = d.logs(strict=True)
    reloading = [r.fields for r in records if r.message == 'reloading']
    expect_eq(reloading, [{'config': d.config_path, 'by': 'SIGHUP'}] * (RELOADS + 1), '`reloading` lines')
    reloaded = [r.fields for r in records if r.message == 'reloaded']
    expect_eq(reloaded, [{'generation': str(g), 'by': 'SIGHUP'} for g in range(2, RELOADS + 2)], '`reloaded` lines')
    add_c = {'service': 'web', 'settings': 'same', 'servers_added': 'c', 'servers_removed': '-',
             'servers_changed': 'a'}
    remove_c = {'service': 'web', 'settings': 'same', 'servers_added': '-', 'servers_removed': 'c',
                'servers_changed': 'a'}
    expect_eq([r.fields for r in records if r.message == 'service changed'],
              [add_c if k % 2 == 0 else remove_c for k in range(RELOADS)], '`service changed` lines')

    def changes(k):
        added = k % 2 == 0
        return {'generation': str(k + 2), 'services_added': 'api' if added else '-',
                'services_removed': '-' if added else 'api', 'services_changed': 'web'}
    expect_eq([r.fields for r in records if r.message == 'configuration changes'],
              [changes(k) for k in range(RELOADS)], '`configuration changes` lines')
    expect_eq([r.raw for r in records if r.level == 'warn'], [], 'warnings')
    expect_eq([(r.message, r.fields) for r in records if r.level == 'error'],
              [('reload rejected', {'error': error}),
               ('reload failed, the running configuration stays', {'errors': '1', 'generation': str(RELOADS + 1)})],
              'errors (those of the invalid file only)')
    expect_eq([r.fields for r in records if r.message == 'listening'],
              [{'service': 'web', 'address': listen}] + [{'service': 'api', 'address': api_listen}] * (RELOADS // 2),
              '`listening` lines (web bound once; api bound again on each A -> B)')
    # Order: each reload's lines come between its `reloading` and `reloaded`.
    order = [r.message for r in records
             if r.message in ('reloading', 'listening', 'service changed', 'configuration changes', 'reloaded',
                              'reload rejected', 'reload failed, the running configuration stays')]
    expected_order = ['listening']
    for k in range(RELOADS):
        expected_order += (['reloading', 'listening', 'service changed', 'configuration changes', 'reloaded']
                           if k % 2 == 0 else ['reloading', 'service changed', 'configuration changes', 'reloaded'])
    expected_order += ['reloading', 'reload rejected', 'reload failed, the running configuration stays']
    expect_eq(order, expected_order, 'order of the reload lines')

    # The access log: every session, cleanly closed.
    web_total = len(sessions) + 1 + FINAL_SESSIONS + sum(after_invalid.values())
    total = web_total + len(api_sessions)
    d.wait_access_count(total)
    lines = d.access_log_lines()
    expect_eq(len(lines), total, 'access log lines')
    expect_eq(collections.Counter(line['end'] for line in lines), {'client_close': total}, 'access log end reasons')
    long_line = [line for line in lines if line['client'] == long_client]
    expect_eq(len(long_line), 1, 'access log lines of the long session')
    expect_eq((long_line[0]['server'], long_line[0]['bytes_in'], long_line[0]['bytes_out']),
              (long_server, LONG_SIZE, len(greetings[long_server]) + LONG_SIZE), 'long session: server and bytes')
    by_service = collections.Counter((line['service'], line['server']) for line in lines)
    greeted = collections.Counter(('web', s.server) for s in sessions) \
        + collections.Counter({('web', name): n for name, n in (final + after_invalid).items()}) \
        + collections.Counter([('web', long_server)]) + collections.Counter(('api', s) for _, s in api_sessions)
    expect_eq(by_service, greeted, 'sessions per service and server: access log vs greetings')

    # The endpoint.
    stats = poll_stats('at the end', RELOADS + 1)
    last = stats['config']['last_reload']
    expect_eq((last.get('ok'), last.get('error')), (False, error), '/stats last_reload ok, error at the end')
    expect_eq(stats['config'].get('reloads'), {'succeeded': RELOADS, 'failed': 1}, '/stats config.reloads')
    expect_eq([s['name'] for s in stats['services']], ['web'], '/stats services at the end')
    web = stats['services'][0]
    expect_eq([(v['name'], v['weight'], v['state']) for v in web['servers']],
              [('a', 1, 'up'), ('b', 1, 'up')], '/stats servers (name, weight, state)')
    expect_eq({v['name']: v['sessions']['total'] for v in web['servers']},
              {name: by_service[('web', name)] for name in STAYED},
              '/stats sessions.total of a and b vs the access log (never reset)')
    expect_eq(web['sessions']['total'], web_total, '/stats web sessions.total')
    expect_eq(web['sessions']['active'], 0, '/stats web sessions.active')
    metrics, _ = get_metrics(stats_address)
    expect_eq((metrics.get('fulcrum_config_generation'),
               metrics.get('fulcrum_config_reloads_total', result='success'),
               metrics.get('fulcrum_config_reloads_total', result='failure')), (RELOADS + 1, RELOADS, 1),
              '/metrics generation, reloads success, failure')
    log_stream(f'/stats polled {len(polls)} times: a and b totals never went down '
               f'({polls[0][1]} -> {polls[-1][1]})')
    d.stop()
