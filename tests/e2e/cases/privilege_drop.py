"""global.user/group: started as root, fulcrum binds its listeners (a port
below 1024 among them) and the stats port, then runs as that user and group
with no other group; sessions and stats keep working. Skipped when not root.
"""

import os
import socket

from harness import TestSkip, expect, expect_eq, free_address, get_stats, greeted_session

DEADLINE = 60


def ids(pid):
    with open(f'/proc/{pid}/status') as f:
        fields = dict(line.split(':', 1) for line in f)
    return fields['Uid'].split(), fields['Gid'].split(), fields['Groups'].split()


def run(t):
    if os.geteuid() != 0:
        raise TestSkip('needs root to drop privileges')
    demo = t.demo_server('p')
    listen = free_address()
    privileged = None
    for port in range(700, 1000):  # a port only root may bind
        candidate = f'127.0.0.1:{port}'
        probe = socket.socket()
        try:
            probe.bind(('127.0.0.1', port))
            privileged = candidate
            break
        except OSError:
            continue
        finally:
            probe.close()
    expect(privileged is not None, 'no free port below 1024')
    stats = free_address()
    d = t.daemon({
        'global': {'workers': 2, 'user': 'nobody', 'group': 'nogroup'},
        'stats': {'listen': stats},
        'services': [{'name': 'web', 'listen': [listen, privileged], 'servers': [{'address': demo.address}]}],
    })
    uid, gid, groups = ids(d.pid)
    expect_eq(uid, ['65534'] * 4, 'real, effective, saved and filesystem uid')
    expect_eq(gid, ['65534'] * 4, 'real, effective, saved and filesystem gid')
    expect_eq(groups, ['65534'], 'supplementary groups')
    for address in (listen, privileged):
        expect_eq(greeted_session(address)[0], 'p', f'a session on {address}')
    expect_eq(get_stats(stats)['services'][0]['sessions']['total'], 2, 'stats after the drop')
    dropped = [r for r in d.logs() if r.message == 'privileges dropped']
    expect_eq([(r.fields['user'], r.fields['uid'], r.fields['gid']) for r in dropped],
              [('nobody', '65534', '65534')], 'the privileges dropped line')
    d.stop()
