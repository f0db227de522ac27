"""Reloads open new listeners, close removed ones, and fail whole when one cannot bind.

fulcrum (two workers, stats endpoint), demo servers a, b, c. Generation by
generation:
  1. service `one` on L1 -> a.
  2. SIGHUP adding service `two` on L2 -> b: `listening service=two
     address=L2` and `configuration changes generation=2 services_added=two
     ...`; L2 greets from b, L1 still from a.
  3. A session is opened on L1 and held. SIGHUP removing `one`: `listening`
     is not logged again, `services_removed=one`; within 2 s nothing listens
     on L1's port any more and a connect to L1 is refused, while the held
     session still echoes and then ends cleanly (access log: service one,
     server a, client_close, its exact bytes).
  4. SIGHUP renaming `two` to `deux` on the same L2 (a kept address, handed
     over): no `listening` line, L2 never refuses while the rename happens
     (a client thread connects over and over), new sessions are logged
     under `deux`.
  5. L3 is bound and listened on by the test itself. SIGHUP with the file
     `deux` on L2 plus c, `three` on a free L4 and `four` on L3: `cannot
     listen service=four address=L3 error="Address already in use"`,
     `reload rejected error="cannot listen on L3: Address already in use"`,
     `reload failed ... errors=1 generation=4`. Nothing changed: L2 greets
     from b only (never c), L4 was not left listening (refused), /stats still
     generation 4 with the one service `deux`, last_reload failed with that
     error.
  6. The test closes L3 and sends SIGHUP again with the same file:
     generation 5, L3 and L4 accept (`four` -> a, `three` -> c).
Every session of the test ends with client_close in the access log.
"""

import collections
import signal
import socket
import threading
import time

from harness import connect, expect, expect_eof, expect_eq, free_address, free_port, get_stats, greeted_session, \
    listening_on, local_address, log_stream, parse_address, read_greeting, recv_exact, wait_until, write_config

DEADLINE = 60


def wait_reload_result(d, count, timeout=10):
    def is_result(r):
        return r.message in ('reloaded', 'reload failed, the running configuration stays')
    return d.wait_for_log(is_result, timeout, count)[-1]


def refused(address):
    try:
        with connect(address, timeout=5):
            return False
    except ConnectionRefusedError:
        return True


