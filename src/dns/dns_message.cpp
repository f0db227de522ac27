#include "fulcrum/dns_message.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <optional>

namespace fulcrum {

namespace {

constexpr uint16_t kClassIn = 1;
constexpr uint16_t kTypeCname = 5;
constexpr uint16_t kTypeOpt = 41;
constexpr size_t kHeaderSize = 12;
constexpr size_t kMaxName = 253;
// CNAMEs followed within one answer before giving up (a loop, or a chain
// no real zone has).
constexpr int kMaxCnames = 8;

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) {
    return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  });
  return out;
}

void put16(std::vector<uint8_t>& out, uint16_t value) {
  out.push_back(static_cast<uint8_t>(value >> 8));
  out.push_back(static_cast<uint8_t>(value & 0xff));
}

// Reads a message with bounds checks; a read past the end sets `bad`.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> message) : message_(message) {}

  bool bad() const { return bad_; }
  size_t offset() const { return at_; }
  void seek(size_t at) {
    if (at > message_.size()) bad_ = true;
    at_ = std::min(at, message_.size());
  }
  uint8_t u8() {
    if (at_ + 1 > message_.size()) return fail<uint8_t>();
    return message_[at_++];
  }
  uint16_t u16() {
    if (at_ + 2 > message_.size()) return fail<uint16_t>();
    const auto value = static_cast<uint16_t>(message_[at_] << 8 | message_[at_ + 1]);
    at_ += 2;
    return value;
  }
  uint32_t u32() {
    const uint32_t high = u16();
    return high << 16 | u16();
  }
  std::span<const uint8_t> bytes(size_t count) {
    if (at_ + count > message_.size()) {
      fail<int>();
      return {};
    }
    const auto out = message_.subspan(at_, count);
    at_ += count;
    return out;
  }

  // A possibly compressed name, lower case without trailing dot. Pointers
  // must point before the label that holds them, so reading ends.
  std::string name() {
    std::string out;
    size_t at = at_;
    std::optional<size_t> resume;  // where the reader goes on after a pointer
    for (;;) {
      if (at >= message_.size()) return fail<std::string>();
      const uint8_t length = message_[at];
      if ((length & 0xc0) == 0xc0) {
        if (at + 1 >= message_.size()) return fail<std::string>();
        const size_t target = (size_t{length} & 0x3f) << 8 | message_[at + 1];
        if (target >= at) return fail<std::string>();
        if (!resume) resume = at + 2;
        at = target;
        continue;
      }
      if ((length & 0xc0) != 0) return fail<std::string>();  // extended label types
      if (length == 0) {
        at_ = resume ? *resume : at + 1;
        return lower(out);
      }
      if (at + 1 + length > message_.size()) return fail<std::string>();
      if (!out.empty()) out += '.';
      out.append(reinterpret_cast<const char*>(&message_[at + 1]), length);
      if (out.size() > kMaxName) return fail<std::string>();
      at += 1 + size_t{length};
    }
  }

 private:
  template <typename T>
  T fail() {
    bad_ = true;
    at_ = message_.size();
    return T{};
  }

  std::span<const uint8_t> message_;
  size_t at_ = 0;
  bool bad_ = false;
};

struct Record {
  std::string owner;
  uint16_t type = 0;
  uint32_t ttl = 0;
  size_t data = 0;  // offset of the rdata in the message
  uint16_t length = 0;
};

DnsAnswer failure(std::string error) {
  DnsAnswer answer;
  answer.status = DnsAnswer::Status::failed;
  answer.error = std::move(error);
  return answer;
}

std::string_view rcode_text(unsigned rcode) {
  switch (rcode) {
    case 1: return "the server could not read the query (FORMERR)";
    case 2: return "the server failed (SERVFAIL)";
    case 4: return "the server does not do this kind of query (NOTIMP)";
    case 5: return "the server refused the query (REFUSED)";
    default: return "the server answered with an error";
  }
}

std::optional<SocketAddress> address_of(std::span<const uint8_t> data, uint16_t type) {
  if (type == static_cast<uint16_t>(DnsType::a) && data.size() == 4) {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    std::copy(data.begin(), data.end(), reinterpret_cast<uint8_t*>(&in.sin_addr));
    return SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&in), sizeof in);
  }
  if (type == static_cast<uint16_t>(DnsType::aaaa) && data.size() == 16) {
    sockaddr_in6 in6{};
    in6.sin6_family = AF_INET6;
    std::copy(data.begin(), data.end(), reinterpret_cast<uint8_t*>(&in6.sin6_addr));
    return SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&in6), sizeof in6);
  }
  return std::nullopt;
}

}  // namespace

