#!/usr/bin/env python3
"""The two ends of the netns tests, each run inside its own namespace with
`ip netns exec NS python3 peer.py ...` (a namespace cannot be entered from a
thread of the test itself).

    peer.py server IP:PORT|[IPv6]:PORT ...
        Accepts on every address, forever (the test kills it). Each connection
        first gets the line `peer IP PORT SERVER\\n` (the address the server
        sees, and its own listening address IP:PORT), then everything it
        sends is echoed back until it half-closes. The same addresses also
        answer UDP: each datagram comes back after that line. With PEER_NAME
        in the environment, SERVER is that name (dsr: every server listens
        on the same VIP).

    peer.py hold TARGET BYTES
        One session that reads the greeting, prints it as JSON ({local,
        seen, server}), then waits for a line on stdin before sending BYTES
        and checking the echo; prints the session's JSON as `client` does.

    peer.py client TARGET SESSIONS BYTES
        SESSIONS sequential sessions to TARGET, each sending BYTES random bytes
        (then a half-close) while reading the echo, from PEER_SOURCE when the
        environment names an address. Prints one JSON list, an
        object per session: local (the client's own IP and port), seen (what
        the server said it sees), server (which server answered),
        sent_sha256, echoed_sha256, echoed_bytes.

    peer.py streams TARGET SESSIONS BYTES SECONDS
        SESSIONS concurrent sessions, each sending BYTES random bytes in
        equal pieces spread over SECONDS while reading the echo (both
        directions stream slowly). Prints `connected N` once every session
        has its greeting (N servers: a JSON object server -> sessions),
        then one JSON list as `client` does; a session that failed has
        `error`, and each has `seen` (the address the server saw).

    peer.py connect-loop TARGET COUNT INTERVAL_MS
        COUNT sessions one after the other, INTERVAL_MS apart, each echoing
        64 bytes; each may take 2 s. Prints a JSON object: ok (sessions
        echoed exactly), failures (a list of [seconds since the start,
        error]), servers (server -> sessions).

    peer.py udp-ports TARGET FIRST_PORT COUNT
        COUNT queries as udp-client's, from source ports FIRST_PORT,
        FIRST_PORT + 1, ...: the same flows each time it runs.

    peer.py udp-client TARGET QUERIES
        QUERIES datagrams of random bytes, each from a new socket (a source
        port no other query uses: a new flow), each waiting for its answer. Prints a JSON
        list, an object per query: local, seen, server, and ok (the
        datagram came back whole).
"""

import hashlib
import json
import os
import socket
import sys
import threading
import time

TIMEOUT = 20  # seconds per socket operation: nothing here waits on a person


def split_address(text):
    host, _, port = text.rpartition(':')
    return host.strip('[]'), int(port)


def family_of(host):
    return socket.AF_INET6 if ':' in host else socket.AF_INET


def format_address(host, port):
    return f'[{host}]:{port}' if ':' in host else f'{host}:{port}'


def echo(conn, peer, me):
    with conn:
        conn.settimeout(TIMEOUT)
        conn.sendall(f'peer {peer[0]} {peer[1]} {me}\n'.encode())
        while True:
            data = conn.recv(65536)
            if not data:
                return
            conn.sendall(data)


