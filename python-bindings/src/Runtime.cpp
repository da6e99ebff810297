//===- Runtime.cpp - attnrt for Python: modules, kernels, page pools ------===//
//
// Module/Kernel over attnrt.h, CachePool over attnrt_cache.h and Step over
// attnrt_step.h. Tensors
// cross as nanobind ndarrays (NumPy arrays or any DLPack producer) without a
// copy; attnrt validates them against the manifest and runs the kernel while
// the GIL is released. Manifest information is copied into plain structs so
// that it outlives nothing it points into.
//
//===----------------------------------------------------------------------===//

#include "Ext.h"

#include "attnrt/attnrt_cache.h"
#include "attnrt/attnrt_step.h"

#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include <memory>
#include <optional>
#include <variant>

namespace attnc_py {

namespace {

//===----------------------------------------------------------------------===//
// Manifest information
//===----------------------------------------------------------------------===//

struct Dim {
  std::optional<std::string> symbol; // "batch+1"; None when static
  std::optional<std::string> name;   // "batch"
  int64_t value = 0;                 // static size, or the symbol's offset
};

struct ArgInfo {
  std::string name, role, dir, dtype;
  int dtypeCode = 0;
  std::vector<Dim> dims;

  std::vector<std::variant<int64_t, std::string>> shape() const {
    std::vector<std::variant<int64_t, std::string>> s;
    for (const Dim &d : dims)
      if (d.symbol)
        s.emplace_back(*d.symbol);
      else
        s.emplace_back(d.value);
    return s;
  }
};

ArgInfo toArgInfo(const attnrt_arg_info &a) {
  ArgInfo info{a.name,
               attnrt_role_name(a.role),
               attnrt_dir_name(a.dir),
               attnrt_dtype_name(a.dtype),
               static_cast<int>(a.dtype),
               {}};
  for (int i = 0; i < a.rank; ++i) {
    Dim d;
    if (a.shape[i].symbol) {
      d.symbol = a.shape[i].symbol;
      d.name = a.shape[i].symbol_name;
    }
    d.value = a.shape[i].value;
    info.dims.push_back(std::move(d));
  }
  return info;
}

struct MaskInfo {
  bool causal = false;
  std::string align;
  int64_t window = -1, sinks = 0;
};

MaskInfo toMask(int causal, int bottomRight, int64_t window, int64_t sinks) {
  return {causal != 0, bottomRight ? "bottom_right" : "top_left", window,
          sinks};
}

struct AttentionInfo {
  std::string layout, dtype;
  int64_t numQHeads, numKVHeads, headDim;
  double scale, softcap;
  MaskInfo mask;
  std::vector<MaskInfo> headMasks;
  bool hasLse;
  int64_t blockQ, blockKV, vectorWidth, workspaceBytes;
};

struct KVCacheInfo {
  std::string name, layout, storage;
  int64_t pageSize, numKVHeads, headDim, kGroup, residual;
  double bytesPerToken;
};

struct BlockSparseInfo {
  int64_t blockQ, blockKV, heads;
};

struct SelectPagesInfo {
  int64_t topK, sinkPages, recentPages;
};

//===----------------------------------------------------------------------===//
// Modules and kernels
//===----------------------------------------------------------------------===//

/// Owns the attnrt module; kernels keep it alive.
struct ModuleState {
  attnrt_module *handle = nullptr;
  std::string directory;
  ~ModuleState() { attnrt_close(handle); }
};

/// DLPack element type -> attnrt dtype (-1: none).
int attnrtDtypeOf(nb::dlpack::dtype t) {
  using Code = nb::dlpack::dtype_code;
  if (t.lanes != 1)
    return -1;
  auto is = [&](Code code, int bits) {
    return t.code == static_cast<uint8_t>(code) && t.bits == bits;
  };
  if (is(Code::Float, 32))
    return ATTNRT_DTYPE_F32;
  if (is(Code::Float, 16))
    return ATTNRT_DTYPE_F16;
  if (is(Code::Bfloat, 16))
    return ATTNRT_DTYPE_BF16;
  if (is(Code::Int, 32))
    return ATTNRT_DTYPE_I32;
  if (is(Code::Int, 8))
    return ATTNRT_DTYPE_I8;
  if (is(Code::UInt, 8))
    return ATTNRT_DTYPE_U8;
  if (is(Code::Float8_E4M3FN, 8))
    return ATTNRT_DTYPE_F8E4M3FN;
  if (is(Code::Float8_E5M2, 8))
    return ATTNRT_DTYPE_F8E5M2;
  return -1;
}

std::string dlpackDtypeName(nb::dlpack::dtype t) {
  using Code = nb::dlpack::dtype_code;
  const char *base = "";
  switch (static_cast<Code>(t.code)) {
  case Code::Int:
    base = "int";
    break;
  case Code::UInt:
    base = "uint";
    break;
  case Code::Float:
    base = "float";
    break;
  case Code::Bfloat:
    base = "bfloat";
    break;
  case Code::Complex:
    base = "complex";
    break;
  case Code::Bool:
    return "bool";
  default:
    return "DLPack type code " + std::to_string(t.code) + " (" +
           std::to_string(t.bits) + " bits)";
  }
  std::string s = base + std::to_string(t.bits);
  if (t.lanes != 1)
    s += "x" + std::to_string(t.lanes);
  return s;
}

const char *deviceName(int type) {
  switch (type) {
  case 2:
    return "a CUDA GPU";
  case 4:
    return "an OpenCL device";
  case 7:
    return "a Vulkan device";
  case 8:
    return "a Metal device";
  case 10:
    return "a ROCm GPU";
  case 13:
    return "CUDA managed memory";
  case 14:
    return "a oneAPI device";
  }
  return "a non-CPU device";
}

/// Raises for an argument nanobind could not view as a tensor. NumPy arrays
/// of a foreign byte order, of an element type DLPack lacks (object, str) or
/// with strides that are not whole elements are among them: they are arrays
/// all the same, and the error says what is wrong with them.
[[noreturn]] void raiseUnreadable(const std::string &where, nb::handle obj,
                                  const attnrt_arg_info *info) {
  std::string type = Py_TYPE(obj.ptr())->tp_name;
  nb::object dtype = nb::getattr(obj, "dtype", nb::none());
  nb::object strides = nb::getattr(obj, "strides", nb::none());
  nb::object itemsize = nb::getattr(dtype, "itemsize", nb::none());
  if (dtype.is_none() || !nb::isinstance<nb::tuple>(strides) ||
      !nb::isinstance<nb::int_>(itemsize))
    raise(PyExc_TypeError,
          where +
              ": expected an array (a NumPy array or a DLPack tensor), got " +
              type);
  std::string expects = info ? std::string(" but the kernel expects ") +
                                   attnrt_dtype_name(info->dtype)
                             : std::string();
  std::string dtypeText = nb::str(dtype).c_str();
  nb::object isNative = nb::getattr(dtype, "isnative", nb::none());
  if (!isNative.is_none() && PyObject_IsTrue(isNative.ptr()) == 0)
    raiseAttnrt(ATTNRT_ERR_VALIDATION, where + ": dtype is " + dtypeText +
                                           " (byte order not the machine's)" +
                                           expects + "; convert the tensor");
  int64_t size = nb::cast<int64_t>(itemsize);
  for (nb::handle stride : nb::borrow<nb::tuple>(strides))
    if (size > 0 && nb::isinstance<nb::int_>(stride) &&
        nb::cast<int64_t>(stride) % size != 0)
      raiseAttnrt(ATTNRT_ERR_VALIDATION,
                  where + ": strides " + nb::str(strides).c_str() +
                      " (bytes) are not whole " + dtypeText +
                      " elements; the kernel needs contiguous tensors, make "
                      "a contiguous copy");
  raiseAttnrt(
      ATTNRT_ERR_VALIDATION,
      where + ": dtype is " + dtypeText +
          (expects.empty() ? ", which attnrt has no type for" : expects) +
          "; convert the tensor");
}

class Kernel {
public:
  Kernel(std::shared_ptr<ModuleState> module, const attnrt_kernel *kernel)
      : module(std::move(module)), kernel(kernel) {}

