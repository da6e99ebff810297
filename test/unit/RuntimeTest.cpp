//===- RuntimeTest.cpp - attnrt open, validate and run --------------------===//
//
// Uses the fixture artifact (fixture/testkernels.c + manifest.json) and
// mutated copies of it in temporary directories.
//
//===----------------------------------------------------------------------===//

#include "FixtureText.h"
#include "Reference.h"
#include "Tensor.h"
#include "attnrt/attnrt.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;

namespace {

using attnrt_test::readFixtureManifest;
using attnrt_test::replaceAll;

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
  ASSERT_EQ(m.numKernels(), 6);
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
  for (const char *v : {"1", "3"}) {
    EXPECT_EQ(openWith(replaceAll(good, "\"format_version\": 2",
                                  std::string("\"format_version\": ") + v)),
              ATTNRT_ERR_UNSUPPORTED);
    EXPECT_NE(lastError().find(std::string("format_version ") + v +
                               " but this attnrt supports only 2"),
              std::string::npos)
        << lastError();
  }
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

//===----------------------------------------------------------------------===//
// Manifest format_version 2: kinds, phases, dirs, scratch, kv_cache
//===----------------------------------------------------------------------===//

TEST(OpenV2, KindsPhasesScratchAndKvCache) {
  attnrt::Module m(ATTNRT_FIXTURE_DIR, 2);
  attnrt::Kernel dense = m.kernel("dense_f32");
  EXPECT_EQ(dense.kind(), "attention");
  EXPECT_EQ(dense.numPhases(), 1);
  EXPECT_EQ(dense.numScratch(), 0);
  EXPECT_EQ(dense.kvCache(), nullptr);
  EXPECT_EQ(dense.attention().paged, 0);

  attnrt::Kernel two = m.kernel("two_phase");
  EXPECT_EQ(two.kind(), "merge");
  EXPECT_EQ(two.numPhases(), 3);
  EXPECT_EQ(two.attentionOrNull(), nullptr);
  EXPECT_THROW(two.attention(), attnrt::Error);
  ASSERT_EQ(two.numScratch(), 3);
  const attnrt_arg_info &odd = two.scratch(1);
  EXPECT_STREQ(odd.name, "odd");
  EXPECT_EQ(odd.dtype, ATTNRT_DTYPE_I8);
  EXPECT_EQ(odd.dir, ATTNRT_DIR_INOUT);
  ASSERT_EQ(odd.rank, 1);
  EXPECT_STREQ(odd.shape[0].symbol_name, "n");
  EXPECT_EQ(odd.shape[0].value, 1);
  EXPECT_EQ(attnrt_kernel_scratch(two.get(), 3), nullptr);
  EXPECT_EQ(two.arg(0).role, ATTNRT_ROLE_PARTIAL_O);

  attnrt::Kernel append = m.kernel("append_i8");
  EXPECT_EQ(append.kind(), "kv_append");
  EXPECT_EQ(append.attentionOrNull(), nullptr);
  EXPECT_EQ(append.arg(2).role, ATTNRT_ROLE_SLOT_MAPPING);
  EXPECT_EQ(append.arg(3).role, ATTNRT_ROLE_K_PAGES);
  EXPECT_EQ(append.arg(3).dir, ATTNRT_DIR_INOUT);
  EXPECT_EQ(append.arg(3).dtype, ATTNRT_DTYPE_I8);
  EXPECT_EQ(append.arg(6).dtype, ATTNRT_DTYPE_F16);
  ASSERT_NE(append.kvCache(), nullptr);
  EXPECT_STREQ(append.kvCache()->storage, "i8");
  EXPECT_DOUBLE_EQ(append.kvCache()->bytes_per_token, 14);

  attnrt::Kernel paged = m.kernel("paged_f8");
  EXPECT_EQ(paged.kind(), "paged_attention");
  EXPECT_EQ(paged.attention().paged, 1);
  EXPECT_EQ(paged.attention().ragged, 0);
  EXPECT_EQ(paged.attention().num_q_heads, 2);
  const attnrt_kv_cache_info *kv = paged.kvCache();
  ASSERT_NE(kv, nullptr);
  EXPECT_STREQ(kv->name, "cache");
  EXPECT_EQ(kv->page_size, 4);
  EXPECT_EQ(kv->num_kv_heads, 1);
  EXPECT_EQ(kv->head_dim, 4);
  EXPECT_STREQ(kv->layout, "nhd");
  EXPECT_STREQ(kv->storage, "f8e4m3fn");
  EXPECT_EQ(kv->k_group, 4);
  EXPECT_EQ(paged.arg(1).dtype, ATTNRT_DTYPE_F8E4M3FN);
  EXPECT_EQ(paged.arg(6).role, ATTNRT_ROLE_KV_INDICES);
  EXPECT_STREQ(paged.arg(6).shape[0].symbol, "num_page_refs");
  EXPECT_EQ(paged.arg(8).role, ATTNRT_ROLE_QO_INDPTR);

  // The C API is NULL-safe.
  EXPECT_EQ(attnrt_kernel_kind(nullptr), nullptr);
  EXPECT_EQ(attnrt_kernel_num_phases(nullptr), 0);
  EXPECT_EQ(attnrt_kernel_num_scratch(nullptr), 0);
  EXPECT_EQ(attnrt_kernel_kv_cache(nullptr), nullptr);
  EXPECT_EQ(attnrt_kernel_attention(nullptr), nullptr);
}

TEST(OpenV2, DtypeAndRoleNames) {
  struct {
    attnrt_dtype dtype;
    const char *name;
    int64_t size;
  } dtypes[] = {{ATTNRT_DTYPE_F32, "f32", 4},
                {ATTNRT_DTYPE_F16, "f16", 2},
                {ATTNRT_DTYPE_BF16, "bf16", 2},
                {ATTNRT_DTYPE_I32, "i32", 4},
                {ATTNRT_DTYPE_I8, "i8", 1},
                {ATTNRT_DTYPE_U8, "u8", 1},
                {ATTNRT_DTYPE_F8E4M3FN, "f8e4m3fn", 1},
                {ATTNRT_DTYPE_F8E5M2, "f8e5m2", 1}};
  for (const auto &d : dtypes) {
    EXPECT_STREQ(attnrt_dtype_name(d.dtype), d.name);
    EXPECT_EQ(attnrt_dtype_size(d.dtype), d.size) << d.name;
  }
  const char *roles[] = {
      "query",        "key",         "value",      "cu_seqlens_q",
      "cu_seqlens_k", "output",      "lse",        "k_pages",
      "v_pages",      "k_scale",     "v_scale",    "k_min",
      "v_min",        "kv_indptr",   "kv_indices", "kv_last_page_len",
      "qo_indptr",    "k_new",       "v_new",      "slot_mapping",
      "partial_o",    "partial_lse", "k_recent",   "v_recent",
      "ring_slots",   "kv_rings"};
  for (int r = 0; r <= ATTNRT_ROLE_KV_RINGS; ++r)
    EXPECT_STREQ(attnrt_role_name(static_cast<attnrt_role>(r)), roles[r]);
}

/// Expects `manifest` to fail with ATTNRT_ERR_MANIFEST and a message
/// containing `text`.
void expectManifestError(const std::string &manifest, const std::string &text) {
  EXPECT_EQ(openWith(manifest), ATTNRT_ERR_MANIFEST) << text;
  EXPECT_NE(lastError().find(text), std::string::npos) << lastError();
  EXPECT_EQ(lastError().find('\n'), std::string::npos);
}

TEST(OpenV2, KindAndPhasesErrors) {
  std::string good = readFixtureManifest();
  expectManifestError(
      replaceAll(good, "\"kind\": \"merge\"", "\"kind\": \"mystery\""),
      "kernel 'two_phase': field 'kind' is 'mystery', expected one of "
      "attention, paged_attention, kv_append, merge");
  expectManifestError(replaceAll(good, "\"kind\": \"attention\",", ""),
                      "kernel 'dense_f32' is missing field 'kind'");
  expectManifestError(replaceAll(good, "\"phases\": 3", "\"phases\": 0"),
                      "kernel 'two_phase': field 'phases' is 0, expected 1 "
                      "to 1024");
  expectManifestError(replaceAll(good, "\"phases\": 3", "\"phases\": \"3\""),
                      "kernel 'two_phase': field 'phases' must be an integer");
}

TEST(OpenV2, RoleDtypeDirErrors) {
  std::string good = readFixtureManifest();
  expectManifestError(
      replaceAll(good, "\"role\": \"slot_mapping\"", "\"role\": \"slots\""),
      "kernel 'append_i8' argument 'slot_mapping': field 'role' is 'slots', "
      "expected one of query, key, value");
  expectManifestError(
      replaceAll(good, "\"dtype\": \"f8e4m3fn\"", "\"dtype\": \"f8e4m3\""),
      "kernel 'paged_f8' argument 'cache_k_pages': field 'dtype' is "
      "'f8e4m3', expected one of f32, f16, bf16, i32, i8, u8, f8e4m3fn, "
      "f8e5m2");
  expectManifestError(
      replaceAll(good, "\"dir\": \"inout\"", "\"dir\": \"both\""),
      "kernel 'append_i8' argument 'cache_k_pages': field 'dir' is 'both', "
      "expected one of in, out, inout");
  // Page-table and slot arguments are rank-1 i32 inputs.
  expectManifestError(
      replaceAll(good,
                 "\"role\": \"kv_indices\", \"dir\": \"in\", \"dtype\": "
                 "\"i32\"",
                 "\"role\": \"kv_indices\", \"dir\": \"in\", \"dtype\": "
                 "\"i8\""),
      "kernel 'paged_f8': field 'args' has argument 'kv_indices' of role "
      "kv_indices; it must be a rank-1 i32 input");
  // A page table needs all its parts.
  expectManifestError(
      replaceAll(good, "\"role\": \"kv_last_page_len\"", "\"role\": \"lse\""),
      "kernel 'paged_f8': field 'args' has no argument of role "
      "kv_last_page_len, which a page table needs");
}

TEST(OpenV2, SymbolsAreIdentifiers) {
  std::string good = readFixtureManifest();
  // Any identifier works, not only a fixed list.
  std::string renamed = replaceAll(good, "\"num_page_refs\"", "\"refs_2\"");
  EXPECT_EQ(openWith(renamed), ATTNRT_OK) << lastError();
  expectManifestError(replaceAll(good, "\"num_page_refs\"", "\"2refs\""),
                      "kernel 'paged_f8' argument 'kv_indices': field 'shape' "
                      "has symbol '2refs'");
  expectManifestError(replaceAll(good, "\"num_page_refs\"", "\"refs-1\""),
                      "has symbol 'refs-1'");
}

TEST(OpenV2, AttentionObjectPerKind) {
  std::string good = readFixtureManifest();
  // paged_attention needs layout "paged" ...
  expectManifestError(
      replaceAll(good, "\"layout\": \"paged\"", "\"layout\": \"ragged\""),
      "kernel 'paged_f8' attention: field 'layout' is 'ragged', expected "
      "paged");
  // ... and attention kinds do not accept it.
  expectManifestError(
      replaceAll(good, "\"layout\": \"ragged\"", "\"layout\": \"paged\""),
      "kernel 'ragged_f32' attention: field 'layout' is 'paged', expected "
      "dense or ragged");
  // kv_append and merge have no attention parameters.
  expectManifestError(
      replaceAll(good, "\"kind\": \"attention\",", "\"kind\": \"merge\","),
      "kernel 'dense_f32': field 'attention' is present but a merge kernel "
      "has no attention parameters");
  expectManifestError(
      replaceAll(good, "\"kind\": \"paged_attention\",",
                 "\"kind\": \"attention\","),
      "kernel 'paged_f8' attention: field 'layout' is 'paged', expected "
      "dense or ragged");
}

TEST(OpenV2, KvCacheErrors) {
  std::string good = readFixtureManifest();
  expectManifestError(
      replaceAll(good, "\"layout\": \"nhd\", \"storage\": \"i8\"",
                 "\"layout\": \"dhn\", \"storage\": \"i8\""),
      "kernel 'append_i8' kv_cache: field 'layout' is 'dhn', expected nhd or "
      "hnd");
  expectManifestError(
      replaceAll(good, "\"storage\": \"i8\"", "\"storage\": \"i2\""),
      "kernel 'append_i8' kv_cache: field 'storage' is 'i2', expected one of "
      "f16, bf16, f8e4m3fn, f8e5m2, i8, i4");
  expectManifestError(
      replaceAll(good, "\"page_size\": 4, \"num_kv_heads\": 2",
                 "\"page_size\": 512, \"num_kv_heads\": 2"),
      "kernel 'append_i8' kv_cache: field 'page_size' is 512, expected 1 to "
      "256");
  expectManifestError(
      replaceAll(good, "\"storage\": \"i8\", \"k_group\": 4",
                 "\"storage\": \"i8\", \"k_group\": 3"),
      "kernel 'append_i8' kv_cache: field 'k_group' is 3, expected a divisor "
      "of page_size 4");
  expectManifestError(
      replaceAll(good, ", \"bytes_per_token\": 14", ""),
      "kernel 'append_i8' kv_cache is missing field 'bytes_per_token'");
  // A page table needs the cache's page_size.
  std::string noCache = good;
  size_t at = noCache.find("\"kv_cache\"", noCache.find("\"paged_f8\""));
  noCache.erase(at, noCache.find("},", at) + 2 - at);
  expectManifestError(noCache, "kernel 'paged_f8' has a page table or "
                               "slot_mapping but is missing field 'kv_cache'");
}

TEST(OpenV2, ScratchErrors) {
  std::string good = readFixtureManifest();
  expectManifestError(
      replaceAll(good, "\"shape\": [\"n+1\"]", "\"shape\": [\"m+1\"]"),
      "kernel 'two_phase': field 'scratch' buffer 'odd' uses symbol 'm' that "
      "no argument's shape binds");
  expectManifestError(
      replaceAll(good, "\"name\": \"tail\"", "\"name\": \"partial\""),
      "kernel 'two_phase': field 'scratch' has two buffers named 'partial'");
  expectManifestError(
      replaceAll(good, "\"name\": \"tail\"", "\"name\": \"x\""),
      "kernel 'two_phase': field 'scratch' has two buffers named 'x'");
  expectManifestError(
      replaceAll(good, "\"name\": \"tail\", \"dtype\": \"i32\"",
                 "\"name\": \"tail\", \"dtype\": \"f64\""),
      "kernel 'two_phase' scratch 'tail': field 'dtype' is 'f64'");
}

//===----------------------------------------------------------------------===//
// Phases and scratch
//===----------------------------------------------------------------------===//

/// Runs two_phase on n random values and checks o[i] = 2 x[i] + 2 x[j].
void runTwoPhase(attnrt::Module &m, int64_t n, int threads, unsigned seed) {
  attnrt::Kernel k = m.kernel("two_phase");
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1, 1);
  std::vector<float> x(n + 1), o(n + 1, NAN);
  for (float &v : x)
    v = dist(rng);
  attnrt_tensor args[] = {{x.data(), ATTNRT_DTYPE_F32, 1, &n, nullptr},
                          {o.data(), ATTNRT_DTYPE_F32, 1, &n, nullptr}};
  ASSERT_EQ(attnrt_run(m.get(), k.get(), args, 2, threads), ATTNRT_OK)
      << lastError();
  for (int64_t i = 0; i < n; ++i) {
    int64_t j = (7 * i + 3) % n;
    ASSERT_EQ(o[i], 2 * x[i] + 2 * x[j])
        << "item " << i << " of " << n << ", threads " << threads;
  }
  EXPECT_TRUE(std::isnan(o[n])); // nothing past the end
}

