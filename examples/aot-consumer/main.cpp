//===- main.cpp - calls kernels attnc_add_kernels linked into it ----------===//
//
// Opens the kernels of gqa_prefill.mlir and paged_i8.mlir, which the build
// compiled ahead of time and linked into this program, through their headers'
// attnc_<id>_manifest / attnc_<id>_symbol, runs them on fresh random inputs
// at odd sizes and checks every output against a float64 reference written
// here from docs/semantics.md and docs/kv-cache.md. Exit status: 0 all
// checks pass, 1 a result is wrong, 2 a runtime error.
//
//   aot-consumer [SEED]
//
//===----------------------------------------------------------------------===//

#include "gqa_prefill.h"
#include "paged_i8.h"

#include "attnrt/attnrt.hpp"
#include "attnrt/attnrt_cache.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr int64_t kQHeads = 8, kKvHeads = 2, kHeadDim = 64;
constexpr int64_t kPageSize = 16, kKGroup = 16; // paged_i8.mlir's cache
const double kScale = 1.0 / std::sqrt(double(kHeadDim)); // default scale
// docs/testing.md: f32 kernels within 1e-5 of float64 (O relative to
// max |ref|, LSE absolute); docs/kv-cache.md: i8 with k_group 16 within
// 0.05 (O) and 0.06 (LSE) of attention on the unquantized values.
constexpr double kOTol = 1e-5, kLseTol = 1e-5;
constexpr double kI8OBound = 0.05, kI8LseBound = 0.06;

/// A caller buffer, bound to a kernel argument by name.
struct Buffer {
  void *data;
  attnrt_dtype dtype;
  std::vector<int64_t> sizes;
};
using Buffers = std::map<std::string, Buffer>;

/// The kernel's arguments in manifest order, from `buffers` by name.
std::vector<attnrt_tensor> bind(const attnrt::Kernel &kernel,
                                const Buffers &buffers) {
  std::vector<attnrt_tensor> args;
  for (int i = 0; i < kernel.numArgs(); ++i) {
    const char *name = kernel.arg(i).name;
    auto it = buffers.find(name);
    if (it == buffers.end())
      throw attnrt::Error(ATTNRT_ERR_INVALID_ARGUMENT,
                          "kernel '" + kernel.name() + "' takes argument '" +
                              name + "', which this program does not pass");
    const Buffer &b = it->second;
    args.push_back({b.data, b.dtype, static_cast<int>(b.sizes.size()),
                    b.sizes.data(), nullptr});
  }
  return args;
}

std::vector<float> randomVector(std::mt19937_64 &rng, size_t n, float range) {
  std::uniform_real_distribution<float> dist(-range, range);
  std::vector<float> v(n);
  for (float &x : v)
    x = dist(rng);
  return v;
}

/// Float64 attention of one query row over keys [0, n): o[kHeadDim] and the
/// returned natural-log LSE; o = 0 and LSE = -inf without keys.
template <typename Key, typename Value>
double attendPrefix(const float *q, int64_t n, Key key, Value value,
                    double *o) {
  std::fill(o, o + kHeadDim, 0.0);
  if (n == 0)
    return -std::numeric_limits<double>::infinity();
  std::vector<double> s(n);
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < n; ++j) {
    double dot = 0;
    for (int64_t c = 0; c < kHeadDim; ++c)
      dot += double(q[c]) * key(j, c);
    s[j] = kScale * dot;
    m = std::max(m, s[j]);
  }
  double l = 0;
  for (int64_t j = 0; j < n; ++j) {
    double p = std::exp(s[j] - m);
    l += p;
    for (int64_t c = 0; c < kHeadDim; ++c)
      o[c] += p * value(j, c);
  }
  for (int64_t c = 0; c < kHeadDim; ++c)
    o[c] /= l;
  return m + std::log(l);
}

