//===- attn-run.cpp - run, check and time attnc kernels -------------------===//
//
// A thin client of attnrt: loads .npy inputs (or makes random ones), runs one
// kernel on the CPU (attnrt.h) or a GPU (attnrt_cuda.h), writes .npy outputs,
// compares against the float64 reference from Reference.h and times repeated
// runs. See docs/runtime.md.
//
//===----------------------------------------------------------------------===//

#include "Npy.h"
#include "Reference.h"

#include "attnrt/attnrt.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <thread>

using namespace attnrun;

namespace {

const char *usageText =
    "usage: attn-run DIR [--kernel NAME] [--in ARG=FILE.npy ...]\n"
    "                [--out ARG=FILE.npy ...] [--random SEED]\n"
    "                [--size SYM=N ...] [--seqlens-q L0,L1,..]\n"
    "                [--seqlens-k L0,L1,..] [--block-density D]\n"
    "                [--check] [--stats] [--bench N] [--threads T] [--list]\n"
    "                [--device gpu|cpu|auto]\n"
    "  DIR           artifact directory written by attnc (--target=host, or\n"
    "                --target=sm_XY for the GPU)\n"
    "  --kernel      kernel to run (optional when DIR has one kernel)\n"
    "  --in/--out    .npy file per argument (bf16 as <u2 bits or "
    "ml_dtypes.bfloat16)\n"
    "  --random      random inputs (uniform [-1,1)) for inputs without --in\n"
    "  --size        value of a shape symbol, e.g. --size seqlen_q=7\n"
    "  --seqlens-*   ragged kernels: per-sequence lengths; build cu_seqlens\n"
    "  --block-density  block-sparse kernels with --random: fraction of the\n"
    "                KV blocks each query block lists (default 0.5)\n"
    "  --check       compare outputs with the float64 reference (exit 3 on "
    "FAIL)\n"
    "  --stats       kernels compiled with attnc --count-tiles: tiles run vs\n"
    "                the visible and dense tiles (exit 3 when run != "
    "visible)\n"
    "  --bench       2 warm-up runs, then N timed runs\n"
    "  --threads     CPU worker threads (default: hardware threads)\n"
    "  --device      where to run: gpu (CUDA artifacts), cpu (host\n"
    "                artifacts) or auto (default: the artifact's target)\n"
    "  --list        print every kernel (kind, phases, arguments, scratch,\n"
    "                kv_cache), then exit\n"
    "Options take their value as the next argument or after '=' (--bench=5).\n"
    "attn-run runs kernels of kind attention; call the others through\n"
    "test/e2e/attnrt_ctypes.py\n";

struct Options {
  std::string dir;
  std::string kernel;
  std::vector<std::pair<std::string, std::string>> inputs, outputs;
  std::optional<uint64_t> seed;
  std::map<std::string, int64_t> sizes;
  std::optional<std::vector<int64_t>> seqlensQ, seqlensK;
  double blockDensity = 0.5;
  bool check = false;
  bool stats = false;
  bool list = false;
  int bench = 0;
  int threads = 0;
  bool threadsGiven = false;
  std::string device = "auto"; // gpu | cpu | auto
};

int64_t parseInt(const std::string &text, const std::string &what) {
  char *end = nullptr;
  errno = 0;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end || errno || v < 0)
    throw UsageError(what + ": '" + text + "' is not a non-negative integer");
  return v;
}

std::pair<std::string, std::string> splitAssign(const std::string &text,
                                                const std::string &flag) {
  size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size())
    throw UsageError(flag + " expects NAME=VALUE, got '" + text + "'");
  return {text.substr(0, eq), text.substr(eq + 1)};
}

std::vector<int64_t> parseList(const std::string &text,
                               const std::string &flag) {
  std::vector<int64_t> out;
  size_t start = 0;
  while (true) {
    size_t comma = text.find(',', start);
    out.push_back(parseInt(text.substr(start, comma - start), flag));
    if (comma == std::string::npos)
      return out;
    start = comma + 1;
  }
}

Options parseOptions(int argc, char **argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    // --name=value is --name value.
    std::optional<std::string> attached;
    if (size_t eq = a.find('='); a.rfind("--", 0) == 0 && eq != a.npos) {
      attached = a.substr(eq + 1);
      a.resize(eq);
    }
    auto value = [&]() -> std::string {
      if (attached) {
        std::string v = std::move(*attached);
        attached.reset();
        return v;
      }
      if (i + 1 >= argc)
        throw UsageError(a + " needs a value; see attn-run --help");
      return argv[++i];
    };
    if (a == "--kernel")
      o.kernel = value();
    else if (a == "--in")
      o.inputs.push_back(splitAssign(value(), a));
    else if (a == "--out")
      o.outputs.push_back(splitAssign(value(), a));
    else if (a == "--random")
      o.seed = parseInt(value(), a);
    else if (a == "--size") {
      auto [sym, n] = splitAssign(value(), a);
      o.sizes[sym] = parseInt(n, "--size " + sym);
    } else if (a == "--seqlens-q")
      o.seqlensQ = parseList(value(), a);
    else if (a == "--seqlens-k")
      o.seqlensK = parseList(value(), a);
    else if (a == "--block-density") {
      std::string text = value();
      char *end = nullptr;
      errno = 0;
      o.blockDensity = std::strtod(text.c_str(), &end);
      if (text.empty() || *end || errno || !(o.blockDensity >= 0) ||
          !(o.blockDensity <= 1))
        throw UsageError("--block-density: '" + text +
                         "' is not a number in [0, 1]");
    } else if (a == "--check")
      o.check = true;
    else if (a == "--stats")
      o.stats = true;
    else if (a == "--list")
      o.list = true;
    else if (a == "--bench") {
      o.bench = static_cast<int>(parseInt(value(), a));
      if (o.bench < 1)
        throw UsageError("--bench needs N >= 1");
    } else if (a == "--threads") {
      o.threads = static_cast<int>(parseInt(value(), a));
      o.threadsGiven = true;
    } else if (a == "--device") {
      o.device = value();
      if (o.device != "gpu" && o.device != "cpu" && o.device != "auto")
        throw UsageError("--device: '" + o.device +
                         "' is not gpu, cpu or auto");
    } else if (a.size() > 1 && a[0] == '-')
      throw UsageError("unknown option '" + a + "'; see attn-run --help");
    else if (o.dir.empty())
      o.dir = a;
    else
      throw UsageError("unexpected argument '" + a +
                       "'; only one artifact directory is allowed");
    if (attached)
      throw UsageError(a + " takes no value (got '" + a + "=" + *attached +
                       "')");
  }
  if (o.dir.empty())
    throw UsageError("missing artifact directory; see attn-run --help");
  return o;
}