  std::string name() const { return attnrt_kernel_name(kernel); }
  std::string kind() const { return attnrt_kernel_kind(kernel); }
  int numPhases() const { return attnrt_kernel_num_phases(kernel); }

  std::vector<ArgInfo> args() const {
    std::vector<ArgInfo> out;
    for (int i = 0, e = attnrt_kernel_num_args(kernel); i < e; ++i)
      out.push_back(toArgInfo(*attnrt_kernel_arg(kernel, i)));
    return out;
  }

  std::vector<ArgInfo> scratch() const {
    std::vector<ArgInfo> out;
    for (int i = 0, e = attnrt_kernel_num_scratch(kernel); i < e; ++i)
      out.push_back(toArgInfo(*attnrt_kernel_scratch(kernel, i)));
    return out;
  }

  std::optional<AttentionInfo> attention() const {
    const attnrt_attention_info *a = attnrt_kernel_attention(kernel);
    if (!a)
      return std::nullopt;
    AttentionInfo info{a->paged    ? "paged"
                       : a->ragged ? "ragged"
                                   : "dense",
                       attnrt_dtype_name(a->dtype),
                       a->num_q_heads,
                       a->num_kv_heads,
                       a->head_dim,
                       a->scale,
                       a->softcap,
                       toMask(a->causal, a->bottom_right, a->window, a->sinks),
                       {},
                       a->has_lse != 0,
                       a->block_q,
                       a->block_kv,
                       a->vector_width,
                       a->workspace_bytes};
    for (int64_t h = 0; h < a->num_head_masks; ++h) {
      const attnrt_mask_info &m = a->head_masks[h];
      info.headMasks.push_back(
          toMask(m.causal, m.bottom_right, m.window, m.sinks));
    }
    return info;
  }

  std::optional<KVCacheInfo> kvCache() const {
    const attnrt_kv_cache_info *c = attnrt_kernel_kv_cache(kernel);
    if (!c)
      return std::nullopt;
    return KVCacheInfo{c->name,      c->layout,       c->storage,
                       c->page_size, c->num_kv_heads, c->head_dim,
                       c->k_group,   c->residual,     c->bytes_per_token};
  }

  std::optional<BlockSparseInfo> blockSparse() const {
    const attnrt_block_sparse_info *b = attnrt_kernel_block_sparse(kernel);
    if (!b)
      return std::nullopt;
    return BlockSparseInfo{b->block_q, b->block_kv, b->heads};
  }

  std::optional<SelectPagesInfo> selectPages() const {
    const attnrt_select_pages_info *s = attnrt_kernel_select_pages(kernel);
    if (!s)
      return std::nullopt;
    return SelectPagesInfo{s->top_k, s->sink_pages, s->recent_pages};
  }

  bool hasTileStats() const {
    return attnrt_kernel_has_tile_stats(kernel) != 0;
  }

  std::tuple<int64_t, int64_t, int64_t> tileStats() const {
    int64_t out[3];
    check(attnrt_kernel_tile_stats(kernel, out));
    return {out[0], out[1], out[2]};
  }

  void resetTileStats() const { check(attnrt_kernel_reset_tile_stats(kernel)); }

