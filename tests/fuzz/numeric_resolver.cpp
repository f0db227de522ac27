// Linked into the fuzz targets whose parsers resolve host names. A fuzzer
// must not send DNS queries: they leave the machine, take seconds and answer
// differently from run to run. This getaddrinfo, defined in the executable,
// takes precedence over libc's (and over the sanitizers' weak interceptor):
// it calls libc's with AI_NUMERICHOST added, so literals parse as in the
// daemon and every name fails at once as unresolvable.
#include <dlfcn.h>
#include <netdb.h>

extern "C" int getaddrinfo(const char* node, const char* service, const addrinfo* hints,
                           addrinfo** result) {
  using Getaddrinfo = int (*)(const char*, const char*, const addrinfo*, addrinfo**);
  static const auto libc_getaddrinfo =
      reinterpret_cast<Getaddrinfo>(dlsym(RTLD_NEXT, "getaddrinfo"));
  addrinfo numeric = hints ? *hints : addrinfo{};
  numeric.ai_flags |= AI_NUMERICHOST;
  return libc_getaddrinfo(node, service, &numeric, result);
}