TEST(Phases, SecondPhaseSeesEveryWriteOfTheFirst) {
  attnrt::Module m(ATTNRT_FIXTURE_DIR, 4);
  unsigned seed = 1;
  // Growing and shrinking sizes exercise the reused scratch block.
  for (int64_t n : {0, 1, 2, 7, 1000, 20000, 5})
    for (int threads : {0, 1, 3, 8})
      runTwoPhase(m, n, threads, seed++);
}

TEST(Phases, ConcurrentRunsOnOneModule) {
  attnrt::Module m(ATTNRT_FIXTURE_DIR, 2);
  std::vector<std::thread> callers;
  for (unsigned t = 0; t < 4; ++t)
    callers.emplace_back([&m, t] {
      for (unsigned r = 0; r < 20; ++r)
        runTwoPhase(m, 300 + 17 * t + r, 2, 100 * t + r);
    });
  for (std::thread &c : callers)
    c.join();
}

//===----------------------------------------------------------------------===//
// kv_append: inout cache components and slot_mapping
//===----------------------------------------------------------------------===//

/// Tensors for append_i8: N new tokens into a pool of P pages.
struct AppendCall {
  AppendCall(std::vector<int32_t> slotList, int64_t pages)
      : slots(std::move(slotList)), numPages(pages) {
    n = static_cast<int64_t>(slots.size());
    kNew.resize(n * 4 + 1);
    vNew.resize(n * 4 + 1);
    for (int64_t i = 0; i < n * 4; ++i) {
      kNew[i] = 0.1f * static_cast<float>(i % 13) - 0.6f;
      vNew[i] = 0.05f * static_cast<float>(i % 7);
    }
    kPages.assign(numPages * 16 + 1, 0);
    vPages.assign(numPages * 16 + 1, 0);
    kScale.assign(numPages * 4 + 1, 0);
    vScale.assign(numPages * 8 + 1, 0);
    sizes = {{n, 2, 2},           {n, 2, 2},           {n},
             {numPages, 4, 2, 2}, {numPages, 4, 2, 2}, {numPages, 1, 2, 2},
             {numPages, 4, 2}};
    rebuild();
  }
  void rebuild() {
    void *data[] = {kNew.data(),   vNew.data(),   slots.data(), kPages.data(),
                    vPages.data(), kScale.data(), vScale.data()};
    attnrt_dtype types[] = {
        ATTNRT_DTYPE_F32, ATTNRT_DTYPE_F32, ATTNRT_DTYPE_I32, ATTNRT_DTYPE_I8,
        ATTNRT_DTYPE_I8,  ATTNRT_DTYPE_F16, ATTNRT_DTYPE_F16};
    args.clear();
    for (int i = 0; i < 7; ++i)
      args.push_back(
          {data[i], types[i], (int)sizes[i].size(), sizes[i].data(), nullptr});
  }
  int64_t n, numPages;
  std::vector<int32_t> slots;
  std::vector<float> kNew, vNew;
  std::vector<int8_t> kPages, vPages;
  std::vector<uint16_t> kScale, vScale;
  std::vector<std::vector<int64_t>> sizes;
  std::vector<attnrt_tensor> args;
};

