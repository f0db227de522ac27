// Configurations written in a test as YAML text, loaded as fulcrum does
// (file name "test.yaml" in error lines).
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "fulcrum/config.hpp"

namespace fulcrum::test {

// The YAML of a test is a raw string whose first line break is dropped, so
// line 1 is the line after `R"(`; keep it at column 0.
inline std::string_view yaml_text(std::string_view yaml) {
  if (!yaml.empty() && yaml.front() == '\n') yaml.remove_prefix(1);
  return yaml;
}

// Every error for `yaml`, one `FILE:LINE:COL: message` per line.
inline std::string errors_of(std::string_view yaml) {
  const ConfigLoad load = load_config_text(yaml_text(yaml), "test.yaml");
  CHECK(load.config.has_value() == load.errors.empty());
  std::string out;
  for (const ConfigError& error : load.errors) {
    if (!out.empty()) out += '\n';
    out += error.to_string();
  }
  return out;
}

// The configuration `yaml` describes; fails the test on any error.
inline Config valid(std::string_view yaml) {
  ConfigLoad load = load_config_text(yaml_text(yaml), "test.yaml");
  std::string errors;
  for (const ConfigError& error : load.errors) errors += error.to_string() + "\n";
  REQUIRE_MESSAGE(load.errors.empty(), errors);
  REQUIRE(load.config.has_value());
  return std::move(*load.config);
}

}  // namespace fulcrum::test
