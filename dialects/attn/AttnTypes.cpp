//===- AttnTypes.cpp - attn dialect types ---------------------------------===//

#include "attn/AttnDialect.h"

#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace attnc::attn;

#define GET_TYPEDEF_CLASSES
#include "attn/AttnTypes.cpp.inc"

void AttnDialect::registerTypes() {
  addTypes<
#define GET_TYPEDEF_LIST
#include "attn/AttnTypes.cpp.inc"
      >();
}

static constexpr StringLiteral kStorageList =
    "f16, bf16, f8E4M3FN, f8E5M2, i8 or i4";

// Grammar: `<` key `=` value (`,` key `=` value)* `>` with keys page_size,
// kv_heads, head_dim, layout (nhd | hnd), storage (a type), k_group,
// residual, summary (minmax).
Type KVCacheType::parse(AsmParser &parser) {
  int64_t pageSize = -1, numKVHeads = -1, headDim = -1, kGroup = 0,
          residual = 0;
  bool headMajor = false, pageSummary = false;
  Type storage;
  llvm::StringSet<> seen;
  if (parser.parseLess())
    return {};
  do {
    SMLoc loc = parser.getCurrentLocation();
    StringRef key;
    if (parser.parseKeyword(&key) || parser.parseEqual())
      return {};
    if (!seen.insert(key).second) {
      parser.emitError(loc, "kv_cache parameter '") << key << "' given twice";
      return {};
    }
    if (key == "layout") {
      StringRef layout;
      SMLoc at = parser.getCurrentLocation();
      if (parser.parseKeyword(&layout))
        return {};
      if (layout != "nhd" && layout != "hnd") {
        parser.emitError(at, "unknown kv_cache layout '")
            << layout << "'; expected nhd ([token, head, dim] pages) or hnd "
            << "([head, token, dim] pages)";
        return {};
      }
      headMajor = layout == "hnd";
    } else if (key == "summary") {
      StringRef kind;
      SMLoc at = parser.getCurrentLocation();
      if (parser.parseKeyword(&kind))
        return {};
      if (kind != "minmax") {
        parser.emitError(at, "unknown kv_cache summary '")
            << kind << "'; expected minmax (per-page key minima and maxima)";
        return {};
      }
      pageSummary = true;
    } else if (key == "storage") {
      if (parser.parseType(storage))
        return {};
    } else if (key == "page_size" || key == "kv_heads" || key == "head_dim" ||
               key == "k_group" || key == "residual") {
      int64_t value;
      if (parser.parseInteger(value))
        return {};
      (key == "page_size"  ? pageSize
       : key == "kv_heads" ? numKVHeads
       : key == "head_dim" ? headDim
       : key == "k_group"  ? kGroup
                           : residual) = value;
      if (key == "residual" && value == 0) {
        parser.emitError(loc, "kv_cache residual must be at least 1 token "
                              "(omit it for no residual window)");
        return {};
      }
    } else {
      parser.emitError(loc, "unknown kv_cache parameter '")
          << key
          << "'; expected page_size, kv_heads, head_dim, layout, storage, "
             "k_group, residual or summary";
      return {};
    }
  } while (succeeded(parser.parseOptionalComma()));
  if (parser.parseGreater())
    return {};
  for (const char *required :
       {"page_size", "kv_heads", "head_dim", "layout", "storage"})
    if (!seen.contains(required)) {
      parser.emitError(parser.getNameLoc(), "kv_cache is missing '")
          << required << " = ...'";
      return {};
    }
  if (!seen.contains("k_group") && storage &&
      (storage.isInteger(8) || storage.isInteger(4)))
    kGroup = pageSize;
  return parser.getChecked<KVCacheType>(parser.getContext(), pageSize,
                                        numKVHeads, headDim, headMajor, storage,
                                        kGroup, residual, pageSummary);
}

void KVCacheType::print(AsmPrinter &printer) const {
  printer << "<page_size = " << getPageSize()
          << ", kv_heads = " << getNumKVHeads()
          << ", head_dim = " << getHeadDim()
          << ", layout = " << (getHeadMajor() ? "hnd" : "nhd")
          << ", storage = " << getStorage();
  if (isInt8() || isInt4())
    printer << ", k_group = " << getKGroup();
  if (hasResidual())
    printer << ", residual = " << getResidual();
  if (hasPageSummary())
    printer << ", summary = minmax";
  printer << ">";
}

