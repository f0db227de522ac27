#include "fulcrum/rtnetlink.hpp"

// net/if.h before the linux/ headers: both define IFF_UP, and glibc's
// must come first for linux/if.h to leave its own out.
#include <net/if.h>
// clang-format off
#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
// clang-format on

#include <cerrno>
#include <cstring>
#include <ctime>
#include <functional>

#include "fulcrum/netlink_socket.hpp"

namespace fulcrum {

namespace {

std::string errno_text(int error) { return std::strerror(error); }

// One rtnetlink exchange: sends `request`, hands every answer to
// `on_message` (a dump's parts) and returns 0 or the kernel's errno.
int exchange(nlmsghdr* request, const std::function<void(const nlmsghdr*)>& on_message = {}) {
  const NetlinkSocket socket(mnl_socket_open(NETLINK_ROUTE));
  if (!socket || mnl_socket_bind(socket.get(), 0, MNL_SOCKET_AUTOPID) < 0) return errno;
  request->nlmsg_seq = static_cast<uint32_t>(std::time(nullptr));
  if (mnl_socket_sendto(socket.get(), request, request->nlmsg_len) < 0) return errno;
  std::vector<char> buffer(MNL_SOCKET_BUFFER_SIZE);
  const unsigned port = mnl_socket_get_portid(socket.get());
  const auto callback = [](const nlmsghdr* message, void* data) {
    const auto& handler = *static_cast<const std::function<void(const nlmsghdr*)>*>(data);
    if (handler) handler(message);
    return MNL_CB_OK;
  };
  for (;;) {
    const ssize_t received = mnl_socket_recvfrom(socket.get(), buffer.data(), buffer.size());
    if (received < 0) return errno;
    // mnl_cb_run answers MNL_CB_STOP at the ACK or the dump's end, and -1
    // with errno set from an error message.
    const int status =
        mnl_cb_run(buffer.data(), static_cast<size_t>(received), request->nlmsg_seq, port, callback,
                   const_cast<std::function<void(const nlmsghdr*)>*>(&on_message));
    if (status == MNL_CB_STOP) return 0;
    if (status < 0) return errno;
  }
}

using Visit = std::function<void(const nlattr*)>;

int visit_attribute(const nlattr* attribute, void* data) {
  (*static_cast<const Visit*>(data))(attribute);
  return MNL_CB_OK;
}

// `visit` with each attribute of `message` after its `header` bytes of
// family header, and of `nest`.
void for_each_attribute(const nlmsghdr* message, unsigned header, const Visit& visit) {
  mnl_attr_parse(message, header, visit_attribute, const_cast<Visit*>(&visit));
}
void for_each_nested(const nlattr* nest, const Visit& visit) {
  mnl_attr_parse_nested(nest, visit_attribute, const_cast<Visit*>(&visit));
}

struct Message {
  std::vector<char> buffer = std::vector<char>(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* header;

  Message(uint16_t type, uint16_t flags) : header(mnl_nlmsg_put_header(buffer.data())) {
    header->nlmsg_type = type;
    header->nlmsg_flags = NLM_F_REQUEST | flags;
  }
};

// The kind of interface `name` (`dummy`, `bridge`, ...), or an empty string.
std::string kind_of(const std::string& name, int& error) {
  Message message(RTM_GETLINK, NLM_F_ACK);
  auto* info =
      static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(message.header, sizeof(ifinfomsg)));
  info->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(message.header, IFLA_IFNAME, name.c_str());
  std::string kind;
  error = exchange(message.header, [&kind](const nlmsghdr* answer) {
    if (answer->nlmsg_type != RTM_NEWLINK) return;
    for_each_attribute(answer, sizeof(ifinfomsg), [&kind](const nlattr* attribute) {
      if (mnl_attr_get_type(attribute) != IFLA_LINKINFO) return;
      for_each_nested(attribute, [&kind](const nlattr* inner) {
        if (mnl_attr_get_type(inner) == IFLA_INFO_KIND) kind = mnl_attr_get_str(inner);
      });
    });
  });
  return kind;
}

int create(const std::string& name, const char* kind) {
  Message message(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK);
  auto* info =
      static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(message.header, sizeof(ifinfomsg)));
  info->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(message.header, IFLA_IFNAME, name.c_str());
  nlattr* link_info = mnl_attr_nest_start(message.header, IFLA_LINKINFO);
  mnl_attr_put_strz(message.header, IFLA_INFO_KIND, kind);
  mnl_attr_nest_end(message.header, link_info);
  return exchange(message.header);
}

// No IPv6 link-local address of its own (a routing daemon has nothing to
// announce there), then up.
int configure(const std::string& name) {
  const unsigned index = if_nametoindex(name.c_str());
  if (index == 0) return errno;
  {
    Message message(RTM_NEWLINK, NLM_F_ACK);
    auto* info =
        static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(message.header, sizeof(ifinfomsg)));
    info->ifi_family = AF_UNSPEC;
    info->ifi_index = static_cast<int>(index);
    nlattr* spec = mnl_attr_nest_start(message.header, IFLA_AF_SPEC);
    nlattr* inet6 = mnl_attr_nest_start(message.header, AF_INET6);
    mnl_attr_put_u8(message.header, IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE);
    mnl_attr_nest_end(message.header, inet6);
    mnl_attr_nest_end(message.header, spec);
    // A kernel without IPv6 refuses this; the interface serves IPv4 then.
    if (const int error = exchange(message.header);
        error != 0 && error != EAFNOSUPPORT && error != EOPNOTSUPP && error != EINVAL)
      return error;
  }
  Message message(RTM_NEWLINK, NLM_F_ACK);
  auto* info =
      static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(message.header, sizeof(ifinfomsg)));
  info->ifi_family = AF_UNSPEC;
  info->ifi_index = static_cast<int>(index);
  info->ifi_flags = IFF_UP;
  info->ifi_change = IFF_UP;
  return exchange(message.header);
}

