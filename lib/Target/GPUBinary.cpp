//===- GPUBinary.cpp - PTX, cubins and ptxas reports for GPU kernels ------===//

#include "attnc/Target/GPUBinary.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/Regex.h"

#include <set>

using namespace mlir;
using namespace attnc;

std::variant<std::vector<std::string>, std::string>
attnc::parseGPUArchs(StringRef list) {
  std::set<std::pair<int, std::string>> archs;
  SmallVector<StringRef> parts;
  list.split(parts, ',');
  for (StringRef part : parts) {
    StringRef arch = part.trim();
    unsigned number = 0;
    if (!arch.consume_front("sm_") || arch.getAsInteger(10, number))
      return "'" + part.str() +
             "' is not a GPU architecture; give sm_XY (e.g. "
             "--target=sm_80,sm_90)";
    if (number < 80)
      return "'" + part.str() +
             "' is older than sm_80; the GPU kernels need the tensor cores "
             "and cp.async of sm_80 and newer";
    archs.insert({int(number), part.trim().str()});
  }
  std::vector<std::string> out;
  for (auto &[number, name] : archs)
    out.push_back(name);
  return out;
}

/// An attribute of attn.launch as JSON (integers, strings, arrays, dicts).
static llvm::json::Value attrToJSON(Attribute attr) {
  if (auto i = dyn_cast<IntegerAttr>(attr))
    return i.getInt();
  if (auto s = dyn_cast<StringAttr>(attr))
    return s.getValue().str();
  if (auto a = dyn_cast<DenseI64ArrayAttr>(attr)) {
    llvm::json::Array out;
    for (int64_t v : a.asArrayRef())
      out.push_back(v);
    return out;
  }
  if (auto a = dyn_cast<ArrayAttr>(attr)) {
    llvm::json::Array out;
    for (Attribute e : a)
      out.push_back(attrToJSON(e));
    return out;
  }
  if (auto d = dyn_cast<DictionaryAttr>(attr)) {
    llvm::json::Object out;
    for (NamedAttribute n : d)
      out[n.getName().str()] = attrToJSON(n.getValue());
    return out;
  }
  return nullptr;
}

/// attn.launch's parameter names as the manifest's params: "q" is an
/// argument's pointer, "$batch" a symbol's value, "%partial_o" a scratch
/// buffer's pointer.
static llvm::json::Array paramsToJSON(ArrayAttr names) {
  llvm::json::Array params;
  for (Attribute p : names) {
    StringRef name = cast<StringAttr>(p).getValue();
    if (name.consume_front("$"))
      params.push_back(llvm::json::Object{{"symbol", name.str()}});
    else if (name.consume_front("%"))
      params.push_back(llvm::json::Object{{"scratch", name.str()}});
    else
      params.push_back(llvm::json::Object{{"arg", name.str()}});
  }
  return params;
}

/// A launch (attn.launch or its merge) as the manifest's gpu object; the
/// scratch list goes to the kernel (recordScratch), not here.
static llvm::json::Object launchToJSON(DictionaryAttr launch) {
  llvm::json::Object gpu;
  for (NamedAttribute n : launch) {
    if (n.getName() == "params")
      gpu["params"] = paramsToJSON(cast<ArrayAttr>(n.getValue()));
    else if (n.getName() == "merge")
      gpu["merge"] = launchToJSON(cast<DictionaryAttr>(n.getValue()));
    else if (n.getName() != "scratch")
      gpu[n.getName().str()] = attrToJSON(n.getValue());
  }
  return gpu;
}

std::map<std::string, llvm::json::Object>
attnc::collectGPULaunches(ModuleOp module) {
  std::map<std::string, llvm::json::Object> out;
  module.walk([&](gpu::GPUFuncOp func) {
    auto launch = func->getAttrOfType<DictionaryAttr>("attn.launch");
    if (!launch)
      return;
    llvm::json::Object gpu = launchToJSON(launch);
    gpu["entry"] = func.getName().str();
    out[func.getName().str()] = std::move(gpu);
  });
  return out;
}

