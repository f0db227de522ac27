"""The unit's sandbox, as the kernel enforces it on the running fulcrum.

From the host's /proc/MAINPID/status: it runs as the fulcrum user and group
(no other group), its capability sets (effective, permitted, ambient,
bounding) hold exactly what the unit grants, NoNewPrivs is 1 and a seccomp
filter is on. In the service's own mount namespace (nsenter from the host,
as root): writing under /usr and /etc fails (ProtectSystem=strict) while
the container itself can write there, a file in the container's /tmp is not
in the service's (PrivateTmp), nor one under /home (ProtectHome). fulcrum
serves throughout.
"""

import os
import subprocess

from harness import expect, expect_eq, greeted_session, log_stream
from container import GUEST_ENV
from service import LISTEN, UNIT

DEADLINE = 90

CAPABILITIES = {'CAP_NET_BIND_SERVICE': 10, 'CAP_NET_ADMIN': 12, 'CAP_NET_RAW': 13}


def mask(names):
    bits = 0
    for name in names:
        expect(name in CAPABILITIES, f'capability {name} is not known to this test')
        bits |= 1 << CAPABILITIES[name]
    return bits


def in_service(host_pid, command):
    """`command` as root in the mount namespace of the service's process."""
    return subprocess.run(['nsenter', f'--target={host_pid}', '--mount', '--'] + command,
                          capture_output=True, text=True, timeout=30, env=GUEST_ENV)


def run(t):
    t.start()
    _, host = t.c.main_pid(UNIT)
    with open(f'/proc/{host}/status') as f:
        status = dict(line.rstrip('\n').split(':\t', 1) for line in f if ':\t' in line)

    uid, gid = t.c.user_id('fulcrum'), t.c.group_id('fulcrum')
    expect(uid != 0 and gid != 0, f'fulcrum user {uid}:{gid}')
    expect_eq(status['Uid'].split(), [str(uid)] * 4, 'Uid (real, effective, saved, filesystem)')
    expect_eq(status['Gid'].split(), [str(gid)] * 4, 'Gid (real, effective, saved, filesystem)')
    expect(set(status['Groups'].split()) <= {str(gid)}, f'supplementary groups: {status["Groups"]!r}')

    granted = mask(' '.join(t.settings['AmbientCapabilities']).split())
    bounding = mask(' '.join(t.settings['CapabilityBoundingSet']).split())
    for field, expected in (('CapEff', granted), ('CapPrm', granted), ('CapAmb', granted), ('CapBnd', bounding)):
        expect_eq(int(status[field], 16), expected, f'{field} ({status[field]})')
    expect_eq(status['NoNewPrivs'], '1', 'NoNewPrivs')
    expect_eq(status['Seccomp'], '2', 'Seccomp (2: a filter is on)')
    log_stream(f'uid {uid}, CapEff {status["CapEff"]}, NoNewPrivs 1, seccomp filter')

    expect(os.readlink(f'/proc/{host}/ns/mnt') != os.readlink(f'/proc/{t.c.init_pid}/ns/mnt'),
           'the service has a mount namespace of its own')
    for directory in ('/usr', '/etc'):
        probe = f'{directory}/fulcrum-sandbox-probe'
        write = in_service(host, ['touch', probe])
        expect(write.returncode != 0 and 'Read-only file system' in write.stderr,
               f'writing {probe} in the service\'s namespace: exit {write.returncode}, {write.stderr.strip()!r}')
        # The same write from the container's own namespace works: the
        # sandbox, not the test's overlay, refused it.
        t.c.run(['touch', probe])
        t.c.run(['rm', probe])

    for probe in ('/tmp/fulcrum-sandbox-probe', '/home/operator/fulcrum-sandbox-probe'):
        t.c.run(['mkdir', '-p', os.path.dirname(probe)])
        t.c.run(['touch', probe])
        seen = in_service(host, ['test', '-e', probe])
        expect_eq(seen.returncode, 1, f'{probe} of the container seen from the service (test -e)')

    expect(greeted_session(LISTEN)[0] in ('9001', '9002'), 'a session through the sandboxed fulcrum')
