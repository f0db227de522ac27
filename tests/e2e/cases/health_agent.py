"""The agent check (health_check.agent): HAProxy's agent-check words, read
from an agent on each server's address, change the server as SPEC.md says,
and the operator's state and weight win over them.

Two demo servers, a on 127.0.0.2 and b on 127.0.0.3 (weight 10 each, a with
max_connections 5), each with an agent on the same port of its own address
(the agent port is one per service), written by this test: it answers every
connection with the line the test set, then closes. fulcrum (one worker,
stats with the admin API), service `web` (rr, health checks every 500 ms,
agent asked every 200 ms). b's agent always says `up`. For each line a's
agent says, the test waits (10 s at most) for /stats to show what it means,
then checks the sessions where it matters:
  - `up`: a up, weight 10, health.agent.says up; sessions alternate a, b;
  - `drain`: a drain, its agent.admin drain; 4 sessions all on b;
  - `ready`: a up again; `maint`: a maint; `READY,50%` (upper case, comma):
    a up, weight 5 (assigned and configured weight 10, weight_percent 50);
  - `100% maxconn:1`: sessions.max 1 and fulcrum_server_max_connections 1;
    with one session held on a, 4 more all go to b;
  - `maxconn:0 down # disk full`: a down at once (one `server down` line,
    reason "agent says down: disk full", check=agent, streak=needed=1),
    health.last_error the same; sessions all on b; then `up`: a `server
    up` line with reason "agent says up", a up;
  - the operator drains a through the admin API: `ready up` keeps it
    drained; the operator's ready puts it up; the operator's weight 3
    stays 3 while the agent says `80%`;
  - `hello`: no word understood: agent.last_error "agent reply not
    understood" and nothing changes; the agent stops listening:
    agent.last_error "agent: connect refused", a stays up (an agent that
    cannot be reached changes nothing, as in HAProxy);
  - the agent listens again, says `maint 50%`: a maint; a reload without
    the agent (logged as `service changed` with settings=changed) brings a
    back up at weight 10 with health.agent null.
Every agent line taken logs one `agent changed` line when it changes the
agent's admin, weight or limit word (checked by count for a).
`fulcrumctl servers` prints one `agent` line per server below its table:
`agent       web/a: said "READY,50%", Ns ago` and the same for b's `up`;
after `hello` and after the agent stopped, a's line goes on with `; last
error: ` and the agent check's error; none after the reload without the
agent.
"""

import collections
import re
import signal

from agent_check_server import AgentCheckServer
from harness import expect, expect_eq, free_address, free_port_on, fulcrumctl_notes, get_metrics, \
    get_stats, greeted_session, health_transitions, http_request, log_stream, open_greeted, wait_until, write_config

DEADLINE = 120
TOKEN = 'health-agent-token'