  /// Runs (or only validates) on `args` in manifest order. dtypes[i] >= 0
  /// overrides the element type of args[i] (NumPy arrays of ml_dtypes types
  /// arrive as same-sized integer views).
  void run(const std::vector<nb::object> &args, const std::vector<int> &dtypes,
           int numThreads, bool validateOnly) const;

  const attnrt_kernel *handle() const { return kernel; }

private:
  std::shared_ptr<ModuleState> module;
  const attnrt_kernel *kernel;
};

void Kernel::run(const std::vector<nb::object> &args,
                 const std::vector<int> &dtypes, int numThreads,
                 bool validateOnly) const {
  if (!dtypes.empty() && dtypes.size() != args.size())
    throw nb::value_error("dtypes must be empty or have one entry per "
                          "argument");
  int numArgs = attnrt_kernel_num_args(kernel);
  size_t n = args.size();
  std::vector<nb::ndarray<nb::ro>> readOnly(n);
  std::vector<nb::ndarray<>> writable(n);
  std::vector<std::vector<int64_t>> sizes(n), strides(n);
  std::vector<attnrt_tensor> tensors(n);
  for (size_t i = 0; i < n; ++i) {
    const attnrt_arg_info *info =
        static_cast<int>(i) < numArgs ? attnrt_kernel_arg(kernel, i) : nullptr;
    std::string where = "kernel '" + name() + "' argument " +
                        (info ? "'" + std::string(info->name) + "' " : "") +
                        "(#" + std::to_string(i) + ")";
    bool writes = info && info->dir != ATTNRT_DIR_IN;
    nb::handle obj = args[i];
    if (!nb::try_cast(obj, readOnly[i], false))
      raiseUnreadable(where, obj, info);
    // A read-only array cannot be an out/inout argument: asking nanobind
    // for a writable view is what tells read-only arrays apart.
    if (writes && !nb::try_cast(obj, writable[i], false))
      raiseAttnrt(ATTNRT_ERR_VALIDATION,
                  where + ": is " + attnrt_dir_name(info->dir) +
                      " (written by the kernel) but the array is read-only; "
                      "pass a writable array");
    const nb::ndarray<nb::ro> &a = readOnly[i];
    int device = a.device_type();
    if (device != nb::device::cpu::value &&
        device != nb::device::cuda_host::value)
      raiseAttnrt(
          ATTNRT_ERR_VALIDATION,
          where + ": the tensor is on " + deviceName(device) +
              " (DLPack device type " + std::to_string(device) +
              "); this attnc runs kernels on the host CPU only (GPU "
              "kernels, attnc --target=sm_XY, run through attnrt's C API, "
              "attnrt_cuda.h, not from Python yet): pass a CPU tensor");
    int dtype = dtypes.empty() ? -1 : dtypes[i];
    if (dtype < 0) {
      dtype = attnrtDtypeOf(a.dtype());
      if (dtype < 0)
        raiseAttnrt(ATTNRT_ERR_VALIDATION,
                    where + ": dtype is " + dlpackDtypeName(a.dtype()) +
                        (info ? std::string(" but the kernel expects ") +
                                    attnrt_dtype_name(info->dtype)
                              : std::string(", which attnrt has no type for")) +
                        "; convert the tensor");
    } else if (dtype > ATTNRT_DTYPE_F8E5M2 ||
               static_cast<size_t>(attnrt_dtype_size(
                   static_cast<attnrt_dtype>(dtype))) != a.itemsize()) {
      throw nb::value_error(
          (where + ": dtype override does not match the element size").c_str());
    }
    size_t rank = a.ndim();
    sizes[i].resize(rank);
    strides[i].resize(rank);
    for (size_t d = 0; d < rank; ++d) {
      sizes[i][d] = static_cast<int64_t>(a.shape(d));
      strides[i][d] = a.stride(d);
    }
    tensors[i] =
        attnrt_tensor{const_cast<void *>(static_cast<const void *>(a.data())),
                      static_cast<attnrt_dtype>(dtype), static_cast<int>(rank),
                      sizes[i].data(), strides[i].data()};
  }

  attnrt_status status;
  std::string error;
  {
    // The arrays stay referenced by readOnly/writable while the kernel runs.
    nb::gil_scoped_release release;
    status = validateOnly
                 ? attnrt_validate(kernel, tensors.data(), static_cast<int>(n))
                 : attnrt_run(module->handle, kernel, tensors.data(),
                              static_cast<int>(n), numThreads);
    if (status != ATTNRT_OK)
      error = attnrt_last_error();
  }
  if (status != ATTNRT_OK)
    raiseAttnrt(status, error);
}

class Module {
public:
  Module(const std::string &directory, int numThreads)
      : state(std::make_shared<ModuleState>()) {
    state->directory = directory;
    check(attnrt_open(directory.c_str(), numThreads, &state->handle));
  }

  std::vector<std::string> kernels() const {
    std::vector<std::string> names;
    for (int i = 0, e = attnrt_num_kernels(state->handle); i < e; ++i)
      names.push_back(attnrt_kernel_name(attnrt_kernel_at(state->handle, i)));
    return names;
  }

  Kernel kernel(const std::string &name) const {
    const attnrt_kernel *k = nullptr;
    check(attnrt_find_kernel(state->handle, name.c_str(), &k));
    return Kernel(state, k);
  }

  const std::string &directory() const { return state->directory; }

  std::vector<std::string> steps() const {
    std::vector<std::string> names;
    for (int i = 0, e = attnrt_num_steps(state->handle); i < e; ++i)
      names.push_back(attnrt_step_name_at(state->handle, i));
    return names;
  }

