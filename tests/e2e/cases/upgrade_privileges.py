"""A binary upgrade of a fulcrum that dropped its privileges (root only).

Started as root with `global.user: nobody`, fulcrum binds a port below 1024
and keeps only CAP_NET_RAW (a transparent service). The new binary runs as
nobody from the exec on, so it could bind neither that port nor use
transparent mode without the capability: the upgrade carries the port's
sockets over and makes the kept capability ambient (a non-root process
loses its capabilities at execve otherwise). After one SIGUSR2 upgrade:
the same uid/gid 65534, CAP_NET_RAW still effective, a transparent session
opened before still echoes, a new transparent one shows the server the
client's own address (127.3.4.6), and the port below 1024 still serves.
"""

import os
import signal
import socket

from harness import PatternStream, TestSkip, binary, connect, echo_handler, expect, expect_eq, free_address, \
    install_binary, recv_exact, recv_line, upload_and_check_echo

DEADLINE = 60
CAP_NET_RAW = 13


def status_fields(pid):
    with open(f'/proc/{pid}/status') as f:
        return dict(line.split(':', 1) for line in f)


def tell_peer_then_echo(conn, peer):
    conn.sendall(f'you are {peer[0]}\n'.encode())
    echo_handler(conn, peer)


def echo_round(sock, size, what):
    """Bytes out and the same back, the session left open."""
    data = os.urandom(size)
    sock.sendall(data)
    expect_eq(recv_exact(sock, size, what), data, what)


def privileged_address():
    for port in range(700, 1000):  # a port only root may bind
        probe = socket.socket()
        try:
            probe.bind(('127.0.0.1', port))
            return f'127.0.0.1:{port}'
        except OSError:
            continue
        finally:
            probe.close()
    raise AssertionError('no free port below 1024')


def run(t):
    if os.geteuid() != 0:
        raise TestSkip('needs root to drop privileges')
    os.chmod(t.tmpdir, 0o755)  # nobody reads its configuration and runs its binary there
    os.mkdir(t.path('bin'))
    os.chmod(t.path('bin'), 0o755)
    executable = t.path('bin/fulcrum')
    install_binary(binary('FULCRUM'), executable)
    server = t.tcp_server(tell_peer_then_echo)
    listen = free_address()
    low = privileged_address()
    d = t.daemon({'global': {'workers': 2, 'user': 'nobody', 'group': 'nogroup'},
                  'services': [{'name': 'web', 'listen': [listen, low], 'address_mode': 'transparent',
                                'servers': [{'name': 's', 'address': server.address}]}]},
                 executable=executable)
    pid = d.pid
    before = status_fields(pid)
    expect_eq(int(before['CapEff'], 16), 1 << CAP_NET_RAW, 'CapEff before the upgrade')

    with connect(listen, source='127.3.4.5', timeout=20) as carried:
        expect_eq(recv_line(carried).decode(), 'you are 127.3.4.5\n', 'the address the server sees')
        echo_round(carried, 256 << 10, 'an echo before the upgrade')

        install_binary(binary('FULCRUM_NEXT'), executable)
        d.send_signal(signal.SIGUSR2)
        upgraded = d.wait_for_log(lambda r: r.message == 'upgraded', timeout=20)[0]
        expect_eq(upgraded.fields.get('sessions'), '1', 'sessions carried')
        after = status_fields(pid)
        expect(d.running() and d.pid == pid, 'the process after the upgrade')
        expect_eq((after['Uid'].split(), after['Gid'].split()), (['65534'] * 4, ['65534'] * 4),
                  'uid and gid after the upgrade')
        expect_eq((int(after['CapEff'], 16), int(after['CapPrm'], 16)), (1 << CAP_NET_RAW, 1 << CAP_NET_RAW),
                  'CapEff and CapPrm after the upgrade')
        echo_round(carried, 256 << 10, 'the carried session\'s echo after the upgrade')
        upload_and_check_echo(carried, PatternStream(2, 256 << 10), 'the carried session to its end')

    with connect(listen, source='127.3.4.6', timeout=20) as fresh:
        expect_eq(recv_line(fresh).decode(), 'you are 127.3.4.6\n', 'a transparent session after the upgrade')
        upload_and_check_echo(fresh, PatternStream(3, 64 << 10), 'a new session after the upgrade')
    with connect(low, timeout=20) as sock:
        expect(recv_line(sock).decode().startswith('you are 127.'), 'a session on the port below 1024')
    expect(not d.find_logs('upgrade failed, still serving'), 'the upgrade failed')
