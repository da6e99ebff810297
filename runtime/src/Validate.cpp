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

int64_t ceilDiv(int64_t a, int64_t b) { return a / b + (a % b != 0); }

std::string str(int64_t v) { return std::to_string(v); }

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
  /// deviceData: the tensors' data are device pointers, never to be read.
  Validator(const KernelDesc &k, const attnrt_tensor *args, int n,
            bool deviceData = false)
      : kernel(k), args(args), numArgs(n), deviceData(deviceData) {}

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
    if (deviceData) {
      checkCuSeqlensLengths();
      checkWritesDoNotOverlap();
      return;
    }
    checkCuSeqlens();
    checkPageTable();
    checkSlots();
    checkRingSlots();
    checkKvRings();
    checkBlockSparse();
    checkSelectPagesOutputs();
    checkTrimmedPages();
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

  void checkCuSeqlensLengths() {
    int cuQ = findRole(ATTNRT_ROLE_CU_SEQLENS_Q);
    int cuK = findRole(ATTNRT_ROLE_CU_SEQLENS_K);
    if (cuQ >= 0 && cuK >= 0 && length(cuQ) != length(cuK))
      bad(cuK, "has " + std::to_string(length(cuK)) + " entries but " +
                   name(cuQ) + " has " + std::to_string(length(cuQ)) +
                   "; both must have batch+1 entries");
  }

  void checkCuSeqlens() {
    checkCuSeqlensLengths();
    int cuQ = findRole(ATTNRT_ROLE_CU_SEQLENS_Q);
    int cuK = findRole(ATTNRT_ROLE_CU_SEQLENS_K);
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
    // -1 marks a page attnrt_cache_seq_trim returned to the pool; whether
    // a query could see it is decided in checkTrimmedPages, once every
    // length is known.
    std::string refusal = trimRefusal();
    for (int64_t r = 0; r < refs; ++r) {
      if (indices[r] >= 0 && indices[r] < numPages)
        continue;
      if (indices[r] == -1 && refusal.empty()) {
        trimmed.push_back(r);
        continue;
      }
      int64_t b = std::upper_bound(indptr, indptr + n, r) - indptr - 1;
      bad(ix,
          "entry " + std::to_string(r) + " (sequence " + std::to_string(b) +
              ") is page " + std::to_string(indices[r]) + " but the pool " +
              name(kp) + " has " + std::to_string(numPages) +
              " pages; page numbers must be in [0, " +
              std::to_string(numPages) + ")" +
              (indices[r] == -1
                   ? " (-1 marks a page trimmed by attnrt_cache_seq_trim, "
                     "which this kernel does not accept: " +
                         refusal + "; do not trim sequences this kernel reads)"
                   : ""));
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

  /// Query and key length of every sequence of the batch (dense: the dims of
  /// q and k; ragged: cu_seqlens; paged: the page table, with one query per
  /// sequence for decode, qo_indptr otherwise). Call after the index
  /// arguments are validated.
  void sequenceLengths() {
    if (lengthsKnown)
      return;
    lengthsKnown = true;
    int ip = findRole(ATTNRT_ROLE_KV_INDPTR);
    int cuQ = findRole(ATTNRT_ROLE_CU_SEQLENS_Q);
    int cuK = findRole(ATTNRT_ROLE_CU_SEQLENS_K);
    int qo = findRole(ATTNRT_ROLE_QO_INDPTR);
    if (ip >= 0) {
      const int32_t *indptr = ints(ip);
      const int32_t *last = ints(findRole(ATTNRT_ROLE_KV_LAST_PAGE_LEN));
      int64_t pageSize = kernel.kvCache.view.page_size;
      for (int64_t b = 0; b + 1 < length(ip); ++b) {
        int64_t pages = indptr[b + 1] - indptr[b];
        seqK.push_back(pages ? (pages - 1) * pageSize + last[b] : 0);
        seqQ.push_back(qo >= 0 ? ints(qo)[b + 1] - ints(qo)[b] : 1);
      }
    } else if (cuQ >= 0 && cuK >= 0) {
      for (int64_t b = 0; b + 1 < length(cuQ); ++b) {
        seqQ.push_back(ints(cuQ)[b + 1] - ints(cuQ)[b]);
        seqK.push_back(ints(cuK)[b + 1] - ints(cuK)[b]);
      }
    } else {
      // Dense: q [B, Lq, Hq, D], k [B, Lk, Hkv, D] (docs/semantics.md).
      const attnrt_tensor &q = args[findRole(ATTNRT_ROLE_QUERY)];
      int key = findRole(ATTNRT_ROLE_KEY);
      if (q.rank < 2 || key < 0 || args[key].rank < 2)
        fail(ATTNRT_ERR_VALIDATION,
             "kernel '" + kernel.name +
                 "': cannot tell its sequence lengths (no page table, no "
                 "cu_seqlens, and q/k are not [B, L, H, D]); regenerate the "
                 "artifact with attnc");
      seqQ.assign(static_cast<size_t>(q.sizes[0]), q.sizes[1]);
      seqK.assign(static_cast<size_t>(q.sizes[0]), args[key].sizes[1]);
    }
  }

  /// The block-sparse mask (docs/sparsity.md section 2): offsets [B, H,
  /// nqb + 1] and indices / full [B, H, max_blocks], H = block_sparse.heads;
  /// per (b, h) offsets start >= 0, never decrease and end <= max_blocks;
  /// every listed block is a block of the sequence's keys, listed at most
  /// once per row; nqb covers every sequence's query blocks.
  void checkBlockSparse() {
    if (!kernel.hasBlockSparse)
      return;
    int ofs = findRole(ATTNRT_ROLE_BLOCK_OFFSETS);
    int idx = findRole(ATTNRT_ROLE_BLOCK_INDICES);
    int full = findRole(ATTNRT_ROLE_BLOCK_FULL);
    const attnrt_block_sparse_info &bs = kernel.blockSparse;
    sequenceLengths();
    const int64_t *os = args[ofs].sizes, *is = args[idx].sizes;
    int64_t batch = static_cast<int64_t>(seqQ.size());
    if (os[0] != batch)
      bad(ofs, "dim 0 is " + str(os[0]) + " but the batch has " + str(batch) +
                   " sequences; pass one block pattern per sequence");
    if (os[1] != bs.heads)
      bad(ofs, "dim 1 is " + str(os[1]) +
                   " but the kernel's block_sparse has " + str(bs.heads) +
                   " head(s) (" +
                   (bs.heads == 1 ? std::string("one pattern for every head")
                                  : "num_kv_heads") +
                   ")");
    if (os[2] < 1)
      bad(ofs, "dim 2 is 0; it holds num_q_blocks + 1 >= 1 row offsets");
    if (is[0] != os[0] || is[1] != os[1])
      bad(idx, "shape is " + shapeText(is, 3) + " but " + name(ofs) + " is " +
                   shapeText(os, 3) +
                   "; dims 0 and 1 (batch, heads) must "
                   "match");
    if (full >= 0 && !std::equal(is, is + 3, args[full].sizes))
      bad(full, "shape is " + shapeText(args[full].sizes, 3) + " but " +
                    name(idx) + " is " + shapeText(is, 3) +
                    "; block_full has one flag per block index");
    int64_t heads = os[1], rows = os[2] - 1, maxBlocks = is[2];
    const int32_t *offsets = ints(ofs), *indices = ints(idx);
    // stamp[c] == row id: block c is already listed in this row.
    int64_t maxKvBlocks = 0;
    for (int64_t b = 0; b < batch; ++b)
      maxKvBlocks = std::max(maxKvBlocks, ceilDiv(seqK[b], bs.block_kv));
    std::vector<int64_t> stamp(static_cast<size_t>(maxKvBlocks), -1);
    int64_t rowId = 0;
    for (int64_t b = 0; b < batch; ++b) {
      int64_t qBlocks = ceilDiv(seqQ[b], bs.block_q);
      if (rows < qBlocks)
        bad(ofs, "has num_q_blocks = " + str(rows) + " (dim 2 - 1) but batch " +
                     str(b) + " has " + str(seqQ[b]) +
                     " queries = " + str(qBlocks) +
                     " query blocks of block_q = " + str(bs.block_q) +
                     "; num_q_blocks must be at least ceil(Lq / block_q) of "
                     "every sequence");
      int64_t kvBlocks = ceilDiv(seqK[b], bs.block_kv);
      for (int64_t h = 0; h < heads; ++h) {
        const int32_t *o = offsets + (b * heads + h) * (rows + 1);
        const int32_t *ix = indices + (b * heads + h) * maxBlocks;
        std::string at = "batch " + str(b) + " head " + str(h) + ": ";
        if (o[0] < 0)
          bad(ofs, at + "offsets[0] = " + str(o[0]) +
                       " is negative; row offsets index block_indices from 0");
        for (int64_t r = 1; r <= rows; ++r)
          if (o[r] < o[r - 1])
            bad(ofs, at + "offsets decrease at row " + str(r) + " (" +
                         str(o[r - 1]) + " -> " + str(o[r]) +
                         "); query block r lists block_indices[offsets[r] : "
                         "offsets[r + 1]], so offsets must not decrease");
        if (o[rows] > maxBlocks)
          bad(ofs, at + "offsets[" + str(rows) + "] = " + str(o[rows]) +
                       " exceeds max_blocks = " + str(maxBlocks) +
                       " (dim 2 of " + name(idx) +
                       "); make block_indices wider or fix the "
                       "offsets");
        for (int64_t r = 0; r < rows; ++r, ++rowId)
          for (int64_t n = o[r]; n < o[r + 1]; ++n) {
            int64_t c = ix[n];
            std::string entry = at + "row " + str(r) + " entry " + str(n) +
                                " is KV block " + str(c);
            if (c < 0 || c >= kvBlocks)
              bad(idx, entry + " but sequence " + str(b) + " has " +
                           str(seqK[b]) + " keys = " + str(kvBlocks) +
                           " blocks of block_kv = " + str(bs.block_kv) +
                           "; listed blocks must be in [0, " + str(kvBlocks) +
                           ")");
            if (stamp[c] == rowId)
              bad(idx, entry + ", listed twice in row " + str(r) +
                           "; a block may appear once per row (twice would "
                           "count its keys twice)");
            stamp[c] = rowId;
          }
      }
    }
  }

  /// select_pages writes offsets [B, Hkv, 2] and indices [B, Hkv, top_k]:
  /// their sizes bound its stores, so they are checked like inputs.
  void checkSelectPagesOutputs() {
    if (!kernel.hasSelectPages)
      return;
    int ofs = findRole(ATTNRT_ROLE_BLOCK_OFFSETS);
    int idx = findRole(ATTNRT_ROLE_BLOCK_INDICES);
    int64_t batch = length(findRole(ATTNRT_ROLE_KV_INDPTR)) - 1;
    int64_t heads = kernel.kvCache.view.num_kv_heads;
    int64_t expect[2][3] = {{batch, heads, 2},
                            {batch, heads, kernel.selectPages.top_k}};
    for (int k = 0; k < 2; ++k) {
      int i = k == 0 ? ofs : idx;
      if (i >= 0 && !std::equal(expect[k], expect[k] + 3, args[i].sizes))
        bad(i, "shape is " + shapeText(args[i].sizes, args[i].rank) +
                   " but select_pages writes " + shapeText(expect[k], 3) +
                   " ([batch, num_kv_heads, " + (k == 0 ? "2" : "top_k") +
                   "]) for this page table");
    }
  }

  /// The kernel's mask, or its head masks.
  std::vector<attnrt_mask_info> masks() const {
    if (!kernel.headMasks.empty())
      return kernel.headMasks;
    const attnrt_attention_info &ai = kernel.attention;
    return {{ai.causal, ai.bottom_right, ai.window, ai.sinks}};
  }

  /// Why the kernel cannot take trimmed pages at all, or "" if it can (a
  /// paged_attention whose every mask has a window, bottom-right aligned).
  std::string trimRefusal() const {
    if (kernel.kind != "paged_attention")
      return "only paged_attention kernels whose masks have a sliding window "
             "accept it";
    std::vector<attnrt_mask_info> all = masks();
    for (size_t h = 0; h < all.size(); ++h) {
      std::string whose = kernel.headMasks.empty()
                              ? std::string("the kernel's mask")
                              : "head_masks[" + str(int64_t(h)) + "]";
      if (all[h].window < 0)
        return whose + " has no sliding window, so every key is visible";
      if (!all[h].bottom_right)
        return whose + " is top_left aligned (only bottom_right masks, whose "
                       "queries are the last tokens, accept it)";
    }
    return "";
  }

  /// kv_indices entries of -1 (pages attnrt_cache_seq_trim returned to the
  /// pool; trimRefusal() accepted the kernel) are accepted only where no
  /// query of the sequence can see a key of the page: outside [0, sinks)
  /// and [Lk - Lq - window, Lk) for every head's mask, and outside every
  /// block the block-sparse mask lists.
  void checkTrimmedPages() {
    if (trimmed.empty())
      return;
    int ip = findRole(ATTNRT_ROLE_KV_INDPTR),
        ix = findRole(ATTNRT_ROLE_KV_INDICES);
    const int32_t *indptr = ints(ip);
    int64_t n = length(ip), pageSize = kernel.kvCache.view.page_size;
    auto where = [&](int64_t r, int64_t *b, int64_t *page) {
      *b = std::upper_bound(indptr, indptr + n, r) - indptr - 1;
      *page = r - indptr[*b];
      return "entry " + str(r) + " (sequence " + str(*b) + ", its page " +
             str(*page) + ") is -1, a page trimmed by attnrt_cache_seq_trim, ";
    };
    // The union of the heads' visible ranges: the largest sinks and window
    // (trimRefusal() made sure every mask has a window).
    int64_t sinks = 0, window = 0;
    for (const attnrt_mask_info &m : masks()) {
      sinks = std::max(sinks, m.sinks);
      window = std::max(window, m.window);
    }
    sequenceLengths();
    for (int64_t r : trimmed) {
      int64_t b, page;
      std::string entry = where(r, &b, &page);
      int64_t begin = page * pageSize;
      int64_t end = std::min(begin + pageSize, seqK[b]);
      int64_t from = seqK[b] - seqQ[b] - window; // lowest visible past sinks
      if (begin < sinks || end > from)
        bad(ix, entry + "but it holds keys [" + str(begin) + ", " + str(end) +
                    ") and the sequence's " + str(seqQ[b]) +
                    " query(s) see keys [0, " + str(sinks) + ") and [" +
                    str(std::max<int64_t>(from, 0)) + ", " + str(seqK[b]) +
                    ") (sinks " + str(sinks) + ", window " + str(window) +
                    "); trim with sink_tokens >= the mask's sinks and "
                    "window_tokens >= its window, after the queries' tokens "
                    "are appended");
    }
    checkTrimmedAgainstBlocks();
  }

  /// The kernel loads every block its query blocks list (and a full one
  /// is visible whatever the mask): no row of a sequence's queries may list
  /// a block covering one of its trimmed pages.
  void checkTrimmedAgainstBlocks() {
    if (!kernel.hasBlockSparse)
      return;
    const attnrt_block_sparse_info &bs = kernel.blockSparse;
    int ix = findRole(ATTNRT_ROLE_KV_INDICES);
    int ofs = findRole(ATTNRT_ROLE_BLOCK_OFFSETS);
    int idx = findRole(ATTNRT_ROLE_BLOCK_INDICES);
    int full = findRole(ATTNRT_ROLE_BLOCK_FULL);
    const int32_t *indptr = ints(findRole(ATTNRT_ROLE_KV_INDPTR));
    const int32_t *pageOf = ints(ix);
    int64_t pageSize = kernel.kvCache.view.page_size;
    int64_t heads = args[ofs].sizes[1], rows = args[ofs].sizes[2] - 1;
    int64_t maxBlocks = args[idx].sizes[2];
    std::vector<int64_t> count; // trimmed pages among the sequence's first p
    for (size_t t = 0; t < trimmed.size();) {
      int64_t b = seqOfEntry(trimmed[t]);
      while (t < trimmed.size() && trimmed[t] < indptr[b + 1])
        ++t;
      int64_t pages = indptr[b + 1] - indptr[b];
      count.assign(static_cast<size_t>(pages + 1), 0);
      for (int64_t p = 0; p < pages; ++p)
        count[p + 1] = count[p] + (pageOf[indptr[b] + p] == -1);
      int64_t used = std::min(rows, ceilDiv(seqQ[b], bs.block_q));
      for (int64_t h = 0; h < heads; ++h) {
        const int32_t *o = ints(ofs) + (b * heads + h) * (rows + 1);
        int64_t base = (b * heads + h) * maxBlocks;
        for (int64_t r = 0; r < used; ++r)
          for (int64_t n = o[r]; n < o[r + 1]; ++n) {
            int64_t c = ints(idx)[base + n];
            int64_t first = c * bs.block_kv / pageSize;
            int64_t last =
                std::min(ceilDiv((c + 1) * bs.block_kv, pageSize), pages);
            if (count[last] == count[first])
              continue;
            int64_t p = first;
            while (pageOf[indptr[b] + p] != -1)
              ++p;
            bool isFull = full >= 0 && static_cast<const int8_t *>(
                                           args[full].data)[base + n] != 0;
            bad(ix, "entry " + str(indptr[b] + p) + " (sequence " + str(b) +
                        ", its page " + str(p) +
                        ") is -1, a page trimmed by attnrt_cache_seq_trim, "
                        "but KV block " +
                        str(c) + " (keys [" + str(c * bs.block_kv) + ", " +
                        str((c + 1) * bs.block_kv) + ")) is listed" +
                        (isFull ? " as full" : "") + " for batch " + str(b) +
                        " head " + str(h) + " row " + str(r) + " (entry " +
                        str(n) +
                        "), and the kernel loads every listed block; do not "
                        "list blocks over trimmed pages, or do not trim");
          }
      }
    }
  }

  /// The sequence whose pages kv_indices entry r belongs to.
  int64_t seqOfEntry(int64_t r) const {
    int ip = findRole(ATTNRT_ROLE_KV_INDPTR);
    const int32_t *indptr = ints(ip);
    return std::upper_bound(indptr, indptr + length(ip), r) - indptr - 1;
  }

  const KernelDesc &kernel;
  const attnrt_tensor *args;
  int numArgs;
  bool deviceData;
  std::map<std::string, Binding> symbols;
  std::vector<int64_t> trimmed; ///< kv_indices entries that are -1.
  bool lengthsKnown = false;
  std::vector<int64_t> seqQ, seqK; ///< Per sequence (sequenceLengths).
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

std::map<std::string, int64_t>
attnrt::validateDeviceArgs(const KernelDesc &kernel, const attnrt_tensor *args,
                           int numArgs) {
  Validator validator(kernel, args, numArgs, /*deviceData=*/true);
  validator.run();
  std::map<std::string, int64_t> values;
  for (const auto &[name, binding] : validator.bindings())
    values[name] = binding.value;
  return values;
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
