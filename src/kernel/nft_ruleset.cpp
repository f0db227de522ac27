#include "fulcrum/nft_ruleset.hpp"

#include <sstream>

namespace fulcrum {

namespace {

// Every family fulcrum may own a table in.
const std::set<std::string> kFamilies{"ip", "ip6", "netdev"};

// `{ a, b }` or `{ a : x, b : y }`, from keys (and values).
std::string element_list(const std::vector<std::string>& items) {
  std::string out = "{ ";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out + " }";
}

class Script {
 public:
  Script(std::ostringstream& out, const std::string& family)
      : out_(out), table_(family + " " + kNftTable) {}

  void line(const std::string& verb, const std::string& rest = "") {
    out_ << verb << ' ' << table_ << (rest.empty() ? "" : " " + rest) << '\n';
  }

  void add_chain(const std::string& name, const NftChain& chain) {
    std::string body;
    if (!chain.hook.empty()) body += chain.hook + " ";
    if (!chain.comment.empty()) body += "comment \"" + chain.comment + "\"; ";
    line("add chain", body.empty() ? name : name + " { " + body + "}");
  }

  void add_rules(const std::string& chain, const std::vector<std::string>& rules) {
    for (const std::string& rule : rules) {
      std::string text = chain;
      text += ' ';
      text += rule;
      line("add rule", text);
    }
  }

  // Elements of `map` in `wanted` that `installed` lacks or holds with
  // another value are added; those it holds otherwise, deleted first.
  void update_elements(const std::string& map, const NftMap* installed, const NftMap& wanted) {
    std::vector<std::string> removed;
    std::vector<std::string> added;
    if (installed) {
      for (const auto& [key, value] : installed->elements) {
        const auto found = wanted.elements.find(key);
        if (found == wanted.elements.end() || found->second != value) removed.push_back(key);
      }
    }
    for (const auto& [key, value] : wanted.elements) {
      if (installed) {
        const auto found = installed->elements.find(key);
        if (found != installed->elements.end() && found->second == value) continue;
      }
      added.push_back(key + " : ");
      added.back() += value;
    }
    if (!removed.empty()) line("delete element", map + " " + element_list(removed));
    if (!added.empty()) line("add element", map + " " + element_list(added));
  }

 private:
  std::ostringstream& out_;
  std::string table_;
};

void transition(std::ostringstream& out, const std::string& family, const NftTable& installed,
                const NftTable& wanted) {
  Script script(out, family);
  if (wanted.empty()) {
    if (!installed.empty()) script.line("delete table");
    return;
  }
  script.line("add table");
  // Everything new exists before anything refers to it...
  for (const std::string& counter : wanted.counters) {
    if (!installed.counters.contains(counter)) script.line("add counter", counter);
  }
  for (const auto& [name, chain] : wanted.chains) {
    if (!installed.chains.contains(name)) script.add_chain(name, chain);
  }
  for (const auto& [name, map] : wanted.maps) {
    if (!installed.maps.contains(name)) script.line("add map", name + " { " + map.type + "; }");
  }
  for (const auto& [name, map] : wanted.maps) {
    const auto found = installed.maps.find(name);
    script.update_elements(name, found == installed.maps.end() ? nullptr : &found->second, map);
  }
  for (const auto& [name, chain] : wanted.chains) {
    const auto found = installed.chains.find(name);
    if (found != installed.chains.end()) {
      if (found->second.rules == chain.rules) continue;
      script.line("flush chain", name);
    }
    script.add_rules(name, chain.rules);
  }
  // ...and what goes is unreferenced before it is deleted: rules first, then
  // maps (their elements jump to chains), then chains and counters.
  for (const auto& [name, chain] : installed.chains) {
    if (!wanted.chains.contains(name)) script.line("flush chain", name);
  }
  for (const auto& [name, map] : installed.maps) {
    if (!wanted.maps.contains(name)) script.line("delete map", name);
  }
  for (const auto& [name, chain] : installed.chains) {
    if (!wanted.chains.contains(name)) script.line("delete chain", name);
  }
  for (const std::string& counter : installed.counters) {
    if (!wanted.counters.contains(counter)) script.line("delete counter", counter);
  }
}

}  // namespace

std::string nft_transaction(const NftRuleset& installed, const NftRuleset& wanted, bool replace) {
  std::ostringstream out;
  const NftTable none;
  if (replace) out << nft_delete_tables(kFamilies);
  for (const std::string& family : kFamilies) {
    const auto have = installed.find(family);
    const auto want = wanted.find(family);
    const NftTable& from = replace || have == installed.end() ? none : have->second;
    const NftTable& to = want == wanted.end() ? none : want->second;
    if (from == to) continue;
    transition(out, family, from, to);
  }
  return out.str();
}

std::string nft_delete_tables(const std::set<std::string>& families) {
  std::ostringstream out;
  for (const std::string& family : families) {
    out << "add table " << family << ' ' << kNftTable << '\n';
    out << "delete table " << family << ' ' << kNftTable << '\n';
  }
  return out.str();
}

}  // namespace fulcrum
