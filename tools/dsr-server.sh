#!/bin/bash
# Configures a real server for direct server return (forwarding: dsr,
# docs/forwarding.md), run on the server itself:
#   tools/dsr-server.sh apply VIP    VIP on lo; for IPv4 also arp_ignore=1 and
#                                    arp_announce=2, so that the server never
#                                    answers ARP for the VIP nor uses it as
#                                    the source of its own ARP requests
#   tools/dsr-server.sh remove VIP   takes the VIP off lo; once no VIP applied
#                                    by this script is left, puts the ARP
#                                    settings back as they were
# IPv6 needs no neighbour setting: Linux answers neighbour solicitations
# only for addresses of the interface they arrive on, not for lo's.
# Applying the same VIP twice, or removing one that is not there, is no error.
# What was applied is kept in FULCRUM_DSR_STATE (default /run/fulcrum-dsr).
set -euo pipefail

state=${FULCRUM_DSR_STATE:-/run/fulcrum-dsr}
usage() {
  echo "usage: $0 apply|remove VIP" >&2
  exit 2
}
(($# == 2)) || usage
action=$1
vip=$2
if [[ $vip == *:* ]]; then prefix=128; else prefix=32; fi

arp_keys=(net.ipv4.conf.all.arp_ignore net.ipv4.conf.all.arp_announce)

case $action in
  apply)
    mkdir -p "$state"
    if [[ $prefix == 32 && ! -e $state/arp.saved ]]; then
      for key in "${arp_keys[@]}"; do echo "$key=$(sysctl -n "$key")"; done > "$state/arp.saved"
    fi
    ip addr replace "$vip/$prefix" dev lo
    touch "$state/vip-$vip"
    if [[ $prefix == 32 ]]; then
      sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
    fi
    ;;
  remove)
    ip addr del "$vip/$prefix" dev lo 2>/dev/null || true
    rm -f "$state/vip-$vip"
    if [[ -e $state/arp.saved ]] && ! compgen -G "$state/vip-*.*.*.*" > /dev/null; then
      while IFS= read -r setting; do sysctl -qw "$setting"; done < "$state/arp.saved"
      rm -f "$state/arp.saved"
    fi
    ;;
  *) usage ;;
esac
