//===- Manifest.cpp - kernel signatures, manifest.json and C header -------===//

#include "attnc/Target/Manifest.h"

#include "attn/AttnDialect.h"
#include "attnc/Conversion/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/SmallPtrSet.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/JSON.h"

#include <set>

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;

static std::string storageName(Type t) {
  if (isa<Float8E4M3FNType>(t))
    return "f8e4m3fn";
  if (isa<Float8E5M2Type>(t))
    return "f8e5m2";
  if (t.isInteger(4))
    return "i4";
  return manifestDtypeName(t);
}

static bool isCIdentifier(StringRef s) {
  if (s.empty() || llvm::isDigit(s.front()))
    return false;
  return llvm::all_of(s, [](char c) { return llvm::isAlnum(c) || c == '_'; });
}

/// `batch+1` -> (`batch`, 1); `seqlen_q` -> (`seqlen_q`, 0).
static std::pair<StringRef, int64_t> splitSymbol(StringRef symbol) {
  auto [base, offset] = symbol.split('+');
  int64_t n = 0;
  if (!offset.empty() && !offset.getAsInteger(10, n))
    return {base, n};
  return {symbol, 0};
}

namespace {
/// Symbols naming each dimension of an operand or result of a kernel's op.
struct RoleShape {
  const char *role, *defaultName;
  std::vector<const char *> symbols; // nullptr: a head count or head size
};

/// The kernel's op and the roles of its tensor operands and results.
struct OpRoles {
  Operation *op = nullptr;
  StringRef kind;
  bool ragged = false;
  SmallVector<std::pair<Value, StringRef>> operands;
  Value cache; // the !attn.kv_cache operand, if any
  SmallVector<std::pair<Value, StringRef>> results;
};
} // namespace

/// Block-sparse mask operands of attention kernels: [batch, H, num_q_blocks
/// + 1] and [batch, H, max_blocks] (H static: 1 or kv_heads).
static std::optional<RoleShape> blockSparseRoleShape(StringRef role) {
  if (role == "block_offsets")
    return RoleShape{
        "block_offsets", "block_offsets", {"batch", nullptr, "num_q_blocks+1"}};
  if (role == "block_indices")
    return RoleShape{
        "block_indices", "block_indices", {"batch", nullptr, "max_blocks"}};
  if (role == "block_full")
    return RoleShape{
        "block_full", "block_full", {"batch", nullptr, "max_blocks"}};
  return std::nullopt;
}

static RoleShape attentionRoleShape(bool ragged, StringRef role) {
  if (std::optional<RoleShape> rs = blockSparseRoleShape(role))
    return *rs;
  if (!ragged) {
    if (role == "query")
      return {"query", "q", {"batch", "seqlen_q", nullptr, nullptr}};
    if (role == "key")
      return {"key", "k", {"batch", "seqlen_k", nullptr, nullptr}};
    if (role == "value")
      return {"value", "v", {"batch", "seqlen_k", nullptr, nullptr}};
    if (role == "output")
      return {"output", "o", {"batch", "seqlen_q", nullptr, nullptr}};
    return {"lse", "lse", {"batch", nullptr, "seqlen_q"}};
  }
  if (role == "query")
    return {"query", "q", {"total_q", nullptr, nullptr}};
  if (role == "key")
    return {"key", "k", {"total_k", nullptr, nullptr}};
  if (role == "value")
    return {"value", "v", {"total_k", nullptr, nullptr}};
  if (role == "cu_seqlens_q")
    return {"cu_seqlens_q", "cu_seqlens_q", {"batch+1"}};
  if (role == "cu_seqlens_k")
    return {"cu_seqlens_k", "cu_seqlens_k", {"batch+1"}};
  if (role == "output")
    return {"output", "o", {"total_q", nullptr, nullptr}};
  return {"lse", "lse", {nullptr, "total_q"}};
}

static RoleShape pagedRoleShape(bool ragged, StringRef role) {
  if (std::optional<RoleShape> rs = blockSparseRoleShape(role))
    return *rs;
  // Decode: one query per sequence; append/prefill: ragged queries.
  const char *rows = ragged ? "total_q" : "batch";
  if (role == "query")
    return {"query", "q", {rows, nullptr, nullptr}};
  if (role == "output")
    return {"output", "o", {rows, nullptr, nullptr}};
  if (role == "lse")
    return {"lse", "lse", {nullptr, rows}};
  if (role == "kv_indptr")
    return {"kv_indptr", "kv_indptr", {"batch+1"}};
  if (role == "kv_indices")
    return {"kv_indices", "kv_indices", {"num_page_refs"}};
  if (role == "kv_last_page_len")
    return {"kv_last_page_len", "kv_last_page_len", {"batch"}};
  if (role == "kv_rings")
    return {"kv_rings", "kv_rings", {"batch"}};
  return {"qo_indptr", "qo_indptr", {"batch+1"}};
}

static RoleShape appendRoleShape(StringRef role) {
  if (role == "k_new")
    return {"k_new", "k_new", {"num_new", nullptr, nullptr}};
  if (role == "v_new")
    return {"v_new", "v_new", {"num_new", nullptr, nullptr}};
  if (role == "ring_slots")
    return {"ring_slots", "ring_slots", {"num_new"}};
  return {"slot_mapping", "slot_mapping", {"num_new"}};
}

static RoleShape mergeRoleShape(StringRef role) {
  if (role == "partial_o")
    return {"partial_o",
            "partial_o",
            {"num_partials", "num_tokens", nullptr, nullptr}};
  if (role == "partial_lse")
    return {
        "partial_lse", "partial_lse", {"num_partials", nullptr, "num_tokens"}};
  if (role == "output")
    return {"output", "o", {"num_tokens", nullptr, nullptr}};
  return {"lse", "lse", {nullptr, "num_tokens"}};
}