std::string dimText(const attnrt_dim &d) {
  return d.symbol ? d.symbol : std::to_string(d.value);
}

std::string shapeText(const attnrt_arg_info &a) {
  std::string s = "[";
  for (int i = 0; i < a.rank; ++i)
    s += (i ? ", " : "") + dimText(a.shape[i]);
  return s + "]";
}

/// A gpu.grid entry: 8, seqlen_q, batch*2, ceil(seqlen_q/64).
std::string gridText(const attnrt_gpu_grid_dim &g) {
  if (!g.symbol)
    return std::to_string(g.value);
  std::string s = g.symbol;
  if (g.multiply != 1)
    s += "*" + std::to_string(g.multiply);
  if (g.divide != 1)
    s = "ceil(" + s + "/" + std::to_string(g.divide) + ")";
  return s;
}

/// "dense_f32.ptx (PTX sm_80)" or "x.sm_90.cubin (cubin sm_90)".
std::string imageText(const attnrt_gpu_kernel_info &g) {
  return std::string(g.image) + " (" + (g.image_is_ptx ? "PTX " : "cubin ") +
         g.image_arch + ")";
}

void listGpu(const attnrt::Kernel &k) {
  const attnrt_gpu_kernel_info *g = k.gpu();
  if (!g)
    return;
  std::printf("  gpu: entry=%s image=%s block=[%lld, %lld, %lld] "
              "grid=[%s, %s, %s] smem_bytes=%lld",
              g->entry, imageText(*g).c_str(), (long long)g->block[0],
              (long long)g->block[1], (long long)g->block[2],
              gridText(g->grid[0]).c_str(), gridText(g->grid[1]).c_str(),
              gridText(g->grid[2]).c_str(), (long long)g->smem_bytes);
  if (g->ptxas)
    std::printf(" registers=%lld spill_stores=%lld spill_loads=%lld",
                (long long)g->ptxas->registers,
                (long long)g->ptxas->spill_stores,
                (long long)g->ptxas->spill_loads);
  std::printf("\n");
}

/// attnrt::Module or attnrt::GpuModule.
template <typename ModuleT> void listKernels(const ModuleT &m) {
  for (int i = 0; i < m.numKernels(); ++i) {
    attnrt::Kernel k = m.kernel(i);
    std::printf("%s: kind=%s phases=%d\n", k.name().c_str(), k.kind().c_str(),
                k.numPhases());
    listGpu(k);
    if (const attnrt_attention_info *at = k.attentionOrNull())
      std::printf("  attention: %s %s Hq=%lld Hkv=%lld D=%lld scale=%g "
                  "softcap=%g causal=%d align=%s window=%lld sinks=%lld "
                  "lse=%d\n",
                  at->paged    ? "paged"
                  : at->ragged ? "ragged"
                               : "dense",
                  attnrt_dtype_name(at->dtype), (long long)at->num_q_heads,
                  (long long)at->num_kv_heads, (long long)at->head_dim,
                  at->scale, at->softcap, at->causal,
                  at->bottom_right ? "bottom_right" : "top_left",
                  (long long)at->window, (long long)at->sinks, at->has_lse);
    if (const attnrt_attention_info *at = k.attentionOrNull();
        at && at->num_head_masks > 0) {
      std::printf("  head_masks:");
      for (int64_t h = 0; h < at->num_head_masks; ++h) {
        const attnrt_mask_info &m = at->head_masks[h];
        std::printf(" [causal=%d window=%lld sinks=%lld]", m.causal,
                    (long long)m.window, (long long)m.sinks);
      }
      std::printf("\n");
    }
    if (const attnrt_block_sparse_info *bs =
            attnrt_kernel_block_sparse(k.get()))
      std::printf("  block_sparse: block_q=%lld block_kv=%lld heads=%lld\n",
                  (long long)bs->block_q, (long long)bs->block_kv,
                  (long long)bs->heads);
    if (attnrt_kernel_has_tile_stats(k.get()))
      std::printf("  instrumented: tile_stats\n");
    if (const attnrt_kv_cache_info *kv = k.kvCache()) {
      std::printf("  kv_cache: %s page_size=%lld Hkv=%lld D=%lld layout=%s "
                  "storage=%s k_group=%lld bytes_per_token=%g",
                  kv->name, (long long)kv->page_size,
                  (long long)kv->num_kv_heads, (long long)kv->head_dim,
                  kv->layout, kv->storage, (long long)kv->k_group,
                  kv->bytes_per_token);
      if (kv->residual > 0)
        std::printf(" residual=%lld", (long long)kv->residual);
      std::printf("\n");
    }
    for (int j = 0; j < k.numArgs(); ++j) {
      const attnrt_arg_info &a = k.arg(j);
      std::printf("  %-5s %-16s %-16s %-8s %s\n", attnrt_dir_name(a.dir),
                  a.name, attnrt_role_name(a.role), attnrt_dtype_name(a.dtype),
                  shapeText(a).c_str());
    }
    for (int j = 0; j < k.numScratch(); ++j) {
      const attnrt_arg_info &a = k.scratch(j);
      std::printf("  %-5s %-16s %-16s %-8s %s\n", "-", a.name, "(scratch)",
                  attnrt_dtype_name(a.dtype), shapeText(a).c_str());
    }
  }
}

