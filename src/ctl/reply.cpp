// Path-tracking access to JSON replies.
#include "reply.hpp"

namespace fulcrum::ctl {

void Node::wrong_type(std::string_view expected) const {
  throw ReplyError((path_.empty() ? std::string("the reply") : path_) + " is " +
                   std::string(describe(value_->type())) + ", expected " + std::string(expected));
}

Node Node::operator[](std::string_view key) const {
  if (!value_->is_object()) wrong_type("an object");
  const std::string path = path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  const Json* member = value_->find(key);
  if (member == nullptr) throw ReplyError(path + " is missing");
  return {*member, path};
}

bool Node::has(std::string_view key) const { return value_->find(key) != nullptr; }

std::vector<Node> Node::elements() const {
  if (!value_->is_array()) wrong_type("an array");
  std::vector<Node> out;
  out.reserve(value_->size());
  for (size_t i = 0; i < value_->size(); ++i) {
    out.emplace_back(value_->items()[i], path_ + "[" + std::to_string(i) + "]");
  }
  return out;
}

std::string Node::string() const {
  if (!value_->is_string()) wrong_type("a string");
  return value_->text();
}

uint64_t Node::count() const {
  const auto value = value_->as_uint64();
  if (!value) wrong_type("a non-negative integer");
  return *value;
}

double Node::number() const {
  if (!value_->is_number()) wrong_type("a number");
  return value_->as_double();
}

bool Node::boolean() const {
  if (!value_->is_bool()) wrong_type("a boolean");
  return value_->as_bool();
}

}  // namespace fulcrum::ctl
