"""The write API over plain HTTP: 403 without a token file, 401 without or
with a wrong token, a drain that really stops new sessions, ready that
restores them, a weight given with maint that stays after ready, ready of a
server the file weights 0 (200, still drain, with a note saying why), strict
bodies (400), unknown names (404), names that need percent-encoding, and one
`admin change` log line per change with the peer, the request and the old
and new state and weight in force.
"""

import json
import urllib.parse

from harness import expect, expect_eq, free_address, greeted_session, http_request

DEADLINE = 60
TOKEN = 's3cret-token'


def post(stats, path, body, token=None):
    headers = {'Content-Type': 'application/json'}
    if token is not None:
        headers['Authorization'] = f'Bearer {token}'
    return http_request(stats, 'POST', path, body=body, headers=headers)


def server_path(service, server):
    return f'/api/v1/services/{urllib.parse.quote(service, safe="")}/servers/{urllib.parse.quote(server, safe="")}'


def split(listen, count):
    seen = {}
    for _ in range(count):
        name, _client = greeted_session(listen)
        seen[name] = seen.get(name, 0) + 1
    return seen


def run(t):
    a = t.demo_server('a')
    b = t.demo_server('b')
    v6 = t.demo_server('v6', host='::1')
    token_file = t.token_file(f'\n  {TOKEN}\t\n')  # surrounding whitespace is ignored
    listen = free_address()
    stats = free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'stats': {'listen': stats, 'admin_token_file': token_file},
        'services': [
            {'name': 'web', 'listen': listen, 'scheduler': 'rr',
             'servers': [{'name': 'a', 'address': a.address}, {'name': 'b', 'address': b.address},
                         {'name': 'z', 'address': b.address, 'weight': 0}]},
            {'name': 'six', 'listen': free_address(), 'servers': [{'address': v6.address}]},
        ],
    })
    path_b = server_path('web', 'b')

    expect_eq(post(stats, path_b, '{"state":"drain"}').status, 401, 'no Authorization header')
    reply = post(stats, path_b, '{"state":"drain"}', token='wrong')
    expect_eq(reply.status, 401, 'wrong token')
    expect_eq(reply.headers.get('WWW-Authenticate'), 'Bearer', 'WWW-Authenticate on 401')
    expect_eq(post(stats, path_b, '{"state":"drain"}', token=TOKEN + 'x').status, 401, 'token with a suffix')
    expect_eq(split(listen, 4), {'a': 2, 'b': 2}, 'split before any change')

    reply = post(stats, path_b, '{"state":"drain"}', token=TOKEN)
    expect_eq(reply.status, 200, 'drain with the right token')
    server = json.loads(reply.body)
    expect_eq((server['name'], server['state']), ('b', 'drain'), 'the reply is the server\'s JSON')
    expect_eq(split(listen, 6), {'a': 6}, 'sessions while b drains')

    reply = post(stats, path_b, '{"state":"ready"}', token=TOKEN)
    expect_eq((reply.status, json.loads(reply.body)['state']), (200, 'up'), 'ready')
    expect_eq(split(listen, 4), {'a': 2, 'b': 2}, 'split after ready')

    reply = post(stats, path_b, '{"state":"maint","weight":7}', token=TOKEN)
    expect_eq(reply.status, 200, 'maint with a weight')
    body = json.loads(reply.body)
    expect_eq((body['state'], body['weight'], body['assigned_weight'], body['configured_weight']), ('maint', 0, 7, 1),
              'state and weights (in force, assigned, configured) in the reply')
    expect_eq(split(listen, 3), {'a': 3}, 'sessions while b is in maintenance')
    body = json.loads(post(stats, path_b, '{"state":"ready"}', token=TOKEN).body)
    expect_eq((body['state'], body['weight'], 'note' in body), ('up', 7, False), 'ready keeps the weight set with maint')

    # ready cannot undo the file's weight 0, and says so.
    reply = post(stats, server_path('web', 'z'), '{"state":"ready"}', token=TOKEN)
    body = json.loads(reply.body)
    expect_eq((reply.status, body['state'], body['weight'], body['note']),
              (200, 'drain', 0, 'still drain: its configured weight is 0'), 'ready of a server weighted 0 in the file')

    for bad, reason in [('', 'expected a JSON object'), ('{}', 'nothing to change'),
                        ('{"state":"up"}', 'state must be'), ('{"weight":5000}', 'weight must be'),
                        ('{"colour":"red"}', 'unknown key')]:
        reply = post(stats, path_b, bad, token=TOKEN)
        expect_eq(reply.status, 400, f'body {bad!r}')
        expect(reason in reply.body.decode(), f'reason for {bad!r}: {reply.body!r}')
    expect_eq(post(stats, server_path('web', 'nope'), '{"state":"drain"}', token=TOKEN).status, 404, 'unknown server')
    expect_eq(post(stats, server_path('nope', 'a'), '{"state":"drain"}', token=TOKEN).status, 404, 'unknown service')
    expect_eq(http_request(stats, 'GET', path_b).status, 405, 'GET on the write API')

    # A server named by its IPv6 address needs percent-encoding in the path.
    reply = post(stats, server_path('six', v6.address), '{"state":"drain"}', token=TOKEN)
    expect_eq((reply.status, json.loads(reply.body)['name']), (200, v6.address), 'IPv6-named server')

    d.stop()
    changes = [r for r in d.logs() if r.message == 'admin change']
    expect_eq(len(changes), 6, 'admin change log lines (drain, ready, maint+weight, ready, ready z, v6 drain)')
    expect_eq([tuple(r.fields[key] for key in ('server', 'request_state', 'request_weight', 'old_state', 'new_state',
                                               'old_weight', 'new_weight')) for r in changes[:5]],
              [('b', 'drain', '-', 'up', 'drain', '1', '0'), ('b', 'ready', '-', 'drain', 'up', '0', '1'),
               ('b', 'maint', '7', 'up', 'maint', '1', '0'), ('b', 'ready', '-', 'maint', 'up', '0', '7'),
               ('z', 'ready', '-', 'drain', 'drain', '0', '0')], 'logged changes')
    expect(all(r.fields['peer'].startswith('127.0.0.1:') for r in changes), 'peer address in every change')

    # Without a token file, the write API answers 403 whatever is sent.
    stats2 = free_address()
    t.daemon({'stats': {'listen': stats2},
              'services': [{'name': 'web', 'listen': free_address(), 'servers': [{'address': a.address}]}]},
             name='notoken')
    expect_eq(post(stats2, server_path('web', a.address), '{"state":"drain"}', token=TOKEN).status, 403,
              'no admin_token_file configured')
    expect_eq(post(stats2, '/api/v1/reload', '', token=TOKEN).status, 403, 'reload without a token file')
