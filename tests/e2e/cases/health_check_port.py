"""A check on its own port: `port` sends the checks there, sessions go to the data port.

Server `app`: a data port (a test server that reads the PROXY v1 line the
service sends, greets with `hello from data`, holds until EOF) and, on
another port of the same address, a check port served by the test in one of
these modes:
  ok      reads `HEALTH?\\r\\n`, answers `status: re`, 50 ms later
          `ady\\r\\n` (the expected `ready` split across two reads), holds;
  wrong   answers `status: maintenance\\r\\n`, holds;
  silent  answers nothing, holds;
  close   closes without an answer.
Service `app` (rr, proxy_protocol v1): health checks every 200 ms, timeout
200 ms, rise 1, fall 1, `port: CHECK_PORT`, `send: "HEALTH?\\r\\n"`,
`expect: "ready"`.
  - In mode ok, checks reach the check port; each connection there carries
    exactly `HEALTH?\\r\\n` first (never a PROXY header); app stays up.
    5 sessions reach the data port, which sees exactly 5 connections, each
    starting with a PROXY line: no check ever went there.
  - wrong: app goes down with `reason="expect mismatch"` (log and /stats
    health.last_error); silent: last_error becomes `timeout`; close: it
    becomes `connection closed`; ok: app comes back up (`check passed`).
  - 5 more sessions reach the data port (10 connections there in all).
  - The check port closes: app goes down with `connect refused` while its
    data port still listens.
On the issue17 configuration without the probe (port, send and expect
ignored) the check port never sees a connection.
"""

import threading
import time

from harness import expect, expect_eq, free_address, get_stats, greeted_session, health_transitions, log_stream, \
    wait_until

DEADLINE = 60
SEND = b'HEALTH?\r\n'


def run(t):
    lock = threading.Lock()
    mode = ['ok']
    check_payloads = []  # the first len(SEND) bytes of each check connection
    proxy_lines = []

    def check_handler(conn, peer):
        data = b''
        while len(data) < len(SEND):
            chunk = conn.recv(len(SEND) - len(data))
            if not chunk:
                break
            data += chunk
        with lock:
            check_payloads.append(data)
            now = mode[0]
        if now == 'close':
            return
        if now == 'ok':
            conn.sendall(b'status: re')
            time.sleep(0.05)
            conn.sendall(b'ady\r\n')
        elif now == 'wrong':
            conn.sendall(b'status: maintenance\r\n')
        try:
            while conn.recv(4096):
                pass
        except OSError:
            pass  # fulcrum may reset a check connection it is done with

    def data_handler(conn, peer):
        line = b''
        while not line.endswith(b'\r\n') and len(line) < 108:
            byte = conn.recv(1)
            if not byte:
                break
            line += byte
        with lock:
            proxy_lines.append(line)
        conn.sendall(b'hello from data\n')
        while conn.recv(4096):
            pass

    check = t.tcp_server(check_handler, name='check')
    data = t.tcp_server(data_handler, name='data')
    check_port = int(check.address.split(':')[1])
    stats_address = free_address()
    listen = free_address()
    d = t.daemon({
        'stats': {'listen': stats_address},
        'services': [{'name': 'app', 'listen': listen, 'scheduler': 'rr', 'proxy_protocol': 'v1',
                      'health_check': {'interval': '200ms', 'timeout': '200ms', 'rise': 1, 'fall': 1,
                                       'port': check_port, 'send': SEND.decode(), 'expect': 'ready'},
                      'servers': [{'name': 'app', 'address': data.address}]}],
    })

    def app():
        return get_stats(stats_address)['services'][0]['servers'][0]

    def set_mode(new):
        with lock:
            mode[0] = new

    wait_until(lambda: check.accepted >= 3, 5, 'three checks on the check port')
    expect_eq(app()['state'], 'up', 'state of app with its check port answering')
    expect_eq(app()['health']['last_error'], None, 'health.last_error of app')
    names = [greeted_session(listen, what=f'session {n}')[0] for n in range(5)]
    expect_eq(names, ['data'] * 5, 'servers of 5 sessions')
    expect_eq(data.accepted, 5, 'connections to the data port (5 sessions, no check)')

    set_mode('wrong')
    wait_until(lambda: app()['state'] == 'down', 5, 'app down on a wrong answer')
    expect_eq(app()['health']['last_error'], 'expect mismatch', 'health.last_error after a wrong answer')
    set_mode('silent')
    wait_until(lambda: app()['health']['last_error'] == 'timeout', 5, 'last_error `timeout` on no answer')
    set_mode('close')
    wait_until(lambda: app()['health']['last_error'] == 'connection closed', 5,
               'last_error `connection closed` on a close without an answer')
    set_mode('ok')
    wait_until(lambda: app()['state'] == 'up', 5, 'app up again')
    names = [greeted_session(listen, what=f'session {n}')[0] for n in range(5, 10)]
    expect_eq(names, ['data'] * 5, 'servers of 5 more sessions')
    expect_eq(data.accepted, 10, 'connections to the data port (10 sessions, no check)')

    check.close()
    wait_until(lambda: app()['state'] == 'down', 5, 'app down with its check port closed')
    expect_eq(app()['health']['last_error'], 'connect refused', 'health.last_error with the check port closed')
    # The log thread writes the line after /stats shows the state.
    wait_until(lambda: len(health_transitions(d, 'app', 'app')) == 3, 5, 'the third transition of app logged')
    expect_eq([(x['state'], x['reason'], x['check']) for x in health_transitions(d, 'app', 'app')],
              [('down', 'expect mismatch', 'active'), ('up', 'check passed', 'active'),
               ('down', 'connect refused', 'active')], 'health transitions of app')

    with lock:
        payloads, lines = list(check_payloads), list(proxy_lines)
    expect(all(p == SEND for p in payloads), f'check connections began with something else than {SEND!r}: '
           f'{[p for p in payloads if p != SEND][:5]}')
    expect_eq(len(lines), 10, 'PROXY lines on the data port')
    expect(all(line.startswith(b'PROXY TCP4 127.0.0.1 127.0.0.1 ') for line in lines), f'PROXY lines: {lines}')
    log_stream(f'{len(payloads)} checks on the check port, {len(lines)} sessions on the data port')
    t.check_servers()
    d.stop()
