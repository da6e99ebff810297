//===- RuntimeTest.cpp - attnrt open, validate and run --------------------===//
//
// Uses the fixture artifact (fixture/testkernels.c + manifest.json) and
// mutated copies of it in temporary directories.
//
//===----------------------------------------------------------------------===//

#include "Reference.h"
#include "attnrt/attnrt.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace fs = std::filesystem;

namespace {

std::string readFixtureManifest() {
  std::ifstream in(std::string(ATTNRT_FIXTURE_DIR) + "/manifest.json");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string replaceAll(std::string s, const std::string &from,
                       const std::string &to) {
  for (size_t pos = s.find(from); pos != std::string::npos;
       pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
  return s;
}

/// A temporary artifact directory with the given manifest and a copy of the
/// fixture library.
struct TempArtifact {
  explicit TempArtifact(const std::string &manifest, bool withLib = true) {
    static int counter = 0;
    dir = fs::temp_directory_path() /
          ("attnrt-test-" + std::to_string(::getpid()) + "-" +
           std::to_string(counter++));
    fs::create_directories(dir);
    std::ofstream(dir / "manifest.json") << manifest;
    if (withLib)
      fs::copy_file(fs::path(ATTNRT_FIXTURE_DIR) / "libtestkernels.so",
                    dir / "libtestkernels.so");
  }
  ~TempArtifact() { fs::remove_all(dir); }
  fs::path dir;
};

/// Opens `manifest` and returns the status; message in attnrt_last_error().
attnrt_status openWith(const std::string &manifest, bool withLib = true) {
  TempArtifact a(manifest, withLib);
  attnrt_module *m = nullptr;
  attnrt_status s = attnrt_open(a.dir.c_str(), 1, &m);
  attnrt_close(m);
  return s;
}

std::string lastError() { return attnrt_last_error(); }

TEST(Open, FixtureLoads) {
  attnrt::Module m(ATTNRT_FIXTURE_DIR, 2);
  ASSERT_EQ(m.numKernels(), 3);
  attnrt::Kernel k = m.kernel("ragged_f32");
  EXPECT_EQ(k.numArgs(), 7);
  EXPECT_EQ(k.attention().ragged, 1);
  EXPECT_EQ(k.attention().num_q_heads, 2);
  EXPECT_EQ(k.attention().window, -1);
  EXPECT_DOUBLE_EQ(k.attention().scale, 0.5);
  const attnrt_arg_info &cu = k.arg(3);
  EXPECT_STREQ(cu.name, "cu_seqlens_q");
  EXPECT_EQ(cu.role, ATTNRT_ROLE_CU_SEQLENS_Q);
  EXPECT_EQ(cu.dtype, ATTNRT_DTYPE_I32);
  ASSERT_EQ(cu.rank, 1);
  EXPECT_STREQ(cu.shape[0].symbol, "batch+1");
  EXPECT_STREQ(cu.shape[0].symbol_name, "batch");
  EXPECT_EQ(cu.shape[0].value, 1);
  const attnrt_arg_info &lse = k.arg(6);
  EXPECT_EQ(lse.shape[0].symbol, nullptr);
  EXPECT_EQ(lse.shape[0].value, 2);
  EXPECT_EQ(m.kernel("dense_f32").attention().block_q, 1);
}

TEST(Open, MissingDirectory) {
  attnrt_module *m = nullptr;
  EXPECT_EQ(attnrt_open("/nonexistent/dir", 0, &m), ATTNRT_ERR_IO);
  EXPECT_EQ(m, nullptr);
  EXPECT_NE(lastError().find("/nonexistent/dir/manifest.json"),
            std::string::npos);
}

TEST(Open, BadJson) {
  EXPECT_EQ(openWith("{\"format_version\": 1,"), ATTNRT_ERR_MANIFEST);
  EXPECT_NE(lastError().find("is not valid JSON"), std::string::npos);
  EXPECT_EQ(lastError().find('\n'), std::string::npos);
}

TEST(Open, UnsupportedVersionAndTarget) {
  std::string good = readFixtureManifest();
  EXPECT_EQ(openWith(replaceAll(good, "\"format_version\": 1",
                                "\"format_version\": 2")),
            ATTNRT_ERR_UNSUPPORTED);
  EXPECT_NE(lastError().find("format_version 2"), std::string::npos);
  EXPECT_EQ(openWith(replaceAll(good, "\"target\": \"host\"",
                                "\"target\": \"cuda\"")),
            ATTNRT_ERR_UNSUPPORTED);
  EXPECT_NE(lastError().find("target 'cuda'"), std::string::npos);
}

TEST(Open, MissingLibraryAndSymbol) {
  std::string good = readFixtureManifest();
  EXPECT_EQ(openWith(good, /*withLib=*/false), ATTNRT_ERR_IO);
  EXPECT_NE(lastError().find("libtestkernels.so does not exist"),
            std::string::npos);
  EXPECT_EQ(openWith(replaceAll(good, "\"count__run\"", "\"nope__run\"")),
            ATTNRT_ERR_LIBRARY);
  EXPECT_NE(lastError().find("kernel 'count': symbol 'nope__run' is missing"),
            std::string::npos);
}

TEST(Open, SchemaErrorsNameTheField) {
  std::string good = readFixtureManifest();
  EXPECT_EQ(
      openWith(replaceAll(good, "\"head_dim\": 4", "\"head_dim\": \"4\"")),
      ATTNRT_ERR_MANIFEST);
  EXPECT_NE(lastError().find("kernel 'dense_f32' attention: field 'head_dim' "
                             "must be an integer"),
            std::string::npos);
  EXPECT_EQ(openWith(replaceAll(good, "\"role\": \"lse\"", "\"role\": \"x\"")),
            ATTNRT_ERR_MANIFEST);
  EXPECT_NE(lastError().find("argument 'lse': field 'role' is 'x'"),
            std::string::npos);
  EXPECT_EQ(openWith(replaceAll(good, "\"entry_run\": \"count__run\",", "")),
            ATTNRT_ERR_MANIFEST);
  EXPECT_NE(lastError().find("kernel 'count' is missing field 'entry_run'"),
            std::string::npos);
  EXPECT_EQ(openWith(replaceAll(good, "\"num_kv_heads\": 1, \"head_dim\": 4",
                                "\"num_kv_heads\": 3, \"head_dim\": 4")),
            ATTNRT_ERR_MANIFEST);
  EXPECT_EQ(openWith(replaceAll(good, "\"batch+1\"", "\"batch+x\"")),
            ATTNRT_ERR_MANIFEST);
}

TEST(Open, UnknownKernel) {
  attnrt::Module m(ATTNRT_FIXTURE_DIR, 1);
  const attnrt_kernel *k = nullptr;
  EXPECT_EQ(attnrt_find_kernel(m.get(), "prefill", &k), ATTNRT_ERR_NOT_FOUND);
  EXPECT_NE(lastError().find("available: dense_f32, ragged_f32, count"),
            std::string::npos);
  EXPECT_EQ(attnrt_kernel_at(m.get(), 7), nullptr);
}

/// Tensors for the ragged fixture kernel, individually breakable.
struct RaggedCall {
  RaggedCall(std::vector<int32_t> cq, std::vector<int32_t> ck)
      : cuQ(std::move(cq)), cuK(std::move(ck)) {
    tq = cuQ.back();
    tk = cuK.back();
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> dist(-1, 1);
    q.resize(tq * 8 + 1);
    k.resize(tk * 4 + 1);
    v.resize(tk * 4 + 1);
    for (auto *vec : {&q, &k, &v})
      for (float &x : *vec)
        x = dist(rng);
    o.assign(tq * 8 + 1, NAN);
    lse.assign(2 * tq + 1, NAN);
    sizes = {{tq, 2, 4},
             {tk, 1, 4},
             {tk, 1, 4},
             {(int64_t)cuQ.size()},
             {(int64_t)cuK.size()},
             {tq, 2, 4},
             {2, tq}};
    rebuild();
  }
  void rebuild() {
    void *data[] = {q.data(),   k.data(), v.data(),  cuQ.data(),
                    cuK.data(), o.data(), lse.data()};
    attnrt_dtype types[] = {
        ATTNRT_DTYPE_F32, ATTNRT_DTYPE_F32, ATTNRT_DTYPE_F32, ATTNRT_DTYPE_I32,
        ATTNRT_DTYPE_I32, ATTNRT_DTYPE_F32, ATTNRT_DTYPE_F32};
    args.clear();
    for (int i = 0; i < 7; ++i)
      args.push_back(
          {data[i], types[i], (int)sizes[i].size(), sizes[i].data(), nullptr});
  }
  int64_t tq, tk;
  std::vector<int32_t> cuQ, cuK;
  std::vector<float> q, k, v, o, lse;
  std::vector<std::vector<int64_t>> sizes;
  std::vector<attnrt_tensor> args;
};

class Validation : public ::testing::Test {
protected:
  Validation() : m(ATTNRT_FIXTURE_DIR, 2), k(m.kernel("ragged_f32")) {}
  attnrt_status validate(const RaggedCall &c, int n = 7) {
    return attnrt_validate(k.get(), c.args.data(), n);
  }
  void expectError(const RaggedCall &c, const std::string &text) {
    EXPECT_EQ(validate(c), ATTNRT_ERR_VALIDATION);
    EXPECT_NE(lastError().find(text), std::string::npos) << lastError();
    EXPECT_EQ(lastError().find("kernel 'ragged_f32'"), 0u) << lastError();
    // A failing run must not touch the outputs.
    EXPECT_EQ(attnrt_run(m.get(), k.get(), c.args.data(), 7, 0),
              ATTNRT_ERR_VALIDATION);
    EXPECT_TRUE(std::isnan(c.o[0]));
  }
  attnrt::Module m;
  attnrt::Kernel k;
};

TEST_F(Validation, GoodCallPasses) {
  RaggedCall c({0, 3, 3, 4}, {0, 5, 5, 14});
  EXPECT_EQ(validate(c), ATTNRT_OK) << lastError();
  EXPECT_STREQ(attnrt_last_error(), "");
}

TEST_F(Validation, ArgumentCount) {
  RaggedCall c({0, 3}, {0, 5});
  EXPECT_EQ(validate(c, 6), ATTNRT_ERR_VALIDATION);
  EXPECT_NE(lastError().find("takes 7 arguments (q, k, v, cu_seqlens_q, "
                             "cu_seqlens_k, o, lse) but 6 were given"),
            std::string::npos);
}

TEST_F(Validation, Dtype) {
  RaggedCall c({0, 3}, {0, 5});
  c.args[1].dtype = ATTNRT_DTYPE_F16;
  expectError(c, "argument 'k' (#1): dtype is f16 but the kernel expects f32");
}

TEST_F(Validation, Rank) {
  RaggedCall c({0, 3}, {0, 5});
  c.args[0].rank = 2;
  expectError(c, "argument 'q' (#0): rank is 2 but the kernel expects 3 "
                 "[total_q, 2, 4]");
}

TEST_F(Validation, StaticSize) {
  RaggedCall c({0, 3}, {0, 5});
  c.sizes[2][2] = 8;
  c.rebuild();
  expectError(c, "argument 'v' (#2): shape is [5, 1, 8] but the kernel "
                 "expects [total_k, 1, 4]: dim 2 must be 4");
}

TEST_F(Validation, SymbolConsistency) {
  RaggedCall c({0, 3}, {0, 5});
  c.sizes[5][0] = 2; // o rows disagree with q rows
  c.rebuild();
  expectError(c, "gives total_q = 2 but argument 'q' dim 0 gives total_q = 3");
}

TEST_F(Validation, NonContiguousStrides) {
  RaggedCall c({0, 3}, {0, 5});
  int64_t strides[] = {4, 8, 1}; // head and row strides swapped
  c.args[0].strides = strides;
  expectError(c, "not row-major contiguous");
  int64_t good[] = {8, 4, 1};
  c.args[0].strides = good;
  EXPECT_EQ(validate(c), ATTNRT_OK);
  // k is [5, 1, 4]: the size-1 dim's stride does not matter.
  int64_t unitDim[] = {4, 99, 1};
  c.args[1].strides = unitDim;
  EXPECT_EQ(validate(c), ATTNRT_OK) << lastError();
}

TEST_F(Validation, OutputsMustNotShareMemory) {
  RaggedCall c({0, 3}, {0, 5});
  c.args[5].data = c.q.data(); // o written over q
  expectError(c, "argument 'o' (#5): shares memory with argument 'q'");
  RaggedCall d({0, 3}, {0, 5});
  d.args[6].data = d.o.data() + 4; // lse inside o's bytes
  expectError(d, "argument 'o' (#5): shares memory with argument 'lse'");
  // Adjacent, non-overlapping buffers are fine.
  RaggedCall e({0, 3}, {0, 5});
  std::vector<float> both(3 * 8 + 2 * 3);
  e.args[5].data = both.data();
  e.args[6].data = both.data() + 3 * 8;
  EXPECT_EQ(validate(e), ATTNRT_OK) << lastError();
}

TEST_F(Validation, NullData) {
  RaggedCall c({0, 3}, {0, 5});
  c.args[6].data = nullptr;
  expectError(c, "argument 'lse' (#6): data pointer is NULL");
}

TEST_F(Validation, CuSeqlensMustStartAtZero) {
  RaggedCall c({0, 3}, {0, 5});
  c.cuQ[0] = 1;
  expectError(c, "argument 'cu_seqlens_q' (#3): starts with 1");
}

TEST_F(Validation, CuSeqlensNonDecreasing) {
  RaggedCall c({0, 4, 3}, {0, 5, 5});
  expectError(c, "argument 'cu_seqlens_q' (#3): decreases at index 2 (4 -> 3)");
}

TEST_F(Validation, CuSeqlensLastIsTotal) {
  RaggedCall c({0, 3}, {0, 5});
  c.cuK[1] = 4;
  expectError(c, "argument 'cu_seqlens_k' (#4): ends at 4 but 'k' has 5 rows "
                 "(total_k)");
}

TEST_F(Validation, CuSeqlensSameLength) {
  RaggedCall c({0, 3}, {0, 2, 5});
  // Both are [batch+1], so the symbol rule catches it first.
  expectError(c, "argument 'cu_seqlens_k' (#4): shape is [3] [batch+1]: dim 0 "
                 "gives batch = 2 but argument 'cu_seqlens_q' dim 0 gives "
                 "batch = 1");
  // Without a shared symbol the explicit length rule still applies.
  TempArtifact a(
      replaceAll(readFixtureManifest(),
                 "\"cu_seqlens_k\", \"dir\": \"in\", \"dtype\": \"i32\", "
                 "\"shape\": [\"batch+1\"]",
                 "\"cu_seqlens_k\", \"dir\": \"in\", \"dtype\": \"i32\", "
                 "\"shape\": [\"nk\"]"));
  attnrt::Module other(a.dir.string(), 1);
  EXPECT_EQ(attnrt_validate(other.kernel("ragged_f32").get(), c.args.data(), 7),
            ATTNRT_ERR_VALIDATION);
  EXPECT_NE(lastError().find("argument 'cu_seqlens_k' (#4): has 3 entries but "
                             "'cu_seqlens_q' has 2"),
            std::string::npos)
      << lastError();
}

TEST(Run, CountKernelRunsEveryItemOnce) {
  attnrt::Module m(ATTNRT_FIXTURE_DIR, 4);
  attnrt::Kernel k = m.kernel("count");
  for (int64_t n : {0, 1, 7, 1000}) {
    for (int threads : {0, 1, 3, 8}) {
      std::vector<float> x(n + 1), o(n + 1, 0.0f);
      attnrt_tensor args[] = {{x.data(), ATTNRT_DTYPE_F32, 1, &n, nullptr},
                              {o.data(), ATTNRT_DTYPE_F32, 1, &n, nullptr}};
      ASSERT_EQ(attnrt_run(m.get(), k.get(), args, 2, threads), ATTNRT_OK)
          << lastError();
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(o[i], 1.0f) << "item " << i << " threads " << threads;
      EXPECT_EQ(o[n], 0.0f);
    }
  }
  std::vector<float> x(1), o(1);
  int64_t n = 1;
  attnrt_tensor args[] = {{x.data(), ATTNRT_DTYPE_F32, 1, &n, nullptr},
                          {o.data(), ATTNRT_DTYPE_F32, 1, &n, nullptr}};
  EXPECT_EQ(attnrt_run(m.get(), k.get(), args, 2, -1),
            ATTNRT_ERR_INVALID_ARGUMENT);
}

TEST(Run, KernelFromAnotherModuleIsRejected) {
  attnrt::Module a(ATTNRT_FIXTURE_DIR, 1), b(ATTNRT_FIXTURE_DIR, 1);
  std::vector<float> x(1), o(1);
  int64_t n = 1;
  attnrt_tensor args[] = {{x.data(), ATTNRT_DTYPE_F32, 1, &n, nullptr},
                          {o.data(), ATTNRT_DTYPE_F32, 1, &n, nullptr}};
  EXPECT_EQ(attnrt_run(b.get(), a.kernel("count").get(), args, 2, 0),
            ATTNRT_ERR_INVALID_ARGUMENT);
}

TEST(Run, RaggedMatchesReference) {
  attnrt::Module m(ATTNRT_FIXTURE_DIR, 3);
  attnrt::Kernel k = m.kernel("ragged_f32");
  RaggedCall c({0, 3, 3, 4, 8}, {0, 5, 5, 14, 16});
  ASSERT_EQ(attnrt_run(m.get(), k.get(), c.args.data(), 7, 0), ATTNRT_OK)
      << lastError();
  attnrun::AttentionSpec spec;
  spec.numQHeads = 2;
  spec.headDim = 4;
  spec.scale = 0.5;
  spec.mask.causal = true;
  std::vector<int64_t> cq(c.cuQ.begin(), c.cuQ.end()),
      ck(c.cuK.begin(), c.cuK.end());
  std::vector<double> q(c.q.begin(), c.q.end()), kk(c.k.begin(), c.k.end()),
      v(c.v.begin(), c.v.end()), o(c.tq * 8), lse(2 * c.tq);
  attnrun::referenceAttention(spec, attnrun::raggedSequences(cq, ck), true,
                              q.data(), kk.data(), v.data(), o.data(),
                              lse.data());
  for (int64_t i = 0; i < c.tq * 8; ++i)
    EXPECT_NEAR(c.o[i], o[i], 1e-5) << i;
  int emptyRows = 0;
  for (int64_t i = 0; i < 2 * c.tq; ++i) {
    if (std::isinf(lse[i])) {
      EXPECT_EQ(c.lse[i], lse[i]) << i;
      ++emptyRows;
    } else {
      EXPECT_NEAR(c.lse[i], lse[i], 1e-5) << i;
    }
  }
  EXPECT_GT(emptyRows, 0); // sequence 2 has more queries than keys
}

} // namespace