  const std::shared_ptr<ModuleState> &shared() const { return state; }

private:
  std::shared_ptr<ModuleState> state;
};

//===----------------------------------------------------------------------===//
// Steps (memory plans)
//===----------------------------------------------------------------------===//

struct StepTierInfo {
  std::string name;
  int64_t capacity, size;
  bool device;
};

struct StepBufferInfo {
  std::string name, dir, dtype;
  int dtypeCode;
  std::vector<int64_t> shape;
  std::string tier;
  int64_t offset, bytes;
};

class Step {
public:
  Step(const Module &module, const std::string &name)
      : module(module.shared()) {
    check(attnrt_step_open(this->module->handle, name.c_str(), &step));
  }
  // Before `module` lets the attnrt module go.
  ~Step() { attnrt_step_close(step); }
  Step(const Step &) = delete;
  Step &operator=(const Step &) = delete;

  std::string name() const { return attnrt_step_name(step); }

  std::vector<StepTierInfo> tiers() const {
    std::vector<StepTierInfo> out;
    for (int i = 0, e = attnrt_step_num_tiers(step); i < e; ++i) {
      attnrt_step_tier_info t;
      check(attnrt_step_tier(step, i, &t));
      out.push_back({t.name, t.capacity, t.size, t.device != 0});
    }
    return out;
  }

  std::vector<StepBufferInfo> buffers() const {
    std::vector<StepBufferInfo> out;
    for (int i = 0, e = attnrt_step_num_buffers(step); i < e; ++i) {
      const attnrt_step_buffer_info &b = *attnrt_step_buffer(step, i);
      attnrt_step_tier_info t;
      check(attnrt_step_tier(step, b.tier, &t));
      out.push_back({b.name, attnrt_dir_name(b.dir), attnrt_dtype_name(b.dtype),
                     static_cast<int>(b.dtype),
                     std::vector<int64_t>(b.shape, b.shape + b.rank), t.name,
                     b.offset, b.bytes});
    }
    return out;
  }

  int findBuffer(const std::string &name) const {
    int index = -1;
    check(attnrt_step_find_buffer(step, name.c_str(), &index));
    return index;
  }

  /// Raw bytes of buffer i (the Python layer views them typed).
  std::pair<void *, int64_t> data(int i) const {
    const attnrt_step_buffer_info *b = attnrt_step_buffer(step, i);
    if (!b)
      raiseAttnrt(ATTNRT_ERR_INVALID_ARGUMENT, attnrt_last_error());
    return {attnrt_step_data(step, i), b->bytes};
  }

  void run(int numThreads) {
    attnrt_status status;
    std::string error;
    {
      // Kernels and copies only touch the arenas, which the step owns.
      nb::gil_scoped_release release;
      status = attnrt_step_run(step, numThreads);
      if (status != ATTNRT_OK)
        error = attnrt_last_error();
    }
    if (status != ATTNRT_OK)
      raiseAttnrt(status, error);
  }

  attnrt_step_run_stats stats() const {
    attnrt_step_run_stats s;
    check(attnrt_step_stats(step, &s));
    return s;
  }

private:
  std::shared_ptr<ModuleState> module;
  attnrt_step *step = nullptr;
};

//===----------------------------------------------------------------------===//
// KV-cache page pool
//===----------------------------------------------------------------------===//

struct PoolComponent {
  std::string name, role, dtype;
  int dtypeCode;
  std::string kind; // "page", "ring" or "total"
  std::vector<int64_t> shape;
};

bool isCacheRole(attnrt_role role) {
  switch (role) {
  case ATTNRT_ROLE_K_PAGES:
  case ATTNRT_ROLE_V_PAGES:
  case ATTNRT_ROLE_K_SCALE:
  case ATTNRT_ROLE_V_SCALE:
  case ATTNRT_ROLE_K_MIN:
  case ATTNRT_ROLE_V_MIN:
  case ATTNRT_ROLE_K_RECENT:
  case ATTNRT_ROLE_V_RECENT:
  case ATTNRT_ROLE_K_PAGE_MAX:
  case ATTNRT_ROLE_K_PAGE_MIN:
    return true;
  default:
    return false;
  }
}

using Int32Array = nb::ndarray<nb::numpy, int32_t, nb::ndim<1>>;

/// A NumPy int32 array owning `values`.
Int32Array toNumpy(std::vector<int32_t> values) {
  auto *owned = new std::vector<int32_t>(std::move(values));
  owned->reserve(1); // a non-NULL data pointer, also when empty
  nb::capsule owner(owned, [](void *p) noexcept {
    delete static_cast<std::vector<int32_t> *>(p);
  });
  size_t shape[1] = {owned->size()};
  return Int32Array(owned->data(), 1, shape, owner);
}

class CachePool {
public:
  CachePool(const Kernel &kernel, int64_t numPages,
            std::optional<int64_t> numRings);
  ~CachePool() { attnrt_cache_pool_destroy(pool); }
  CachePool(const CachePool &) = delete;
  CachePool &operator=(const CachePool &) = delete;

  const std::vector<PoolComponent> &components() const { return comps; }
  int64_t pageSize() const { return pageSize_; }
  int64_t residual() const { return residual_; }
  int64_t numRings() const { return numRings_; }

  /// Raw bytes of component i (the Python layer views them typed).
  std::pair<void *, int64_t> buffer(int i) const {
    void *data = nullptr;
    int64_t bytes = 0;
    check(attnrt_cache_pool_buffer(pool, i, &data, &bytes));
    return {data, bytes};
  }

  attnrt_cache_stats stats() const {
    attnrt_cache_stats s;
    check(attnrt_cache_pool_stats(pool, &s));
    return s;
  }
  void checkInvariants() const { check(attnrt_cache_pool_check(pool)); }

