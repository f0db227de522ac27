#include "fulcrum/jhash.hpp"

#include <cstring>

namespace fulcrum {

namespace {

constexpr uint32_t kInitialValue = 0xdeadbeef;

uint32_t rotate_left(uint32_t word, int shift) { return (word << shift) | (word >> (32 - shift)); }

uint32_t load_word(const unsigned char* bytes) {
  uint32_t word = 0;
  std::memcpy(&word, bytes, sizeof word);
  return word;
}

// lookup3's mix() of three words, between 12-byte blocks.
void mix(uint32_t& a, uint32_t& b, uint32_t& c) {
  a -= c;
  a ^= rotate_left(c, 4);
  c += b;
  b -= a;
  b ^= rotate_left(a, 6);
  a += c;
  c -= b;
  c ^= rotate_left(b, 8);
  b += a;
  a -= c;
  a ^= rotate_left(c, 16);
  c += b;
  b -= a;
  b ^= rotate_left(a, 19);
  a += c;
  c -= b;
  c ^= rotate_left(b, 4);
  b += a;
}

// lookup3's final(), after the last block.
void final_mix(uint32_t& a, uint32_t& b, uint32_t& c) {
  c ^= b;
  c -= rotate_left(b, 14);
  a ^= c;
  a -= rotate_left(c, 11);
  b ^= a;
  b -= rotate_left(a, 25);
  c ^= b;
  c -= rotate_left(b, 16);
  a ^= c;
  a -= rotate_left(c, 4);
  b ^= a;
  b -= rotate_left(a, 14);
  c ^= b;
  c -= rotate_left(b, 24);
}

}  // namespace

uint32_t kernel_jhash(const void* key, size_t length, uint32_t seed) {
  const auto* bytes = static_cast<const unsigned char*>(key);
  uint32_t a = kInitialValue + static_cast<uint32_t>(length) + seed;
  uint32_t b = a;
  uint32_t c = a;
  while (length > 12) {
    a += load_word(bytes);
    b += load_word(bytes + 4);
    c += load_word(bytes + 8);
    mix(a, b, c);
    length -= 12;
    bytes += 12;
  }
  if (length == 0) return c;
  // The kernel adds the last 1..12 bytes one by one, byte i of a word
  // shifted left by 8 * i (little-endian whatever the CPU).
  uint32_t tail[3] = {};
  for (size_t i = 0; i < length; ++i)
    tail[i / 4] |= static_cast<uint32_t>(bytes[i]) << (8 * (i % 4));
  a += tail[0];
  b += tail[1];
  c += tail[2];
  final_mix(a, b, c);
  return c;
}

}  // namespace fulcrum