class AppendTest : public ::testing::Test {
protected:
  AppendTest() : m(ATTNRT_FIXTURE_DIR, 2), k(m.kernel("append_i8")) {}
  void expectError(AppendCall &c, const std::string &text) {
    EXPECT_EQ(attnrt_validate(k.get(), c.args.data(), 7),
              ATTNRT_ERR_VALIDATION);
    EXPECT_NE(lastError().find(text), std::string::npos) << lastError();
    EXPECT_EQ(lastError().find("kernel 'append_i8'"), 0u) << lastError();
    // Nothing is written when validation fails.
    std::vector<int8_t> before = c.kPages;
    EXPECT_EQ(attnrt_run(m.get(), k.get(), c.args.data(), 7, 0),
              ATTNRT_ERR_VALIDATION);
    EXPECT_EQ(c.kPages, before);
  }
  attnrt::Module m;
  attnrt::Kernel k;
};

TEST_F(AppendTest, WritesInPlaceAndSkipsMinusOne) {
  // Slots: page 2 offset 1, skipped, page 0 offset 3, the last slot.
  AppendCall c({9, -1, 3, 19}, 5);
  ASSERT_EQ(attnrt_run(m.get(), k.get(), c.args.data(), 7, 0), ATTNRT_OK)
      << lastError();
  std::vector<int8_t> expectK(5 * 16 + 1, 0), expectV(5 * 16 + 1, 0);
  for (int64_t t = 0; t < c.n; ++t) {
    if (c.slots[t] < 0)
      continue;
    for (int64_t e = 0; e < 4; ++e) { // [head, dim] of the token
      expectK[c.slots[t] * 4 + e] = static_cast<int8_t>(
          std::clamp(std::nearbyint(10 * c.kNew[t * 4 + e]), -127.0f, 127.0f));
      expectV[c.slots[t] * 4 + e] = static_cast<int8_t>(
          std::clamp(std::nearbyint(10 * c.vNew[t * 4 + e]), -127.0f, 127.0f));
    }
  }
  EXPECT_EQ(c.kPages, expectK);
  EXPECT_EQ(c.vPages, expectV);
  // Scales of the touched pages (0, 2, 4) only.
  for (int64_t p = 0; p < 5; ++p)
    EXPECT_EQ(c.kScale[p * 4], (p % 2 == 0) ? 0x2e66 : 0) << p;
  EXPECT_EQ(c.vScale[2 * 8 + 1 * 2], 0x2e66);
  EXPECT_EQ(c.vScale[2 * 8 + 0 * 2], 0);
}

