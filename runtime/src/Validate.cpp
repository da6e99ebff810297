//===- Validate.cpp - caller tensors vs. the manifest ---------------------===//

#include "Validate.h"
#include "Error.h"

#include <algorithm>
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
    checkPageTable();
    checkSlots();
    checkRingSlots();
    checkKvRings();
    checkWritesDoNotOverlap();
  }

  const std::map<std::string, Binding> &bindings() const { return symbols; }

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

  /// Kernels write outputs while reading every input, and inout arguments
  /// are updated in place: a written argument sharing memory with another
  /// one would be read after being overwritten (or written twice).
  void checkWritesDoNotOverlap() const {
    for (size_t i = 0; i < kernel.args.size(); ++i) {
      attnrt_dir dir = kernel.args[i].dir;
      if (dir == ATTNRT_DIR_IN)
        continue;
      auto [b0, e0] = byteRange(i);
      for (size_t j = 0; j < kernel.args.size(); ++j) {
        auto [b1, e1] = byteRange(j);
        if (j != i && b0 < e1 && b1 < e0)
          bad(i, "shares memory with argument '" + kernel.args[j].name +
                     (dir == ATTNRT_DIR_OUT
                          ? "'; outputs need buffers of their own (the "
                            "kernel reads its inputs after writing outputs)"
                          : "'; an inout argument is updated in place and "
                            "needs a buffer of its own"));
      }
    }
  }

  int findRole(attnrt_role role) const { return kernel.findRole(role); }

  /// Rank-1 i32 argument i (the manifest parser guarantees rank and dtype;
  /// contiguity was checked, so element e is at data[e]).
  const int32_t *ints(int i) const {
    return static_cast<const int32_t *>(args[i].data);
  }
  int64_t length(int i) const { return args[i].sizes[0]; }
  std::string name(int i) const { return "'" + kernel.args[i].name + "'"; }

  void checkCuSeqlens() {
    int cuQ = findRole(ATTNRT_ROLE_CU_SEQLENS_Q);
    int cuK = findRole(ATTNRT_ROLE_CU_SEQLENS_K);
    if (cuQ >= 0 && cuK >= 0 && length(cuQ) != length(cuK))
      bad(cuK, "has " + std::to_string(length(cuK)) + " entries but " +
                   name(cuQ) + " has " + std::to_string(length(cuQ)) +
                   "; both must have batch+1 entries");
    int query = findRole(ATTNRT_ROLE_QUERY);
    checkOffsets(cuQ, query, "total_q");
    checkOffsets(cuK, findRole(ATTNRT_ROLE_KEY), "total_k");
    checkOffsets(findRole(ATTNRT_ROLE_QO_INDPTR), query, "total_q");
  }

  /// cu[0] == 0, non-decreasing, cu[B] == dim 0 of the rows' tensor.
  void checkOffsets(int cu, int rows, const char *totalName) {
    if (cu < 0)
      return;
    const attnrt_tensor &t = args[cu];
    if (t.dtype != ATTNRT_DTYPE_I32 || t.rank != 1)
      bad(cu, "must be a rank-1 i32 tensor (fix the manifest)");
    int64_t n = length(cu);
    if (n < 1)
      bad(cu, "is empty; it needs batch+1 >= 1 entries starting with 0");
    const int32_t *v = ints(cu);
    if (v[0] != 0)
      bad(cu, "starts with " + std::to_string(v[0]) +
                  " but must start with 0; it holds prefix sums of the "
                  "sequence lengths");
    for (int64_t b = 1; b < n; ++b)
      if (v[b] < v[b - 1])
        bad(cu, "decreases at index " + std::to_string(b) + " (" +
                    std::to_string(v[b - 1]) + " -> " + std::to_string(v[b]) +
                    "); sequence lengths must be >= 0");
    if (rows < 0)
      return;
    int64_t total = args[rows].rank > 0 ? args[rows].sizes[0] : 0;
    int64_t last = v[n - 1];
    if (last != total)
      bad(cu, "ends at " + std::to_string(last) + " but " + name(rows) +
                  " has " + std::to_string(total) + " rows (" + totalName +
                  "); the last entry must equal " + totalName);
  }

  /// The CSR page table: kv_indptr [B+1], kv_indices [refs] (pages of the
  /// pool k_pages), kv_last_page_len [B].
  void checkPageTable() {
    int ip = findRole(ATTNRT_ROLE_KV_INDPTR);
    if (ip < 0)
      return;
    int ix = findRole(ATTNRT_ROLE_KV_INDICES);
    int lp = findRole(ATTNRT_ROLE_KV_LAST_PAGE_LEN);
    int kp = findRole(ATTNRT_ROLE_K_PAGES);
    int64_t pageSize = kernel.kvCache.view.page_size;
    int64_t n = length(ip), refs = length(ix), numPages = args[kp].sizes[0];
    const int32_t *indptr = ints(ip), *indices = ints(ix), *last = ints(lp);
    if (n < 1)
      bad(ip, "is empty; it needs batch+1 >= 1 entries starting with 0");
    if (indptr[0] != 0)
      bad(ip, "starts with " + std::to_string(indptr[0]) +
                  " but must start with 0; sequence b owns kv_indices[" +
                  "kv_indptr[b] : kv_indptr[b+1]]");
    for (int64_t b = 1; b < n; ++b)
      if (indptr[b] < indptr[b - 1])
        bad(ip, "decreases at index " + std::to_string(b) + " (" +
                    std::to_string(indptr[b - 1]) + " -> " +
                    std::to_string(indptr[b]) +
                    "); it holds prefix sums of the page counts, which "
                    "must be >= 0");
    if (indptr[n - 1] != refs)
      bad(ip, "ends at " + std::to_string(indptr[n - 1]) + " but " + name(ix) +
                  " has " + std::to_string(refs) +
                  " entries; the last entry must equal the number of page "
                  "references (len(kv_indices))");
    int64_t batch = n - 1;
    if (length(lp) != batch)
      bad(lp, "has " + std::to_string(length(lp)) + " entries but " + name(ip) +
                  " has " + std::to_string(n) +
                  " (batch+1); pass one entry per sequence");
    for (int64_t r = 0; r < refs; ++r) {
      if (indices[r] >= 0 && indices[r] < numPages)
        continue;
      int64_t b = std::upper_bound(indptr, indptr + n, r) - indptr - 1;
      bad(ix, "entry " + std::to_string(r) + " (sequence " + std::to_string(b) +
                  ") is page " + std::to_string(indices[r]) + " but the pool " +
                  name(kp) + " has " + std::to_string(numPages) +
                  " pages; page numbers must be in [0, " +
                  std::to_string(numPages) + ")");
    }
    for (int64_t b = 0; b < batch; ++b) {
      int64_t pages = indptr[b + 1] - indptr[b], len = last[b];
      std::string seq = "sequence " + std::to_string(b);
      std::string entry = "kv_last_page_len[" + std::to_string(b) +
                          "] = " + std::to_string(len);
      if (pages == 0 && len != 0)
        bad(lp, entry + " but " + seq +
                    " has no pages; a sequence without pages must have 0");
      if (pages > 0 && len < 1)
        bad(lp, entry + " but " + seq + " has " + std::to_string(pages) +
                    " page(s); its last page holds 1 to page_size (" +
                    std::to_string(pageSize) +
                    ") tokens (drop an empty last page from kv_indices)");
      if (len > pageSize)
        bad(lp, seq + " is longer than its pages: " + entry +
                    " but page_size is " + std::to_string(pageSize) + " (" +
                    std::to_string(pages) + " page(s) hold at most " +
                    std::to_string(pages * pageSize) +
                    " tokens); give the sequence another page or fix its "
                    "length");
    }
    int qo = findRole(ATTNRT_ROLE_QO_INDPTR);
    if (qo >= 0 && length(qo) != n)
      bad(qo, "has " + std::to_string(length(qo)) + " entries but " + name(ip) +
                  " has " + std::to_string(n) +
                  "; both must have batch+1 entries");
  }

  /// kv_append slots: -1 (skip) or page * page_size + offset of a page of
  /// the pool.
  void checkSlots() {
    int sm = findRole(ATTNRT_ROLE_SLOT_MAPPING);
    if (sm < 0)
      return;
    int kp = findRole(ATTNRT_ROLE_K_PAGES);
    int64_t pageSize = kernel.kvCache.view.page_size;
    int64_t numPages = args[kp].sizes[0];
    const int32_t *slots = ints(sm);
    for (int64_t t = 0; t < length(sm); ++t) {
      int64_t slot = slots[t];
      if (slot == -1 || (slot >= 0 && slot / pageSize < numPages))
        continue;
      bad(sm, "entry " + std::to_string(t) + " is " + std::to_string(slot) +
                  " but the pool " + name(kp) + " has " +
                  std::to_string(numPages) + " pages of " +
                  std::to_string(pageSize) +
                  " slots; a slot is page * page_size + offset, in [0, " +
                  std::to_string(numPages) + " * " + std::to_string(pageSize) +
                  "), or -1 to skip the token");
    }
  }

  /// Rings of a residual cache: dim 0 of k_recent (the parser guarantees
  /// the argument exists when ring_slots or kv_rings do).
  int64_t numRings(int *kr) const {
    *kr = findRole(ATTNRT_ROLE_K_RECENT);
    return args[*kr].sizes[0];
  }

  /// kv_append ring slots: -1 (skip) or ring * R + position % R of a ring of
  /// the cache.
  void checkRingSlots() {
    int rs = findRole(ATTNRT_ROLE_RING_SLOTS);
    if (rs < 0)
      return;
    int kr;
    int64_t rings = numRings(&kr), r = kernel.kvCache.view.residual;
    const int32_t *slots = ints(rs);
    for (int64_t t = 0; t < length(rs); ++t) {
      int64_t slot = slots[t];
      if (slot == -1 || (slot >= 0 && slot / r < rings))
        continue;
      bad(rs, "entry " + std::to_string(t) + " is " + std::to_string(slot) +
                  " but the rings " + name(kr) + " are " +
                  std::to_string(rings) +
                  " of residual = " + std::to_string(r) +
                  " tokens; a ring slot is ring * residual + position % "
                  "residual, in [0, " +
                  std::to_string(rings) + " * " + std::to_string(r) +
                  "), or -1 to skip the token (take them from "
                  "attnrt_cache_seq_append_with_rings)");
    }
  }

  /// paged_attention ring of each sequence: in [0, num_rings).
  void checkKvRings() {
    int kv = findRole(ATTNRT_ROLE_KV_RINGS);
    if (kv < 0)
      return;
    int kr;
    int64_t rings = numRings(&kr);
    const int32_t *v = ints(kv);
    int ip = findRole(ATTNRT_ROLE_KV_INDPTR);
    if (ip >= 0 && length(kv) != length(ip) - 1)
      bad(kv, "has " + std::to_string(length(kv)) + " entries but " + name(ip) +
                  " has " + std::to_string(length(ip)) +
                  " (batch+1); pass one ring per sequence");
    for (int64_t b = 0; b < length(kv); ++b)
      if (v[b] < 0 || v[b] >= rings)
        bad(kv, "entry " + std::to_string(b) + " (sequence " +
                    std::to_string(b) + ") is ring " + std::to_string(v[b]) +
                    " but the rings " + name(kr) + " are " +
                    std::to_string(rings) + "; ring indices must be in [0, " +
                    std::to_string(rings) +
                    ") (take them from attnrt_cache_rings)");
  }

  const KernelDesc &kernel;
  const attnrt_tensor *args;
  int numArgs;
  std::map<std::string, Binding> symbols;
};

} // namespace

