// The OpenSSL client contexts of the HTTPS health checks.
#pragma once

#include <openssl/ssl.h>

#include <memory>

namespace fulcrum {

// The process's client context for `verify` (the system's trust store,
// SSL_VERIFY_PEER) or for no verification: made once on first use, shared by
// every check, alive until the process ends. nullptr when OpenSSL could not
// make it (no memory).
SSL_CTX* tls_client_context(bool verify);

struct TlsSessionFree {
  void operator()(SSL_SESSION* session) const { SSL_SESSION_free(session); }
};
using TlsSessionPtr = std::unique_ptr<SSL_SESSION, TlsSessionFree>;

// The SSL ex_data index under which a connection made with these contexts
// points to a TlsSessionPtr: each session the server gives is put there
// (the last one wins), so that the next connection to that server can
// resume it (SSL_set_session). Without it, sessions are not kept.
int tls_session_keeper_index();

}  // namespace fulcrum
