#include "fulcrum/http_probe.hpp"

#include <arpa/inet.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <cerrno>

#include "fulcrum/event.hpp"
#include "fulcrum/tls_client.hpp"

namespace fulcrum {

namespace {

struct SslFree {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};
struct BuffereventFree {
  void operator()(bufferevent* bev) const { bufferevent_free(bev); }
};
struct RequestFree {
  void operator()(evhttp_request* request) const { evhttp_request_free(request); }
};
struct ConnectionFree {
  void operator()(evhttp_connection* connection) const {
    // evhttp_connection_free calls the close callback of an established
    // connection: not into an exchange being destroyed.
    evhttp_connection_set_closecb(connection, nullptr, nullptr);
    evhttp_connection_free(connection);
  }
};

// The name of a Host header value (`name`, `name:port`, `1.2.3.4:port`,
// `[2001:db8::1]:port`, or a bare IPv6 address): what the certificate must
// be for.
std::string host_name(const std::string& host) {
  if (host.starts_with('[')) {
    const size_t end = host.find(']');
    return host.substr(1, end == std::string::npos ? std::string::npos : end - 1);
  }
  const size_t colon = host.find(':');
  if (colon != std::string::npos && host.find(':', colon + 1) == std::string::npos)
    return host.substr(0, colon);
  return host;
}

bool is_ip_literal(const std::string& name) {
  in6_addr address{};
  return inet_pton(AF_INET, name.c_str(), &address) == 1 ||
         inet_pton(AF_INET6, name.c_str(), &address) == 1;
}

// Errors with which a TCP connect fails, as opposed to a TLS handshake over
// an established connection.
bool is_connect_error(int error) {
  return error == ECONNREFUSED || error == EHOSTUNREACH || error == ENETUNREACH ||
         error == ETIMEDOUT;
}

}  // namespace

bool status_accepted(const HttpCheckConfig& http, int status) {
  for (const StatusRange& range : http.statuses)
    if (status >= range.first && status <= range.last) return true;
  return false;
}

// One GET: its connection, TLS state and timer, all freed with it. libevent
// and OpenSSL report into it; it reports once, from `done_event_`, so that
// no libevent function is on the stack when the probe's owner reacts
// (possibly by destroying it).
class HttpProbe::Exchange {
 public:
  // `session`: the server's last TLS session, resumed and replaced by this
  // exchange; it must outlive the exchange.
  Exchange(HttpCheckConfig http, TlsSessionPtr& session, Done done)
      : http_(std::move(http)), session_(session), done_(std::move(done)) {}

  int start(event_base* base, const SocketAddress& server, const SocketAddress* source,
            Duration timeout);

 private:
  static void on_response_cb(evhttp_request* request, void* arg);
  static int on_headers_cb(evhttp_request* request, void* arg);
  static void on_error_cb(evhttp_request_error error, void* arg);
  static void on_close_cb(evhttp_connection*, void* arg);
  static void on_timeout_cb(evutil_socket_t, short, void* arg);
  static void on_done_cb(evutil_socket_t, short, void* arg);
  static int on_verify_cb(int preverified, X509_STORE_CTX* store);

  void response(evhttp_request* request, int error);
  void failed(evhttp_request_error error, int system_error);
  std::string tls_failure();
  void finish(int error, std::string failure);

