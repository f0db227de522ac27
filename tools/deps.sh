# Sourced by tools/demo.sh and tools/test.sh: installs the Debian 12 packages
# fulcrum needs to build and test, and nothing when they are all present.
FULCRUM_PACKAGES=(
  g++ meson ninja-build pkg-config
  libevent-dev libyaml-cpp-dev doctest-dev
  python3 util-linux netcat-openbsd
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
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
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
