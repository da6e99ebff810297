//===- AttnAttrs.cpp - attn dialect attributes ----------------------------===//

#include "attn/AttnDialect.h"

#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/TypeSwitch.h"

#include <array>
#include <optional>

using namespace mlir;
using namespace attnc::attn;

#define GET_ATTRDEF_CLASSES
#include "attn/AttnAttrs.cpp.inc"

void AttnDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "attn/AttnAttrs.cpp.inc"
      >();
}

// Grammar: `<` (`none` | item (`,` item)*) `>` with
// item ::= `causal` | `top_left` | `bottom_right` | `window` `=` int
//        | `sinks` `=` int
Attribute MaskAttr::parse(AsmParser &parser, Type) {
  bool causal = false, topLeft = false;
  int64_t window = -1, sinks = 0;
  if (parser.parseLess())
    return {};
  if (succeeded(parser.parseOptionalKeyword("none"))) {
    if (parser.parseGreater())
      return {};
    return parser.getChecked<MaskAttr>(parser.getContext(), false, -1, 0,
                                       false);
  }
  llvm::StringSet<> seen;
  do {
    SMLoc loc = parser.getCurrentLocation();
    StringRef key;
    if (parser.parseKeyword(&key))
      return {};
    if (!seen.insert(key).second) {
      parser.emitError(loc, "mask item '") << key << "' given twice";
      return {};
    }
    if (key == "causal") {
      causal = true;
    } else if (key == "top_left") {
      topLeft = true;
    } else if (key == "bottom_right") {
      topLeft = false;
    } else if (key == "window" || key == "sinks") {
      int64_t value;
      if (parser.parseEqual() || parser.parseInteger(value))
        return {};
      (key == "window" ? window : sinks) = value;
      if (value < 0) {
        parser.emitError(loc, "mask '")
            << key << "' must be >= 0, got " << value;
        return {};
      }
    } else {
      parser.emitError(loc, "unknown mask item '")
          << key
          << "'; expected none, causal, window = N, sinks = N, top_left or "
             "bottom_right";
      return {};
    }
  } while (succeeded(parser.parseOptionalComma()));
  if (parser.parseGreater())
    return {};
  return parser.getChecked<MaskAttr>(parser.getContext(), causal, window, sinks,
                                     topLeft);
}

void MaskAttr::print(AsmPrinter &printer) const {
  SmallVector<std::string> items;
  if (getCausal())
    items.push_back("causal");
  if (hasWindow())
    items.push_back("window = " + std::to_string(getWindow()));
  if (getSinks() > 0)
    items.push_back("sinks = " + std::to_string(getSinks()));
  if (getTopLeft())
    items.push_back("top_left");
  if (items.empty())
    items.push_back("none");
  printer << "<" << llvm::join(items, ", ") << ">";
}

LogicalResult MaskAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                               bool causal, int64_t window, int64_t sinks,
                               bool topLeft) {
  if (window < -1)
    return emitError() << "mask window must be >= 0 (or absent), got "
                       << window;
  if (sinks < 0)
    return emitError() << "mask sinks must be >= 0, got " << sinks;
  if (sinks > 0 && window < 0)
    return emitError() << "mask sinks = " << sinks
                       << " has no effect without a sliding window; add "
                          "'window = N' or drop 'sinks'";
  if (topLeft && !causal && window < 0)
    return emitError() << "mask alignment 'top_left' has no effect without "
                          "'causal' or 'window'";
  return success();
}

//===----------------------------------------------------------------------===//
// TargetAttr
//===----------------------------------------------------------------------===//

namespace {
struct TargetPreset {
  StringRef name;
  int64_t smCount, tensorFlops, smemPerBlock, smemPerSm, hbmBytes, hbmBandwidth,
      hostBytes, linkBandwidth;
};
} // namespace

