#!/bin/bash
# Routing for fulcrum's `address_mode: transparent` (docs/transparent.md).
#
#   tools/transparent-routing.sh apply  [--mark N] [--table N]
#   tools/transparent-routing.sh remove [--mark N] [--table N]
#   tools/transparent-routing.sh show
#
# In transparent mode fulcrum connects to a server from the client's own
# address, an address this host does not have. The server's replies go to
# that address; the servers route them through this host (their gateway), and
# this host must hand them to fulcrum's socket instead of forwarding them on:
#
#   1. nftables marks each incoming TCP packet that belongs to a transparent
#      socket (`socket transparent 1`) with MARK;
#   2. a policy rule sends packets with MARK to routing table TABLE;
#   3. TABLE routes every destination as local, so the packet is delivered
#      to the socket rather than forwarded.
#
# Both IPv4 and IPv6. `apply` is idempotent (it removes its own rules first);
# `remove` deletes exactly what `apply` added. Needs root (or CAP_NET_ADMIN)
# and the nft and ip commands (packages nftables and iproute2).
set -euo pipefail

mark=1
table=100
nft_table=fulcrum_transparent

usage() {
  sed -n '4,6s/^# \{0,1\}//p' "$0" >&2
  exit 2
}

(($# >= 1)) || usage
action=$1
shift
while (($#)); do
  case $1 in
    --mark) mark=${2:?--mark needs a number}; shift 2 ;;
    --table) table=${2:?--table needs a number}; shift 2 ;;
    *) usage ;;
  esac
done
[[ $mark =~ ^[0-9]+$ && $table =~ ^[0-9]+$ ]] || { echo "mark and table must be numbers" >&2; exit 2; }

remove() {
  nft delete table inet "$nft_table" 2>/dev/null || true
  local family
  for family in -4 -6; do
    while ip "$family" rule del fwmark "$mark" lookup "$table" 2>/dev/null; do :; done
    ip "$family" route flush table "$table" 2>/dev/null || true
  done
}

apply() {
  remove
  # priority mangle: before the routing decision, like the mangle table.
  nft -f - <<EOF
table inet $nft_table {
  chain prerouting {
    type filter hook prerouting priority mangle; policy accept;
    meta l4proto tcp socket transparent 1 meta mark set $mark accept
  }
}
EOF
  ip -4 rule add fwmark "$mark" lookup "$table"
  ip -4 route add local 0.0.0.0/0 dev lo table "$table"
  ip -6 rule add fwmark "$mark" lookup "$table"
  ip -6 route add local ::/0 dev lo table "$table"
}

show() {
  nft list table inet "$nft_table" 2>/dev/null || echo "no nftables table $nft_table"
  local family
  for family in -4 -6; do
    ip "$family" rule show fwmark "$mark"
    ip "$family" route show table "$table"
  done
}

case $action in
  apply) apply ;;
  remove) remove ;;
  show) show ;;
  *) usage ;;
esac