TEST_F(AppendTest, SlotOutOfRange) {
  AppendCall ok({0, -1, 19}, 5);
  EXPECT_EQ(attnrt_validate(k.get(), ok.args.data(), 7), ATTNRT_OK)
      << lastError();
  AppendCall c({0, 20}, 5);
  expectError(c, "argument 'slot_mapping' (#2): entry 1 is 20 but the pool "
                 "'cache_k_pages' has 5 pages of 4 slots; a slot is page * "
                 "page_size + offset, in [0, 5 * 4), or -1 to skip the token");
  AppendCall d({-2}, 5);
  expectError(d, "argument 'slot_mapping' (#2): entry 0 is -2");
  AppendCall empty({3}, 0); // no pages at all
  expectError(empty, "entry 0 is 3 but the pool 'cache_k_pages' has 0 pages");
}

TEST_F(AppendTest, InoutMustNotAlias) {
  AppendCall c({1}, 2);
  c.args[4].data = c.kPages.data(); // v pages written over k pages
  expectError(c, "argument 'cache_k_pages' (#3): shares memory with argument "
                 "'cache_v_pages'; an inout argument is updated in place and "
                 "needs a buffer of its own");
  AppendCall d({1}, 2);
  d.args[6].data = d.kNew.data(); // v scale over an input
  expectError(d, "argument 'cache_v_scale' (#6): shares memory with argument "
                 "'k_new'");
  // Inputs may share memory with each other.
  AppendCall e({1}, 2);
  e.args[1].data = e.kNew.data();
  EXPECT_EQ(attnrt_validate(k.get(), e.args.data(), 7), ATTNRT_OK)
      << lastError();
}

TEST_F(AppendTest, NewDtypesAreChecked) {
  AppendCall c({1}, 2);
  c.args[3].dtype = ATTNRT_DTYPE_U8;
  expectError(c, "argument 'cache_k_pages' (#3): dtype is u8 but the kernel "
                 "expects i8");
  // The same buffers as u8 pass once the manifest says u8 (i4 storage).
  TempArtifact a(replaceAll(readFixtureManifest(),
                            "\"dir\": \"inout\", \"dtype\": \"i8\"",
                            "\"dir\": \"inout\", \"dtype\": \"u8\""));
  attnrt::Module other(a.dir.string(), 1);
  AppendCall u({1}, 2);
  u.args[3].dtype = u.args[4].dtype = ATTNRT_DTYPE_U8;
  EXPECT_EQ(attnrt_validate(other.kernel("append_i8").get(), u.args.data(), 7),
            ATTNRT_OK)
      << lastError();
}

//===----------------------------------------------------------------------===//
// paged_attention: page table, qo_indptr, fp8 pages
//===----------------------------------------------------------------------===//

uint8_t toE4m3(float x) { return attnrun::floatToFp8(x, 3, 7, false); }
float fromE4m3(uint8_t b) { return attnrun::fp8ToFloat(b, 3, 7, false); }

/// Tensors for paged_f8 (page_size 4, Hq 2, Hkv 1, D 4).
struct PagedCall {
  PagedCall(std::vector<int32_t> indptr_, std::vector<int32_t> indices_,
            std::vector<int32_t> last_, std::vector<int32_t> qo_, int64_t pages)
      : indptr(std::move(indptr_)), indices(std::move(indices_)),
        last(std::move(last_)), qo(std::move(qo_)), numPages(pages) {
    tq = qo.back();
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> dist(-1, 1);
    q.resize(tq * 8 + 1);
    for (float &x : q)
      x = dist(rng);
    kPages.resize(numPages * 16 + 1);
    vPages.resize(numPages * 16 + 1);
    for (uint8_t &b : kPages)
      b = toE4m3(dist(rng) * 4);
    for (uint8_t &b : vPages)
      b = toE4m3(dist(rng) * 4);
    o.assign(tq * 8 + 1, NAN);
    lse.assign(2 * tq + 1, NAN);
    int64_t b = static_cast<int64_t>(last.size());
    sizes = {{tq, 2, 4},
             {numPages, 4, 1, 4},
             {numPages, 4, 1, 4},
             {1},
             {1},
             {(int64_t)indptr.size()},
             {(int64_t)indices.size()},
             {b},
             {(int64_t)qo.size()},
             {tq, 2, 4},
             {2, tq}};
    rebuild();
  }
  void rebuild() {
    // Empty vectors may have no storage; attnrt wants non-NULL data.
    auto ints = [this](std::vector<int32_t> &v) -> void * {
      return v.empty() ? &unused : v.data();
    };
    void *data[] = {q.data(), kPages.data(), vPages.data(), &kScale,
                    &vScale,  ints(indptr),  ints(indices), ints(last),
                    ints(qo), o.data(),      lse.data()};
    attnrt_dtype types[] = {
        ATTNRT_DTYPE_F32, ATTNRT_DTYPE_F8E4M3FN, ATTNRT_DTYPE_F8E4M3FN,
        ATTNRT_DTYPE_F32, ATTNRT_DTYPE_F32,      ATTNRT_DTYPE_I32,
        ATTNRT_DTYPE_I32, ATTNRT_DTYPE_I32,      ATTNRT_DTYPE_I32,
        ATTNRT_DTYPE_F32, ATTNRT_DTYPE_F32};
    args.clear();
    for (int i = 0; i < 11; ++i)
      args.push_back(
          {data[i], types[i], (int)sizes[i].size(), sizes[i].data(), nullptr});
  }
  int64_t tq, numPages;
  std::vector<int32_t> indptr, indices, last, qo;
  std::vector<float> q, o, lse;
  std::vector<uint8_t> kPages, vPages;
  float kScale = 0.5f, vScale = 0.25f;
  int32_t unused = 0;
  std::vector<std::vector<int64_t>> sizes;
  std::vector<attnrt_tensor> args;
};

