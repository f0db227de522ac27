#include "fulcrum/tls_client.hpp"

#include <memory>

namespace fulcrum {

namespace {

struct SslCtxFree {
  void operator()(SSL_CTX* context) const { SSL_CTX_free(context); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

SslCtxPtr make_context(bool verify) {
  SslCtxPtr context(SSL_CTX_new(TLS_client_method()));
  if (!context) return nullptr;
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
