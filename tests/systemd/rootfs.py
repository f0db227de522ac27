"""The Debian root file system the systemd tests boot, built once and cached.

debootstrap (variant minbase) makes a tree with systemd and the libraries
fulcrum links, from the machine's own Debian release and mirror. It takes a
minute or two and ~250 MB, so it is kept under CACHE_DIR (env
FULCRUM_ROOTFS_CACHE, default /var/cache/fulcrum-systemd-test) as
rootfs-KEY, KEY hashing the release, the mirror and PACKAGES. Tests never
write to it: each run overlays it (see container.py).

Concurrency: one lock file. A test holds it shared for as long as it uses
the tree; building takes it exclusively. A build goes to building-KEY-PID/
and is renamed to rootfs-KEY only when debootstrap succeeded, so an
interrupted build leaves no half tree behind (the next build removes the
leftover). After a build, trees of other keys are removed.

Refresh by deleting CACHE_DIR; the next run builds it again.
"""

import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import time

from container import OWN_NAMESPACES

CACHE_DIR = os.environ.get('FULCRUM_ROOTFS_CACHE', '/var/cache/fulcrum-systemd-test')

# systemd itself (dbus and libnss-systemd for what units like DynamicUser
# need), and what fulcrum and fulcrum-demo-server link.
PACKAGES = [
    'systemd', 'dbus', 'libnss-systemd',
    'libevent-2.1-7', 'libevent-pthreads-2.1-7', 'libevent-openssl-2.1-7', 'libssl3',
    'libyaml-cpp0.7', 'libnftables1', 'libstdc++6',
]

# Raise to rebuild every cache when the way the tree is made changes.
FORMAT = 1

BUILD_TIMEOUT = 600


def _codename():
    with open('/etc/os-release') as f:
        for line in f:
            key, _, value = line.strip().partition('=')
            if key == 'VERSION_CODENAME' and value:
                return value.strip('"')
    raise RuntimeError('no VERSION_CODENAME in /etc/os-release')


def _mirror(codename):
    """The first `deb` source of this release that apt is configured with."""
    if os.environ.get('FULCRUM_DEBIAN_MIRROR'):
        return os.environ['FULCRUM_DEBIAN_MIRROR']
    # deb822 files: stanzas of `Key: value` lines separated by blank lines.
    for path in sorted(glob.glob('/etc/apt/sources.list.d/*.sources')):
        with open(path) as f:
            for stanza in f.read().split('\n\n'):
                fields = {}
                for line in stanza.splitlines():
                    if ':' in line and not line.startswith(('#', ' ')):
                        key, value = line.split(':', 1)
                        fields[key.strip().lower()] = value.split()
                if ('deb' in fields.get('types', []) and codename in fields.get('suites', [])
                        and fields.get('uris')):
                    return fields['uris'][0]
    # One-line format: deb [options] URI SUITE COMPONENTS...
    for path in ['/etc/apt/sources.list'] + sorted(glob.glob('/etc/apt/sources.list.d/*.list')):
        try:
            with open(path) as f:
                lines = f.readlines()
        except FileNotFoundError:
            continue
        for line in lines:
            words = re.sub(r'\[[^]]*\]', ' ', line.split('#', 1)[0]).split()
            if len(words) >= 3 and words[0] == 'deb' and words[2] == codename:
                return words[1]
    return 'http://deb.debian.org/debian'


def _key(codename, mirror):
    text = json.dumps([FORMAT, codename, mirror, sorted(PACKAGES)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _remove_others(keep, log):
    for entry in os.listdir(CACHE_DIR):
        if entry.startswith(('rootfs-', 'building-')) and entry != keep:
            log(f'removing stale {os.path.join(CACHE_DIR, entry)}')
            shutil.rmtree(os.path.join(CACHE_DIR, entry), ignore_errors=True)


def _build(codename, mirror, key, log):
    # Leftovers of interrupted builds: nobody else builds while we hold the
    # lock exclusively.
    for entry in os.listdir(CACHE_DIR):
        if entry.startswith('building-'):
            shutil.rmtree(os.path.join(CACHE_DIR, entry), ignore_errors=True)
    staging = os.path.join(CACHE_DIR, f'building-{key}-{os.getpid()}')
    os.mkdir(staging, 0o755)
    tree = os.path.join(staging, 'tree')
    log_path = os.path.join(staging, 'debootstrap.log')
    log(f'building the root file system ({codename} from {mirror}); about a minute or two, once')
    started = time.monotonic()
    # debootstrap mounts /proc and /sys inside the tree while it installs:
    # in namespaces of its own those mounts, and debootstrap with everything
    # it started, die with it, or with this process if it is killed.
    command = OWN_NAMESPACES + ['debootstrap', '--variant=minbase', '--include=' + ','.join(PACKAGES),
                                codename, tree, mirror]
    with open(log_path, 'wb') as out:
        try:
            result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    timeout=BUILD_TIMEOUT)
            code = result.returncode
        except subprocess.TimeoutExpired:
            code = f'timeout after {BUILD_TIMEOUT}s'
    if code != 0:
        with open(log_path, 'rb') as f:
            tail = f.read().decode('utf-8', 'replace').splitlines()[-30:]
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f'debootstrap failed ({code}):\n' + '\n'.join(tail))
    os.rename(tree, os.path.join(CACHE_DIR, f'rootfs-{key}'))
    shutil.rmtree(staging, ignore_errors=True)
    log(f'root file system built in {time.monotonic() - started:.0f}s')


def acquire(log):
    """The cached tree's path, built first if needed, and the open lock file:
    the tree stays valid until that descriptor is closed (process exit)."""
    codename = _codename()
    mirror = _mirror(codename)
    key = _key(codename, mirror)
    os.makedirs(CACHE_DIR, mode=0o755, exist_ok=True)
    tree = os.path.join(CACHE_DIR, f'rootfs-{key}')
    lock = os.open(os.path.join(CACHE_DIR, 'lock'), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    while True:
        fcntl.flock(lock, fcntl.LOCK_SH)
        if os.path.isdir(tree):
            return tree, lock
        # Not there: build it, unless another process did while we waited
        # for the exclusive lock. Then start over to hold it shared.
        fcntl.flock(lock, fcntl.LOCK_UN)
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not os.path.isdir(tree):
                _build(codename, mirror, key, log)
                _remove_others(os.path.basename(tree), log)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
