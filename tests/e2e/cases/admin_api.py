"""The write API over plain HTTP: 403 without a token file, 401 without or
with a wrong token, a drain that really stops new sessions, ready that
restores them, strict bodies (400), unknown names (404), names that need
percent-encoding, and one `admin change` log line per change with the peer.
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
             'servers': [{'name': 'a', 'address': a.address}, {'name': 'b', 'address': b.address}]},
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
    expect_eq((body['state'], body['weight']), ('maint', 7), 'state and weight in the reply')
    expect_eq(split(listen, 3), {'a': 3}, 'sessions while b is in maintenance')
    post(stats, path_b, '{"state":"ready"}', token=TOKEN)

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
    expect_eq(len(changes), 5, 'admin change log lines (drain, ready, maint+weight, ready, v6 drain)')
    expect_eq([(r.fields['server'], r.fields['state'], r.fields['weight']) for r in changes[:3]],
              [('b', 'drain', '-'), ('b', 'ready', '-'), ('b', 'maint', '7')], 'logged changes')
    expect(all(r.fields['peer'].startswith('127.0.0.1:') for r in changes), 'peer address in every change')

    # Without a token file, the write API answers 403 whatever is sent.
    stats2 = free_address()
    t.daemon({'stats': {'listen': stats2},
              'services': [{'name': 'web', 'listen': free_address(), 'servers': [{'address': a.address}]}]},
             name='notoken')
    expect_eq(post(stats2, server_path('web', a.address), '{"state":"drain"}', token=TOKEN).status, 403,
              'no admin_token_file configured')
    expect_eq(post(stats2, '/api/v1/reload', '', token=TOKEN).status, 403, 'reload without a token file')