// Datasheet figures, decimal where the datasheet says GB or TB/s; the sources
// are in docs/memory-planning.md. Host memory is not a GPU figure: a DGX's
// 2 TB (as 2 TiB) shared by its 8 GPUs stands in for it (256 GiB each).
// Tensor rates are dense (no 2:4 sparsity) f16/bf16 with f32 accumulation.
static constexpr int64_t kKiB = 1024, kGB = 1000 * 1000 * 1000;
static constexpr int64_t kHostBytes = 256 * kKiB * kKiB * kKiB;
static const TargetPreset kTargetPresets[] = {
    {"h100-80gb", 132, 989400 * kGB, 227 * kKiB, 228 * kKiB, 80 * kGB,
     3350 * kGB, kHostBytes, 64 * kGB},
    {"a100-80gb", 108, 312000 * kGB, 163 * kKiB, 164 * kKiB, 80 * kGB,
     2039 * kGB, kHostBytes, 32 * kGB},
    {"h200", 132, 989400 * kGB, 227 * kKiB, 228 * kKiB, 141 * kGB, 4800 * kGB,
     kHostBytes, 64 * kGB},
    {"host", 0, 0, 0, 0, 0, 0, kHostBytes, 0},
};

static constexpr size_t kNumTargetFigures = 8;

// The explicit form's keys, in printing order.
static constexpr StringLiteral kTargetKeys[kNumTargetFigures] = {
    "sm_count",  "tensor_flops",  "smem_per_block", "smem_per_sm",
    "hbm_bytes", "hbm_bandwidth", "host_bytes",     "link_bandwidth"};

using TargetFigures = std::array<int64_t, kNumTargetFigures>;

static TargetFigures targetFigures(const TargetPreset &p) {
  return {p.smCount,  p.tensorFlops,  p.smemPerBlock, p.smemPerSm,
          p.hbmBytes, p.hbmBandwidth, p.hostBytes,    p.linkBandwidth};
}

static TargetFigures targetFigures(TargetAttr t) {
  return {t.getSmCount(),   t.getTensorFlops(),  t.getSmemPerBlock(),
          t.getSmemPerSm(), t.getHbmBytes(),     t.getHbmBandwidth(),
          t.getHostBytes(), t.getLinkBandwidth()};
}

TargetAttr TargetAttr::getPreset(MLIRContext *context, StringRef name) {
  for (const TargetPreset &p : kTargetPresets)
    if (p.name == name)
      return TargetAttr::get(context, p.smCount, p.tensorFlops, p.smemPerBlock,
                             p.smemPerSm, p.hbmBytes, p.hbmBandwidth,
                             p.hostBytes, p.linkBandwidth);
  return {};
}

SmallVector<StringRef> TargetAttr::getPresetNames() {
  SmallVector<StringRef> names;
  for (const TargetPreset &p : kTargetPresets)
    names.push_back(p.name);
  return names;
}

std::optional<StringRef> TargetAttr::getPresetName() const {
  for (const TargetPreset &p : kTargetPresets)
    if (targetFigures(p) == targetFigures(*this))
      return p.name;
  return std::nullopt;
}

// Grammar: `<` string `>` (a preset) or `<` key `=` int (`,` key `=` int)* `>`
// with every key of kTargetKeys exactly once, in any order.
Attribute TargetAttr::parse(AsmParser &parser, Type) {
  if (parser.parseLess())
    return {};
  SMLoc loc = parser.getCurrentLocation();
  std::string name;
  if (succeeded(parser.parseOptionalString(&name))) {
    if (parser.parseGreater())
      return {};
    if (TargetAttr preset = getPreset(parser.getContext(), name))
      return preset;
    parser.emitError(loc, "unknown target preset '")
        << name << "'; known presets: " << llvm::join(getPresetNames(), ", ");
    return {};
  }
  std::array<std::optional<int64_t>, kNumTargetFigures> values;
  do {
    SMLoc keyLoc = parser.getCurrentLocation();
    StringRef key;
    if (parser.parseKeyword(&key))
      return {};
    const auto *it = llvm::find(kTargetKeys, key);
    if (it == std::end(kTargetKeys)) {
      parser.emitError(keyLoc, "unknown target key '")
          << key << "'; expected a preset name or "
          << llvm::join(ArrayRef<StringLiteral>(kTargetKeys), ", ");
      return {};
    }
    std::optional<int64_t> &value = values[it - std::begin(kTargetKeys)];
    if (value) {
      parser.emitError(keyLoc, "target key '") << key << "' given twice";
      return {};
    }
    value.emplace();
    if (parser.parseEqual() || parser.parseInteger(*value))
      return {};
  } while (succeeded(parser.parseOptionalComma()));
  if (parser.parseGreater())
    return {};
  for (auto [key, value] : llvm::zip(kTargetKeys, values))
    if (!value) {
      parser.emitError(loc, "target is missing '") << key << "'";
      return {};
    }
  return parser.getChecked<TargetAttr>(
      parser.getContext(), *values[0], *values[1], *values[2], *values[3],
      *values[4], *values[5], *values[6], *values[7]);
}

