//===- Manifest.cpp - manifest.json parser --------------------------------===//
//
// Strict parser: every field the runtime or attn-run relies on is checked for
// presence and type, and every message names the file, kernel and field.
//
//===----------------------------------------------------------------------===//

#include "Manifest.h"
#include "Error.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

using namespace attnrt;
using json = nlohmann::json;

namespace {

/// Field accessors bound to a location prefix for error messages.
class Reader {
public:
  Reader(const json &obj, std::string where)
      : obj(obj), where(std::move(where)) {}

  const json &field(const char *key) const {
    if (!obj.is_object())
      bad(std::string("is not a JSON object"));
    auto it = obj.find(key);
    if (it == obj.end())
      bad(std::string("is missing field '") + key +
          "'; regenerate the artifact with attnc");
    return *it;
  }
  bool has(const char *key) const {
    return obj.is_object() && obj.contains(key);
  }
  std::string str(const char *key) const {
    const json &v = field(key);
    if (!v.is_string())
      badField(key, "must be a string");
    return v.get<std::string>();
  }
  int64_t integer(const char *key) const {
    const json &v = field(key);
    if (!v.is_number_integer())
      badField(key, "must be an integer");
    return v.get<int64_t>();
  }
  int64_t integerOr(const char *key, int64_t dflt) const {
    return has(key) ? integer(key) : dflt;
  }
  double number(const char *key) const {
    const json &v = field(key);
    if (!v.is_number())
      badField(key, "must be a number");
    return v.get<double>();
  }
  bool boolean(const char *key) const {
    const json &v = field(key);
    if (!v.is_boolean())
      badField(key, "must be true or false");
    return v.get<bool>();
  }
  const json &array(const char *key) const {
    const json &v = field(key);
    if (!v.is_array())
      badField(key, "must be an array");
    return v;
  }
  [[noreturn]] void bad(const std::string &what) const {
    fail(ATTNRT_ERR_MANIFEST, where + " " + what);
  }
  [[noreturn]] void badField(const char *key, const std::string &what) const {
    fail(ATTNRT_ERR_MANIFEST,
         where + ": field '" + key + "' " + what + "; fix or regenerate it");
  }
  const std::string &location() const { return where; }

private:
  const json &obj;
  std::string where;
};

attnrt_dtype parseDtype(const Reader &r, const char *key) {
  std::string s = r.str(key);
  if (s == "f32")
    return ATTNRT_DTYPE_F32;
  if (s == "f16")
    return ATTNRT_DTYPE_F16;
  if (s == "bf16")
    return ATTNRT_DTYPE_BF16;
  if (s == "i32")
    return ATTNRT_DTYPE_I32;
  r.badField(key, "is '" + s + "', expected one of f32, f16, bf16, i32");
}

attnrt_role parseRole(const Reader &r) {
  static const std::pair<const char *, attnrt_role> roles[] = {
      {"query", ATTNRT_ROLE_QUERY},
      {"key", ATTNRT_ROLE_KEY},
      {"value", ATTNRT_ROLE_VALUE},
      {"cu_seqlens_q", ATTNRT_ROLE_CU_SEQLENS_Q},
      {"cu_seqlens_k", ATTNRT_ROLE_CU_SEQLENS_K},
      {"output", ATTNRT_ROLE_OUTPUT},
      {"lse", ATTNRT_ROLE_LSE}};
  std::string s = r.str("role");
  for (const auto &[name, role] : roles)
    if (s == name)
      return role;
  r.badField("role", "is '" + s +
                         "', expected one of query, key, value, cu_seqlens_q, "
                         "cu_seqlens_k, output, lse");
}

/// A symbol is an identifier optionally followed by "+N" (e.g. "batch+1").
DimDesc parseSymbol(const Reader &r, const std::string &text) {
  DimDesc d;
  d.symbol = text;
  size_t plus = text.find('+');
  d.symbolName = text.substr(0, plus);
  bool ok = !d.symbolName.empty();
  for (char c : d.symbolName)
    ok &= (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
  if (ok && plus != std::string::npos) {
    std::string off = text.substr(plus + 1);
    ok = !off.empty() && off.size() < 10 &&
         off.find_first_not_of("0123456789") == std::string::npos;
    if (ok)
      d.value = std::stoll(off);
  }
  if (!ok)
    r.badField("shape", "has symbol '" + text +
                            "', expected a name or name+N (e.g. batch+1)");
  return d;
}

ArgDesc parseArg(const json &j, const std::string &where) {
  Reader r(j, where);
  ArgDesc a;
  a.name = r.str("name");
  a.role = parseRole(r);
  std::string dir = r.str("dir");
  if (dir == "in")
    a.dir = ATTNRT_DIR_IN;
  else if (dir == "out")
    a.dir = ATTNRT_DIR_OUT;
  else
    r.badField("dir", "is '" + dir + "', expected in or out");
  a.dtype = parseDtype(r, "dtype");
  for (const json &d : r.array("shape")) {
    if (d.is_number_integer() && d.get<int64_t>() >= 0) {
      DimDesc dim;
      dim.value = d.get<int64_t>();
      a.shape.push_back(dim);
    } else if (d.is_string()) {
      a.shape.push_back(parseSymbol(r, d.get<std::string>()));
    } else {
      r.badField("shape", "has entry " + d.dump() +
                              ", expected a non-negative integer or a symbol");
    }
  }
  return a;
}

KernelDesc parseKernel(const json &j, const std::string &file, size_t index) {
  Reader k(j, file + ": kernel #" + std::to_string(index));
  KernelDesc kd;
  kd.name = k.str("name");
  std::string where = file + ": kernel '" + kd.name + "'";
  Reader kr(j, where);
  kd.entryRun = kr.str("entry_run");
  kd.entryWorkItems = kr.str("entry_work_items");

  Reader at(kr.field("attention"), where + " attention");
  attnrt_attention_info &ai = kd.attention;
  std::string layout = at.str("layout");
  if (layout != "dense" && layout != "ragged")
    at.badField("layout", "is '" + layout + "', expected dense or ragged");
  ai.ragged = layout == "ragged";
  ai.num_q_heads = at.integer("num_q_heads");
  ai.num_kv_heads = at.integer("num_kv_heads");
  ai.head_dim = at.integer("head_dim");
  if (ai.num_q_heads <= 0 || ai.num_kv_heads <= 0 || ai.head_dim <= 0 ||
      ai.num_q_heads % ai.num_kv_heads != 0)
    at.bad("has num_q_heads=" + std::to_string(ai.num_q_heads) +
           " num_kv_heads=" + std::to_string(ai.num_kv_heads) +
           " head_dim=" + std::to_string(ai.head_dim) +
           "; they must be positive and num_q_heads a multiple of "
           "num_kv_heads");
  ai.dtype = parseDtype(at, "dtype");
  ai.scale = at.number("scale");
  ai.softcap = at.number("softcap");
  if (ai.softcap < 0)
    at.badField("softcap", "must be >= 0 (0 = none)");
  ai.has_lse = at.boolean("has_lse");
  Reader mask(at.field("mask"), where + " attention.mask");
  ai.causal = mask.boolean("causal");
  std::string align = mask.str("align");
  if (align != "bottom_right" && align != "top_left")
    mask.badField("align",
                  "is '" + align + "', expected bottom_right or top_left");
  ai.bottom_right = align == "bottom_right";
  ai.window = mask.integer("window");
  ai.sinks = mask.integer("sinks");
  if (ai.window < -1 || ai.sinks < 0)
    mask.bad("has window=" + std::to_string(ai.window) +
             " sinks=" + std::to_string(ai.sinks) +
             "; window must be >= -1 (-1 = none) and sinks >= 0");

  // Tile info is informational; tolerate its absence.
  if (kr.has("tile")) {
    Reader tile(kr.field("tile"), where + " tile");
    ai.block_q = tile.integerOr("block_q", 0);
    ai.block_kv = tile.integerOr("block_kv", 0);
    ai.vector_width = tile.integerOr("vector_width", 0);
  }
  ai.workspace_bytes = kr.integerOr("workspace_bytes", 0);

  const json &args = kr.array("args");
  for (size_t i = 0; i < args.size(); ++i) {
    std::string aw = where + " args[" + std::to_string(i) + "]";
    if (args[i].is_object() && args[i].contains("name") &&
        args[i]["name"].is_string())
      aw = where + " argument '" + args[i]["name"].get<std::string>() + "'";
    kd.args.push_back(parseArg(args[i], aw));
  }
  if (kd.args.empty())
    kr.badField("args", "is empty; a kernel needs at least one argument");
  for (size_t i = 0; i < kd.args.size(); ++i)
    for (size_t k2 = i + 1; k2 < kd.args.size(); ++k2)
      if (kd.args[i].name == kd.args[k2].name)
        kr.badField("args", "has two arguments named '" + kd.args[i].name +
                                "'; argument names must be unique");
  return kd;
}

} // namespace

Manifest attnrt::parseManifest(const std::string &text,
                               const std::string &where) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error &e) {
    // nlohmann messages are one line and include the byte position.
    fail(ATTNRT_ERR_MANIFEST, where + " is not valid JSON (" + e.what() +
                                  "); regenerate it with attnc");
  }
  Reader r(root, where);
  Manifest m;
  int64_t version = r.integer("format_version");
  if (version != 1)
    fail(ATTNRT_ERR_UNSUPPORTED,
         where + " has format_version " + std::to_string(version) +
             " but this attnrt supports only 1; rebuild attnrt and attnc "
             "from the same source tree");
  m.formatVersion = static_cast<int>(version);
  m.target = r.str("target");
  if (m.target != "host")
    fail(ATTNRT_ERR_UNSUPPORTED,
         where + " has target '" + m.target +
             "' but attnrt runs only 'host' artifacts; compile with "
             "attnc --target=host");
  m.library = r.str("library");
  if (m.library.empty() || m.library.find('/') != std::string::npos)
    r.badField("library", "must be a file name inside the artifact directory");
  if (r.has("header"))
    m.header = r.str("header");
  const json &kernels = r.array("kernels");
  for (size_t i = 0; i < kernels.size(); ++i)
    m.kernels.push_back(parseKernel(kernels[i], where, i));
  for (size_t i = 0; i < m.kernels.size(); ++i)
    for (size_t k = i + 1; k < m.kernels.size(); ++k)
      if (m.kernels[i].name == m.kernels[k].name)
        r.badField("kernels",
                   "has two kernels named '" + m.kernels[i].name + "'");
  return m;
}

Manifest attnrt::loadManifest(const std::string &dir) {
  std::string path = dir + "/manifest.json";
  std::ifstream in(path, std::ios::binary);
  if (!in)
    fail(ATTNRT_ERR_IO, "cannot read " + path + " (" + std::strerror(errno) +
                            "); pass the directory attnc -o wrote");
  std::ostringstream ss;
  ss << in.rdbuf();
  return parseManifest(ss.str(), path);
}
