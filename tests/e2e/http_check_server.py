"""A check port for HTTP(S) health checks, served by the test itself.

Each connection gets one answer: the request's head is read to its blank
line and recorded exactly (request line, header lines in order), then
`HTTP/1.1 STATUS` with an empty body is sent and the connection closed.
`status` may be changed at any time. Bytes that cannot begin a request
line (such as a TLS ClientHello) get `400 Bad Request` at once, as from
nginx or Python's http.server. With `tls` (an ssl.SSLContext) the
connection is TLS first; a handshake that fails is recorded in
`handshake_errors`, not as a failure of the test, and whether each one
that succeeded resumed a session in `resumed`.
"""

import http
import re
import ssl
import threading

from harness import TestFailure, expect_eq, free_address, get_stats, health_transitions, log_stream, wait_until

HEAD_LIMIT = 64 * 1024


class CheckRequest:
    def __init__(self, line, headers):
        self.line = line          # `GET /path HTTP/1.1`
        self.headers = headers    # [(name, value)] as sent, in order

    def header(self, name):
        """The values of header `name` (any case)."""
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return f'CheckRequest({self.line!r}, {self.headers!r})'


class HttpCheckServer:
    def __init__(self, t, name, status=200, tls=None):
        self.status = status
        self.tls = tls
        self.lock = threading.Lock()
        self.requests = []
        self.handshake_errors = []
        self.resumed = []  # with `tls`: per handshake, whether it resumed a session
        self.server = t.tcp_server(self._handle, name=name, conn_timeout=10)
        self.address = self.server.address
        self.port = int(self.address.rsplit(':', 1)[1])

    def seen(self):
        with self.lock:
            return list(self.requests)

    def _handle(self, conn, peer):
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError) as e:
                with self.lock:
                    self.handshake_errors.append(e)
                return
            with self.lock:
                self.resumed.append(conn.session_reused)
        try:
            self._answer(conn)
        finally:
            if self.tls is not None:
                conn.close()

    def _answer(self, conn):
        head = b''
        while b'\r\n\r\n' not in head:
            data = conn.recv(4096)
            if not data:
                return
            head += data
            if not re.match(rb'[A-Z]{1,16}( |$)', head[:17]):
                conn.sendall(b'HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
                return
            if len(head) > HEAD_LIMIT:
                raise TestFailure(f'request head longer than {HEAD_LIMIT} bytes: {head[:200]!r}')
        lines = head.split(b'\r\n\r\n', 1)[0].decode('latin-1').split('\r\n')
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(':')
            if not sep:
                raise TestFailure(f'header line without a colon: {line!r}')
            headers.append((name, value.strip()))
        status = self.status
        with self.lock:
            self.requests.append(CheckRequest(lines[0], headers))
        phrase = http.HTTPStatus(status).phrase
        conn.sendall(f'HTTP/1.1 {status} {phrase}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'.encode())


class CheckedServices:
    """A fulcrum with one service per name of `check_ports` ({name: (check
    port, `http` settings)}): a demo server NAME on its data port as server
    `s`, checked with `check` on that check port. server(name) is s's
    /stats entry; goes(name, state, reason) waits for s to reach `state`,
    then for its one `server STATE` line (active check, `reason`) and, when
    down, for `reason` in /stats health.last_error."""

    def __init__(self, t, check_ports, check):
        data = {name: t.demo_server(name) for name in check_ports}
        self.stats_address = free_address()
        services = [{'name': name, 'listen': free_address(), 'scheduler': 'rr',
                     'health_check': dict(check, port=port, http=http),
                     'servers': [{'name': 's', 'address': data[name].address}]}
                    for name, (port, http) in check_ports.items()]
        self.daemon = t.daemon({'stats': {'listen': self.stats_address}, 'services': services})

    def server(self, name):
        stats = get_stats(self.stats_address)
        return next(v for s in stats['services'] if s['name'] == name for v in s['servers'] if v['name'] == 's')

    def _last_transition(self, name):
        transitions = health_transitions(self.daemon, service=name, server='s')
        return transitions[-1] if transitions else None

    def goes(self, name, state, reason):
        wait_until(lambda: self.server(name)['state'] == state, 15, f'{name}/s to be {state}', interval=0.05)
        # The log thread writes the line after the state changed.
        transition = wait_until(
            lambda: (self._last_transition(name) or {}).get('state') == state and self._last_transition(name),
            5, f'a `server {state}` line for {name}/s', interval=0.05)
        expect_eq((transition['reason'], transition['check']), (reason, 'active'), f'{name}/s: `server {state}` line')
        if state == 'down':
            expect_eq(self.server(name)['health']['last_error'], reason, f'{name}/s: /stats health.last_error')
        log_stream(f'{name}/s {state}: {reason}')
