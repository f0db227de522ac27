// Text formatting for the tables: byte counts and durations in short human
// form, and column-aligned tables.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fulcrum::ctl {

// `0B`, `1023B`, `1.0KiB`, `12.3MiB`, ... `EiB`: one decimal from KiB up.
std::string human_bytes(uint64_t bytes);

// The two largest units of a duration: `0s`, `42s`, `5m12s`, `2h13m`,
// `3d4h`. Fractions of a second are dropped; negative is `0s`.
std::string human_duration(double seconds);

// A rate per second with one decimal: `0.0`, `2.5`, `1234.5` (the daemon's
// session rates are counts over 10 s, so one decimal is exact).
std::string human_rate(double per_second);

// Columns separated by two spaces, each as wide as its widest cell, numbers
// aligned right, text left; no trailing spaces.
class Table {
 public:
  enum class Align { left, right };

  void add_column(std::string header, Align align = Align::left);
  // One cell per column.
  void add_row(std::vector<std::string> cells);
  std::string render() const;

 private:
  std::vector<std::string> headers_;
  std::vector<Align> aligns_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace fulcrum::ctl
