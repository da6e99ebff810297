//===- Manifest.cpp - kernel signatures, manifest.json and C header -------===//

#include "attnc/Target/Manifest.h"

#include "attn/AttnDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/SmallPtrSet.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/JSON.h"

#include <set>

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;

static std::string dtypeName(Type t) {
  if (t.isF32())
    return "f32";
  if (t.isF16())
    return "f16";
  if (t.isBF16())
    return "bf16";
  if (t.isInteger(32))
    return "i32";
  std::string s;
  llvm::raw_string_ostream(s) << t;
  return s;
}

static bool isCIdentifier(StringRef s) {
  if (s.empty() || llvm::isDigit(s.front()))
    return false;
  return llvm::all_of(s, [](char c) { return llvm::isAlnum(c) || c == '_'; });
}

namespace {
/// Symbols naming each dimension of an attention operand or result.
struct RoleShape {
  const char *role, *defaultName;
  std::vector<const char *> symbols; // nullptr: a head count or head size
};
} // namespace

static RoleShape roleShape(bool ragged, StringRef role) {
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

static FailureOr<KernelInfo> describeKernel(func::FuncOp func) {
  SmallVector<AttentionOp> ops;
  func.walk([&](AttentionOp op) { ops.push_back(op); });
  if (ops.size() != 1)
    return func.emitError()
           << "kernel '" << func.getSymName() << "' contains " << ops.size()
           << " attn.attention ops; a kernel function "
              "holds exactly one";
  AttentionOp op = ops.front();
  KernelInfo k;
  k.name = func.getSymName().str();
  if (!isCIdentifier(k.name))
    return func.emitError() << "kernel name '" << k.name
                            << "' is not a C identifier; rename the function";
  k.ragged = op.isRagged();
  k.numQueryHeads = op.getNumQueryHeads();
  k.numKVHeads = op.getNumKVHeads();
  k.headDim = op.getHeadDim();
  k.dtype = dtypeName(op.getElementType());
  k.scale = op.getScaleOrDefault();
  if (auto cap = op.getSoftcapAttr())
    k.softcap = cap.getValueAsDouble();
  MaskAttr mask = op.getMaskOrNone();
  k.causal = mask.getCausal();
  k.topLeft = mask.getTopLeft();
  k.window = mask.getWindow();
  k.sinks = mask.getSinks();
  k.hasLse = op.getLse() != nullptr;

  // Roles of the operands, to match against function arguments.
  llvm::DenseMap<Value, StringRef> operandRole;
  operandRole[op.getQuery()] = "query";
  operandRole[op.getKey()] = "key";
  operandRole[op.getValue()] = "value";
  if (k.ragged) {
    operandRole[op.getCuSeqlensQ()] = "cu_seqlens_q";
    operandRole[op.getCuSeqlensK()] = "cu_seqlens_k";
  }
  for (auto [value, role] : operandRole)
    if (!isa<BlockArgument>(value) ||
        cast<BlockArgument>(value).getOwner()->getParentOp() != func)
      return op.emitError()
             << "the " << role << " operand of kernel '" << k.name
             << "' must be a function argument; compute "
                "inputs outside the kernel";

  llvm::StringSet<> names;
  auto addArg = [&](StringRef role, Type type, DictionaryAttr attrs,
                    bool isOutput, Location loc) -> LogicalResult {
    RoleShape rs = roleShape(k.ragged, role);
    KernelArg arg;
    arg.role = rs.role;
    arg.isOutput = isOutput;
    arg.name = rs.defaultName;
    if (attrs)
      if (auto name = attrs.getAs<StringAttr>("attn.name"))
        arg.name = name.str();
    if (!isCIdentifier(arg.name))
      return emitError(loc)
             << "argument name '" << arg.name << "' is not a C identifier";
    if (!names.insert(arg.name).second)
      return emitError(loc)
             << "two arguments of kernel '" << k.name << "' are named '"
             << arg.name << "'; set distinct attn.name attributes";
    auto tensor = cast<RankedTensorType>(type);
    arg.dtype = dtypeName(tensor.getElementType());
    for (auto [i, size] : llvm::enumerate(tensor.getShape())) {
      if (ShapedType::isDynamic(size) && rs.symbols[i])
        arg.shape.emplace_back(std::string(rs.symbols[i]));
      else
        arg.shape.emplace_back(size);
    }
    k.args.push_back(std::move(arg));
    return success();
  };

  for (BlockArgument arg : func.getArguments()) {
    auto it = operandRole.find(arg);
    if (it == operandRole.end() || !llvm::hasSingleElement(arg.getUses()))
      return emitError(arg.getLoc())
             << "argument #" << arg.getArgNumber() << " of kernel '" << k.name
             << "' must be used exactly once, as an operand of its "
                "attn.attention";
    if (failed(addArg(it->second, arg.getType(),
                      func.getArgAttrDict(arg.getArgNumber()), false,
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
    StringRef role = value == op.getOutput() ? "output"
                     : value == op.getLse()  ? "lse"
                                             : "";
    if (role.empty())
      return ret.emitError() << "result #" << i << " of kernel '" << k.name
                             << "' must be a result of its attn.attention";
    if (failed(addArg(role, value.getType(), func.getResultAttrDict(i), true,
                      ret.getLoc())))
      return failure();
  }

  // A symbol with a static use anywhere is that static size everywhere, so
  // the runtime checks it on every argument.
  llvm::StringMap<int64_t> staticSymbol;
  for (KernelArg &arg : k.args) {
    RoleShape rs = roleShape(k.ragged, arg.role);
    for (auto [i, dim] : llvm::enumerate(arg.shape))
      if (rs.symbols[i] && std::holds_alternative<int64_t>(dim))
        staticSymbol[rs.symbols[i]] = std::get<int64_t>(dim);
  }
  for (KernelArg &arg : k.args)
    for (ShapeDim &dim : arg.shape)
      if (auto *sym = std::get_if<std::string>(&dim))
        if (auto it = staticSymbol.find(*sym); it != staticSymbol.end())
          dim = it->second;
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
                            "attn.attention");
  return kernels;
}

void attnc::recordTiling(ModuleOp tiled, std::vector<KernelInfo> &kernels,
                         int64_t vectorWidth) {
  for (KernelInfo &k : kernels) {
    auto func = tiled.lookupSymbol<func::FuncOp>(k.name);
    auto tile = func ? func->getAttrOfType<DictionaryAttr>("attn.tile")
                     : DictionaryAttr();
    if (!tile)
      continue;
    auto get = [&](StringRef key) {
      return cast<IntegerAttr>(tile.get(key)).getInt();
    };
    k.blockQ = get("block_q");
    k.blockKV = get("block_kv");
    k.headDimChunk = get("head_dim_chunk");
    k.vectorWidth = vectorWidth;
    k.qkForm = cast<StringAttr>(tile.get("qk_form")).str();
    k.workspaceBytes = get("workspace_bytes");
  }
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
                          StringRef target, StringRef library,
                          StringRef header) {
  llvm::json::Array list;
  for (const KernelInfo &k : kernels) {
    llvm::json::Array args;
    for (const KernelArg &a : k.args)
      args.push_back(llvm::json::Object{{"name", a.name},
                                        {"role", a.role},
                                        {"dir", a.isOutput ? "out" : "in"},
                                        {"dtype", a.dtype},
                                        {"shape", shapeJson(a.shape)}});
    list.push_back(llvm::json::Object{
        {"name", k.name},
        {"entry_run", k.name + "__run"},
        {"entry_work_items", k.name + "__work_items"},
        {"attention",
         llvm::json::Object{
             {"layout", k.ragged ? "ragged" : "dense"},
             {"num_q_heads", k.numQueryHeads},
             {"num_kv_heads", k.numKVHeads},
             {"head_dim", k.headDim},
             {"dtype", k.dtype},
             {"scale", k.scale},
             {"softcap", k.softcap},
             {"mask", llvm::json::Object{{"causal", k.causal},
                                         {"align", k.topLeft ? "top_left"
                                                             : "bottom_right"},
                                         {"window", k.window},
                                         {"sinks", k.sinks}}},
             {"has_lse", k.hasLse}}},
        {"tile", llvm::json::Object{{"block_q", k.blockQ},
                                    {"block_kv", k.blockKV},
                                    {"head_dim_chunk", k.headDimChunk},
                                    {"qk_form", k.qkForm},
                                    {"vector_width", k.vectorWidth}}},
        {"workspace_bytes", k.workspaceBytes},
        {"args", std::move(args)}});
  }
  llvm::json::Object root{{"format_version", 1},
                          {"target", target},
                          {"library", library},
                          {"header", header},
                          {"kernels", std::move(list)}};
  os << llvm::formatv("{0:2}", llvm::json::Value(std::move(root))) << "\n";
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
     << "#include <stdint.h>\n\n#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
     << "/* MLIR memref descriptors: contiguous row-major tensors with\n"
        "   offset 0; strides in elements. */\n";
  std::set<size_t> ranks;
  for (const KernelInfo &k : kernels)
    for (const KernelArg &a : k.args)
      ranks.insert(a.shape.size());
  for (size_t r : ranks)
    os << "#ifndef ATTNC_MEMREF_" << r << "D\n#define ATTNC_MEMREF_" << r
       << "D\ntypedef struct {\n  void *allocated;\n  void *aligned;\n"
       << "  int64_t offset;\n  int64_t sizes[" << r << "];\n  int64_t strides["
       << r << "];\n} attnc_memref" << r << "d;\n#endif\n";
  for (const KernelInfo &k : kernels) {
    os << "\n/* " << k.name << ": " << (k.ragged ? "ragged" : "dense")
       << " attention, " << k.numQueryHeads << " query heads, " << k.numKVHeads
       << " KV heads, head size " << k.headDim << ", " << k.dtype << ".\n";
    for (const KernelArg &a : k.args) {
      os << "     " << (a.isOutput ? "out " : "in  ") << a.name << ": "
         << a.dtype << " [";
      llvm::interleaveComma(a.shape, os, [&](const ShapeDim &d) {
        if (auto *s = std::get_if<std::string>(&d))
          os << *s;
        else
          os << std::get<int64_t>(d);
      });
      os << "]\n";
    }
    os << "   args[i] points to the descriptor of argument i, in this order. "
          "*/\n"
       << "int64_t " << k.name << "__work_items(void **args);\n"
       << "void " << k.name
       << "__run(void **args, int64_t begin, int64_t end);\n"
       << "/* Runs every work item on the calling thread. */\n"
       << "static inline void " << k.name << "(";
    llvm::interleaveComma(k.args, os, [&](const KernelArg &a) {
      os << "attnc_memref" << a.shape.size() << "d *" << a.name;
    });
    os << ") {\n  void *args[] = {";
    llvm::interleaveComma(k.args, os,
                          [&](const KernelArg &a) { os << a.name; });
    os << "};\n  " << k.name << "__run(args, 0, " << k.name
       << "__work_items(args));\n}\n";
  }
  os << "\n#ifdef __cplusplus\n}\n#endif\n\n#endif /* " << guard << " */\n";
}