static RoleShape selectPagesRoleShape(StringRef role) {
  if (role == "query")
    return {"query", "q", {"batch", nullptr, nullptr}};
  if (role == "block_offsets")
    return {"block_offsets", "block_offsets", {"batch", nullptr, nullptr}};
  if (role == "block_indices")
    return {"block_indices", "block_indices", {"batch", nullptr, nullptr}};
  return pagedRoleShape(/*ragged=*/false, role);
}

static bool isCacheComponentRole(StringRef role) {
  return role == "k_pages" || role == "v_pages" || role == "k_scale" ||
         role == "v_scale" || role == "k_min" || role == "v_min" ||
         role == "k_recent" || role == "v_recent" || role == "k_page_max" ||
         role == "k_page_min";
}

static RoleShape roleShape(const OpRoles &roles, StringRef role) {
  if (roles.kind == "attention")
    return attentionRoleShape(roles.ragged, role);
  if (roles.kind == "paged_attention")
    return pagedRoleShape(roles.ragged, role);
  if (roles.kind == "kv_append")
    return appendRoleShape(role);
  if (roles.kind == "select_pages")
    return selectPagesRoleShape(role);
  return mergeRoleShape(role);
}

/// Fills the attention parameters shared by attn.attention and
/// attn.paged_attention.
template <typename OpTy> static void describeAttention(OpTy op, KernelInfo &k) {
  k.hasAttention = true;
  k.numQueryHeads = op.getNumQueryHeads();
  k.numKVHeads = op.getNumKVHeads();
  k.headDim = op.getHeadDim();
  k.dtype = manifestDtypeName(op.getElementType());
  k.scale = op.getScaleOrDefault();
  if (auto cap = op.getSoftcapAttr())
    k.softcap = cap.getValueAsDouble();
  // With head_masks the op has no `mask`: the top-level mask stays none
  // (with the heads' common alignment) and head_masks replaces it.
  MaskAttr mask = op.getMaskOrNone();
  k.causal = mask.getCausal();
  k.topLeft = mask.getTopLeft();
  k.window = mask.getWindow();
  k.sinks = mask.getSinks();
  if (op.getHeadMasksAttr()) {
    for (MaskAttr m : op.getKVHeadMasks())
      k.headMasks.push_back(
          {m.getCausal(), m.getTopLeft(), m.getWindow(), m.getSinks()});
    if (!k.headMasks.empty())
      k.topLeft = k.headMasks.front().topLeft;
  }
  k.hasLse = op.getLse() != nullptr;
}

/// The block-sparse operands (roles and the kernel-level block_sparse
/// object) of an attention op that has them.
template <typename OpTy>
static void describeBlockSparse(OpTy op, KernelInfo &k,
                                SmallVector<std::pair<Value, StringRef>> &ops) {
  if (!op.isBlockSparse())
    return;
  ops.push_back({op.getBlockOffsets(), "block_offsets"});
  ops.push_back({op.getBlockIndices(), "block_indices"});
  if (op.getBlockFull())
    ops.push_back({op.getBlockFull(), "block_full"});
  KernelInfo::BlockSparse bs;
  if (DenseI64ArrayAttr size = op.getBlockSizeAttr();
      size && size.size() == 2) {
    bs.blockQ = size[0];
    bs.blockKV = size[1];
  }
  bs.heads =
      cast<RankedTensorType>(op.getBlockOffsets().getType()).getDimSize(1);
  k.blockSparse = bs;
}

static OpRoles opRoles(Operation *op, KernelInfo &k) {
  OpRoles r;
  r.op = op;
  llvm::TypeSwitch<Operation *>(op)
      .Case([&](AttentionOp a) {
        r.kind = "attention";
        r.ragged = a.isRagged();
        describeAttention(a, k);
        k.layout = r.ragged ? "ragged" : "dense";
        r.operands = {{a.getQuery(), "query"},
                      {a.getKey(), "key"},
                      {a.getValue(), "value"}};
        if (r.ragged) {
          r.operands.push_back({a.getCuSeqlensQ(), "cu_seqlens_q"});
          r.operands.push_back({a.getCuSeqlensK(), "cu_seqlens_k"});
        }
        describeBlockSparse(a, k, r.operands);
        r.results.push_back({a.getOutput(), "output"});
        if (a.getLse())
          r.results.push_back({a.getLse(), "lse"});
      })
      .Case([&](PagedAttentionOp a) {
        r.kind = "paged_attention";
        r.ragged = a.isRagged();
        describeAttention(a, k);
        k.layout = "paged";
        r.operands = {{a.getQuery(), "query"},
                      {a.getKvIndptr(), "kv_indptr"},
                      {a.getKvIndices(), "kv_indices"},
                      {a.getKvLastPageLen(), "kv_last_page_len"}};
        if (r.ragged)
          r.operands.push_back({a.getQoIndptr(), "qo_indptr"});
        if (a.getKvRings())
          r.operands.push_back({a.getKvRings(), "kv_rings"});
        describeBlockSparse(a, k, r.operands);
        r.cache = a.getCache();
        r.results.push_back({a.getOutput(), "output"});
        if (a.getLse())
          r.results.push_back({a.getLse(), "lse"});
      })
      .Case([&](KVAppendOp a) {
        r.kind = "kv_append";
        r.operands = {{a.getKey(), "k_new"},
                      {a.getValue(), "v_new"},
                      {a.getSlots(), "slot_mapping"}};
        if (a.getRingSlots())
          r.operands.push_back({a.getRingSlots(), "ring_slots"});
        r.cache = a.getCache();
      })
      .Case([&](SelectPagesOp a) {
        r.kind = "select_pages";
        r.operands = {{a.getQuery(), "query"},
                      {a.getKvIndptr(), "kv_indptr"},
                      {a.getKvIndices(), "kv_indices"},
                      {a.getKvLastPageLen(), "kv_last_page_len"}};
        r.cache = a.getCache();
        r.results = {{a.getOffsets(), "block_offsets"},
                     {a.getIndices(), "block_indices"}};
        k.selectPages =
            KernelInfo::SelectPages{static_cast<int64_t>(a.getTopK()),
                                    static_cast<int64_t>(a.getSinkPages()),
                                    static_cast<int64_t>(a.getRecentPages())};
      })
      .Case([&](MergeOp a) {
        r.kind = "merge";
        r.operands = {{a.getPartialOutput(), "partial_o"},
                      {a.getPartialLse(), "partial_lse"}};
        r.results.push_back({a.getOutput(), "output"});
        if (a.getLse())
          r.results.push_back({a.getLse(), "lse"});
      });
  k.kind = r.kind.str();
  k.ragged = r.ragged;
  return r;
}

