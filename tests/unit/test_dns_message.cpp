// DNS queries and answers of server discovery (dns_message.hpp).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fulcrum/dns_message.hpp"

using namespace fulcrum;

namespace {

// Builds DNS messages byte by byte, as a server would send them.
struct Message {
  std::vector<uint8_t> bytes;

  void u8(unsigned value) { bytes.push_back(static_cast<uint8_t>(value)); }
  void u16(unsigned value) {
    u8(value >> 8);
    u8(value & 0xff);
  }
  void u32(uint32_t value) {
    u16(value >> 16);
    u16(value & 0xffff);
  }
  void name(const std::string& dotted) {
    size_t start = 0;
    while (start < dotted.size()) {
      size_t dot = dotted.find('.', start);
      if (dot == std::string::npos) dot = dotted.size();
      u8(static_cast<unsigned>(dot - start));
      bytes.insert(bytes.end(), dotted.begin() + static_cast<std::ptrdiff_t>(start),
                   dotted.begin() + static_cast<std::ptrdiff_t>(dot));
      start = dot + 1;
    }
    u8(0);
  }
  void pointer(size_t offset) { u16(0xc000 | static_cast<unsigned>(offset)); }
  // Header and question; the counts of the sections follow.
  void header(unsigned id, unsigned flags, unsigned answers, unsigned authorities,
              unsigned additionals, const std::string& question, DnsType type) {
    u16(id);
    u16(flags);
    u16(1);
    u16(answers);
    u16(authorities);
    u16(additionals);
    name(question);
    u16(static_cast<unsigned>(type));
    u16(1);
  }
  // A record's fixed part; its owner was written before.
  void record(unsigned type, uint32_t ttl, unsigned length) {
    u16(type);
    u16(1);
    u32(ttl);
    u16(length);
  }
  void a(uint32_t ttl, uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
    record(1, ttl, 4);
    u8(a);
    u8(b);
    u8(c);
    u8(d);
  }
};

constexpr unsigned kAnswer = 0x8180;  // response, RD, RA, NOERROR
constexpr size_t kQuestionName = 12;  // where the question's name starts

std::vector<std::string> texts(const std::vector<SocketAddress>& addresses) {
  std::vector<std::string> out;
  out.reserve(addresses.size());
  for (const SocketAddress& address : addresses) out.push_back(address.host_string());
  return out;
}

// A seed of the dns_answer fuzz target: a real dnsmasq answer after one
// byte that picks the question.
std::vector<uint8_t> seed(const char* name) {
  std::ifstream file(std::string(FULCRUM_SOURCE_DIR) + "/tests/fuzz/corpus/dns_answer/" + name,
                     std::ios::binary);
  REQUIRE_MESSAGE(file, name);
  std::vector<uint8_t> bytes{std::istreambuf_iterator<char>(file),
                             std::istreambuf_iterator<char>()};
  REQUIRE(bytes.size() > 3);
  bytes.erase(bytes.begin());
  return bytes;
}

uint16_t id_of(const std::vector<uint8_t>& message) {
  return static_cast<uint16_t>(message[0] << 8 | message[1]);
}

}  // namespace

TEST_CASE("dns: real answers of dnsmasq (records file, local-ttl 1)") {
  const std::vector<uint8_t> a = seed("dnsmasq-a");
  const DnsAnswer a_answer = parse_dns_answer(a, id_of(a), "app.svc.test", DnsType::a);
  REQUIRE(a_answer.status == DnsAnswer::Status::ok);
  CHECK(texts(a_answer.addresses) == std::vector<std::string>{"198.18.1.11", "198.18.1.12"});
  CHECK(a_answer.ttl == 1);
  const std::vector<uint8_t> aaaa = seed("dnsmasq-aaaa");
  const DnsAnswer aaaa_answer = parse_dns_answer(aaaa, id_of(aaaa), "app.svc.test", DnsType::aaaa);
  REQUIRE(aaaa_answer.status == DnsAnswer::Status::ok);
  CHECK(texts(aaaa_answer.addresses) == std::vector<std::string>{"2001:db8::11"});
  const std::vector<uint8_t> srv = seed("dnsmasq-srv");
  const DnsAnswer srv_answer =
      parse_dns_answer(srv, id_of(srv), "_app._tcp.svc.test", DnsType::srv);
  REQUIRE(srv_answer.status == DnsAnswer::Status::ok);
  REQUIRE(srv_answer.srv.size() == 2);
  std::vector<std::string> targets;
  for (const DnsSrv& record : srv_answer.srv) {
    targets.push_back(record.target + ":" + std::to_string(record.port) + " weight " +
                      std::to_string(record.weight) + " priority " +
                      std::to_string(record.priority));
  }
  std::sort(targets.begin(), targets.end());
  CHECK(targets == std::vector<std::string>{"app1.svc.test:9001 weight 3 priority 10",
                                            "app2.svc.test:9002 weight 1 priority 10"});
  std::vector<std::string> additional;
  for (const DnsAddress& record : srv_answer.additional)
    additional.push_back(record.owner + " " + record.address.host_string());
  std::sort(additional.begin(), additional.end());
  CHECK(additional == std::vector<std::string>{"app1.svc.test 198.18.1.11",
                                               "app1.svc.test 2001:db8::11",
                                               "app2.svc.test 198.18.1.12"});
  const std::vector<uint8_t> cname = seed("dnsmasq-cname");
  const DnsAnswer cname_answer = parse_dns_answer(cname, id_of(cname), "www.svc.test", DnsType::a);
  REQUIRE(cname_answer.status == DnsAnswer::Status::ok);
  CHECK(texts(cname_answer.addresses) == std::vector<std::string>{"198.18.1.11"});
  const std::vector<uint8_t> refused = seed("dnsmasq-refused");
  CHECK(parse_dns_answer(refused, id_of(refused), "nothere.svc.test", DnsType::a).error ==
        "the server refused the query (REFUSED)");
}

