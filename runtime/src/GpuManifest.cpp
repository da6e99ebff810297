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

/// What a launch's grid and parameters may name.
struct LaunchNames {
  const std::vector<std::string> &args;
  const std::vector<std::string> &scratch;
  const std::set<std::string> &symbols; // bound by the arguments
  const std::string &splitSymbol;       // bound by the runtime; may be empty

  bool knows(const std::string &symbol) const {
    return symbols.count(symbol) ||
           (!splitSymbol.empty() && symbol == splitSymbol);
  }
  std::string symbolList() const {
    std::string list;
    for (const std::string &s : symbols)
      list += (list.empty() ? "" : ", ") + s;
    if (!splitSymbol.empty())
      list += (list.empty() ? "" : ", ") + splitSymbol + " (gpu.split_kv)";
    return list.empty() ? "none" : list;
  }
};

std::string nameList(const std::vector<std::string> &names) {
  std::string list;
  for (const std::string &n : names)
    list += (list.empty() ? "" : ", ") + n;
  return list.empty() ? "none" : list;
}

void parseEntry(const Fields &g, GpuLaunchDesc &d) {
  d.entry = g.string("entry");
  if (!isEntryName(d.entry))
    g.badField("entry", "is '" + d.entry +
                            "', expected a PTX identifier (letters, digits, "
                            "'_', '$')");
}

void parseBlock(const Fields &g, GpuLaunchDesc &d) {
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

void parseGrid(const Fields &g, GpuLaunchDesc &d, const LaunchNames &names) {
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
    if (!names.knows(dim.symbol))
      e.badField("symbol", "is '" + dim.symbol +
                               "', which no argument's shape binds (symbols: " +
                               names.symbolList() + ")");
    dim.multiply = e.has("multiply") ? e.integer("multiply", 1, INT32_MAX) : 1;
    dim.divide = e.has("divide") ? e.integer("divide", 1, INT32_MAX) : 1;
  }
}

/// The index of `name` in `names`, or -1.
int indexOf(const std::vector<std::string> &names, const std::string &name) {
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == name)
      return static_cast<int>(i);
  return -1;
}

/// `everyArg`: the main launch, through which the kernel reads and writes
/// all its arguments, passes each exactly once; the merge at most once.
void parseParams(const Fields &g, GpuLaunchDesc &d, const LaunchNames &names,
                 bool everyArg) {
  const json &params = g.array("params");
  std::vector<int> uses(names.args.size(), 0);
  for (size_t p = 0; p < params.size(); ++p) {
    Fields e(params[p], g.location() + " params[" + str(p) + "]");
    e.onlyKeys({"arg", "scratch", "symbol"});
    GpuParamDesc param;
    if (e.has("arg") + e.has("scratch") + e.has("symbol") != 1)
      e.bad("has " + params[p].dump() +
            ", expected exactly one of {\"arg\": NAME} (a device pointer), "
            "{\"scratch\": NAME} (a scratch buffer's device pointer) and "
            "{\"symbol\": S} (an i32)");
    if (e.has("arg")) {
      std::string name = e.string("arg");
      param.argIndex = indexOf(names.args, name);
      if (param.argIndex < 0)
        e.badField("arg", "is '" + name +
                              "', which is not an argument of the kernel (" +
                              nameList(names.args) + ")");
      ++uses[param.argIndex];
    } else if (e.has("scratch")) {
      std::string name = e.string("scratch");
      param.scratchIndex = indexOf(names.scratch, name);
      if (param.scratchIndex < 0)
        e.badField("scratch",
                   "is '" + name +
                       "', which is not a scratch buffer of the kernel "
                       "(scratch: " +
                       nameList(names.scratch) + ")");
    } else {
      param.symbol = e.string("symbol");
      if (!names.knows(param.symbol))
        e.badField("symbol", "is '" + param.symbol +
                                 "', which no argument's shape binds "
                                 "(symbols: " +
                                 names.symbolList() + ")");
    }
    d.params.push_back(param);
  }
  for (size_t a = 0; a < names.args.size(); ++a) {
    if (everyArg && uses[a] != 1)
      g.badField("params", "passes argument '" + names.args[a] + "' " +
                               str(uses[a]) +
                               " times; every argument is passed exactly "
                               "once");
    if (uses[a] > 1)
      g.badField("params", "passes argument '" + names.args[a] + "' " +
                               str(uses[a]) +
                               " times; an argument is passed at most once");
  }
}

