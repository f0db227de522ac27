#include "fulcrum/tls_client.hpp"

#include <memory>

namespace fulcrum {

namespace {

struct SslCtxFree {
  void operator()(SSL_CTX* context) const { SSL_CTX_free(context); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

// A session the server gave (with TLS 1.3, in a ticket after the
// handshake): handed to whoever made the connection, through the SSL's
// ex_data slot, for the next check of that server to resume.
int on_new_session(SSL* ssl, SSL_SESSION* session) {
  auto* keeper = static_cast<TlsSessionPtr*>(SSL_get_ex_data(ssl, tls_session_keeper_index()));
  if (keeper == nullptr) return 0;  // not kept: OpenSSL frees it
  keeper->reset(session);
  return 1;  // the reference is the keeper's
}

SslCtxPtr make_context(bool verify) {
  SslCtxPtr context(SSL_CTX_new(TLS_client_method()));
  if (!context) return nullptr;
  // Sessions are kept per server by the checks, not in the context's cache.
  SSL_CTX_set_session_cache_mode(context.get(),
                                 SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(context.get(), on_new_session);
  // A server that closes without a TLS close_notify (Python's ssl, many
  // HTTP servers after `Connection: close`) ends the check's connection
  // as a plain close: the check read what it came for. Otherwise OpenSSL
  // takes the close as a fatal error and stops resuming the session.
  SSL_CTX_set_options(context.get(), SSL_OP_IGNORE_UNEXPECTED_EOF);
  if (verify) {
    // The system store (Debian: /etc/ssl/certs); a server whose chain does
    // not end there, such as a self-signed one, fails the check.
    if (SSL_CTX_set_default_verify_paths(context.get()) != 1) return nullptr;
    SSL_CTX_set_verify(context.get(), SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(context.get(), SSL_VERIFY_NONE, nullptr);
  }
  return context;
}

}  // namespace

int tls_session_keeper_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

SSL_CTX* tls_client_context(bool verify) {
  // Function statics: each made once, thread-safely, and only when a check
  // first needs it (the trust store is read only for `verify: true`).
  if (verify) {
    static const SslCtxPtr verifying = make_context(true);
    return verifying.get();
  }
  static const SslCtxPtr trusting = make_context(false);
  return trusting.get();
}

}  // namespace fulcrum