/// The sequences of a call: dense [B, L, ...] shapes of the query and key,
/// or the ragged cu_seqlens (validated by attnrt before any run; the block-
/// sparse generator reads them before, so they are checked here too).
std::vector<Sequence> sequencesOf(const attnrt::Kernel &k,
                                  const std::vector<HostTensor> &tensors) {
  const attnrt_attention_info &at = k.attention();
  auto find = [&](attnrt_role role) -> const HostTensor * {
    for (int i = 0; i < k.numArgs(); ++i)
      if (k.arg(i).role == role)
        return &tensors[i];
    return nullptr;
  };
  const HostTensor *q = find(ATTNRT_ROLE_QUERY), *key = find(ATTNRT_ROLE_KEY);
  if (!q || !key)
    throw UsageError("kernel '" + k.name() +
                     "' lacks a query or key argument; the manifest is not "
                     "an attention kernel");
  if (!at.ragged) {
    if (q->shape.size() != 4 || key->shape.size() != 4)
      throw UsageError("kernel '" + k.name() +
                       "': dense query and key must be of rank 4");
    return denseSequences(q->shape[0], q->shape[1], key->shape[1]);
  }
  const HostTensor *cq = find(ATTNRT_ROLE_CU_SEQLENS_Q),
                   *ck = find(ATTNRT_ROLE_CU_SEQLENS_K);
  if (!cq || !ck)
    throw UsageError("ragged kernel '" + k.name() +
                     "' lacks cu_seqlens_q/cu_seqlens_k arguments");
  std::vector<int64_t> cuQ, cuK;
  for (int64_t i = 0; i < cq->numel(); ++i)
    cuQ.push_back(static_cast<int64_t>(cq->get(i)));
  for (int64_t i = 0; i < ck->numel(); ++i)
    cuK.push_back(static_cast<int64_t>(ck->get(i)));
  auto valid = [](const std::vector<int64_t> &cu) {
    if (cu.empty() || cu[0] != 0)
      return false;
    for (size_t i = 1; i < cu.size(); ++i)
      if (cu[i] < cu[i - 1])
        return false;
    return true;
  };
  if (!valid(cuQ) || !valid(cuK) || cuQ.size() != cuK.size())
    throw UsageError("kernel '" + k.name() +
                     "': cu_seqlens must start at 0, be non-decreasing and "
                     "have the same length");
  return raggedSequences(cuQ, cuK);
}

/// Builds every argument tensor: loads --in files, binds shape symbols, makes
/// random inputs and NaN-poisoned outputs.
class ArgumentBuilder {
public:
  ArgumentBuilder(const attnrt::Kernel &k, const Options &o)
      : kernel(k), opts(o), tensors(k.numArgs()), given(k.numArgs()) {
    for (const auto &[sym, n] : o.sizes)
      symbols[sym] = {n, "--size " + sym};
  }

  std::vector<HostTensor> build() {
    for (const auto &[name, file] : opts.inputs)
      loadInput(name, file);
    for (const auto &[name, file] : opts.outputs) {
      int i = argIndex(name, "--out");
      if (kernel.arg(i).dir == ATTNRT_DIR_IN)
        throw UsageError("argument '" + name +
                         "' is an input; pass it with --in, not --out");
    }
    bindSeqlens();
    // cu_seqlens first: their absence explains any unknown total_q/total_k.
    // The block-sparse operands last: their sizes follow the sequences.
    for (int pass = 0; pass < 2; ++pass)
      for (int i = 0; i < kernel.numArgs(); ++i)
        if (!given[i] && !isBlockSparse(kernel.arg(i).role) &&
            isCuSeqlens(kernel.arg(i).role) == (pass == 0))
          makeTensor(i);
    makeBlockSparse();
    return std::move(tensors);
  }

private:
  struct Binding {
    int64_t value;
    std::string origin;
  };

  int argIndex(const std::string &name, const char *flag) const {
    std::string names;
    for (int i = 0; i < kernel.numArgs(); ++i) {
      if (name == kernel.arg(i).name)
        return i;
      names += (names.empty() ? "" : ", ") + std::string(kernel.arg(i).name);
    }
    throw UsageError(std::string(flag) + " " + name + ": kernel '" +
                     kernel.name() + "' has no argument '" + name +
                     "'; its arguments are " + names);
  }

  void bind(const std::string &sym, int64_t value, const std::string &origin) {
    auto [it, inserted] = symbols.emplace(sym, Binding{value, origin});
    if (!inserted && it->second.value != value)
      throw UsageError(origin + " gives " + sym + " = " +
                       std::to_string(value) + " but " + it->second.origin +
                       " gives " + std::to_string(it->second.value) +
                       "; make them agree");
  }

  void bindDim(int i, int d, int64_t size, const std::string &origin) {
    const attnrt_dim &dim = kernel.arg(i).shape[d];
    if (dim.symbol)
      bind(dim.symbol_name, size - dim.value, origin);
  }

  void loadInput(const std::string &name, const std::string &file) {
    int i = argIndex(name, "--in");
    const attnrt_arg_info &a = kernel.arg(i);
    if (a.dir == ATTNRT_DIR_OUT)
      throw UsageError("argument '" + name +
                       "' is an output; pass it with --out, not --in");
    if (given[i])
      throw UsageError("argument '" + name + "' is given twice with --in");
    HostTensor t = loadNpy(file, a.dtype, name);
    if (static_cast<int>(t.shape.size()) != a.rank)
      throw UsageError("argument '" + name + "' file " + file + " has rank " +
                       std::to_string(t.shape.size()) +
                       " but the kernel expects " + shapeText(a));
    for (int d = 0; d < a.rank; ++d) {
      if (!a.shape[d].symbol && t.shape[d] != a.shape[d].value)
        throw UsageError("argument '" + name + "' file " + file + " dim " +
                         std::to_string(d) + " is " +
                         std::to_string(t.shape[d]) + " but the kernel " +
                         "expects " + shapeText(a));
      bindDim(i, d, t.shape[d],
              "argument '" + name + "' dim " + std::to_string(d));
    }
    tensors[i] = std::move(t);
    given[i] = true;
  }

  static bool isCuSeqlens(attnrt_role role) {
    return role == ATTNRT_ROLE_CU_SEQLENS_Q || role == ATTNRT_ROLE_CU_SEQLENS_K;
  }

  static bool isBlockSparse(attnrt_role role) {
    return role == ATTNRT_ROLE_BLOCK_OFFSETS ||
           role == ATTNRT_ROLE_BLOCK_INDICES || role == ATTNRT_ROLE_BLOCK_FULL;
  }