/// The `attn.instrumented` strings of a kernel function (e.g. the tile
/// counters of attnc --count-tiles).
static LogicalResult readInstrumented(func::FuncOp func, KernelInfo &k) {
  Attribute attr = func->getAttr("attn.instrumented");
  if (!attr)
    return success();
  auto list = dyn_cast<ArrayAttr>(attr);
  if (!list || !llvm::all_of(list, llvm::IsaPred<StringAttr>))
    return func.emitError() << "kernel '" << func.getSymName()
                            << "' has attn.instrumented = " << attr
                            << "; expected an array of strings";
  k.instrumented.clear();
  for (Attribute entry : list)
    k.instrumented.push_back(cast<StringAttr>(entry).str());
  return success();
}

/// The op's `attn.tile_plan`, when attn-plan-tiles planned its GPU kernel.
static LogicalResult readTilePlan(Operation *op, KernelInfo &k) {
  Attribute attr = op->getAttr("attn.tile_plan");
  if (!attr)
    return success();
  auto dict = dyn_cast<DictionaryAttr>(attr);
  KernelInfo::TilePlan plan;
  bool ok = dict != nullptr;
  auto get = [&](StringRef key, int64_t &out) {
    auto value = dict ? dict.getAs<IntegerAttr>(key) : IntegerAttr();
    ok &= value != nullptr;
    if (value)
      out = value.getInt();
  };
  get("block_q", plan.blockQ);
  get("block_kv", plan.blockKV);
  get("stages", plan.stages);
  get("smem_bytes", plan.smemBytes);
  auto buffers = dict ? dict.getAs<ArrayAttr>("buffers") : ArrayAttr();
  ok &= buffers != nullptr;
  for (Attribute entry : buffers ? buffers.getValue() : ArrayRef<Attribute>()) {
    auto buffer = dyn_cast<DictionaryAttr>(entry);
    auto name = buffer ? buffer.getAs<StringAttr>("name") : StringAttr();
    auto bytes = buffer ? buffer.getAs<IntegerAttr>("bytes") : IntegerAttr();
    ok &= name && bytes;
    if (name && bytes)
      plan.buffers.emplace_back(name.str(), bytes.getInt());
  }
  if (!ok)
    return op->emitError()
           << "attn.tile_plan = " << attr
           << "; expected {block_q, block_kv, stages, smem_bytes, buffers = "
              "[{name, bytes}, ...]} as attn-plan-tiles writes it";
  k.tilePlan = std::move(plan);
  return success();
}

