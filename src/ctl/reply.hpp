// Typed access to the daemon's JSON replies: each step records its path
// (`services[0].servers[1].weight`), and a missing member or a value of the
// wrong type throws a ReplyError that names it.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "json.hpp"

namespace fulcrum::ctl {

class ReplyError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Node {
 public:
  Node(const Json& value, std::string path) : value_(&value), path_(std::move(path)) {}

  const std::string& path() const { return path_; }
  const Json& json() const { return *value_; }

  // A required member of an object.
  Node operator[](std::string_view key) const;
  // Whether an object has this member.
  bool has(std::string_view key) const;
  // The elements of an array.
  std::vector<Node> elements() const;

  std::string string() const;
  uint64_t count() const;  // a non-negative integer
  double number() const;
  bool boolean() const;
  bool is_null() const { return value_->is_null(); }

 private:
  [[noreturn]] void wrong_type(std::string_view expected) const;

  const Json* value_;
  std::string path_;
};

}  // namespace fulcrum::ctl
