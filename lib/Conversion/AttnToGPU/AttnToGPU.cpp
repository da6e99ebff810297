//===- AttnToGPU.cpp - attention kernels to GPU kernels -------------------===//
//
// Rewrites each kernel function into a gpu.module with one gpu.func: a dense
// `attn.attention` into the FlashAttention-2 prefill kernel
// (PrefillKernel.cpp), a decode `attn.paged_attention` into the paged decode
// kernel (DecodeKernel.cpp); what has no kernel yet is an error at the op.
// The kernels take bare global pointers, then the dynamic sizes as i32; the
// launch geometry and the parameters' names are recorded on the gpu.func as
// `attn.launch` for the manifest (docs/gpu-artifacts.md). The decode kernel
// is split-KV: its module also holds the merge kernel (MergeKernel.cpp), and
// its launch names the split symbol, the scratch and the merge launch.
//
//===----------------------------------------------------------------------===//

#include "KernelBuilder.h"
#include "attnc/Conversion/Passes.h"

#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/IR/BuiltinOps.h"

#include "llvm/Support/FormatVariadic.h"

namespace attnc {
#define GEN_PASS_DEF_ATTNLOWERTOGPU
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc::attn;

namespace {

// The prefill kernel's tiles (PrefillKernel.cpp) and the decode kernel's
// block.
constexpr int64_t kBlockQ = 64, kWarps = 4, kThreads = 128;
// Split-KV decode: at most this many splits per sequence (the runtime picks
// the count per call, docs/gpu-artifacts.md), each of at least
// kMinSplitKeys keys, so short sequences are not cut into slivers whose
// merge costs more than they save.
constexpr int64_t kMaxSplits = 64, kMinSplitKeys = 64;
constexpr llvm::StringLiteral kSplitSymbol = "num_splits";

std::string typeName(Type t) { return llvm::formatv("{0}", t).str(); }

/// What neither GPU kernel has yet, for either op.
template <typename OpT>
std::optional<std::string> unsupportedScoreRules(OpT op) {
  if (op.isBlockSparse())
    return "block-sparse masks";
  return std::nullopt;
}

/// Why `op` has no GPU kernel yet, or nullopt when it has.
std::optional<std::string> unsupported(AttentionOp op) {
  if (std::optional<std::string> why = unsupportedScoreRules(op))
    return why;
  Type elem = op.getElementType();
  if (!elem.isF16() && !elem.isBF16())
    return "element type " + typeName(elem) +
           " (tensor cores take f16 and bf16)";
  int64_t d = op.getHeadDim();
  if (d != 64 && d != 128)
    return "head_dim " + std::to_string(d) + " (64 and 128 have kernels)";
  return std::nullopt;
}

std::optional<std::string> unsupported(PagedAttentionOp op) {
  KVCacheType cache = op.getCacheType();
  if (cache.hasResidual() && op.isRagged())
    return "paged append/prefill (qo_indptr) over a cache with a residual "
           "window";
  if (std::optional<std::string> why = unsupportedScoreRules(op))
    return why;
  Type storage = cache.getStorage(), query = op.getElementType();
  // Quantized pages (int8, int4, fp8): dequantized in registers.
  bool quantized = storage.isInteger(8) || storage.isInteger(4) ||
                   isa<Float8E4M3FNType, Float8E5M2Type>(storage);
  if (!storage.isF16() && !storage.isBF16() && !quantized)
    return typeName(storage) +
           " cache storage (f16, bf16, i8, i4 and fp8 have kernels)";
  if (quantized ? !query.isF16() && !query.isBF16() : query != storage)
    return typeName(query) + " queries over " + typeName(storage) + " pages (" +
           (quantized ? typeName(storage) + " pages take f16 or bf16 queries"
                      : "the queries and the pages must have one type") +
           ")";
  int64_t d = op.getHeadDim();
  if (d != 64 && d != 128)
    return "head_dim " + std::to_string(d) + " (64 and 128 have kernels)";
  // The prefill kernel dequantizes pages into its shared tiles.
  if (op.isRagged())
    return std::nullopt;
  // One lane holds 16 bytes of a key and its query heads' elements as f32:
  // more heads than this overflow the registers or the shared memory of
  // the final merge.
  int64_t maxGroup = quantized ? 4 : 8;
  if (op.getGroupSize() > maxGroup)
    return std::to_string(op.getGroupSize()) +
           " query heads per KV head (at most " + std::to_string(maxGroup) +
           " with " + typeName(storage) + " pages)";
  return std::nullopt;
}

/// A kernel's declaration: its parameters (pointers, then the dynamic sizes
/// as i32) and its launch. A pointer parameter is named by its argument's
/// role (docs/artifacts.md), which the driver replaces by the argument's
/// name: the kernel's order need not be the function's. "$name" is a
/// symbol, "%name" a scratch buffer.
struct KernelSignature {
  SmallVector<Type> params;
  SmallVector<Attribute> names;
  SmallVector<Attribute> grid;
  int64_t threads = kThreads;
  int64_t smemBytes = 0;
  DictionaryAttr tile;
  /// Split-KV: the scratch buffers, the split_kv object and the merge
  /// kernel's launch, recorded in attn.launch beside the main one.
  ArrayAttr scratch;
  DictionaryAttr splitKV;
  DictionaryAttr merge;
};

class KernelDeclarer {
public:
  explicit KernelDeclarer(MLIRContext *ctx) : b(ctx) {}

