"""A real systemd in a container, for the tests in tests/systemd.

Container boots the cached root file system (rootfs.py) with
systemd-nspawn, the tree overlaid so that every write of the run lands in
the run's own directory. Before boot, `meson install --destdir` puts the
build's files (fulcrum, its unit, its sysusers file) into the overlay,
with the demo server and two small test units:
  - fulcrum-test.target, the boot target: sysinit and sockets (journald,
    tmpfiles, sysusers, ...) and the demo servers, nothing else;
  - fulcrum-demo@PORT.service: fulcrum-demo-server PORT 127.0.0.1:PORT, a
    greeting echo server.
The container has only lo (--private-network); the test's own client
threads join that network namespace (enter_network), so traffic stays on
the container's loopback.

The test drives it from outside as an operator would inside: nsenter into
the container for systemctl and journalctl, /proc/PID/root for files.

destroy() powers it off and checks that it is gone: nspawn exited, no
process left in the run's cgroups (then removed), nothing of the run
mounted in any mount namespace. Nothing here
runs systemd, mounts or changes anything outside the container's own
namespaces (see boot.sh).
"""

import ctypes
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

from harness import TestFailure, expect, log_stream, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
BOOT_SCRIPT = os.path.join(HERE, 'boot.sh')

# What systemctl and journalctl run with inside: no pager, no colours, and
# nothing of the host's environment.
GUEST_ENV = {
    'PATH': '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    'LANG': 'C.UTF-8',
    'SYSTEMD_PAGER': '',
    'SYSTEMD_COLORS': '0',
    'TERM': 'dumb',
}

DEMO_DIR = '/usr/local/libexec/fulcrum-test'
DEMO_PORTS = (9001, 9002)

BOOT_TARGET = """\
[Unit]
Description=fulcrum test boot: sysinit, sockets and the demo servers only
Requires=sysinit.target sockets.target
After=sysinit.target sockets.target
Wants={demos}
AllowIsolate=yes
"""

DEMO_UNIT = f"""\
[Unit]
Description=fulcrum-demo-server on 127.0.0.1:%i (test peer)

[Service]
ExecStart={DEMO_DIR}/fulcrum-demo-server %i 127.0.0.1:%i
DynamicUser=yes
"""

CLONE_NEWNET = 0x40000000

# What the container (and debootstrap, rootfs.py) run under: a mount
# namespace of their own, so that their mounts never show on the host, and a
# PID namespace of their own whose first process dies with ours (pdeathsig
# on unshare, --kill-child on its child): if the test is killed outright, the
# kernel ends everything in that namespace, the container included.
OWN_NAMESPACES = ['setpriv', '--pdeathsig', 'KILL', '--',
                  'unshare', '--mount', '--propagation', 'private', '--mount-proc',
                  '--pid', '--fork', '--kill-child', '--']


def _cgroup_dirs(name):
    """Directories NAME below this process's own cgroups in the cgroup2
    hierarchy and in the v1 name=systemd one (hybrid hosts): the places
    nspawn puts the container's cgroups under."""
    mounts = {}
    with open('/proc/self/mountinfo') as f:
        for line in f:
            fields = line.split()
            sep = fields.index('-')
            mountpoint, fstype, options = fields[4], fields[sep + 1], fields[sep + 3].split(',')
            if fstype == 'cgroup2':
                mounts.setdefault('', mountpoint)
            elif fstype == 'cgroup' and 'name=systemd' in options:
                mounts.setdefault('name=systemd', mountpoint)
    dirs = []
    with open('/proc/self/cgroup') as f:
        for line in f:
            _, controllers, path = line.rstrip('\n').split(':', 2)
            if controllers in mounts:
                dirs.append(os.path.join(mounts[controllers], path.lstrip('/'), name))
    return dirs


def _children(pid):
    out = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                stat = f.read()
        except OSError:
            continue
        # The field after the parenthesised comm: state, then ppid.
        if int(stat[stat.rindex(')') + 2:].split()[1]) == pid:
            out.append(int(entry))
    return out


def _comm(pid):
    try:
        with open(f'/proc/{pid}/comm') as f:
            return f.read().strip()
    except OSError:
        return None


