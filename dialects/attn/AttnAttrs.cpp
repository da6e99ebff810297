//===- AttnAttrs.cpp - attn dialect attributes ----------------------------===//

#include "attn/AttnDialect.h"

#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/TypeSwitch.h"

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
