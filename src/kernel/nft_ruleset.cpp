#include "fulcrum/nft_ruleset.hpp"

#include <algorithm>
#include <cctype>
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
  // another value are added; those it holds otherwise, deleted first. One
  // walk over both, in key order (a Maglev map has 65537 elements).
  void update_elements(const std::string& map, const NftMap* installed, const NftMap& wanted) {
    static const NftMap none;
    const auto& have = installed ? installed->elements : none.elements;
    const auto& want = wanted.elements;
    std::vector<std::string> removed;
    std::vector<std::string> added;
    const auto add = [&added](const auto& element) {
      added.push_back(element.first + " : ");
      added.back() += element.second;
    };
    auto h = have.begin();
    auto w = want.begin();
    while (h != have.end() || w != want.end()) {
      if (w == want.end() || (h != have.end() && h->first < w->first)) {
        removed.push_back((h++)->first);
      } else if (h == have.end() || w->first < h->first) {
        add(*w++);
      } else {
        if (h->second != w->second) {
          removed.push_back(h->first);
          add(*w);
        }
        ++h;
        ++w;
      }
    }
    const auto& have_slots = installed ? installed->slots : none.slots;
    for (size_t slot = 0; slot < std::max(have_slots.size(), wanted.slots.size()); ++slot) {
      const bool had = slot < have_slots.size();
      const bool wants = slot < wanted.slots.size();
      if (had && wants && have_slots[slot] == wanted.slots[slot]) continue;
      if (had) removed.push_back(std::to_string(slot));
      if (wants) add(std::pair(std::to_string(slot), wanted.slots[slot]));
    }
    if (!removed.empty()) line("delete element", map + " " + element_list(removed));
    if (!added.empty()) line("add element", map + " " + element_list(added));
  }

 private:
  std::ostringstream& out_;
  std::string table_;
};

// Whether `rule` refers to map `map` (`@map`, not a longer name).
bool uses_map(const std::string& rule, const std::string& map) {
  const std::string reference = "@" + map;
  for (size_t at = rule.find(reference); at != std::string::npos;
       at = rule.find(reference, at + 1)) {
    const size_t after = at + reference.size();
    if (after == rule.size() ||
        !(std::isalnum(static_cast<unsigned char>(rule[after])) || rule[after] == '_'))
      return true;
  }
  return false;
}

void transition(std::ostringstream& out, const std::string& family, const NftTable& installed,
                const NftTable& wanted) {
  Script script(out, family);
  if (wanted.empty()) {
    if (!installed.empty()) script.line("delete table");
    return;
  }
  script.line("add table");
  // A map declared otherwise than before (dsr's flow memory after a change
  // of its size or timeout) cannot be altered in place: the chains whose
  // rules use it are flushed, it is declared anew, and their rules come
  // back below, all in this one transaction.
  std::set<std::string> redeclared;
  for (const auto& [name, map] : wanted.maps) {
    const auto found = installed.maps.find(name);
    if (found != installed.maps.end() && found->second.type != map.type) redeclared.insert(name);
  }
  std::set<std::string> flushed;
  for (const auto& [name, chain] : installed.chains) {
    const std::vector<std::string>& rules = chain.rules;
    const bool uses =
        std::any_of(redeclared.begin(), redeclared.end(), [&rules](const std::string& map) {
          return std::any_of(rules.begin(), rules.end(),
                             [&map](const std::string& rule) { return uses_map(rule, map); });
        });
    if (!uses) continue;
    script.line("flush chain", name);
    flushed.insert(name);
  }
  for (const std::string& name : redeclared) script.line("delete map", name);
  // Everything new exists before anything refers to it...
  for (const std::string& counter : wanted.counters) {
    if (!installed.counters.contains(counter)) script.line("add counter", counter);
  }
  for (const auto& [name, chain] : wanted.chains) {
    if (!installed.chains.contains(name)) script.add_chain(name, chain);
  }
  for (const auto& [name, map] : wanted.maps) {
    if (!installed.maps.contains(name) || redeclared.contains(name))
      script.line("add map", name + " { " + map.type + "; }");
  }
  for (const auto& [name, map] : wanted.maps) {
    const auto found = installed.maps.find(name);
    const bool had = found != installed.maps.end() && !redeclared.contains(name);
    script.update_elements(name, had ? &found->second : nullptr, map);
  }
  for (const auto& [name, chain] : wanted.chains) {
    const auto found = installed.chains.find(name);
    if (found != installed.chains.end() && !flushed.contains(name)) {
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
