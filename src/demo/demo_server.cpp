// fulcrum-demo-server NAME ADDRESS: a tiny real server for the demo and the
// tests. Each connection is greeted with "hello from NAME\n", then every byte
// it sends is echoed back. When the client half-closes, the echo is finished
// and the connection closed.
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include <csignal>
#include <cstdio>
#include <string>

#include "fulcrum/address.hpp"

namespace {

struct Server {
  std::string greeting;
};

void close_when_flushed(bufferevent* bev, void*) {
  if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) bufferevent_free(bev);
}

void on_read(bufferevent* bev, void*) {
  bufferevent_write_buffer(bev, bufferevent_get_input(bev));
  // Backpressure: stop reading while the client does not take its echo.
  if (evbuffer_get_length(bufferevent_get_output(bev)) > (1 << 20))
    bufferevent_disable(bev, EV_READ);
}

void on_write(bufferevent* bev, void*) { bufferevent_enable(bev, EV_READ); }

void on_event(bufferevent* bev, short what, void*) {
  if (what & BEV_EVENT_EOF) {
    bufferevent_disable(bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
      bufferevent_free(bev);
      return;
    }
    bufferevent_setcb(bev, nullptr, close_when_flushed, on_event, nullptr);
    return;
  }
  if (what & BEV_EVENT_ERROR) bufferevent_free(bev);
}

void on_accept(evconnlistener* listener, evutil_socket_t fd, sockaddr*, int, void* arg) {
  auto* server = static_cast<Server*>(arg);
  event_base* base = evconnlistener_get_base(listener);
  bufferevent* bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
  bufferevent_setcb(bev, on_read, on_write, on_event, nullptr);
  bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
  bufferevent_write(bev, server->greeting.data(), server->greeting.size());
  bufferevent_enable(bev, EV_READ | EV_WRITE);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: fulcrum-demo-server NAME ADDRESS\n");
    return 2;
  }
  std::signal(SIGPIPE, SIG_IGN);
  Server server{std::string("hello from ") + argv[1] + "\n"};
  fulcrum::AddressParse parsed = fulcrum::parse_address(argv[2]);
  if (parsed.addresses.empty()) {
    std::fprintf(stderr, "fulcrum-demo-server: %s\n", parsed.error.c_str());
    return 2;
  }
  const fulcrum::SocketAddress& address = parsed.addresses.front();
  event_base* base = event_base_new();
  evconnlistener* listener =
      evconnlistener_new_bind(base, on_accept, &server, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                              1024, address.sockaddr_ptr(), static_cast<int>(address.length));
  if (listener == nullptr) {
    std::perror("fulcrum-demo-server: listen");
    return 1;
  }
  std::printf("listening %s %s\n", argv[1], address.to_string().c_str());
  std::fflush(stdout);
  event_base_dispatch(base);
  evconnlistener_free(listener);
  event_base_free(base);
  return 0;
}
