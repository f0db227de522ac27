// The process's open-file limit and what it holds, for the session budget
// (Admission) and the stats.
#pragma once

#include <cstdint>

namespace fulcrum {

// Raises the soft RLIMIT_NOFILE to the hard limit and returns the soft limit
// in force afterwards: the old one, with a warning, when raising failed.
int64_t raise_open_file_limit();

// Descriptors open in this process right now (entries of /proc/self/fd).
int64_t count_open_fds();

}  // namespace fulcrum