std::vector<uint8_t> encode_dns_query(uint16_t id, std::string_view name, DnsType type) {
  if (name.empty() || name.size() > kMaxName) return {};
  std::vector<uint8_t> out;
  put16(out, id);
  put16(out, 0x0100);  // a standard query, recursion desired
  put16(out, 1);       // one question
  put16(out, 0);
  put16(out, 0);
  put16(out, 1);  // the OPT record
  size_t start = 0;
  while (start <= name.size()) {
    const size_t dot = std::min(name.find('.', start), name.size());
    const size_t length = dot - start;
    if (length == 0 || length > 63) return {};
    out.push_back(static_cast<uint8_t>(length));
    out.insert(out.end(), name.begin() + static_cast<std::ptrdiff_t>(start),
               name.begin() + static_cast<std::ptrdiff_t>(dot));
    start = dot + 1;
  }
  out.push_back(0);
  put16(out, static_cast<uint16_t>(type));
  put16(out, kClassIn);
  // OPT: root owner, the payload size in the class, no extended flags.
  out.push_back(0);
  put16(out, kTypeOpt);
  put16(out, kDnsUdpPayload);
  put16(out, 0);
  put16(out, 0);
  put16(out, 0);
  return out;
}

DnsAnswer parse_dns_answer(std::span<const uint8_t> message, uint16_t id, std::string_view name,
                           DnsType type) {
  Reader reader(message);
  if (message.size() < kHeaderSize) return failure("a DNS answer shorter than its header");
  const uint16_t got_id = reader.u16();
  const uint16_t flags = reader.u16();
  const uint16_t questions = reader.u16();
  const uint16_t answers = reader.u16();
  const uint16_t authorities = reader.u16();
  const uint16_t additionals = reader.u16();
  if (got_id != id || (flags & 0x8000) == 0) return failure("not an answer to the query");
  if ((flags >> 11 & 0xf) != 0) return failure("not an answer to a standard query");
  if (questions != 1) return failure("an answer without the query's question");
  const std::string asked = lower(name);
  const std::string question = reader.name();
  const uint16_t question_type = reader.u16();
  const uint16_t question_class = reader.u16();
  if (reader.bad()) return failure("a malformed DNS answer");
  if (question != asked || question_type != static_cast<uint16_t>(type) ||
      question_class != kClassIn)
    return failure("an answer to another question");
  if ((flags & 0x0200) != 0) {
    DnsAnswer truncated;
    truncated.status = DnsAnswer::Status::truncated;
    return truncated;
  }
  const unsigned rcode = flags & 0xf;
  if (rcode == 3) {
    DnsAnswer none;
    none.status = DnsAnswer::Status::no_name;
    return none;
  }
  if (rcode != 0) return failure(std::string(rcode_text(rcode)));

  // Every record, then what they say of the asked name.
  std::vector<Record> records;
  std::vector<Record> extra;  // the additional section
  const unsigned total = unsigned{answers} + authorities + additionals;
  for (unsigned i = 0; i < total; ++i) {
    Record record;
    record.owner = reader.name();
    record.type = reader.u16();
    const uint16_t record_class = reader.u16();
    record.ttl = reader.u32();
    record.length = reader.u16();
    record.data = reader.offset();
    reader.bytes(record.length);
    if (reader.bad()) return failure("a malformed DNS answer");
    if (record_class != kClassIn || record.type == kTypeOpt) continue;
    if (i < answers) {
      records.push_back(std::move(record));
    } else if (i >= unsigned{answers} + authorities) {
      extra.push_back(std::move(record));
    }
  }
  if (reader.offset() != message.size()) return failure("bytes after the DNS answer's records");

  DnsAnswer answer;
  answer.status = DnsAnswer::Status::ok;
  std::optional<uint32_t> ttl;
  const auto use_ttl = [&ttl](uint32_t value) { ttl = ttl ? std::min(*ttl, value) : value; };
  // The asked name, or where its CNAMEs lead.
  std::string owner = asked;
  for (int hops = 0;; ++hops) {
    const auto cname = std::find_if(records.begin(), records.end(), [&](const Record& r) {
      return r.type == kTypeCname && r.owner == owner;
    });
    if (cname == records.end()) break;
    if (hops == kMaxCnames) return failure("a chain of more than 8 CNAMEs");
    Reader data(message);
    data.seek(cname->data);
    owner = data.name();
    if (data.bad() || data.offset() != cname->data + cname->length)
      return failure("a malformed CNAME record");
    use_ttl(cname->ttl);
  }
  for (const Record& record : records) {
    if (record.owner != owner || record.type != static_cast<uint16_t>(type)) continue;
    const auto data = message.subspan(record.data, record.length);
    if (type == DnsType::srv) {
      Reader fields(message);
      fields.seek(record.data);
      DnsSrv srv;
      srv.priority = fields.u16();
      srv.weight = fields.u16();
      srv.port = fields.u16();
      srv.target = fields.name();
      if (fields.bad() || fields.offset() != record.data + record.length)
        return failure("a malformed SRV record");
      answer.srv.push_back(std::move(srv));
    } else {
      const std::optional<SocketAddress> address = address_of(data, record.type);
      if (!address) return failure("a malformed address record");
      answer.addresses.push_back(*address);
    }
    use_ttl(record.ttl);
  }
  for (const Record& record : extra) {
    if (record.type != static_cast<uint16_t>(DnsType::a) &&
        record.type != static_cast<uint16_t>(DnsType::aaaa))
      continue;
    const std::optional<SocketAddress> address =
        address_of(message.subspan(record.data, record.length), record.type);
    if (!address) return failure("a malformed address record");
    answer.additional.push_back(DnsAddress{record.owner, *address, record.ttl});
  }
  answer.ttl = ttl.value_or(0);
  return answer;
}

}  // namespace fulcrum