LogicalResult KVCacheType::verify(function_ref<InFlightDiagnostic()> emitError,
                                  int64_t pageSize, int64_t numKVHeads,
                                  int64_t headDim, bool headMajor, Type storage,
                                  int64_t kGroup, int64_t residual,
                                  bool pageSummary) {
  if (pageSize < 1 || pageSize > 256)
    return emitError() << "kv_cache page_size must be 1 to 256 tokens, got "
                       << pageSize;
  if (numKVHeads < 1)
    return emitError() << "kv_cache kv_heads must be positive, got "
                       << numKVHeads;
  if (headDim < 1)
    return emitError() << "kv_cache head_dim must be positive, got " << headDim;
  bool isInt = storage.isSignlessInteger(8) || storage.isSignlessInteger(4);
  if (!storage.isF16() && !storage.isBF16() &&
      !isa<Float8E4M3FNType, Float8E5M2Type>(storage) && !isInt)
    return emitError() << "kv_cache storage must be " << kStorageList
                       << ", got " << storage;
  if (storage.isSignlessInteger(4) && headDim % 2 != 0)
    return emitError() << "kv_cache with i4 storage packs two channels per "
                          "byte: head_dim must be even, got "
                       << headDim;
  if (!isInt && kGroup != 0)
    return emitError() << "kv_cache k_group applies to i8 and i4 storage "
                          "only (per-channel K scales); drop it for "
                       << storage;
  if (isInt && (kGroup < 1 || pageSize % kGroup != 0))
    return emitError() << "kv_cache k_group must divide page_size (" << pageSize
                       << "), got " << kGroup;
  if (residual < 0 || residual > 4096)
    return emitError() << "kv_cache residual must be 1 to 4096 tokens, got "
                       << residual;
  if (residual > 0 && (storage.isF16() || storage.isBF16()))
    return emitError() << "kv_cache residual keeps recent tokens unquantized; "
                       << storage << " storage is not quantized: drop the "
                       << "residual";
  return success();
}

bool KVCacheType::isFloat8() const {
  return isa<Float8E4M3FNType, Float8E5M2Type>(getStorage());
}
bool KVCacheType::isInt8() const { return getStorage().isInteger(8); }
bool KVCacheType::isInt4() const { return getStorage().isInteger(4); }

SmallVector<KVCacheType::Component> KVCacheType::getComponents() const {
  MLIRContext *ctx = getContext();
  const int64_t pages = ShapedType::kDynamic, s = getPageSize(),
                h = getNumKVHeads(), d = getHeadDim();
  Type i8 = IntegerType::get(ctx, 8), f16 = Float16Type::get(ctx),
       f32 = Float32Type::get(ctx);
  Type pageElem = getStorage();
  StringRef dtype = "f16";
  if (getStorage().isBF16())
    dtype = "bf16";
  else if (isa<Float8E4M3FNType>(getStorage()))
    dtype = "f8e4m3fn", pageElem = i8;
  else if (isa<Float8E5M2Type>(getStorage()))
    dtype = "f8e5m2", pageElem = i8;
  else if (isInt8())
    dtype = "i8";
  else if (isInt4())
    dtype = "u8", pageElem = i8;
  int64_t dp = isInt4() ? d / 2 : d;
  SmallVector<int64_t> pageShape = getHeadMajor()
                                       ? SmallVector<int64_t>{pages, h, s, dp}
                                       : SmallVector<int64_t>{pages, s, h, dp};
  StringRef perPage = "num_pages";
  SmallVector<Component> c{
      {"k_pages", pageElem, dtype, pageShape, true, perPage},
      {"v_pages", pageElem, dtype, pageShape, true, perPage}};
  if (isFloat8()) {
    c.push_back({"k_scale", f32, "f32", {h}, false, ""});
    c.push_back({"v_scale", f32, "f32", {h}, false, ""});
  } else if (isInt8() || isInt4()) {
    SmallVector<int64_t> kShape{pages, getGroupsPerPage(), h, d};
    SmallVector<int64_t> vShape{pages, s, h};
    c.push_back({"k_scale", f16, "f16", kShape, true, perPage});
    if (isInt4())
      c.push_back({"k_min", f16, "f16", kShape, true, perPage});
    c.push_back({"v_scale", f16, "f16", vShape, true, perPage});
    if (isInt4())
      c.push_back({"v_min", f16, "f16", vShape, true, perPage});
  }
  if (hasResidual()) {
    SmallVector<int64_t> ring{ShapedType::kDynamic, getResidual(), h, d};
    c.push_back({"k_recent", f16, "f16", ring, false, "num_rings"});
    c.push_back({"v_recent", f16, "f16", ring, false, "num_rings"});
  }
  if (hasPageSummary()) {
    SmallVector<int64_t> summary{pages, h, d};
    c.push_back({"k_page_max", f16, "f16", summary, true, perPage});
    c.push_back({"k_page_min", f16, "f16", summary, true, perPage});
  }
  return c;
}

double KVCacheType::getBytesPerToken() const {
  double bytes = 0;
  for (const Component &c : getComponents()) {
    if (!c.paged)
      continue;
    int64_t elems = 1;
    for (int64_t dim : ArrayRef(c.shape).drop_front())
      elems *= dim;
    bytes += elems * (c.elementType.getIntOrFloatBitWidth() / 8);
  }
  return bytes / getPageSize();
}

bool CopyType::isCopyable(Type type) {
  if (isa<KVCacheType>(type))
    return true;
  auto tensor = dyn_cast<RankedTensorType>(type);
  return tensor && tensor.hasStaticShape();
}

LogicalResult CopyType::verify(function_ref<InFlightDiagnostic()> emitError,
                               Type valueType) {
  if (!isCopyable(valueType))
    return emitError() << "!attn.copy can move a static-shape ranked tensor "
                          "or an !attn.kv_cache, got "
                       << valueType;
  return success();
}