  void pointers(ArrayRef<StringRef> names, KernelSignature &sig) {
    for (StringRef n : names) {
      sig.params.push_back(LLVM::LLVMPointerType::get(b.getContext(), 1));
      sig.names.push_back(b.getStringAttr(n));
    }
  }
  void scratch(ArrayRef<StringRef> names, KernelSignature &sig) {
    for (StringRef n : names) {
      sig.params.push_back(LLVM::LLVMPointerType::get(b.getContext(), 1));
      sig.names.push_back(b.getStringAttr(("%" + n).str()));
    }
  }
  void size(int64_t dim, StringRef name, KernelSignature &sig) {
    if (!ShapedType::isDynamic(dim))
      return;
    sig.params.push_back(b.getI32Type());
    sig.names.push_back(b.getStringAttr(("$" + name).str()));
  }
  /// A shape entry of a scratch buffer: the size, or the symbol when it is
  /// dynamic.
  Attribute shapeDim(int64_t dim, StringRef symbol) {
    if (ShapedType::isDynamic(dim))
      return b.getStringAttr(symbol);
    return b.getI64IntegerAttr(dim);
  }
  Attribute scratchBuffer(StringRef name, ArrayRef<Attribute> shape) {
    return b.getDictionaryAttr(
        {b.getNamedAttr("name", b.getStringAttr(name)),
         b.getNamedAttr("dtype", b.getStringAttr("f32")),
         b.getNamedAttr("shape", b.getArrayAttr(shape))});
  }
  /// ceil(dim * multiply / divide): a constant, or the symbol's expression.
  Attribute grid(int64_t dim, StringRef name, int64_t divide,
                 int64_t multiply = 1) {
    if (!ShapedType::isDynamic(dim))
      return b.getI64IntegerAttr((dim * multiply + divide - 1) / divide);
    SmallVector<NamedAttribute> expr = {
        b.getNamedAttr("symbol", b.getStringAttr(name)),
        b.getNamedAttr("divide", b.getI64IntegerAttr(divide))};
    if (multiply != 1)
      expr.push_back(b.getNamedAttr("multiply", b.getI64IntegerAttr(multiply)));
    return b.getDictionaryAttr(expr);
  }
  DictionaryAttr dict(ArrayRef<std::pair<StringRef, int64_t>> fields) {
    return dictWith({}, fields);
  }
  DictionaryAttr dictWith(ArrayRef<std::pair<StringRef, StringRef>> strings,
                          ArrayRef<std::pair<StringRef, int64_t>> fields) {
    SmallVector<NamedAttribute> attrs;
    for (auto [k, v] : strings)
      attrs.push_back(b.getNamedAttr(k, b.getStringAttr(v)));
    for (auto [k, v] : fields)
      attrs.push_back(b.getNamedAttr(k, b.getI64IntegerAttr(v)));
    return b.getDictionaryAttr(attrs);
  }
  /// The launch of `sig` as attn.launch records it.
  SmallVector<NamedAttribute> launch(const KernelSignature &sig) {
    return {
        b.getNamedAttr("block", b.getDenseI64ArrayAttr({sig.threads, 1, 1})),
        b.getNamedAttr("grid", b.getArrayAttr(sig.grid)),
        b.getNamedAttr("smem_bytes", b.getI64IntegerAttr(sig.smemBytes)),
        b.getNamedAttr("params", b.getArrayAttr(sig.names))};
  }
  /// The merge kernel's launch, for the main kernel's attn.launch.
  DictionaryAttr mergeLaunch(StringRef entry, const KernelSignature &sig) {
    SmallVector<NamedAttribute> attrs = launch(sig);
    attrs.push_back(b.getNamedAttr("entry", b.getStringAttr(entry)));
    return b.getDictionaryAttr(attrs);
  }
  /// A gpu.module NAME_gpu replacing `func`, holding the main kernel NAME
  /// (with attn.launch) and, for split-KV, the merge kernel.
  gpu::GPUFuncOp declare(func::FuncOp func, const KernelSignature &sig) {
    b.setInsertionPoint(func);
    auto module = gpu::GPUModuleOp::create(b, func.getLoc(),
                                           (func.getSymName() + "_gpu").str());
    b.setInsertionPointToStart(module.getBody());
    gpu::GPUFuncOp kernel = kernelFunc(func.getLoc(), func.getSymName(), sig);
    SmallVector<NamedAttribute> attrs = launch(sig);
    attrs.push_back(b.getNamedAttr("tile", sig.tile));
    if (sig.splitKV)
      attrs.append({b.getNamedAttr("split_kv", sig.splitKV),
                    b.getNamedAttr("scratch", sig.scratch),
                    b.getNamedAttr("merge", sig.merge)});
    kernel->setAttr("attn.launch", b.getDictionaryAttr(attrs));
    return kernel;
  }
  /// A kernel function after the last one of `kernel`'s module.
  gpu::GPUFuncOp declareBeside(gpu::GPUFuncOp kernel, StringRef name,
                               const KernelSignature &sig) {
    b.setInsertionPointAfter(kernel);
    return kernelFunc(kernel.getLoc(), name, sig);
  }

private:
  gpu::GPUFuncOp kernelFunc(Location loc, StringRef name,
                            const KernelSignature &sig) {
    auto kernel =
        gpu::GPUFuncOp::create(b, loc, name, b.getFunctionType(sig.params, {}));
    kernel->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
    return kernel;
  }