static FailureOr<KernelInfo> describeKernel(func::FuncOp func) {
  SmallVector<Operation *> ops;
  func.walk([&](Operation *op) {
    if (isa<AttentionOp, PagedAttentionOp, KVAppendOp, MergeOp, SelectPagesOp>(
            op))
      ops.push_back(op);
  });
  if (ops.size() != 1)
    return func.emitError()
           << "kernel '" << func.getSymName() << "' contains " << ops.size()
           << " attn.attention, attn.paged_attention, attn.kv_append, "
              "attn.merge or attn.select_pages ops; a kernel function holds "
              "exactly one";
  KernelInfo k;
  k.name = func.getSymName().str();
  if (!isCIdentifier(k.name))
    return func.emitError() << "kernel name '" << k.name
                            << "' is not a C identifier; rename the function";
  OpRoles roles = opRoles(ops.front(), k);
  if (failed(readInstrumented(func, k)) || failed(readTilePlan(roles.op, k)))
    return failure();
  Operation *op = roles.op;
  StringRef opName = op->getName().getStringRef();

  // Roles of the operands, to match against function arguments.
  llvm::DenseMap<Value, StringRef> operandRole;
  for (auto [value, role] : roles.operands)
    operandRole[value] = role;
  if (roles.cache)
    operandRole[roles.cache] = "cache";
  for (auto [value, role] : operandRole)
    if (!isa<BlockArgument>(value) ||
        cast<BlockArgument>(value).getOwner()->getParentOp() != func)
      return op->emitError()
             << "the " << role << " operand of kernel '" << k.name
             << "' must be a function argument; compute "
                "inputs outside the kernel";

  llvm::StringSet<> names;
  auto addName = [&](KernelArg &arg, Location loc) -> LogicalResult {
    if (!isCIdentifier(arg.name))
      return emitError(loc)
             << "argument name '" << arg.name << "' is not a C identifier";
    if (!names.insert(arg.name).second)
      return emitError(loc)
             << "two arguments of kernel '" << k.name << "' are named '"
             << arg.name << "'; set distinct attn.name attributes";
    k.args.push_back(std::move(arg));
    return success();
  };
  auto addArg = [&](StringRef role, Type type, DictionaryAttr attrs,
                    StringRef dir, Location loc) -> LogicalResult {
    RoleShape rs = roleShape(roles, role);
    KernelArg arg;
    arg.role = rs.role;
    arg.dir = dir.str();
    arg.name = rs.defaultName;
    if (attrs)
      if (auto name = attrs.getAs<StringAttr>("attn.name"))
        arg.name = name.str();
    auto tensor = cast<RankedTensorType>(type);
    arg.dtype = manifestDtypeName(tensor.getElementType());
    for (auto [i, size] : llvm::enumerate(tensor.getShape())) {
      if (ShapedType::isDynamic(size) && i < rs.symbols.size() && rs.symbols[i])
        arg.shape.emplace_back(std::string(rs.symbols[i]));
      else
        arg.shape.emplace_back(size);
    }
    return addName(arg, loc);
  };
  // A cache argument is its component buffers, in order.
  auto addCache = [&](BlockArgument value) -> LogicalResult {
    auto type = cast<KVCacheType>(value.getType());
    std::string cacheName = cacheArgumentName(func, value.getArgNumber());
    if (!isCIdentifier(cacheName))
      return emitError(value.getLoc())
             << "cache name '" << cacheName << "' is not a C identifier";
    KVCacheInfo info;
    info.name = cacheName;
    info.pageSize = type.getPageSize();
    info.numKVHeads = type.getNumKVHeads();
    info.headDim = type.getHeadDim();
    info.layout = type.getHeadMajor() ? "hnd" : "nhd";
    info.storage = storageName(type.getStorage());
    info.kGroup = type.getKGroup();
    info.residual = type.getResidual();
    info.summary = type.hasPageSummary();
    info.bytesPerToken = type.getBytesPerToken();
    k.kvCache = info;
    StringRef dir = roles.kind == "kv_append" ? "inout" : "in";
    for (const KVCacheType::Component &c : type.getComponents()) {
      KernelArg arg;
      arg.name = cacheName + "_" + c.role.str();
      arg.role = c.role.str();
      arg.dir = dir.str();
      arg.dtype = c.dtype.str();
      for (auto [i, size] : llvm::enumerate(c.shape)) {
        if (ShapedType::isDynamic(size))
          arg.shape.emplace_back(c.countSymbol.str());
        else
          arg.shape.emplace_back(size);
      }
      if (failed(addName(arg, value.getLoc())))
        return failure();
    }
    return success();
  };

  for (BlockArgument arg : func.getArguments()) {
    auto it = operandRole.find(arg);
    if (it == operandRole.end() || !llvm::hasSingleElement(arg.getUses()))
      return emitError(arg.getLoc())
             << "argument #" << arg.getArgNumber() << " of kernel '" << k.name
             << "' must be used exactly once, as an operand of its " << opName;
    if (it->second == "cache") {
      if (failed(addCache(arg)))
        return failure();
      continue;
    }
    if (failed(addArg(it->second, arg.getType(),
                      func.getArgAttrDict(arg.getArgNumber()), "in",
                      arg.getLoc())))
      return failure();
  }
  auto ret = cast<func::ReturnOp>(func.getBody().back().getTerminator());
  llvm::SmallPtrSet<void *, 2> returned;
  for (auto [i, value] : llvm::enumerate(ret.getOperands())) {
    if (!returned.insert(value.getAsOpaquePointer()).second)
      return ret.emitError() << "result #" << i << " of kernel '" << k.name
                             << "' returns the same value as an earlier "
                                "result; return each attention result once";
    StringRef role;
    for (auto [result, resultRole] : roles.results)
      if (value == result)
        role = resultRole;
    if (role.empty())
      return ret.emitError() << "result #" << i << " of kernel '" << k.name
                             << "' must be a result of its " << opName;
    if (failed(addArg(role, value.getType(), func.getResultAttrDict(i), "out",
                      ret.getLoc())))
      return failure();
  }

  // A symbol with a static use anywhere is that static size everywhere, so
  // the runtime checks it on every argument. `batch` and `batch+1` are one
  // symbol.
  for (KernelArg &arg : k.args) {
    if (isCacheComponentRole(arg.role))
      continue; // static but for num_pages/num_rings: no static use
    RoleShape rs = roleShape(roles, arg.role);
    for (auto [i, dim] : llvm::enumerate(arg.shape))
      if (i < rs.symbols.size() && rs.symbols[i] &&
          std::holds_alternative<int64_t>(dim)) {
        auto [base, offset] = splitSymbol(rs.symbols[i]);
        k.staticSymbols.emplace(base.str(), std::get<int64_t>(dim) - offset);
      }
  }
  for (KernelArg &arg : k.args)
    for (ShapeDim &dim : arg.shape)
      if (auto *sym = std::get_if<std::string>(&dim)) {
        auto [base, offset] = splitSymbol(*sym);
        if (auto it = k.staticSymbols.find(base.str());
            it != k.staticSymbols.end())
          dim = it->second + offset;
      }
  return k;
}

FailureOr<std::vector<KernelInfo>> attnc::collectKernels(ModuleOp module) {
  std::vector<KernelInfo> kernels;
  bool ok = true;
  for (auto func : module.getOps<func::FuncOp>()) {
    if (func.isDeclaration())
      continue;
    FailureOr<KernelInfo> k = describeKernel(func);
    if (failed(k))
      ok = false;
    else
      kernels.push_back(std::move(*k));
  }
  if (!ok)
    return failure();
  if (kernels.empty())
    return module.emitError("no kernels: the module has no func.func with an "
                            "attn.attention, attn.paged_attention, "
                            "attn.kv_append, attn.merge or attn.select_pages");
  return kernels;
}

