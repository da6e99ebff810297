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
#include <sstream>

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
       M,
       "field 'scratch' lists 1 buffers but only split-KV CUDA kernels "
       "(gpu.split_kv) take scratch"},
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
       "expected exactly one of {\"arg\": NAME} (a device pointer), "
       "{\"scratch\": NAME} (a scratch buffer's device pointer) and "
       "{\"symbol\": S} (an i32)"},
      {"neither", [](json &m) { gpu(m)["params"][0] = json::object(); }, M,
       "gpu params[0]: has {}, expected exactly one of"},
      {"not an object", [](json &m) { gpu(m)["params"][0] = "q"; }, M,
       "gpu params[0]: is \"q\", expected a JSON object"},
      {"unknown key",
       [](json &m) {
         gpu(m)["params"][0] = {{"arg", "q"}, {"as", "u32"}};
       },
       M,
       "gpu params[0]: has unknown field 'as' (expected arg, scratch, "
       "symbol)"},
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

//===----------------------------------------------------------------------===//
// Split-KV kernels (fixture/cuda-split: attnc's paged decode, by hand)
//===----------------------------------------------------------------------===//

std::string readText(const fs::path &path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << path;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json splitManifest() {
  return json::parse(
      readText(fs::path(ATTNRT_SPLIT_FIXTURE_DIR) / "manifest.json"));
}

std::map<std::string, std::string> splitFiles() {
  return {{"decode.ptx",
           readText(fs::path(ATTNRT_SPLIT_FIXTURE_DIR) / "decode.ptx")}};
}

/// The decode kernel's arguments for `batch` sequences over `pages` pages.
Tensors decodeTensors(int64_t batch, int64_t pages = 64, int64_t refs = 100) {
  Tensors t({{batch, 8, 128},
             {pages, 16, 2, 128},
             {pages, 16, 2, 128},
             {batch + 1},
             {refs},
             {batch},
             {batch, 8, 128},
             {8, batch}},
            ATTNRT_DTYPE_F16);
  for (int i : {3, 4, 5})
    t.views[i].dtype = ATTNRT_DTYPE_I32;
  t.views[7].dtype = ATTNRT_DTYPE_F32;
  return t;
}

void expectSplitRules(const std::vector<Rule> &rules) {
  for (const Rule &r : rules) {
    json m = splitManifest();
    r.mutate(m);
    EXPECT_EQ(openStatus(m, splitFiles()), r.status)
        << r.name << ": " << lastError();
    EXPECT_TRUE(hasText(r.message)) << r.name;
  }
}

json &merge(json &m) { return gpu(m)["merge"]; }

TEST_F(CudaManifest, SplitKvArtifactGetsAsFarAsTheDriver) {
  EXPECT_EQ(openStatus(splitManifest(), splitFiles()), ATTNRT_ERR_LIBRARY)
      << lastError();
}

TEST_F(CudaManifest, SplitKvFields) {
  const attnrt_status M = ATTNRT_ERR_MANIFEST;
  expectSplitRules({
      {"split_kv not an object", [](json &m) { gpu(m)["split_kv"] = 4; }, M,
       "kernel 'decode' gpu split_kv: is 4, expected a JSON object"},
      {"no symbol", [](json &m) { gpu(m)["split_kv"].erase("symbol"); }, M,
       "gpu split_kv: is missing field 'symbol'"},
      {"symbol not a name", [](json &m) { gpu(m)["split_kv"]["symbol"] = ""; },
       M, "gpu split_kv: field 'symbol' is '', expected a symbol name"},
      {"symbol bound by an argument",
       [](json &m) { gpu(m)["split_kv"]["symbol"] = "batch"; }, M,
       "gpu split_kv: field 'symbol' is 'batch', which an argument's shape "
       "binds; the runtime binds the split symbol to each call's num_splits, "
       "so no argument may"},
      {"no max_splits", [](json &m) { gpu(m)["split_kv"].erase("max_splits"); },
       M, "gpu split_kv: is missing field 'max_splits'"},
      {"max_splits 0", [](json &m) { gpu(m)["split_kv"]["max_splits"] = 0; }, M,
       "gpu split_kv: field 'max_splits' is 0, expected 1 to 1024"},
      {"max_splits 1025",
       [](json &m) { gpu(m)["split_kv"]["max_splits"] = 1025; }, M,
       "field 'max_splits' is 1025, expected 1 to 1024"},
      {"max_splits string",
       [](json &m) { gpu(m)["split_kv"]["max_splits"] = "32"; }, M,
       "field 'max_splits' is \"32\", expected an integer"},
      {"no merge", [](json &m) { gpu(m).erase("merge"); }, M,
       "kernel 'decode' gpu: is missing field 'merge'"},
      {"merge without split_kv",
       [](json &m) {
         m = prefillManifest();
         gpu(m)["merge"] = json::object();
       },
       M,
       "kernel 'prefill' gpu: field 'merge' is present but the kernel has no "
       "'split_kv'"},
      {"split symbol unbound without split_kv",
       [](json &m) {
         gpu(m).erase("split_kv");
         gpu(m).erase("merge");
       },
       M,
       "gpu grid[2]: field 'symbol' is 'num_splits', which no argument's "
       "shape binds (symbols: batch, num_page_refs, num_pages)"},
      {"scratch without split_kv",
       [](json &m) {
         gpu(m).erase("split_kv");
         gpu(m).erase("merge");
         gpu(m)["grid"][2] = 1;
         gpu(m)["params"].erase(13);
         gpu(m)["params"].erase(9);
         gpu(m)["params"].erase(8);
         m["kernels"][0]["scratch"][0]["shape"][0] = 4;
         m["kernels"][0]["scratch"][1]["shape"][0] = 4;
       },
       M,
       "kernel 'decode': field 'scratch' lists 2 buffers but only split-KV "
       "CUDA kernels (gpu.split_kv) take scratch"},
  });
}

TEST_F(CudaManifest, SplitKvSymbolsAndScratch) {
  const attnrt_status M = ATTNRT_ERR_MANIFEST;
  expectSplitRules({
      {"grid: another unbound symbol",
       [](json &m) {
         gpu(m)["grid"][2] = {{"symbol", "splits"}};
       },
       M,
       "gpu grid[2]: field 'symbol' is 'splits', which no argument's shape "
       "binds (symbols: batch, num_page_refs, num_pages, num_splits "
       "(gpu.split_kv))"},
      {"params: another unbound symbol",
       [](json &m) {
         gpu(m)["params"][13] = {{"symbol", "splits"}};
       },
       M, "gpu params[13]: field 'symbol' is 'splits', which no argument's"},
      {"merge params: another unbound symbol",
       [](json &m) {
         merge(m)["params"][5] = {{"symbol", "splits"}};
       },
       M,
       "gpu merge params[5]: field 'symbol' is 'splits', which no "
       "argument's"},
      {"scratch shape: another unbound symbol",
       [](json &m) { m["kernels"][0]["scratch"][1]["shape"][0] = "splits"; }, M,
       "kernel 'decode': field 'scratch' buffer 'partial_lse' uses symbol "
       "'splits' that no argument's shape binds and that is not "
       "gpu.split_kv.symbol ('num_splits')"},
      {"unknown scratch param",
       [](json &m) {
         gpu(m)["params"][9] = {{"scratch", "partial_m"}};
       },
       M,
       "gpu params[9]: field 'scratch' is 'partial_m', which is not a "
       "scratch buffer of the kernel (scratch: partial_o, partial_lse)"},
      {"unknown scratch param in the merge",
       [](json &m) {
         merge(m)["params"][0] = {{"scratch", "o"}};
       },
       M,
       "gpu merge params[0]: field 'scratch' is 'o', which is not a scratch "
       "buffer"},
      {"scratch param not a string",
       [](json &m) {
         gpu(m)["params"][9] = {{"scratch", 1}};
       },
       M, "gpu params[9]: field 'scratch' is 1, expected a string"},
      {"scratch and symbol",
       [](json &m) {
         gpu(m)["params"][9] = {{"scratch", "partial_lse"},
                                {"symbol", "batch"}};
       },
       M, "gpu params[9]: has {\"scratch\":\"partial_lse\",\"symbol\":"},
  });
  // Host kernels still size scratch by their arguments' symbols only.
  json host =
      json::parse(readText(fs::path(ATTNRT_FIXTURE_DIR) / "manifest.json"));
  for (json &k : host["kernels"])
    if (k.contains("scratch") && !k["scratch"].empty()) {
      k["scratch"][0]["shape"][0] = "num_splits";
      Artifact a(host);
      attnrt_module *m = nullptr;
      EXPECT_EQ(attnrt_open(a.dir.c_str(), 1, &m), ATTNRT_ERR_MANIFEST);
      EXPECT_TRUE(hasText("uses symbol 'num_splits' that no argument's shape "
                          "binds; its size would be unknown"));
      break;
    }
}

TEST_F(CudaManifest, MergeLaunch) {
  const attnrt_status M = ATTNRT_ERR_MANIFEST;
  expectSplitRules({
      {"merge not an object", [](json &m) { merge(m) = json::array(); }, M,
       "kernel 'decode' gpu merge: is [], expected a JSON object"},
      {"no entry", [](json &m) { merge(m).erase("entry"); }, M,
       "gpu merge: is missing field 'entry'"},
      {"bad entry", [](json &m) { merge(m)["entry"] = "decode merge"; }, M,
       "gpu merge: field 'entry' is 'decode merge', expected a PTX "
       "identifier"},
      {"the main entry", [](json &m) { merge(m)["entry"] = "decode"; }, M,
       "gpu merge: field 'entry' is 'decode', the main kernel's entry; the "
       "merge is a kernel of its own"},
      {"block",
       [](json &m) {
         merge(m)["block"] = {2048, 1, 1};
       },
       M,
       "gpu merge: field 'block' is [2048,1,1]: entry 0 must be an integer "
       "from 1 to 1024"},
      {"no grid", [](json &m) { merge(m).erase("grid"); }, M,
       "gpu merge: is missing field 'grid'"},
      {"grid y", [](json &m) { merge(m)["grid"][1] = 0; }, M,
       "gpu merge: field 'grid' has entry 1 = 0"},
      {"grid misspelled",
       [](json &m) {
         merge(m)["grid"][0] = {{"symbol", "batch"}, {"divde", 2}};
       },
       M, "gpu merge grid[0]: has unknown field 'divde'"},
      {"smem", [](json &m) { merge(m)["smem_bytes"] = -4; }, M,
       "gpu merge: field 'smem_bytes' is -4, expected 0 to 2147483647"},
      {"no params", [](json &m) { merge(m).erase("params"); }, M,
       "gpu merge: is missing field 'params'"},
      {"unknown arg",
       [](json &m) {
         merge(m)["params"][2] = {{"arg", "out"}};
       },
       M,
       "gpu merge params[2]: field 'arg' is 'out', which is not an argument "
       "of the kernel (q, cache_k_pages,"},
      {"arg twice",
       [](json &m) {
         merge(m)["params"][3] = {{"arg", "o"}};
       },
       M,
       "gpu merge: field 'params' passes argument 'o' 2 times; an argument "
       "is passed at most once"},
      {"ptxas without a cubin",
       [](json &m) {
         merge(m)["ptxas"] = {{"sm_80", {{"registers", 64}}}};
       },
       M, "gpu merge ptxas: has a report for 'sm_80', which has no cubin"},
      {"main kernel: scratch passed, main still passes every argument",
       [](json &m) { gpu(m)["params"].erase(7); }, M,
       "gpu: field 'params' passes argument 'lse' 0 times; every argument is "
       "passed exactly once"},
  });
}

TEST_F(CudaManifest, MergeEntryInThePtx) {
  auto withPtx = [](const std::string &ptx) {
    return openStatus(splitManifest(), {{"decode.ptx", ptx}});
  };
  std::string ptx = splitFiles()["decode.ptx"];
  std::string noMerge = ptx.substr(0, ptx.find(".visible .entry decode_merge"));
  EXPECT_EQ(withPtx(noMerge), ATTNRT_ERR_MANIFEST);
  EXPECT_TRUE(hasText("/decode.ptx (kernel 'decode') has no .entry "
                      "decode_merge (gpu.merge.entry); the PTX and "
                      "manifest.json do not match, regenerate both with "
                      "attnc"));
  std::string shortMerge = ptx;
  shortMerge.replace(shortMerge.find(",\n\t.param .u32 decode_merge_param_5"),
                     34, "");
  EXPECT_EQ(withPtx(shortMerge), ATTNRT_ERR_MANIFEST);
  EXPECT_TRUE(hasText("(kernel 'decode'): .entry decode_merge takes 5 "
                      "parameters but gpu.merge.params lists 6"));
  std::string intScratch = ptx;
  intScratch.replace(intScratch.find(".u64 .ptr .global .align 1 "
                                     "decode_merge_param_1"),
                     47, ".u32 decode_merge_param_1");
  EXPECT_EQ(withPtx(intScratch), ATTNRT_ERR_MANIFEST);
  EXPECT_TRUE(hasText("parameter 1 of .entry decode_merge is '.param .u32 "
                      "decode_merge_param_1' but gpu.merge.params[1] is "
                      "scratch buffer 'partial_lse' (a 64-bit device "
                      "pointer)"));
  std::string mainScratch = ptx;
  mainScratch.replace(
      mainScratch.find(".u64 .ptr .global .align 1 decode_param_8"), 41,
      ".u32 decode_param_8");
  EXPECT_EQ(withPtx(mainScratch), ATTNRT_ERR_MANIFEST);
  EXPECT_TRUE(hasText("parameter 8 of .entry decode is '.param .u32 "
                      "decode_param_8' but gpu.params[8] is scratch buffer "
                      "'partial_o' (a 64-bit device pointer)"));
}

/// The split-KV fixture, opened on the fake (132 SMs, 4 blocks per SM).
struct OpenedSplit : Opened {
  explicit OpenedSplit(
      const json &manifest = splitManifest(),
      const std::map<std::string, std::string> &files = splitFiles())
      : Opened(manifest, files) {}
};

attnrt_gpu_launch launchConfig(const attnrt_kernel *k, Tensors &t) {
  attnrt_gpu_launch l{};
  EXPECT_EQ(attnrt_gpu_launch_config(k, t.views.data(),
                                     static_cast<int>(t.views.size()), &l),
            ATTNRT_OK)
      << lastError();
  return l;
}

TEST_F(CudaFake, SplitKvKernelInfoAndOccupancy) {
  OpenedSplit o;
  ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
  const attnrt_gpu_kernel_info *info = attnrt_kernel_gpu(o.kernel);
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->max_splits, 32);
  EXPECT_STREQ(info->split_symbol, "num_splits");
  EXPECT_STREQ(info->merge_entry, "decode_merge");
  EXPECT_EQ(info->merge_block[0], 128);
  EXPECT_EQ(info->merge_block[1], 1);
  EXPECT_STREQ(info->merge_grid[0].symbol, "batch");
  EXPECT_EQ(info->merge_grid[1].symbol, nullptr);
  EXPECT_EQ(info->merge_grid[1].value, 8);
  EXPECT_EQ(info->merge_smem_bytes, 0);
  EXPECT_EQ(info->merge_num_params, 6);
  EXPECT_EQ(info->merge_ptxas, nullptr); // PTX
  EXPECT_STREQ(info->grid[2].symbol, "num_splits");
  EXPECT_EQ(info->num_params, 14);
  // The scratch buffers are described like a host kernel's.
  ASSERT_EQ(attnrt_kernel_num_scratch(o.kernel), 2);
  EXPECT_STREQ(attnrt_kernel_scratch(o.kernel, 1)->name, "partial_lse");
  // The occupancy of the main entry, with its block and shared memory.
  EXPECT_EQ(fakecuda_calls("cuOccupancyMaxActiveBlocksPerMultiprocessor"), 1);
  int block = 0;
  long long smem = 0;
  ASSERT_EQ(fakecuda_occupancy_query(&block, &smem), 0);
  EXPECT_EQ(block, 128);
  EXPECT_EQ(smem, 0);
  attnrt_gpu_device_info dev;
  ASSERT_EQ(attnrt_gpu_device(o.module, &dev), ATTNRT_OK);
  EXPECT_EQ(dev.multiprocessor_count, 132);
  // Kernels without split_kv: no occupancy query, no merge.
  fakecuda_reset();
  Opened p(prefillManifest());
  ASSERT_EQ(p.status, ATTNRT_OK) << lastError();
  info = attnrt_kernel_gpu(p.kernel);
  EXPECT_EQ(info->max_splits, 0);
  EXPECT_EQ(info->split_symbol, nullptr);
  EXPECT_EQ(info->merge_entry, nullptr);
  EXPECT_EQ(info->merge_num_params, 0);
  EXPECT_EQ(fakecuda_calls("cuOccupancyMaxActiveBlocksPerMultiprocessor"), 0);
}