int change_address(uint16_t type, uint16_t flags, const std::string& interface,
                   const SocketAddress& address) {
  const unsigned index = if_nametoindex(interface.c_str());
  if (index == 0) return errno;
  Message message(type, flags | NLM_F_ACK);
  auto* header =
      static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(message.header, sizeof(ifaddrmsg)));
  header->ifa_family = static_cast<uint8_t>(address.family());
  header->ifa_index = index;
  header->ifa_scope = RT_SCOPE_UNIVERSE;
  if (address.family() == AF_INET6) {
    header->ifa_prefixlen = 128;
    header->ifa_flags = IFA_F_NODAD;
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(address.storage);
    mnl_attr_put(message.header, IFA_LOCAL, sizeof in6.sin6_addr, &in6.sin6_addr);
    mnl_attr_put(message.header, IFA_ADDRESS, sizeof in6.sin6_addr, &in6.sin6_addr);
  } else {
    header->ifa_prefixlen = 32;
    const auto& in4 = reinterpret_cast<const sockaddr_in&>(address.storage);
    mnl_attr_put(message.header, IFA_LOCAL, sizeof in4.sin_addr, &in4.sin_addr);
    mnl_attr_put(message.header, IFA_ADDRESS, sizeof in4.sin_addr, &in4.sin_addr);
  }
  return exchange(message.header);
}

}  // namespace

std::string create_announce_interface(const std::string& name, std::string& kind) {
  int error = create(name, "dummy");
  kind = "dummy";
  // No dummy driver: the kernel answers EOPNOTSUPP for an unknown kind.
  if (error == EOPNOTSUPP) {
    error = create(name, "bridge");
    kind = "bridge";
  }
  if (error == EEXIST) {
    kind = kind_of(name, error);
    if (error != 0) return "interface " + name + ": " + errno_text(error);
    if (kind != "dummy" && kind != "bridge") {
      return "interface " + name + " exists and is not one fulcrum creates (kind " +
             (kind.empty() ? std::string("none") : kind) + ")";
    }
    std::string failed;
    for (const SocketAddress& address : interface_addresses(name, failed)) {
      if (failed.empty()) failed = remove_host_address(name, address);
    }
    if (!failed.empty()) return failed;
  } else if (error != 0) {
    return "cannot create interface " + name + ": " + errno_text(error);
  }
  if (const int e = configure(name); e != 0) return "interface " + name + ": " + errno_text(e);
  return "";
}

std::string delete_interface(const std::string& name) {
  Message message(RTM_DELLINK, NLM_F_ACK);
  auto* info =
      static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(message.header, sizeof(ifinfomsg)));
  info->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(message.header, IFLA_IFNAME, name.c_str());
  const int error = exchange(message.header);
  if (error == 0 || error == ENODEV) return "";
  return "cannot delete interface " + name + ": " + errno_text(error);
}

std::string add_host_address(const std::string& interface, const SocketAddress& address) {
  const int error = change_address(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, interface, address);
  if (error == 0) return "";
  return "cannot add " + address.host_string() + " to " + interface + ": " + errno_text(error);
}

std::string remove_host_address(const std::string& interface, const SocketAddress& address) {
  const int error = change_address(RTM_DELADDR, 0, interface, address);
  if (error == 0 || error == EADDRNOTAVAIL) return "";
  return "cannot remove " + address.host_string() + " from " + interface + ": " + errno_text(error);
}

std::vector<SocketAddress> interface_addresses(const std::string& interface, std::string& error) {
  std::vector<SocketAddress> addresses;
  const unsigned index = if_nametoindex(interface.c_str());
  if (index == 0) {
    error = "interface " + interface + ": " + errno_text(errno);
    return addresses;
  }
  Message message(RTM_GETADDR, NLM_F_DUMP);
  auto* header =
      static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(message.header, sizeof(ifaddrmsg)));
  header->ifa_family = AF_UNSPEC;
  const int failed = exchange(message.header, [&](const nlmsghdr* answer) {
    if (answer->nlmsg_type != RTM_NEWADDR) return;
    const auto* found = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(answer));
    if (found->ifa_index != index) return;
    for_each_attribute(answer, sizeof(ifaddrmsg), [&](const nlattr* attribute) {
      // IFA_LOCAL is the interface's own address where it differs from
      // IFA_ADDRESS (point to point); IPv6 has IFA_ADDRESS alone.
      const uint16_t type = mnl_attr_get_type(attribute);
      if (type != (found->ifa_family == AF_INET ? IFA_LOCAL : IFA_ADDRESS)) return;
      SocketAddress address;
      if (found->ifa_family == AF_INET6 && mnl_attr_get_payload_len(attribute) == 16) {
        auto& in6 = reinterpret_cast<sockaddr_in6&>(address.storage);
        in6.sin6_family = AF_INET6;
        std::memcpy(&in6.sin6_addr, mnl_attr_get_payload(attribute), 16);
        address.length = sizeof in6;
      } else if (found->ifa_family == AF_INET && mnl_attr_get_payload_len(attribute) == 4) {
        auto& in4 = reinterpret_cast<sockaddr_in&>(address.storage);
        in4.sin_family = AF_INET;
        std::memcpy(&in4.sin_addr, mnl_attr_get_payload(attribute), 4);
        address.length = sizeof in4;
      } else {
        return;
      }
      addresses.push_back(address);
    });
  });
  if (failed != 0) error = "interface " + interface + ": " + errno_text(failed);
  return addresses;
}

}  // namespace fulcrum