class PagedTest : public ::testing::Test {
protected:
  PagedTest() : m(ATTNRT_FIXTURE_DIR, 3), k(m.kernel("paged_f8")) {}
  attnrt_status validate(const PagedCall &c) {
    return attnrt_validate(k.get(), c.args.data(), 11);
  }
  void expectError(const PagedCall &c, const std::string &text) {
    EXPECT_EQ(validate(c), ATTNRT_ERR_VALIDATION);
    EXPECT_NE(lastError().find(text), std::string::npos) << lastError();
    EXPECT_EQ(lastError().find("kernel 'paged_f8'"), 0u) << lastError();
    EXPECT_EQ(attnrt_run(m.get(), k.get(), c.args.data(), 11, 0),
              ATTNRT_ERR_VALIDATION);
    EXPECT_TRUE(std::isnan(c.o[0]));
  }
  attnrt::Module m;
  attnrt::Kernel k;
};

// Three sequences: pages {3, 0} with 2 tokens in the last (6 tokens), no
// pages, pages {4, 1, 3} full (12 tokens; page 3 shared). Queries 2, 0, 3.
PagedCall goodPaged() {
  return PagedCall({0, 2, 2, 5}, {3, 0, 4, 1, 3}, {2, 0, 4}, {0, 2, 2, 5}, 5);
}

TEST_F(PagedTest, MatchesReference) {
  PagedCall c = goodPaged();
  ASSERT_EQ(attnrt_run(m.get(), k.get(), c.args.data(), 11, 0), ATTNRT_OK)
      << lastError();
  // Gather each sequence's dequantized K/V and compare with the ragged
  // reference (queries are the last tokens of their sequence).
  std::vector<double> kk, vv;
  std::vector<int64_t> cuK{0};
  for (size_t b = 0; b + 1 < c.indptr.size(); ++b) {
    int64_t pages = c.indptr[b + 1] - c.indptr[b];
    int64_t len = pages ? (pages - 1) * 4 + c.last[b] : 0;
    for (int64_t t = 0; t < len; ++t)
      for (int64_t d = 0; d < 4; ++d) {
        int64_t at = c.indices[c.indptr[b] + t / 4] * 16 + (t % 4) * 4 + d;
        kk.push_back(c.kScale * fromE4m3(c.kPages[at]));
        vv.push_back(c.vScale * fromE4m3(c.vPages[at]));
      }
    cuK.push_back(cuK.back() + len);
  }
  std::vector<int64_t> cuQ(c.qo.begin(), c.qo.end());
  attnrun::AttentionSpec spec;
  spec.numQHeads = 2;
  spec.headDim = 4;
  spec.scale = 0.5;
  spec.mask.causal = true;
  std::vector<double> q(c.q.begin(), c.q.end()), o(c.tq * 8), lse(2 * c.tq);
  attnrun::referenceAttention(spec, attnrun::raggedSequences(cuQ, cuK), true,
                              q.data(), kk.data(), vv.data(), o.data(),
                              lse.data());
  for (int64_t i = 0; i < c.tq * 8; ++i)
    EXPECT_NEAR(c.o[i], o[i], 1e-5) << i;
  for (int64_t i = 0; i < 2 * c.tq; ++i)
    EXPECT_NEAR(c.lse[i], lse[i], 1e-5) << i;
}

TEST_F(PagedTest, GoodTablesPass) {
  EXPECT_EQ(validate(goodPaged()), ATTNRT_OK) << lastError();
  // Empty batch: one indptr entry, no pages referenced.
  PagedCall empty({0}, {}, {}, {0}, 2);
  EXPECT_EQ(validate(empty), ATTNRT_OK) << lastError();
}

TEST_F(PagedTest, IndptrRules) {
  PagedCall a({1, 2, 2, 5}, {3, 0, 4, 1, 3}, {2, 0, 4}, {0, 2, 2, 5}, 5);
  expectError(a, "argument 'kv_indptr' (#5): starts with 1 but must start "
                 "with 0");
  PagedCall b({0, 3, 2, 5}, {3, 0, 4, 1, 3}, {2, 0, 4}, {0, 2, 2, 5}, 5);
  expectError(b, "argument 'kv_indptr' (#5): decreases at index 2 (3 -> 2)");
  PagedCall c({0, 2, 2, 4}, {3, 0, 4, 1, 3}, {2, 0, 4}, {0, 2, 2, 5}, 5);
  expectError(c, "argument 'kv_indptr' (#5): ends at 4 but 'kv_indices' has "
                 "5 entries; the last entry must equal the number of page "
                 "references (len(kv_indices))");
}

TEST_F(PagedTest, PageIndexOutOfRange) {
  PagedCall c({0, 2, 2, 5}, {3, 0, 4, 5, 3}, {2, 0, 4}, {0, 2, 2, 5}, 5);
  expectError(c, "argument 'kv_indices' (#6): entry 3 (sequence 2) is page 5 "
                 "but the pool 'cache_k_pages' has 5 pages; page numbers must "
                 "be in [0, 5)");
  PagedCall d({0, 2, 2, 5}, {-1, 0, 4, 1, 3}, {2, 0, 4}, {0, 2, 2, 5}, 5);
  expectError(d, "entry 0 (sequence 0) is page -1");
}

TEST_F(PagedTest, LastPageLength) {
  PagedCall a({0, 2, 2, 5}, {3, 0, 4, 1, 3}, {5, 0, 4}, {0, 2, 2, 5}, 5);
  expectError(a, "argument 'kv_last_page_len' (#7): sequence 0 is longer "
                 "than its pages: kv_last_page_len[0] = 5 but page_size is 4 "
                 "(2 page(s) hold at most 8 tokens)");
  PagedCall b({0, 2, 2, 5}, {3, 0, 4, 1, 3}, {2, 0, 0}, {0, 2, 2, 5}, 5);
  expectError(b, "argument 'kv_last_page_len' (#7): kv_last_page_len[2] = 0 "
                 "but sequence 2 has 3 page(s); its last page holds 1 to "
                 "page_size (4) tokens");
  PagedCall c({0, 2, 2, 5}, {3, 0, 4, 1, 3}, {2, 1, 4}, {0, 2, 2, 5}, 5);
  expectError(c, "argument 'kv_last_page_len' (#7): kv_last_page_len[1] = 1 "
                 "but sequence 1 has no pages; a sequence without pages must "
                 "have 0");
}