/// Compares a kernel's o and lse with the reference and prints one line.
bool check(const std::string &what, const std::vector<float> &o,
           const std::vector<double> &refO, const std::vector<float> &lse,
           const std::vector<double> &refLse, double oTol, double lseTol) {
  double maxRef = 0, oErr = 0, lseErr = 0;
  bool bad = false; // NaN, or -inf where the reference has a value
  for (double r : refO)
    maxRef = std::max(maxRef, std::fabs(r));
  for (size_t i = 0; i < o.size(); ++i) {
    bad |= std::isnan(o[i]);
    oErr = std::max(oErr, std::fabs(o[i] - refO[i]));
  }
  oErr /= std::max(maxRef, 1e-30);
  for (size_t i = 0; i < lse.size(); ++i) {
    if (std::isinf(refLse[i])) // a row without visible keys
      bad |= lse[i] != refLse[i] || !(std::isinf(lse[i]));
    else if (std::isnan(lse[i]) || std::isinf(lse[i]))
      bad = true;
    else
      lseErr = std::max(lseErr, std::fabs(lse[i] - refLse[i]));
  }
  bool ok = !bad && oErr <= oTol && lseErr <= lseTol;
  std::printf("%-48s o: max_rel_err=%.2e (tol %.0e)  lse: max_abs_err=%.2e "
              "(tol %.0e)%s  %s\n",
              what.c_str(), oErr, oTol, lseErr, lseTol,
              bad ? "  NaN/-inf mismatch" : "", ok ? "PASS" : "FAIL");
  return ok;
}

/// gqa_prefill on [b, lq, 8, 64] queries and [b, lk, 2, 64] keys/values.
bool runPrefill(attnrt::Module &m, std::mt19937_64 &rng, int64_t b, int64_t lq,
                int64_t lk) {
  attnrt::Kernel kernel = m.kernel("gqa_prefill");
  std::vector<float> q = randomVector(rng, b * lq * kQHeads * kHeadDim, 2);
  std::vector<float> k = randomVector(rng, b * lk * kKvHeads * kHeadDim, 2);
  std::vector<float> v = randomVector(rng, b * lk * kKvHeads * kHeadDim, 2);
  // Poisoned: every element the kernel misses shows as NaN.
  std::vector<float> o(q.size(), NAN), lse(b * kQHeads * lq, NAN);
  Buffers buffers = {
      {"q", {q.data(), ATTNRT_DTYPE_F32, {b, lq, kQHeads, kHeadDim}}},
      {"k", {k.data(), ATTNRT_DTYPE_F32, {b, lk, kKvHeads, kHeadDim}}},
      {"v", {v.data(), ATTNRT_DTYPE_F32, {b, lk, kKvHeads, kHeadDim}}},
      {"o", {o.data(), ATTNRT_DTYPE_F32, {b, lq, kQHeads, kHeadDim}}},
      {"lse", {lse.data(), ATTNRT_DTYPE_F32, {b, kQHeads, lq}}}};
  m.run(kernel, bind(kernel, buffers));

  std::vector<double> refO(o.size()), refLse(lse.size());
  for (int64_t s = 0; s < b; ++s)
    for (int64_t i = 0; i < lq; ++i)
      for (int64_t h = 0; h < kQHeads; ++h) {
        int64_t kvh = h / (kQHeads / kKvHeads);
        auto at = [&](const std::vector<float> &x, int64_t j, int64_t c) {
          return double(x[((s * lk + j) * kKvHeads + kvh) * kHeadDim + c]);
        };
        // Causal, bottom-right aligned: query i sees keys j <= i + lk - lq.
        int64_t visible = std::clamp<int64_t>(i + lk - lq + 1, 0, lk);
        int64_t row = (s * lq + i) * kQHeads + h;
        refLse[(s * kQHeads + h) * lq + i] = attendPrefix(
            &q[row * kHeadDim], visible,
            [&](int64_t j, int64_t c) { return at(k, j, c); },
            [&](int64_t j, int64_t c) { return at(v, j, c); },
            &refO[row * kHeadDim]);
      }
  return check("gqa_prefill batch=" + std::to_string(b) + " seqlen_q=" +
                   std::to_string(lq) + " seqlen_k=" + std::to_string(lk),
               o, refO, lse, refLse, kOTol, kLseTol);
}

double halfToDouble(uint16_t h) {
  int exp = (h >> 10) & 31, man = h & 1023;
  double v = exp == 0    ? std::ldexp(man, -24)
             : exp == 31 ? (man ? NAN : INFINITY)
                         : std::ldexp(man + 1024, exp - 25);
  return (h >> 15) ? -v : v;
}

void checkStatus(attnrt_status s) { attnrt::check(s); }