TEST_F(CudaFake, SplitKvCubinsMergeReportAndSharedMemory) {
  json m = splitManifest();
  m["archs"] = {"sm_80", "sm_90"};
  gpu(m)["cubins"] = {{"sm_90", "decode.sm_90.cubin"}};
  gpu(m)["ptxas"] = {{"sm_90", {{"registers", 128}}}};
  merge(m)["ptxas"] = {{"sm_90", {{"registers", 40}, {"barriers", 0}}}};
  gpu(m)["smem_bytes"] = 80 * 1024;
  merge(m)["smem_bytes"] = 64 * 1024;
  auto files = splitFiles();
  files["decode.sm_90.cubin"] = files["decode.ptx"];
  {
    OpenedSplit o(m, files);
    ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
    const attnrt_gpu_kernel_info *info = attnrt_kernel_gpu(o.kernel);
    EXPECT_STREQ(info->image, "decode.sm_90.cubin");
    ASSERT_NE(info->merge_ptxas, nullptr);
    EXPECT_EQ(info->merge_ptxas->registers, 40);
    EXPECT_EQ(info->merge_ptxas->spill_stores, -1);
    EXPECT_EQ(info->ptxas->registers, 128);
    // Both entries opt in above 48 KiB, and the occupancy is asked after
    // the main one did (the fake answers 0 blocks otherwise, which would
    // make every call unsplit).
    EXPECT_EQ(fakecuda_func_attribute("decode", 8), 80 * 1024);
    EXPECT_EQ(fakecuda_func_attribute("decode_merge", 8), 64 * 1024);
    int block = 0;
    long long smem = 0;
    ASSERT_EQ(fakecuda_occupancy_query(&block, &smem), 0);
    EXPECT_EQ(smem, 80 * 1024);
    Tensors t = decodeTensors(1);
    EXPECT_EQ(launchConfig(o.kernel, t).num_splits, 32u);
    ASSERT_EQ(attnrt_gpu_run(o.module, o.kernel, t.views.data(), 8, nullptr),
              ATTNRT_OK)
        << lastError();
    EXPECT_EQ(lastLaunch().smem_bytes, 64u * 1024);
  }
  // A cubin without the merge entry (the PTX, checked first, has it).
  files["decode.sm_90.cubin"] = image("CUBIN sm_90", "decode", 10, 4);
  EXPECT_EQ(openStatus(m, files), ATTNRT_ERR_CUDA);
  EXPECT_TRUE(hasText("kernel 'decode': entry 'decode_merge' of "
                      "decode.sm_90.cubin (gpu.merge.entry does not match "
                      "the image): cuModuleGetFunction: CUDA_ERROR_NOT_FOUND"));
  // The merge's shared memory and block against the device.
  json big = splitManifest();
  merge(big)["smem_bytes"] = 232449;
  EXPECT_EQ(openStatus(big, splitFiles()), ATTNRT_ERR_UNSUPPORTED);
  EXPECT_TRUE(hasText("kernel 'decode' merge 'decode_merge': "
                      "gpu.merge.smem_bytes is 232449 but device 0 (sm_90) "
                      "gives a block at most 232448 bytes"));
  json wide = splitManifest();
  merge(wide)["block"] = {256, 1, 1};
  fakecuda_set_max_threads(128);
  EXPECT_EQ(openStatus(wide, splitFiles()), ATTNRT_ERR_UNSUPPORTED);
  EXPECT_TRUE(hasText("kernel 'decode' merge 'decode_merge': gpu.merge.block "
                      "has 256 threads but decode.ptx can run at most 128"));
  fakecuda_set_max_threads(1024);
  fakecuda_fail("cuOccupancyMaxActiveBlocksPerMultiprocessor", 1);
  EXPECT_EQ(openStatus(splitManifest(), splitFiles()), ATTNRT_ERR_CUDA);
  EXPECT_TRUE(hasText("kernel 'decode' (128 threads, 0 bytes of dynamic "
                      "shared memory per block): "
                      "cuOccupancyMaxActiveBlocksPerMultiprocessor: "
                      "CUDA_ERROR_INVALID_VALUE"));
}

