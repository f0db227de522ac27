"""A reload that turns a service's health check off brings its servers marked
down back up (SPEC.md "Health checks beyond connect": only an operator's
drain or maint stays).

fulcrum (one worker, stats), service `web` (rr, health checks every 100 ms,
rise 2, fall 2) over demo server a and d, an address that refuses.
  1. d goes down by its health checks: one `server down` line
     (`reason="connect refused" streak=2`); /stats says d `down`.
  2. A demo server starts on d's address (d would now pass a check, but
     none runs after step 3) and the file is rewritten without the health
     check; SIGHUP: `reloaded generation=2`. Right after, /stats says d
     `up`, a `up`, and six sessions alternate a and d (rr): 3 each, all
     answered by the server they name. Before the control plane, nothing
     ever set d's health verdict again: d stayed `down` for good and every
     session went to a.
  3. A third reload that drains d through the admin API first keeps the
     operator's drain: d `drain` after the reload, sessions all on a.
"""

import collections
import signal

from harness import expect_eq, free_address, get_stats, greeted_session, health_transitions, http_request, \
    log_stream, wait_until, write_config

DEADLINE = 60
TOKEN = 'reload-check-off-token'


def states(stats_address):
    return {v['name']: v['state'] for v in get_stats(stats_address)['services'][0]['servers']}


def run(t):
    a = t.demo_server('a')
    d_address = free_address()
    listen, stats = free_address(), free_address()
    token_file = t.path('token')
    with open(token_file, 'w') as f:
        f.write(TOKEN)
    service = {'name': 'web', 'listen': listen, 'scheduler': 'rr', 'retries': 1,
               'health_check': {'interval': '100ms', 'timeout': '100ms', 'rise': 2, 'fall': 2},
               'servers': [{'name': 'a', 'address': a.address}, {'name': 'd', 'address': d_address}]}
    config = {'global': {'workers': 1}, 'stats': {'listen': stats, 'admin_token_file': token_file},
              'services': [service]}
    daemon = t.daemon(config)

    # 1. d down by its checks.
    wait_until(lambda: health_transitions(daemon, 'web', 'd'), 10, 'd marked down by its health checks')
    expect_eq([(x['state'], x['reason'], x['streak']) for x in health_transitions(daemon, 'web', 'd')],
              [('down', 'connect refused', 2)], 'health transitions of d')
    expect_eq(states(stats), {'a': 'up', 'd': 'down'}, 'states with d failing its checks')

    # 2. The check is turned off by a reload.
    t.demo_server('d', address=d_address)
    del service['health_check']
    write_config(daemon.config_path, config)
    daemon.send_signal(signal.SIGHUP)
    daemon.wait_for_log(lambda r: r.message == 'reloaded', timeout=10)
    expect_eq(daemon.find_logs('reloaded')[-1].fields['generation'], '2', 'generation after the reload')
    expect_eq(states(stats), {'a': 'up', 'd': 'up'}, 'states once the health check is off')
    served = collections.Counter(greeted_session(listen, what=f"session {i}")[0] for i in range(6))
    log_stream(f'sessions with the check off: {dict(served)}')
    expect_eq(served, {'a': 3, 'd': 3}, 'sessions per server (rr) with the check off')

    # 3. An operator's drain survives the next reload.
    reply = http_request(stats, 'POST', '/api/v1/services/web/servers/d', body='{"state": "drain"}',
                         headers={'Authorization': f'Bearer {TOKEN}'})
    expect_eq(reply.status, 200, 'drain d through the admin API')
    daemon.send_signal(signal.SIGHUP)
    daemon.wait_for_log(lambda r: r.message == 'reloaded', timeout=10, count=2)
    expect_eq(states(stats), {'a': 'up', 'd': 'drain'}, 'states after a reload with d drained')
    served = collections.Counter(greeted_session(listen, what=f"session {i}")[0] for i in range(4))
    expect_eq(served, {'a': 4}, 'sessions per server with d drained')
    daemon.stop()
