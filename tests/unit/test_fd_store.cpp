// systemd's fd store: the names listening sockets are stored under (which
// must survive FDNAME's rules and read back exactly), what a start takes
// from LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES (real sockets, a faked
// environment), and the FDSTORE / FDSTOREREMOVE datagrams FdStore sends
// (read from a notify socket of the test's own).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "fulcrum/address.hpp"
#include "fulcrum/fd.hpp"
#include "fulcrum/fd_store.hpp"
#include "fulcrum/notify.hpp"

using namespace fulcrum;

namespace {

SocketAddress address(const char* text) {
  AddressParse parsed = parse_address(text);
  REQUIRE_MESSAGE(parsed.error.empty(), parsed.error);
  return parsed.addresses.front();
}

// What systemd accepts as an FDNAME (sd_notify(3)): printable ASCII
// without ':', 255 bytes at most.
bool valid_fdname(const std::string& name) {
  if (name.empty() || name.size() > 255) return false;
  for (const char c : name) {
    if (c < 0x20 || c > 0x7e || c == ':') return false;
  }
  return true;
}

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

// A listening socket on `host` with a port the kernel picks.
Fd listening(const char* host, SocketAddress& bound) {
  AddressParse parsed = parse_address(std::string(host) + ":1");
  REQUIRE(parsed.error.empty());
  SocketAddress any = parsed.addresses.front().with_port(0);
  Fd fd(::socket(any.family(), SOCK_STREAM, IPPROTO_TCP));
  REQUIRE(fd);
  REQUIRE(::bind(fd.get(), any.sockaddr_ptr(), any.length) == 0);
  REQUIRE(::listen(fd.get(), 16) == 0);
  bound.length = sizeof bound.storage;
  REQUIRE(::getsockname(fd.get(), bound.sockaddr_ptr(), &bound.length) == 0);
  return fd;
}

bool ipv6_loopback() {
  const Fd fd(::socket(AF_INET6, SOCK_STREAM, 0));
  sockaddr_in6 loopback{};
  loopback.sin6_family = AF_INET6;
  loopback.sin6_addr = in6addr_loopback;
  return fd && ::bind(fd.get(), reinterpret_cast<sockaddr*>(&loopback), sizeof loopback) == 0;
}

// `count` descriptors in a row, none open: where the faked LISTEN_FDS go.
int free_range(int count) {
  for (int first = 600; first < 4000; first += count) {
    bool free = true;
    for (int fd = first; fd < first + count && free; ++fd) free = !is_open(fd);
    if (free) return first;
  }
  FAIL("no free descriptor range");
  return -1;
}

// Puts `passed` (descriptor, name) at `first`, `first + 1`, ... with the
// environment systemd would set for this process.
void fake_listen_environment(int first, const std::vector<std::pair<int, std::string>>& passed,
                             const std::string& pid) {
  std::string names;
  for (size_t i = 0; i < passed.size(); ++i) {
    REQUIRE(::dup2(passed[i].first, first + static_cast<int>(i)) == first + static_cast<int>(i));
    // systemd clears close-on-exec on what it passes.
    ::fcntl(first + static_cast<int>(i), F_SETFD, 0);
    names += (i == 0 ? "" : ":") + passed[i].second;
  }
  ::setenv("LISTEN_PID", pid.c_str(), 1);
  ::setenv("LISTEN_FDS", std::to_string(passed.size()).c_str(), 1);
  ::setenv("LISTEN_FDNAMES", names.c_str(), 1);
}

bool listen_environment_unset() {
  return std::getenv("LISTEN_PID") == nullptr && std::getenv("LISTEN_FDS") == nullptr &&
         std::getenv("LISTEN_FDNAMES") == nullptr;
}

// A datagram socket standing in for systemd's notify socket, named in
// NOTIFY_SOCKET while it lives (abstract, so nothing is left behind).
class FakeManager {
 public:
  FakeManager() : socket_(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) {
    const std::string name = "fulcrum-test-fd-store-" + std::to_string(::getpid());
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path + 1, name.data(), name.size());
    const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    REQUIRE(::bind(socket_.get(), reinterpret_cast<sockaddr*>(&address), length) == 0);
    ::setenv("NOTIFY_SOCKET", ("@" + name).c_str(), 1);
  }
  ~FakeManager() { ::unsetenv("NOTIFY_SOCKET"); }
  FakeManager(const FakeManager&) = delete;
  FakeManager& operator=(const FakeManager&) = delete;