  int64_t create() {
    int64_t seq;
    check(attnrt_cache_seq_create(pool, &seq));
    return seq;
  }
  int64_t fork(int64_t src) {
    int64_t seq;
    check(attnrt_cache_seq_fork(pool, src, &seq));
    return seq;
  }
  void free(int64_t seq) { check(attnrt_cache_seq_free(pool, seq)); }
  int64_t length(int64_t seq) const {
    int64_t len;
    check(attnrt_cache_seq_length(pool, seq, &len));
    return len;
  }
  void trim(int64_t seq, int64_t sinks, int64_t window) {
    check(attnrt_cache_seq_trim(pool, seq, sinks, window));
  }
  int64_t refcount(int64_t page) const {
    int64_t r;
    check(attnrt_cache_page_refcount(pool, page, &r));
    return r;
  }

  Int32Array append(int64_t seq, int64_t numTokens) {
    std::vector<int32_t> slots(std::max<int64_t>(numTokens, 0));
    check(attnrt_cache_seq_append(pool, seq, numTokens, slots.data()));
    return toNumpy(std::move(slots));
  }

  std::tuple<Int32Array, Int32Array> appendWithRings(int64_t seq,
                                                     int64_t numTokens) {
    std::vector<int32_t> slots(std::max<int64_t>(numTokens, 0));
    std::vector<int32_t> ringSlots(slots.size());
    check(attnrt_cache_seq_append_with_rings(pool, seq, numTokens, slots.data(),
                                             ringSlots.data()));
    return {toNumpy(std::move(slots)), toNumpy(std::move(ringSlots))};
  }

  Int32Array rings(const std::vector<int64_t> &seqs) const {
    std::vector<int32_t> out(seqs.size());
    check(attnrt_cache_rings(pool, seqs.data(), static_cast<int>(seqs.size()),
                             out.data()));
    return toNumpy(std::move(out));
  }

