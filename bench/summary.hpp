// The median, minimum and maximum of a benchmark's repeated measurements
// (sched_bench, control_bench).
#pragma once

#include <algorithm>
#include <vector>

namespace bench {

struct Summary {
  double median = 0;
  double min = 0;
  double max = 0;
};

// `values` must not be empty.
inline Summary summarise(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return {n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2, values.front(),
          values.back()};
}

}  // namespace bench
