// A libnftables context (Debian libnftables-dev: nft's own library, which
// firewalld uses too): one nft script, one atomic transaction.
#pragma once

#include <string>

struct nft_ctx;

namespace fulcrum {

class Nftables {
 public:
  Nftables();
  ~Nftables();
  Nftables(const Nftables&) = delete;
  Nftables& operator=(const Nftables&) = delete;

  // Runs `script` as one transaction: all of it or nothing. Returns an
  // empty string, or nft's error (what it prints, the failing line marked).
  // `dry_run`: the kernel checks the transaction and applies nothing.
  std::string run(const std::string& script, bool dry_run = false);
  // What the last run printed (a `list` command's output).
  std::string output() const;

 private:
  nft_ctx* context_;
};

}  // namespace fulcrum