def run(t):
    a = t.demo_server('a', host='127.0.0.2')
    b = t.demo_server('b', host='127.0.0.3')
    port = free_port_on('127.0.0.2', '127.0.0.3')
    agent_a = AgentCheckServer(t, 'agent-a', host='127.0.0.2', port=port)
    AgentCheckServer(t, 'agent-b', host='127.0.0.3', port=port)
    listen, stats = free_address(), free_address()
    token_file = t.token_file(TOKEN)
    service = {'name': 'web', 'listen': listen, 'scheduler': 'rr',
               'health_check': {'interval': '500ms', 'timeout': '500ms', 'rise': 1, 'fall': 2,
                                'agent': {'port': port, 'interval': '200ms'}},
               'servers': [{'name': 'a', 'address': a.address, 'weight': 10, 'max_connections': 5},
                           {'name': 'b', 'address': b.address, 'weight': 10}]}
    config = {'global': {'workers': 1}, 'stats': {'listen': stats, 'admin_token_file': token_file},
              'services': [service]}
    daemon = t.daemon(config)

    def server_a():
        return next(v for v in get_stats(stats)['services'][0]['servers'] if v['name'] == 'a')

    def shown(what, **expected):
        """Waits until server a's /stats entry holds `expected` (dotted keys
        reach into health.agent and sessions)."""
        def view():
            v = server_a()
            flat = {'state': v['state'], 'weight': v['weight'], 'assigned_weight': v['assigned_weight'],
                    'configured_weight': v['configured_weight'], 'max': v['sessions']['max'],
                    'last_error': v['health']['last_error'], 'agent': v['health']['agent']}
            if v['health']['agent'] is not None:
                for key, value in v['health']['agent'].items():
                    flat['agent.' + key] = value
            return flat
        wait_until(lambda: all(view().get(k.replace('__', '.')) == e for k, e in expected.items()), 10,
                   f'{what}: server a shows {expected} (last seen {view()})')
        log_stream(f'{what}: {expected}')

    def say(line, what, **expected):
        agent_a.set_reply(line)
        shown(f'agent says {line!r} ({what})', **expected)

    def sessions(n, what):
        return collections.Counter(greeted_session(listen, what=f'{what} {i}')[0] for i in range(n))

    def admin(body):
        reply = http_request(stats, 'POST', '/api/v1/services/web/servers/a', body=body,
                             headers={'Authorization': f'Bearer {TOKEN}'})
        expect_eq(reply.status, 200, f'admin request {body}')

    def ctl_agents(what, *expected):
        """fulcrumctl's `agent` lines match `expected` (regular expressions,
        in order)."""
        lines = [line for line in fulcrumctl_notes(stats) if line.startswith('agent ')]
        expect(len(lines) == len(expected) and all(re.fullmatch(e, x) for e, x in zip(expected, lines)),
               f'{what}: fulcrumctl agent lines {lines}, expected {expected}')

    shown('start', state='up', weight=10, agent__says='up', agent__reply='up', agent__admin='ready',
          agent__weight_percent=None, agent__max_connections=None, agent__last_error=None)
    expect_eq(sessions(4, 'up'), {'a': 2, 'b': 2}, 'sessions while both agents say up')

    say('drain', 'a drained', state='drain', weight=0, agent__admin='drain')
    expect_eq(sessions(4, 'drain'), {'b': 4}, 'sessions while a drains')
    say('ready', 'back', state='up', weight=10, agent__admin='ready')
    say('maint', 'maintenance', state='maint', weight=0, agent__admin='maint')
    say('READY,50%', 'half weight', state='up', weight=5, assigned_weight=10, configured_weight=10,
        agent__weight_percent=50)
    ctl_agents('half weight', r'agent       web/a: said "READY,50%", \d+s ago',
               r'agent       web/b: said "up", \d+s ago')

    say('100% maxconn:1', 'one session at most', state='up', weight=10, max=1, agent__max_connections=1)
    expect_eq(get_metrics(stats)[0].get('fulcrum_server_max_connections', service='web', server='a'), 1.0,
              'fulcrum_server_max_connections of a')
    held = []
    try:
        while len(held) < 2:  # rr: the first or second session is a's
            sock, name = open_greeted(listen, what='held session')
            held.append((sock, name))
            if name == 'a':
                break
        expect('a' in [name for _, name in held], f'a session held on a: {[n for _, n in held]}')
        expect_eq(sessions(4, 'a full'), {'b': 4}, 'sessions while a holds its one session')
    finally:
        for sock, _ in held:
            sock.close()

    say('maxconn:0 down # disk full', 'down', state='down', weight=0, max=0, agent__says='down',
        last_error='agent says down: disk full')
    expect_eq(sessions(4, 'down'), {'b': 4}, 'sessions while the agent says down')
    say('up', 'up again', state='up', agent__says='up')
    expect_eq([(x['state'], x['reason'], x['check'], x['streak']) for x in health_transitions(daemon, 'web', 'a')],
              [('down', 'agent says down: disk full', 'agent', 1), ('up', 'agent says up', 'agent', 1)],
              'health transitions of a')

    # The operator's state and weight win.
    admin('{"state": "drain"}')
    say('ready up', 'operator drained', state='drain', agent__reply='ready up')
    admin('{"state": "ready"}')
    shown('operator ready', state='up', weight=10)
    admin('{"weight": 3}')
    say('80%', 'operator weight', state='up', weight=3, assigned_weight=3, agent__weight_percent=80)

    # Failures change nothing.
    say('hello', 'not understood', state='up', weight=3, agent__last_error='agent reply not understood',
        agent__reply='80%')
    ctl_agents('not understood', r'agent       web/a: said "80%", \d+s ago; last error: agent reply not understood',
               r'agent       web/b: said "up", \d+s ago')
    agent_a.stop_listening()
    shown('agent gone', state='up', weight=3, agent__last_error='agent: connect refused')
    ctl_agents('agent gone', r'agent       web/a: said "80%", \d+s ago; last error: agent: connect refused',
               r'agent       web/b: said "up", \d+s ago')

    # A reload without the agent forgets its word.
    agent_a = AgentCheckServer(t, 'agent-a again', 'maint 50%', host='127.0.0.2', port=port)
    shown('agent back', state='maint', agent__admin='maint', agent__weight_percent=50, agent__last_error=None)
    del service['health_check']['agent']
    write_config(daemon.config_path, config)
    daemon.send_signal(signal.SIGHUP)
    daemon.wait_for_log(lambda r: r.message == 'reloaded', timeout=10)
    shown('reloaded without the agent', state='up', weight=10, agent=None)
    expect_eq(len(daemon.find_logs('service changed', service='web', settings='changed')), 1,
              '`service changed` lines with settings=changed for a reload that only removed the agent')
    ctl_agents('reloaded without the agent')
    expect_eq(sessions(4, 'after the reload'), {'a': 2, 'b': 2}, 'sessions after the reload')

    changes = [r.fields['reply'] for r in daemon.find_logs('agent changed') if r.fields['server'] == 'a']
    expect_eq(changes, ['drain', 'ready', 'maint', 'READY,50%', '100% maxconn:1', 'maxconn:0 down # disk full',
                        '80%', 'maint 50%'], '`agent changed` lines of a')
    daemon.stop()