  std::tuple<Int32Array, Int32Array, Int32Array>
  pageTable(const std::vector<int64_t> &seqs) const {
    int n = static_cast<int>(seqs.size());
    int64_t refs = 0;
    check(attnrt_cache_page_table_size(pool, seqs.data(), n, &refs));
    std::vector<int32_t> indptr(seqs.size() + 1), indices(refs),
        last(seqs.size());
    // attnrt wants non-NULL buffers; a vector's data() may be NULL when
    // empty.
    int32_t dummy = 0;
    check(attnrt_cache_page_table(pool, seqs.data(), n, indptr.data(),
                                  indices.empty() ? &dummy : indices.data(),
                                  refs, last.empty() ? &dummy : last.data()));
    return {toNumpy(std::move(indptr)), toNumpy(std::move(indices)),
            toNumpy(std::move(last))};
  }

private:
  attnrt_cache_pool *pool = nullptr;
  std::vector<PoolComponent> comps;
  int64_t pageSize_ = 0, residual_ = 0, numRings_ = 0;
};

CachePool::CachePool(const Kernel &kernel, int64_t numPages,
                     std::optional<int64_t> numRings) {
  const attnrt_kv_cache_info *kv = attnrt_kernel_kv_cache(kernel.handle());
  if (!kv)
    throw nb::value_error(("kernel '" + kernel.name() +
                           "' has no KV cache; make the pool from a kv_append "
                           "or paged_attention kernel of the cache")
                              .c_str());
  pageSize_ = kv->page_size;
  residual_ = kv->residual;
  // Rings only exist for a residual window; every live sequence owns one.
  numRings_ = residual_ > 0 ? numRings.value_or(64) : 0;
  std::vector<attnrt_cache_component> specs;
  for (int i = 0, e = attnrt_kernel_num_args(kernel.handle()); i < e; ++i) {
    const attnrt_arg_info &a = *attnrt_kernel_arg(kernel.handle(), i);
    if (!isCacheRole(a.role))
      continue;
    PoolComponent c{a.name,
                    attnrt_role_name(a.role),
                    attnrt_dtype_name(a.dtype),
                    static_cast<int>(a.dtype),
                    "total",
                    {}};
    int paged = ATTNRT_CACHE_TOTAL;
    if (a.role == ATTNRT_ROLE_K_RECENT || a.role == ATTNRT_ROLE_V_RECENT) {
      paged = ATTNRT_CACHE_PER_RING;
      c.kind = "ring";
    } else if (a.rank > 0 && a.shape[0].symbol) {
      paged = ATTNRT_CACHE_PER_PAGE;
      c.kind = "page";
    }
    int64_t elems = 1;
    for (int d = 0; d < a.rank; ++d) {
      bool leading = d == 0 && paged != ATTNRT_CACHE_TOTAL;
      if (leading) {
        c.shape.push_back(paged == ATTNRT_CACHE_PER_RING ? numRings_
                                                         : numPages);
        continue;
      }
      if (a.shape[d].symbol)
        throw nb::value_error(("cache component '" + c.name + "' dim " +
                               std::to_string(d) + " is symbolic ('" +
                               a.shape[d].symbol +
                               "'); a pool needs static sizes")
                                  .c_str());
      c.shape.push_back(a.shape[d].value);
      elems *= a.shape[d].value;
    }
    specs.push_back({a.name, paged, elems * attnrt_dtype_size(a.dtype)});
    comps.push_back(std::move(c));
  }
  if (residual_ > 0)
    check(attnrt_cache_pool_create_with_rings(
        pageSize_, specs.data(), static_cast<int>(specs.size()), numPages,
        numRings_, residual_, &pool));
  else
    check(attnrt_cache_pool_create(pageSize_, specs.data(),
                                   static_cast<int>(specs.size()), numPages,
                                   &pool));
}

std::tuple<Int32Array, Int32Array, Int32Array> pageTableFromBlockTables(
    nb::ndarray<const int32_t, nb::ndim<2>, nb::c_contig, nb::device::cpu>
        blockTables,
    nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>
        seqLens,
    int64_t pageSize) {
  int64_t batch = static_cast<int64_t>(blockTables.shape(0));
  int64_t maxBlocks = static_cast<int64_t>(blockTables.shape(1));
  if (static_cast<int64_t>(seqLens.shape(0)) != batch)
    throw nb::value_error("seq_lens must have one entry per row of "
                          "block_tables");
  int64_t needed = 0;
  for (int64_t b = 0; b < batch && pageSize > 0; ++b)
    needed += std::max<int64_t>(seqLens(b), 0) / pageSize +
              (std::max<int64_t>(seqLens(b), 0) % pageSize != 0);
  std::vector<int32_t> indptr(batch + 1), indices(needed), last(batch);
  int32_t dummy = 0;
  check(attnrt_page_table_from_block_tables(
      blockTables.data(), batch, maxBlocks, seqLens.data(), pageSize,
      indptr.data(), indices.empty() ? &dummy : indices.data(), needed,
      last.empty() ? &dummy : last.data()));
  return {toNumpy(std::move(indptr)), toNumpy(std::move(indices)),
          toNumpy(std::move(last))};
}

std::string maskRepr(const MaskInfo &m) {
  std::string s =
      "<Mask " + std::string(m.causal ? "causal " : "") + "align=" + m.align;
  if (m.window >= 0)
    s += " window=" + std::to_string(m.window);
  if (m.sinks)
    s += " sinks=" + std::to_string(m.sinks);
  return s + ">";
}

} // namespace

void bindRuntime(nb::module_ &m) {
  using namespace nb::literals;

  nb::class_<Dim>(m, "Dim",
                  "One dimension of a manifest shape: static (symbol None, "
                  "value the size) or symbolic (symbol 'batch+1' = name "
                  "'batch' plus offset value 1).")
      .def_ro("symbol", &Dim::symbol)
      .def_ro("name", &Dim::name)
      .def_ro("value", &Dim::value);

  nb::class_<ArgInfo>(m, "ArgInfo", "A kernel argument as the manifest has it.")
      .def_ro("name", &ArgInfo::name)
      .def_ro("role", &ArgInfo::role,
              "query, key, value, output, lse, k_pages, kv_indptr, ...")
      .def_ro("dir", &ArgInfo::dir, "'in', 'out' or 'inout'")
      .def_ro("dtype", &ArgInfo::dtype,
              "f32, f16, bf16, i32, i8, u8, f8e4m3fn or f8e5m2")
      .def_ro("dtype_code", &ArgInfo::dtypeCode, "attnrt_dtype value")
      .def_ro("dims", &ArgInfo::dims)
      .def_prop_ro("shape", &ArgInfo::shape,
                   "sizes: an int, or the symbol text such as 'batch+1'")
      .def("__repr__", [](const ArgInfo &a) {
        std::string s =
            "<ArgInfo " + a.dir + " " + a.name + ": " + a.dtype + "[";
        for (size_t i = 0; i < a.dims.size(); ++i)
          s += (i ? ", " : "") + (a.dims[i].symbol
                                      ? *a.dims[i].symbol
                                      : std::to_string(a.dims[i].value));
        return s + "] (" + a.role + ")>";
      });

  nb::class_<MaskInfo>(m, "MaskInfo", "A structured mask (docs/semantics.md).")
      .def_ro("causal", &MaskInfo::causal)
      .def_ro("align", &MaskInfo::align, "'bottom_right' or 'top_left'")
      .def_ro("window", &MaskInfo::window, "-1: no sliding window")
      .def_ro("sinks", &MaskInfo::sinks)
      .def("__repr__", &maskRepr);

  nb::class_<AttentionInfo>(m, "AttentionInfo",
                            "Attention parameters of kinds attention and "
                            "paged_attention.")
      .def_ro("layout", &AttentionInfo::layout, "dense, ragged or paged")
      .def_ro("dtype", &AttentionInfo::dtype)
      .def_ro("num_q_heads", &AttentionInfo::numQHeads)
      .def_ro("num_kv_heads", &AttentionInfo::numKVHeads)
      .def_ro("head_dim", &AttentionInfo::headDim)
      .def_ro("scale", &AttentionInfo::scale)
      .def_ro("softcap", &AttentionInfo::softcap, "0: none")
      .def_ro("mask", &AttentionInfo::mask)
      .def_ro("head_masks", &AttentionInfo::headMasks,
              "one mask per KV head replacing `mask`, or [] with one mask")
      .def_ro("has_lse", &AttentionInfo::hasLse)
      .def_ro("block_q", &AttentionInfo::blockQ)
      .def_ro("block_kv", &AttentionInfo::blockKV)
      .def_ro("vector_width", &AttentionInfo::vectorWidth)
      .def_ro("workspace_bytes", &AttentionInfo::workspaceBytes);

  nb::class_<KVCacheInfo>(m, "KVCacheInfo",
                          "The KV cache a kernel reads or appends to.")
      .def_ro("name", &KVCacheInfo::name,
              "component arguments are named NAME_k_pages, ...")
      .def_ro("page_size", &KVCacheInfo::pageSize)
      .def_ro("num_kv_heads", &KVCacheInfo::numKVHeads)
      .def_ro("head_dim", &KVCacheInfo::headDim)
      .def_ro("layout", &KVCacheInfo::layout, "nhd or hnd")
      .def_ro("storage", &KVCacheInfo::storage,
              "f16, bf16, f8e4m3fn, f8e5m2, i8 or i4")
      .def_ro("k_group", &KVCacheInfo::kGroup)
      .def_ro("residual", &KVCacheInfo::residual,
              "tokens of the f16 residual window (0: none)")
      .def_ro("bytes_per_token", &KVCacheInfo::bytesPerToken);

  nb::class_<BlockSparseInfo>(m, "BlockSparseInfo")
      .def_ro("block_q", &BlockSparseInfo::blockQ)
      .def_ro("block_kv", &BlockSparseInfo::blockKV)
      .def_ro("heads", &BlockSparseInfo::heads);

  nb::class_<SelectPagesInfo>(m, "SelectPagesInfo")
      .def_ro("top_k", &SelectPagesInfo::topK)
      .def_ro("sink_pages", &SelectPagesInfo::sinkPages)
      .def_ro("recent_pages", &SelectPagesInfo::recentPages);

  nb::class_<Kernel>(m, "Kernel", "A kernel of an open module (attnrt).")
      .def_prop_ro("name", &Kernel::name)
      .def_prop_ro("kind", &Kernel::kind,
                   "attention, paged_attention, kv_append, merge or "
                   "select_pages")
      .def_prop_ro("num_phases", &Kernel::numPhases)
      .def_prop_ro("args", &Kernel::args)
      .def_prop_ro("scratch", &Kernel::scratch)
      .def_prop_ro("attention", &Kernel::attention)
      .def_prop_ro("kv_cache", &Kernel::kvCache)
      .def_prop_ro("block_sparse", &Kernel::blockSparse)
      .def_prop_ro("select_pages", &Kernel::selectPages)
      .def_prop_ro("has_tile_stats", &Kernel::hasTileStats)
      .def("tile_stats", &Kernel::tileStats,
           "(KV tiles run, tiles with the element predicate, work items) "
           "since load or reset; kernels compiled with count_tiles=True")
      .def("reset_tile_stats", &Kernel::resetTileStats)
      .def(
          "run",
          [](const Kernel &k, const std::vector<nb::object> &args,
             const std::vector<int> &dtypes,
             int numThreads) { k.run(args, dtypes, numThreads, false); },
          "args"_a, "dtypes"_a = std::vector<int>(), "num_threads"_a = 0,
          "Validates and runs on args (manifest order; out/inout written in "
          "place) with the GIL released. dtypes[i] >= 0 gives args[i]'s "
          "attnrt dtype for integer views of ml_dtypes arrays.")
      .def(
          "validate",
          [](const Kernel &k, const std::vector<nb::object> &args,
             const std::vector<int> &dtypes) { k.run(args, dtypes, 0, true); },
          "args"_a, "dtypes"_a = std::vector<int>(),
          "All checks of run, without running.");

  nb::class_<Module>(m, "Module",
                     "An artifact directory opened by attnrt (manifest.json "
                     "and the kernel library).")
      .def(nb::init<const std::string &, int>(), "directory"_a,
           "num_threads"_a = 0)
      .def_prop_ro("kernels", &Module::kernels)
      .def_prop_ro("directory", &Module::directory)
      .def_prop_ro("steps", &Module::steps,
                   "names of the step functions of the manifest's memory "
                   "plans")
      .def("kernel", &Module::kernel, "name"_a);

  nb::class_<StepTierInfo>(m, "StepTierInfo",
                           "A memory tier of a step: its arena.")
      .def_ro("name", &StepTierInfo::name)
      .def_ro("capacity", &StepTierInfo::capacity,
              "the target's capacity of the tier, in bytes")
      .def_ro("size", &StepTierInfo::size,
              "the arena's size: exactly the plan's, in bytes")
      .def_ro("device", &StepTierInfo::device, "whether kernels read it")
      .def("__repr__", [](const StepTierInfo &t) {
        return "<StepTierInfo " + t.name + ": " + std::to_string(t.size) +
               " of " + std::to_string(t.capacity) + " bytes" +
               (t.device ? ", device" : "") + ">";
      });

  nb::class_<StepBufferInfo>(m, "StepBufferInfo",
                             "A buffer of a step at its home place.")
      .def_ro("name", &StepBufferInfo::name)
      .def_ro("dir", &StepBufferInfo::dir,
              "'in' (written before a run), 'out' (read after it) or "
              "'inout'")
      .def_ro("dtype", &StepBufferInfo::dtype)
      .def_ro("dtype_code", &StepBufferInfo::dtypeCode, "attnrt_dtype value")
      .def_ro("shape", &StepBufferInfo::shape)
      .def_ro("tier", &StepBufferInfo::tier)
      .def_ro("offset", &StepBufferInfo::offset,
              "bytes from the start of the tier's arena")
      .def_ro("bytes", &StepBufferInfo::bytes)
      .def("__repr__", [](const StepBufferInfo &b) {
        std::string s =
            "<StepBufferInfo " + b.dir + " " + b.name + ": " + b.dtype + "[";
        for (size_t i = 0; i < b.shape.size(); ++i)
          s += (i ? ", " : "") + std::to_string(b.shape[i]);
        return s + "] at " + b.tier + "+" + std::to_string(b.offset) + ">";
      });

  nb::class_<attnrt_step_run_stats>(m, "StepStats",
                                    "Counters and timings of a step's last "
                                    "run.")
      .def_ro("runs", &attnrt_step_run_stats::runs)
      .def_ro("copies", &attnrt_step_run_stats::copies)
      .def_ro("bytes_copied", &attnrt_step_run_stats::bytes_copied)
      .def_ro("kernels", &attnrt_step_run_stats::kernels)
      .def_ro("copy_seconds", &attnrt_step_run_stats::copy_seconds)
      .def_ro("exposed_seconds", &attnrt_step_run_stats::exposed_seconds)
      .def_ro("kernel_seconds", &attnrt_step_run_stats::kernel_seconds)
      .def_ro("overlap_seconds", &attnrt_step_run_stats::overlap_seconds)
      .def_ro("total_seconds", &attnrt_step_run_stats::total_seconds);

  nb::class_<Step>(m, "Step",
                   "An open step of a memory plan (attnrt_step): one arena "
                   "per tier, a copy thread, the program.")
      .def(nb::init<const Module &, const std::string &>(), "module"_a,
           "name"_a)
      .def_prop_ro("name", &Step::name)
      .def_prop_ro("tiers", &Step::tiers)
      .def_prop_ro("buffers", &Step::buffers)
      .def("find_buffer", &Step::findBuffer, "name"_a)
      .def(
          "buffer",
          [](nb::pointer_and_handle<Step> self, int index) {
            auto [data, bytes] = self.p->data(index);
            size_t shape[1] = {static_cast<size_t>(bytes)};
            // The view keeps the step (and its arenas) alive.
            return nb::ndarray<nb::numpy, uint8_t, nb::ndim<1>>(data, 1, shape,
                                                                self.h);
          },
          "index"_a, "Buffer `index`'s memory as a uint8 view.")
      .def("run", &Step::run, "num_threads"_a = 0,
           "Runs the program with the GIL released.")
      .def("stats", &Step::stats);

  nb::class_<PoolComponent>(m, "PoolComponent",
                            "A component buffer of a page pool.")
      .def_ro("name", &PoolComponent::name)
      .def_ro("role", &PoolComponent::role)
      .def_ro("dtype", &PoolComponent::dtype)
      .def_ro("dtype_code", &PoolComponent::dtypeCode)
      .def_ro("kind", &PoolComponent::kind, "page, ring or total")
      .def_ro("shape", &PoolComponent::shape);

  nb::class_<attnrt_cache_stats>(m, "CacheStats")
      .def_ro("page_size", &attnrt_cache_stats::page_size)
      .def_ro("num_pages", &attnrt_cache_stats::num_pages)
      .def_ro("free_pages", &attnrt_cache_stats::free_pages)
      .def_ro("used_pages", &attnrt_cache_stats::used_pages)
      .def_ro("num_sequences", &attnrt_cache_stats::num_sequences)
      .def_ro("bytes_per_page", &attnrt_cache_stats::bytes_per_page)
      .def_ro("bytes_per_token", &attnrt_cache_stats::bytes_per_token)
      .def_ro("bytes_in_use", &attnrt_cache_stats::bytes_in_use)
      .def_ro("num_rings", &attnrt_cache_stats::num_rings)
      .def_ro("free_rings", &attnrt_cache_stats::free_rings)
      .def("__repr__", [](const attnrt_cache_stats &s) {
        return "<CacheStats pages " + std::to_string(s.used_pages) + "/" +
               std::to_string(s.num_pages) + " used, " +
               std::to_string(s.num_sequences) + " sequences, " +
               std::to_string(s.bytes_in_use) + " bytes in use>";
      });

  nb::class_<CachePool>(m, "CachePool",
                        "attnrt's page pool for the KV cache of a kernel "
                        "(not thread-safe; calls hold the GIL).")
      .def(nb::init<const Kernel &, int64_t, std::optional<int64_t>>(),
           "kernel"_a, "num_pages"_a, "num_rings"_a = nb::none())
      .def_prop_ro("components", &CachePool::components)
      .def_prop_ro("page_size", &CachePool::pageSize)
      .def_prop_ro("residual", &CachePool::residual)
      .def_prop_ro("num_rings", &CachePool::numRings)
      .def(
          "buffer",
          [](nb::pointer_and_handle<CachePool> self, int index) {
            auto [data, bytes] = self.p->buffer(index);
            size_t shape[1] = {static_cast<size_t>(bytes)};
            // The view keeps the pool alive.
            return nb::ndarray<nb::numpy, uint8_t, nb::ndim<1>>(data, 1, shape,
                                                                self.h);
          },
          "index"_a, "Component `index`'s memory as a uint8 view.")
      .def("stats", &CachePool::stats)
      .def("check", &CachePool::checkInvariants)
      .def("create", &CachePool::create)
      .def("fork", &CachePool::fork, "seq"_a)
      .def("free", &CachePool::free, "seq"_a)
      .def("length", &CachePool::length, "seq"_a)
      .def("trim", &CachePool::trim, "seq"_a, "sink_tokens"_a,
           "window_tokens"_a)
      .def("refcount", &CachePool::refcount, "page"_a)
      .def("append", &CachePool::append, "seq"_a, "num_tokens"_a)
      .def("append_with_rings", &CachePool::appendWithRings, "seq"_a,
           "num_tokens"_a)
      .def("rings", &CachePool::rings, "seqs"_a)
      .def("page_table", &CachePool::pageTable, "seqs"_a);

  m.def("page_table_from_block_tables", &pageTableFromBlockTables,
        "block_tables"_a, "seq_lens"_a, "page_size"_a,
        "vLLM's padded block_tables [batch, max_blocks] and seq_lens [batch] "
        "(int32) -> (kv_indptr, kv_indices, kv_last_page_len).");
  m.def(
      "dtype_name",
      [](int code) {
        return std::string(attnrt_dtype_name(static_cast<attnrt_dtype>(code)));
      },
      "code"_a);
}

} // namespace attnc_py