LogicalResult attnc::recordScratch(Operation *at, ArrayAttr list,
                                   KernelInfo &k) {
  k.scratch.clear();
  llvm::StringSet<> names;
  for (const KernelArg &a : k.args)
    names.insert(a.name);
  for (Attribute entry : list) {
    auto dict = dyn_cast<DictionaryAttr>(entry);
    auto name = dict ? dict.getAs<StringAttr>("name") : StringAttr();
    auto dtype = dict ? dict.getAs<StringAttr>("dtype") : StringAttr();
    auto shape = dict ? dict.getAs<ArrayAttr>("shape") : ArrayAttr();
    if (!name || !dtype || !shape)
      return at->emitError()
             << "kernel '" << k.name << "' has scratch entry " << entry
             << "; expected {name = \"...\", dtype = \"...\", shape = "
                "[...]}";
    if (!isCIdentifier(name.getValue()))
      return at->emitError() << "scratch buffer name '" << name.getValue()
                             << "' is not a C identifier";
    if (!names.insert(name.getValue()).second)
      return at->emitError()
             << "scratch buffer '" << name.getValue() << "' of kernel '"
             << k.name
             << "' has the name of an argument or of another scratch "
                "buffer; rename the argument (attn.name)";
    ScratchBuffer s;
    s.name = name.str();
    s.dtype = dtype.str();
    for (Attribute dim : shape) {
      if (auto size = dyn_cast<IntegerAttr>(dim)) {
        s.shape.emplace_back(size.getInt());
        continue;
      }
      auto symbol = dyn_cast<StringAttr>(dim);
      if (!symbol)
        return at->emitError()
               << "scratch buffer '" << s.name << "' has shape entry " << dim
               << "; expected an integer or a symbol string";
      auto [base, offset] = splitSymbol(symbol.getValue());
      if (auto it = k.staticSymbols.find(base.str());
          it != k.staticSymbols.end())
        s.shape.emplace_back(it->second + offset);
      else
        s.shape.emplace_back(symbol.str());
    }
    k.scratch.push_back(std::move(s));
  }
  return success();
}

LogicalResult attnc::recordTiling(ModuleOp tiled,
                                  std::vector<KernelInfo> &kernels,
                                  int64_t vectorWidth) {
  for (KernelInfo &k : kernels) {
    auto func = tiled.lookupSymbol<func::FuncOp>(k.name);
    if (!func)
      continue;
    if (auto tile = func->getAttrOfType<DictionaryAttr>("attn.tile")) {
      auto get = [&](StringRef key) -> int64_t {
        auto value = tile.getAs<IntegerAttr>(key);
        return value ? value.getInt() : 0;
      };
      k.hasTile = true;
      k.blockQ = get("block_q");
      k.blockKV = get("block_kv");
      k.headDimChunk = get("head_dim_chunk");
      k.vectorWidth = vectorWidth;
      if (auto form = tile.getAs<StringAttr>("qk_form"))
        k.qkForm = form.str();
      if (auto ws = tile.getAs<IntegerAttr>("workspace_bytes"))
        k.workspaceBytes = ws.getInt();
    }
    if (auto phases = func->getAttrOfType<IntegerAttr>("attn.phases"))
      k.phases = phases.getInt();
    // The lowering may instrument the kernel (tile counters).
    if (failed(readInstrumented(func, k)))
      return failure();
    if (auto list = func->getAttrOfType<ArrayAttr>("attn.scratch"))
      if (failed(recordScratch(func, list, k)))
        return failure();
  }
  return success();
}

static llvm::json::Value shapeJson(const std::vector<ShapeDim> &shape) {
  llvm::json::Array a;
  for (const ShapeDim &d : shape) {
    if (auto *s = std::get_if<std::string>(&d))
      a.push_back(*s);
    else
      a.push_back(std::get<int64_t>(d));
  }
  return a;
}

void attnc::writeManifest(llvm::raw_ostream &os,
                          const std::vector<KernelInfo> &kernels,
                          StringRef target, StringRef library, StringRef header,
                          const llvm::json::Array *steps,
                          const std::vector<std::string> *archs) {
  bool cuda = target == "cuda";
  llvm::json::Array list;
  for (const KernelInfo &k : kernels) {
    llvm::json::Array args;
    for (const KernelArg &a : k.args)
      args.push_back(llvm::json::Object{{"name", a.name},
                                        {"role", a.role},
                                        {"dir", a.dir},
                                        {"dtype", a.dtype},
                                        {"shape", shapeJson(a.shape)}});
    llvm::json::Object kernel{{"name", k.name},
                              {"kind", k.kind},
                              {"phases", k.phases},
                              {"args", std::move(args)}};
    if (!cuda) {
      kernel["entry_run"] = k.name + "__run";
      kernel["entry_work_items"] = k.name + "__work_items";
    }
    if (k.gpu)
      kernel["gpu"] = llvm::json::Object(*k.gpu);
    if (k.hasAttention)
      kernel["attention"] = llvm::json::Object{
          {"layout", k.layout},
          {"num_q_heads", k.numQueryHeads},
          {"num_kv_heads", k.numKVHeads},
          {"head_dim", k.headDim},
          {"dtype", k.dtype},
          {"scale", k.scale},
          {"softcap", k.softcap},
          {"mask", llvm::json::Object{{"causal", k.causal},
                                      {"align",
                                       k.topLeft ? "top_left" : "bottom_right"},
                                      {"window", k.window},
                                      {"sinks", k.sinks}}},
          {"has_lse", k.hasLse}};
    if (!k.headMasks.empty()) {
      llvm::json::Array masks;
      for (const MaskInfo &m : k.headMasks)
        masks.push_back(llvm::json::Object{{"causal", m.causal},
                                           {"window", m.window},
                                           {"sinks", m.sinks},
                                           {"top_left", m.topLeft}});
      (*kernel.getObject("attention"))["head_masks"] = std::move(masks);
    }
    if (k.blockSparse)
      kernel["block_sparse"] =
          llvm::json::Object{{"block_q", k.blockSparse->blockQ},
                             {"block_kv", k.blockSparse->blockKV},
                             {"heads", k.blockSparse->heads}};
    if (k.selectPages)
      kernel["select_pages"] =
          llvm::json::Object{{"top_k", k.selectPages->topK},
                             {"sink_pages", k.selectPages->sinkPages},
                             {"recent_pages", k.selectPages->recentPages}};
    if (!k.instrumented.empty()) {
      llvm::json::Array list;
      for (const std::string &s : k.instrumented)
        list.push_back(s);
      kernel["instrumented"] = std::move(list);
    }
    if (k.kvCache) {
      llvm::json::Object cache{{"name", k.kvCache->name},
                               {"page_size", k.kvCache->pageSize},
                               {"num_kv_heads", k.kvCache->numKVHeads},
                               {"head_dim", k.kvCache->headDim},
                               {"layout", k.kvCache->layout},
                               {"storage", k.kvCache->storage},
                               {"k_group", k.kvCache->kGroup},
                               {"residual", k.kvCache->residual},
                               {"bytes_per_token", k.kvCache->bytesPerToken}};
      // Only caches with summaries carry the field (older readers and
      // artifacts stay as they were).
      if (k.kvCache->summary)
        cache["summary"] = "minmax";
      kernel["kv_cache"] = std::move(cache);
    }
    if (k.hasTile)
      kernel["tile"] = llvm::json::Object{{"block_q", k.blockQ},
                                          {"block_kv", k.blockKV},
                                          {"head_dim_chunk", k.headDimChunk},
                                          {"qk_form", k.qkForm},
                                          {"vector_width", k.vectorWidth}};
    if (k.workspaceBytes)
      kernel["workspace_bytes"] = *k.workspaceBytes;
    if (k.tilePlan) {
      llvm::json::Array buffers;
      for (const auto &[name, bytes] : k.tilePlan->buffers)
        buffers.push_back(llvm::json::Object{{"name", name}, {"bytes", bytes}});
      kernel["tile_plan"] =
          llvm::json::Object{{"block_q", k.tilePlan->blockQ},
                             {"block_kv", k.tilePlan->blockKV},
                             {"stages", k.tilePlan->stages},
                             {"smem_bytes", k.tilePlan->smemBytes},
                             {"buffers", std::move(buffers)}};
    }
    llvm::json::Array scratch;
    for (const ScratchBuffer &s : k.scratch)
      scratch.push_back(llvm::json::Object{
          {"name", s.name}, {"dtype", s.dtype}, {"shape", shapeJson(s.shape)}});
    kernel["scratch"] = std::move(scratch);
    list.push_back(std::move(kernel));
  }
  llvm::json::Object root{{"format_version", 2},
                          {"target", target},
                          {"header", header},
                          {"kernels", std::move(list)}};
  if (!cuda)
    root["library"] = library;
  if (archs)
    root["archs"] = llvm::json::Array(*archs);
  if (steps && !steps->empty())
    root["steps"] = llvm::json::Array(*steps);
  os << llvm::formatv("{0:2}", llvm::json::Value(std::move(root))) << "\n";
}

