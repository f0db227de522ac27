#include "fulcrum/version.hpp"

#ifndef FULCRUM_VERSION_SUFFIX
#define FULCRUM_VERSION_SUFFIX ""
#endif

namespace fulcrum {

const char* version() { return FULCRUM_VERSION FULCRUM_VERSION_SUFFIX; }

}  // namespace fulcrum