  OpBuilder b;
};

/// The prefill kernel's launch and tiling: one block per 64 rows of the
/// query rows of each KV head's group of query heads, `rows` the number of
/// query positions (dense: of each sequence; ragged and paged: the tiles of
/// all sequences, PrefillKernel.cpp).
void declarePrefillTiles(KernelDeclarer &k, KernelSignature &sig, int64_t rows,
                         StringRef rowsSymbol, Attribute batch,
                         const attnc::gpu_kernels::PrefillSpec &spec) {
  int64_t group = spec.numQHeads / spec.numKVHeads;
  sig.grid = {k.grid(rows, rowsSymbol, kBlockQ, group),
              k.grid(spec.numKVHeads, "", 1), batch};
  // Q, 2 stages of K and V.
  sig.smemBytes = (kBlockQ + 4 * spec.blockKV) * spec.headDim * 2;
  sig.tile = k.dict({{"block_q", kBlockQ},
                     {"block_kv", spec.blockKV},
                     {"warps", kWarps},
                     {"stages", 2}});
}

/// Keys per K/V tile: 64, but the ragged and paged kernels' sequence and
/// page lookups, and the per-head masks' selects, leave no room for 64-key
/// tiles at D = 128 (ptxas spills them), so those take 32.
int64_t narrowTiles(const attnc::gpu_kernels::PrefillSpec &spec) {
  return spec.headDim == 128 ? 32 : 64;
}

attnc::gpu_kernels::PrefillSpec prefillSpec(ArrayRef<MaskAttr> masks,
                                            double scale,
                                            std::optional<APFloat> softcap,
                                            Value lse, int64_t hq, int64_t hkv,
                                            int64_t d) {
  attnc::gpu_kernels::PrefillSpec spec;
  spec.numQHeads = hq;
  spec.numKVHeads = hkv;
  spec.headDim = d;
  spec.masks.assign(masks.begin(), masks.end());
  spec.scale = scale;
  spec.softcap = softcap ? softcap->convertToDouble() : 0;
  spec.hasLse = lse != nullptr;
  return spec;
}

void lowerPrefill(AttentionOp op, func::FuncOp func) {
  using Layout = attnc::gpu_kernels::PrefillSpec::Layout;
  KernelDeclarer k(func.getContext());
  KernelSignature sig;
  ArrayRef<int64_t> qs =
      cast<RankedTensorType>(op.getQuery().getType()).getShape();
  ArrayRef<int64_t> ks =
      cast<RankedTensorType>(op.getKey().getType()).getShape();
  auto spec = prefillSpec(op.getKVHeadMasks(), op.getScaleOrDefault(),
                          op.getSoftcap(), op.getLse(), op.getNumQueryHeads(),
                          op.getNumKVHeads(), op.getHeadDim());
  spec.qShape.assign(qs.begin(), qs.end());
  spec.kShape.assign(ks.begin(), ks.end());
  if (op.getHeadMasksAttr())
    spec.blockKV = narrowTiles(spec);
  k.pointers({"query", "key", "value"}, sig);
  if (op.isRagged()) {
    // q [total_q, Hq, D], k/v [total_k, Hkv, D], cu_seqlens [B + 1].
    int64_t cu =
        cast<RankedTensorType>(op.getCuSeqlensQ().getType()).getShape()[0];
    spec.layout = Layout::Ragged;
    spec.blockKV = narrowTiles(spec);
    spec.batch = ShapedType::isDynamic(cu) ? cu : cu - 1;
    k.pointers({"cu_seqlens_q", "cu_seqlens_k", "output"}, sig);
    if (spec.hasLse)
      k.pointers({"lse"}, sig);
    k.size(qs[0], "total_q", sig);
    k.size(ks[0], "total_k", sig);
    k.size(spec.batch, "batch", sig);
    declarePrefillTiles(k, sig, qs[0], "total_q", k.grid(1, "", 1), spec);
  } else {
    k.pointers({"output"}, sig);
    if (spec.hasLse)
      k.pointers({"lse"}, sig);
    k.size(qs[0], "batch", sig);
    k.size(qs[1], "seqlen_q", sig);
    k.size(ks[1], "seqlen_k", sig);
    declarePrefillTiles(k, sig, qs[1], "seqlen_q", k.grid(qs[0], "batch", 1),
                        spec);
  }
  gpu::GPUFuncOp kernel = k.declare(func, sig);
  attnc::gpu_kernels::buildPrefillKernel(op.getLoc(), op.getElementType(), spec,
                                         kernel);
}

/// Paged append/prefill (qo_indptr): the prefill kernel over the pages.
void lowerPagedPrefill(PagedAttentionOp op, func::FuncOp func) {
  KernelDeclarer k(func.getContext());
  KernelSignature sig;
  KVCacheType cache = op.getCacheType();
  ArrayRef<int64_t> qs =
      cast<RankedTensorType>(op.getQuery().getType()).getShape();
  int64_t refs =
      cast<RankedTensorType>(op.getKvIndices().getType()).getShape()[0];
  int64_t indptr =
      cast<RankedTensorType>(op.getKvIndptr().getType()).getShape()[0];
  auto spec = prefillSpec(op.getKVHeadMasks(), op.getScaleOrDefault(),
                          op.getSoftcap(), op.getLse(), op.getNumQueryHeads(),
                          cache.getNumKVHeads(), cache.getHeadDim());
  spec.layout = attnc::gpu_kernels::PrefillSpec::Layout::Paged;
  spec.blockKV = narrowTiles(spec);
  spec.qShape.assign(qs.begin(), qs.end());
  spec.batch = ShapedType::isDynamic(indptr) ? indptr : indptr - 1;
  spec.numPageRefs = refs;
  spec.pageSize = cache.getPageSize();
  spec.headMajor = cache.getHeadMajor();
  spec.cache = cache;
  k.pointers({"query", "k_pages", "v_pages"}, sig);
  Type storage = cache.getStorage();
  if (storage.getIntOrFloatBitWidth() <= 8)
    k.pointers({"k_scale", "v_scale"}, sig);
  if (storage.isInteger(4))
    k.pointers({"k_min", "v_min"}, sig);
  k.pointers(
      {"kv_indptr", "kv_indices", "kv_last_page_len", "qo_indptr", "output"},
      sig);
  if (spec.hasLse)
    k.pointers({"lse"}, sig);
  k.size(qs[0], "total_q", sig);
  k.size(spec.batch, "batch", sig);
  k.size(ShapedType::kDynamic, "num_pages", sig);
  k.size(refs, "num_page_refs", sig);
  declarePrefillTiles(k, sig, qs[0], "total_q", k.grid(1, "", 1), spec);
  gpu::GPUFuncOp kernel = k.declare(func, sig);
  attnc::gpu_kernels::buildPrefillKernel(op.getLoc(), op.getElementType(), spec,
                                         kernel);
}

void lowerDecode(PagedAttentionOp op, func::FuncOp func) {
  KernelDeclarer k(func.getContext());
  KernelSignature sig, merge;
  ArrayRef<int64_t> qs =
      cast<RankedTensorType>(op.getQuery().getType()).getShape();
  ArrayRef<int64_t> refs =
      cast<RankedTensorType>(op.getKvIndices().getType()).getShape();
  Type storage = op.getCacheType().getStorage();
  // int8, int4, fp8: scaled; int4 also has minima.
  bool quantized = storage.getIntOrFloatBitWidth() <= 8;
  bool hasLse = op.getLse() != nullptr;
  int64_t hq = op.getNumQueryHeads(), d = op.getHeadDim();
  int64_t dyn = ShapedType::kDynamic;
  k.pointers({"query", "k_pages", "v_pages"}, sig);
  if (quantized)
    k.pointers({"k_scale", "v_scale"}, sig);
  if (storage.isInteger(4))
    k.pointers({"k_min", "v_min"}, sig);
  bool residual = op.getCacheType().hasResidual();
  if (residual)
    k.pointers({"k_recent", "v_recent"}, sig);
  k.pointers({"kv_indptr", "kv_indices", "kv_last_page_len"}, sig);
  if (residual)
    k.pointers({"kv_rings"}, sig);
  k.pointers({"output"}, sig);
  if (hasLse)
    k.pointers({"lse"}, sig);
  k.scratch({"partial_o", "partial_lse"}, sig);
  k.size(qs[0], "batch", sig);
  k.size(dyn, "num_pages", sig);
  k.size(refs[0], "num_page_refs", sig);
  if (residual)
    k.size(dyn, "num_rings", sig);
  k.size(dyn, kSplitSymbol, sig);
  sig.grid = {k.grid(op.getNumKVHeads(), "", 1), k.grid(qs[0], "batch", 1),
              k.grid(dyn, kSplitSymbol, 1)};
  // 16 bytes of pages a lane (8 of int4 pages).
  int64_t lanesPerKey = d / (quantized ? 16 : 8);
  int64_t keysPerStep = kThreads / lanesPerKey;
  sig.tile = k.dict({{"threads", kThreads},
                     {"lanes_per_key", lanesPerKey},
                     {"keys_per_step", keysPerStep},
                     {"min_split_keys", kMinSplitKeys}});
  // The partials, as attn.merge takes them: o [splits, batch, Hq, D] and
  // lse [splits, Hq, batch] (f32, nats).
  Attribute splits = k.shapeDim(dyn, kSplitSymbol);
  Attribute batch = k.shapeDim(qs[0], "batch");
  sig.scratch = ArrayAttr::get(
      func.getContext(),
      {k.scratchBuffer("partial_o",
                       {splits, batch, k.shapeDim(hq, ""), k.shapeDim(d, "")}),
       k.scratchBuffer("partial_lse", {splits, k.shapeDim(hq, ""), batch})});
  sig.splitKV =
      k.dictWith({{"symbol", kSplitSymbol}}, {{"max_splits", kMaxSplits}});

  // The merge: one block of D threads per (sequence, query head).
  k.scratch({"partial_o", "partial_lse"}, merge);
  k.pointers({"output"}, merge);
  if (hasLse)
    k.pointers({"lse"}, merge);
  k.size(qs[0], "batch", merge);
  k.size(dyn, kSplitSymbol, merge);
  merge.grid = {k.grid(qs[0], "batch", 1), k.grid(hq, "", 1), k.grid(1, "", 1)};
  merge.threads = d;
  std::string mergeName = (func.getSymName() + "_merge").str();
  sig.merge = k.mergeLaunch(mergeName, merge);

  gpu::GPUFuncOp kernel = k.declare(func, sig);
  gpu::GPUFuncOp mergeKernel = k.declareBeside(kernel, mergeName, merge);
  attnc::gpu_kernels::buildDecodeKernel(op, kernel, kThreads, kMinSplitKeys);
  attnc::gpu_kernels::buildMergeKernel(op, mergeKernel);
}

struct AttnLowerToGPUPass
    : public attnc::impl::AttnLowerToGPUBase<AttnLowerToGPUPass> {
  using Base::Base;
  void runOnOperation() override;
};

void AttnLowerToGPUPass::runOnOperation() {
  ModuleOp module = getOperation();
  SmallVector<func::FuncOp> kernels(module.getOps<func::FuncOp>());
  bool failedAny = false;
  auto refuse = [&](Operation *op, const std::string &why) {
    op->emitError() << "the GPU target has no kernel for " << why
                    << " yet; compile it with --target=host";
    failedAny = true;
  };
  for (func::FuncOp func : kernels) {
    Operation *op = nullptr;
    unsigned ops = 0;
    func.walk([&](Operation *o) {
      if (isa<AttnDialect>(o->getDialect())) {
        ++ops;
        op = o;
      }
    });
    if (ops != 1 || !isa<AttentionOp, PagedAttentionOp>(op)) {
      func.emitError() << "kernel '" << func.getSymName()
                       << "' has no GPU lowering: the GPU target compiles "
                          "functions holding one attn.attention or one "
                          "attn.paged_attention (kv_append, merge and "
                          "select_pages run on --target=host)";
      failedAny = true;
      continue;
    }
    if (auto prefill = dyn_cast<AttentionOp>(op)) {
      if (std::optional<std::string> why = unsupported(prefill)) {
        refuse(op, *why);
        continue;
      }
      lowerPrefill(prefill, func);
    } else {
      auto decode = cast<PagedAttentionOp>(op);
      if (std::optional<std::string> why = unsupported(decode)) {
        refuse(op, *why);
        continue;
      }
      if (decode.isRagged())
        lowerPagedPrefill(decode, func);
      else
        lowerDecode(decode, func);
    }
    func.erase();
  }
  if (failedAny)
    return signalPassFailure();
  module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(),
                  UnitAttr::get(&getContext()));
}

} // namespace