  /// The size of dim d of argument i when it is static or its symbol is
  /// bound.
  std::optional<int64_t> knownSize(int i, int d) const {
    const attnrt_dim &dim = kernel.arg(i).shape[d];
    if (!dim.symbol)
      return dim.value;
    auto it = symbols.find(dim.symbol_name);
    if (it == symbols.end())
      return std::nullopt;
    return it->second.value + dim.value;
  }

  /// A random valid BSR (docs/sparsity.md section 2) for the sequences of
  /// the other arguments: each query block of a sequence lists each KV block
  /// with probability --block-density (in random order), about one row in
  /// seven lists none, the last query block lists the sequence's last
  /// (possibly partial) KV block half of the time (density 0: no block at
  /// all), and listed blocks are full with probability 1/2 when the kernel
  /// has block_full. Rows past a
  /// sequence's query blocks list nothing. Sizes: num_q_blocks = the largest
  /// ceil(Lq / BQ) and max_blocks = the entries needed, unless --size/--in
  /// give them (a smaller max_blocks drops the blocks that do not fit).
  void makeBlockSparse() {
    int iOff = roleIndex(ATTNRT_ROLE_BLOCK_OFFSETS),
        iIdx = roleIndex(ATTNRT_ROLE_BLOCK_INDICES),
        iFull = roleIndex(ATTNRT_ROLE_BLOCK_FULL);
    if (iOff < 0 || iIdx < 0)
      return;
    std::vector<int> roles = {iOff, iIdx};
    if (iFull >= 0)
      roles.push_back(iFull);
    std::string names;
    int numGiven = 0;
    for (int i : roles) {
      numGiven += given[i];
      names += (names.empty() ? "" : ", ") + std::string(kernel.arg(i).name);
    }
    if (numGiven == static_cast<int>(roles.size()))
      return;
    if (numGiven)
      throw UsageError("pass all of the block-sparse operands (" + names +
                       ") with --in, or none of them (--random makes them)");
    if (!opts.seed)
      throw UsageError("argument '" + std::string(kernel.arg(iOff).name) +
                       "' has no data; pass --in " + names +
                       " or --random SEED");
    const attnrt_block_sparse_info *info =
        attnrt_kernel_block_sparse(kernel.get());
    if (!info)
      throw UsageError("kernel '" + kernel.name() +
                       "' has block-sparse operands but no block_sparse "
                       "field in its manifest; regenerate the artifact");
    for (int i : roles)
      if (kernel.arg(i).rank != 3)
        throw UsageError("argument '" + std::string(kernel.arg(i).name) +
                         "' is not of rank 3 [batch, heads, n]");
    std::vector<Sequence> seqs = sequencesOf(kernel, tensors);
    const int64_t bq = info->block_q, bk = info->block_kv;
    const int64_t batch = static_cast<int64_t>(seqs.size());
    const int64_t heads = info->heads;
    int64_t needQBlocks = 1;
    for (const Sequence &s : seqs)
      needQBlocks = std::max(needQBlocks, (s.qLen + bq - 1) / bq);
    std::optional<int64_t> rows = knownSize(iOff, 2);
    int64_t numQBlocks = rows ? *rows - 1 : needQBlocks;
    if (numQBlocks < needQBlocks)
      throw UsageError(
          "argument '" + std::string(kernel.arg(iOff).name) + "' has " +
          std::to_string(numQBlocks) + " query blocks but the sequences need " +
          std::to_string(needQBlocks) + " (block_q " + std::to_string(bq) +
          "); drop its --size or make it larger");
    std::optional<int64_t> capacity = knownSize(iIdx, 2);
    if (iFull >= 0 && !capacity)
      capacity = knownSize(iFull, 2);

    std::mt19937_64 rng(*opts.seed * 1000003u + iOff);
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    // entries[b * heads + h]: (block, full) in CSR order; ends: row ends.
    std::vector<std::vector<std::pair<int64_t, bool>>> entries(batch * heads);
    std::vector<std::vector<int64_t>> rowEnds(batch * heads);
    int64_t needed = 0;
    for (int64_t b = 0; b < batch; ++b) {
      int64_t qBlocks = (seqs[b].qLen + bq - 1) / bq;
      int64_t kvBlocks = (seqs[b].kLen + bk - 1) / bk;
      for (int64_t h = 0; h < heads; ++h) {
        auto &list = entries[b * heads + h];
        for (int64_t r = 0; r < numQBlocks; ++r) {
          if (r < qBlocks && kvBlocks > 0 && unit(rng) >= 1.0 / 7) {
            std::vector<int64_t> row;
            for (int64_t c = 0; c < kvBlocks; ++c)
              if (unit(rng) < opts.blockDensity ||
                  (opts.blockDensity > 0 && c == kvBlocks - 1 &&
                   r == qBlocks - 1 && unit(rng) < 0.5))
                row.push_back(c);
            std::shuffle(row.begin(), row.end(), rng);
            for (int64_t c : row) {
              if (capacity && static_cast<int64_t>(list.size()) >= *capacity)
                break;
              list.push_back({c, iFull >= 0 && unit(rng) < 0.5});
            }
          }
          rowEnds[b * heads + h].push_back(list.size());
        }
        needed = std::max<int64_t>(needed, list.size());
      }
    }
    int64_t maxBlocks = capacity ? *capacity : needed;

    auto make = [&](int i, attnrt_dtype dtype, int64_t n) {
      HostTensor t;
      t.dtype = dtype;
      t.shape = {batch, heads, n};
      const attnrt_arg_info &a = kernel.arg(i);
      if (a.dtype != dtype)
        throw UsageError("argument '" + std::string(a.name) + "' is " +
                         attnrt_dtype_name(a.dtype) + ", expected " +
                         attnrt_dtype_name(dtype));
      for (int d = 0; d < 3; ++d) {
        const attnrt_dim &dim = a.shape[d];
        if (!dim.symbol && dim.value != t.shape[d])
          throw UsageError("argument '" + std::string(a.name) + "' " +
                           shapeText(a) + " dim " + std::to_string(d) +
                           " cannot hold " + std::to_string(t.shape[d]) +
                           " (the block-sparse mask made by --random)");
        bindDim(i, d, t.shape[d], "the block-sparse mask made by --random");
      }
      t.allocate();
      tensors[i] = std::move(t);
      given[i] = true;
      return &tensors[i];
    };
    HostTensor *off = make(iOff, ATTNRT_DTYPE_I32, numQBlocks + 1);
    HostTensor *idx = make(iIdx, ATTNRT_DTYPE_I32, maxBlocks);
    HostTensor *full =
        iFull >= 0 ? make(iFull, ATTNRT_DTYPE_I8, maxBlocks) : nullptr;
    for (int64_t bh = 0; bh < batch * heads; ++bh) {
      off->set(bh * (numQBlocks + 1), 0);
      for (int64_t r = 0; r < numQBlocks; ++r)
        off->set(bh * (numQBlocks + 1) + r + 1,
                 static_cast<double>(rowEnds[bh][r]));
      for (int64_t n = 0; n < maxBlocks; ++n) {
        bool listed = n < static_cast<int64_t>(entries[bh].size());
        idx->set(bh * maxBlocks + n,
                 listed ? static_cast<double>(entries[bh][n].first) : -1.0);
        if (full)
          full->set(bh * maxBlocks + n, listed && entries[bh][n].second);
      }
    }
  }

