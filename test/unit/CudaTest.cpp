//===- CudaTest.cpp - attnrt's CUDA side against a fake driver ------------===//
//
// No GPU needed: ATTNRT_LIBCUDA points at libattnrt_fakecuda.so (fakecuda/),
// which records launches instead of running them, and the test steers it
// through FakeCuda.h (the test links the same library, so both see one
// instance). Manifests, PTX and "cubins" are written by hand per test; the
// fake reads only the ".entry NAME(.param ...)" declarations of the images.
//
//===----------------------------------------------------------------------===//

#include "FakeCuda.h"
#include "attnrt/attnrt.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

namespace fs = std::filesystem;
using json = nlohmann::json;

// The fake's own driver entry points, for tests that play the caller who
// already has a context.
extern "C" int cuDevicePrimaryCtxRetain(void **context, int device);
extern "C" int cuDevicePrimaryCtxRelease_v2(int device);
extern "C" int cuCtxPushCurrent_v2(void *context);
extern "C" int cuCtxPopCurrent_v2(void **context);

namespace {

/// Sets an environment variable for a scope.
class ScopedEnv {
public:
  ScopedEnv(const char *name, const char *value) : name(name) {
    if (const char *old = std::getenv(name))
      previous = old;
    if (value)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ~ScopedEnv() {
    if (previous.empty())
      unsetenv(name);
    else
      setenv(name, previous.c_str(), 1);
  }

private:
  const char *name;
  std::string previous;
};

/// The contract's example kernel (docs/gpu-artifacts.md).
json prefillManifest() {
  return json::parse(R"({
  "format_version": 2, "target": "cuda", "archs": ["sm_80", "sm_90"],
  "header": "prefill.h",
  "kernels": [{
    "name": "prefill", "kind": "attention",
    "attention": {"layout": "dense", "num_q_heads": 8, "num_kv_heads": 2,
                  "head_dim": 128, "dtype": "f16", "scale": 0.088,
                  "softcap": 0.0, "has_lse": false,
                  "mask": {"causal": true, "align": "bottom_right",
                           "window": -1, "sinks": 0}},
    "args": [
      {"name": "q", "role": "query", "dir": "in", "dtype": "f16",
       "shape": ["batch", "seqlen_q", 8, 128]},
      {"name": "k", "role": "key", "dir": "in", "dtype": "f16",
       "shape": ["batch", "seqlen_k", 2, 128]},
      {"name": "v", "role": "value", "dir": "in", "dtype": "f16",
       "shape": ["batch", "seqlen_k", 2, 128]},
      {"name": "o", "role": "output", "dir": "out", "dtype": "f16",
       "shape": ["batch", "seqlen_q", 8, 128]}],
    "scratch": [],
    "gpu": {
      "entry": "prefill", "ptx": "prefill.ptx", "ptx_arch": "sm_80",
      "cubins": {"sm_80": "prefill.sm_80.cubin",
                 "sm_90": "prefill.sm_90.cubin"},
      "block": [128, 1, 1],
      "grid": [{"symbol": "seqlen_q", "divide": 64}, 8, {"symbol": "batch"}],
      "smem_bytes": 81920,
      "params": [{"arg": "q"}, {"arg": "k"}, {"arg": "v"}, {"arg": "o"},
                 {"symbol": "batch"}, {"symbol": "seqlen_q"},
                 {"symbol": "seqlen_k"}],
      "tile": {"block_q": 64, "block_kv": 64, "warps": 4, "stages": 2},
      "ptxas": {
        "sm_80": {"registers": 168, "spill_stores": 0, "spill_loads": 0,
                  "stack_bytes": 0, "static_smem_bytes": 0, "barriers": 1},
        "sm_90": {"registers": 166, "spill_stores": 0, "spill_loads": 0,
                  "stack_bytes": 0, "static_smem_bytes": 0, "barriers": 1}}
    }
  }]})");
}

/// What the fake reads of an image: the entry and its parameter sizes.
std::string image(const std::string &banner, const std::string &entry,
                  int pointers, int ints) {
  std::string params;
  for (int i = 0; i < pointers + ints; ++i)
    params += std::string(i ? ",\n" : "\n") + "  .param ." +
              (i < pointers ? "u64" : "u32") + " " + entry + "_param_" +
              std::to_string(i);
  return "// " + banner + "\n.version 7.0\n.target sm_80\n.address_size 64\n" +
         ".visible .entry " + entry + "(" + params + "\n)\n{\n  ret;\n}\n";
}

std::map<std::string, std::string> prefillFiles() {
  return {{"prefill.ptx", image("PTX sm_80", "prefill", 4, 3)},
          {"prefill.sm_80.cubin", image("CUBIN sm_80", "prefill", 4, 3)},
          {"prefill.sm_90.cubin", image("CUBIN sm_90", "prefill", 4, 3)}};
}

/// A temporary artifact directory.
struct Artifact {
  explicit Artifact(
      const json &manifest,
      const std::map<std::string, std::string> &files = prefillFiles()) {
    static int counter = 0;
    dir = fs::temp_directory_path() /
          ("attnrt-cuda-test-" + std::to_string(::getpid()) + "-" +
           std::to_string(counter++));
    fs::create_directories(dir);
    std::ofstream(dir / "manifest.json") << manifest.dump(2);
    for (const auto &[name, text] : files)
      std::ofstream(dir / name, std::ios::binary) << text;
  }
  ~Artifact() { fs::remove_all(dir); }
  fs::path dir;
};

std::string lastError() { return attnrt_last_error(); }

testing::AssertionResult hasText(const std::string &text) {
  std::string error = lastError();
  if (error.find(text) != std::string::npos && error.find('\n') == error.npos)
    return testing::AssertionSuccess();
  return testing::AssertionFailure()
         << "message: " << error << "\nexpected to contain: " << text;
}

/// Opens `manifest` (closing the module again); the message is in
/// attnrt_last_error().
attnrt_status
openStatus(const json &manifest,
           const std::map<std::string, std::string> &files = prefillFiles()) {
  Artifact a(manifest, files);
  attnrt_gpu_module *m = nullptr;
  attnrt_status s = attnrt_gpu_open(a.dir.c_str(), &m);
  attnrt_gpu_close(m);
  return s;
}

const char *fakeDriver() {
  const char *env = std::getenv("ATTNRT_LIBCUDA");
  return env && *env ? env : ATTNRT_FAKECUDA;
}

/// Tests on the fake driver: a fresh sm_90 device for each.
class CudaFake : public testing::Test {
protected:
  void SetUp() override {
    setenv("ATTNRT_LIBCUDA", fakeDriver(), 1);
    fakecuda_reset();
    fakecuda_set_device(1, 9, 0, 232448);
  }
  void TearDown() override {
    // Nothing leaks and the caller's thread is left as it was.
    EXPECT_EQ(fakecuda_live_modules(), 0);
    EXPECT_EQ(fakecuda_live_allocations(), 0);
    EXPECT_EQ(fakecuda_context_depth(), 0);
    EXPECT_EQ(fakecuda_primary_retains(), 0);
  }
};

/// Manifest checks happen before the driver is loaded: with a driver path
/// that does not exist, a bad manifest must still fail with its own error.
class CudaManifest : public testing::Test {
protected:
  ScopedEnv noDriver{"ATTNRT_LIBCUDA", "/nonexistent/libcuda.so.1"};
};

/// Device tensors: sizes and fake device pointers the runtime must never
/// dereference (far apart so that no two ranges overlap).
struct Tensors {
  std::vector<std::vector<int64_t>> sizes;
  std::vector<attnrt_tensor> views;

