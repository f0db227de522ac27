"""A hostile client cannot flood the log with per-client warnings.

BAD clients, from 4 threads as fast as they go, each send a line that is no
PROXY header to a service with `accept_proxy_protocol: true`; fulcrum closes
each (`end=bad_proxy_header`) and would warn `PROXY header rejected` for
each. The warnings are rate-limited per message: at most LIMIT lines in any
1-second window of the daemon, then one `log lines suppressed
message="PROXY header rejected" count=N` warning with the number left out
(before the next line of that message passes, or about a second after its
window ended). Exact, whatever the timing:

- every rejection is in the log once, either as a line or counted by a
  summary: lines + the summaries' counts == BAD == proxy_header_errors in
  /stats;
- at least one summary line (the burst is far above LIMIT a second: BAD
  lines in one run would need BAD / LIMIT seconds of log timestamps);
- lines <= LIMIT x (seconds between the first and last timestamp + 2): a
  window holds at most LIMIT lines, and the lines' timestamps span all but
  at most two of the windows they were admitted in;
- the access log is not rate-limited: exactly BAD `session` lines with
  end=bad_proxy_header, and a good session afterwards is logged too.
"""

import socket

from harness import connect, expect, expect_eq, free_address, get_stats, log_stream, log_time, recv_exact, \
    run_threads, wait_until

DEADLINE = 60
BAD = 1000
THREADS = 4
LIMIT = 50  # lines per second and message (docs/operations.md)
MESSAGE = 'PROXY header rejected'


def closed(sock):
    try:
        return sock.recv(1) == b''
    except ConnectionResetError:
        return True


def hostile(listen, count):
    for _ in range(count):
        with connect(listen, timeout=5) as sock:
            sock.sendall(b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
            expect(closed(sock), 'a client without a PROXY header was answered, not closed')


def run(t):
    demo = t.demo_server('echo')
    listen = free_address()
    stats = free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'stats': {'listen': stats},
        'services': [{'name': 'edge', 'listen': listen, 'accept_proxy_protocol': True,
                      'servers': [{'name': 'echo', 'address': demo.address}]}],
    })
    run_threads(hostile, [(listen, BAD // THREADS)] * THREADS, 40, 'hostile client')
    wait_until(lambda: get_stats(stats)['services'][0]['sessions']['proxy_header_errors'] == BAD, 10,
               f'proxy_header_errors == {BAD}')

    def accounted():
        records = d.logs()
        lines = [r for r in records if r.message == MESSAGE]
        summaries = [r for r in records if r.message == 'log lines suppressed']
        return lines, summaries, len(lines) + sum(int(r.fields.get('count', 0)) for r in summaries)
    wait_until(lambda: accounted()[2] >= BAD, 10, f'{BAD} rejections in the log as lines or summary counts')
    lines, summaries, total = accounted()
    log_stream(f'{len(lines)} `{MESSAGE}` lines, {len(summaries)} summaries counting '
               f'{total - len(lines)} more')
    expect_eq(total, BAD, f'`{MESSAGE}` lines + the counts of `log lines suppressed`')
    expect(summaries, f'no `log lines suppressed` line: {len(lines)} `{MESSAGE}` lines were logged one by one')
    for r in summaries:
        expect_eq((r.level, r.fields.get('message')), ('warn', MESSAGE), f'level and message= of {r.raw}')
        expect(r.fields.get('count', '').isdigit() and int(r.fields['count']) > 0, f'count= of {r.raw}')
    for r in lines:
        expect_eq((r.level, r.fields.get('service'), r.fields.get('reason')),
                  ('warn', 'edge', 'not a PROXY protocol header'), f'level, service, reason of {r.raw}')
    times = [log_time(r) for r in lines]
    span = max(times) - min(times)
    expect(len(lines) <= LIMIT * (span + 2),
           f'{len(lines)} `{MESSAGE}` lines within {span:.3f}s of timestamps: more than {LIMIT} a second')

    # The access log is not rate-limited, and a good client still gets through.
    with connect(listen, timeout=5) as sock:
        sock.sendall(b'PROXY TCP4 127.9.9.9 127.0.0.1 4242 80\r\n')
        expect_eq(recv_exact(sock, len(demo.greeting)), demo.greeting, 'greeting after a valid header')
        sock.shutdown(socket.SHUT_WR)
        expect(closed(sock), 'no EOF after the half-close')
    d.wait_access_count(BAD + 1)
    d.stop()
    access = d.access_log_lines()
    expect_eq(sum(1 for a in access if a['end'] == 'bad_proxy_header' and a['server'] == '-'), BAD,
              'access lines with end=bad_proxy_header')
    expect_eq([a['client'] for a in access if a['end'] == 'client_close'], ['127.9.9.9:4242'],
              'the good session in the access log')