  int roleIndex(attnrt_role role) const {
    for (int i = 0; i < kernel.numArgs(); ++i)
      if (kernel.arg(i).role == role)
        return i;
    return -1;
  }

  /// Ragged: cu_seqlens from --seqlens-q/-k (or --in), and total_q/total_k
  /// from their sums.
  void bindSeqlens() {
    bool ragged = kernel.attention().ragged;
    if (!ragged && (opts.seqlensQ || opts.seqlensK))
      throw UsageError("--seqlens-q/--seqlens-k are for ragged kernels; "
                       "kernel '" +
                       kernel.name() +
                       "' is dense, use --size batch=.. seqlen_q=.. instead");
    if (!ragged)
      return;
    struct Side {
      const std::optional<std::vector<int64_t>> &lens;
      attnrt_role cu, rows;
      const char *flag;
    } sides[] = {{opts.seqlensQ, ATTNRT_ROLE_CU_SEQLENS_Q, ATTNRT_ROLE_QUERY,
                  "--seqlens-q"},
                 {opts.seqlensK, ATTNRT_ROLE_CU_SEQLENS_K, ATTNRT_ROLE_KEY,
                  "--seqlens-k"}};
    for (const Side &s : sides) {
      int cu = roleIndex(s.cu), rows = roleIndex(s.rows);
      if (cu < 0)
        continue;
      if (s.lens) {
        if (given[cu])
          throw UsageError(std::string(s.flag) + " and --in " +
                           kernel.arg(cu).name + " both give " +
                           kernel.arg(cu).name + "; pass only one");
        HostTensor t;
        t.dtype = ATTNRT_DTYPE_I32;
        t.shape = {static_cast<int64_t>(s.lens->size()) + 1};
        t.allocate();
        int64_t sum = 0;
        t.set(0, 0);
        for (size_t b = 0; b < s.lens->size(); ++b) {
          sum += (*s.lens)[b];
          if (sum > std::numeric_limits<int32_t>::max())
            throw UsageError(std::string(s.flag) +
                             ": total length exceeds int32");
          t.set(b + 1, static_cast<double>(sum));
        }
        bindDim(cu, 0, t.shape[0], s.flag);
        tensors[cu] = std::move(t);
        given[cu] = true;
      }
      if (given[cu] && rows >= 0 && kernel.arg(rows).rank > 0) {
        const HostTensor &t = tensors[cu];
        int64_t last =
            t.numel() > 0 ? static_cast<int64_t>(t.get(t.numel() - 1)) : 0;
        bindDim(rows, 0, last,
                std::string("the last entry of ") + kernel.arg(cu).name);
      }
    }
  }

  void makeTensor(int i) {
    const attnrt_arg_info &a = kernel.arg(i);
    if (a.dir != ATTNRT_DIR_OUT && !opts.seed)
      throw UsageError("argument '" + std::string(a.name) +
                       "' has no data; pass --in " + a.name +
                       "=FILE.npy or --random SEED");
    if (isCuSeqlens(a.role))
      throw UsageError(
          "argument '" + std::string(a.name) + "' has no data; pass " +
          (a.role == ATTNRT_ROLE_CU_SEQLENS_Q ? "--seqlens-q" : "--seqlens-k") +
          " L0,L1,.. or --in " + a.name + "=FILE.npy");
    HostTensor t;
    t.dtype = a.dtype;
    for (int d = 0; d < a.rank; ++d) {
      const attnrt_dim &dim = a.shape[d];
      if (!dim.symbol) {
        t.shape.push_back(dim.value);
        continue;
      }
      auto it = symbols.find(dim.symbol_name);
      if (it == symbols.end())
        throw UsageError(
            "argument '" + std::string(a.name) + "' " + shapeText(a) +
            ": symbol '" + dim.symbol_name + "' is unknown; pass --size " +
            dim.symbol_name + "=N" +
            (kernel.attention().ragged ? " (ragged: --seqlens-q/-k)" : ""));
      t.shape.push_back(it->second.value + dim.value);
    }
    t.allocate();
    if (a.dir == ATTNRT_DIR_OUT) {
      for (int64_t e = 0; e < t.numel(); ++e)
        t.set(e, std::numeric_limits<double>::quiet_NaN());
    } else {
      // A per-argument stream, so adding an --in does not change the others.
      std::mt19937_64 rng(*opts.seed * 1000003u + i);
      std::uniform_real_distribution<double> dist(-1.0, 1.0);
      for (int64_t e = 0; e < t.numel(); ++e)
        t.set(e, dist(rng));
    }
    tensors[i] = std::move(t);
  }

  const attnrt::Kernel &kernel;
  const Options &opts;
  std::vector<HostTensor> tensors;
  std::vector<bool> given;
  std::map<std::string, Binding> symbols;
};

std::vector<attnrt_tensor> tensorViews(std::vector<HostTensor> &tensors) {
  std::vector<attnrt_tensor> views;
  for (HostTensor &t : tensors)
    views.push_back({t.data(), t.dtype, static_cast<int>(t.shape.size()),
                     t.shape.data(), nullptr});
  return views;
}