  Tensors(std::vector<std::vector<int64_t>> shapes, attnrt_dtype dtype)
      : sizes(std::move(shapes)) {
    for (size_t i = 0; i < sizes.size(); ++i)
      views.push_back({pointer(i), dtype, static_cast<int>(sizes[i].size()),
                       sizes[i].data(), nullptr});
  }
  static void *pointer(size_t i) {
    return reinterpret_cast<void *>(uintptr_t(i + 1) << 44);
  }
};

Tensors prefillTensors(int64_t batch, int64_t lq, int64_t lk) {
  return Tensors({{batch, lq, 8, 128},
                  {batch, lk, 2, 128},
                  {batch, lk, 2, 128},
                  {batch, lq, 8, 128}},
                 ATTNRT_DTYPE_F16);
}

/// Opens an artifact for the duration of a test.
struct Opened {
  explicit Opened(
      const json &manifest,
      const std::map<std::string, std::string> &files = prefillFiles())
      : artifact(manifest, files) {
    status = attnrt_gpu_open(artifact.dir.c_str(), &module);
    if (status == ATTNRT_OK)
      attnrt_gpu_find_kernel(
          module, manifest["kernels"][0]["name"].get<std::string>().c_str(),
          &kernel);
  }
  ~Opened() { attnrt_gpu_close(module); }
  Artifact artifact;
  attnrt_gpu_module *module = nullptr;
  const attnrt_kernel *kernel = nullptr;
  attnrt_status status;
};

fakecuda_launch lastLaunch() {
  fakecuda_launch l{};
  EXPECT_EQ(fakecuda_get_launch(fakecuda_num_launches() - 1, &l), 0);
  return l;
}

uint64_t u64(const fakecuda_launch &l, int i) {
  EXPECT_EQ(l.param_size[i], 8) << "param " << i;
  uint64_t v;
  std::memcpy(&v, l.param[i], 8);
  return v;
}

int32_t i32(const fakecuda_launch &l, int i) {
  EXPECT_EQ(l.param_size[i], 4) << "param " << i;
  int32_t v;
  std::memcpy(&v, l.param[i], 4);
  return v;
}

//===----------------------------------------------------------------------===//
// Manifest validation (no driver)
//===----------------------------------------------------------------------===//

TEST_F(CudaManifest, AValidArtifactGetsAsFarAsTheDriver) {
  EXPECT_EQ(openStatus(prefillManifest()), ATTNRT_ERR_LIBRARY);
  EXPECT_TRUE(hasText("the CUDA driver (/nonexistent/libcuda.so.1, from "
                      "ATTNRT_LIBCUDA) could not be loaded: "));
  EXPECT_TRUE(hasText("; attnrt's GPU path needs an NVIDIA driver (unset "
                      "ATTNRT_LIBCUDA to use libcuda.so.1)"));
}

struct Rule {
  const char *name;
  std::function<void(json &)> mutate;
  attnrt_status status;
  const char *message;
};

void expectRules(const std::vector<Rule> &rules) {
  for (const Rule &r : rules) {
    json m = prefillManifest();
    r.mutate(m);
    EXPECT_EQ(openStatus(m), r.status) << r.name << ": " << lastError();
    EXPECT_TRUE(hasText(r.message)) << r.name;
  }
}

json &gpu(json &m) { return m["kernels"][0]["gpu"]; }

TEST_F(CudaManifest, Archs) {
  const attnrt_status M = ATTNRT_ERR_MANIFEST;
  expectRules({
      {"missing", [](json &m) { m.erase("archs"); }, M,
       "is missing field 'archs'"},
      {"not a list", [](json &m) { m["archs"] = "sm_80"; }, M,
       "field 'archs' is \"sm_80\", expected an array"},
      {"empty", [](json &m) { m["archs"] = json::array(); }, M,
       "field 'archs' is empty"},
      {"no sm_",
       [](json &m) {
         m["archs"] = {"compute_80", "sm_90"};
       },
       M, "field 'archs' has 'compute_80'; expected sm_XY with XY >= 80"},
      {"suffix",
       [](json &m) {
         m["archs"] = {"sm_80", "sm_90a"};
       },
       M, "has 'sm_90a'; expected sm_XY"},
      {"too old",
       [](json &m) {
         m["archs"] = {"sm_75", "sm_80"};
       },
       M, "has 'sm_75'; expected sm_XY with XY >= 80"},
      {"not a string", [](json &m) { m["archs"] = {80}; }, M,
       "field 'archs' has entry 80, expected \"sm_XY\""},
      {"descending",
       [](json &m) {
         m["archs"] = {"sm_90", "sm_80"};
       },
       M, "it must be strictly ascending"},
      {"twice",
       [](json &m) {
         m["archs"] = {"sm_80", "sm_80"};
       },
       M, "it must be strictly ascending"},
  });
}

TEST_F(CudaManifest, FilesAndArchitectures) {
  const attnrt_status M = ATTNRT_ERR_MANIFEST;
  expectRules({
      {"no gpu", [](json &m) { m["kernels"][0].erase("gpu"); }, M,
       "kernel 'prefill' is missing field 'gpu'"},
      {"gpu not an object", [](json &m) { gpu(m) = 3; }, M,
       "kernel 'prefill' gpu: is 3, expected a JSON object"},
      {"no entry", [](json &m) { gpu(m).erase("entry"); }, M,
       "kernel 'prefill' gpu: is missing field 'entry'"},
      {"bad entry", [](json &m) { gpu(m)["entry"] = "pre fill"; }, M,
       "field 'entry' is 'pre fill', expected a PTX identifier"},
      {"no ptx", [](json &m) { gpu(m).erase("ptx"); }, M,
       "is missing field 'ptx'"},
      {"ptx path", [](json &m) { gpu(m)["ptx"] = "../x.ptx"; }, M,
       "field 'ptx' is '../x.ptx'; it must name a file inside the artifact "
       "directory (no '/')"},
      {"ptx_arch unknown", [](json &m) { gpu(m)["ptx_arch"] = "sm_86"; }, M,
       "field 'ptx_arch' names architecture 'sm_86', which is not in the "
       "manifest's archs (sm_80, sm_90)"},
      {"ptx_arch not lowest", [](json &m) { gpu(m)["ptx_arch"] = "sm_90"; }, M,
       "field 'ptx_arch' is 'sm_90' but the lowest of archs is 'sm_80'"},
      {"cubins not object", [](json &m) { gpu(m)["cubins"] = json::array(); },
       M, "kernel 'prefill' gpu cubins: is [], expected a JSON object"},
      {"cubin arch unknown",
       [](json &m) { gpu(m)["cubins"]["sm_86"] = "x.cubin"; }, M,
       "field 'cubins' names architecture 'sm_86', which is not in the "
       "manifest's archs"},
      {"cubin path",
       [](json &m) { gpu(m)["cubins"]["sm_90"] = "/tmp/x.cubin"; }, M,
       "field 'sm_90' is '/tmp/x.cubin'; it must name a file inside"},
      {"cubin not a string", [](json &m) { gpu(m)["cubins"]["sm_90"] = 1; }, M,
       "field 'sm_90' is 1, expected a file name"},
      {"ptxas without cubin", [](json &m) { gpu(m)["cubins"].erase("sm_90"); },
       M,
       "kernel 'prefill' gpu ptxas: has a report for 'sm_90', which has no "
       "cubin"},
      {"ptxas field",
       [](json &m) { gpu(m)["ptxas"]["sm_80"]["registers"] = "many"; }, M,
       "ptxas.sm_80: field 'registers' is \"many\", expected an integer"},
      {"phases", [](json &m) { m["kernels"][0]["phases"] = 2; }, M,
       "field 'phases' is 2 but a CUDA kernel is one launch (phases 1)"},
      {"scratch",
       [](json &m) {
         m["kernels"][0]["scratch"] =
             json::parse(R"([{"name": "s", "dtype": "f32", "shape": [4]}])");
       },
       M, "field 'scratch' lists 1 buffers but CUDA kernels take no scratch"},
      {"steps", [](json &m) { m["steps"] = json::array(); }, M,
       "field 'steps' is present but memory plans run only on the host "
       "runtime"},
  });
}

TEST_F(CudaManifest, BlockGridAndSharedMemory) {
  const attnrt_status M = ATTNRT_ERR_MANIFEST;
  expectRules({
      {"block size",
       [](json &m) {
         gpu(m)["block"] = {128, 1};
       },
       M, "field 'block' is [128,1], expected 3 thread counts [x, y, z]"},
      {"block zero",
       [](json &m) {
         gpu(m)["block"] = {0, 1, 1};
       },
       M,
       "field 'block' is [0,1,1]: entry 0 must be an integer from 1 to 1024"},
      {"block z",
       [](json &m) {
         gpu(m)["block"] = {1, 1, 65};
       },
       M, "entry 2 must be an integer from 1 to 64"},
      {"block threads",
       [](json &m) {
         gpu(m)["block"] = {256, 8, 1};
       },
       M,
       "field 'block' is [256,8,1] = 2048 threads; a block has at most 1024"},
      {"grid size",
       [](json &m) {
         gpu(m)["grid"] = {1, 1};
       },
       M, "field 'grid' is [1,1], expected 3 entries [x, y, z]"},
      {"grid zero", [](json &m) { gpu(m)["grid"][1] = 0; }, M,
       "field 'grid' has entry 1 = 0; a constant grid dimension is 1 to "
       "65535"},
      {"grid y limit", [](json &m) { gpu(m)["grid"][1] = 65536; }, M,
       "has entry 1 = 65536; a constant grid dimension is 1 to 65535"},
      {"grid string", [](json &m) { gpu(m)["grid"][0] = "seqlen_q"; }, M,
       "field 'grid' has entry 0 = \"seqlen_q\", expected an integer or "
       "{\"symbol\": S, \"multiply\": M, \"divide\": D}"},
      {"grid unknown symbol",
       [](json &m) {
         gpu(m)["grid"][2] = {{"symbol", "heads"}};
       },
       M,
       "kernel 'prefill' gpu grid[2]: field 'symbol' is 'heads', which no "
       "argument's shape binds (symbols: batch, seqlen_k, seqlen_q)"},
      {"grid no symbol",
       [](json &m) {
         gpu(m)["grid"][2] = {{"divide", 2}};
       },
       M, "gpu grid[2]: is missing field 'symbol'"},
      {"grid divide zero", [](json &m) { gpu(m)["grid"][0]["divide"] = 0; }, M,
       "gpu grid[0]: field 'divide' is 0, expected 1 to 2147483647"},
      {"grid multiply", [](json &m) { gpu(m)["grid"][0]["multiply"] = -2; }, M,
       "gpu grid[0]: field 'multiply' is -2, expected 1 to"},
      {"grid misspelled",
       [](json &m) {
         gpu(m)["grid"][0] = {{"symbol", "seqlen_q"}, {"divde", 64}};
       },
       M,
       "gpu grid[0]: has unknown field 'divde' (expected symbol, multiply, "
       "divide)"},
      {"smem missing", [](json &m) { gpu(m).erase("smem_bytes"); }, M,
       "is missing field 'smem_bytes'"},
      {"smem negative", [](json &m) { gpu(m)["smem_bytes"] = -1; }, M,
       "field 'smem_bytes' is -1, expected 0 to 2147483647"},
  });
}

TEST_F(CudaManifest, Params) {
  const attnrt_status M = ATTNRT_ERR_MANIFEST;
  expectRules({
      {"not a list", [](json &m) { gpu(m)["params"] = 1; }, M,
       "field 'params' is 1, expected an array"},
      {"unknown arg",
       [](json &m) {
         gpu(m)["params"][3] = {{"arg", "out"}};
       },
       M,
       "gpu params[3]: field 'arg' is 'out', which is not an argument of "
       "the kernel (q, k, v, o)"},
      {"unknown symbol",
       [](json &m) {
         gpu(m)["params"][6] = {{"symbol", "heads"}};
       },
       M,
       "gpu params[6]: field 'symbol' is 'heads', which no argument's shape "
       "binds"},
      {"both",
       [](json &m) {
         gpu(m)["params"][0] = {{"arg", "q"}, {"symbol", "batch"}};
       },
       M,
       "expected exactly one of {\"arg\": NAME} (a device pointer) and "
       "{\"symbol\": S} (an i32)"},
      {"neither", [](json &m) { gpu(m)["params"][0] = json::object(); }, M,
       "gpu params[0]: has {}, expected exactly one of"},
      {"not an object", [](json &m) { gpu(m)["params"][0] = "q"; }, M,
       "gpu params[0]: is \"q\", expected a JSON object"},
      {"unknown key",
       [](json &m) {
         gpu(m)["params"][0] = {{"arg", "q"}, {"as", "u32"}};
       },
       M, "gpu params[0]: has unknown field 'as' (expected arg, symbol)"},
      {"missing arg", [](json &m) { gpu(m)["params"].erase(3); }, M,
       "field 'params' passes argument 'o' 0 times; every argument is "
       "passed exactly once"},
      {"twice",
       [](json &m) {
         gpu(m)["params"][1] = {{"arg", "q"}};
       },
       M, "field 'params' passes argument 'q' 2 times"},
  });
}

TEST_F(CudaManifest, MissingFilesAreNamed) {
  auto files = prefillFiles();
  files.erase("prefill.sm_90.cubin");
  EXPECT_EQ(openStatus(prefillManifest(), files), ATTNRT_ERR_IO);
  EXPECT_TRUE(hasText("/prefill.sm_90.cubin (kernel 'prefill' "
                      "gpu.cubins.sm_90) does not exist; the artifact is "
                      "incomplete, regenerate it with attnc"));
  files = prefillFiles();
  files.erase("prefill.ptx");
  EXPECT_EQ(openStatus(prefillManifest(), files), ATTNRT_ERR_IO);
  EXPECT_TRUE(hasText("/prefill.ptx (kernel 'prefill' gpu.ptx) does not "
                      "exist"));
}

TEST_F(CudaManifest, PtxSignatureMatchesParams) {
  auto withPtx = [](const std::string &ptx) {
    auto files = prefillFiles();
    files["prefill.ptx"] = ptx;
    return openStatus(prefillManifest(), files);
  };
  EXPECT_EQ(withPtx(image("PTX", "decode", 4, 3)), ATTNRT_ERR_MANIFEST);
  EXPECT_TRUE(hasText("/prefill.ptx (kernel 'prefill') has no .entry prefill "
                      "(gpu.entry); the PTX and manifest.json do not match, "
                      "regenerate both with attnc"));
  EXPECT_EQ(withPtx(image("PTX", "prefill", 4, 2)), ATTNRT_ERR_MANIFEST);
  EXPECT_TRUE(hasText("(kernel 'prefill'): .entry prefill takes 6 parameters "
                      "but gpu.params lists 7"));
  EXPECT_EQ(withPtx(image("PTX", "prefill", 3, 4)), ATTNRT_ERR_MANIFEST);
  EXPECT_TRUE(hasText("(kernel 'prefill'): parameter 3 of .entry prefill is "
                      "'.param .u32 prefill_param_3' but gpu.params[3] is "
                      "argument 'o' (a 64-bit device pointer)"));
  std::string aggregate = image("PTX", "prefill", 4, 3);
  aggregate.replace(aggregate.find(".u32 prefill_param_6"), 20,
                    ".align 4 .b8 prefill_param_6[4]");
  EXPECT_EQ(withPtx(aggregate), ATTNRT_ERR_MANIFEST);
  EXPECT_TRUE(hasText("parameter 6 of .entry prefill is '.param .align 4 .b8 "
                      "prefill_param_6[4]' but gpu.params[6] is symbol "
                      "'seqlen_k' (a 32-bit integer)"));
  // What LLVM writes (qualified pointers, .s32), and comments, are fine:
  // such an artifact gets as far as the (missing) driver.
  std::string llvm = "// .entry prefill(.param .u32 x)\n/* .entry prefill( */\n"
                     ".visible .entry prefill(\n";
  for (int i = 0; i < 4; ++i)
    llvm += "\t.param .u64 .ptr .global .align 1 prefill_param_" +
            std::to_string(i) + ",\n";
  llvm += "\t.param .s32 prefill_param_4, .param .b32 prefill_param_5,\n"
          "\t.param .u32 prefill_param_6\n)\n{\n\tret;\n}\n";
  EXPECT_EQ(withPtx(llvm), ATTNRT_ERR_LIBRARY) << lastError();
}

TEST_F(CudaManifest, EachApiRefusesTheOtherTarget) {
  // A host artifact through the GPU API.
  attnrt_gpu_module *gm = nullptr;
  EXPECT_EQ(attnrt_gpu_open(ATTNRT_FIXTURE_DIR, &gm), ATTNRT_ERR_UNSUPPORTED);
  EXPECT_EQ(gm, nullptr);
  EXPECT_TRUE(hasText("manifest.json has target 'host' (a host artifact); "
                      "open it with attnrt_open (attnrt/attnrt.h)"));
  // A CUDA artifact through the host API.
  Artifact a(prefillManifest());
  attnrt_module *m = nullptr;
  EXPECT_EQ(attnrt_open(a.dir.c_str(), 0, &m), ATTNRT_ERR_UNSUPPORTED);
  EXPECT_TRUE(hasText("manifest.json has target 'cuda' (a CUDA artifact); "
                      "open it with attnrt_gpu_open (attnrt/attnrt_cuda.h)"));
  EXPECT_EQ(attnrt_open_embedded(
                prefillManifest().dump().c_str(),
                [](const char *) -> void * { return nullptr; }, 0, &m),
            ATTNRT_ERR_UNSUPPORTED);
  EXPECT_TRUE(hasText("the embedded manifest has target 'cuda'"));
  // Other targets, for both.
  json other = prefillManifest();
  other["target"] = "rocm";
  EXPECT_EQ(openStatus(other), ATTNRT_ERR_UNSUPPORTED);
  EXPECT_TRUE(hasText("has target 'rocm' but attnrt runs only 'host' and "
                      "'cuda' artifacts"));
}

TEST_F(CudaManifest, ArtifactTarget) {
  const char *target = nullptr;
  ASSERT_EQ(attnrt_artifact_target(ATTNRT_FIXTURE_DIR, &target), ATTNRT_OK);
  EXPECT_STREQ(target, "host");
  Artifact a(prefillManifest());
  ASSERT_EQ(attnrt_artifact_target(a.dir.c_str(), &target), ATTNRT_OK);
  EXPECT_STREQ(target, "cuda");
  EXPECT_EQ(attnrt_artifact_target("/nonexistent", &target), ATTNRT_ERR_IO);
  EXPECT_EQ(target, nullptr);
  EXPECT_EQ(attnrt_artifact_target(nullptr, &target),
            ATTNRT_ERR_INVALID_ARGUMENT);
}

//===----------------------------------------------------------------------===//
// The driver
//===----------------------------------------------------------------------===//

TEST(CudaDriver, MissingDriverIsAClearError) {
  {
    ScopedEnv env("ATTNRT_LIBCUDA", "/nonexistent/libcuda.so.1");
    EXPECT_EQ(attnrt_cuda_available(), ATTNRT_ERR_LIBRARY);
    EXPECT_TRUE(hasText("the CUDA driver (/nonexistent/libcuda.so.1, from "
                        "ATTNRT_LIBCUDA) could not be loaded: "
                        "/nonexistent/libcuda.so.1: cannot open shared "
                        "object file"));
  }
  {
    // The default name; this machine may or may not have a driver.
    ScopedEnv env("ATTNRT_LIBCUDA", nullptr);
    if (attnrt_cuda_available() == ATTNRT_ERR_LIBRARY) {
      EXPECT_TRUE(hasText("the CUDA driver (libcuda.so.1) could not be "
                          "loaded: "));
      EXPECT_TRUE(hasText("; attnrt's GPU path needs an NVIDIA driver"));
    }
  }
  {
    // A library that is not a CUDA driver.
    ScopedEnv env("ATTNRT_LIBCUDA", ATTNRT_LIB);
    EXPECT_EQ(attnrt_cuda_available(), ATTNRT_ERR_LIBRARY);
    EXPECT_TRUE(hasText(std::string("the CUDA driver (") + ATTNRT_LIB +
                        ", from ATTNRT_LIBCUDA) lacks cuInit: "));
  }
}

TEST_F(CudaFake, Available) {
  EXPECT_EQ(attnrt_cuda_available(), ATTNRT_OK) << lastError();
  fakecuda_set_device(0, 9, 0, 232448);
  EXPECT_EQ(attnrt_cuda_available(), ATTNRT_ERR_CUDA);
  EXPECT_TRUE(hasText(std::string("the CUDA driver (") + fakeDriver() +
                      ", from ATTNRT_LIBCUDA) did not initialize: cuInit: "
                      "CUDA_ERROR_NO_DEVICE (no CUDA-capable device is "
                      "detected)"));
  EXPECT_EQ(openStatus(prefillManifest()), ATTNRT_ERR_CUDA);
  EXPECT_TRUE(hasText("cuInit: CUDA_ERROR_NO_DEVICE"));
}

//===----------------------------------------------------------------------===//
// Opening: context, architecture, shared memory
//===----------------------------------------------------------------------===//

TEST_F(CudaFake, LoadsTheCubinOfTheExactArchitecture) {
  Opened o(prefillManifest());
  ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
  ASSERT_EQ(fakecuda_num_loads(), 1);
  EXPECT_EQ(std::string(fakecuda_loaded_image(0)).rfind("// CUBIN sm_90", 0),
            0u);
  const attnrt_gpu_kernel_info *info = attnrt_kernel_gpu(o.kernel);
  ASSERT_NE(info, nullptr);
  EXPECT_STREQ(info->image, "prefill.sm_90.cubin");
  EXPECT_STREQ(info->image_arch, "sm_90");
  EXPECT_EQ(info->image_is_ptx, 0);
  EXPECT_STREQ(info->entry, "prefill");
  EXPECT_STREQ(info->ptx, "prefill.ptx");
  EXPECT_STREQ(info->ptx_arch, "sm_80");
  EXPECT_EQ(info->block[0], 128);
  EXPECT_STREQ(info->grid[0].symbol, "seqlen_q");
  EXPECT_EQ(info->grid[0].divide, 64);
  EXPECT_EQ(info->grid[1].symbol, nullptr);
  EXPECT_EQ(info->grid[1].value, 8);
  EXPECT_EQ(info->smem_bytes, 81920);
  EXPECT_EQ(info->num_params, 7);
  ASSERT_NE(info->ptxas, nullptr);
  EXPECT_EQ(info->ptxas->registers, 166);
  EXPECT_EQ(info->ptxas->barriers, 1);
  // The host description works for CUDA kernels too.
  EXPECT_EQ(attnrt_kernel_num_args(o.kernel), 4);
  EXPECT_STREQ(attnrt_kernel_arg(o.kernel, 3)->name, "o");
  EXPECT_EQ(attnrt_kernel_attention(o.kernel)->num_q_heads, 8);
  EXPECT_EQ(attnrt_kernel_attention(o.kernel)->block_q, 64);
  EXPECT_EQ(attnrt_kernel_num_phases(o.kernel), 1);
  attnrt_gpu_device_info dev;
  ASSERT_EQ(attnrt_gpu_device(o.module, &dev), ATTNRT_OK);
  EXPECT_STREQ(dev.arch, "sm_90");
  EXPECT_STREQ(dev.name, "Fake CUDA Device sm_90");
  EXPECT_EQ(dev.compute_major, 9);
  EXPECT_EQ(dev.max_shared_memory_optin, 232448);
  EXPECT_EQ(dev.driver_version, 12040);
  // The primary context was retained for the module, and is not current.
  EXPECT_EQ(fakecuda_primary_retains(), 1);
  EXPECT_EQ(fakecuda_context_depth(), 0);
}

TEST_F(CudaFake, FallsBackToPtxOnNewerDevices) {
  for (auto [major, minor] : {std::pair{8, 6}, {10, 0}, {12, 0}}) {
    fakecuda_reset();
    fakecuda_set_device(1, major, minor, 101376);
    Opened o(prefillManifest());
    ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
    EXPECT_EQ(std::string(fakecuda_loaded_image(0)).rfind("// PTX sm_80", 0),
              0u);
    const attnrt_gpu_kernel_info *info = attnrt_kernel_gpu(o.kernel);
    EXPECT_STREQ(info->image, "prefill.ptx");
    EXPECT_STREQ(info->image_arch, "sm_80");
    EXPECT_EQ(info->image_is_ptx, 1);
    EXPECT_EQ(info->ptxas, nullptr);
  }
  // Without cubins (attnc ran without ptxas), even the PTX's own arch.
  fakecuda_set_device(1, 8, 0, 166912);
  json m = prefillManifest();
  gpu(m)["cubins"] = json::object();
  gpu(m).erase("ptxas");
  Opened o(m);
  ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
  EXPECT_STREQ(attnrt_kernel_gpu(o.kernel)->image, "prefill.ptx");
}

TEST_F(CudaFake, RefusesDevicesOlderThanThePtx) {
  json m = prefillManifest();
  m["archs"] = {"sm_90"};
  gpu(m)["ptx_arch"] = "sm_90";
  gpu(m)["cubins"] = {{"sm_90", "prefill.sm_90.cubin"}};
  gpu(m)["ptxas"].erase("sm_80");
  fakecuda_set_device(1, 8, 6, 101376);
  EXPECT_EQ(openStatus(m), ATTNRT_ERR_UNSUPPORTED);
  EXPECT_TRUE(hasText("kernel 'prefill' cannot run on device 0 (Fake CUDA "
                      "Device sm_86, sm_86): the artifact has cubins for "
                      "sm_90 and PTX for sm_90, which needs sm_90 or newer"));
  EXPECT_EQ(fakecuda_num_loads(), 0);
}

TEST_F(CudaFake, UsesTheCallersCurrentContext) {
  void *context = nullptr;
  ASSERT_EQ(cuDevicePrimaryCtxRetain(&context, 0), 0);
  ASSERT_EQ(cuCtxPushCurrent_v2(context), 0);
  {
    Opened o(prefillManifest());
    ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
    // attnrt did not retain a context of its own and left the caller's.
    EXPECT_EQ(fakecuda_primary_retains(), 1);
    EXPECT_EQ(fakecuda_context_depth(), 1);
    Tensors t = prefillTensors(1, 64, 64);
    ASSERT_EQ(attnrt_gpu_run(o.module, o.kernel, t.views.data(), 4, nullptr),
              ATTNRT_OK)
        << lastError();
    EXPECT_EQ(fakecuda_context_depth(), 1);
    // Push/pop only when another context is current: none was needed.
    EXPECT_EQ(fakecuda_calls("cuCtxPushCurrent_v2"), 1);
  }
  void *popped = nullptr;
  ASSERT_EQ(cuCtxPopCurrent_v2(&popped), 0);
  EXPECT_EQ(popped, context);
  ASSERT_EQ(cuDevicePrimaryCtxRelease_v2(0), 0);
}

TEST_F(CudaFake, OptsInToSharedMemoryAbove48KiB) {
  {
    Opened o(prefillManifest()); // 81920 bytes
    ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
    EXPECT_EQ(fakecuda_func_attribute("prefill", 8), 81920);
    // The fake, like the driver, refuses the launch without the opt-in.
    Tensors t = prefillTensors(1, 64, 64);
    EXPECT_EQ(attnrt_gpu_run(o.module, o.kernel, t.views.data(), 4, nullptr),
              ATTNRT_OK)
        << lastError();
  }
  for (int64_t smem : {0, 1024, 48 * 1024}) {
    fakecuda_reset();
    json m = prefillManifest();
    gpu(m)["smem_bytes"] = smem;
    Opened o(m);
    ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
    EXPECT_EQ(fakecuda_func_attribute("prefill", 8), -1) << smem;
    EXPECT_EQ(fakecuda_calls("cuFuncSetAttribute"), 0);
  }
  json m = prefillManifest();
  gpu(m)["smem_bytes"] = 232449;
  EXPECT_EQ(openStatus(m), ATTNRT_ERR_UNSUPPORTED);
  EXPECT_TRUE(hasText("kernel 'prefill': gpu.smem_bytes is 232449 but "
                      "device 0 (sm_90) gives a block at most 232448 bytes "
                      "of shared memory"));
}

TEST_F(CudaFake, BlockOverTheFunctionsLimit) {
  fakecuda_set_max_threads(64);
  EXPECT_EQ(openStatus(prefillManifest()), ATTNRT_ERR_UNSUPPORTED);
  EXPECT_TRUE(hasText("kernel 'prefill': gpu.block has 128 threads but "
                      "prefill.sm_90.cubin can run at most 64 per block on "
                      "sm_90"));
}

//===----------------------------------------------------------------------===//
// Launches: grid, parameters, validation
//===----------------------------------------------------------------------===//

TEST_F(CudaFake, GridAndParameterBytes) {
  Opened o(prefillManifest());
  ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
  Tensors t = prefillTensors(2, 130, 77);
  void *stream = reinterpret_cast<void *>(0x5eed);
  ASSERT_EQ(attnrt_gpu_run(o.module, o.kernel, t.views.data(), 4, stream),
            ATTNRT_OK)
      << lastError();
  ASSERT_EQ(fakecuda_num_launches(), 1);
  fakecuda_launch l = lastLaunch();
  EXPECT_STREQ(l.name, "prefill");
  EXPECT_EQ(l.grid[0], 3u); // ceil(130 / 64)
  EXPECT_EQ(l.grid[1], 8u);
  EXPECT_EQ(l.grid[2], 2u); // batch
  EXPECT_EQ(l.block[0], 128u);
  EXPECT_EQ(l.block[1], 1u);
  EXPECT_EQ(l.block[2], 1u);
  EXPECT_EQ(l.smem_bytes, 81920u);
  EXPECT_EQ(l.stream, stream);
  ASSERT_EQ(l.num_params, 7);
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(u64(l, i), reinterpret_cast<uintptr_t>(Tensors::pointer(i)));
  EXPECT_EQ(i32(l, 4), 2);
  EXPECT_EQ(i32(l, 5), 130);
  EXPECT_EQ(i32(l, 6), 77);
  // Not synchronized: attnrt_gpu_run only launches.
  EXPECT_EQ(fakecuda_calls("cuStreamSynchronize"), 0);
  EXPECT_EQ(fakecuda_calls("cuCtxSynchronize"), 0);

  attnrt_gpu_launch cfg;
  ASSERT_EQ(attnrt_gpu_launch_config(o.kernel, t.views.data(), 4, &cfg),
            ATTNRT_OK);
  EXPECT_EQ(cfg.grid[0], 3u);
  EXPECT_EQ(cfg.grid[2], 2u);
  EXPECT_EQ(cfg.smem_bytes, 81920u);
}

TEST_F(CudaFake, GridMultiplyAndDivide) {
  json m = prefillManifest();
  gpu(m)["grid"][0] = {{"symbol", "seqlen_q"}, {"multiply", 3}, {"divide", 2}};
  gpu(m)["grid"][1] = {{"symbol", "seqlen_k"}, {"multiply", 2}};
  Opened o(m);
  ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
  Tensors t = prefillTensors(1, 5, 7);
  attnrt_gpu_launch cfg;
  ASSERT_EQ(attnrt_gpu_launch_config(o.kernel, t.views.data(), 4, &cfg),
            ATTNRT_OK);
  EXPECT_EQ(cfg.grid[0], 8u);  // ceil(5 * 3 / 2)
  EXPECT_EQ(cfg.grid[1], 14u); // 7 * 2
  EXPECT_EQ(cfg.grid[2], 1u);
}

TEST_F(CudaFake, AnEmptyGridLaunchesNothing) {
  Opened o(prefillManifest());
  ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
  Tensors t = prefillTensors(2, 0, 77);
  EXPECT_EQ(attnrt_gpu_run(o.module, o.kernel, t.views.data(), 4, nullptr),
            ATTNRT_OK)
      << lastError();
  EXPECT_EQ(fakecuda_num_launches(), 0);
}

TEST_F(CudaFake, GridAndSymbolLimits) {
  Opened o(prefillManifest());
  ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
  Tensors big = prefillTensors(70000, 1, 1); // grid z = batch
  EXPECT_EQ(attnrt_gpu_run(o.module, o.kernel, big.views.data(), 4, nullptr),
            ATTNRT_ERR_VALIDATION);
  EXPECT_TRUE(hasText("kernel 'prefill': grid z = batch is over CUDA's limit "
                      "of 65535 blocks for batch = 70000; split the call"));
  Tensors longK = prefillTensors(1, 1, int64_t(1) << 31);
  EXPECT_EQ(attnrt_gpu_run(o.module, o.kernel, longK.views.data(), 4, nullptr),
            ATTNRT_ERR_VALIDATION);
  EXPECT_TRUE(hasText("kernel 'prefill': symbol 'seqlen_k' = 2147483648 does "
                      "not fit the kernel's i32 parameter (at most "
                      "2147483647)"));
  EXPECT_EQ(fakecuda_num_launches(), 0);
}

TEST_F(CudaFake, ValidatesTensorsLikeTheHostPath) {
  Opened o(prefillManifest());
  ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
  auto run = [&](Tensors &t, int n = 4) {
    return attnrt_gpu_run(o.module, o.kernel, t.views.data(), n, nullptr);
  };
  Tensors t = prefillTensors(2, 64, 64);
  EXPECT_EQ(run(t, 3), ATTNRT_ERR_VALIDATION);
  EXPECT_TRUE(hasText("kernel 'prefill' takes 4 arguments (q, k, v, o) but 3 "
                      "were given"));
  t.views[1].dtype = ATTNRT_DTYPE_BF16;
  EXPECT_EQ(run(t), ATTNRT_ERR_VALIDATION);
  EXPECT_TRUE(hasText("argument 'k' (#1): dtype is bf16 but the kernel "
                      "expects f16"));
  t = prefillTensors(2, 64, 64);
  t.sizes[2][1] = 65;
  EXPECT_EQ(run(t), ATTNRT_ERR_VALIDATION);
  EXPECT_TRUE(hasText("gives seqlen_k = 65 but argument 'k' dim 1 gives "
                      "seqlen_k = 64"));
  t = prefillTensors(2, 64, 64);
  t.sizes[0][2] = 4;
  EXPECT_EQ(run(t), ATTNRT_ERR_VALIDATION);
  EXPECT_TRUE(hasText("dim 2 must be 8 (a static size compiled into the "
                      "kernel)"));
  // Strides: only row-major contiguous tensors.
  t = prefillTensors(2, 64, 64);
  int64_t transposed[4] = {64 * 8 * 128, 128, 64 * 128, 1};
  t.views[0].strides = transposed;
  EXPECT_EQ(run(t), ATTNRT_ERR_VALIDATION);
  EXPECT_TRUE(hasText("argument 'q' (#0): strides [65536, 128, 8192, 1] for "
                      "shape [2, 64, 8, 128] are not row-major contiguous"));
  int64_t contiguous[4] = {64 * 8 * 128, 8 * 128, 128, 1};
  t.views[0].strides = contiguous;
  EXPECT_EQ(run(t), ATTNRT_OK) << lastError();
  // Outputs may not overlap inputs (pointer arithmetic only).
  t = prefillTensors(2, 64, 64);
  t.views[3].data = t.views[0].data;
  EXPECT_EQ(run(t), ATTNRT_ERR_VALIDATION);
  EXPECT_TRUE(hasText("argument 'o' (#3): shares memory with argument 'q'"));
  t = prefillTensors(2, 64, 64);
  t.views[2].data = nullptr;
  EXPECT_EQ(run(t), ATTNRT_ERR_VALIDATION);
  EXPECT_TRUE(hasText("argument 'v' (#2): data pointer is NULL"));
  EXPECT_EQ(fakecuda_num_launches(), 1);
}

/// A ragged kernel: its cu_seqlens live on the device and must not be read.
TEST_F(CudaFake, DeviceDataIsNeverRead) {
  json m = json::parse(R"({
  "format_version": 2, "target": "cuda", "archs": ["sm_90"],
  "kernels": [{
    "name": "ragged", "kind": "attention",
    "attention": {"layout": "ragged", "num_q_heads": 2, "num_kv_heads": 1,
                  "head_dim": 64, "dtype": "bf16", "scale": 0.125,
                  "softcap": 0.0, "has_lse": false,
                  "mask": {"causal": false, "align": "bottom_right",
                           "window": -1, "sinks": 0}},
    "args": [
      {"name": "q", "role": "query", "dir": "in", "dtype": "bf16",
       "shape": ["total_q", 2, 64]},
      {"name": "k", "role": "key", "dir": "in", "dtype": "bf16",
       "shape": ["total_k", 1, 64]},
      {"name": "v", "role": "value", "dir": "in", "dtype": "bf16",
       "shape": ["total_k", 1, 64]},
      {"name": "cu_q", "role": "cu_seqlens_q", "dir": "in", "dtype": "i32",
       "shape": ["batch+1"]},
      {"name": "cu_k", "role": "cu_seqlens_k", "dir": "in", "dtype": "i32",
       "shape": ["batch+1"]},
      {"name": "o", "role": "output", "dir": "out", "dtype": "bf16",
       "shape": ["total_q", 2, 64]}],
    "gpu": {"entry": "ragged", "ptx": "ragged.ptx", "ptx_arch": "sm_90",
            "cubins": {}, "block": [64, 2, 1],
            "grid": [{"symbol": "batch"}, 2, 1], "smem_bytes": 0,
            "params": [{"arg": "q"}, {"arg": "k"}, {"arg": "v"},
                       {"arg": "cu_q"}, {"arg": "cu_k"}, {"arg": "o"},
                       {"symbol": "total_q"}, {"symbol": "batch"}]}
  }]})");
  Opened o(m, {{"ragged.ptx", image("PTX", "ragged", 6, 2)}});
  ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
  Tensors t({{10, 2, 64}, {12, 1, 64}, {12, 1, 64}, {4}, {4}, {10, 2, 64}},
            ATTNRT_DTYPE_BF16);
  t.views[3].dtype = t.views[4].dtype = ATTNRT_DTYPE_I32;
  // attnrt_validate on a CUDA kernel checks without reading, too.
  EXPECT_EQ(attnrt_validate(o.kernel, t.views.data(), 6), ATTNRT_OK)
      << lastError();
  ASSERT_EQ(attnrt_gpu_run(o.module, o.kernel, t.views.data(), 6, nullptr),
            ATTNRT_OK)
      << lastError();
  fakecuda_launch l = lastLaunch();
  EXPECT_EQ(l.grid[0], 3u); // batch = 4 - 1
  EXPECT_EQ(l.block[1], 2u);
  EXPECT_EQ(i32(l, 6), 10);
  EXPECT_EQ(i32(l, 7), 3);
  // What needs no data is still checked: both cu_seqlens have batch+1.
  t.sizes[4][0] = 5;
  EXPECT_EQ(attnrt_gpu_run(o.module, o.kernel, t.views.data(), 6, nullptr),
            ATTNRT_ERR_VALIDATION);
}