TEST_F(CudaFake, ChoosesNumSplitsFromTheOccupancy) {
  {
    // 132 SMs x 4 = 528 resident blocks; the grid has 2 x batch others.
    OpenedSplit o;
    ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
    for (auto [batch, splits] :
         std::vector<std::pair<int64_t, uint32_t>>{{1, 32},  // clamped
                                                   {8, 32},  // 528 / 16 = 33
                                                   {9, 29},  // 528 / 18
                                                   {16, 16}, // 528 / 32
                                                   {100, 2}, // 528 / 200
                                                   {264, 1}, // one wave
                                                   {300, 1}, // more
                                                   {5000, 1}}) {
      Tensors t = decodeTensors(batch);
      attnrt_gpu_launch l = launchConfig(o.kernel, t);
      EXPECT_EQ(l.num_splits, splits) << "batch " << batch;
      EXPECT_EQ(l.grid[2], splits) << "batch " << batch;
    }
  }
  // Taken at open: a smaller device, and a kernel that does not fit.
  fakecuda_set_sms(10);
  fakecuda_set_occupancy(2);
  {
    OpenedSplit o;
    ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
    Tensors t = decodeTensors(1);
    EXPECT_EQ(launchConfig(o.kernel, t).num_splits, 10u); // 20 / 2
    t = decodeTensors(3);
    EXPECT_EQ(launchConfig(o.kernel, t).num_splits, 3u); // 20 / 6
    // The occupancy at open decides, not the fake's value now.
    fakecuda_set_occupancy(1);
    EXPECT_EQ(launchConfig(o.kernel, t).num_splits, 3u);
  }
  fakecuda_set_occupancy(0);
  {
    OpenedSplit o;
    ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
    Tensors t = decodeTensors(1);
    EXPECT_EQ(launchConfig(o.kernel, t).num_splits, 1u);
  }
}