namespace {

std::vector<int64_t> descriptor(void *data, const int64_t *sizes, int rank) {
  std::vector<int64_t> w(3 + 2 * static_cast<size_t>(rank));
  int64_t ptr = static_cast<int64_t>(reinterpret_cast<intptr_t>(data));
  w[0] = ptr; // allocated
  w[1] = ptr; // aligned
  w[2] = 0;   // offset
  int64_t stride = 1;
  for (int d = rank - 1; d >= 0; --d) {
    w[3 + d] = sizes[d];
    w[3 + rank + d] = stride;
    stride *= sizes[d];
  }
  return w;
}

/// Sizes of scratch buffer `s` from the symbols the arguments bound, and its
/// size in bytes (rounded up to kScratchAlign).
size_t scratchShape(const KernelDesc &kernel, const ArgDesc &s,
                    const std::map<std::string, Binding> &symbols,
                    std::vector<int64_t> &sizes) {
  uint64_t bytes = static_cast<uint64_t>(attnrt_dtype_size(s.dtype));
  for (const DimDesc &d : s.shape) {
    int64_t size = d.value;
    if (!d.symbol.empty()) {
      auto it = symbols.find(d.symbolName);
      if (it == symbols.end()) // the parser rejects such manifests
        fail(ATTNRT_ERR_MANIFEST, "kernel '" + kernel.name + "' scratch '" +
                                      s.name + "': symbol '" + d.symbolName +
                                      "' is not bound by any argument");
      size = it->second.value + d.value;
    }
    sizes.push_back(size);
    if (__builtin_mul_overflow(bytes, static_cast<uint64_t>(size), &bytes) ||
        bytes > (uint64_t(1) << 48))
      fail(ATTNRT_ERR_VALIDATION,
           "kernel '" + kernel.name + "': scratch buffer '" + s.name +
               "' would need more than 2^48 bytes for these argument "
               "sizes; pass smaller tensors");
  }
  return static_cast<size_t>((bytes + kScratchAlign - 1) / kScratchAlign *
                             kScratchAlign);
}

} // namespace