TEST_F(CudaFake, HostAndCudaKernelsDoNotMix) {
  Opened o(prefillManifest());
  ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
  attnrt::Module host(ATTNRT_FIXTURE_DIR, 1);
  attnrt::Kernel hostKernel = host.kernel("dense_f32");
  Tensors t = prefillTensors(1, 1, 1);
  EXPECT_EQ(attnrt_run(host.get(), o.kernel, t.views.data(), 4, 1),
            ATTNRT_ERR_INVALID_ARGUMENT);
  EXPECT_TRUE(hasText("attnrt_run: kernel 'prefill' is a CUDA kernel "
                      "(attnrt_gpu_open); launch it with attnrt_gpu_run"));
  EXPECT_EQ(
      attnrt_gpu_run(o.module, hostKernel.get(), t.views.data(), 4, nullptr),
      ATTNRT_ERR_INVALID_ARGUMENT);
  EXPECT_TRUE(hasText("attnrt_gpu_run: kernel 'dense_f32' is a host kernel "
                      "(attnrt_open); run it with attnrt_run"));
  EXPECT_EQ(attnrt_kernel_gpu(hostKernel.get()), nullptr);
  int64_t counters[3];
  EXPECT_EQ(attnrt_kernel_tile_stats(o.kernel, counters),
            ATTNRT_ERR_UNSUPPORTED);
  EXPECT_TRUE(hasText("kernel 'prefill' is a CUDA kernel; tile counters "
                      "exist only in host kernels"));
  Opened other(prefillManifest());
  EXPECT_EQ(attnrt_gpu_run(other.module, o.kernel, t.views.data(), 4, nullptr),
            ATTNRT_ERR_INVALID_ARGUMENT);
  EXPECT_TRUE(hasText("does not belong to this module"));
  EXPECT_EQ(attnrt_gpu_run(nullptr, o.kernel, t.views.data(), 4, nullptr),
            ATTNRT_ERR_INVALID_ARGUMENT);
  const attnrt_kernel *k = nullptr;
  EXPECT_EQ(attnrt_gpu_find_kernel(o.module, "decode", &k),
            ATTNRT_ERR_NOT_FOUND);
  EXPECT_TRUE(hasText("no kernel named 'decode' in "));
  EXPECT_TRUE(hasText("; available: prefill"));
  EXPECT_EQ(attnrt_gpu_kernel_at(o.module, 1), nullptr);
  EXPECT_EQ(attnrt_gpu_kernel_at(o.module, 0), o.kernel);
}