/// Sequences of `lengths` tokens appended by kv_append into a page pool in
/// interleaved chunks, then one kv_decode step per sequence.
bool runPagedDecode(attnrt::Module &m, std::mt19937_64 &rng,
                    const std::vector<int64_t> &lengths) {
  attnrt::Kernel append = m.kernel("kv_append");
  attnrt::Kernel decode = m.kernel("kv_decode");
  const int64_t numPages = 64;

  // The pool's components are the cache arguments of kv_append, [num_pages,
  // ...] each (docs/kv-cache.md); their names bind them to the kernels.
  std::vector<attnrt_cache_component> components;
  std::vector<std::vector<int64_t>> shapes;
  std::vector<attnrt_dtype> dtypes;
  for (int i = 0; i < append.numArgs(); ++i) {
    const attnrt_arg_info &a = append.arg(i);
    if (a.dir != ATTNRT_DIR_INOUT)
      continue;
    int64_t bytes = attnrt_dtype_size(a.dtype);
    std::vector<int64_t> shape = {numPages};
    for (int d = 1; d < a.rank; ++d) {
      bytes *= a.shape[d].value;
      shape.push_back(a.shape[d].value);
    }
    components.push_back({a.name, ATTNRT_CACHE_PER_PAGE, bytes});
    shapes.push_back(shape);
    dtypes.push_back(a.dtype);
  }
  attnrt_cache_pool *pool = nullptr;
  checkStatus(attnrt_cache_pool_create(kPageSize, components.data(),
                                       static_cast<int>(components.size()),
                                       numPages, &pool));
  struct PoolCloser {
    attnrt_cache_pool *p;
    ~PoolCloser() { attnrt_cache_pool_destroy(p); }
  } closer{pool};
  Buffers buffers;
  for (size_t i = 0; i < components.size(); ++i) {
    void *data = nullptr;
    checkStatus(
        attnrt_cache_pool_buffer(pool, static_cast<int>(i), &data, nullptr));
    buffers[components[i].name] = {data, dtypes[i], shapes[i]};
  }

  // Append every sequence's K/V, chunk by chunk, sequences interleaved so
  // pages are not in order; keep the unquantized values.
  const int64_t row = kKvHeads * kHeadDim, batch = lengths.size();
  std::vector<int64_t> seqs(batch);
  std::vector<std::vector<float>> keys(batch), values(batch);
  for (int64_t &s : seqs)
    checkStatus(attnrt_cache_seq_create(pool, &s));
  for (int64_t done = 0, chunk = 23;; done += chunk) {
    bool any = false;
    for (int64_t b = 0; b < batch; ++b) {
      int64_t n = std::min(chunk, lengths[b] - done);
      if (n <= 0)
        continue;
      any = true;
      std::vector<int32_t> slots(n);
      checkStatus(attnrt_cache_seq_append(pool, seqs[b], n, slots.data()));
      std::vector<float> kn = randomVector(rng, n * row, 1);
      std::vector<float> vn = randomVector(rng, n * row, 1);
      keys[b].insert(keys[b].end(), kn.begin(), kn.end());
      values[b].insert(values[b].end(), vn.begin(), vn.end());
      buffers["k_new"] = {kn.data(), ATTNRT_DTYPE_F32, {n, kKvHeads, kHeadDim}};
      buffers["v_new"] = {vn.data(), ATTNRT_DTYPE_F32, {n, kKvHeads, kHeadDim}};
      buffers["slot_mapping"] = {slots.data(), ATTNRT_DTYPE_I32, {n}};
      m.run(append, bind(append, buffers));
    }
    if (!any)
      break;
  }

  int64_t refs = 0;
  checkStatus(attnrt_cache_page_table_size(pool, seqs.data(),
                                           static_cast<int>(batch), &refs));
  std::vector<int32_t> indptr(batch + 1), indices(refs), lastLen(batch);
  checkStatus(attnrt_cache_page_table(pool, seqs.data(),
                                      static_cast<int>(batch), indptr.data(),
                                      indices.data(), refs, lastLen.data()));
  std::vector<float> q = randomVector(rng, batch * kQHeads * kHeadDim, 3);
  std::vector<float> o(q.size(), NAN), lse(kQHeads * batch, NAN);
  buffers["q"] = {q.data(), ATTNRT_DTYPE_F32, {batch, kQHeads, kHeadDim}};
  buffers["kv_indptr"] = {indptr.data(), ATTNRT_DTYPE_I32, {batch + 1}};
  buffers["kv_indices"] = {indices.data(), ATTNRT_DTYPE_I32, {refs}};
  buffers["kv_last_page_len"] = {lastLen.data(), ATTNRT_DTYPE_I32, {batch}};
  buffers["o"] = {o.data(), ATTNRT_DTYPE_F32, {batch, kQHeads, kHeadDim}};
  buffers["lse"] = {lse.data(), ATTNRT_DTYPE_F32, {kQHeads, batch}};
  m.run(decode, bind(decode, buffers));

  // Reference 1: the cache as stored, dequantized (x = scale * q; K scales
  // f16 [P, S / k_group, H, D], V scales f16 [P, S, H]): the kernel's
  // arithmetic must match float64 to the f32 tolerance.
  const auto *kPages =
      static_cast<const int8_t *>(buffers["cache_k_pages"].data);
  const auto *vPages =
      static_cast<const int8_t *>(buffers["cache_v_pages"].data);
  const auto *kScales =
      static_cast<const uint16_t *>(buffers["cache_k_scale"].data);
  const auto *vScales =
      static_cast<const uint16_t *>(buffers["cache_v_scale"].data);
  std::vector<double> refO(o.size()), refLse(lse.size()), rawO(o.size()),
      rawLse(lse.size());
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < kQHeads; ++h) {
      int64_t kvh = h / (kQHeads / kKvHeads);
      auto slot = [&](int64_t j) { // page * S + offset of token j
        return int64_t(indices[indptr[b] + j / kPageSize]) * kPageSize +
               j % kPageSize;
      };
      auto key = [&](int64_t j, int64_t c) {
        int64_t p = slot(j) / kPageSize, off = slot(j) % kPageSize;
        double s = halfToDouble(
            kScales[((p * (kPageSize / kKGroup) + off / kKGroup) * kKvHeads +
                     kvh) *
                        kHeadDim +
                    c]);
        return s * kPages[(slot(j) * kKvHeads + kvh) * kHeadDim + c];
      };
      auto value = [&](int64_t j, int64_t c) {
        double s = halfToDouble(vScales[slot(j) * kKvHeads + kvh]);
        return s * vPages[(slot(j) * kKvHeads + kvh) * kHeadDim + c];
      };
      const float *qr = &q[(b * kQHeads + h) * kHeadDim];
      // One query per sequence, causal bottom-right: every key is visible.
      refLse[h * batch + b] = attendPrefix(qr, lengths[b], key, value,
                                           &refO[(b * kQHeads + h) * kHeadDim]);
      // Reference 2: the values before quantization.
      auto raw = [&](const std::vector<float> &x) {
        return [&x, kvh](int64_t j, int64_t c) {
          return double(x[(j * kKvHeads + kvh) * kHeadDim + c]);
        };
      };
      rawLse[h * batch + b] =
          attendPrefix(qr, lengths[b], raw(keys[b]), raw(values[b]),
                       &rawO[(b * kQHeads + h) * kHeadDim]);
    }
  std::string sizes;
  for (int64_t n : lengths)
    sizes += (sizes.empty() ? "" : ",") + std::to_string(n);
  bool ok = check("kv_decode seqlens=" + sizes + " (dequantized cache)", o,
                  refO, lse, refLse, kOTol, kLseTol);
  ok &= check("kv_decode seqlens=" + sizes + " (unquantized K/V)", o, rawO, lse,
              rawLse, kI8OBound + kOTol, kI8LseBound + kLseTol);
  checkStatus(attnrt_cache_pool_check(pool));
  return ok;
}

} // namespace

int main(int argc, char **argv) {
  uint64_t seed =
      argc > 1 ? std::strtoull(argv[1], nullptr, 10) : std::random_device{}();
  std::printf("aot-consumer: seed %llu (rerun: aot-consumer %llu)\n",
              (unsigned long long)seed, (unsigned long long)seed);
  std::mt19937_64 rng(seed);
  try {
    // The kernels are in this program: no file is opened.
    attnrt::Module prefill = attnrt::Module::embedded(
        attnc_gqa_prefill_manifest, attnc_gqa_prefill_symbol);
    attnrt::Module paged = attnrt::Module::embedded(attnc_paged_i8_manifest,
                                                    attnc_paged_i8_symbol);
    bool ok = runPrefill(prefill, rng, 2, 37, 53);
    ok &= runPrefill(prefill, rng, 3, 19, 7); // rows without keys
    ok &= runPrefill(prefill, rng, 1, 1, 101);
    ok &= runPagedDecode(paged, rng, {37, 1, 100});
    std::printf("aot-consumer: %s\n", ok ? "all checks passed" : "FAILED");
    return ok ? 0 : 1;
  } catch (const attnrt::Error &e) {
    std::fprintf(stderr, "aot-consumer: error: %s\n", e.what());
    return 2;
  }
}
