//===- GpuTest.cpp - attnrt_cuda.h on a real GPU --------------------------===//
//
// A vector add (fixture/vadd.ptx) loaded and launched through attnrt on the
// installed driver: PTX JIT, cubins (when ptxas built them), the shared
// memory opt-in above 48 KiB, event timing, and the driver's own errors for
// an architecture the device lacks and for PTX that does not compile.
// fixture/manifest.json describes vadd as an "attention" kernel with
// arguments a, b, c of shape [n]: attnrt launches what the gpu object says
// and never looks at what the kernel computes. Every test skips (GTEST_SKIP,
// reported as skipped by ctest) without a driver and a GPU.
//
//===----------------------------------------------------------------------===//

#include "attnrt/attnrt.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

std::string lastError() { return attnrt_last_error(); }

class Gpu : public testing::Test {
protected:
  void SetUp() override {
    if (attnrt_cuda_available() != ATTNRT_OK)
      GTEST_SKIP() << "no usable CUDA GPU: " << lastError();
  }
};

/// Opens `dir`; skips on a device older than the artifact (sm_80).
std::unique_ptr<attnrt::GpuModule> openOrSkip(const std::string &dir) {
  attnrt_gpu_module *probe = nullptr;
  attnrt_status s = attnrt_gpu_open(dir.c_str(), &probe);
  attnrt_gpu_close(probe);
  if (s == ATTNRT_ERR_UNSUPPORTED &&
      lastError().find("cannot run on device") != std::string::npos)
    return nullptr;
  EXPECT_EQ(s, ATTNRT_OK) << lastError();
  if (s != ATTNRT_OK)
    return nullptr;
  return std::make_unique<attnrt::GpuModule>(dir);
}

/// c = a + b for n elements on the device; returns the mismatches.
int64_t vectorAdd(attnrt::GpuModule &m, const std::string &kernel, int n) {
  std::vector<float> a(n), b(n), c(n, -1.0f);
  for (int i = 0; i < n; ++i) {
    a[i] = 0.5f * static_cast<float>(i);
    b[i] = 1.0f - 0.25f * static_cast<float>(i % 1000);
  }
  size_t bytes = sizeof(float) * n;
  attnrt::DeviceBuffer da(m, bytes), db(m, bytes), dc(m, bytes);
  da.copyFrom(a.data(), bytes);
  db.copyFrom(b.data(), bytes);
  dc.copyFrom(c.data(), bytes);
  int64_t size = n;
  std::vector<attnrt_tensor> args = {
      {da.data(), ATTNRT_DTYPE_F32, 1, &size, nullptr},
      {db.data(), ATTNRT_DTYPE_F32, 1, &size, nullptr},
      {dc.data(), ATTNRT_DTYPE_F32, 1, &size, nullptr}};
  m.run(m.kernel(kernel), args);
  m.synchronize();
  dc.copyTo(c.data(), bytes);
  int64_t wrong = 0;
  for (int i = 0; i < n; ++i)
    wrong += c[i] != a[i] + b[i]; // one IEEE add: exact on both sides
  return wrong;
}

TEST_F(Gpu, VectorAddThroughPtx) {
  auto m = openOrSkip(ATTNRT_GPU_FIXTURE);
  if (!m)
    GTEST_SKIP() << lastError();
  attnrt::Kernel k = m->kernel("vadd");
  ASSERT_NE(k.gpu(), nullptr);
  EXPECT_EQ(k.gpu()->image_is_ptx, 1);
  EXPECT_STREQ(k.gpu()->image, "vadd.ptx");
  attnrt_gpu_device_info dev = m->device();
  EXPECT_GE(dev.compute_major, 8);
  EXPECT_GT(dev.multiprocessor_count, 0); // split-KV's num_splits uses it
  std::printf("device %d: %s (%s), driver %d\n", dev.ordinal, dev.name,
              dev.arch, dev.driver_version);
  // Not a multiple of the block: the last block is partial.
  EXPECT_EQ(vectorAdd(*m, "vadd", (1 << 20) + 3), 0);
  EXPECT_EQ(vectorAdd(*m, "vadd", 1), 0);
}

TEST_F(Gpu, SharedMemoryAbove48KiB) {
  auto m = openOrSkip(ATTNRT_GPU_FIXTURE);
  if (!m)
    GTEST_SKIP() << lastError();
  // 64 KiB of dynamic shared memory: the launch fails unless attnrt opted
  // the function in (cuFuncSetAttribute).
  EXPECT_EQ(m->kernel("vadd_smem").gpu()->smem_bytes, 65536);
  EXPECT_EQ(vectorAdd(*m, "vadd_smem", 4096), 0);
}