//===----------------------------------------------------------------------===//
// Driver errors
//===----------------------------------------------------------------------===//

TEST_F(CudaFake, DriverErrorsNameTheCallTheCodeAndItsText) {
  fakecuda_fail("cuModuleLoadDataEx", 209);
  EXPECT_EQ(openStatus(prefillManifest()), ATTNRT_ERR_CUDA);
  EXPECT_TRUE(hasText("kernel 'prefill': loading prefill.sm_90.cubin (cubin "
                      "for sm_90): cuModuleLoadDataEx: "
                      "CUDA_ERROR_NO_BINARY_FOR_GPU (no kernel image is "
                      "available for execution on the device)"));
  // The JIT's log, on one line.
  EXPECT_TRUE(hasText("(no kernel image is available for execution on the "
                      "device); JIT log: ptxas application ptx input, line "
                      "7; error   : fake failure ptxas fatal   : Ptx "
                      "assembly aborted"));
  fakecuda_fail("cuModuleLoadDataEx", 0);

  fakecuda_set_device(1, 8, 9, 101376);
  fakecuda_fail("cuModuleLoadDataEx", 222);
  EXPECT_EQ(openStatus(prefillManifest()), ATTNRT_ERR_CUDA);
  EXPECT_TRUE(hasText("loading prefill.ptx (PTX for sm_80, JIT-compiled for "
                      "sm_89): cuModuleLoadDataEx: "
                      "CUDA_ERROR_UNSUPPORTED_PTX_VERSION"));
  fakecuda_fail("cuModuleLoadDataEx", 0);
  fakecuda_set_device(1, 9, 0, 232448);

  fakecuda_fail("cuModuleLoadDataEx", 4242);
  EXPECT_EQ(openStatus(prefillManifest()), ATTNRT_ERR_CUDA);
  EXPECT_TRUE(hasText("cuModuleLoadDataEx: CUresult 4242 (not a code this "
                      "driver knows)"));
  fakecuda_fail("cuModuleLoadDataEx", 0);

  // The PTX declares the entry (checked before CUDA), the cubin does not.
  json m = prefillManifest();
  gpu(m)["entry"] = "prefill_v2";
  auto files = prefillFiles();
  files["prefill.ptx"] = image("PTX sm_80", "prefill_v2", 4, 3);
  EXPECT_EQ(openStatus(m, files), ATTNRT_ERR_CUDA);
  EXPECT_TRUE(hasText("kernel 'prefill': entry 'prefill_v2' of "
                      "prefill.sm_90.cubin (gpu.entry does not match the "
                      "image): cuModuleGetFunction: CUDA_ERROR_NOT_FOUND "
                      "(named symbol not found)"));

  fakecuda_fail("cuFuncSetAttribute", 1);
  EXPECT_EQ(openStatus(prefillManifest()), ATTNRT_ERR_CUDA);
  EXPECT_TRUE(hasText("kernel 'prefill' (81920 bytes of dynamic shared "
                      "memory): cuFuncSetAttribute: CUDA_ERROR_INVALID_VALUE "
                      "(invalid argument)"));
  fakecuda_fail("cuFuncSetAttribute", 0);

  fakecuda_fail("cuDevicePrimaryCtxRetain", 201);
  EXPECT_EQ(openStatus(prefillManifest()), ATTNRT_ERR_CUDA);
  EXPECT_TRUE(hasText("cuDevicePrimaryCtxRetain: CUDA_ERROR_INVALID_CONTEXT "
                      "(invalid device context)"));
  fakecuda_fail("cuDevicePrimaryCtxRetain", 0);

  Opened o(prefillManifest());
  ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
  Tensors t = prefillTensors(2, 130, 77);
  fakecuda_fail("cuLaunchKernel", 701);
  EXPECT_EQ(attnrt_gpu_run(o.module, o.kernel, t.views.data(), 4, nullptr),
            ATTNRT_ERR_CUDA);
  EXPECT_TRUE(hasText("kernel 'prefill' (grid 3x8x2, block 128x1x1, 81920 "
                      "bytes of shared memory): cuLaunchKernel: "
                      "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES (too many resources "
                      "requested for launch)"));
  fakecuda_fail("cuLaunchKernel", 0);
  fakecuda_fail("cuCtxSynchronize", 700);
  EXPECT_EQ(attnrt_gpu_synchronize(o.module, nullptr), ATTNRT_ERR_CUDA);
  EXPECT_TRUE(hasText("cuCtxSynchronize: CUDA_ERROR_ILLEGAL_ADDRESS (an "
                      "illegal memory access was encountered)"));
  EXPECT_STREQ(attnrt_status_string(ATTNRT_ERR_CUDA), "CUDA driver error");
}