  struct Message {
    std::string text;
    Fd fd;  // the descriptor attached, if any
  };
  // Every datagram sent so far.
  std::vector<Message> messages() {
    std::vector<Message> out;
    while (true) {
      char text[512];
      iovec data{text, sizeof text};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
      msghdr header{};
      header.msg_iov = &data;
      header.msg_iovlen = 1;
      header.msg_control = control;
      header.msg_controllen = sizeof control;
      const ssize_t n = ::recvmsg(socket_.get(), &header, MSG_CMSG_CLOEXEC);
      if (n < 0) return out;
      Message message{std::string(text, static_cast<size_t>(n)), Fd()};
      for (cmsghdr* c = CMSG_FIRSTHDR(&header); c != nullptr; c = CMSG_NXTHDR(&header, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
          CHECK(c->cmsg_len == CMSG_LEN(sizeof(int)));
          int fd = -1;
          std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
          message.fd.reset(fd);
        }
      }
      out.push_back(std::move(message));
    }
  }

 private:
  Fd socket_;
};

SocketAddress bound_address(int fd) {
  SocketAddress bound;
  bound.length = sizeof bound.storage;
  REQUIRE(::getsockname(fd, bound.sockaddr_ptr(), &bound.length) == 0);
  return bound;
}

}  // namespace

TEST_CASE("a listener's fd name holds its address and worker, no ':', and reads back exactly") {
  CHECK(listener_fd_name(address("127.0.0.1:8080"), 0) == "listen_127.0.0.1_8080_w0");
  CHECK(listener_fd_name(address("[::1]:8080"), 1) == "listen_--1_8080_w1");
  CHECK(listener_fd_name(address("[2001:db8::10]:443"), 12) == "listen_2001-db8--10_443_w12");
  CHECK(stats_fd_name(address("127.0.0.1:9100")) == "stats_127.0.0.1_9100");
  CHECK(stats_fd_name(address("[::]:9100")) == "stats_--_9100");

  SocketAddress scoped = address("[2001:db8::2]:80");
  reinterpret_cast<sockaddr_in6&>(scoped.storage).sin6_scope_id = 3;
  CHECK(listener_fd_name(scoped, 0) == "listen_2001-db8--2%3_80_w0");

  const std::vector<SocketAddress> addresses = {
      address("127.0.0.1:8080"),   address("0.0.0.0:1"),
      address("198.18.1.2:65535"), address("[::1]:8080"),
      address("[::]:443"),         address("[::ffff:198.18.0.1]:80"),
      address("[2001:db8::1]:53"), scoped};
  for (const SocketAddress& a : addresses) {
    for (const uint32_t worker : {0U, 1U, 63U, 4294967295U}) {
      const std::string name = listener_fd_name(a, worker);
      CAPTURE(name);
      CHECK(valid_fdname(name));
      const auto parsed = parse_fd_name(name);
      REQUIRE(parsed.has_value());
      CHECK(parsed->kind == StoredName::Kind::listener);
      CHECK(parsed->address == a);
      CHECK(parsed->worker == worker);
    }
    const std::string name = stats_fd_name(a);
    CAPTURE(name);
    CHECK(valid_fdname(name));
    const auto parsed = parse_fd_name(name);
    REQUIRE(parsed.has_value());
    CHECK(parsed->kind == StoredName::Kind::stats);
    CHECK(parsed->address == a);
  }
}

TEST_CASE("names fulcrum does not write are not read as listeners") {
  for (const char* name : {"",
                           "stored",
                           "listen_",
                           "listen_127.0.0.1_8080",
                           "listen_127.0.0.1_8080_w",
                           "listen_127.0.0.1_8080_w01",
                           "listen_127.0.0.1_8080_w-1",
                           "listen_127.0.0.1_8080_w4294967296",
                           "listen_127.0.0.1_08080_w0",
                           "listen_127.0.0.1_0_w0",
                           "listen_127.0.0.1_65536_w0",
                           "listen_127.0.0.1_+80_w0",
                           "listen_127.0.0.01_80_w0",
                           "listen_1.2.3_80_w0",
                           "listen_::1_8080_w0",
                           "listen_0--1_8080_w0",
                           "listen_--FFFF-198.18.0.1_80_w0",
                           "listen_2001-db8--2%_80_w0",
                           "listen_2001-db8--2%x_80_w0",
                           "listen_127.0.0.1%1_80_w0",
                           "listen_127.0.0.1_80_w0 ",
                           "stats_127.0.0.1_9100_w0",
                           "stats_127.0.0.1",
                           "Listen_127.0.0.1_80_w0",
                           "listen_127.0.0.1_80_x0",
                           "upgrade_127.0.0.1_80"}) {
    CAPTURE(name);
    CHECK_FALSE(parse_fd_name(name).has_value());
  }
}

