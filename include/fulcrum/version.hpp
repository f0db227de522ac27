// The build's version string. A function, not the FULCRUM_VERSION macro, so
// that one set of objects links into two builds that tell themselves apart
// (the upgrade tests alternate `fulcrum` and `fulcrum-next`).
#pragma once

namespace fulcrum {

const char* version();

}  // namespace fulcrum
