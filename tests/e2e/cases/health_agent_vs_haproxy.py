"""fulcrum's agent check (`health_check.agent`) reaches HAProxy 2.6's verdicts.

fulcrum and HAProxy (mode tcp, its own config in the test's directory,
`haproxy -db`, killed by its PID; read through `show stat` on its stats
socket) balance one demo server a, weight 10, with a connect check (250 ms,
rise 2, fall 2) and an agent check every 250 ms on an agent the test
serves (tests/e2e/agent_check_server.py), HAProxy with `agent-check
agent-port P agent-inter 250ms`. HAProxy's checks come from 127.0.0.2
(`source`), fulcrum's from 127.0.0.1, so the agent knows which balancer
got which reply. After each new reply, once both got it twice, both show:

  reply          state  weight  max connections
  up             up     10      none
  down           down   10      none    (fulcrum: health.last_error `agent says down`)
  up             up     10      none
  drain          drain  10      none
  up             drain  10      none    (`up` does not end the agent's drain)
  ready          up     10      none
  maint          maint  10      none
  up             maint  10      none    (nor its maint)
  ready          up     10      none
  50%            up      5      none
  75%            up      7      none    (rounded down)
  100%           up     10      none
  maxconn:5      up     10      5
  maxconn:0      up     10      none
  drain 50%      drain   5      none    (several words in one reply)
  ready 100%     up     10      none

and hold it for 0.5 s. fulcrum's weight is /stats `weight` (in force, 0
unless up, so only compared while up), its maximum `sessions.max` (0 =
none); HAProxy's are `uweight` and `slim` (empty = none). While up, a
session through each is greeted by a; otherwise closed without a byte.

Where HAProxy differs (observed, and asserted as observed):
  - `0%`: fulcrum shows `drain` (weight 0 is a drain, as in the file);
    HAProxy `UP` with weight 0. Neither gives a new session to a.
  - An operator's drain: through fulcrum's admin API it holds while the
    agent keeps answering `ready` (SPEC: the operator wins); through
    HAProxy's `set server web/a state drain` it lasts only until the
    agent's next `ready`, which ends it. fulcrum's `ready` ends it.

The same on both: an unreachable agent (connects refused) changes nothing;
both stay up for 1 s (HAProxy shows `agent_status` L4CON).
Without fulcrum's agent check (issue17 before it, a6d28f6) the agent never
hears from fulcrum and the first step fails.
"""

import time

from agent_check_server import AgentCheckServer
from harness import TestFailure, expect_eq, free_address, get_stats, greeted_session, http_request, \
    log_stream, wait_until
from haproxy_peer import HAProxy, closed_without_a_byte, haproxy_duration

DEADLINE = 120
INTERVAL, TIMEOUT, RISE, FALL = 0.25, 0.25, 2, 2
WEIGHT = 10
BOUND = 10.0     # seconds for both to reach a verdict once both have the reply
STEADY = 0.5     # seconds over which a verdict must hold on both
TOKEN = 'agent-test-token'
FULCRUM_IP, HAPROXY_IP = '127.0.0.1', '127.0.0.2'

# reply, state, weight (when up), max connections (0 = none)
STEPS = [
    ('up', 'up', WEIGHT, 0),
    ('down', 'down', WEIGHT, 0),
    ('up', 'up', WEIGHT, 0),
    ('drain', 'drain', WEIGHT, 0),
    ('up', 'drain', WEIGHT, 0),
    ('ready', 'up', WEIGHT, 0),
    ('maint', 'maint', WEIGHT, 0),
    ('up', 'maint', WEIGHT, 0),
    ('ready', 'up', WEIGHT, 0),
    ('50%', 'up', 5, 0),
    ('75%', 'up', 7, 0),
    ('100%', 'up', WEIGHT, 0),
    ('maxconn:5', 'up', WEIGHT, 5),
    ('maxconn:0', 'up', WEIGHT, 0),
    ('drain 50%', 'drain', 5, 0),
    ('ready 100%', 'up', WEIGHT, 0),
]


