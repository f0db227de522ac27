#include "fulcrum/nftables.hpp"

#include <nftables/libnftables.h>

#include <new>

namespace fulcrum {

Nftables::Nftables() : context_(nft_ctx_new(NFT_CTX_DEFAULT)) {
  if (context_ == nullptr) throw std::bad_alloc();
  // Errors and output are kept for the caller instead of going to stderr.
  nft_ctx_buffer_output(context_);
  nft_ctx_buffer_error(context_);
}

Nftables::~Nftables() { nft_ctx_free(context_); }

std::string Nftables::run(const std::string& script, bool dry_run) {
  nft_ctx_set_dry_run(context_, dry_run);
  if (nft_run_cmd_from_buffer(context_, script.c_str()) == 0) return "";
  const char* error = nft_ctx_get_error_buffer(context_);
  std::string text = error != nullptr && *error != '\0' ? error : "nft failed";
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

std::string Nftables::output() const {
  const char* out = nft_ctx_get_output_buffer(context_);
  return out != nullptr ? out : "";
}

}  // namespace fulcrum