TEST_CASE("dns: a query for api.test, SRV, with EDNS0") {
  const std::vector<uint8_t> query = encode_dns_query(0x1234, "api.test", DnsType::srv);
  const std::vector<uint8_t> expected = {
      0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,  // header
      3,    'a',  'p',  'i',  4,    't',  'e',  's',  't',  0,                 // api.test
      0x00, 0x21, 0x00, 0x01,                                                  // SRV, IN
      0x00, 0x00, 0x29, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};       // OPT 4096
  CHECK(query == expected);
  CHECK(encode_dns_query(1, "", DnsType::a).empty());
  CHECK(encode_dns_query(1, "a..test", DnsType::a).empty());
  CHECK(encode_dns_query(1, "a.test.", DnsType::a).empty());
  CHECK(encode_dns_query(1, std::string(64, 'a') + ".test", DnsType::a).empty());
  CHECK(encode_dns_query(1, std::string(63, 'a') + ".test", DnsType::a).size() == 12 + 70 + 4 + 11);
}

TEST_CASE("dns: A records of the asked name, any case, the smallest TTL") {
  Message m;
  m.header(7, kAnswer, 2, 0, 0, "App.Svc.TEST", DnsType::a);
  m.pointer(kQuestionName);
  m.a(30, 198, 18, 1, 11);
  m.pointer(kQuestionName);
  m.a(10, 198, 18, 1, 12);
  const DnsAnswer answer = parse_dns_answer(m.bytes, 7, "app.svc.test", DnsType::a);
  REQUIRE(answer.status == DnsAnswer::Status::ok);
  CHECK(texts(answer.addresses) == std::vector<std::string>{"198.18.1.11", "198.18.1.12"});
  CHECK(answer.ttl == 10);

  // Every strict prefix is refused, never half read.
  for (size_t size = 0; size < m.bytes.size(); ++size) {
    const std::vector<uint8_t> prefix(m.bytes.begin(), m.bytes.begin() + static_cast<long>(size));
    CHECK(parse_dns_answer(prefix, 7, "app.svc.test", DnsType::a).status ==
          DnsAnswer::Status::failed);
  }
}

TEST_CASE("dns: AAAA, and CNAMEs followed") {
  Message m;
  m.header(9, kAnswer, 2, 0, 0, "www.test", DnsType::aaaa);
  m.pointer(kQuestionName);
  const size_t cname_data = m.bytes.size() + 10;
  m.record(5, 300, 9);
  m.name("db.test");  // 9 bytes: 2db4test0
  m.pointer(cname_data);
  m.record(28, 60, 16);
  for (const unsigned byte : {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07})
    m.u8(byte);
  const DnsAnswer answer = parse_dns_answer(m.bytes, 9, "www.test", DnsType::aaaa);
  REQUIRE(answer.status == DnsAnswer::Status::ok);
  CHECK(texts(answer.addresses) == std::vector<std::string>{"2001:db8::7"});
  CHECK(answer.ttl == 60);
}

TEST_CASE("dns: SRV targets, ports and weights, with addresses in the additional section") {
  Message m;
  m.header(3, kAnswer, 2, 0, 3, "_app._tcp.svc.test", DnsType::srv);
  const size_t first_target = m.bytes.size() + 2 + 10 + 6;
  for (const unsigned port : {9001U, 9002U}) {
    m.pointer(kQuestionName);
    m.record(33, 20, port == 9001 ? 6 + 15 : 6 + 7);
    m.u16(10);                    // priority
    m.u16(port == 9001 ? 3 : 1);  // weight
    m.u16(port);
    if (port == 9001) {
      m.name("App1.svc.test");  // 15 bytes
    } else {
      m.u8(4);
      m.bytes.insert(m.bytes.end(), {'a', 'p', 'p', '2'});
      m.pointer(first_target + 5);  // svc.test of the first target
    }
  }
  m.pointer(first_target);
  m.a(40, 198, 18, 1, 21);
  m.u8(0);  // the OPT record (root owner) an EDNS server adds: skipped
  m.record(41, 0, 0);
  m.name("app2.svc.test");
  m.a(5, 198, 18, 1, 22);
  const DnsAnswer answer = parse_dns_answer(m.bytes, 3, "_app._tcp.svc.test", DnsType::srv);
  REQUIRE(answer.status == DnsAnswer::Status::ok);
  REQUIRE(answer.srv.size() == 2);
  CHECK(answer.srv[0].target == "app1.svc.test");
  CHECK(answer.srv[0].port == 9001);
  CHECK(answer.srv[0].weight == 3);
  CHECK(answer.srv[1].target == "app2.svc.test");
  CHECK(answer.srv[1].port == 9002);
  CHECK(answer.ttl == 20);
  REQUIRE(answer.additional.size() == 2);
  CHECK(answer.additional[0].owner == "app1.svc.test");
  CHECK(answer.additional[0].address.host_string() == "198.18.1.21");
  CHECK(answer.additional[0].ttl == 40);
  CHECK(answer.additional[1].owner == "app2.svc.test");
  CHECK(answer.additional[1].ttl == 5);
}

