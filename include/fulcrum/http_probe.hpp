// The HTTP(S) health check (`health_check.http`): one GET per check, made
// with libevent's evhttp client, over bufferevent_openssl for `tls: true`.
#pragma once

#include <event2/event.h>

#include <functional>
#include <memory>
#include <string>

#include "fulcrum/address.hpp"
#include "fulcrum/config.hpp"
#include "fulcrum/duration.hpp"
#include "fulcrum/tls_client.hpp"

namespace fulcrum {

class HttpProbe {
 public:
  // How one probe ended. `error`: an errno when no connection could be made
  // (ECONNREFUSED from the server, or fulcrum's own shortage: see
  // is_local_error). Otherwise `failure`: why the server's answer was not
  // accepted (`http status 503`, `timeout`, `tls handshake failed`, ...).
  // Both empty: the check passed.
  using Done = std::function<void(int error, std::string failure)>;

  HttpProbe();
  // Cancels a probe in flight: its `done` is never called.
  ~HttpProbe();
  HttpProbe(const HttpProbe&) = delete;
  HttpProbe& operator=(const HttpProbe&) = delete;

  // Starts a GET of `http.path` to `server` (from `source`'s address when
  // given), cancelling one still in flight. The whole exchange has
  // `timeout`. Returns 0, and `done` is called exactly once, from its own
  // event on `base` (never within start()), so that it may destroy or
  // restart the probe; or returns the errno (ENOMEM) of a probe that could
  // not be set up, and `done` is never called.
  int start(event_base* base, const SocketAddress& server, const SocketAddress* source,
            const HttpCheckConfig& http, Duration timeout, Done done);

 private:
  class Exchange;
  TlsSessionPtr tls_session_;  // the server's last session (tls_client.hpp)
  std::unique_ptr<Exchange> exchange_;
};

// Whether `status` is in one of `http.statuses` (both ends included).
bool status_accepted(const HttpCheckConfig& http, int status);

}  // namespace fulcrum
