"""address_mode: transparent and the capability it needs (root only).

1. As an unprivileged user without capabilities (setpriv), `fulcrum --check`
   of a file with a transparent service exits 1 with exactly `POS: service
   web: address_mode transparent needs CAP_NET_RAW or CAP_NET_ADMIN` (POS:
   FILE:LINE:COL of the address_mode key), and fulcrum started on it exits
   3 with exactly `cannot start error="POS: service web: ..."` (the same).
2. Started as root with `global.user: nobody`, it keeps CAP_NET_RAW and
   nothing else (effective = permitted = CAP_NET_RAW, none inheritable), and
   connects from the client's own address: a client bound to 127.3.4.5 is
   seen by the server as 127.3.4.5, and its bytes come back intact.
3. A daemon running as nobody without the capability (snat only) is asked by
   SIGHUP to turn transparent: the reload is rejected with the same error
   and the snat configuration keeps serving.

The routing across real hosts is tests/netns/cases/transparent.py; on
loopback every 127/8 address is local, so this test is about the socket
option, the privileges and the errors.
"""

import os
import signal
import subprocess

from harness import PatternStream, TestSkip, binary, connect, echo_handler, expect, expect_eq, free_address, \
    local_address, recv_line, upload_and_check_echo, write_config

DEADLINE = 60
CAP_NET_RAW = 13
REASON = 'service web: address_mode transparent needs CAP_NET_RAW or CAP_NET_ADMIN'
NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']


def mode_key(path):
    """`FILE:LINE:COL` of address_mode in the configuration file."""
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if 'address_mode:' in line:
                return f'{path}:{number}:{line.index("address_mode:") + 1}'
    raise AssertionError(f'no address_mode in {path}')


def capabilities(pid):
    with open(f'/proc/{pid}/status') as f:
        fields = dict(line.split(':', 1) for line in f)
    return {name: int(fields[name], 16) for name in ('CapInh', 'CapPrm', 'CapEff', 'CapAmb')}


def tell_peer_then_echo(conn, peer):
    conn.sendall(f'you are {peer[0]}\n'.encode())
    echo_handler(conn, peer)


def service(listen, server, mode):
    return {'name': 'web', 'listen': listen, 'address_mode': mode, 'servers': [{'name': 's', 'address': server}]}


def run(t):
    if os.geteuid() != 0:
        raise TestSkip('needs root to give and take capabilities')
    server = t.tcp_server(tell_peer_then_echo)
    os.chmod(t.tmpdir, 0o755)  # nobody reads its configuration file there

    # 1. No capability: a start-up failure with the reason.
    denied = t.daemon({'services': [service(free_address(), server.address, 'transparent')]},
                      name='denied', start=False, prefix=NOBODY)
    reason = f'{mode_key(denied.config_path)}: {REASON}'
    check = subprocess.run([*NOBODY, binary('FULCRUM'), '--check', '-c', denied.config_path],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    expect_eq((check.returncode, check.stdout, check.stderr), (1, '', reason + '\n'),
              '--check without the capability')
    denied.start(wait_ready=False)
    expect_eq(denied.wait_exit(20), 3, 'exit code without the capability')
    errors = [(r.message, r.fields) for r in denied.logs(strict=True) if r.level == 'error']
    expect_eq(errors, [('cannot start', {'error': reason})], 'error lines without the capability')

    # 2. Root dropping to nobody keeps exactly CAP_NET_RAW.
    listen = free_address()
    d = t.daemon({'global': {'workers': 2, 'user': 'nobody', 'group': 'nogroup'},
                  'services': [service(listen, server.address, 'transparent')]})
    expect_eq(capabilities(d.pid), {'CapInh': 0, 'CapPrm': 1 << CAP_NET_RAW, 'CapEff': 1 << CAP_NET_RAW,
                                    'CapAmb': 0}, 'capabilities after dropping to nobody')
    with connect(listen, source='127.3.4.5', timeout=20) as sock:
        expect_eq(recv_line(sock).decode(), 'you are 127.3.4.5\n', 'the address the server sees')
        client = local_address(sock)
        upload_and_check_echo(sock, PatternStream(7, 1 << 20), 'transparent session')
    d.wait_access_count(1)
    d.stop()
    expect_eq([line['client'] for line in d.access_log_lines()], [client], 'client in the access log')

    # 3. A reload that would need the capability is rejected; snat serves on.
    listen = free_address()
    running = t.daemon({'services': [service(listen, server.address, 'snat')]}, name='running', prefix=NOBODY)
    write_config(running.config_path, {'services': [service(listen, server.address, 'transparent')]})
    running.send_signal(signal.SIGHUP)
    running.wait_for_log(lambda r: r.message == 'reload failed, the running configuration stays', timeout=20)
    rejected = [r.fields['error'] for r in running.logs() if r.message == 'reload rejected']
    expect_eq(rejected, [f'{mode_key(running.config_path)}: {REASON}'], 'reload rejected line')
    with connect(listen, source='127.3.4.6', timeout=20) as sock:
        expect_eq(recv_line(sock).decode(), 'you are 127.0.0.1\n', 'snat still in force after the rejected reload')
    running.stop()
