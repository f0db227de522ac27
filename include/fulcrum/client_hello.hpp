// The server name of a TLS ClientHello (SPEC.md "At the edge": sni_routes),
// read from the bytes a client sent first, without consuming them: fulcrum
// peeks, routes, and forwards the hello unchanged. A strict, bounded
// parser (RFC 8446 section 4.1.2, RFC 6066 section 3): the hello may span
// several TLS records and TCP segments (post-quantum key shares make hellos
// over 1,500 bytes common); it may not exceed kMaxClientHello bytes.
// tests/fuzz/client_hello_fuzz.cpp runs it on mutations of real hellos.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace fulcrum {

// The largest ClientHello message read (its handshake body, records'
// headers aside). OpenSSL, NSS and BoringSSL send well under 4 KiB even
// with hybrid post-quantum key shares; a hello beyond this is refused.
inline constexpr size_t kMaxClientHello = 16384;

struct ClientHelloScan {
  enum class Status {
    incomplete,  // a prefix of a valid hello: wait for more bytes
    complete,    // a whole hello; server_name is its host name, if any
    not_tls,     // the first bytes are no TLS handshake record
    malformed,   // TLS, but not a hello this parser accepts (reason)
  };
  Status status = Status::incomplete;
  std::string server_name;  // lower case; empty: the hello names none
  std::string reason;       // malformed: what is wrong
};

ClientHelloScan scan_client_hello(std::span<const uint8_t> data);

}  // namespace fulcrum
