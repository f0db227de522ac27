#include "fulcrum/open_files.hpp"

#include <dirent.h>
#include <sys/resource.h>

#include <cerrno>

#include "fulcrum/log.hpp"
#include "fulcrum/socket.hpp"

namespace fulcrum {

int64_t raise_open_file_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) return static_cast<int64_t>(raised.rlim_cur);
    // For example a hard limit above fs.nr_open, lowered after it was set.
    log_warn("cannot raise the open file limit, keeping the soft limit",
             {{"soft", static_cast<int64_t>(limit.rlim_cur)},
              {"hard", static_cast<int64_t>(limit.rlim_max)},
              {"error", errno_string(errno)}});
  }
  return static_cast<int64_t>(limit.rlim_cur);
}

int64_t count_open_fds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  int64_t count = 0;
  while (dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  ::closedir(dir);
  return count - 1;  // the directory's own descriptor
}

}  // namespace fulcrum