void TargetAttr::print(AsmPrinter &printer) const {
  if (std::optional<StringRef> name = getPresetName()) {
    printer << "<\"" << *name << "\">";
    return;
  }
  printer << "<";
  llvm::interleaveComma(
      llvm::zip(kTargetKeys, targetFigures(*this)), printer, [&](auto pair) {
        printer << std::get<0>(pair) << " = " << std::get<1>(pair);
      });
  printer << ">";
}

LogicalResult TargetAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                 int64_t smCount, int64_t tensorFlops,
                                 int64_t smemPerBlock, int64_t smemPerSm,
                                 int64_t hbmBytes, int64_t hbmBandwidth,
                                 int64_t hostBytes, int64_t linkBandwidth) {
  TargetFigures figures = {smCount,  tensorFlops,  smemPerBlock, smemPerSm,
                           hbmBytes, hbmBandwidth, hostBytes,    linkBandwidth};
  for (auto [key, value] : llvm::zip(kTargetKeys, figures))
    if (value < 0)
      return emitError() << "target " << key << " must be >= 0, got " << value;
  if (hostBytes == 0)
    return emitError() << "target host_bytes must be positive";
  // A host-only target (the CPU) has no device tiers at all; a device target
  // has every one of them, or the planner would plan against a zero budget.
  bool device = smCount > 0;
  for (auto [key, value] : llvm::zip(kTargetKeys, figures)) {
    if (StringRef(key) == "host_bytes")
      continue;
    if (device && value == 0)
      return emitError() << "target " << key
                         << " must be positive when sm_count > 0";
    if (!device && value != 0)
      return emitError() << "target " << key << " = " << value
                         << " needs a device; a host-only target "
                            "(sm_count = 0) has no device figures";
  }
  if (smemPerBlock > smemPerSm)
    return emitError() << "target smem_per_block (" << smemPerBlock
                       << ") exceeds smem_per_sm (" << smemPerSm << ")";
  return success();
}

//===----------------------------------------------------------------------===//
// PlaceAttr
//===----------------------------------------------------------------------===//

// Grammar: `<` tier `,` offset `>` with tier one of MemoryTier's names.
Attribute PlaceAttr::parse(AsmParser &parser, Type type) {
  if (parser.parseLess())
    return {};
  SMLoc loc = parser.getCurrentLocation();
  StringRef name;
  if (parser.parseKeyword(&name))
    return {};
  std::optional<MemoryTier> tier = symbolizeMemoryTier(name);
  if (!tier) {
    parser.emitError(loc, "unknown memory tier '")
        << name << "'; expected hbm or host";
    return {};
  }
  int64_t offset;
  if (parser.parseComma() || parser.parseInteger(offset) ||
      parser.parseGreater())
    return {};
  auto place = parser.getChecked<PlaceAttr>(parser.getContext(), *tier, offset);
  // `#attn.place<...> : T`: MLIR parsed a type after the place and gives it
  // here. A place has no type; this only happens in `attn.copy_start %x to
  // #attn.place<...> : T`, where the T is the op's, so pass both back.
  if (place && type && !isa<NoneType>(type))
    return ArrayAttr::get(parser.getContext(), {place, TypeAttr::get(type)});
  return place;
}

void PlaceAttr::print(AsmPrinter &printer) const {
  printer << "<" << stringifyMemoryTier(getTier()) << ", " << getOffset()
          << ">";
}

LogicalResult PlaceAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                MemoryTier, int64_t offset) {
  if (offset < 0)
    return emitError() << "place offset must be >= 0, got " << offset;
  return success();
}
