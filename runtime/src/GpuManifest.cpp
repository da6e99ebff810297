//===- GpuManifest.cpp - the gpu object of CUDA manifests -----------------===//
//
// Strict: a wrong grid or parameter list would launch a kernel with wrong
// geometry or pointers and corrupt memory silently, so every field is
// checked, and objects whose keys decide the launch (grid entries, params)
// may not carry unknown keys (a misspelled "divide" must not mean 1).
//
//===----------------------------------------------------------------------===//

#include "GpuManifest.h"
#include "Error.h"
#include "JsonFields.h"

#include <nlohmann/json.hpp>

#include <cctype>

using namespace attnrt;
using json = nlohmann::json;

namespace {

std::string str(int64_t v) { return std::to_string(v); }

const char *kFix = "; fix the manifest or regenerate it with attnc";

/// The object readers of this file: their messages end with kFix.
class Fields : public JsonFields {
public:
  Fields(const json &obj, std::string where)
      : JsonFields(obj, std::move(where), kFix) {}
};

/// A file inside the artifact directory: a plain, non-empty name.
std::string fileName(const Fields &f, const char *key, const json &value) {
  if (!value.is_string())
    f.badField(key, "is " + value.dump() + ", expected a file name");
  std::string name = value.get<std::string>();
  if (name.empty() || name == "." || name == ".." ||
      name.find('/') != std::string::npos)
    f.badField(key, "is '" + name +
                        "'; it must name a file inside the artifact "
                        "directory (no '/')");
  return name;
}

bool isEntryName(const std::string &s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0])))
    return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '$')
      return false;
  return true;
}

/// An architecture that must be one of `archs`.
std::string knownArch(const Fields &f, const char *key, const std::string &arch,
                      const std::vector<std::string> &archs) {
  std::string list;
  for (const std::string &a : archs) {
    if (a == arch)
      return arch;
    list += (list.empty() ? "" : ", ") + a;
  }
  f.badField(key, "names architecture '" + arch +
                      "', which is not in the manifest's archs (" + list + ")");
}

void parseBlock(const Fields &g, GpuKernelDesc &d) {
  const json &block = g.array("block");
  if (block.size() != 3)
    g.badField("block",
               "is " + block.dump() + ", expected 3 thread counts [x, y, z]");
  // The CUDA limits of every architecture attnc targets (sm_80 and newer).
  const int64_t limits[3] = {1024, 1024, 64};
  int64_t threads = 1;
  for (int i = 0; i < 3; ++i) {
    if (!block[i].is_number_integer() || block[i].get<int64_t>() < 1 ||
        block[i].get<int64_t>() > limits[i])
      g.badField("block", "is " + block.dump() + ": entry " + str(i) +
                              " must be an integer from 1 to " +
                              str(limits[i]));
    d.block[i] = block[i].get<int64_t>();
    threads *= d.block[i];
  }
  if (threads > 1024)
    g.badField("block", "is " + block.dump() + " = " + str(threads) +
                            " threads; a block has at most 1024");
}

void parseGrid(const Fields &g, GpuKernelDesc &d,
               const std::set<std::string> &symbols) {
  const json &grid = g.array("grid");
  if (grid.size() != 3)
    g.badField("grid", "is " + grid.dump() + ", expected 3 entries [x, y, z]");
  const int64_t limits[3] = {INT32_MAX, 65535, 65535};
  for (int i = 0; i < 3; ++i) {
    GridDimDesc &dim = d.grid[i];
    std::string where = g.location() + " grid[" + str(i) + "]";
    if (grid[i].is_number_integer()) {
      dim.value = grid[i].get<int64_t>();
      if (dim.value < 1 || dim.value > limits[i])
        g.badField("grid", "has entry " + str(i) + " = " + grid[i].dump() +
                               "; a constant grid dimension is 1 to " +
                               str(limits[i]));
      continue;
    }
    if (!grid[i].is_object())
      g.badField("grid", "has entry " + str(i) + " = " + grid[i].dump() +
                             ", expected an integer or {\"symbol\": S, "
                             "\"multiply\": M, \"divide\": D}");
    Fields e(grid[i], where);
    e.onlyKeys({"symbol", "multiply", "divide"});
    dim.symbol = e.string("symbol");
    if (!symbols.count(dim.symbol)) {
      std::string list;
      for (const std::string &s : symbols)
        list += (list.empty() ? "" : ", ") + s;
      e.badField("symbol", "is '" + dim.symbol +
                               "', which no argument's shape binds (symbols: " +
                               (list.empty() ? "none" : list) + ")");
    }
    dim.multiply = e.has("multiply") ? e.integer("multiply", 1, INT32_MAX) : 1;
    dim.divide = e.has("divide") ? e.integer("divide", 1, INT32_MAX) : 1;
  }
}

