// Human-readable figures and aligned tables.
#include "format.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>

namespace fulcrum::ctl {

std::string human_bytes(uint64_t bytes) {
  static const char* const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + "B";
  double value = static_cast<double>(bytes) / 1024;
  size_t unit = 0;
  // Move up while the printed value would read 1024.0 or more.
  while (value >= 1023.95 && unit + 1 < std::size(units)) {
    value /= 1024;
    ++unit;
  }
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.1f%s", value, units[unit]);
  return buffer;
}

std::string human_duration(double seconds) {
  if (!(seconds > 0)) return "0s";  // also NaN
  const double whole = std::floor(std::min(seconds, 1e15));
  const auto total = static_cast<uint64_t>(whole);
  const uint64_t days = total / 86400;
  const uint64_t hours = total / 3600 % 24;
  const uint64_t minutes = total / 60 % 60;
  const uint64_t secs = total % 60;
  const auto part = [](uint64_t value, const char* unit) { return std::to_string(value) + unit; };
  if (days > 0) return part(days, "d") + part(hours, "h");
  if (hours > 0) return part(hours, "h") + part(minutes, "m");
  if (minutes > 0) return part(minutes, "m") + part(secs, "s");
  return part(secs, "s");
}

std::string human_rate(double per_second) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.1f", per_second > 0 ? std::min(per_second, 1e15) : 0.0);
  return buffer;
}

void Table::add_column(std::string header, Align align) {
  headers_.push_back(std::move(header));
  aligns_.push_back(align);
}

void Table::add_row(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  rows_.push_back(std::move(cells));
}

std::string Table::render() const {
  std::vector<size_t> widths(headers_.size());
  for (size_t c = 0; c < headers_.size(); ++c) {
    widths[c] = headers_[c].size();
    for (const auto& row : rows_) widths[c] = std::max(widths[c], row[c].size());
  }
  std::string out;
  const auto line = [&](const std::vector<std::string>& cells) {
    std::string text;
    for (size_t c = 0; c < cells.size(); ++c) {
      if (c > 0) text += "  ";
      const std::string pad(widths[c] - cells[c].size(), ' ');
      text += aligns_[c] == Align::right ? pad + cells[c] : cells[c] + pad;
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    out += text;
    out += '\n';
  };
  line(headers_);
  for (const auto& row : rows_) line(row);
  return out;
}

}  // namespace fulcrum::ctl
