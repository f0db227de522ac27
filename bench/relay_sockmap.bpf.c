// SPDX-License-Identifier: GPL-2.0
// relay_sockmap.bpf.c: the in-kernel half of relay_experiment --mode sockmap
// (docs/performance.md, "Experiment: sockmap redirection"). Never used by
// the daemon.
//
// Every socket of a relayed session is in `peers`, a SOCKHASH whose key is
// the socket cookie of the *other* socket of the session: the client is
// stored under the backend's cookie and the backend under the client's. So
// for each message a socket receives, the verdict program looks up its own
// cookie and gets the peer, with no port or address arithmetic (whose byte
// orders differ between __sk_buff fields). Inserting a socket into the map
// gives it a psock, which runs this program on every received skb.
//
// GPL: bpf_sk_redirect_hash and the sockmap helpers are gpl_only.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
  __uint(type, BPF_MAP_TYPE_SOCKHASH);
  __uint(max_entries, 65536);
  __type(key, __u64);    // cookie of the receiving socket
  __type(value, __u64);  // its peer (user space inserts a socket fd)
} peers SEC(".maps");

SEC("sk_skb/stream_verdict")
int relay_verdict(struct __sk_buff *skb) {
  __u64 key = bpf_get_socket_cookie(skb);
  // Flags 0: queue the skb for transmission on the peer (its egress), not
  // into the peer's receive queue. Returns SK_DROP if the peer is gone
  // (already closed, i.e. removed from the map): the session is ending.
  return bpf_sk_redirect_hash(skb, &peers, &key, 0);
}

char LICENSE[] SEC("license") = "GPL";