std::map<std::string, std::string> attnc::collectPTX(ModuleOp module) {
  std::map<std::string, std::string> out;
  for (auto binary : module.getOps<gpu::BinaryOp>()) {
    StringRef name = binary.getName();
    if (!name.consume_back("_gpu"))
      continue;
    for (Attribute o : binary.getObjects())
      if (auto object = dyn_cast<gpu::ObjectAttr>(o))
        out[name.str()] = object.getObject().getValue().str();
  }
  return out;
}

std::optional<PtxasReport> attnc::parsePtxasReport(StringRef text,
                                                   StringRef entry) {
  // ptxas reports each function after "Compiling entry function 'NAME'".
  std::string header = ("Compiling entry function '" + entry + "'").str();
  size_t start = text.find(header);
  if (start == StringRef::npos)
    return std::nullopt;
  text = text.substr(start + header.size());
  text = text.substr(0, text.find("Compiling entry function '"));
  PtxasReport r;
  auto number = [&](StringRef pattern, int64_t &field) {
    llvm::Regex re(pattern);
    SmallVector<StringRef, 2> m;
    if (!re.match(text, &m))
      return false;
    return !m[1].getAsInteger(10, field);
  };
  if (!number("Used ([0-9]+) registers", r.registers))
    return std::nullopt;
  number("([0-9]+) bytes stack frame", r.stackBytes);
  number("([0-9]+) bytes spill stores", r.spillStores);
  number("([0-9]+) bytes spill loads", r.spillLoads);
  number("used ([0-9]+) barriers", r.barriers);
  number("([0-9]+) bytes smem", r.staticSmemBytes);
  return r;
}

llvm::json::Object attnc::toJSON(const PtxasReport &r) {
  return llvm::json::Object{{"registers", r.registers},
                            {"spill_stores", r.spillStores},
                            {"spill_loads", r.spillLoads},
                            {"stack_bytes", r.stackBytes},
                            {"static_smem_bytes", r.staticSmemBytes},
                            {"barriers", r.barriers}};
}

std::optional<std::string> attnc::findPtxas() {
  if (const char *env = std::getenv("ATTNC_PTXAS"); env && *env)
    return std::string(env);
#ifdef ATTNC_PTXAS_PATH
  if (llvm::sys::fs::can_execute(ATTNC_PTXAS_PATH))
    return std::string(ATTNC_PTXAS_PATH);
#endif
  if (llvm::ErrorOr<std::string> p = llvm::sys::findProgramByName("ptxas"))
    return *p;
  return std::nullopt;
}

std::variant<std::map<std::string, PtxasReport>, std::string>
attnc::runPtxas(StringRef ptxas, StringRef ptxPath, StringRef arch,
                StringRef cubinPath, ArrayRef<StringRef> entries) {
  SmallString<128> log;
  if (std::error_code ec =
          llvm::sys::fs::createTemporaryFile("attnc-ptxas", "log", log))
    return "cannot create a temporary file for ptxas's report: " + ec.message();
  std::string archFlag = ("-arch=" + arch).str();
  SmallVector<StringRef> argv{ptxas, "-v", archFlag, "-o", cubinPath, ptxPath};
  std::optional<StringRef> redirects[] = {std::nullopt, StringRef(log),
                                          StringRef(log)};
  std::string message;
  int rc = llvm::sys::ExecuteAndWait(ptxas, argv, std::nullopt, redirects, 0, 0,
                                     &message);
  std::string text;
  if (auto buffer = llvm::MemoryBuffer::getFile(log))
    text = (*buffer)->getBuffer().str();
  llvm::sys::fs::remove(log);
  if (rc != 0)
    return (ptxas + " -arch=" + arch + " failed (exit " + Twine(rc) + ")" +
            (message.empty() ? "" : ": " + message) + "\n" + text)
        .str();
  std::map<std::string, PtxasReport> reports;
  for (StringRef entry : entries) {
    std::optional<PtxasReport> report = parsePtxasReport(text, entry);
    if (!report)
      return (ptxas + " -v printed no register count for function '" + entry +
              "' of " + ptxPath + ":\n" + text)
          .str();
    reports[entry.str()] = *report;
  }
  return reports;
}
