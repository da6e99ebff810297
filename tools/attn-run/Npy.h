//===- Npy.h - NumPy .npy reading and writing -------------------*- C++ -*-===//
//
// Only what attn-run needs: little-endian C-order arrays of f32, f16, i32,
// i8, u8, bf16 (stored as raw '<u2' bits, or ml_dtypes' '<V2') and fp8 (raw
// '|u1' bits, or ml_dtypes' float8_e4m3fn '<V1' / float8_e5m2 '<f1').
//
//===----------------------------------------------------------------------===//

#ifndef ATTNRUN_NPY_H
#define ATTNRUN_NPY_H

#include "Tensor.h"

#include <stdexcept>
#include <string>

namespace attnrun {

/// A one-line, user-facing error; attn-run prints it and exits 1.
class UsageError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Whether a .npy descr can hold a tensor of `dtype`.
bool npyDescrMatches(const std::string &descr, attnrt_dtype dtype);
/// The descr written for `dtype` (bf16 as raw '<u2' bits and fp8 as raw
/// '|u1' bits: readable without ml_dtypes; view them with
/// .view(ml_dtypes.bfloat16) etc.).
std::string npyDescrFor(attnrt_dtype dtype);

/// Loads `path` for the argument `argName` of type `dtype`; throws
/// UsageError naming the argument and file on any problem.
HostTensor loadNpy(const std::string &path, attnrt_dtype dtype,
                   const std::string &argName);
void saveNpy(const std::string &path, const HostTensor &t,
             const std::string &argName);

} // namespace attnrun

#endif // ATTNRUN_NPY_H
