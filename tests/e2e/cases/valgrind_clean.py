"""A whole life of the daemon under valgrind's memcheck: no memory error, no leak.

fulcrum (two workers, stats endpoint, health checks every 200 ms) runs
under `valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect
--error-exitcode=99` with service `web` (rr) over demo server a:
  - 6 echo sessions all reach a; /stats and /metrics answer.
  - SIGHUP with b added and a second service `other` on a new address:
    `reloaded` generation 2; once /stats shows every server up, sessions
    alternate a and b; `other` serves.
  - SIGTERM: exit status 0 (99 would be a valgrind error), a `stopped`
    line, and valgrind's log ends with `ERROR SUMMARY: 0 errors` and no
    definitely or indirectly lost block.
Registered only in builds without sanitizers (valgrind cannot run those).
"""

import re
import shutil
import signal

from harness import TestSkip, echo_session, expect, expect_eq, free_address, get_metrics, get_stats, \
    log_stream, wait_until, write_config

DEADLINE = 180


def run(t):
    valgrind = shutil.which('valgrind')
    if valgrind is None:
        raise TestSkip('valgrind is not installed')
    report = t.path('valgrind.log')
    wrapper = [valgrind, '--leak-check=full', '--errors-for-leak-kinds=definite,indirect',
               '--error-exitcode=99', f'--log-file={report}']

    demos = {name: t.demo_server(name) for name in ('a', 'b')}
    listen, other_listen, stats = free_address(), free_address(), free_address()

    def service(name, address, servers):
        return {'name': name, 'listen': address, 'scheduler': 'rr',
                'health_check': {'interval': '200ms', 'timeout': '100ms', 'rise': 1, 'fall': 2},
                'servers': [{'name': s, 'address': demos[s].address} for s in servers]}

    config = {'global': {'workers': 2}, 'stats': {'listen': stats},
              'services': [service('web', listen, 'a')]}
    d = t.daemon(config, prefix=wrapper, start=False)
    d.start(timeout=60)  # valgrind starts it many times slower
    log_stream('fulcrum is listening under valgrind')

    servers = [echo_session(listen, n, timeout=20)[0] for n in range(6)]
    expect_eq(servers, ['a'] * 6, 'servers of the first sessions')
    expect_eq(get_stats(stats, timeout=20)['services'][0]['name'], 'web', 'service in /stats')
    get_metrics(stats, timeout=20)

    config['services'] = [service('web', listen, 'ab'), service('other', other_listen, 'b')]
    write_config(d.config_path, config)
    d.send_signal(signal.SIGHUP)
    d.wait_for_log(lambda r: r.message == 'reloaded' and r.fields.get('generation') == '2', 60)
    d.wait_for_log(lambda r: r.message == 'listening' and r.fields.get('service') == 'other', 30)

    def all_up():
        web = get_stats(stats, timeout=20)['services']
        return all(server['state'] == 'up' for s in web for server in s['servers'])
    wait_until(all_up, 30, 'every server up after the reload')
    servers = sorted(echo_session(listen, n, timeout=20)[0] for n in range(6))
    expect_eq(servers, ['a'] * 3 + ['b'] * 3, 'servers of the sessions after the reload')
    expect_eq(echo_session(other_listen, 0, timeout=20)[0], 'b', 'server of service other')
    log_stream('reloaded; sessions alternate a and b')

    d.stop(timeout=90)
    with open(report) as f:
        text = f.read()
    expect('ERROR SUMMARY: 0 errors' in text, f'valgrind found errors:\n{text[-6000:]}')
    for kind in ('definitely', 'indirectly'):
        lost = re.search(rf'{kind} lost: ([\d,]+) bytes', text)
        expect(lost is None or lost.group(1) == '0', f'valgrind: {lost and lost.group(0)}:\n{text[-6000:]}')
    log_stream('valgrind: 0 errors, no leak')
