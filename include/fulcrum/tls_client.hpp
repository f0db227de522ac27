// The OpenSSL client contexts of the HTTPS health checks.
#pragma once

#include <openssl/ssl.h>

namespace fulcrum {

// The process's client context for `verify` (the system's trust store,
// SSL_VERIFY_PEER) or for no verification: made once on first use, shared by
// every check, alive until the process ends. nullptr when OpenSSL could not
// make it (no memory).
SSL_CTX* tls_client_context(bool verify);

}  // namespace fulcrum