//===----------------------------------------------------------------------===//
// Memory, timing, synchronization, C++
//===----------------------------------------------------------------------===//

TEST_F(CudaFake, MemoryRoundTrip) {
  Opened o(prefillManifest());
  ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
  void *p = nullptr;
  ASSERT_EQ(attnrt_gpu_alloc(o.module, 16, &p), ATTNRT_OK) << lastError();
  const char in[16] = "fifteen chars..";
  char out[16] = {0};
  ASSERT_EQ(attnrt_gpu_copy_to_device(o.module, p, in, 16), ATTNRT_OK);
  ASSERT_EQ(attnrt_gpu_copy_to_host(o.module, out, p, 16), ATTNRT_OK);
  EXPECT_STREQ(out, in);
  EXPECT_EQ(attnrt_gpu_copy_to_device(o.module, p, in, 17), ATTNRT_ERR_CUDA);
  EXPECT_TRUE(hasText("cuMemcpyHtoD: CUDA_ERROR_INVALID_VALUE"));
  ASSERT_EQ(attnrt_gpu_free(o.module, p), ATTNRT_OK);
  EXPECT_EQ(attnrt_gpu_free(o.module, p), ATTNRT_ERR_CUDA);
  EXPECT_TRUE(hasText("cuMemFree: CUDA_ERROR_INVALID_VALUE"));
  void *empty = nullptr;
  ASSERT_EQ(attnrt_gpu_alloc(o.module, 0, &empty), ATTNRT_OK);
  EXPECT_NE(empty, nullptr);
  EXPECT_EQ(attnrt_gpu_free(o.module, empty), ATTNRT_OK);
  fakecuda_fail("cuMemAlloc_v2", 2);
  EXPECT_EQ(attnrt_gpu_alloc(o.module, 1 << 20, &p), ATTNRT_ERR_CUDA);
  EXPECT_TRUE(hasText("attnrt_gpu_alloc(1048576 bytes): cuMemAlloc: "
                      "CUDA_ERROR_OUT_OF_MEMORY (out of memory)"));
  EXPECT_EQ(p, nullptr);
  EXPECT_EQ(fakecuda_context_depth(), 0);
}

