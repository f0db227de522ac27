"""Failed admin authentications are logged, rate-limited (issue 15, 2.8).

fulcrum with stats and an admin token, service `web` over demo server a.
40 admin requests that fail authentication, one after the other, each on
its own connection: 30 with a wrong token (to /api/v1/services/web/servers/a)
and 10 without an Authorization header (to /api/v1/reload), alternating in
blocks. Each answers 401. fulcrum logs
`admin authentication failed peer=IP:PORT path=PATH reason=REASON` (warn,
reason `wrong token` or `no token`) for at most AUTH_LOG_BURST (5) of them
a second (the log's shared rate limit), and for the others, once their
second is over, `log lines suppressed message="admin authentication
failed" count=N` (warn). So: every
logged line is one of the 40 requests (its peer, path and reason), none
twice; the lines and the suppressed counts add up to exactly 40; fewer than
40 lines (some were suppressed), no more than 5 for each second the
requests took (plus one). A request with the right token is not logged as
a failure; after a quiet second, the next failure has its own line again.
"""

import http.client
import time

from harness import expect, expect_eq, free_address, log_stream, parse_address, wait_until

DEADLINE = 60
TOKEN = 'auth-log-token'
FAILURES = 40
AUTH_LOG_BURST = 5
SERVER_PATH = '/api/v1/services/web/servers/a'


def post(stats, path, body, token):
    """One POST on its own connection; returns (status, the client's own IP:PORT)."""
    host, port = parse_address(stats)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.connect()
        me = '%s:%d' % conn.sock.getsockname()[:2]
        headers = {'Content-Type': 'application/json'}
        if token is not None:
            headers['Authorization'] = f'Bearer {token}'
        conn.request('POST', path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, me
    finally:
        conn.close()


def failure_lines(d):
    return [r for r in d.logs() if r.message == 'admin authentication failed']


def suppressed_counts(d):
    out = []
    for r in d.logs():
        if r.message == 'log lines suppressed' and r.fields.get('message') == 'admin authentication failed':
            expect_eq(r.level, 'warn', f'level of {r.raw}')
            expect_eq(set(r.fields), {'message', 'count'}, f'fields of {r.raw}')
            out.append(int(r.fields['count']))
    return out


def run(t):
    a = t.demo_server('a')
    stats = free_address()
    token_file = t.token_file(TOKEN + '\n')
    d = t.daemon({'global': {'workers': 1}, 'stats': {'listen': stats, 'admin_token_file': token_file},
                  'services': [{'name': 'web', 'listen': free_address(),
                                'servers': [{'name': 'a', 'address': a.address}]}]})

    expected = {}
    started = time.monotonic()
    for i in range(FAILURES):
        if (i // 5) % 4 == 3:
            status, me = post(stats, '/api/v1/reload', '', None)
            expected[me] = ('/api/v1/reload', 'no token')
        else:
            status, me = post(stats, SERVER_PATH, '{"weight":2}', 'wrong-token')
            expected[me] = (SERVER_PATH, 'wrong token')
        expect_eq(status, 401, f'failed authentication {i}')
    took = time.monotonic() - started
    expect_eq(len(expected), FAILURES, 'distinct client addresses of the failed requests')

    def accounted():
        return len(failure_lines(d)) + sum(suppressed_counts(d)) == FAILURES
    wait_until(accounted, 5, f'log lines and suppressed counts adding up to {FAILURES}', interval=0.1)
    lines, counts = failure_lines(d), suppressed_counts(d)
    log_stream(f'{FAILURES} failures in {took:.2f}s: {len(lines)} lines, suppressed counts {counts}')
    seen = set()
    for r in lines:
        expect_eq(r.level, 'warn', f'level of {r.raw}')
        peer = r.fields.get('peer')
        expect(peer in expected and peer not in seen, f'a line for no request, or twice: {r.raw}')
        seen.add(peer)
        expect_eq(r.fields, {'peer': peer, 'path': expected[peer][0], 'reason': expected[peer][1]},
                  f'fields of {r.raw}')
    expect(len(lines) < FAILURES, f'all {FAILURES} failures logged, none suppressed')
    expect(len(lines) <= AUTH_LOG_BURST * (int(took) + 2),
           f'{len(lines)} lines for failures within {took:.2f}s: more than {AUTH_LOG_BURST} a second')

    status, _ = post(stats, SERVER_PATH, '{"weight":2}', TOKEN)
    expect_eq(status, 200, 'admin request with the right token')
    time.sleep(1.5)  # a quiet second: the next failure is logged again
    status, me = post(stats, SERVER_PATH, '{"weight":1}', 'wrong-again')
    expect_eq(status, 401, 'failure after a quiet second')
    found = d.wait_for_log(lambda r: r.message == 'admin authentication failed' and r.fields.get('peer') == me)
    expect_eq(found[0].fields, {'peer': me, 'path': SERVER_PATH, 'reason': 'wrong token'},
              'the line of the failure after a quiet second')
    expect_eq(len(failure_lines(d)), len(lines) + 1, 'failure lines: the right token added none')
    d.stop()