def run(t):
    web = t.demo_server('a')
    agent = AgentCheckServer(t, 'agent')
    listen = {'fulcrum': free_address(), 'haproxy': free_address()}
    stats_address = free_address()
    d = t.daemon({
        'stats': {'listen': stats_address, 'admin_token_file': t.token_file(TOKEN)},
        'services': [{'name': 'web', 'listen': listen['fulcrum'], 'scheduler': 'rr',
                      'health_check': {'interval': f'{round(INTERVAL * 1000)}ms',
                                       'timeout': f'{round(TIMEOUT * 1000)}ms', 'rise': RISE, 'fall': FALL,
                                       'agent': {'port': agent.port, 'interval': f'{round(INTERVAL * 1000)}ms'}},
                      'servers': [{'name': 'a', 'address': web.address, 'weight': WEIGHT}]}],
    })
    h = HAProxy(t, 'listen web\n'
                   f'    bind {listen["haproxy"]}\n'
                   '    balance roundrobin\n'
                   f'    timeout check {haproxy_duration(TIMEOUT)}\n'
                   f'    server a {web.address} weight {WEIGHT} source {HAPROXY_IP}'
                   f' check inter {haproxy_duration(INTERVAL)} rise {RISE} fall {FALL}'
                   f' agent-check agent-port {agent.port} agent-inter {haproxy_duration(INTERVAL)}\n')

    def admin(state):
        """An operator's state for a, through fulcrum's admin API."""
        answer = http_request(stats_address, 'POST', '/api/v1/services/web/servers/a', body=f'{{"state":"{state}"}}',
                              headers={'Content-Type': 'application/json', 'Authorization': f'Bearer {TOKEN}'})
        expect_eq(answer.status, 200, f'fulcrum admin API {state}: {answer.body!r}')

    def fulcrum_view():
        server = get_stats(stats_address)['services'][0]['servers'][0]
        up = server['state'] == 'up'
        return server['state'], server['weight'] if up else None, server['sessions']['max']

    def haproxy_view():
        row = h.servers('web')['a']
        up = row['state'] == 'up'
        return row['state'], int(row['uweight']) if up else None, int(row['slim'] or 0)

    def show(expected, what, hold=STEADY):
        """Waits until each balancer's view (state, weight, max) is its
        `expected` one, checks that both hold it for `hold` seconds, then
        that a session through each is greeted by a when its view is up
        with a weight, else closed without a byte."""
        views = {'fulcrum': fulcrum_view, 'haproxy': haproxy_view}
        try:
            wait_until(lambda: all(view() == expected[who] for who, view in views.items()), BOUND,
                       f'{what}: (state, weight, max) {expected}', interval=0.02)
        except TestFailure as e:
            raise TestFailure(f'{e}; fulcrum shows {fulcrum_view()}, HAProxy {haproxy_view()}')
        held_until = time.monotonic() + hold
        while time.monotonic() < held_until:
            for who, view in views.items():
                expect_eq(view(), expected[who], f'{what}: {who}, held for {hold:g}s')
            time.sleep(0.05)
        for who, (state, weight, _) in expected.items():
            if state == 'up' and weight:
                expect_eq(greeted_session(listen[who], what=f'{what}: via {who}')[0], 'a', f'{what}: via {who}')
            else:
                closed_without_a_byte(listen[who], f'{what}: via {who}')

    def both_show(state, weight, maxconn, what, hold=STEADY):
        view = (state, weight if state == 'up' else None, maxconn)
        show({'fulcrum': view, 'haproxy': view}, what, hold)

    def reply(text, what):
        """Has the agent answer `text`; returns once both got it twice."""
        mark = agent.set_reply(text)
        checkers = {'fulcrum': FULCRUM_IP, 'haproxy': HAPROXY_IP}
        try:
            wait_until(lambda: all(agent.answered_since(mark, ip) >= 2 for ip in checkers.values()), BOUND,
                       f'{what}: fulcrum and HAProxy each answered {text!r} twice', interval=0.02)
        except TestFailure as e:
            counts = {who: agent.answered_since(mark, ip) for who, ip in checkers.items()}
            raise TestFailure(f'{e}; answers so far: {counts}')

    for text, state, weight, maxconn in STEPS:
        what = f'agent says {text!r}'
        reply(text, what)
        both_show(state, weight, maxconn, what)
        if text == 'down':
            expect_eq(get_stats(stats_address)['services'][0]['servers'][0]['health']['last_error'],
                      'agent says down', f'{what}: fulcrum health.last_error')
        expect_eq(h.servers('web')['a']['status'], {'down': 'DOWN (agent)', 'drain': 'DRAIN (agent)'}.get(
            state, state.upper()), f'{what}: HAProxy status')
        log_stream(f'{what}: both {state}, weight {weight}, max {maxconn or "none"}')

    # --- 0 %: neither gives the server a new session; fulcrum calls it a drain
    reply('0%', "agent says '0%'")
    show({'fulcrum': ('drain', None, 0), 'haproxy': ('up', 0, 0)}, "agent says '0%'")
    reply('100%', "agent says '100%'")
    both_show('up', WEIGHT, 0, "agent says '100%' after '0%'")

    # --- an operator's drain, then the agent says `ready`
    admin('drain')
    expect_eq(h.command('set server web/a state drain').strip(), '', 'HAProxy `set server web/a state drain`')
    both_show('drain', WEIGHT, 0, "operator drain while the agent says '100%'")
    reply('ready', "operator drain, then the agent says 'ready'")
    show({'fulcrum': ('drain', None, 0), 'haproxy': ('up', WEIGHT, 0)}, "operator drain, then the agent says 'ready'")
    admin('ready')
    both_show('up', WEIGHT, 0, 'operator ready')

    # --- the agent unreachable: nothing changes
    agent.stop_listening()
    both_show('up', WEIGHT, 0, 'agent unreachable', hold=1.0)
    row = h.servers('web')['a']
    expect_eq(row['agent_status'].lstrip('* '), 'L4CON', 'HAProxy agent_status with the agent gone')
    d.stop()