def run(t):
    demos = {name: t.demo_server(name) for name in ('a', 'b', 'c')}
    stats_address = free_address()
    l1, l2, l4 = free_address(), free_address(), free_address()
    l3_port = free_port()
    l3 = f'127.0.0.1:{l3_port}'

    def service(name, listen, servers):
        return {'name': name, 'listen': listen, 'scheduler': 'rr',
                'servers': [{'name': s, 'address': demos[s].address} for s in servers]}

    def config(*services):
        return {'global': {'workers': 2}, 'stats': {'listen': stats_address}, 'services': list(services)}

    reloads = 0

    def reload(conf, expect_ok=True):
        nonlocal reloads
        write_config(d.config_path, conf)
        d.send_signal(signal.SIGHUP)
        reloads += 1
        result = wait_reload_result(d, reloads)
        expect_eq(result.message == 'reloaded', expect_ok, f'reload {reloads} succeeded: {result.raw}')
        return result

    def changes(generation):
        found = d.find_logs('configuration changes', generation=generation)
        expect_eq(len(found), 1, f'`configuration changes generation={generation}` lines')
        return found[0].fields

    def greeter(address, what):
        return greeted_session(address, what=what)[0]

    # 1.
    d = t.daemon(config(service('one', l1, ['a'])))
    expect_eq(greeter(l1, 'L1 first'), 'a', 'L1 greeter at generation 1')
    sessions = 1

    # 2. A service on a new address.
    reload(config(service('one', l1, ['a']), service('two', l2, ['b'])))
    expect_eq([r.fields for r in d.find_logs('listening', address=l2)], [{'service': 'two', 'address': l2}],
              '`listening` lines of L2')
    expect_eq(changes(2), {'generation': '2', 'services_added': 'two', 'services_removed': '-',
                           'services_changed': '-'}, 'changes of generation 2')
    expect_eq([greeter(l2, f'L2 {i}') for i in range(3)], ['b'] * 3, 'L2 greeters at generation 2')
    expect_eq([greeter(l1, f'L1 {i}') for i in range(3)], ['a'] * 3, 'L1 greeters at generation 2')
    sessions += 6
    log_stream('generation 2: L2 serves b, L1 serves a')

    # 3. The first service removed while a session on it is held.
    held = t.own_socket(connect(l1, timeout=10))
    held_client = local_address(held)
    expect_eq(read_greeting(held, 'held L1 session: greeting'), 'a', 'held L1 session greeter')
    reload(config(service('two', l2, ['b'])))
    expect_eq(changes(3), {'generation': '3', 'services_added': '-', 'services_removed': 'one',
                           'services_changed': '-'}, 'changes of generation 3')
    l1_port = parse_address(l1)[1]
    wait_until(lambda: not listening_on(l1_port), 2, 'nothing listening on L1 after its service was removed')
    expect(refused(l1), 'a connect to L1 after its service was removed was not refused')
    payload = b'still here after the listener closed\n'
    held.sendall(payload)
    expect_eq(recv_exact(held, len(payload), 'held L1 session: echo'), payload, 'held L1 session: echo')
    held.shutdown(socket.SHUT_WR)
    expect_eof(held, 'held L1 session after its half-close')
    held.close()
    sessions += 1
    expect_eq(greeter(l2, 'L2 at generation 3'), 'b', 'L2 greeter at generation 3')
    sessions += 1
    log_stream('generation 3: L1 refuses, the held session on it finished cleanly')

    # 4. The service on L2 renamed: the listener is handed over, never closed.
    stop_probe = threading.Event()
    probe = {'ok': 0, 'errors': []}

    def probe_loop():
        deadline = time.monotonic() + 20
        while not stop_probe.is_set() and time.monotonic() < deadline:
            try:
                greeter(l2, 'L2 probe')
                probe['ok'] += 1
            except Exception as e:
                probe['errors'].append(f'{type(e).__name__}: {e}')
    prober = threading.Thread(target=probe_loop, name='l2-probe', daemon=True)
    prober.start()
    try:
        time.sleep(0.2)
        reload(config(service('deux', l2, ['b'])))
        time.sleep(0.3)
    finally:
        stop_probe.set()
        prober.join(10)
    expect(not prober.is_alive(), 'the L2 probe still runs')
    expect_eq(probe['errors'], [], 'L2 probe sessions across the rename')
    expect(probe['ok'] >= 10, f'only {probe["ok"]} L2 probe sessions')
    sessions += probe['ok']
    expect_eq(changes(4), {'generation': '4', 'services_added': 'deux', 'services_removed': 'two',
                           'services_changed': '-'}, 'changes of generation 4')
    expect_eq(len(d.find_logs('listening', address=l2)), 1, '`listening` lines for L2 (bound once)')
    mark = len(d.access_log_lines())
    expect_eq(greeter(l2, 'L2 at generation 4'), 'b', 'L2 greeter at generation 4')
    sessions += 1
    d.wait_access_count(mark + 1)
    expect_eq(d.access_log_lines()[-1]['service'], 'deux', 'service of a session on L2 after the rename')
    log_stream(f'generation 4: two renamed deux on L2; {probe["ok"]} probe sessions, none failed')

    # 5. A new address taken by someone else: the whole reload fails.
    squatter = t.own_socket(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    squatter.bind(('127.0.0.1', l3_port))
    squatter.listen(8)
    target = config(service('deux', l2, ['b', 'c']), service('three', l4, ['c']), service('four', l3, ['a']))
    reload(target, expect_ok=False)
    expect_eq([r.fields for r in d.find_logs('cannot listen')],
              [{'service': 'four', 'address': l3, 'error': 'Address already in use'}], '`cannot listen` lines')
    error = f'cannot listen on {l3}: Address already in use'
    expect_eq([r.fields for r in d.find_logs('reload rejected')], [{'error': error}], '`reload rejected` lines')
    expect_eq([r.fields for r in d.find_logs('reload failed, the running configuration stays')],
              [{'errors': '1', 'generation': '4'}], '`reload failed` lines')
    expect_eq(d.find_logs('listening', service='three'), [], '`listening` lines of three')
    expect_eq([greeter(l2, f'L2 after the failed reload {i}') for i in range(4)], ['b'] * 4,
              'L2 greeters after the failed reload (c was not added)')
    sessions += 4
    expect(not listening_on(parse_address(l4)[1]), 'L4, bound before the failure, is left listening')
    expect(refused(l4), 'a connect to L4 after the failed reload was not refused')
    stats = get_stats(stats_address)
    expect_eq(stats['config']['generation'], 4, '/stats generation after the failed reload')
    expect_eq((stats['config']['last_reload']['ok'], stats['config']['last_reload']['error']), (False, error),
              '/stats last_reload after the failed reload')
    expect_eq([(s['name'], s['listen'], [v['name'] for v in s['servers']]) for s in stats['services']],
              [('deux', [l2], ['b'])], '/stats services after the failed reload')
    log_stream('generation 4 kept: L3 taken, the reload failed whole')

    # 6. L3 free again: the same file now loads.
    squatter.close()
    reload(target)
    expect_eq(changes(5), {'generation': '5', 'services_added': 'four,three', 'services_removed': '-',
                           'services_changed': 'deux'}, 'changes of generation 5')
    for name, address in (('three', l4), ('four', l3)):
        expect_eq(len(d.find_logs('listening', service=name, address=address)), 1, f'`listening` line of {name}')
    expect_eq(greeter(l3, 'L3'), 'a', 'L3 greeter at generation 5')
    expect_eq(greeter(l4, 'L4'), 'c', 'L4 greeter at generation 5')
    expect_eq(sorted(greeter(l2, f'L2 at generation 5 {i}') for i in range(2)), ['b', 'c'],
              'L2 greeters at generation 5')
    sessions += 4
    stats = get_stats(stats_address)
    expect_eq(stats['config']['generation'], 5, '/stats generation at the end')
    expect_eq(stats['config']['reloads'], {'succeeded': 4, 'failed': 1}, '/stats reloads at the end')

    d.wait_access_count(sessions)
    lines = d.access_log_lines()
    expect_eq(len(lines), sessions, 'access log lines')
    expect_eq(collections.Counter(line['end'] for line in lines), {'client_close': sessions},
              'access log end reasons')
    # The kernel may give the held session's client port to a later probe
    # once it has closed: match on the service the held session used too.
    held_line = [line for line in lines if line['client'] == held_client and line['service'] == 'one']
    expect_eq([(x['service'], x['server'], x['bytes_in'], x['bytes_out']) for x in held_line],
              [('one', 'a', len(payload), len(demos['a'].greeting) + len(payload))], 'access log of the held session')
    d.stop()
