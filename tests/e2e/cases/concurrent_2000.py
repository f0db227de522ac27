"""2000 sessions open at the same time through two workers.

Each client reads its greeting, sends a unique message and checks the echo;
only when all 2000 have done so (all connected at once) does each send a
second unique message, check it, half-close and wait for EOF. rr over two
demo servers splits them exactly 1000/1000, and the access log has one
client_close line per client.
"""

import asyncio
import collections

from harness import TestFailure, expect_eq, format_address, free_address, log_stream, parse_address

DEADLINE = 200
CLIENTS = 2000
CONNECTING_AT_ONCE = 200  # keeps the SYN burst under any listen backlog


async def run_clients(host, port, greetings):
    all_echoed_once = asyncio.Event()
    echoed_once = 0
    connecting = asyncio.Semaphore(CONNECTING_AT_ONCE)

    async def client(i):
        nonlocal echoed_once
        async with connecting:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 60)
        try:
            me = format_address(*writer.get_extra_info('sockname')[:2])
            greetings[i] = (await asyncio.wait_for(reader.readline(), 60)).decode()
            for round_ in ('first', 'second'):
                message = f'{round_} message from client {i}\n'.encode()
                writer.write(message)
                await writer.drain()
                echo = await asyncio.wait_for(reader.readexactly(len(message)), 60)
                if echo != message:
                    raise TestFailure(f'client {i}: echo {echo!r} of {message!r}')
                if round_ == 'first':
                    echoed_once += 1
                    if echoed_once == CLIENTS:
                        log_stream(f'all {CLIENTS} sessions open and echoed once')
                        all_echoed_once.set()
                    await asyncio.wait_for(all_echoed_once.wait(), 120)
            writer.write_eof()
            rest = await asyncio.wait_for(reader.read(), 60)
            if rest != b'':
                raise TestFailure(f'client {i}: {rest!r} where EOF was expected')
            return me
        finally:
            writer.close()

    results = await asyncio.gather(*(client(i) for i in range(CLIENTS)), return_exceptions=True)
    failures = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
    if failures:
        shown = '\n'.join(f'client {i}: {type(e).__name__}: {e}' for i, e in failures[:20])
        raise TestFailure(f'{len(failures)} of {CLIENTS} clients failed:\n{shown}')
    return results


def run(t):
    c1, c2 = t.demo_server('c1'), t.demo_server('c2')
    listen = free_address()
    d = t.daemon({
        'global': {'workers': 2},
        'services': [{
            'name': 'many',
            'listen': listen,
            'scheduler': 'rr',
            'servers': [{'name': 'c1', 'address': c1.address}, {'name': 'c2', 'address': c2.address}],
        }],
    })

    greetings = [None] * CLIENTS
    host, port = parse_address(listen)
    clients = asyncio.run(run_clients(host, port, greetings))
    expect_eq(len(set(clients)), CLIENTS, 'distinct client addresses')
    expect_eq(dict(collections.Counter(greetings)), {c1.greeting.decode(): CLIENTS // 2, c2.greeting.decode(): CLIENTS // 2},
              'greetings per server')

    d.wait_access_count(CLIENTS, timeout=60)
    d.stop()
    lines = d.access_log_lines()
    expect_eq(len(lines), CLIENTS, 'access log lines')
    expect_eq({line['client'] for line in lines}, set(clients), 'client addresses in the access log')
    expect_eq(dict(collections.Counter(line['end'] for line in lines)), {'client_close': CLIENTS}, 'end reasons')
    expect_eq(dict(collections.Counter(line['server'] for line in lines)), {'c1': CLIENTS // 2, 'c2': CLIENTS // 2},
              'access log lines per server')
    index = {client: i for i, client in enumerate(clients)}
    for line in lines:
        i = index[line['client']]
        expect_eq(f'hello from {line["server"]}\n', greetings[i], f'server of client {i} in the access log')
        sent = sum(len(f'{round_} message from client {i}\n') for round_ in ('first', 'second'))
        expect_eq((line['bytes_in'], line['bytes_out']), (sent, len(greetings[i]) + sent),
                  f'bytes_in, bytes_out of client {i}')