void attnrt::validateArgs(const KernelDesc &kernel, const attnrt_tensor *args,
                          int numArgs, Descriptors *out) {
  Validator validator(kernel, args, numArgs);
  validator.run();
  if (!out)
    return;
  out->words.assign(kernel.args.size(), {});
  out->pointers.assign(kernel.args.size(), nullptr);
  for (size_t i = 0; i < kernel.args.size(); ++i) {
    out->words[i] = descriptor(args[i].data, args[i].sizes, args[i].rank);
    out->pointers[i] = out->words[i].data();
  }
  out->scratchSizes.assign(kernel.scratch.size(), {});
  out->scratchOffsets.assign(kernel.scratch.size(), 0);
  out->scratchBytes = 0;
  for (size_t i = 0; i < kernel.scratch.size(); ++i) {
    out->scratchOffsets[i] = out->scratchBytes;
    out->scratchBytes += scratchShape(
        kernel, kernel.scratch[i], validator.bindings(), out->scratchSizes[i]);
  }
}

void attnrt::bindScratch(Descriptors &out, void *block) {
  for (size_t i = 0; i < out.scratchSizes.size(); ++i) {
    const std::vector<int64_t> &sizes = out.scratchSizes[i];
    out.words.push_back(
        descriptor(static_cast<char *>(block) + out.scratchOffsets[i],
                   sizes.data(), static_cast<int>(sizes.size())));
  }
  out.pointers.clear(); // words may have moved: point at them anew
  for (std::vector<int64_t> &w : out.words)
    out.pointers.push_back(w.data());
}