static void writeShape(llvm::raw_ostream &os,
                       const std::vector<ShapeDim> &shape) {
  os << "[";
  llvm::interleaveComma(shape, os, [&](const ShapeDim &d) {
    if (auto *s = std::get_if<std::string>(&d))
      os << *s;
    else
      os << std::get<int64_t>(d);
  });
  os << "]";
}

/// The first line of a kernel's comment: what it computes.
static void writeKindLine(llvm::raw_ostream &os, const KernelInfo &k) {
  os << "\n/* " << k.name << ": ";
  if (k.kind == "attention")
    os << k.layout << " attention";
  else if (k.kind == "paged_attention")
    os << "paged attention (" << (k.ragged ? "append/prefill" : "decode")
       << ")";
  else if (k.kind == "kv_append")
    os << "KV cache append";
  else if (k.kind == "select_pages")
    os << "query-aware page selection, top_k " << k.selectPages->topK
       << " (sink_pages " << k.selectPages->sinkPages << ", recent_pages "
       << k.selectPages->recentPages << ")";
  else
    os << "merge of partial attention results";
  if (k.hasAttention)
    os << ", " << k.numQueryHeads << " query heads, " << k.numKVHeads
       << " KV heads, head size " << k.headDim << ", " << k.dtype;
  os << ".\n   kind " << k.kind << ", " << k.phases
     << (k.phases == 1 ? " phase" : " phases") << ".\n";
  if (k.blockSparse)
    os << "   Block-sparse mask: block_size [" << k.blockSparse->blockQ << ", "
       << k.blockSparse->blockKV << "] (query x key tokens), "
       << (k.blockSparse->heads == 1 ? "one pattern for all heads"
                                     : "one pattern per KV head")
       << ".\n";
  if (!k.headMasks.empty()) {
    os << "   Masks per KV head:";
    for (const MaskInfo &m : k.headMasks) {
      os << (&m == &k.headMasks.front() ? " " : "; ");
      SmallVector<std::string> parts;
      if (m.causal)
        parts.push_back("causal");
      if (m.window >= 0)
        parts.push_back("window " + std::to_string(m.window));
      if (m.sinks)
        parts.push_back("sinks " + std::to_string(m.sinks));
      os << (parts.empty() ? std::string("none") : llvm::join(parts, " "));
    }
    os << (k.headMasks.front().topLeft ? " (top-left aligned)" : "") << ".\n";
  }
  if (!k.instrumented.empty())
    os << "   Instrumented: " << llvm::join(k.instrumented, ", ") << ".\n";
  if (k.kvCache) {
    const KVCacheInfo &c = *k.kvCache;
    os << "   KV cache '" << c.name << "': page_size " << c.pageSize << ", "
       << c.numKVHeads << " KV heads, head size " << c.headDim << ", "
       << c.layout << ", " << c.storage << " storage";
    if (c.kGroup)
      os << ", k_group " << c.kGroup;
    if (c.residual)
      os << ", residual " << c.residual;
    if (c.summary)
      os << ", page summaries (min/max)";
    os << ", " << llvm::format("%g", c.bytesPerToken) << " bytes per token.\n";
  }
}