def _status_fields(pid):
    """/proc/PID/status as a dict of strings (None if the process is gone)."""
    try:
        with open(f'/proc/{pid}/status') as f:
            return dict(line.rstrip('\n').split(':\t', 1) for line in f if ':\t' in line)
    except OSError:
        return None


def _pids_in_namespace(kind, link):
    """Host PIDs of the processes whose namespace of `kind` is `link`."""
    out = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                if os.readlink(f'/proc/{entry}/ns/{kind}') == link:
                    out.append(int(entry))
            except OSError:
                continue
    return out


class Container:
    """One booted container in `workdir`. install() then boot(); destroy()
    always, which returns what it found left over (empty when clean)."""

    def __init__(self, workdir, rootfs):
        self.workdir = workdir
        self.rootfs = rootfs
        self.upper = os.path.join(workdir, 'upper')
        self.overlay_work = os.path.join(workdir, 'overlay-work')
        self.merged = os.path.join(workdir, 'root')
        self.console_path = os.path.join(workdir, 'console.log')
        self.cgroups = _cgroup_dirs(f'fulcrum-systemd-test-{os.getpid()}')
        self.process = None  # unshare; its child runs boot.sh, then nspawn
        self.init_pid = None
        self._host_net = None
        for d in (self.upper, self.overlay_work, self.merged):
            os.makedirs(d)

    # -- before boot

    def install(self, meson, build_root, demo_server):
        """`meson install --destdir` into the overlay, the demo server and the
        test units. Returns the installed unit's path inside the container."""
        # Tests run in parallel; meson install writes its log into the build
        # directory, so one install at a time.
        lock_path = os.path.join(tempfile.gettempdir(), 'fulcrum-systemd-install.lock')
        with open(lock_path, 'w') as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            result = subprocess.run([meson, 'install', '-C', build_root, '--no-rebuild', '--quiet',
                                     '--destdir', self.upper],
                                    capture_output=True, text=True, timeout=300)
        expect(result.returncode == 0, f'meson install failed:\n{result.stdout}{result.stderr}')
        units = [os.path.join(d, f)[len(self.upper):] for d, _, files in os.walk(self.upper)
                 for f in files if f == 'fulcrum.service' and d.endswith('/lib/systemd/system')]
        expect(len(units) == 1, f'meson install put fulcrum.service in {units or "no lib/systemd/system"}')

        demo_dir = self.upper + DEMO_DIR
        os.makedirs(demo_dir)
        shutil.copy2(demo_server, os.path.join(demo_dir, 'fulcrum-demo-server'))
        system = os.path.join(self.upper, 'etc/systemd/system')
        os.makedirs(system, exist_ok=True)
        demos = ' '.join(f'fulcrum-demo@{port}.service' for port in DEMO_PORTS)
        with open(os.path.join(system, 'fulcrum-test.target'), 'w') as f:
            f.write(BOOT_TARGET.format(demos=demos))
        with open(os.path.join(system, 'fulcrum-demo@.service'), 'w') as f:
            f.write(DEMO_UNIT)
        return units[0]

    # -- boot and shutdown

    def boot(self, timeout=90):
        for d in self.cgroups:
            # A run killed outright loses its container (see OWN_NAMESPACES)
            # but leaves its empty cgroups: remove those of runs that are gone.
            parent = os.path.dirname(d)
            for entry in os.listdir(parent):
                m = re.fullmatch(r'fulcrum-systemd-test-(\d+)', entry)
                if m and (int(m.group(1)) == os.getpid() or not os.path.exists(f'/proc/{m.group(1)}')):
                    self._remove_cgroup_tree(os.path.join(parent, entry), [], wait=0)
            os.mkdir(d)
        with open(self.console_path, 'wb') as console:
            self.process = subprocess.Popen(OWN_NAMESPACES + ['sh', BOOT_SCRIPT, self.rootfs, self.upper,
                                                             self.overlay_work, self.merged, *self.cgroups],
                                           stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                                           env=GUEST_ENV)
        started = time.monotonic()

        # The container's init: the descendant of nspawn that is systemd.
        def find_init():
            if self.process.poll() is not None:
                raise TestFailure(f'the container exited with {self.process.returncode}:\n{self.console_tail()}')
            generation = [self.process.pid]
            while generation:
                generation = [child for pid in generation for child in _children(pid)]
                for pid in generation:
                    if _comm(pid) == 'systemd':
                        return pid
            return None
        self.init_pid = wait_until(find_init, timeout, 'the container\'s systemd', interval=0.02)

        # is-system-running fails until PID 1 listens on its socket.
        def booted():
            state = self.run(['systemctl', 'is-system-running', '--wait'], check=False, timeout=timeout)
            return state.stdout.strip() if state.stdout.strip() in ('running', 'degraded') else None
        state = wait_until(booted, timeout, 'the container to finish booting', interval=0.1)
        if state != 'running':
            failed = self.run(['systemctl', 'list-units', '--failed', '--no-legend'], check=False).stdout
            raise TestFailure(f'the container booted {state}; failed units:\n{failed}')
        log_stream(f'container booted in {time.monotonic() - started:.1f}s (init PID {self.init_pid})')

    def destroy(self, timeout=60):
        """Powers the container off (SIGRTMIN+4 to its systemd), falling back
        to SIGKILL by PID, then checks that nothing of it is left. Returns the
        list of what was left (and has now been killed or removed)."""
        left = []
        self.leave_network()
        if self.process is None:
            return left
        if self.process.poll() is None:
            if self.init_pid is not None:
                try:
                    os.kill(self.init_pid, signal.SIGRTMIN + 4)  # systemd: poweroff
                except ProcessLookupError:
                    pass
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                left.append(f'the container did not power off within {timeout}s; killed')
                # Killing unshare kills nspawn (--kill-child), the first
                # process of the PID namespace the container lives in.
                for pid in (self.init_pid, self.process.pid):
                    if pid is not None:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                self.process.wait(30)

        # Processes of the run: every one of them lives in the run's cgroups.
        deadline = time.monotonic() + 10
        while True:
            pids = self._cgroup_pids()
            if not pids or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if pids:
            left.append(f'processes left in the run\'s cgroups: {pids}; killed')
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for d in self.cgroups:
            if os.path.isdir(d):
                self._remove_cgroup_tree(d, left)

        # The run's mounts (the overlay names the run's directory, everything
        # else is mounted on it) in any mount namespace of the machine.
        # Namespace inode numbers are reused, paths under the run's
        # directory are not.
        for pid, mounts in self._mounts_of_run():
            left.append(f'process {pid} ({_comm(pid)}) still sees mounts of the run: {mounts[:3]}')
        return left

    def _mounts_of_run(self):
        found = []
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                with open(f'/proc/{entry}/mountinfo') as f:
                    mounts = [line.split()[4] for line in f if self.workdir in line]
            except OSError:
                continue
            if mounts:
                found.append((int(entry), mounts))
        return found

    def _cgroup_pids(self):
        pids = set()
        for top in self.cgroups:
            for d, _, files in os.walk(top):
                if 'cgroup.procs' in files:
                    try:
                        with open(os.path.join(d, 'cgroup.procs')) as f:
                            pids.update(int(p) for p in f.read().split())
                    except OSError:
                        continue
        return sorted(pids)

    @staticmethod
    def _remove_cgroup_tree(top, left, wait=10):
        # Deepest first; a cgroup whose last process just exited may be busy
        # for a moment.
        deadline = time.monotonic() + wait
        for d, _, _ in sorted(os.walk(top), key=lambda entry: -entry[0].count('/')):
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if time.monotonic() > deadline:
                        left.append(f'cannot remove cgroup {d}: {e}')
                        break
                    time.sleep(0.1)

    def console_tail(self, lines=30):
        try:
            with open(self.console_path, 'rb') as f:
                return '\n'.join(f.read().decode('utf-8', 'replace').splitlines()[-lines:])
        except OSError:
            return ''

    # -- inside the container

    def run(self, command, check=True, timeout=120, input=None):
        """`command` in every namespace of the container (nsenter), as root.
        Returns the CompletedProcess (text)."""
        full = ['nsenter', f'--target={self.init_pid}', '--all', '--'] + command
        result = subprocess.run(full, capture_output=True, text=True, timeout=timeout, input=input,
                                env=GUEST_ENV)
        if check and result.returncode != 0:
            raise TestFailure(f'{" ".join(command)} exited with {result.returncode}:\n'
                              f'{result.stdout}{result.stderr}')
        return result

    def systemctl(self, *args, check=True, timeout=120):
        return self.run(['systemctl', '--no-pager', *args], check=check, timeout=timeout)

    def show(self, unit, *properties):
        """`systemctl show` of these properties, as a dict of strings."""
        out = self.systemctl('show', unit, *[f'--property={p}' for p in properties]).stdout
        return dict(line.split('=', 1) for line in out.splitlines() if '=' in line)

    def journal(self, unit, fields=('SYSLOG_IDENTIFIER', 'MESSAGE')):
        """The journal of `unit` as tuples of these fields (default
        (SYSLOG_IDENTIFIER, MESSAGE) pairs), oldest first; '' for a field an
        entry lacks."""
        out = self.run(['journalctl', f'--unit={unit}', '--output=json', '--no-pager',
                        '--output-fields=' + ','.join(fields)]).stdout
        entries = []
        for line in out.splitlines():
            entry = json.loads(line)
            values = []
            for field in fields:
                value = entry.get(field, '')
                if isinstance(value, list):  # journald's form for non-UTF-8 text
                    value = bytes(value).decode('utf-8', 'replace')
                values.append(value)
            entries.append(tuple(values))
        return entries

    def journal_tail(self, lines=60):
        return self.run(['journalctl', '--no-pager', f'--lines={lines}'], check=False).stdout

    def path(self, path):
        """Where the container's file `path` is, seen from the host."""
        return f'/proc/{self.init_pid}/root{path}'

    def group_id(self, name):
        with open(self.path('/etc/group')) as f:
            for line in f:
                fields = line.split(':')
                if fields[0] == name:
                    return int(fields[2])
        raise TestFailure(f'no group {name} in the container')

    def user_id(self, name):
        with open(self.path('/etc/passwd')) as f:
            for line in f:
                fields = line.split(':')
                if fields[0] == name:
                    return int(fields[2])
        raise TestFailure(f'no user {name} in the container')

    def host_pid(self, pid):
        """The host PID of the container's process `pid` (from NSpid), or None."""
        link = os.readlink(f'/proc/{self.init_pid}/ns/pid')
        for candidate in _pids_in_namespace('pid', link):
            status = _status_fields(candidate)
            if status and int(status['NSpid'].split()[-1]) == pid:
                return candidate
        return None

    def main_pid(self, unit):
        """(PID inside, PID on the host) of the unit's main process."""
        inside = int(self.show(unit, 'MainPID')['MainPID'])
        expect(inside != 0, f'{unit} has no main process')
        host = self.host_pid(inside)
        expect(host is not None, f'no host process for PID {inside} of the container')
        return inside, host

    # -- the test's own network

    def enter_network(self):
        """Moves the calling thread (the test's main thread, before it starts
        any client thread: threads inherit it) into the container's network
        namespace, so that 127.0.0.1 is the container's loopback."""
        libc = ctypes.CDLL(None, use_errno=True)
        self._host_net = os.open('/proc/thread-self/ns/net', os.O_RDONLY | os.O_CLOEXEC)
        fd = os.open(f'/proc/{self.init_pid}/ns/net', os.O_RDONLY | os.O_CLOEXEC)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), 'setns into the container\'s network namespace')
        finally:
            os.close(fd)

    def leave_network(self):
        if self._host_net is None:
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(self._host_net, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), 'setns back into the host\'s network namespace')
        os.close(self._host_net)
        self._host_net = None


def write_file(container, path, text, mode=0o644, group='root'):
    """Writes the container's file `path` as an operator would: a new file
    renamed over the old one, owned by root and `group`."""
    target = container.path(path)
    temporary = target + '.new'
    with open(temporary, 'w') as f:
        f.write(text)
    os.chown(temporary, 0, container.group_id(group))
    os.chmod(temporary, mode)
    os.rename(temporary, target)


def status_line(text):
    """The `Status: "..."` line of `systemctl status` output, or None."""
    m = re.search(r'^\s*Status: "(.*)"$', text, re.M)
    return m.group(1) if m else None