/// The reference's view of a kernel call: spec plus sequences.
struct Problem {
  AttentionSpec spec;
  std::vector<Sequence> seqs;
  bool ragged = false;
};

Problem describe(const attnrt::Kernel &k,
                 const std::vector<HostTensor> &tensors) {
  const attnrt_attention_info &at = k.attention();
  Problem p;
  p.ragged = at.ragged;
  p.spec.numQHeads = at.num_q_heads;
  p.spec.numKvHeads = at.num_kv_heads;
  p.spec.headDim = at.head_dim;
  p.spec.scale = at.scale;
  p.spec.softcap = at.softcap;
  p.spec.mask = {at.causal != 0, at.bottom_right != 0, at.window, at.sinks};
  for (int64_t h = 0; h < at.num_head_masks; ++h) {
    const attnrt_mask_info &m = at.head_masks[h];
    p.spec.headMasks.push_back(
        {m.causal != 0, m.bottom_right != 0, m.window, m.sinks});
  }
  if (!p.spec.headMasks.empty() &&
      static_cast<int64_t>(p.spec.headMasks.size()) != at.num_kv_heads)
    throw UsageError("kernel '" + k.name() + "' has " +
                     std::to_string(p.spec.headMasks.size()) +
                     " head_masks for " + std::to_string(at.num_kv_heads) +
                     " KV heads; regenerate the artifact");
  auto find = [&](attnrt_role role) -> const HostTensor * {
    for (int i = 0; i < k.numArgs(); ++i)
      if (k.arg(i).role == role)
        return &tensors[i];
    return nullptr;
  };
  const HostTensor *q = find(ATTNRT_ROLE_QUERY), *key = find(ATTNRT_ROLE_KEY);
  if (!q || !key || !find(ATTNRT_ROLE_VALUE))
    throw UsageError("kernel '" + k.name() +
                     "' lacks a query, key or value argument; the manifest "
                     "is not an attention kernel");
  size_t rank = at.ragged ? 3 : 4;
  auto checkHeads = [&](const HostTensor &t, int64_t heads, const char *w) {
    if (t.shape.size() != rank || t.shape[rank - 2] != heads ||
        t.shape[rank - 1] != at.head_dim)
      throw UsageError("kernel '" + k.name() + "': the " + w +
                       " shape does not match the manifest's attention "
                       "heads/head_dim; regenerate the artifact");
  };
  checkHeads(*q, at.num_q_heads, "query");
  checkHeads(*key, at.num_kv_heads, "key");
  p.seqs = sequencesOf(k, tensors);
  const HostTensor *off = find(ATTNRT_ROLE_BLOCK_OFFSETS),
                   *idx = find(ATTNRT_ROLE_BLOCK_INDICES),
                   *full = find(ATTNRT_ROLE_BLOCK_FULL);
  if (off && idx) {
    const attnrt_block_sparse_info *info = attnrt_kernel_block_sparse(k.get());
    if (!info)
      throw UsageError("kernel '" + k.name() +
                       "' has block-sparse operands but no block_sparse "
                       "field in its manifest; regenerate the artifact");
    auto bs = std::make_shared<BlockSparse>();
    bs->blockQ = info->block_q;
    bs->blockKv = info->block_kv;
    bs->batch = off->shape[0];
    bs->heads = off->shape[1];
    bs->numQBlocks = off->shape[2] - 1;
    bs->maxBlocks = idx->shape[2];
    if (bs->batch != static_cast<int64_t>(p.seqs.size()) ||
        (bs->heads != 1 && bs->heads != at.num_kv_heads) ||
        idx->shape[0] != bs->batch || idx->shape[1] != bs->heads ||
        bs->numQBlocks < 0)
      throw UsageError("kernel '" + k.name() +
                       "': the block-sparse operands' shapes do not match "
                       "the batch and heads");
    for (int64_t i = 0; i < off->numel(); ++i)
      bs->offsets.push_back(static_cast<int64_t>(off->get(i)));
    for (int64_t i = 0; i < idx->numel(); ++i)
      bs->indices.push_back(static_cast<int64_t>(idx->get(i)));
    if (full)
      for (int64_t i = 0; i < full->numel(); ++i)
        bs->full.push_back(full->get(i) != 0);
    p.spec.blockSparse = std::move(bs);
  }
  return p;
}

/// Compares the outputs with the reference; returns false on any FAIL.
bool check(const attnrt::Kernel &k, const std::vector<HostTensor> &tensors) {
  Problem p = describe(k, tensors);
  std::vector<double> q, key, v;
  int oIdx = -1, lseIdx = -1;
  for (int i = 0; i < k.numArgs(); ++i) {
    switch (k.arg(i).role) {
    case ATTNRT_ROLE_QUERY:
      q = tensors[i].toDouble();
      break;
    case ATTNRT_ROLE_KEY:
      key = tensors[i].toDouble();
      break;
    case ATTNRT_ROLE_VALUE:
      v = tensors[i].toDouble();
      break;
    case ATTNRT_ROLE_OUTPUT:
      oIdx = i;
      break;
    case ATTNRT_ROLE_LSE:
      lseIdx = i;
      break;
    default:
      break;
    }
  }
  if (oIdx < 0)
    throw UsageError("kernel '" + k.name() + "' has no output argument");
  attnrt_dtype dt = tensors[oIdx].dtype;
  std::vector<double> refO(tensors[oIdx].numel());
  std::vector<double> refLse(lseIdx >= 0 ? tensors[lseIdx].numel() : 0);
  referenceAttention(p.spec, p.seqs, p.ragged, q.data(), key.data(), v.data(),
                     refO.data(), lseIdx >= 0 ? refLse.data() : nullptr);

  bool allPass = true;
  auto report = [&](int idx, const std::vector<double> &ref, bool isLse) {
    const HostTensor &t = tensors[idx];
    double maxErr = 0, maxRef = 0;
    int64_t nans = 0, infMismatch = 0;
    for (int64_t e = 0; e < t.numel(); ++e) {
      double out = t.get(e), r = ref[e];
      if (std::isnan(out)) {
        ++nans;
        continue;
      }
      if (std::isinf(r) || std::isinf(out)) {
        // -inf (empty row) must match exactly.
        if (out != r)
          ++infMismatch;
        continue;
      }
      maxErr = std::max(maxErr, std::fabs(out - r));
      maxRef = std::max(maxRef, std::fabs(r));
    }
    double rel = maxErr / std::max(maxRef, 1e-30);
    double tol = isLse ? (dt == ATTNRT_DTYPE_F32 ? 1e-5 : 1e-3)
                       : (dt == ATTNRT_DTYPE_F32   ? 1e-5
                          : dt == ATTNRT_DTYPE_F16 ? 1e-2
                                                   : 2e-2);
    bool pass = nans == 0 && infMismatch == 0 && (isLse ? maxErr : rel) <= tol;
    allPass &= pass;
    std::printf("%s: max_abs_err=%.3e max_rel_err=%.3e tolerance=%.0e (%s)",
                k.arg(idx).name, maxErr, rel, tol, isLse ? "abs" : "rel");
    if (nans)
      std::printf(" nan=%lld", static_cast<long long>(nans));
    if (infMismatch)
      std::printf(" inf_mismatch=%lld", static_cast<long long>(infMismatch));
    std::printf(" %s\n", pass ? "PASS" : "FAIL");
  };
  report(oIdx, refO, false);
  if (lseIdx >= 0)
    report(lseIdx, refLse, true);
  return allPass;
}