TEST_F(PagedTest, QoIndptrRules) {
  PagedCall a({0, 2, 2, 5}, {3, 0, 4, 1, 3}, {2, 0, 4}, {0, 2, 1, 5}, 5);
  expectError(a, "argument 'qo_indptr' (#8): decreases at index 2 (2 -> 1)");
  PagedCall b({0, 2, 2, 5}, {3, 0, 4, 1, 3}, {2, 0, 4}, {0, 2, 2, 5}, 5);
  b.sizes[0][0] = b.sizes[9][0] = b.sizes[10][1] = 4; // q has 4 rows
  b.rebuild();
  expectError(b, "argument 'qo_indptr' (#8): ends at 5 but 'q' has 4 rows "
                 "(total_q)");
  PagedCall c({0, 2, 2, 5}, {3, 0, 4, 1, 3}, {2, 0, 4}, {1, 2, 2, 5}, 5);
  expectError(c, "argument 'qo_indptr' (#8): starts with 1");
  // Different lengths: the shared batch+1 symbol reports it first; without
  // it the explicit rule does.
  PagedCall d({0, 2, 2, 5}, {3, 0, 4, 1, 3}, {2, 0, 4}, {0, 2, 5}, 5);
  expectError(d, "argument 'qo_indptr' (#8): shape is [3] [batch+1]");
  TempArtifact art(replaceAll(readFixtureManifest(),
                              "\"role\": \"qo_indptr\", \"dir\": \"in\", "
                              "\"dtype\": \"i32\", \"shape\": [\"batch+1\"]",
                              "\"role\": \"qo_indptr\", \"dir\": \"in\", "
                              "\"dtype\": \"i32\", \"shape\": [\"nq\"]"));
  attnrt::Module other(art.dir.string(), 1);
  EXPECT_EQ(attnrt_validate(other.kernel("paged_f8").get(), d.args.data(), 11),
            ATTNRT_ERR_VALIDATION);
  EXPECT_NE(lastError().find("argument 'qo_indptr' (#8): has 3 entries but "
                             "'kv_indptr' has 4; both must have batch+1 "
                             "entries"),
            std::string::npos)
      << lastError();
}

TEST_F(PagedTest, Fp8DtypeIsChecked) {
  PagedCall c = goodPaged();
  c.args[2].dtype = ATTNRT_DTYPE_F8E5M2;
  expectError(c, "argument 'cache_v_pages' (#2): dtype is f8e5m2 but the "
                 "kernel expects f8e4m3fn");
}

//===----------------------------------------------------------------------===//
// Residual window: kv_cache.residual, k_recent/v_recent, ring_slots, kv_rings
//===----------------------------------------------------------------------===//

/// Two kernels of an i8 cache with residual = 3 (page_size 4); the fixture
/// library has empty stubs for them.
const char *residualManifest = R"({
  "format_version": 2, "target": "host", "library": "libtestkernels.so",
  "kernels": [
    {
      "name": "append_i8_res", "kind": "kv_append", "phases": 1,
      "entry_run": "append_i8_res__run",
      "entry_work_items": "append_i8_res__work_items",
      "kv_cache": {"name": "cache", "page_size": 4, "num_kv_heads": 2, "head_dim": 2,
                   "layout": "nhd", "storage": "i8", "k_group": 4, "residual": 3,
                   "bytes_per_token": 14},
      "args": [
        {"name": "k_new", "role": "k_new", "dir": "in", "dtype": "f32", "shape": ["num_new", 2, 2]},
        {"name": "v_new", "role": "v_new", "dir": "in", "dtype": "f32", "shape": ["num_new", 2, 2]},
        {"name": "slot_mapping", "role": "slot_mapping", "dir": "in", "dtype": "i32", "shape": ["num_new"]},
        {"name": "ring_slots", "role": "ring_slots", "dir": "in", "dtype": "i32", "shape": ["num_new"]},
        {"name": "cache_k_pages", "role": "k_pages", "dir": "inout", "dtype": "i8", "shape": ["num_pages", 4, 2, 2]},
        {"name": "cache_v_pages", "role": "v_pages", "dir": "inout", "dtype": "i8", "shape": ["num_pages", 4, 2, 2]},
        {"name": "cache_k_scale", "role": "k_scale", "dir": "inout", "dtype": "f16", "shape": ["num_pages", 1, 2, 2]},
        {"name": "cache_v_scale", "role": "v_scale", "dir": "inout", "dtype": "f16", "shape": ["num_pages", 4, 2]},
        {"name": "cache_k_recent", "role": "k_recent", "dir": "inout", "dtype": "f16", "shape": ["num_rings", 3, 2, 2]},
        {"name": "cache_v_recent", "role": "v_recent", "dir": "inout", "dtype": "f16", "shape": ["num_rings", 3, 2, 2]}
      ]
    },
    {
      "name": "paged_i8_res", "kind": "paged_attention", "phases": 1,
      "entry_run": "paged_i8_res__run",
      "entry_work_items": "paged_i8_res__work_items",
      "attention": {
        "layout": "paged", "num_q_heads": 2, "num_kv_heads": 2, "head_dim": 2,
        "dtype": "f32", "scale": 0.5, "softcap": 0.0,
        "mask": {"causal": false, "align": "bottom_right", "window": -1, "sinks": 0},
        "has_lse": false
      },
      "kv_cache": {"name": "cache", "page_size": 4, "num_kv_heads": 2, "head_dim": 2,
                   "layout": "nhd", "storage": "i8", "k_group": 4, "residual": 3,
                   "bytes_per_token": 14},
      "args": [
        {"name": "q", "role": "query", "dir": "in", "dtype": "f32", "shape": ["batch", 2, 2]},
        {"name": "cache_k_pages", "role": "k_pages", "dir": "in", "dtype": "i8", "shape": ["num_pages", 4, 2, 2]},
        {"name": "cache_v_pages", "role": "v_pages", "dir": "in", "dtype": "i8", "shape": ["num_pages", 4, 2, 2]},
        {"name": "cache_k_scale", "role": "k_scale", "dir": "in", "dtype": "f16", "shape": ["num_pages", 1, 2, 2]},
        {"name": "cache_v_scale", "role": "v_scale", "dir": "in", "dtype": "f16", "shape": ["num_pages", 4, 2]},
        {"name": "cache_k_recent", "role": "k_recent", "dir": "in", "dtype": "f16", "shape": ["num_rings", 3, 2, 2]},
        {"name": "cache_v_recent", "role": "v_recent", "dir": "in", "dtype": "f16", "shape": ["num_rings", 3, 2, 2]},
        {"name": "kv_indptr", "role": "kv_indptr", "dir": "in", "dtype": "i32", "shape": ["batch+1"]},
        {"name": "kv_indices", "role": "kv_indices", "dir": "in", "dtype": "i32", "shape": ["num_page_refs"]},
        {"name": "kv_last_page_len", "role": "kv_last_page_len", "dir": "in", "dtype": "i32", "shape": ["batch"]},
        {"name": "kv_rings", "role": "kv_rings", "dir": "in", "dtype": "i32", "shape": ["batch"]},
        {"name": "o", "role": "output", "dir": "out", "dtype": "f32", "shape": ["batch", 2, 2]}
      ]
    }
  ]
})";