/// Where scratch buffer parameters point: checks they lie in one live
/// allocation at 256-byte aligned offsets; returns that allocation's base.
uint64_t scratchBase(uint64_t partialO, uint64_t partialLse,
                     uint64_t partialOBytes) {
  unsigned long long base = 0, bytes = 0;
  EXPECT_EQ(fakecuda_find_allocation(partialO, &base, &bytes), 0);
  EXPECT_EQ(partialO % 256, 0u);
  EXPECT_EQ(partialLse % 256, 0u);
  EXPECT_EQ(partialO, base);
  EXPECT_EQ(partialLse, partialO + (partialOBytes + 255) / 256 * 256);
  EXPECT_LE(partialLse, base + bytes);
  return base;
}

TEST_F(CudaFake, SplitLaunchesMainThenMerge) {
  OpenedSplit o;
  ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
  Tensors t = decodeTensors(3); // 528 / 6 = 88 -> 32 splits
  attnrt_gpu_launch cfg = launchConfig(o.kernel, t);
  ASSERT_EQ(cfg.num_splits, 32u);
  // partial_o [32, 3, 8, 128] f32, partial_lse [32, 8, 3] f32 (768 B -> 768).
  uint64_t oBytes = 32 * 3 * 8 * 128 * 4, lseBytes = 32 * 8 * 3 * 4;
  EXPECT_EQ(cfg.scratch_bytes, oBytes + (lseBytes + 255) / 256 * 256);
  EXPECT_EQ(cfg.merge_grid[0], 3u);
  EXPECT_EQ(cfg.merge_grid[1], 8u);
  EXPECT_EQ(cfg.merge_grid[2], 1u);
  EXPECT_EQ(cfg.merge_block[0], 128u);
  EXPECT_EQ(cfg.merge_smem_bytes, 0u);
  // launch_config touches no device.
  EXPECT_EQ(fakecuda_calls("cuMemAlloc_v2"), 0);

  void *stream = reinterpret_cast<void *>(0x5eed);
  ASSERT_EQ(attnrt_gpu_run(o.module, o.kernel, t.views.data(), 8, stream),
            ATTNRT_OK)
      << lastError();
  ASSERT_EQ(fakecuda_num_launches(), 2);
  fakecuda_launch main{}, mrg{};
  ASSERT_EQ(fakecuda_get_launch(0, &main), 0);
  ASSERT_EQ(fakecuda_get_launch(1, &mrg), 0);
  EXPECT_STREQ(main.name, "decode");
  EXPECT_EQ(main.grid[0], 2u);
  EXPECT_EQ(main.grid[1], 3u);
  EXPECT_EQ(main.grid[2], 32u);
  EXPECT_EQ(main.stream, stream);
  ASSERT_EQ(main.num_params, 14);
  for (int i = 0; i < 8; ++i)
    EXPECT_EQ(u64(main, i), reinterpret_cast<uintptr_t>(Tensors::pointer(i)));
  uint64_t base = scratchBase(u64(main, 8), u64(main, 9), oBytes);
  EXPECT_EQ(i32(main, 10), 3);   // batch
  EXPECT_EQ(i32(main, 11), 64);  // num_pages
  EXPECT_EQ(i32(main, 12), 100); // num_page_refs
  EXPECT_EQ(i32(main, 13), 32);  // num_splits
  EXPECT_STREQ(mrg.name, "decode_merge");
  EXPECT_EQ(mrg.grid[0], 3u);
  EXPECT_EQ(mrg.grid[1], 8u);
  EXPECT_EQ(mrg.grid[2], 1u);
  EXPECT_EQ(mrg.block[0], 128u);
  EXPECT_EQ(mrg.stream, stream);
  ASSERT_EQ(mrg.num_params, 6);
  EXPECT_EQ(u64(mrg, 0), u64(main, 8));
  EXPECT_EQ(u64(mrg, 1), u64(main, 9));
  EXPECT_EQ(u64(mrg, 2), reinterpret_cast<uintptr_t>(Tensors::pointer(6)));
  EXPECT_EQ(u64(mrg, 3), reinterpret_cast<uintptr_t>(Tensors::pointer(7)));
  EXPECT_EQ(i32(mrg, 4), 3);
  EXPECT_EQ(i32(mrg, 5), 32);
  EXPECT_EQ(fakecuda_calls("cuMemAlloc_v2"), 1);
  unsigned long long allocBase = 0, allocBytes = 0;
  ASSERT_EQ(fakecuda_find_allocation(base, &allocBase, &allocBytes), 0);
  EXPECT_EQ(allocBytes, cfg.scratch_bytes);
  // Not synchronized: attnrt_gpu_run only launches.
  EXPECT_EQ(fakecuda_calls("cuCtxSynchronize"), 0);

  // A batch that fills the device: one split, no scratch, no merge.
  Tensors full = decodeTensors(400);
  cfg = launchConfig(o.kernel, full);
  EXPECT_EQ(cfg.num_splits, 1u);
  EXPECT_EQ(cfg.scratch_bytes, 0u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(cfg.merge_grid[i], 0u);
    EXPECT_EQ(cfg.merge_block[i], 0u);
  }
  ASSERT_EQ(attnrt_gpu_run(o.module, o.kernel, full.views.data(), 8, nullptr),
            ATTNRT_OK)
      << lastError();
  ASSERT_EQ(fakecuda_num_launches(), 3);
  fakecuda_launch l = lastLaunch();
  EXPECT_STREQ(l.name, "decode");
  EXPECT_EQ(l.grid[2], 1u);
  EXPECT_EQ(u64(l, 8), 0u); // scratch parameters are null
  EXPECT_EQ(u64(l, 9), 0u);
  EXPECT_EQ(i32(l, 13), 1);
  EXPECT_EQ(fakecuda_calls("cuMemAlloc_v2"), 1);
}

