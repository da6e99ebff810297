//===- SplitMix.h - splitmix64 random numbers -----------------*- C++ -*-===//
//
// A fixed generator, so that the arena planner's hill climb and the planner
// tests' random schedules are the same with every standard library.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_PLANNING_SPLITMIX_H
#define ATTNC_PLANNING_SPLITMIX_H

#include <cmath>
#include <cstdint>

namespace attnc {

/// splitmix64.
struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return next() % n; }
  /// Uniform over [lo, hi], both inclusive.
  int64_t between(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(below(static_cast<uint64_t>(hi - lo + 1)));
  }
  /// Log-uniform over [lo, hi).
  uint64_t logUniform(uint64_t lo, uint64_t hi) {
    double u = double(next() >> 11) / double(1ULL << 53);
    return uint64_t(double(lo) * std::pow(double(hi) / double(lo), u));
  }
};

} // namespace attnc

#endif // ATTNC_PLANNING_SPLITMIX_H