TEST_CASE("dns: NXDOMAIN, errors, truncation, and answers to something else") {
  const auto with_flags = [](unsigned id, unsigned flags, const std::string& question) {
    Message m;
    m.header(id, flags, 0, 0, 0, question, DnsType::a);
    return m.bytes;
  };
  CHECK(parse_dns_answer(with_flags(1, 0x8183, "x.test"), 1, "x.test", DnsType::a).status ==
        DnsAnswer::Status::no_name);
  const DnsAnswer servfail =
      parse_dns_answer(with_flags(1, 0x8182, "x.test"), 1, "x.test", DnsType::a);
  CHECK(servfail.status == DnsAnswer::Status::failed);
  CHECK(servfail.error == "the server failed (SERVFAIL)");
  CHECK(parse_dns_answer(with_flags(1, 0x8385, "x.test"), 1, "x.test", DnsType::a).status ==
        DnsAnswer::Status::truncated);
  CHECK(parse_dns_answer(with_flags(2, kAnswer, "x.test"), 1, "x.test", DnsType::a).error ==
        "not an answer to the query");
  CHECK(parse_dns_answer(with_flags(1, 0x0100, "x.test"), 1, "x.test", DnsType::a).error ==
        "not an answer to the query");
  CHECK(parse_dns_answer(with_flags(1, kAnswer, "y.test"), 1, "x.test", DnsType::a).error ==
        "an answer to another question");
  CHECK(parse_dns_answer(with_flags(1, kAnswer, "x.test"), 1, "x.test", DnsType::aaaa).error ==
        "an answer to another question");
  // No records: the name exists without addresses.
  const DnsAnswer empty =
      parse_dns_answer(with_flags(1, kAnswer, "x.test"), 1, "x.test", DnsType::a);
  CHECK(empty.status == DnsAnswer::Status::ok);
  CHECK(empty.addresses.empty());
}

TEST_CASE("dns: malformed answers are refused") {
  // A compression pointer that points forward (or at itself).
  Message forward;
  forward.header(1, kAnswer, 1, 0, 0, "x.test", DnsType::a);
  forward.pointer(forward.bytes.size());
  forward.a(1, 1, 2, 3, 4);
  CHECK(parse_dns_answer(forward.bytes, 1, "x.test", DnsType::a).error == "a malformed DNS answer");
  // An A record of 5 bytes.
  Message wide;
  wide.header(1, kAnswer, 1, 0, 0, "x.test", DnsType::a);
  wide.pointer(kQuestionName);
  wide.record(1, 1, 5);
  for (int i = 0; i < 5; ++i) wide.u8(1);
  CHECK(parse_dns_answer(wide.bytes, 1, "x.test", DnsType::a).error ==
        "a malformed address record");
  // Bytes after the last record.
  Message trailing;
  trailing.header(1, kAnswer, 1, 0, 0, "x.test", DnsType::a);
  trailing.pointer(kQuestionName);
  trailing.a(1, 1, 2, 3, 4);
  trailing.u8(0);
  CHECK(parse_dns_answer(trailing.bytes, 1, "x.test", DnsType::a).error ==
        "bytes after the DNS answer's records");
  // A CNAME loop.
  Message loop;
  loop.header(1, kAnswer, 2, 0, 0, "x.test", DnsType::a);
  const size_t second_owner = loop.bytes.size() + 2 + 10;
  loop.pointer(kQuestionName);
  loop.record(5, 1, 4);
  loop.u8(1);
  loop.u8('y');
  loop.pointer(kQuestionName + 2);  // y.test
  loop.pointer(second_owner);
  loop.record(5, 1, 2);
  loop.pointer(kQuestionName);  // back to x.test
  CHECK(parse_dns_answer(loop.bytes, 1, "x.test", DnsType::a).error ==
        "a chain of more than 8 CNAMEs");
  // A name of 254 bytes through pointers that go back to a label.
  Message longname;
  longname.header(1, kAnswer, 1, 0, 0, "x.test", DnsType::a);
  const size_t label = longname.bytes.size();
  longname.u8(60);
  for (int i = 0; i < 60; ++i) longname.u8('a');
  longname.pointer(label);  // loops through the 60-byte label until too long
  longname.a(1, 1, 2, 3, 4);
  CHECK(parse_dns_answer(longname.bytes, 1, "x.test", DnsType::a).error ==
        "a malformed DNS answer");
}