TEST_CASE("a start takes the listening sockets systemd passed, checked against their names") {
  SocketAddress first_address;
  SocketAddress second_address;
  SocketAddress stats_address;
  Fd first = listening("127.0.0.1", first_address);
  Fd second = listening("127.0.0.1", second_address);
  Fd stats = listening("127.0.0.1", stats_address);
  SocketAddress other_address;
  Fd other = listening("127.0.0.1", other_address);
  Fd not_listening(::socket(AF_INET, SOCK_STREAM, 0));
  Fd udp(::socket(AF_INET, SOCK_DGRAM, 0));
  REQUIRE(::bind(udp.get(), first_address.with_port(0).sockaddr_ptr(), first_address.length) == 0);
  const SocketAddress udp_address = bound_address(udp.get());
  int ends[2];
  REQUIRE(::pipe(ends) == 0);
  Fd pipe_read(ends[0]);
  Fd pipe_write(ends[1]);

  std::vector<std::pair<int, std::string>> passed = {
      {first.get(), listener_fd_name(first_address, 0)},
      {second.get(), listener_fd_name(second_address, 3)},
      {stats.get(), stats_fd_name(stats_address)},
      // a second stats port: one is enough
      {other.get(), stats_fd_name(other_address)},
      // not what their names say
      {other.get(), listener_fd_name(first_address, 1)},
      {not_listening.get(), listener_fd_name(first_address, 2)},
      {udp.get(), listener_fd_name(udp_address, 0)},
      {pipe_read.get(), listener_fd_name(first_address, 4)},
      // names fulcrum does not write
      {first.get(), "stored"},
      {pipe_write.get(), "other"},
  };
  // An IPv6 listener too, where the machine has ::1.
  SocketAddress ipv6_address;
  Fd ipv6;
  if (ipv6_loopback()) {
    ipv6 = listening("[::1]", ipv6_address);
    passed.emplace_back(ipv6.get(), listener_fd_name(ipv6_address, 1));
  }
  const int base = free_range(static_cast<int>(passed.size()));
  fake_listen_environment(base, passed, std::to_string(::getpid()));

  StoredFds stored = take_stored_fds(base);
  CHECK(listen_environment_unset());

  REQUIRE(stored.listeners.size() == (ipv6 ? 3 : 2));
  CHECK(stored.listeners[0].address == first_address);
  CHECK(stored.listeners[0].worker == 0);
  CHECK(stored.listeners[0].fd == base);
  CHECK(stored.listeners[1].address == second_address);
  CHECK(stored.listeners[1].worker == 3);
  CHECK(stored.listeners[1].fd == base + 1);
  if (ipv6) {
    CHECK(stored.listeners[2].address == ipv6_address);
    CHECK(stored.listeners[2].worker == 1);
    CHECK(stored.listeners[2].fd == base + 10);
  }
  REQUIRE(stored.stats.has_value());
  CHECK(stored.stats->address == stats_address);
  CHECK(stored.stats->fd == base + 2);

  std::vector<std::string> names;
  names.reserve(passed.size());
  for (const auto& [fd, name] : passed) names.push_back(name);
  CHECK(stored.names == names);
  CHECK(stored.discarded == std::vector<std::string>(names.begin() + 3, names.begin() + 10));

  std::vector<int> kept = {base, base + 1, base + 2};
  if (ipv6) kept.push_back(base + 10);
  for (int fd = base; fd < base + static_cast<int>(passed.size()); ++fd) {
    CAPTURE(fd);
    const bool is_kept = std::find(kept.begin(), kept.end(), fd) != kept.end();
    CHECK(is_open(fd) == is_kept);
    if (is_kept) {
      CHECK((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
      CHECK((::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
    }
  }
  for (int fd : kept) ::close(fd);
}

TEST_CASE("descriptors passed to another process, or without a name each, are not taken") {
  SocketAddress bound;
  Fd socket = listening("127.0.0.1", bound);
  const std::vector<std::pair<int, std::string>> passed = {
      {socket.get(), listener_fd_name(bound, 0)}, {socket.get(), listener_fd_name(bound, 1)}};
  const int base = free_range(static_cast<int>(passed.size()));

  SUBCASE("another PID's: left alone") {
    fake_listen_environment(base, passed, std::to_string(::getpid() + 1));
    const StoredFds stored = take_stored_fds(base);
    CHECK(listen_environment_unset());
    CHECK(stored.listeners.empty());
    CHECK(stored.names.empty());
    CHECK(is_open(base));
    CHECK(is_open(base + 1));
    ::close(base);
    ::close(base + 1);
  }
  SUBCASE("fewer names than descriptors: closed") {
    fake_listen_environment(base, passed, std::to_string(::getpid()));
    ::setenv("LISTEN_FDNAMES", passed[0].second.c_str(), 1);
    const StoredFds stored = take_stored_fds(base);
    CHECK(listen_environment_unset());
    CHECK(stored.listeners.empty());
    CHECK_FALSE(is_open(base));
    CHECK_FALSE(is_open(base + 1));
  }
  SUBCASE("no environment at all: nothing") {
    const StoredFds stored = take_stored_fds(base);
    CHECK(stored.listeners.empty());
    CHECK_FALSE(stored.stats.has_value());
  }
}

TEST_CASE("the fd store: FDSTORE=1 with the descriptor, FDSTOREREMOVE=1 by name, a capacity") {
  FakeManager manager;
  const Notifier notifier;
  SocketAddress a;
  SocketAddress b;
  SocketAddress c;
  Fd first = listening("127.0.0.1", a);
  Fd second = listening("127.0.0.1", b);
  Fd third = listening("127.0.0.1", c);

  SUBCASE("without a capacity nothing is sent") {
    FdStore store(notifier, 0);
    CHECK_FALSE(store.enabled());
    CHECK(store.begin({{listener_fd_name(a, 0), first.get(), false}}, {"stale"}, {}) == 0);
    store.remove_all();
    CHECK(manager.messages().empty());
  }

  SUBCASE("begin: stale names removed first, kept ones not sent again, the rest in order") {
    FdStore store(notifier, 3);
    const std::vector<StoreEntry> entries = {
        {listener_fd_name(a, 0), first.get(), true},    // passed by systemd: stays
        {listener_fd_name(b, 1), second.get(), false},  // new
        {listener_fd_name(c, 0), third.get(), true},    // passed, but a bad one shared its name
        {listener_fd_name(c, 1), third.get(), false},   // no room left
    };
    const std::vector<std::string> stale = {listener_fd_name(a, 0), listener_fd_name(c, 0), "old"};
    CHECK(store.begin(entries, stale, {listener_fd_name(c, 0)}) == 1);
    CHECK(store.size() == 3);

    auto messages = manager.messages();
    REQUIRE(messages.size() == 4);
    CHECK(messages[0].text == "FDSTOREREMOVE=1\nFDNAME=" + listener_fd_name(c, 0));
    CHECK_FALSE(messages[0].fd);
    CHECK(messages[1].text == "FDSTOREREMOVE=1\nFDNAME=old");
    CHECK(messages[2].text == "FDSTORE=1\nFDNAME=" + listener_fd_name(b, 1));
    REQUIRE(messages[2].fd);
    CHECK(bound_address(messages[2].fd.get()) == b);  // the very socket, duplicated
    CHECK(messages[3].text == "FDSTORE=1\nFDNAME=" + listener_fd_name(c, 0));
    REQUIRE(messages[3].fd);
    CHECK(bound_address(messages[3].fd.get()) == c);

    SUBCASE("a reload: gone addresses removed by name, new ones added while there is room") {
      store.remove_if([&](const StoredName& name) { return name.address == a; });
      CHECK(store.size() == 2);
      CHECK(store.add({{listener_fd_name(a, 0), first.get(), false},
                       {listener_fd_name(a, 1), first.get(), false}}) == 1);
      messages = manager.messages();
      REQUIRE(messages.size() == 2);
      CHECK(messages[0].text == "FDSTOREREMOVE=1\nFDNAME=" + listener_fd_name(a, 0));
      CHECK(messages[1].text == "FDSTORE=1\nFDNAME=" + listener_fd_name(a, 0));
      CHECK(messages[1].fd);
    }
    SUBCASE("a stop: everything removed") {
      store.remove_all();
      CHECK(store.size() == 0);
      messages = manager.messages();
      std::vector<std::string> texts;
      texts.reserve(messages.size());
      for (const auto& message : messages) texts.push_back(message.text);
      std::vector<std::string> expected = {"FDSTOREREMOVE=1\nFDNAME=" + listener_fd_name(a, 0),
                                           "FDSTOREREMOVE=1\nFDNAME=" + listener_fd_name(b, 1),
                                           "FDSTOREREMOVE=1\nFDNAME=" + listener_fd_name(c, 0)};
      std::sort(texts.begin(), texts.end());
      std::sort(expected.begin(), expected.end());
      CHECK(texts == expected);
    }
  }

  SUBCASE("FDSTORE tells the capacity") {
    ::setenv("FDSTORE", "1024", 1);
    CHECK(FdStore::capacity_from_environment() == 1024);
    ::setenv("FDSTORE", "12x", 1);
    CHECK(FdStore::capacity_from_environment() == 0);
    ::unsetenv("FDSTORE");
    CHECK(FdStore::capacity_from_environment() == 0);
  }
}
