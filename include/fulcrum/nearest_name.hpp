// "Did you mean ...?": the known name a mistyped one most likely meant.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fulcrum {

// Edits (insert, delete, replace, swap of two neighbours) that turn `a`
// into `b` (the optimal string alignment distance).
size_t edit_distance(std::string_view a, std::string_view b);

// The first of `candidates` nearest to `name`, if near enough to be a
// typo: at most 2 edits, and at most half the length of the longer of the
// two (`db` is not a typo of `web`). nullopt otherwise, and for `name`
// itself.
std::optional<std::string> nearest_name(std::string_view name,
                                        const std::vector<std::string>& candidates);

}  // namespace fulcrum