TEST_F(Gpu, VectorAddThroughCubin) {
  std::string dir = ATTNRT_GPU_CUBIN_FIXTURE;
  if (dir.empty())
    GTEST_SKIP() << "ptxas was not found at configure time: no cubins";
  auto m = openOrSkip(dir);
  if (!m)
    GTEST_SKIP() << lastError();
  std::string arch = m->device().arch;
  if (arch != "sm_80" && arch != "sm_90")
    GTEST_SKIP() << "the cubins are for sm_80 and sm_90, the device is "
                 << arch;
  attnrt::Kernel k = m->kernel("vadd");
  EXPECT_EQ(k.gpu()->image_is_ptx, 0);
  EXPECT_EQ(std::string(k.gpu()->image), "vadd." + arch + ".cubin");
  EXPECT_EQ(vectorAdd(*m, "vadd", 100000), 0);
  EXPECT_EQ(vectorAdd(*m, "vadd_smem", 1000), 0);
}

TEST_F(Gpu, TimesRuns) {
  auto m = openOrSkip(ATTNRT_GPU_FIXTURE);
  if (!m)
    GTEST_SKIP() << lastError();
  int n = 1 << 20;
  int64_t size = n;
  attnrt::DeviceBuffer a(*m, 4 * n), b(*m, 4 * n), c(*m, 4 * n);
  std::vector<attnrt_tensor> args = {
      {a.data(), ATTNRT_DTYPE_F32, 1, &size, nullptr},
      {b.data(), ATTNRT_DTYPE_F32, 1, &size, nullptr},
      {c.data(), ATTNRT_DTYPE_F32, 1, &size, nullptr}};
  std::vector<float> ms = m->timeRuns(m->kernel("vadd"), args, 5);
  ASSERT_EQ(ms.size(), 5u);
  for (float t : ms) {
    EXPECT_GT(t, 0.0f);
    EXPECT_LT(t, 1000.0f);
  }
}

/// A copy of the PTX fixture with edits, in a temporary directory.
struct EditedArtifact {
  EditedArtifact(const std::string &from, const std::string &to,
                 const std::string &ptx) {
    dir = fs::temp_directory_path() /
          ("attnrt-gpu-test-" + std::to_string(::getpid()) + "-" +
           std::to_string(counter++));
    fs::create_directories(dir);
    std::ifstream in(std::string(ATTNRT_GPU_FIXTURE) + "/manifest.json");
    std::stringstream ss;
    ss << in.rdbuf();
    std::string manifest = ss.str();
    for (size_t p = manifest.find(from); !from.empty() && p != manifest.npos;
         p = manifest.find(from, p + to.size()))
      manifest.replace(p, from.size(), to);
    std::ofstream(dir / "manifest.json") << manifest;
    std::ofstream(dir / "vadd.ptx") << ptx;
  }
  ~EditedArtifact() { fs::remove_all(dir); }
  static inline int counter = 0;
  fs::path dir;
};

std::string fixturePtx() {
  std::ifstream in(std::string(ATTNRT_GPU_FIXTURE) + "/vadd.ptx");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST_F(Gpu, RefusesAnArchitectureNewerThanTheDevice) {
  EditedArtifact a("sm_80", "sm_990", fixturePtx());
  attnrt_gpu_module *m = nullptr;
  EXPECT_EQ(attnrt_gpu_open(a.dir.c_str(), &m), ATTNRT_ERR_UNSUPPORTED);
  EXPECT_NE(lastError().find("and PTX for sm_990, which needs sm_990 or "
                             "newer"),
            std::string::npos)
      << lastError();
  EXPECT_EQ(m, nullptr);
}

TEST_F(Gpu, PtxThatDoesNotCompileReportsTheJitLog) {
  std::string ptx = fixturePtx();
  ptx.replace(ptx.find("add.rn.f32"), 10, "add.xx.f32");
  EditedArtifact a("", "", ptx);
  attnrt_gpu_module *m = nullptr;
  EXPECT_EQ(attnrt_gpu_open(a.dir.c_str(), &m), ATTNRT_ERR_CUDA);
  EXPECT_NE(lastError().find("cuModuleLoadDataEx: CUDA_ERROR_INVALID_PTX"),
            std::string::npos)
      << lastError();
  EXPECT_NE(lastError().find("; JIT log: "), std::string::npos) << lastError();
}

} // namespace