/// Prints the timing lines of --bench from per-run milliseconds. `where`
/// ends the human line ("8 threads", "gpu sm_90") and `key` the BENCH line
/// ("threads=8", "device=gpu").
void reportBench(const attnrt::Kernel &k,
                 const std::vector<HostTensor> &tensors, std::vector<double> ms,
                 const std::string &where, const std::string &key) {
  std::sort(ms.begin(), ms.end());
  double median = ms.size() % 2
                      ? ms[ms.size() / 2]
                      : 0.5 * (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]);
  Problem p = describe(k, tensors);
  double flops = 4.0 * p.spec.headDim *
                 static_cast<double>(countVisiblePairs(p.spec, p.seqs));
  double bytes = 0;
  for (const HostTensor &t : tensors)
    bytes += static_cast<double>(t.numel() * t.itemSize());
  double sec = median * 1e-3;
  double gflops = sec > 0 ? flops / sec * 1e-9 : 0;
  double gbs = sec > 0 ? bytes / sec * 1e-9 : 0;
  std::printf("bench: %zu runs, median %.4f ms, min %.4f ms, %.2f GFLOP/s, "
              "%.2f GB/s, %s\n",
              ms.size(), median, ms.front(), gflops, gbs, where.c_str());
  std::printf("BENCH kernel=%s median_ms=%.6f min_ms=%.6f gflops=%.4f "
              "gbs=%.4f %s\n",
              k.name().c_str(), median, ms.front(), gflops, gbs, key.c_str());
}

void bench(attnrt::Module &m, const attnrt::Kernel &k,
           std::vector<HostTensor> &tensors, int runs, int threads) {
  std::vector<attnrt_tensor> views = tensorViews(tensors);
  for (int i = 0; i < 2; ++i)
    m.run(k, views, threads);
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    m.run(k, views, threads);
    auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  int effective =
      threads
          ? threads
          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  reportBench(k, tensors, ms, std::to_string(effective) + " threads",
              "threads=" + std::to_string(effective));
}

/// The arguments' copies in device memory (inputs and the NaN-poisoned
/// outputs, so elements a kernel fails to write stay NaN).
class DeviceTensors {
public:
  DeviceTensors(attnrt::GpuModule &m, std::vector<HostTensor> &tensors) {
    buffers.reserve(tensors.size());
    for (HostTensor &t : tensors) {
      buffers.emplace_back(m, t.bytes.size());
      buffers.back().copyFrom(t.data(), t.bytes.size());
      views.push_back({buffers.back().data(), t.dtype,
                       static_cast<int>(t.shape.size()), t.shape.data(),
                       nullptr});
    }
  }
  const std::vector<attnrt_tensor> &args() const { return views; }
  /// Copies what the kernel writes (out, inout) back to the host.
  void copyBack(const attnrt::Kernel &k, std::vector<HostTensor> &tensors) {
    for (size_t i = 0; i < tensors.size(); ++i)
      if (k.arg(static_cast<int>(i)).dir != ATTNRT_DIR_IN)
        buffers[i].copyTo(tensors[i].data(), tensors[i].bytes.size());
  }

private:
  std::vector<attnrt::DeviceBuffer> buffers;
  std::vector<attnrt_tensor> views;
};

/// CUDA-event times of `runs` launches after 2 warm-up launches.
void benchGpu(attnrt::GpuModule &m, const attnrt::Kernel &k,
              const std::vector<HostTensor> &tensors,
              const DeviceTensors &device, int runs) {
  for (int i = 0; i < 2; ++i)
    m.run(k, device.args());
  m.synchronize();
  std::vector<float> times = m.timeRuns(k, device.args(), runs);
  reportBench(k, tensors, std::vector<double>(times.begin(), times.end()),
              std::string("gpu ") + m.device().arch, "device=gpu");
}

/// --stats: the kernel's tile counters after one run next to the visible
/// and dense tiles of its tiling; returns false when run != visible.
bool reportStats(const attnrt::Kernel &k,
                 const std::vector<HostTensor> &tensors,
                 const int64_t counters[3]) {
  const attnrt_attention_info &at = k.attention();
  if (at.block_q < 1 || at.block_kv < 1)
    throw UsageError("kernel '" + k.name() +
                     "': the manifest gives no tile sizes (tile.block_q, "
                     "tile.block_kv); regenerate the artifact");
  Problem p = describe(k, tensors);
  TileCounts tc = countTiles(p.spec, p.seqs, at.block_q, at.block_kv);
  bool pass = counters[0] == tc.visible;
  std::printf(
      "tiles: run=%lld predicated=%lld work_items=%lld visible=%lld "
      "dense=%lld (tile %lldx%lld, visible/dense %.1f%%) %s\n",
      (long long)counters[0], (long long)counters[1], (long long)counters[2],
      (long long)tc.visible, (long long)tc.dense, (long long)at.block_q,
      (long long)at.block_kv, tc.dense ? 100.0 * tc.visible / tc.dense : 100.0,
      pass ? "PASS" : "FAIL");
  std::printf("STATS kernel=%s tiles_run=%lld tiles_predicated=%lld "
              "work_items=%lld visible_tiles=%lld dense_tiles=%lld\n",
              k.name().c_str(), (long long)counters[0], (long long)counters[1],
              (long long)counters[2], (long long)tc.visible,
              (long long)tc.dense);
  return pass;
}

