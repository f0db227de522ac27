// DNS messages for server discovery (SPEC.md "Servers from DNS"): a query
// for A, AAAA or SRV records and a strict, bounded reading of the answer.
// libevent's evdns resolves host names but cannot ask for SRV records, so
// discovery speaks DNS itself (RFC 1035, RFC 2782 for SRV, RFC 6891 for the
// EDNS0 buffer size); dns_client.hpp sends the queries.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fulcrum/address.hpp"

namespace fulcrum {

enum class DnsType : uint16_t { a = 1, aaaa = 28, srv = 33 };

// The EDNS0 payload size a query offers: an SRV answer of a few dozen
// targets with their addresses does not fit the classic 512 bytes.
inline constexpr uint16_t kDnsUdpPayload = 4096;

// A query with id `id` for `name` (a host name without trailing dot, at
// most 253 bytes, labels of 1 to 63) and `type`, recursion desired, with an
// EDNS0 OPT record. Empty when the name cannot be encoded.
std::vector<uint8_t> encode_dns_query(uint16_t id, std::string_view name, DnsType type);

struct DnsSrv {
  uint16_t priority = 0;
  uint16_t weight = 0;
  uint16_t port = 0;
  std::string target;  // lower case, no trailing dot
};

// An address the answer gave for `owner` (the asked name or an SRV target,
// from the answer or the additional section).
struct DnsAddress {
  std::string owner;      // lower case, no trailing dot
  SocketAddress address;  // port 0
  uint32_t ttl = 0;
};

struct DnsAnswer {
  enum class Status {
    ok,         // records (possibly none: the name exists without them)
    no_name,    // NXDOMAIN
    truncated,  // TC: ask again over TCP
    failed,     // an answer that says the server failed or refused, or a malformed one
  };
  Status status = Status::failed;
  std::string error;  // why, for failed
  // The smallest TTL of the records used, in seconds (0 when none).
  uint32_t ttl = 0;
  std::vector<SocketAddress> addresses;  // A/AAAA of the asked name (after CNAMEs)
  std::vector<DnsSrv> srv;               // SRV of the asked name
  std::vector<DnsAddress> additional;    // A/AAAA of other names (SRV targets)
};

// Reads an answer to the query (`id`, `name`, `type`). Checks that it is a
// response to that question; follows CNAMEs within the message; never reads
// past `message`, never loops (compression pointers only point backwards).
DnsAnswer parse_dns_answer(std::span<const uint8_t> message, uint16_t id, std::string_view name,
                           DnsType type);

}  // namespace fulcrum