/// The manifest's declaration and a lookup of every exported symbol by name,
/// so a statically linked artifact runs through attnrt_open_embedded
/// without dlopen.
static void writeEmbedding(llvm::raw_ostream &os,
                           const std::vector<KernelInfo> &kernels,
                           StringRef stem) {
  std::string id = cIdentifier(stem);
  for (const KernelInfo &k : kernels)
    if (llvm::is_contained(k.instrumented, "tile_stats"))
      os << "extern int64_t " << k.name << "__tile_stats[3];\n";
  os << "\n/* manifest.json of these kernels, defined in the artifact. */\n"
     << "extern const char " << embeddedManifestSymbol(stem) << "[];\n\n"
     << "/* The address of an exported symbol by name (NULL if unknown), for\n"
        "   attnrt_open_embedded(attnc_"
     << id << "_manifest, attnc_" << id << "_symbol, ...). */\n"
     << "static inline void *attnc_" << id << "_symbol(const char *name) {\n";
  auto entry = [&](const std::string &symbol) {
    os << "  if (strcmp(name, \"" << symbol << "\") == 0)\n    return (void *)"
       << symbol << ";\n";
  };
  for (const KernelInfo &k : kernels) {
    entry(k.name + "__work_items");
    entry(k.name + "__run");
    if (llvm::is_contained(k.instrumented, "tile_stats"))
      entry(k.name + "__tile_stats");
  }
  os << "  return NULL;\n}\n";
}

void attnc::writeHeader(llvm::raw_ostream &os,
                        const std::vector<KernelInfo> &kernels,
                        StringRef stem) {
  std::string guard = "ATTNC_KERNELS_" + stem.upper() + "_H";
  for (char &c : guard)
    if (!llvm::isAlnum(c))
      c = '_';
  os << "/* Generated by attnc: host kernels of " << stem
     << ".mlir. Do not edit. */\n"
     << "#ifndef " << guard << "\n#define " << guard << "\n\n"
     << "#include <stddef.h>\n#include <stdint.h>\n#include <string.h>\n\n"
     << "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
     << "/* MLIR memref descriptors: contiguous row-major tensors with\n"
        "   offset 0; strides in elements. */\n";
  std::set<size_t> ranks;
  for (const KernelInfo &k : kernels) {
    for (const KernelArg &a : k.args)
      ranks.insert(a.shape.size());
    for (const ScratchBuffer &s : k.scratch)
      ranks.insert(s.shape.size());
  }
  for (size_t r : ranks)
    os << "#ifndef ATTNC_MEMREF_" << r << "D\n#define ATTNC_MEMREF_" << r
       << "D\ntypedef struct {\n  void *allocated;\n  void *aligned;\n"
       << "  int64_t offset;\n  int64_t sizes[" << r << "];\n  int64_t strides["
       << r << "];\n} attnc_memref" << r << "d;\n#endif\n";
  for (const KernelInfo &k : kernels) {
    writeKindLine(os, k);
    for (const KernelArg &a : k.args) {
      os << "     " << llvm::left_justify(a.dir, 5) << " " << a.name << ": "
         << a.dtype << " ";
      writeShape(os, a.shape);
      os << "\n";
    }
    for (const ScratchBuffer &s : k.scratch) {
      os << "     scratch " << s.name << ": " << s.dtype << " ";
      writeShape(os, s.shape);
      os << "\n";
    }
    os << "   args[i] points to the descriptor of argument i, in this order";
    if (!k.scratch.empty())
      os << ",\n   scratch buffers included (the caller allocates them)";
    os << ".\n";
    if (k.phases == 1)
      os << "   One phase: its work items are independent. */\n";
    else
      os << "   Phases 0.." << k.phases - 1
         << " run in order, each after the previous one's items are all\n"
            "   done; the items of one phase are independent. */\n";
    os << "int64_t " << k.name << "__work_items(void **args, int64_t phase);\n"
       << "void " << k.name
       << "__run(void **args, int64_t phase, int64_t begin, int64_t end);\n";
    if (!k.scratch.empty()) {
      os << "/* No convenience wrapper: " << k.name
         << " needs scratch buffers;\n   the caller allocates them and "
            "appends their descriptors to args[]\n   after the arguments. "
            "*/\n";
      continue;
    }
    os << "/* Runs every phase's work items on the calling thread. */\n"
       << "static inline void " << k.name << "(";
    llvm::interleaveComma(k.args, os, [&](const KernelArg &a) {
      os << "attnc_memref" << a.shape.size() << "d *" << a.name;
    });
    os << ") {\n  void *attnc_args[] = {";
    llvm::interleaveComma(k.args, os,
                          [&](const KernelArg &a) { os << a.name; });
    os << "};\n  for (int64_t attnc_phase = 0; attnc_phase < " << k.phases
       << "; ++attnc_phase)\n    " << k.name
       << "__run(attnc_args, attnc_phase, 0, " << k.name
       << "__work_items(attnc_args, attnc_phase));\n}\n";
  }
  writeEmbedding(os, kernels, stem);
  os << "\n#ifdef __cplusplus\n}\n#endif\n\n#endif /* " << guard << " */\n";
}

std::string attnc::cIdentifier(StringRef stem) {
  std::string id;
  if (stem.empty() || llvm::isDigit(stem.front()))
    id = "_";
  for (char c : stem)
    id += llvm::isAlnum(c) ? c : '_';
  return id;
}

std::string attnc::embeddedManifestSymbol(StringRef stem) {
  return "attnc_" + cIdentifier(stem) + "_manifest";
}

/// The symbols a launch's parameters take, in order.
static std::vector<std::string> launchSymbols(const llvm::json::Object &gpu) {
  std::vector<std::string> symbols;
  for (const llvm::json::Value &p : *gpu.getArray("params"))
    if (auto s = p.getAsObject()->getString("symbol"))
      symbols.push_back(s->str());
  return symbols;
}