  const HttpCheckConfig http_;
  TlsSessionPtr& session_;
  Done done_;
  bool starting_ = false;     // within evhttp_make_request
  bool established_ = false;  // connected (and, for TLS, past the handshake)
  bool finished_ = false;
  int verify_error_ = X509_V_OK;
  int error_ = 0;
  std::string failure_;
  // Destroyed in reverse: the connection (which frees its bufferevent and
  // dequeues the request) before the request and the SSL it used.
  std::unique_ptr<SSL, SslFree> ssl_;
  std::unique_ptr<evhttp_request, RequestFree> request_;
  std::unique_ptr<evhttp_connection, ConnectionFree> connection_;
  EventPtr timer_;
  EventPtr done_event_;
};

int HttpProbe::Exchange::start(event_base* base, const SocketAddress& server,
                               const SocketAddress* source, Duration timeout) {
  timer_.reset(evtimer_new(base, on_timeout_cb, this));
  done_event_.reset(event_new(base, -1, 0, on_done_cb, this));
  if (!timer_ || !done_event_) return ENOMEM;
  const std::string host = http_.host.empty() ? server.to_string() : http_.host;

  std::unique_ptr<bufferevent, BuffereventFree> tls_bev;
  if (http_.tls) {
    SSL_CTX* context = tls_client_context(http_.verify);
    if (context == nullptr) return ENOMEM;
    ssl_.reset(SSL_new(context));
    if (!ssl_) return ENOMEM;
    // Resuming the server's last session spares both sides most of the
    // handshake: no certificate is sent, parsed or verified (it was, when
    // the session began). A server that no longer knows the session gets a
    // full handshake.
    if (SSL_set_ex_data(ssl_.get(), tls_session_keeper_index(), &session_) != 1) return ENOMEM;
    if (session_ && SSL_set_session(ssl_.get(), session_.get()) != 1) session_.reset();
    const std::string name = host_name(host);
    // SNI carries names only (RFC 6066), never an address.
    if (!is_ip_literal(name) && SSL_set_tlsext_host_name(ssl_.get(), name.c_str()) != 1)
      return ENOMEM;
    if (http_.verify) {
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl_.get());
      const int set = is_ip_literal(name)
                          ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str())
                          : X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size());
      if (set != 1) return ENOMEM;
      SSL_set_app_data(ssl_.get(), this);
      SSL_set_verify(ssl_.get(), SSL_VERIFY_PEER, on_verify_cb);
    }
    // Without BEV_OPT_CLOSE_ON_FREE: the SSL stays ours, and evhttp closes
    // the socket itself (with it, evhttp would shut down a descriptor the
    // bufferevent had closed already, which another thread may reuse).
    // Without BEV_OPT_DEFER_CALLBACKS: evhttp tells a refused connect from
    // other failures by errno, which a deferred callback would not see.
    tls_bev.reset(
        bufferevent_openssl_socket_new(base, -1, ssl_.get(), BUFFEREVENT_SSL_CONNECTING, 0));
    if (!tls_bev) return ENOMEM;
  }
  // No DNS base: the address is numeric, resolved by evutil_getaddrinfo
  // without a lookup.
  const std::string address = server.host_string();
  connection_.reset(evhttp_connection_base_bufferevent_new(base, nullptr, tls_bev.get(),
                                                           address.c_str(), server.port()));
  if (!connection_) return ENOMEM;
  static_cast<void>(tls_bev.release());  // the connection's now
  if (source != nullptr) {
    const std::string local = source->host_string();
    evhttp_connection_set_local_address(connection_.get(), local.c_str());
  }
  evhttp_connection_set_retries(connection_.get(), 0);
  evhttp_connection_set_closecb(connection_.get(), on_close_cb, this);

  request_.reset(evhttp_request_new(on_response_cb, this));
  if (!request_) return ENOMEM;
  // Owned here, so that it is freed exactly once whichever way evhttp ends.
  evhttp_request_own(request_.get());
  evhttp_request_set_header_cb(request_.get(), on_headers_cb);
  evhttp_request_set_error_cb(request_.get(), on_error_cb);
  evkeyvalq* headers = evhttp_request_get_output_headers(request_.get());
  if (evhttp_add_header(headers, "Host", host.c_str()) != 0 ||
      evhttp_add_header(headers, "Connection", "close") != 0)
    return ENOMEM;

  add_with_timeout(timer_.get(), timeout);
  starting_ = true;
  const int made =
      evhttp_make_request(connection_.get(), request_.get(), EVHTTP_REQ_GET, http_.path.c_str());
  const int error = errno;
  starting_ = false;
  // Only a socket that could not be made or bound fails here: fulcrum's.
  if (made != 0) finish(error != 0 ? error : ENOMEM, {});
  return 0;
}

// The verdict comes with the status line and headers; the body is not
// waited for.
int HttpProbe::Exchange::on_headers_cb(evhttp_request* request, void* arg) {
  static_cast<Exchange*>(arg)->response(request, errno);
  return 0;
}

// A complete response (seen by on_headers_cb already), a connect that
// failed before evhttp reported an error, or (request null) the end of a
// failure reported to on_error_cb.
void HttpProbe::Exchange::on_response_cb(evhttp_request* request, void* arg) {
  if (request != nullptr) static_cast<Exchange*>(arg)->response(request, errno);
}