TEST(Residual, ManifestRolesAndResidual) {
  TempArtifact a(residualManifest);
  attnrt::Module m(a.dir.string(), 1);
  attnrt::Kernel append = m.kernel("append_i8_res");
  ASSERT_NE(append.kvCache(), nullptr);
  EXPECT_EQ(append.kvCache()->residual, 3);
  EXPECT_EQ(append.arg(3).role, ATTNRT_ROLE_RING_SLOTS);
  EXPECT_EQ(append.arg(8).role, ATTNRT_ROLE_K_RECENT);
  EXPECT_EQ(append.arg(9).role, ATTNRT_ROLE_V_RECENT);
  EXPECT_STREQ(append.arg(8).shape[0].symbol, "num_rings");
  EXPECT_EQ(append.arg(8).shape[1].value, 3);
  attnrt::Kernel paged = m.kernel("paged_i8_res");
  EXPECT_EQ(paged.kvCache()->residual, 3);
  EXPECT_EQ(paged.arg(10).role, ATTNRT_ROLE_KV_RINGS);
  // Absent residual: 0.
  attnrt::Module fixture(ATTNRT_FIXTURE_DIR, 1);
  EXPECT_EQ(fixture.kernel("append_i8").kvCache()->residual, 0);
  EXPECT_EQ(fixture.kernel("paged_f8").kvCache()->residual, 0);
}

TEST(Residual, ManifestErrors) {
  std::string good = residualManifest;
  expectManifestError(
      replaceAll(good, "\"residual\": 3", "\"residual\": 5000"),
      "kernel 'append_i8_res' kv_cache: field 'residual' is 5000, expected 0 "
      "(none) to 4096");
  expectManifestError(
      replaceAll(good, "\"residual\": 3", "\"residual\": \"3\""),
      "kernel 'append_i8_res' kv_cache: field 'residual' must be an integer");
  expectManifestError(
      replaceAll(good, "\"storage\": \"i8\"", "\"storage\": \"f16\""),
      "kernel 'append_i8_res' kv_cache: field 'residual' is 3 but storage "
      "'f16' is not quantized");
  // Every kernel of a residual cache has its rings and its ring argument.
  expectManifestError(
      replaceAll(good, "\"role\": \"ring_slots\"", "\"role\": \"lse\""),
      "kernel 'append_i8_res': field 'args' has no argument of role "
      "ring_slots, which a cache with residual = 3 needs");
  expectManifestError(
      replaceAll(good, "\"role\": \"kv_rings\"", "\"role\": \"lse\""),
      "kernel 'paged_i8_res': field 'args' has no argument of role kv_rings, "
      "which a cache with residual = 3 needs");
  expectManifestError(
      replaceAll(good, "\"role\": \"v_recent\"", "\"role\": \"v_min\""),
      "kernel 'append_i8_res': field 'args' has no argument of role "
      "v_recent");
  expectManifestError(
      replaceAll(good, "\"shape\": [\"num_rings\", 3, 2, 2]",
                 "\"shape\": [\"num_rings\", 4, 2, 2]"),
      "kernel 'append_i8_res': field 'args' has argument 'cache_k_recent' of "
      "role k_recent; it must be f16 [num_rings, 3, H, D]");
  expectManifestError(
      replaceAll(good,
                 "\"role\": \"kv_rings\", \"dir\": \"in\", \"dtype\": \"i32\"",
                 "\"role\": \"kv_rings\", \"dir\": \"in\", \"dtype\": \"i8\""),
      "kernel 'paged_i8_res': field 'args' has argument 'kv_rings' of role "
      "kv_rings; it must be a rank-1 i32 input");
  // No ring arguments without a residual.
  expectManifestError(
      replaceAll(good, "\"residual\": 3,", ""),
      "kernel 'append_i8_res': field 'args' has argument 'cache_k_recent' of "
      "role k_recent but the kernel's kv_cache has no residual window "
      "(kv_cache.residual is 0 or absent); fix or regenerate it");
}

/// Tensors of one call: buffers of the given dtype and sizes, zero-filled.
struct Call {
  void add(attnrt_dtype dtype, std::vector<int64_t> dims) {
    int64_t n = 1;
    for (int64_t d : dims)
      n *= d;
    buffers.emplace_back(static_cast<size_t>(n * attnrt_dtype_size(dtype) + 8),
                         0);
    sizes.push_back(std::move(dims));
    dtypes.push_back(dtype);
  }
  int32_t *ints(int i) {
    return reinterpret_cast<int32_t *>(buffers[i].data());
  }
  const std::vector<attnrt_tensor> &tensors() {
    args.clear();
    for (size_t i = 0; i < buffers.size(); ++i)
      args.push_back({buffers[i].data(), dtypes[i], (int)sizes[i].size(),
                      sizes[i].data(), nullptr});
    return args;
  }
  std::vector<std::vector<char>> buffers;
  std::vector<std::vector<int64_t>> sizes;
  std::vector<attnrt_dtype> dtypes;
  std::vector<attnrt_tensor> args;
};

class ResidualTest : public ::testing::Test {
protected:
  ResidualTest()
      : a(residualManifest), m(a.dir.string(), 1),
        append(m.kernel("append_i8_res")), paged(m.kernel("paged_i8_res")) {}