/// `static inline attnc_gpu_launch FN(symbols)`: the grid, block and shared
/// memory of one launch (the main kernel's or the merge's).
static void writeLaunchFunction(llvm::raw_ostream &os, StringRef fn,
                                const llvm::json::Object &gpu) {
  std::vector<std::string> symbols = launchSymbols(gpu);
  os << "static inline attnc_gpu_launch " << fn << "(";
  if (symbols.empty())
    os << "void";
  for (size_t i = 0; i < symbols.size(); ++i)
    os << (i ? ", " : "") << "int64_t " << symbols[i];
  os << ") {\n  attnc_gpu_launch l;\n";
  const llvm::json::Array &grid = *gpu.getArray("grid");
  for (size_t i = 0; i < 3; ++i) {
    os << "  l.grid[" << i << "] = (unsigned)";
    if (auto n = grid[i].getAsInteger()) {
      os << *n;
    } else {
      const llvm::json::Object &g = *grid[i].getAsObject();
      int64_t mul = g.getInteger("multiply").value_or(1);
      int64_t div = g.getInteger("divide").value_or(1);
      os << "((" << g.getString("symbol")->str();
      if (mul != 1)
        os << " * " << mul;
      os << " + " << div - 1 << ") / " << div << ")";
    }
    os << ";\n";
  }
  const llvm::json::Array &block = *gpu.getArray("block");
  for (size_t i = 0; i < 3; ++i)
    os << "  l.block[" << i << "] = " << *block[i].getAsInteger() << ";\n";
  os << "  l.dynamic_smem_bytes = " << *gpu.getInteger("smem_bytes") << ";\n";
  for (const std::string &s : symbols)
    os << "  (void)" << s << ";\n";
  os << "  return l;\n}\n";
}

void attnc::writeGPUHeader(llvm::raw_ostream &os,
                           const std::vector<KernelInfo> &kernels,
                           StringRef stem) {
  std::string id = cIdentifier(stem);
  std::string guard = "ATTNC_GPU_KERNELS_" + StringRef(id).upper() + "_H";
  os << "/* Generated by attnc: GPU kernels of " << stem
     << ".mlir. Do not edit.\n   Each kernel is a .entry in NAME.ptx and "
        "NAME.sm_XY.cubin; launch it with\n   cuLaunchKernel (or attnrt's "
        "GPU API) using the geometry below and the\n   parameters listed "
        "(docs/gpu-artifacts.md). */\n"
     << "#ifndef " << guard << "\n#define " << guard << "\n\n"
     << "#include <stddef.h>\n#include <stdint.h>\n\n"
     << "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
     << "#ifndef ATTNC_GPU_LAUNCH\n#define ATTNC_GPU_LAUNCH\n"
     << "typedef struct {\n  unsigned grid[3], block[3];\n"
     << "  size_t dynamic_smem_bytes;\n} attnc_gpu_launch;\n#endif\n";
  for (const KernelInfo &k : kernels) {
    if (!k.gpu)
      continue;
    const llvm::json::Object &gpu = *k.gpu;
    std::string prefix = "attnc_" + id + "_" + k.name;
    writeKindLine(os, k);
    os << "   Parameters, in order:";
    for (const llvm::json::Value &p : *gpu.getArray("params")) {
      const llvm::json::Object &o = *p.getAsObject();
      if (auto arg = o.getString("arg")) {
        os << "\n     void *" << *arg << " (device pointer, ";
        for (const KernelArg &a : k.args)
          if (a.name == *arg) {
            os << a.dtype << " ";
            writeShape(os, a.shape);
          }
        os << ")";
      } else if (auto name = o.getString("scratch")) {
        os << "\n     void *" << *name << " (device pointer into the scratch, ";
        for (const ScratchBuffer &s : k.scratch)
          if (s.name == *name) {
            os << s.dtype << " ";
            writeShape(os, s.shape);
          }
        os << ")";
      } else {
        os << "\n     int32_t " << o.getString("symbol")->str();
      }
    }
    const llvm::json::Object *split = gpu.getObject("split_kv");
    if (split) {
      std::string symbol = split->getString("symbol")->str();
      os << "\n   Split-KV: choose " << symbol << " in [1, "
         << *split->getInteger("max_splits") << "] per call; above 1, "
         << "launch " << *gpu.getObject("merge")->getString("entry")
         << "\n   after it on the same stream (" << prefix
         << "_merge_launch),\n   with the scratch of " << prefix
         << "_scratch_bytes, each buffer at a 256-byte aligned offset";
    }
    os << " */\n";
    writeLaunchFunction(os, prefix + "_launch", gpu);
    if (!split)
      continue;
    os << "#define " << StringRef(prefix).upper() << "_MAX_SPLITS "
       << *split->getInteger("max_splits") << "\n";
    writeLaunchFunction(os, prefix + "_merge_launch", *gpu.getObject("merge"));
    // The scratch's bytes: each buffer's size rounded up to 256.
    std::set<std::string> symbols;
    for (const ScratchBuffer &s : k.scratch)
      for (const ShapeDim &d : s.shape)
        if (auto *symbol = std::get_if<std::string>(&d))
          symbols.insert(*symbol);
    os << "static inline size_t " << prefix << "_scratch_bytes(";
    llvm::interleaveComma(symbols, os,
                          [&](const std::string &s) { os << "int64_t " << s; });
    os << ") {\n  size_t bytes = 0;\n";
    for (const ScratchBuffer &s : k.scratch) {
      int64_t elementBytes = llvm::StringSwitch<int64_t>(s.dtype)
                                 .Cases("f32", "i32", 4)
                                 .Cases("f16", "bf16", 2)
                                 .Default(1);
      os << "  bytes += ((size_t)" << elementBytes;
      for (const ShapeDim &d : s.shape) {
        os << " * (size_t)";
        if (auto *symbol = std::get_if<std::string>(&d))
          os << *symbol;
        else
          os << std::get<int64_t>(d);
      }
      os << " + 255) / 256 * 256; /* " << s.name << " */\n";
    }
    os << "  return bytes;\n}\n";
  }
  os << "\n#ifdef __cplusplus\n}\n#endif\n#endif\n";
}
