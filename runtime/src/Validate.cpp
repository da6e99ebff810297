//===- Validate.cpp - caller tensors vs. the manifest ---------------------===//

#include "Validate.h"
#include "Error.h"

#include <cstdint>
#include <cstring>
#include <map>
#include <string>

using namespace attnrt;

namespace {

std::string shapeText(const int64_t *sizes, int rank) {
  std::string s = "[";
  for (int i = 0; i < rank; ++i)
    s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

std::string manifestShapeText(const ArgDesc &a) {
  std::string s = "[";
  for (size_t i = 0; i < a.shape.size(); ++i)
    s += (i ? ", " : "") + (a.shape[i].symbol.empty()
                                ? std::to_string(a.shape[i].value)
                                : a.shape[i].symbol);
  return s + "]";
}

struct Binding {
  int64_t value;
  std::string origin; // "argument 'q' dim 0"
};

class Validator {
public:
  Validator(const KernelDesc &k, const attnrt_tensor *args, int n)
      : kernel(k), args(args), numArgs(n) {}

  void run() {
    size_t expected = kernel.args.size();
    if (numArgs < 0 || static_cast<size_t>(numArgs) != expected) {
      std::string names;
      for (const ArgDesc &a : kernel.args)
        names += (names.empty() ? "" : ", ") + a.name;
      fail(ATTNRT_ERR_VALIDATION,
           "kernel '" + kernel.name + "' takes " + std::to_string(expected) +
               " arguments (" + names + ") but " + std::to_string(numArgs) +
               " were given; pass one tensor per manifest argument, in "
               "manifest order");
    }
    if (!args)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           "kernel '" + kernel.name + "': the argument array is NULL");
    for (size_t i = 0; i < expected; ++i)
      checkTensor(i);
    checkCuSeqlens();
    checkOutputsDoNotOverlap();
  }

private:
  [[noreturn]] void bad(size_t i, const std::string &what) const {
    fail(ATTNRT_ERR_VALIDATION, "kernel '" + kernel.name + "' argument '" +
                                    kernel.args[i].name + "' (#" +
                                    std::to_string(i) + "): " + what);
  }

  void checkTensor(size_t i) {
    const ArgDesc &a = kernel.args[i];
    const attnrt_tensor &t = args[i];
    if (t.dtype != a.dtype)
      bad(i, std::string("dtype is ") + attnrt_dtype_name(t.dtype) +
                 " but the kernel expects " + attnrt_dtype_name(a.dtype) +
                 "; convert the tensor");
    int rank = static_cast<int>(a.shape.size());
    if (t.rank != rank)
      bad(i, "rank is " + std::to_string(t.rank) + " but the kernel expects " +
                 std::to_string(rank) + " " + manifestShapeText(a) +
                 "; reshape the tensor");
    if (rank > 0 && !t.sizes)
      bad(i, "sizes is NULL; pass " + std::to_string(rank) + " sizes");
    for (int d = 0; d < rank; ++d)
      if (t.sizes[d] < 0)
        bad(i, "size of dim " + std::to_string(d) + " is negative (" +
                   std::to_string(t.sizes[d]) + ")");
    std::string shape = shapeText(t.sizes, rank);
    for (int d = 0; d < rank; ++d) {
      const DimDesc &dim = a.shape[d];
      int64_t size = t.sizes[d];
      if (dim.symbol.empty()) {
        if (size != dim.value)
          bad(i, "shape is " + shape + " but the kernel expects " +
                     manifestShapeText(a) + ": dim " + std::to_string(d) +
                     " must be " + std::to_string(dim.value) +
                     " (a static size compiled into the kernel)");
        continue;
      }
      int64_t value = size - dim.value; // value of the bare symbol
      std::string origin = "argument '" + a.name + "' dim " + std::to_string(d);
      if (value < 0)
        bad(i, "dim " + std::to_string(d) + " is " + std::to_string(size) +
                   " but must be " + dim.symbol +
                   " >= " + std::to_string(dim.value));
      auto [it, inserted] =
          symbols.emplace(dim.symbolName, Binding{value, origin});
      if (!inserted && it->second.value != value)
        bad(i, "shape is " + shape + " " + manifestShapeText(a) + ": dim " +
                   std::to_string(d) + " gives " + dim.symbolName + " = " +
                   std::to_string(value) + " but " + it->second.origin +
                   " gives " + dim.symbolName + " = " +
                   std::to_string(it->second.value) +
                   "; every use of a symbol must have the same size");
    }
    int64_t numel = 1;
    for (int d = 0; d < rank; ++d)
      numel *= t.sizes[d];
    if (!t.data)
      bad(i, "data pointer is NULL; pass a valid buffer (even for an empty "
             "tensor)");
    // Size-1 and empty dims put no constraint on memory, so their strides
    // are ignored (as NumPy/PyTorch contiguity does); canonical ones are
    // passed to the kernel.
    if (t.strides && numel > 0) {
      int64_t expect = 1;
      for (int d = rank - 1; d >= 0; --d) {
        if (t.sizes[d] != 1 && t.strides[d] != expect)
          bad(i, "strides " + shapeText(t.strides, rank) + " for shape " +
                     shape + " are not row-major contiguous (expected " +
                     std::to_string(expect) + " for dim " + std::to_string(d) +
                     "); the kernel needs contiguous tensors, make a "
                     "contiguous copy");
        expect *= t.sizes[d];
      }
    }
  }

  /// Bytes [begin, end) of argument i (contiguous, checked above).
  std::pair<uintptr_t, uintptr_t> byteRange(size_t i) const {
    const attnrt_tensor &t = args[i];
    int64_t bytes = attnrt_dtype_size(t.dtype);
    for (int d = 0; d < t.rank; ++d)
      bytes *= t.sizes[d];
    auto begin = reinterpret_cast<uintptr_t>(t.data);
    return {begin, begin + static_cast<uintptr_t>(bytes)};
  }

  /// Kernels write outputs while reading every input: an output sharing
  /// memory with another argument would be read after being overwritten.
  void checkOutputsDoNotOverlap() const {
    for (size_t i = 0; i < kernel.args.size(); ++i) {
      if (kernel.args[i].dir != ATTNRT_DIR_OUT)
        continue;
      auto [b0, e0] = byteRange(i);
      for (size_t j = 0; j < kernel.args.size(); ++j) {
        auto [b1, e1] = byteRange(j);
        if (j != i && b0 < e1 && b1 < e0)
          bad(i, "shares memory with argument '" + kernel.args[j].name +
                     "'; outputs need buffers of their own (the kernel reads "
                     "its inputs after writing outputs)");
      }
    }
  }

  int findRole(attnrt_role role) const {
    for (size_t i = 0; i < kernel.args.size(); ++i)
      if (kernel.args[i].role == role)
        return static_cast<int>(i);
    return -1;
  }

  void checkCuSeqlens() {
    int cuQ = findRole(ATTNRT_ROLE_CU_SEQLENS_Q);
    int cuK = findRole(ATTNRT_ROLE_CU_SEQLENS_K);
    if (cuQ >= 0 && cuK >= 0 && args[cuQ].sizes[0] != args[cuK].sizes[0])
      bad(cuK, "has " + std::to_string(args[cuK].sizes[0]) + " entries but '" +
                   kernel.args[cuQ].name + "' has " +
                   std::to_string(args[cuQ].sizes[0]) +
                   "; both must have batch+1 entries");
    checkOffsets(cuQ, findRole(ATTNRT_ROLE_QUERY), "total_q");
    checkOffsets(cuK, findRole(ATTNRT_ROLE_KEY), "total_k");
  }

  /// cu[0] == 0, non-decreasing, cu[B] == dim 0 of the rows' tensor.
  void checkOffsets(int cu, int rows, const char *totalName) {
    if (cu < 0)
      return;
    const ArgDesc &a = kernel.args[cu];
    const attnrt_tensor &t = args[cu];
    if (a.dtype != ATTNRT_DTYPE_I32 || t.rank != 1)
      bad(cu, "must be a rank-1 i32 tensor (fix the manifest)");
    int64_t n = t.sizes[0];
    if (n < 1)
      bad(cu, "is empty; it needs batch+1 >= 1 entries starting with 0");
    const int32_t *v = static_cast<const int32_t *>(t.data);
    int64_t stride = t.strides ? t.strides[0] : 1;
    if (n == 1)
      stride = 1;
    if (v[0] != 0)
      bad(cu, "starts with " + std::to_string(v[0]) +
                  " but must start with 0; cu_seqlens are prefix sums of "
                  "the sequence lengths");
    for (int64_t b = 1; b < n; ++b)
      if (v[b * stride] < v[(b - 1) * stride])
        bad(cu, "decreases at index " + std::to_string(b) + " (" +
                    std::to_string(v[(b - 1) * stride]) + " -> " +
                    std::to_string(v[b * stride]) +
                    "); sequence lengths must be >= 0");
    if (rows < 0)
      return;
    int64_t total = args[rows].rank > 0 ? args[rows].sizes[0] : 0;
    int64_t last = v[(n - 1) * stride];
    if (last != total)
      bad(cu, "ends at " + std::to_string(last) + " but '" +
                  kernel.args[rows].name + "' has " + std::to_string(total) +
                  " rows (" + totalName + "); the last entry must equal " +
                  totalName);
  }

  const KernelDesc &kernel;
  const attnrt_tensor *args;
  int numArgs;
  std::map<std::string, Binding> symbols;
};

} // namespace

void attnrt::validateArgs(const KernelDesc &kernel, const attnrt_tensor *args,
                          int numArgs, Descriptors *out) {
  Validator(kernel, args, numArgs).run();
  if (!out)
    return;
  out->words.assign(kernel.args.size(), {});
  out->pointers.assign(kernel.args.size(), nullptr);
  for (size_t i = 0; i < kernel.args.size(); ++i) {
    const attnrt_tensor &t = args[i];
    std::vector<int64_t> &w = out->words[i];
    w.resize(3 + 2 * static_cast<size_t>(t.rank));
    int64_t ptr = static_cast<int64_t>(reinterpret_cast<intptr_t>(t.data));
    w[0] = ptr; // allocated
    w[1] = ptr; // aligned
    w[2] = 0;   // offset
    int64_t stride = 1;
    for (int d = t.rank - 1; d >= 0; --d) {
      w[3 + d] = t.sizes[d];
      w[3 + t.rank + d] = stride;
      stride *= t.sizes[d];
    }
    out->pointers[i] = w.data();
  }
}