TEST_F(CudaFake, AnEmptySplitGridLaunchesNothing) {
  OpenedSplit o;
  ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
  Tensors t = decodeTensors(0, 64, 0);
  attnrt_gpu_launch cfg = launchConfig(o.kernel, t);
  EXPECT_EQ(cfg.grid[1], 0u);
  EXPECT_EQ(cfg.num_splits, 1u);
  EXPECT_EQ(cfg.scratch_bytes, 0u);
  ASSERT_EQ(attnrt_gpu_set_num_splits(o.module, o.kernel, 4), ATTNRT_OK);
  cfg = launchConfig(o.kernel, t);
  EXPECT_EQ(cfg.num_splits, 4u);
  EXPECT_EQ(cfg.scratch_bytes, 0u);
  EXPECT_EQ(cfg.merge_grid[0], 0u);
  EXPECT_EQ(attnrt_gpu_run(o.module, o.kernel, t.views.data(), 8, nullptr),
            ATTNRT_OK)
      << lastError();
  EXPECT_EQ(fakecuda_num_launches(), 0);
  EXPECT_EQ(fakecuda_calls("cuMemAlloc_v2"), 0);
}

TEST_F(CudaFake, ForcedNumSplits) {
  OpenedSplit o;
  ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
  Tensors t = decodeTensors(100); // automatic: 2
  auto run = [&] {
    int before = fakecuda_num_launches();
    EXPECT_EQ(attnrt_gpu_run(o.module, o.kernel, t.views.data(), 8, nullptr),
              ATTNRT_OK)
        << lastError();
    return fakecuda_num_launches() - before;
  };
  EXPECT_EQ(launchConfig(o.kernel, t).num_splits, 2u);
  for (int n : {1, 3, 32}) {
    ASSERT_EQ(attnrt_gpu_set_num_splits(o.module, o.kernel, n), ATTNRT_OK)
        << lastError();
    attnrt_gpu_launch cfg = launchConfig(o.kernel, t);
    EXPECT_EQ(cfg.num_splits, uint32_t(n));
    EXPECT_EQ(run(), n > 1 ? 2 : 1) << n;
    fakecuda_launch main{};
    fakecuda_get_launch(fakecuda_num_launches() - (n > 1 ? 2 : 1), &main);
    EXPECT_EQ(main.grid[2], uint32_t(n));
    EXPECT_EQ(i32(main, 13), n);
    if (n > 1)
      EXPECT_EQ(i32(lastLaunch(), 5), n);
  }
  ASSERT_EQ(attnrt_gpu_set_num_splits(o.module, o.kernel, 0), ATTNRT_OK);
  EXPECT_EQ(launchConfig(o.kernel, t).num_splits, 2u);

  // Out of range: refused, and the previous choice stays.
  ASSERT_EQ(attnrt_gpu_set_num_splits(o.module, o.kernel, 5), ATTNRT_OK);
  for (int bad : {33, -1, 1 << 20}) {
    EXPECT_EQ(attnrt_gpu_set_num_splits(o.module, o.kernel, bad),
              ATTNRT_ERR_VALIDATION);
    EXPECT_TRUE(hasText("attnrt_gpu_set_num_splits: num_splits is " +
                        std::to_string(bad) +
                        " but kernel 'decode' takes 1 to 32 "
                        "(gpu.split_kv.max_splits); pass one of those, or 0 "
                        "to choose per call"));
  }
  EXPECT_EQ(launchConfig(o.kernel, t).num_splits, 5u);

  // Kernels without split_kv take 0 and 1 only.
  Opened p(prefillManifest());
  ASSERT_EQ(p.status, ATTNRT_OK) << lastError();
  EXPECT_EQ(attnrt_gpu_set_num_splits(p.module, p.kernel, 0), ATTNRT_OK);
  EXPECT_EQ(attnrt_gpu_set_num_splits(p.module, p.kernel, 1), ATTNRT_OK);
  EXPECT_EQ(attnrt_gpu_set_num_splits(p.module, p.kernel, 2),
            ATTNRT_ERR_VALIDATION);
  EXPECT_TRUE(hasText("attnrt_gpu_set_num_splits: num_splits is 2 but kernel "
                      "'prefill' is not split-KV (its manifest has no "
                      "gpu.split_kv) and always runs unsplit; pass 0 "
                      "(automatic) or 1"));
  Tensors pt = prefillTensors(2, 130, 77);
  attnrt_gpu_launch cfg = launchConfig(p.kernel, pt);
  EXPECT_EQ(cfg.num_splits, 1u);
  EXPECT_EQ(cfg.scratch_bytes, 0u);
  EXPECT_EQ(cfg.merge_grid[0], 0u);
  // Handles are checked as for runs.
  EXPECT_EQ(attnrt_gpu_set_num_splits(p.module, o.kernel, 1),
            ATTNRT_ERR_INVALID_ARGUMENT);
  EXPECT_TRUE(hasText("does not belong to this module"));
  EXPECT_EQ(attnrt_gpu_set_num_splits(o.module, nullptr, 1),
            ATTNRT_ERR_INVALID_ARGUMENT);
}

