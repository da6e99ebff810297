//===- PtxSignature.h - parameters as the PTX declares them -----*- C++ -*-===//
//
// cuLaunchKernel takes the parameters as untyped pointers and reads each
// one's size from the kernel, so a manifest whose gpu.params disagree with
// the kernel would launch with garbage silently. The PTX (always in the
// artifact, whichever image is loaded) declares the signature; it is
// checked against gpu.params at open, before CUDA.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNRT_SRC_PTXSIGNATURE_H
#define ATTNRT_SRC_PTXSIGNATURE_H

#include "Manifest.h"

#include <string>

namespace attnrt {

/// Throws RuntimeError(ATTNRT_ERR_MANIFEST) unless `ptx` (the text of the
/// file `path`) has `.entry gpu.entry(...)` whose parameters are, in order,
/// a 64-bit scalar (.u64/.s64/.b64) per {"arg"} and {"scratch"} and a 32-bit
/// integer (.u32/.s32/.b32) per {"symbol"} of gpu.params; and likewise for
/// gpu.merge of split-KV kernels.
void checkPtxSignature(const KernelDesc &kernel, const std::string &ptx,
                       const std::string &path);

} // namespace attnrt

#endif // ATTNRT_SRC_PTXSIGNATURE_H