void HttpProbe::Exchange::response(evhttp_request* request, int error) {
  const int status = evhttp_request_get_response_code(request);
  if (status != 0) {
    finish(0, status_accepted(http_, status) ? std::string()
                                             : "http status " + std::to_string(status));
  } else if (starting_) {
    // evhttp_make_request found no socket to connect (descriptors, source
    // address): evhttp reports it through this callback.
    finish(error != 0 ? error : ENOMEM, {});
  } else {
    // evhttp calls back without an error report only for a connect refused
    // (it checks errno for ECONNREFUSED); its own connect timeout (45 s) is
    // never reached before the probe's.
    finish(ECONNREFUSED, {});
  }
}

void HttpProbe::Exchange::on_error_cb(evhttp_request_error error, void* arg) {
  const int system_error = errno;  // evhttp restores it for this callback
  static_cast<Exchange*>(arg)->failed(error, system_error);
}

void HttpProbe::Exchange::failed(evhttp_request_error error, int system_error) {
  if (established_) {
    finish(0, error == EVREQ_HTTP_TIMEOUT ? "timeout" : "http protocol error");
  } else if (http_.tls && !is_connect_error(system_error)) {
    finish(0, tls_failure());
  } else {
    finish(system_error != 0 ? system_error : ECONNABORTED, {});
  }
}

// Why the handshake failed, from the errors OpenSSL left on the bufferevent.
std::string HttpProbe::Exchange::tls_failure() {
  bufferevent* bev = evhttp_connection_get_bufferevent(connection_.get());
  bool verify_failed = false;
  while (const unsigned long error = bufferevent_get_openssl_error(bev)) {
    if (ERR_GET_LIB(error) == ERR_LIB_SSL &&
        ERR_GET_REASON(error) == SSL_R_CERTIFICATE_VERIFY_FAILED)
      verify_failed = true;
  }
  if (!verify_failed && verify_error_ == X509_V_OK) return "tls handshake failed";
  std::string failure = "tls certificate not verified";
  if (verify_error_ != X509_V_OK)
    failure += std::string(": ") + X509_verify_cert_error_string(verify_error_);
  return failure;
}

// OpenSSL's own verification, kept as it decided; the first error is noted
// for the reason (the handshake clears the SSL's verify result when evhttp
// resets the connection).
int HttpProbe::Exchange::on_verify_cb(int preverified, X509_STORE_CTX* store) {
  if (preverified == 0) {
    SSL* ssl =
        static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
    auto* self = static_cast<Exchange*>(SSL_get_app_data(ssl));
    if (self->verify_error_ == X509_V_OK) self->verify_error_ = X509_STORE_CTX_get_error(store);
  }
  return preverified;
}

void HttpProbe::Exchange::on_close_cb(evhttp_connection*, void* arg) {
  static_cast<Exchange*>(arg)->established_ = true;
}

void HttpProbe::Exchange::on_timeout_cb(evutil_socket_t, short, void* arg) {
  static_cast<Exchange*>(arg)->finish(0, "timeout");
}

// The first result counts; the rest of the exchange is dropped with it.
void HttpProbe::Exchange::finish(int error, std::string failure) {
  if (finished_) return;
  finished_ = true;
  error_ = error;
  failure_ = std::move(failure);
  // The check has what it came for; fulcrum ends the connection. Marked as
  // shut down now, before evhttp resets the connection (which clears the
  // SSL): OpenSSL would take an SSL cleared without it for a broken
  // connection and stop resuming its session.
  if (ssl_ && SSL_is_init_finished(ssl_.get()) == 1)
    SSL_set_shutdown(ssl_.get(), SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  event_del(timer_.get());
  event_active(done_event_.get(), EV_TIMEOUT, 0);
}

void HttpProbe::Exchange::on_done_cb(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Exchange*>(arg);
  // The connection goes now, not with the next probe: no libevent function
  // is on the stack here.
  self->connection_.reset();
  self->request_.reset();
  self->ssl_.reset();
  // Copied out first: `done` may destroy the probe and with it this.
  const Done done = self->done_;
  done(self->error_, std::move(self->failure_));
}

HttpProbe::HttpProbe() = default;
HttpProbe::~HttpProbe() = default;

int HttpProbe::start(event_base* base, const SocketAddress& server, const SocketAddress* source,
                     const HttpCheckConfig& http, Duration timeout, Done done) {
  exchange_.reset();  // before the next exchange takes over tls_session_
  exchange_ = std::make_unique<Exchange>(http, tls_session_, std::move(done));
  const int error = exchange_->start(base, server, source, timeout);
  if (error != 0) exchange_.reset();
  return error;
}

}  // namespace fulcrum