TEST_F(CudaFake, ScratchGrowsAfterSynchronizing) {
  OpenedSplit o;
  ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
  Tensors t = decodeTensors(100);
  auto runWith = [&](int n) {
    EXPECT_EQ(attnrt_gpu_set_num_splits(o.module, o.kernel, n), ATTNRT_OK);
    EXPECT_EQ(attnrt_gpu_run(o.module, o.kernel, t.views.data(), 8, nullptr),
              ATTNRT_OK)
        << lastError();
    return u64(lastLaunch(), 0); // the merge's partial_o
  };
  uint64_t first = runWith(2);
  EXPECT_EQ(fakecuda_calls("cuMemAlloc_v2"), 1);
  EXPECT_EQ(runWith(2), first);
  EXPECT_EQ(fakecuda_calls("cuMemAlloc_v2"), 1);
  EXPECT_EQ(fakecuda_calls("cuCtxSynchronize"), 0);
  // More splits need more: the old buffer goes after the context is idle.
  runWith(8);
  EXPECT_EQ(fakecuda_calls("cuMemAlloc_v2"), 2);
  EXPECT_EQ(fakecuda_calls("cuMemFree_v2"), 1);
  EXPECT_EQ(fakecuda_calls("cuCtxSynchronize"), 1);
  EXPECT_EQ(fakecuda_live_allocations(), 1);
  // Fewer fit in it.
  runWith(3);
  runWith(1);
  EXPECT_EQ(fakecuda_calls("cuMemAlloc_v2"), 2);
  // Allocation failures say what for.
  Tensors big = decodeTensors(2000);
  fakecuda_fail("cuMemAlloc_v2", 2);
  EXPECT_EQ(attnrt_gpu_set_num_splits(o.module, o.kernel, 32), ATTNRT_OK);
  EXPECT_EQ(attnrt_gpu_run(o.module, o.kernel, big.views.data(), 8, nullptr),
            ATTNRT_ERR_CUDA);
  EXPECT_TRUE(hasText("kernel 'decode' with num_splits = 32 needs "));
  EXPECT_TRUE(hasText(" bytes of scratch: cuMemAlloc: "
                      "CUDA_ERROR_OUT_OF_MEMORY"));
  fakecuda_fail("cuMemAlloc_v2", 0);
  // Close frees it (TearDown: no live allocation).
}