/// --device: true for the GPU. auto follows the artifact's target; an
/// explicit device must match it.
bool useGpu(const Options &opts) {
  const char *target = nullptr;
  attnrt::check(attnrt_artifact_target(opts.dir.c_str(), &target));
  bool cuda = std::string(target) == "cuda";
  if (opts.device == "gpu" && !cuda)
    throw UsageError(opts.dir +
                     " is a host artifact (target 'host'); run it with "
                     "--device=cpu or --device=auto, or compile it for the "
                     "GPU with attnc --target=sm_XY");
  if (opts.device == "cpu" && cuda)
    throw UsageError(opts.dir +
                     " is a CUDA artifact (target 'cuda'); run it with "
                     "--device=gpu or --device=auto, or compile it for the "
                     "CPU with attnc --target=host");
  if (cuda && opts.threadsGiven)
    throw UsageError("--threads sets the CPU path's threads; drop it with "
                     "--device=gpu");
  if (cuda && opts.stats)
    throw UsageError("--stats reads the tile counters of host kernels (attnc "
                     "--count-tiles); it is not available with --device=gpu");
  return cuda;
}

/// The kernel --kernel names, or the only one.
template <typename ModuleT>
attnrt::Kernel pickKernel(const ModuleT &module, const Options &opts) {
  if (opts.kernel.empty() && module.numKernels() != 1) {
    std::string names;
    for (int i = 0; i < module.numKernels(); ++i)
      names += (names.empty() ? "" : ", ") + module.kernel(i).name();
    throw UsageError(opts.dir + " has " + std::to_string(module.numKernels()) +
                     " kernels; pick one with --kernel NAME (" + names + ")");
  }
  attnrt::Kernel kernel =
      opts.kernel.empty() ? module.kernel(0) : module.kernel(opts.kernel);
  if (kernel.kind() != "attention")
    throw UsageError("kernel " + kernel.name() + " is a " + kernel.kind() +
                     " kernel; attn-run runs attention kernels; use the "
                     "Python wrapper test/e2e/attnrt_ctypes.py");
  return kernel;
}

void saveOutputs(const Options &opts, const attnrt::Kernel &kernel,
                 const std::vector<HostTensor> &tensors) {
  for (const auto &[name, file] : opts.outputs)
    for (int i = 0; i < kernel.numArgs(); ++i)
      if (name == kernel.arg(i).name)
        saveNpy(file, tensors[i], name);
}

/// --device=gpu: device copies of the arguments, one launch, the outputs
/// back, then --check and --bench as on the CPU.
int runGpu(const Options &opts) {
  attnrt::GpuModule module(opts.dir);
  if (opts.list) {
    attnrt_gpu_device_info dev = module.device();
    std::printf("device: %s (%s), driver %d\n", dev.name, dev.arch,
                dev.driver_version);
    listKernels(module);
    return 0;
  }
  attnrt::Kernel kernel = pickKernel(module, opts);
  std::vector<HostTensor> tensors = ArgumentBuilder(kernel, opts).build();
  std::vector<attnrt_tensor> views = tensorViews(tensors);
  attnrt_gpu_launch launch;
  attnrt::check(attnrt_gpu_launch_config(
      kernel.get(), views.data(), static_cast<int>(views.size()), &launch));
  const attnrt_gpu_kernel_info &g = *kernel.gpu();
  attnrt_gpu_device_info dev = module.device();
  std::printf("device: %s (%s), %s: %s, grid %ux%ux%u, block %ux%ux%u, %u "
              "bytes of shared memory\n",
              dev.name, dev.arch, kernel.name().c_str(), imageText(g).c_str(),
              launch.grid[0], launch.grid[1], launch.grid[2], launch.block[0],
              launch.block[1], launch.block[2], launch.smem_bytes);
  DeviceTensors device(module, tensors);
  module.run(kernel, device.args());
  module.synchronize();
  device.copyBack(kernel, tensors);
  saveOutputs(opts, kernel, tensors);
  bool pass = !opts.check || check(kernel, tensors);
  if (opts.bench)
    benchGpu(module, kernel, tensors, device, opts.bench);
  return pass ? 0 : 3;
}

int run(int argc, char **argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      std::fputs(usageText, stdout);
      return 0;
    }
  Options opts = parseOptions(argc, argv);
  if (useGpu(opts))
    return runGpu(opts);
  attnrt::Module module(opts.dir, opts.threads);
  if (opts.list) {
    listKernels(module);
    return 0;
  }
  attnrt::Kernel kernel = pickKernel(module, opts);
  if (opts.stats && !attnrt_kernel_has_tile_stats(kernel.get()))
    throw UsageError("kernel '" + kernel.name() +
                     "' has no tile counters; compile it with attnc "
                     "--count-tiles for --stats");
  std::vector<HostTensor> tensors = ArgumentBuilder(kernel, opts).build();
  int64_t counters[3] = {0, 0, 0};
  if (opts.stats)
    attnrt::check(attnrt_kernel_reset_tile_stats(kernel.get()));
  module.run(kernel, tensorViews(tensors), opts.threads);
  if (opts.stats)
    attnrt::check(attnrt_kernel_tile_stats(kernel.get(), counters));
  saveOutputs(opts, kernel, tensors);
  bool pass = !opts.check || check(kernel, tensors);
  if (opts.stats)
    pass &= reportStats(kernel, tensors, counters);
  if (opts.bench)
    bench(module, kernel, tensors, opts.bench, opts.threads);
  return pass ? 0 : 3;
}

} // namespace

int main(int argc, char **argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception &e) {
    // UsageError and attnrt::Error are both one-line, user-facing messages.
    std::fprintf(stderr, "attn-run: error: %s\n", e.what());
    return 1;
  }
}
