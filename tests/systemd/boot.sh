#!/bin/sh
# Boots the test root file system under systemd-nspawn (tests/systemd).
#
#   sh boot.sh LOWER UPPER WORK MERGED [CGROUP_DIR...]
#
# Run by container.py as the first process of a mount and a PID namespace of
# its own (OWN_NAMESPACES there): the mounts made here exist only in that
# namespace and vanish with the container, so nothing is mounted on the
# host. It execs systemd-nspawn.
set -eu
lower=$1 upper=$2 work=$3 merged=$4
shift 4

# Join the run's own cgroup in each hierarchy: nspawn creates its payload/
# and supervisor/ cgroups below the one it runs in, so concurrent runs never
# share them and the test can remove them afterwards.
for cgroup in "$@"; do
  echo $$ >"$cgroup/cgroup.procs"
done

# nspawn keeps state under /run/systemd: a tmpfs keeps it off the host's /run.
mount -t tmpfs -o mode=0755 fulcrum-test-run /run
# The cached tree stays untouched: every write of this run lands in UPPER.
mount -t overlay -o "lowerdir=$lower,upperdir=$upper,workdir=$work" fulcrum-test-root "$merged"

# A cgroup2 tree for the container even on a host with the hybrid layout.
export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1
# --private-network: only lo, so the container's traffic stays inside it.
# --register=no --keep-unit: no machined, no unit on the host (there is no
# systemd on the host). Nothing of the host's journal, resolv.conf or
# timezone is linked or copied in.
exec systemd-nspawn --quiet --directory="$merged" --boot \
  --private-network --register=no --keep-unit --console=pipe \
  --link-journal=no --resolv-conf=off --timezone=off --hostname=fulcrum-test \
  systemd.unit=fulcrum-test.target
