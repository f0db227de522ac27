#include "fulcrum/client_hello.hpp"

#include <optional>
#include <vector>

namespace fulcrum {

namespace {

constexpr uint8_t kHandshakeRecord = 22;
constexpr uint8_t kClientHello = 1;
constexpr size_t kRecordHeader = 5;
constexpr size_t kMaxRecord = 16384;  // TLSPlaintext.length (RFC 8446 5.1)
constexpr uint16_t kServerNameExtension = 0;
constexpr uint8_t kHostName = 0;

// Reads big-endian fields off a byte span; any read past the end fails the
// whole parse (`ok` false), so callers check once at the end of a step.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> bytes) : bytes_(bytes) {}

  bool ok() const { return ok_; }
  size_t left() const { return ok_ ? bytes_.size() - at_ : 0; }

  uint32_t number(size_t width) {
    if (!take(width)) return 0;
    uint32_t value = 0;
    for (size_t i = 0; i < width; ++i) value = value << 8 | bytes_[at_ - width + i];
    return value;
  }
  // A length-prefixed block (`width` bytes of length).
  Reader block(size_t width) {
    const uint32_t length = number(width);
    if (!take(length)) return Reader({});
    return Reader(bytes_.subspan(at_ - length, length));
  }
  std::span<const uint8_t> bytes(size_t count) {
    if (!take(count)) return {};
    return bytes_.subspan(at_ - count, count);
  }
  void skip(size_t count) { take(count); }

 private:
  bool take(size_t count) {
    if (!ok_ || count > bytes_.size() - at_) {
      ok_ = false;
      return false;
    }
    at_ += count;
    return true;
  }

  std::span<const uint8_t> bytes_;
  size_t at_ = 0;
  bool ok_ = true;
};

ClientHelloScan malformed(std::string reason) {
  return {ClientHelloScan::Status::malformed, "", std::move(reason)};
}

// A DNS host name as SNI carries it (RFC 6066: no trailing dot, no IP
// literal is sent; RFC 1123 labels): letters, digits, '-' and '.', labels
// of 1 to 63, 1 to 253 in all. Lowered. nullopt when it is not one.
std::optional<std::string> host_name(std::span<const uint8_t> bytes) {
  if (bytes.empty() || bytes.size() > 253) return std::nullopt;
  std::string name;
  size_t label = 0;
  for (const uint8_t byte : bytes) {
    const char c = static_cast<char>(byte);
    if (c == '.') {
      if (label == 0) return std::nullopt;
      label = 0;
    } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
      if (++label > 63) return std::nullopt;
    } else if (c >= 'A' && c <= 'Z') {
      if (++label > 63) return std::nullopt;
      name += static_cast<char>(c - 'A' + 'a');
      continue;
    } else {
      return std::nullopt;
    }
    name += c;
  }
  if (label == 0) return std::nullopt;  // empty last label: a trailing dot
  return name;
}

}  // namespace

ClientHelloScan scan_client_hello(std::span<const uint8_t> data) {
  using Status = ClientHelloScan::Status;
  // The first record's header says whether this is TLS at all.
  if (!data.empty() && data[0] != kHandshakeRecord) return {Status::not_tls, "", ""};
  if (data.size() >= 2 && data[1] != 3) return {Status::not_tls, "", ""};

  // Gather the handshake bytes of consecutive handshake records until the
  // ClientHello message is whole.
  std::vector<uint8_t> message;
  size_t at = 0;
  std::optional<size_t> message_length;
  while (!message_length || message.size() < *message_length + 4) {
    if (data.size() - at < kRecordHeader) return {Status::incomplete, "", ""};
    const uint8_t type = data[at];
    const size_t length = static_cast<size_t>(data[at + 3]) << 8 | data[at + 4];
    if (type != kHandshakeRecord)
      return malformed("a record other than handshake inside the hello");
    if (data[at + 1] != 3) return malformed("record version is not 3.x");
    if (length == 0 || length > kMaxRecord) return malformed("record length out of range");
    if (data.size() - at - kRecordHeader < length) return {Status::incomplete, "", ""};
    message.insert(message.end(), data.begin() + static_cast<std::ptrdiff_t>(at + kRecordHeader),
                   data.begin() + static_cast<std::ptrdiff_t>(at + kRecordHeader + length));
    at += kRecordHeader + length;
    if (!message_length && message.size() >= 4) {
      if (message[0] != kClientHello)
        return malformed("first handshake message is not ClientHello");
      message_length =
          static_cast<size_t>(message[1]) << 16 | static_cast<size_t>(message[2]) << 8 | message[3];
      if (*message_length > kMaxClientHello)
        return malformed("ClientHello longer than 16384 bytes");
    }
  }
  if (message.size() > *message_length + 4)
    return malformed("bytes after the ClientHello in its record");

  Reader hello(std::span<const uint8_t>(message).subspan(4, *message_length));
  const uint32_t version = hello.number(2);
  hello.skip(32);  // random
  const Reader session_id = hello.block(1);
  Reader ciphers = hello.block(2);
  const Reader compression = hello.block(1);
  if (!hello.ok()) return malformed("ClientHello shorter than its fixed fields");
  if (version >> 8 != 3) return malformed("legacy_version is not 3.x");
  if (session_id.left() > 32) return malformed("session id longer than 32 bytes");
  if (ciphers.left() < 2 || ciphers.left() % 2 != 0) return malformed("bad cipher suite list");
  if (compression.left() < 1) return malformed("no compression method");
  ClientHelloScan scan{Status::complete, "", ""};
  if (hello.left() == 0) return scan;  // no extensions: no server name
  Reader extensions = hello.block(2);
  if (!hello.ok() || hello.left() != 0) return malformed("bad extension block length");
  std::vector<uint16_t> seen;
  while (extensions.left() > 0) {
    const auto type = static_cast<uint16_t>(extensions.number(2));
    Reader body = extensions.block(2);
    if (!extensions.ok()) return malformed("extension runs past its block");
    for (const uint16_t earlier : seen) {
      if (earlier == type) return malformed("extension sent twice");
    }
    seen.push_back(type);
    if (type != kServerNameExtension) continue;
    Reader names = body.block(2);
    if (!body.ok() || body.left() != 0 || names.left() == 0)
      return malformed("bad server_name extension");
    // One name per type (RFC 6066): the host name is the only type.
    bool have_host = false;
    while (names.left() > 0) {
      const auto name_type = static_cast<uint8_t>(names.number(1));
      Reader name = names.block(2);
      if (!names.ok()) return malformed("bad server_name entry");
      if (name_type != kHostName) continue;
      if (have_host) return malformed("two host names");
      have_host = true;
      const std::optional<std::string> host = host_name(name.bytes(name.left()));
      if (!host) return malformed("server name is not a host name");
      scan.server_name = *host;
    }
  }
  return scan;
}

}  // namespace fulcrum