def serve(address):
    host, port = split_address(address)
    listener = socket.socket(family_of(host), socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(128)
    me = os.environ.get('PEER_NAME') or format_address(host, port)
    while True:
        conn, peer = listener.accept()
        threading.Thread(target=echo, args=(conn, peer, me), daemon=True).start()


def serve_udp(address):
    host, port = split_address(address)
    sock = socket.socket(family_of(host), socket.SOCK_DGRAM)
    sock.bind((host, port))
    me = os.environ.get('PEER_NAME') or format_address(host, port)
    while True:
        data, peer = sock.recvfrom(65536)
        sock.sendto(f'peer {peer[0]} {peer[1]} {me}\n'.encode() + data, peer)


def server(addresses):
    threads = [threading.Thread(target=serve, args=(a,), daemon=True) for a in addresses]
    threads += [threading.Thread(target=serve_udp, args=(a,), daemon=True) for a in addresses]
    for t in threads:
        t.start()
    print('ready', flush=True)
    for t in threads:
        t.join()


def read_line(sock):
    line = b''
    while not line.endswith(b'\n'):
        byte = sock.recv(1)
        if not byte:
            raise ConnectionError(f'connection closed before a whole line: {line!r}')
        line += byte
    return line.decode()


def read_echo(sock):
    """Reads until the peer closes: (SHA-256 hex of what came, its length)."""
    echoed = hashlib.sha256()
    count = 0
    while True:
        data = sock.recv(65536)
        if not data:
            return echoed.hexdigest(), count
        echoed.update(data)
        count += len(data)


def session(target, size, hold=False):
    host, port = split_address(target)
    payload = os.urandom(size)
    with socket.socket(family_of(host), socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        if os.environ.get('PEER_SOURCE'):
            sock.bind((os.environ['PEER_SOURCE'], 0))
        sock.connect((host, port))
        local = sock.getsockname()[:2]
        _, seen_host, seen_port, server_address = read_line(sock).split()
        if hold:
            print(json.dumps({'local': [local[0], local[1]], 'seen': [seen_host, int(seen_port)],
                              'server': server_address}), flush=True)
            sys.stdin.readline()

        def send():
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        sender = threading.Thread(target=send)
        sender.start()
        echoed_sha256, count = read_echo(sock)
        sender.join()
    return {'local': [local[0], local[1]], 'seen': [seen_host, int(seen_port)], 'server': server_address,
            'sent_sha256': hashlib.sha256(payload).hexdigest(),
            'echoed_sha256': echoed_sha256, 'echoed_bytes': count}


def slow_session(target, size, seconds, connected, go):
    """One session of `streams`: greeting, then `size` bytes in pieces over
    `seconds`, the echo read meanwhile. Returns the result object."""
    host, port = split_address(target)
    payload = os.urandom(size)
    pieces = max(1, int(seconds * 10))
    result = {'server': None, 'sent_sha256': hashlib.sha256(payload).hexdigest()}
    try:
        with socket.socket(family_of(host), socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect((host, port))
            result['local'] = list(sock.getsockname()[:2])
            _, result['seen'], _, result['server'] = read_line(sock).split()
            connected()
            go.wait(TIMEOUT)

            def send():
                step = (size + pieces - 1) // pieces
                for offset in range(0, size, step):
                    sock.sendall(payload[offset:offset + step])
                    time.sleep(seconds / pieces)
                sock.shutdown(socket.SHUT_WR)
            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            echoed_sha256, count = read_echo(sock)
            sender.join(TIMEOUT)
            result.update(echoed_sha256=echoed_sha256, echoed_bytes=count)
    except OSError as e:
        result['error'] = str(e)
    return result


def streams(target, sessions, size, seconds):
    results = [None] * sessions
    lock = threading.Lock()
    ready = []
    go = threading.Event()

    def connected():
        with lock:
            ready.append(1)
            if len(ready) == sessions:
                go.set()

    def run(i):
        results[i] = slow_session(target, size, seconds, connected, go)
        if 'error' in results[i]:
            connected()  # do not hold the others back
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(sessions)]
    for t in threads:
        t.start()
    go.wait(TIMEOUT)
    servers = {}
    for r in results:
        if r is not None and r['server'] is not None:
            servers[r['server']] = servers.get(r['server'], 0) + 1
    print('connected ' + json.dumps(servers), flush=True)
    for t in threads:
        t.join(seconds + 3 * TIMEOUT)
    print(json.dumps(results), flush=True)


def connect_loop(target, count, interval_ms):
    host, port = split_address(target)
    start = time.monotonic()
    ok, failures, servers = 0, [], {}
    for _ in range(count):
        began = time.monotonic()
        payload = os.urandom(64)
        try:
            with socket.socket(family_of(host), socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                sock.connect((host, port))
                server_name = read_line(sock).split()[3]
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
                echoed_sha256, count = read_echo(sock)
            if echoed_sha256 != hashlib.sha256(payload).hexdigest():
                raise ConnectionError(f'echo of {count} bytes, not the 64 sent')
            ok += 1
            servers[server_name] = servers.get(server_name, 0) + 1
        except (OSError, ValueError, IndexError) as e:
            failures.append([round(began - start, 3), str(e) or type(e).__name__])
        time.sleep(max(0.0, interval_ms / 1000 - (time.monotonic() - began)))
    print(json.dumps({'ok': ok, 'failures': failures, 'servers': servers}), flush=True)


def client(target, sessions, size):
    print(json.dumps([session(target, size) for _ in range(sessions)]), flush=True)


def query(target, sock):
    host, port = split_address(target)
    payload = os.urandom(512)
    sock.settimeout(TIMEOUT)
    sock.connect((host, port))
    local = sock.getsockname()[:2]
    sock.send(payload)
    answer = sock.recv(65536)
    line, _, data = answer.partition(b'\n')
    _, seen_host, seen_port, server_address = line.decode().split()
    return {'local': [local[0], local[1]], 'seen': [seen_host, int(seen_port)], 'server': server_address,
            'ok': data == payload}


def udp_client(target, queries):
    # Every socket stays open to the end, so that no query reuses an earlier
    # one's source port: each is a flow of its own for conntrack.
    host, _ = split_address(target)
    sockets = [socket.socket(family_of(host), socket.SOCK_DGRAM) for _ in range(queries)]
    try:
        print(json.dumps([query(target, sock) for sock in sockets]), flush=True)
    finally:
        for sock in sockets:
            sock.close()


def udp_ports(target, first_port, count):
    host, _ = split_address(target)
    results = []
    for port in range(first_port, first_port + count):
        with socket.socket(family_of(host), socket.SOCK_DGRAM) as sock:
            sock.bind(('', port))
            results.append(query(target, sock))
    print(json.dumps(results), flush=True)


def main(argv):
    if len(argv) >= 3 and argv[1] == 'server':
        server(argv[2:])
    elif len(argv) == 5 and argv[1] == 'client':
        client(argv[2], int(argv[3]), int(argv[4]))
    elif len(argv) == 4 and argv[1] == 'hold':
        print(json.dumps(session(argv[2], int(argv[3]), hold=True)), flush=True)
    elif len(argv) == 6 and argv[1] == 'streams':
        streams(argv[2], int(argv[3]), int(argv[4]), float(argv[5]))
    elif len(argv) == 5 and argv[1] == 'connect-loop':
        connect_loop(argv[2], int(argv[3]), int(argv[4]))
    elif len(argv) == 5 and argv[1] == 'udp-ports':
        udp_ports(argv[2], int(argv[3]), int(argv[4]))
    elif len(argv) == 4 and argv[1] == 'udp-client':
        udp_client(argv[2], int(argv[3]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