TEST_F(CudaFake, TimesRunsWithEvents) {
  Opened o(prefillManifest());
  ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
  Tensors t = prefillTensors(2, 130, 77);
  float ms[5] = {0};
  ASSERT_EQ(attnrt_gpu_time_runs(o.module, o.kernel, t.views.data(), 4, nullptr,
                                 5, ms),
            ATTNRT_OK)
      << lastError();
  for (float v : ms)
    EXPECT_FLOAT_EQ(v, 0.5f); // the fake's clock per launch
  EXPECT_EQ(fakecuda_num_launches(), 5);
  EXPECT_EQ(fakecuda_calls("cuEventCreate"), 6);
  EXPECT_EQ(fakecuda_calls("cuEventDestroy_v2"), 6);
  EXPECT_EQ(attnrt_gpu_time_runs(o.module, o.kernel, t.views.data(), 4, nullptr,
                                 0, ms),
            ATTNRT_ERR_INVALID_ARGUMENT);
}

TEST_F(CudaFake, Synchronize) {
  Opened o(prefillManifest());
  ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
  EXPECT_EQ(attnrt_gpu_synchronize(o.module, nullptr), ATTNRT_OK);
  EXPECT_EQ(fakecuda_calls("cuCtxSynchronize"), 1);
  EXPECT_EQ(attnrt_gpu_synchronize(o.module, reinterpret_cast<void *>(8)),
            ATTNRT_OK);
  EXPECT_EQ(fakecuda_calls("cuStreamSynchronize"), 1);
}

