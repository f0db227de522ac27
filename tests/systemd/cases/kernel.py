"""fulcrum.service with a `forwarding: nat` service, under the unit's
sandbox as meson installs it, then with the drop-in docs/forwarding.md
gives (read from that document's ```ini block, so the document is what is
tested).

1. Without the drop-in the unit has no CAP_NET_ADMIN: its ExecStartPre
   `--check` fails with the line naming the service, the mode and the
   capability (in the journal), fulcrum never logs `started` (the test
   stops the unit's restarts), and no table exists.
2. With the drop-in (and `daemon-reload`): the unit starts; a session to
   the VIP 198.18.10.10:80 (routed to lo in the container's network, from
   198.18.10.1) is
   rewritten by the kernel to a demo server, which greets it; table
   `ip fulcrum` exists in the container's network namespace.
3. `systemctl stop`: the table is gone.
"""

import os
import re
import subprocess

from harness import connect, expect, expect_eq, read_greeting, wait_until
from container import write_file
from service import UNIT, log_message

DEADLINE = 120
VIP = '198.18.10.10:80'
CLIENT = '198.18.10.1'  # the container's own address for the route to the VIP
DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'docs', 'forwarding.md')
DROP_IN = '/etc/systemd/system/fulcrum.service.d/kernel-forwarding.conf'


def drop_in_text():
    with open(DOC) as f:
        blocks = re.findall(r'```ini\n(.*?)```', f.read(), re.S)
    expect_eq(len(blocks), 1, 'the drop-in blocks in docs/forwarding.md')
    return blocks[0]


def nft_tables():
    """`nft list tables` in the container's network namespace, where the
    test's thread is (service.setup)."""
    return subprocess.run(['nft', 'list', 'tables'], capture_output=True, text=True, timeout=30,
                          check=True).stdout


def run(t):
    config = t.config()
    config['services'][0].update({'forwarding': 'nat', 'listen': VIP})

    # 1. The unit as installed: no CAP_NET_ADMIN.
    t.write_config(config)
    t.c.systemctl('start', UNIT, check=False, timeout=120)
    with open(t.c.path(t.config_path)) as f:
        line = next(n for n, text in enumerate(f, 1) if 'forwarding:' in text)
    reason = f'{t.config_path}:{line}:5: service web: forwarding nat needs CAP_NET_ADMIN to program nftables'
    wait_until(lambda: reason in t.journal_messages('fulcrum'), 20,
               'the --check line naming the missing capability in the journal', interval=0.2)
    # Restart= keeps trying: stop that, then check it never started.
    t.c.systemctl('stop', UNIT, timeout=120)
    t.c.systemctl('reset-failed', UNIT, check=False)
    expect(not any(log_message(m) == 'started' for m in t.journal_messages('fulcrum')),
           'fulcrum never started without the capability')
    expect_eq(nft_tables(), '', 'nftables tables after the failed start')

    # 2. With the drop-in.
    t.c.run(['mkdir', '-p', os.path.dirname(DROP_IN)])
    write_file(t.c, DROP_IN, drop_in_text())
    t.c.systemctl('daemon-reload')
    # The container has only lo: the route to the VIP needs a source address
    # (through lo alone the kernel would pick 0.0.0.0).
    subprocess.run(['ip', 'addr', 'add', CLIENT + '/32', 'dev', 'lo'], check=True, timeout=30)
    subprocess.run(['ip', 'route', 'add', VIP.split(':')[0] + '/32', 'dev', 'lo', 'src', CLIENT], check=True,
                   timeout=30)
    t.c.systemctl('start', UNIT, timeout=120)
    expect_eq(t.state()['ActiveState'], 'active', 'the unit with the drop-in')
    with connect(VIP, timeout=10) as sock:
        expect(read_greeting(sock) in ('9001', '9002'), 'a session to the VIP, rewritten to a demo server')
    expect('table ip fulcrum' in nft_tables(), 'table ip fulcrum while fulcrum runs')

    # 3. Stop.
    t.c.systemctl('stop', UNIT, timeout=120)
    expect_eq(nft_tables(), '', 'nftables tables after systemctl stop')
