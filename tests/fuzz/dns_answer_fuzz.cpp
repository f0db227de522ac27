// libFuzzer target for the DNS answers of server discovery: the first byte
// picks the question (A or AAAA of app.svc.test, SRV of _app._tcp.svc.test),
// the rest is the answer, whose own id is taken as the query's. Any input
// must give a verdict without crashing; an answer read as ok holds addresses
// of the asked family only and SRV targets as lower-case names of at most
// 253 bytes. Seeds in corpus/dns_answer/: real
// answers of dnsmasq (tests/unit/test_dns_message.cpp reads them too).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "fulcrum/dns_message.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using fulcrum::DnsType;
  if (size < 3) return 0;
  const DnsType types[] = {DnsType::a, DnsType::aaaa, DnsType::srv};
  const DnsType type = types[data[0] % 3];
  const std::span<const uint8_t> message(data + 1, size - 1);
  const auto id = static_cast<uint16_t>(message[0] << 8 | message[1]);
  const fulcrum::DnsAnswer answer = fulcrum::parse_dns_answer(
      message, id, type == DnsType::srv ? "_app._tcp.svc.test" : "app.svc.test", type);
  if (answer.status != fulcrum::DnsAnswer::Status::ok) return 0;
  for (const fulcrum::SocketAddress& address : answer.addresses) {
    const bool v6 = address.host_string().find(':') != std::string::npos;
    if (v6 != (type == DnsType::aaaa) || type == DnsType::srv) std::abort();
  }
  for (const fulcrum::DnsSrv& srv : answer.srv) {
    if (srv.target.size() > 253) std::abort();
    for (const char c : srv.target) {
      if (c >= 'A' && c <= 'Z') std::abort();
    }
  }
  return 0;
}