TEST_F(CudaFake, CppWrapper) {
  Artifact a(prefillManifest());
  {
    attnrt::GpuModule m(a.dir.string());
    EXPECT_EQ(m.numKernels(), 1);
    attnrt::Kernel k = m.kernel("prefill");
    ASSERT_NE(k.gpu(), nullptr);
    EXPECT_STREQ(k.gpu()->image, "prefill.sm_90.cubin");
    EXPECT_EQ(m.device().compute_major, 9);
    std::vector<std::vector<int64_t>> shapes = {
        {1, 64, 8, 128}, {1, 32, 2, 128}, {1, 32, 2, 128}, {1, 64, 8, 128}};
    std::vector<attnrt::DeviceBuffer> buffers;
    std::vector<attnrt_tensor> args;
    for (auto &s : shapes) {
      buffers.emplace_back(m, s[1] * s[2] * s[3] * 2);
      args.push_back(
          {buffers.back().data(), ATTNRT_DTYPE_F16, 4, s.data(), nullptr});
    }
    m.run(k, args);
    m.synchronize();
    EXPECT_EQ(m.timeRuns(k, args, 3).size(), 3u);
    std::vector<char> host(buffers[0].bytes());
    buffers[0].copyTo(host.data(), host.size());
    EXPECT_THROW(buffers[0].copyTo(host.data(), host.size() + 1),
                 attnrt::Error);
    EXPECT_EQ(fakecuda_num_launches(), 4);
    try {
      m.kernel("nope");
      ADD_FAILURE() << "no exception";
    } catch (const attnrt::Error &e) {
      EXPECT_EQ(e.status(), ATTNRT_ERR_NOT_FOUND);
    }
  }
  EXPECT_THROW(attnrt::GpuModule(ATTNRT_FIXTURE_DIR), attnrt::Error);
}

} // namespace