TEST_F(CudaFake, CallersScratch) {
  OpenedSplit o;
  ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
  Tensors t = decodeTensors(3); // 32 splits
  uint64_t need = launchConfig(o.kernel, t).scratch_bytes;
  void *mine = nullptr;
  ASSERT_EQ(attnrt_gpu_alloc(o.module, need, &mine), ATTNRT_OK);
  ASSERT_EQ(attnrt_gpu_set_scratch(o.module, mine, need), ATTNRT_OK);
  ASSERT_EQ(attnrt_gpu_run(o.module, o.kernel, t.views.data(), 8, nullptr),
            ATTNRT_OK)
      << lastError();
  EXPECT_EQ(fakecuda_calls("cuMemAlloc_v2"), 1); // only the caller's
  fakecuda_launch l = lastLaunch();
  EXPECT_EQ(u64(l, 0), reinterpret_cast<uintptr_t>(mine));
  EXPECT_EQ(u64(l, 1) - u64(l, 0), uint64_t(32 * 3 * 8 * 128 * 4));

  // Too small: refused before anything is launched.
  ASSERT_EQ(attnrt_gpu_set_scratch(o.module, mine, need - 1), ATTNRT_OK);
  int launches = fakecuda_num_launches();
  EXPECT_EQ(attnrt_gpu_run(o.module, o.kernel, t.views.data(), 8, nullptr),
            ATTNRT_ERR_VALIDATION);
  EXPECT_TRUE(hasText(
      "kernel 'decode' with num_splits = 32 needs " + std::to_string(need) +
      " bytes of scratch but the buffer given to attnrt_gpu_set_scratch has " +
      std::to_string(need - 1) + "; give one of at least " +
      std::to_string(need) +
      " bytes (attnrt_gpu_launch_config's scratch_bytes), or NULL to let "
      "attnrt allocate it"));
  EXPECT_EQ(fakecuda_num_launches(), launches);
  // One split needs none.
  ASSERT_EQ(attnrt_gpu_set_num_splits(o.module, o.kernel, 1), ATTNRT_OK);
  EXPECT_EQ(attnrt_gpu_run(o.module, o.kernel, t.views.data(), 8, nullptr),
            ATTNRT_OK);
  ASSERT_EQ(attnrt_gpu_set_num_splits(o.module, o.kernel, 0), ATTNRT_OK);

  // Pointers the buffers could not be aligned in.
  EXPECT_EQ(
      attnrt_gpu_set_scratch(o.module, static_cast<char *>(mine) + 64, need),
      ATTNRT_ERR_INVALID_ARGUMENT);
  EXPECT_TRUE(hasText("attnrt_gpu_set_scratch: device_ptr 0x"));
  EXPECT_TRUE(hasText(" is not 256-byte aligned"));
  EXPECT_EQ(attnrt_gpu_set_scratch(nullptr, mine, need),
            ATTNRT_ERR_INVALID_ARGUMENT);

  // NULL: attnrt's own again.
  ASSERT_EQ(attnrt_gpu_set_scratch(o.module, nullptr, 0), ATTNRT_OK);
  ASSERT_EQ(attnrt_gpu_run(o.module, o.kernel, t.views.data(), 8, nullptr),
            ATTNRT_OK)
      << lastError();
  EXPECT_EQ(fakecuda_calls("cuMemAlloc_v2"), 2);
  EXPECT_NE(u64(lastLaunch(), 0), reinterpret_cast<uintptr_t>(mine));
  ASSERT_EQ(attnrt_gpu_free(o.module, mine), ATTNRT_OK);
}