void parseParams(const Fields &g, GpuKernelDesc &d,
                 const std::vector<std::string> &argNames,
                 const std::set<std::string> &symbols) {
  const json &params = g.array("params");
  std::vector<int> uses(argNames.size(), 0);
  for (size_t p = 0; p < params.size(); ++p) {
    Fields e(params[p], g.location() + " params[" + str(p) + "]");
    e.onlyKeys({"arg", "symbol"});
    GpuParamDesc param;
    if (e.has("arg") == e.has("symbol"))
      e.bad("has " + params[p].dump() +
            ", expected exactly one of {\"arg\": NAME} (a device pointer) "
            "and {\"symbol\": S} (an i32)");
    if (e.has("arg")) {
      std::string name = e.string("arg");
      std::string list;
      for (size_t a = 0; a < argNames.size(); ++a) {
        if (argNames[a] == name)
          param.argIndex = static_cast<int>(a);
        list += (list.empty() ? "" : ", ") + argNames[a];
      }
      if (param.argIndex < 0)
        e.badField("arg", "is '" + name +
                              "', which is not an argument of the kernel (" +
                              list + ")");
      ++uses[param.argIndex];
    } else {
      param.symbol = e.string("symbol");
      if (!symbols.count(param.symbol))
        e.badField("symbol", "is '" + param.symbol +
                                 "', which no argument's shape binds");
    }
    d.params.push_back(param);
  }
  // The kernel reads and writes its arguments only through these pointers.
  for (size_t a = 0; a < argNames.size(); ++a)
    if (uses[a] != 1)
      g.badField("params", "passes argument '" + argNames[a] + "' " +
                               str(uses[a]) +
                               " times; every argument is passed exactly "
                               "once");
}

void parsePtxas(const Fields &g, GpuKernelDesc &d) {
  if (!g.has("ptxas"))
    return;
  const json &list = g.field("ptxas");
  Fields reports(list, g.location() + " ptxas");
  for (auto it = list.begin(); it != list.end(); ++it) {
    if (!d.cubins.count(it.key()))
      reports.bad("has a report for '" + it.key() +
                  "', which has no cubin (reports describe cubins)");
    Fields r(it.value(), reports.location() + "." + it.key());
    auto get = [&](const char *key) {
      return r.has(key) ? r.integer(key, 0, INT32_MAX) : -1;
    };
    attnrt_gpu_ptxas_info info;
    info.registers = get("registers");
    info.spill_stores = get("spill_stores");
    info.spill_loads = get("spill_loads");
    info.stack_bytes = get("stack_bytes");
    info.static_smem_bytes = get("static_smem_bytes");
    info.barriers = get("barriers");
    d.ptxas[it.key()] = info;
  }
}

} // namespace

int attnrt::archNumber(const std::string &arch) {
  if (arch.size() < 4 || arch.size() > 8 || arch.compare(0, 3, "sm_") != 0)
    return -1;
  int n = 0;
  for (size_t i = 3; i < arch.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(arch[i])))
      return -1;
    n = n * 10 + (arch[i] - '0');
  }
  return n;
}

std::string attnrt::archName(int major, int minor) {
  return "sm_" + std::to_string(major * 10 + minor);
}

std::vector<std::string> attnrt::parseArchs(const json &root,
                                            const std::string &where) {
  Fields r(root, where);
  const json &list = r.array("archs");
  if (list.empty())
    r.badField("archs", "is empty; it lists the architectures the kernels "
                        "were compiled for, e.g. [\"sm_80\", \"sm_90\"]");
  std::vector<std::string> archs;
  for (const json &a : list) {
    if (!a.is_string())
      r.badField("archs", "has entry " + a.dump() + ", expected \"sm_XY\"");
    std::string arch = a.get<std::string>();
    int n = archNumber(arch);
    if (n < 80)
      r.badField("archs", "has '" + arch +
                              "'; expected sm_XY with XY >= 80 (e.g. sm_80, "
                              "sm_90)");
    if (!archs.empty() && n <= archNumber(archs.back()))
      r.badField("archs", "is " + list.dump() +
                              "; it must be strictly ascending (each "
                              "architecture once)");
    archs.push_back(arch);
  }
  return archs;
}

GpuKernelDesc attnrt::parseGpuKernel(const json &gpu, const std::string &where,
                                     const std::vector<std::string> &argNames,
                                     const std::set<std::string> &symbols,
                                     const std::vector<std::string> &archs) {
  Fields g(gpu, where + " gpu");
  GpuKernelDesc d;
  d.entry = g.string("entry");
  if (!isEntryName(d.entry))
    g.badField("entry", "is '" + d.entry +
                            "', expected a PTX identifier (letters, digits, "
                            "'_', '$')");
  d.ptx = fileName(g, "ptx", g.field("ptx"));
  d.ptxArch = knownArch(g, "ptx_arch", g.string("ptx_arch"), archs);
  if (d.ptxArch != archs.front())
    g.badField("ptx_arch",
               "is '" + d.ptxArch + "' but the lowest of archs is '" +
                   archs.front() +
                   "'; the PTX targets the lowest architecture so that "
                   "every requested GPU can JIT-compile it");
  const json &cubinList = g.field("cubins");
  Fields cubins(cubinList, g.location() + " cubins");
  for (auto it = cubinList.begin(); it != cubinList.end(); ++it) {
    std::string arch = knownArch(g, "cubins", it.key(), archs);
    d.cubins[arch] = fileName(cubins, arch.c_str(), it.value());
  }
  parseBlock(g, d);
  parseGrid(g, d, symbols);
  d.smemBytes = g.integer("smem_bytes", 0, INT32_MAX);
  parseParams(g, d, argNames, symbols);
  if (g.has("tile")) {
    Fields tile(g.field("tile"), g.location() + " tile");
    d.tileBlockQ =
        tile.has("block_q") ? tile.integer("block_q", 1, 1 << 20) : 0;
    d.tileBlockKv =
        tile.has("block_kv") ? tile.integer("block_kv", 1, 1 << 20) : 0;
  }
  parsePtxas(g, d);
  return d;
}
