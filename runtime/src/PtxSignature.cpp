//===- PtxSignature.cpp - a kernel's parameters as its PTX declares -------===//

#include "PtxSignature.h"
#include "Error.h"

#include <cctype>
#include <vector>

using namespace attnrt;

namespace {

/// `text` without // and /* */ comments (PTX's comment syntax).
std::string stripComments(const std::string &text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text.compare(i, 2, "//") == 0) {
      i = text.find('\n', i);
      if (i == std::string::npos)
        break;
    } else if (text.compare(i, 2, "/*") == 0) {
      i = text.find("*/", i + 2);
      if (i == std::string::npos)
        break;
      ++i;
      continue;
    }
    out += text[i];
  }
  return out;
}

bool isNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$';
}

/// The declarations between the parentheses of `.entry NAME(...)`, split at
/// commas; false when there is no such entry.
bool entryParams(const std::string &ptx, const std::string &name,
                 std::vector<std::string> &params) {
  for (size_t at = ptx.find(".entry"); at != std::string::npos;
       at = ptx.find(".entry", at + 6)) {
    size_t p = at + 6;
    while (p < ptx.size() && std::isspace(static_cast<unsigned char>(ptx[p])))
      ++p;
    size_t end = p;
    while (end < ptx.size() && isNameChar(ptx[end]))
      ++end;
    if (ptx.compare(p, end - p, name) != 0 || end - p != name.size())
      continue;
    while (end < ptx.size() &&
           std::isspace(static_cast<unsigned char>(ptx[end])))
      ++end;
    params.clear();
    if (end >= ptx.size() || ptx[end] != '(')
      return true; // no parameter list
    size_t close = ptx.find(')', end);
    std::string list = ptx.substr(end + 1, close - end - 1);
    size_t start = 0;
    while (start <= list.size()) {
      size_t comma = list.find(',', start);
      std::string decl = list.substr(start, comma - start);
      if (decl.find_first_not_of(" \t\r\n") != std::string::npos)
        params.push_back(decl);
      if (comma == std::string::npos)
        break;
      start = comma + 1;
    }
    return true;
  }
  return false;
}

/// The type of a declaration `.param .u64 .ptr .global .align 1 x`: the
/// first of its dotted words that is a scalar type, "" for none; `array`
/// when the name has a size (a struct passed by value).
std::string paramType(const std::string &decl, bool &array) {
  static const char *types[] = {".u64", ".s64", ".b64", ".u32", ".s32",
                                ".b32", ".f32", ".f64", ".u16", ".s16",
                                ".b16", ".f16", ".u8",  ".s8",  ".b8"};
  std::string type;
  array = decl.find('[') != std::string::npos;
  size_t i = 0;
  while (i < decl.size()) {
    while (i < decl.size() && std::isspace(static_cast<unsigned char>(decl[i])))
      ++i;
    size_t end = i;
    while (end < decl.size() &&
           !std::isspace(static_cast<unsigned char>(decl[end])))
      ++end;
    std::string word = decl.substr(i, end - i);
    if (type.empty())
      for (const char *t : types)
        if (word == t)
          type = word;
    i = end;
  }
  return type;
}

/// A declaration on one line: whitespace runs as one space, trimmed.
std::string oneLine(const std::string &decl) {
  std::string out;
  for (char c : decl) {
    bool space = std::isspace(static_cast<unsigned char>(c));
    if (space && (out.empty() || out.back() == ' '))
      continue;
    out += space ? ' ' : c;
  }
  while (!out.empty() && out.back() == ' ')
    out.pop_back();
  return out;
}

} // namespace

namespace {

/// `launch` against the PTX; `field` names its gpu object in messages
/// ("gpu" or "gpu.merge").
void checkLaunch(const KernelDesc &kernel, const GpuLaunchDesc &launch,
                 const std::string &field, const std::string &ptx,
                 const std::string &where) {
  const char *fix = "; the PTX and manifest.json do not match, regenerate "
                    "both with attnc";
  std::vector<std::string> params;
  if (!entryParams(ptx, launch.entry, params))
    fail(ATTNRT_ERR_MANIFEST, where + " has no .entry " + launch.entry + " (" +
                                  field + ".entry)" + fix);
  if (params.size() != launch.params.size())
    fail(ATTNRT_ERR_MANIFEST, where + ": .entry " + launch.entry + " takes " +
                                  std::to_string(params.size()) +
                                  " parameters but " + field + ".params " +
                                  "lists " +
                                  std::to_string(launch.params.size()) + fix);
  for (size_t i = 0; i < params.size(); ++i) {
    const GpuParamDesc &p = launch.params[i];
    bool pointer = p.isPointer();
    bool array = false;
    std::string type = paramType(params[i], array);
    bool ok = !array &&
              (pointer ? type == ".u64" || type == ".s64" || type == ".b64"
                       : type == ".u32" || type == ".s32" || type == ".b32");
    if (ok)
      continue;
    std::string what =
        p.argIndex >= 0 ? "argument '" + kernel.args[p.argIndex].name +
                              "' (a 64-bit device pointer)"
        : p.scratchIndex >= 0
            ? "scratch buffer '" + kernel.scratch[p.scratchIndex].name +
                  "' (a 64-bit device pointer)"
            : "symbol '" + p.symbol + "' (a 32-bit integer)";
    fail(ATTNRT_ERR_MANIFEST,
         where + ": parameter " + std::to_string(i) + " of .entry " +
             launch.entry + " is '" + oneLine(params[i]) + "' but " + field +
             ".params[" + std::to_string(i) + "] is " + what + fix);
  }
}

} // namespace

void attnrt::checkPtxSignature(const KernelDesc &kernel, const std::string &ptx,
                               const std::string &path) {
  std::string where = path + " (kernel '" + kernel.name + "')";
  std::string text = stripComments(ptx);
  checkLaunch(kernel, kernel.gpu, "gpu", text, where);
  if (kernel.gpu.splitKv())
    checkLaunch(kernel, kernel.gpu.merge, "gpu.merge", text, where);
}
