// The Linux kernel's jhash (Bob Jenkins' lookup3, as include/linux/jhash.h
// computes it), and the slot nftables' `jhash ... mod N seed S` expression
// derives from it. Maglev hashes clients with it, so that proxy mode and the
// kernel's maps (forwarding nat, fullnat, dsr) send a client to the same
// server.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fulcrum {

// jhash(key, length, seed) over `length` bytes read as the kernel reads its
// registers: 32-bit words in this CPU's byte order.
uint32_t kernel_jhash(const void* key, size_t length, uint32_t seed);

// What nft_hash puts in its register for `jhash EXPR mod modulus`: the hash
// scaled into [0, modulus) by multiplication (the kernel's reciprocal_scale).
inline uint32_t scale_to(uint32_t hash, uint32_t modulus) {
  return static_cast<uint32_t>((static_cast<uint64_t>(hash) * modulus) >> 32);
}

}  // namespace fulcrum
