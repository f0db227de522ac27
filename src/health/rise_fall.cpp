#include "fulcrum/health.hpp"

namespace fulcrum {

bool RiseFall::record(bool success) {
  // A result that agrees with the current state breaks any streak towards
  // the other one.
  if (success == up_) {
    streak_ = 0;
    return false;
  }
  if (++streak_ < needed()) return false;
  up_ = !up_;
  streak_ = 0;
  return true;
}

}  // namespace fulcrum
