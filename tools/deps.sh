# Sourced by tools/demo.sh, test.sh, sanitize.sh, fuzz.sh and lint.sh:
# installs the Debian 12 packages fulcrum needs to build and test, and
# nothing when they are all present.
# What building fulcrum and running the demo need.
FULCRUM_BUILD_PACKAGES=(
  g++ meson ninja-build pkg-config
  libevent-dev libssl-dev libyaml-cpp-dev doctest-dev
  libnftables-dev libnftnl-dev libmnl-dev
  netcat-openbsd
)
# What the test suite needs on top: Python for the e2e tests, openssl (the
# command: health_https's self-signed certificate), prlimit and
# setpriv (util-linux), ip and nft for the network-namespace tests (iproute2,
# nftables), valgrind (valgrind_clean), the real peers some tests drive:
# Chromium (dashboard), promtool (package prometheus), systemd-analyze
# (package systemd), redis-server (health checks with send/expect),
# haproxy (health checks compared with HAProxy's; its service is kept from
# starting, as prometheus's is, below), curl, iperf3 and dnsmasq (the
# netns test kernel_peers drives kernel forwarding with them; dnsmasq-base
# is the program without the dnsmasq package's system service, so nothing
# takes the host's port 53; iperf3's own service is off unless debconf is
# told otherwise, and the install below starts no service anyway), and for
# bird2 (the netns test scale_out: BGP in its router and node namespaces;
# its service is kept from starting like haproxy's), and for
# tests/systemd debootstrap (the container's root file system) and
# systemd-nspawn (package systemd-container; unshare and nsenter are in
# util-linux).
FULCRUM_TEST_PACKAGES=(
  "${FULCRUM_BUILD_PACKAGES[@]}"
  python3 openssl util-linux
  iproute2 nftables conntrack socat
  valgrind
  prometheus
  chromium
  redis-server
  haproxy
  curl iperf3 dnsmasq-base
  bird2
  systemd
  debootstrap systemd-container
)
# tools/sanitize.sh: GCC's sanitizer runtimes (g++ brings them; named so
# that a trimmed install cannot lose them).
FULCRUM_SANITIZE_PACKAGES=(
  "${FULCRUM_TEST_PACKAGES[@]}"
  libasan8 libubsan1 libtsan2
)
# tools/fuzz.sh: clang with libFuzzer and its sanitizer runtimes.
FULCRUM_FUZZ_PACKAGES=(
  "${FULCRUM_BUILD_PACKAGES[@]}"
  clang libclang-rt-14-dev
)
# tools/lint.sh: clang-tidy and clang-format.
FULCRUM_LINT_PACKAGES=(
  "${FULCRUM_BUILD_PACKAGES[@]}"
  clang-tidy clang-format
)

install_packages() {
  local missing=()
  local package
  for package in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$package")
    fi
  done
  if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then
      echo "need root to install packages (or install them yourself): ${missing[*]}" >&2
      exit 1
    fi
    # Packages such as prometheus (wanted for promtool) ship a service that
    # their install would start. A policy-rc.d that answers 101 forbids
    # every service start; one already in place is left as it is, and the
    # one made here is removed again, also when the install fails.
    local policy=/usr/sbin/policy-rc.d made_policy=0 status=0
    if [[ ! -e $policy ]]; then
      printf '#!/bin/sh\n# made by fulcrum tools/deps.sh for the duration of an install\nexit 101\n' >"$policy"
      chmod 755 "$policy"
      made_policy=1
    fi
    { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"; } || status=$?
    if ((made_policy)); then
      rm -f "$policy"
    fi
    if ((status != 0)); then
      echo "package install failed (exit $status): ${missing[*]}" >&2
      exit "$status"
    fi
  fi
}

# meson setup, or reconfigure when the build directory exists.
setup_build() {
  local dir=$1
  shift
  if [[ -f "$dir/build.ninja" ]]; then
    meson setup --reconfigure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@"
  fi
}