TEST_F(CudaFake, TimesMainAndMergeTogether) {
  OpenedSplit o;
  ASSERT_EQ(o.status, ATTNRT_OK) << lastError();
  Tensors t = decodeTensors(3);
  float ms[4] = {0};
  ASSERT_EQ(attnrt_gpu_time_runs(o.module, o.kernel, t.views.data(), 8, nullptr,
                                 4, ms),
            ATTNRT_OK)
      << lastError();
  for (float v : ms)
    EXPECT_FLOAT_EQ(v, 1.0f); // two launches of the fake's 0.5 ms
  EXPECT_EQ(fakecuda_num_launches(), 8);
  EXPECT_EQ(fakecuda_calls("cuMemAlloc_v2"), 1);
  ASSERT_EQ(attnrt_gpu_set_num_splits(o.module, o.kernel, 1), ATTNRT_OK);
  ASSERT_EQ(attnrt_gpu_time_runs(o.module, o.kernel, t.views.data(), 8, nullptr,
                                 2, ms),
            ATTNRT_OK);
  EXPECT_FLOAT_EQ(ms[0], 0.5f);
  EXPECT_EQ(fakecuda_num_launches(), 10);
}

TEST_F(CudaFake, SplitKvCppWrapper) {
  Artifact a(splitManifest(), splitFiles());
  attnrt::GpuModule m(a.dir.string());
  attnrt::Kernel k = m.kernel("decode");
  Tensors t = decodeTensors(3);
  EXPECT_EQ(m.launchConfig(k, t.views).num_splits, 32u);
  m.setNumSplits(k, 4);
  EXPECT_EQ(m.launchConfig(k, t.views).num_splits, 4u);
  EXPECT_THROW(m.setNumSplits(k, 64), attnrt::Error);
  attnrt::DeviceBuffer scratch(m, 1 << 20);
  m.setScratch(scratch.data(), scratch.bytes());
  m.run(k, t.views);
  EXPECT_EQ(u64(lastLaunch(), 0), reinterpret_cast<uintptr_t>(scratch.data()));
  m.setScratch(nullptr, 0);
}

} // namespace
