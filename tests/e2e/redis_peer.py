"""Real redis-server processes for the health check tests, and a client.

start_redis(t, NAME, replica_of=ADDRESS) runs `redis-server` on a free
127.0.0.1 port without persistence (a replica of ADDRESS when given),
waits until it answers PING and returns its address; the test's context
kills it by its PID. Redis(ADDRESS) speaks RESP (the Redis protocol),
enough for INFO, SET, GET and REPLICAOF; info() reads an INFO section;
session() is one client's session through a balancer.
"""

import subprocess

from harness import TestFailure, connect, expect, free_port, require_program, wait_until


class Redis:
    """A connection speaking RESP, enough for INFO, SET, GET, REPLICAOF."""

    def __init__(self, address, timeout=5):
        self.sock = connect(address, timeout=timeout)
        self.reader = self.sock.makefile('rb')

    def close(self):
        self.reader.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()

    def command(self, *args):
        out = [f'*{len(args)}\r\n'.encode()]
        for arg in args:
            data = arg.encode() if isinstance(arg, str) else arg
            out.append(b'$%d\r\n%s\r\n' % (len(data), data))
        self.sock.sendall(b''.join(out))
        return self.reply()

    def reply(self):
        line = self.reader.readline()
        if not line.endswith(b'\r\n'):
            raise TestFailure(f'redis: incomplete reply line {line!r}')
        kind, body = line[:1], line[1:-2].decode()
        if kind == b'+':
            return body
        if kind == b'-':
            return ('error', body)
        if kind == b':':
            return int(body)
        if kind == b'$':
            n = int(body)
            if n < 0:
                return None
            data = self.reader.read(n + 2)
            expect(len(data) == n + 2 and data.endswith(b'\r\n'), f'redis: bulk reply of {n} bytes: {data!r}')
            return data[:-2].decode()
        raise TestFailure(f'redis: unexpected reply {line!r}')


def info(conn, section):
    """INFO SECTION as a dict of its `key:value` lines."""
    text = conn.command('INFO', section)
    expect(isinstance(text, str), f'INFO {section}: {text!r}')
    return dict(line.split(':', 1) for line in text.split('\r\n') if line and not line.startswith('#'))


def start_redis(t, name, replica_of=None):
    redis_server = require_program('redis-server', 'redis-server')
    port = free_port()
    command = [redis_server, '--port', str(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
               '--daemonize', 'no', '--dir', t.tmpdir, '--dbfilename', f'{name}.rdb']
    if replica_of:
        command += ['--replicaof', '127.0.0.1', replica_of.split(':')[1]]
    with open(t.path(f'redis-{name}.log'), 'wb') as out:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    t.register_process(proc, f'redis-server {name}')
    address = f'127.0.0.1:{port}'

    def answers():
        if proc.poll() is not None:
            raise TestFailure(f'redis-server {name} exited with {proc.returncode}; see {t.path(f"redis-{name}.log")}')
        try:
            with Redis(address, timeout=1) as conn:
                return conn.command('PING') == 'PONG'
        except OSError:
            return False
    wait_until(answers, 10, f'redis-server {name} on {address} to answer PING', interval=0.05)
    return address


def session(address, n):
    """One session to `address` (a balancer in front of the redis-servers):
    the port of the redis-server reached, its role, and whether it took a
    write (SET then GET of key `keyN`)."""
    with Redis(address) as conn:
        port = int(info(conn, 'server')['tcp_port'])
        role = info(conn, 'replication')['role']
        key, value = f'key{n}', f'value{n}'
        written = conn.command('SET', key, value) == 'OK' and conn.command('GET', key) == value
    return port, role, written