  /// append_i8_res: N tokens, P pages, `rings` rings.
  Call appendCall(std::vector<int32_t> slots, std::vector<int32_t> ringSlots,
                  int64_t pages, int64_t rings) {
    Call c;
    int64_t n = static_cast<int64_t>(slots.size());
    c.add(ATTNRT_DTYPE_F32, {n, 2, 2});
    c.add(ATTNRT_DTYPE_F32, {n, 2, 2});
    c.add(ATTNRT_DTYPE_I32, {n});
    c.add(ATTNRT_DTYPE_I32, {static_cast<int64_t>(ringSlots.size())});
    c.add(ATTNRT_DTYPE_I8, {pages, 4, 2, 2});
    c.add(ATTNRT_DTYPE_I8, {pages, 4, 2, 2});
    c.add(ATTNRT_DTYPE_F16, {pages, 1, 2, 2});
    c.add(ATTNRT_DTYPE_F16, {pages, 4, 2});
    c.add(ATTNRT_DTYPE_F16, {rings, 3, 2, 2});
    c.add(ATTNRT_DTYPE_F16, {rings, 3, 2, 2});
    std::copy(slots.begin(), slots.end(), c.ints(2));
    std::copy(ringSlots.begin(), ringSlots.end(), c.ints(3));
    return c;
  }
  /// paged_i8_res: one page per sequence (4 tokens), `rings` rings.
  Call pagedCall(std::vector<int32_t> kvRings, int64_t pages, int64_t rings) {
    Call c;
    int64_t b = static_cast<int64_t>(kvRings.size());
    c.add(ATTNRT_DTYPE_F32, {b, 2, 2});
    c.add(ATTNRT_DTYPE_I8, {pages, 4, 2, 2});
    c.add(ATTNRT_DTYPE_I8, {pages, 4, 2, 2});
    c.add(ATTNRT_DTYPE_F16, {pages, 1, 2, 2});
    c.add(ATTNRT_DTYPE_F16, {pages, 4, 2});
    c.add(ATTNRT_DTYPE_F16, {rings, 3, 2, 2});
    c.add(ATTNRT_DTYPE_F16, {rings, 3, 2, 2});
    c.add(ATTNRT_DTYPE_I32, {b + 1});
    c.add(ATTNRT_DTYPE_I32, {b});
    c.add(ATTNRT_DTYPE_I32, {b});
    c.add(ATTNRT_DTYPE_I32, {b});
    c.add(ATTNRT_DTYPE_F32, {b, 2, 2});
    for (int64_t i = 0; i < b; ++i) {
      c.ints(7)[i + 1] = static_cast<int32_t>(i + 1);
      c.ints(8)[i] = static_cast<int32_t>(i % pages);
      c.ints(9)[i] = 4;
      c.ints(10)[i] = kvRings[i];
    }
    return c;
  }
  void expectError(attnrt::Kernel k, Call &c, const std::string &text) {
    const std::vector<attnrt_tensor> &t = c.tensors();
    EXPECT_EQ(attnrt_validate(k.get(), t.data(), (int)t.size()),
              ATTNRT_ERR_VALIDATION);
    EXPECT_NE(lastError().find(text), std::string::npos) << lastError();
    EXPECT_EQ(lastError().find("kernel '" + k.name() + "'"), 0u) << lastError();
  }
  attnrt_status validate(attnrt::Kernel k, Call &c) {
    const std::vector<attnrt_tensor> &t = c.tensors();
    return attnrt_validate(k.get(), t.data(), (int)t.size());
  }

  TempArtifact a;
  attnrt::Module m;
  attnrt::Kernel append, paged;
};

TEST_F(ResidualTest, GoodCallsPass) {
  Call c = appendCall({0, 5, -1, 7}, {0, 4, -1, 5}, 2, 2);
  EXPECT_EQ(validate(append, c), ATTNRT_OK) << lastError();
  EXPECT_EQ(attnrt_run(m.get(), append.get(), c.tensors().data(), 10, 1),
            ATTNRT_OK)
      << lastError();
  Call p = pagedCall({1, 0, 1}, 3, 2);
  EXPECT_EQ(validate(paged, p), ATTNRT_OK) << lastError();
  Call empty = pagedCall({}, 1, 1);
  EXPECT_EQ(validate(paged, empty), ATTNRT_OK) << lastError();
}

TEST_F(ResidualTest, RingSlotOutOfRange) {
  Call c = appendCall({0, 1}, {0, 6}, 2, 2);
  expectError(append, c,
              "argument 'ring_slots' (#3): entry 1 is 6 but the rings "
              "'cache_k_recent' are 2 of residual = 3 tokens; a ring slot is "
              "ring * residual + position % residual, in [0, 2 * 3), or -1 "
              "to skip the token");
  Call d = appendCall({0}, {-2}, 2, 2);
  expectError(append, d, "argument 'ring_slots' (#3): entry 0 is -2");
  Call none = appendCall({0}, {0}, 2, 0); // no rings at all
  expectError(append, none,
              "entry 0 is 0 but the rings 'cache_k_recent' "
              "are 0 of residual = 3 tokens");
  // One ring slot per new token (the symbol num_new).
  Call len = appendCall({0, 1}, {0}, 2, 2);
  expectError(append, len, "argument 'ring_slots' (#3): shape is [1]");
}

TEST_F(ResidualTest, KvRingOutOfRange) {
  Call c = pagedCall({0, 2}, 2, 2);
  expectError(paged, c,
              "argument 'kv_rings' (#10): entry 1 (sequence 1) is ring 2 but "
              "the rings 'cache_k_recent' are 2; ring indices must be in "
              "[0, 2)");
  Call d = pagedCall({-1}, 2, 2);
  expectError(paged, d,
              "argument 'kv_rings' (#10): entry 0 (sequence 0) is "
              "ring -1");
  // The rings of both components must agree (symbol num_rings).
  Call e = pagedCall({0}, 2, 2);
  e.sizes[6][0] = 3;
  expectError(paged, e,
              "argument 'cache_v_recent' (#6): shape is [3, 3, 2, "
              "2] [num_rings, 3, 2, 2]: dim 0 gives num_rings = 3");
}

TEST(Fp8, ConversionsRoundTrip) {
  // e4m3fn: max 448, no infinities, saturating; e5m2: max 57344.
  EXPECT_EQ(toE4m3(448.0f), 0x7e);
  EXPECT_EQ(toE4m3(1e9f), 0x7e);
  EXPECT_EQ(toE4m3(-INFINITY), 0xfe);
  EXPECT_EQ(toE4m3(1.0f), 0x38);
  EXPECT_EQ(toE4m3(0.0f), 0x00);
  EXPECT_EQ(toE4m3(std::ldexp(1.0f, -9)), 0x01); // smallest subnormal
  EXPECT_EQ(toE4m3(1.0625f), 0x38);              // tie to even (1.0)
  EXPECT_EQ(toE4m3(1.1875f), 0x3a);              // tie to even (1.25)
  EXPECT_TRUE(std::isnan(fromE4m3(0x7f)));
  EXPECT_EQ(attnrun::floatToFp8(57344.0f, 2, 15, true), 0x7b);
  EXPECT_EQ(attnrun::floatToFp8(1e9f, 2, 15, true), 0x7b);
  EXPECT_TRUE(std::isinf(attnrun::fp8ToFloat(0x7c, 2, 15, true)));
  for (int b = 0; b < 256; ++b) {
    float f = fromE4m3(static_cast<uint8_t>(b));
    if (!std::isnan(f))
      EXPECT_EQ(toE4m3(f), b == 0x80 ? 0x80 : b) << b;
    float g = attnrun::fp8ToFloat(static_cast<uint8_t>(b), 2, 15, true);
    if (std::isfinite(g))
      EXPECT_EQ(attnrun::floatToFp8(g, 2, 15, true), b) << b;
  }
}

} // namespace
