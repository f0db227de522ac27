"""timeouts.idle closes a silent session, and only a silent one.

With idle: 500ms, a client that reads the greeting and then says nothing is
closed by fulcrum (between 0.4 s and 5 s later, end=idle_timeout). A client
that sends a byte every 200 ms for 1.5 s, and gets each echoed, stays open.
"""

import socket
import time

from harness import connect, expect, expect_eq, expect_eof, free_address, local_address, recv_exact

DEADLINE = 60


def run(t):
    demo = t.demo_server('echo')
    listen = free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'services': [{'name': 'idle', 'listen': listen, 'timeouts': {'idle': '500ms'},
                      'servers': [{'name': 'echo', 'address': demo.address}]}],
    })

    # A silent client is closed after about the idle time.
    with connect(listen, timeout=10) as silent:
        silent_client = local_address(silent)
        expect_eq(recv_exact(silent, len(demo.greeting), 'greeting'), demo.greeting, 'greeting')
        start = time.monotonic()
        try:
            data = silent.recv(4096)
            outcome = 'closed' if data == b'' else f'data {data!r}'
        except ConnectionResetError:
            outcome = 'closed'
        except socket.timeout:
            outcome = 'still open after 10 s'
        waited = time.monotonic() - start
    expect_eq(outcome, 'closed', 'silent client after the greeting')
    expect(0.4 <= waited <= 5.0, f'silent client closed after {waited:.3f}s, expected about 0.5 s')

    # A client that keeps talking is not.
    with connect(listen, timeout=10) as talker:
        talker_client = local_address(talker)
        expect_eq(recv_exact(talker, len(demo.greeting), 'greeting'), demo.greeting, 'greeting')
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < 1.5:
            byte = bytes([0x41 + sent % 26])
            talker.sendall(byte)
            expect_eq(recv_exact(talker, 1, 'echo'), byte, f'echo of byte {sent}')
            sent += 1
            time.sleep(0.2)
        talker.sendall(b'still here\n')
        expect_eq(recv_exact(talker, 11, 'echo'), b'still here\n', 'echo after 1.5 s of small talk')
        talker.shutdown(socket.SHUT_WR)
        expect_eof(talker, 'talking client after its half-close')

    d.wait_access_count(2)
    d.stop()
    lines = {line['client']: line for line in d.access_log_lines()}
    expect_eq(sorted(lines), sorted([silent_client, talker_client]), 'clients in the access log')
    expect_eq(lines[silent_client]['end'], 'idle_timeout', 'end of the silent session')
    expect(400 <= lines[silent_client]['duration_ms'] <= 5000,
           f'duration_ms of the silent session: {lines[silent_client]["duration_ms"]}')
    expect_eq(lines[talker_client]['end'], 'client_close', 'end of the talking session')
    expect_eq(lines[talker_client]['bytes_in'], sent + 11, 'bytes_in of the talking session')