/// ptxas reports, which describe cubins: one per architecture with one.
void parsePtxas(const Fields &g, GpuLaunchDesc &d,
                const std::map<std::string, std::string> &cubins) {
  if (!g.has("ptxas"))
    return;
  const json &list = g.field("ptxas");
  Fields reports(list, g.location() + " ptxas");
  for (auto it = list.begin(); it != list.end(); ++it) {
    if (!cubins.count(it.key()))
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

/// entry, block, grid, smem_bytes, params and ptxas of one launch.
void parseLaunch(const Fields &g, GpuLaunchDesc &d, const LaunchNames &names,
                 const std::map<std::string, std::string> &cubins,
                 bool everyArg) {
  parseEntry(g, d);
  parseBlock(g, d);
  parseGrid(g, d, names);
  d.smemBytes = g.integer("smem_bytes", 0, INT32_MAX);
  parseParams(g, d, names, everyArg);
  parsePtxas(g, d, cubins);
}

/// gpu.split_kv: {symbol, max_splits}; the symbol is the runtime's to bind.
void parseSplitKv(const Fields &g, GpuKernelDesc &d,
                  const std::set<std::string> &symbols) {
  if (!g.has("split_kv")) {
    if (g.has("merge"))
      g.badField("merge", "is present but the kernel has no 'split_kv'; a "
                          "merge launch belongs to split-KV kernels only");
    return;
  }
  Fields s(g.field("split_kv"), g.location() + " split_kv");
  d.splitSymbol = s.string("symbol");
  if (!isEntryName(d.splitSymbol))
    s.badField("symbol", "is '" + d.splitSymbol +
                             "', expected a symbol name (letters, digits, "
                             "'_')");
  if (symbols.count(d.splitSymbol))
    s.badField("symbol", "is '" + d.splitSymbol +
                             "', which an argument's shape binds; the runtime "
                             "binds the split symbol to each call's "
                             "num_splits, so no argument may");
  d.maxSplits = static_cast<int>(s.integer("max_splits", 1, 1024));
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

GpuKernelDesc
attnrt::parseGpuKernel(const json &gpu, const std::string &where,
                       const std::vector<std::string> &argNames,
                       const std::vector<std::string> &scratchNames,
                       const std::set<std::string> &symbols,
                       const std::vector<std::string> &archs) {
  Fields g(gpu, where + " gpu");
  GpuKernelDesc d;
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
  parseSplitKv(g, d, symbols);
  LaunchNames names{argNames, scratchNames, symbols, d.splitSymbol};
  parseLaunch(g, d, names, d.cubins, /*everyArg=*/true);
  if (g.has("tile")) {
    Fields tile(g.field("tile"), g.location() + " tile");
    d.tileBlockQ =
        tile.has("block_q") ? tile.integer("block_q", 1, 1 << 20) : 0;
    d.tileBlockKv =
        tile.has("block_kv") ? tile.integer("block_kv", 1, 1 << 20) : 0;
  }
  if (d.splitKv()) {
    Fields merge(g.field("merge"), g.location() + " merge");
    parseLaunch(merge, d.merge, names, d.cubins, /*everyArg=*/false);
    if (d.merge.entry == d.entry)
      merge.badField("entry", "is '" + d.entry +
                                  "', the main kernel's entry; the merge is "
                                  "a kernel of its own");
  }
  return d;
}
