//===- EmbeddedTest.cpp - attnrt_open_embedded ----------------------------===//
//
// The fixture kernels linked into this test (testkernels.c) and found through
// fixture/embedded.c's testkernels_symbol, the hand-written equivalent of the
// attnc_<id>_symbol function an attnc --linkage=object header defines.
//
//===----------------------------------------------------------------------===//

#include "FixtureText.h"
#include "Reference.h"
#include "attnrt/attnrt.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <unistd.h>

extern "C" void *testkernels_symbol(const char *name);

namespace {

using attnrt_test::readFixtureManifest;
using attnrt_test::replaceAll;

std::string lastError() { return attnrt_last_error(); }

/// testkernels_symbol with one name hidden, as if the linked object lacked
/// it (a plain function pointer carries no state, hence the global).
const char *hidden = "";
void *lookupHiding(const char *name) {
  return std::strcmp(name, hidden) == 0 ? nullptr : testkernels_symbol(name);
}

attnrt_status openEmbedded(const std::string &manifest,
                           void *(*lookup)(const char *) = testkernels_symbol) {
  attnrt_module *m = nullptr;
  attnrt_status s = attnrt_open_embedded(manifest.c_str(), lookup, 1, &m);
  EXPECT_EQ(s == ATTNRT_OK, m != nullptr);
  attnrt_close(m);
  return s;
}

/// Runs dense_f32 of `m` (batch 2, 5 queries, 9 keys) on inputs from `seed`.
std::vector<float> runDense(attnrt::Module &m, unsigned seed,
                            std::vector<float> *lseOut = nullptr) {
  const int64_t b = 2, lq = 5, lk = 9;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-2, 2);
  std::vector<float> q(b * lq * 8), k(b * lk * 4), v(b * lk * 4),
      o(b * lq * 8, NAN), lse(b * 2 * lq, NAN);
  for (auto *vec : {&q, &k, &v})
    for (float &x : *vec)
      x = dist(rng);
  int64_t qs[] = {b, lq, 2, 4}, ks[] = {b, lk, 1, 4}, ls[] = {b, 2, lq};
  std::vector<attnrt_tensor> args = {
      {q.data(), ATTNRT_DTYPE_F32, 4, qs, nullptr},
      {k.data(), ATTNRT_DTYPE_F32, 4, ks, nullptr},
      {v.data(), ATTNRT_DTYPE_F32, 4, ks, nullptr},
      {o.data(), ATTNRT_DTYPE_F32, 4, qs, nullptr},
      {lse.data(), ATTNRT_DTYPE_F32, 3, ls, nullptr}};
  m.run(m.kernel("dense_f32"), args, 0);
  if (lseOut) {
    // Also check against the float64 reference here, where q/k/v live.
    attnrun::AttentionSpec spec;
    spec.numQHeads = 2;
    spec.headDim = 4;
    spec.scale = 0.5;
    spec.mask.causal = true;
    spec.mask.window = 2;
    spec.mask.sinks = 1;
    std::vector<double> dq(q.begin(), q.end()), dk(k.begin(), k.end()),
        dv(v.begin(), v.end()), ro(o.size()), rl(lse.size());
    attnrun::referenceAttention(spec, attnrun::denseSequences(b, lq, lk), false,
                                dq.data(), dk.data(), dv.data(), ro.data(),
                                rl.data());
    for (size_t i = 0; i < o.size(); ++i)
      EXPECT_NEAR(o[i], ro[i], 1e-5) << "o[" << i << "]";
    for (size_t i = 0; i < lse.size(); ++i)
      EXPECT_NEAR(lse[i], rl[i], 1e-5) << "lse[" << i << "]";
    *lseOut = lse;
  }
  return o;
}

TEST(Embedded, RunsLikeTheSharedLibrary) {
  std::string manifest = readFixtureManifest();
  attnrt::Module embedded =
      attnrt::Module::embedded(manifest.c_str(), testkernels_symbol, 3);
  attnrt::Module shared(ATTNRT_FIXTURE_DIR, 3);
  ASSERT_EQ(embedded.numKernels(), shared.numKernels());
  for (int i = 0; i < shared.numKernels(); ++i) {
    EXPECT_EQ(embedded.kernel(i).name(), shared.kernel(i).name());
    EXPECT_EQ(embedded.kernel(i).kind(), shared.kernel(i).kind());
    EXPECT_EQ(embedded.kernel(i).numArgs(), shared.kernel(i).numArgs());
  }
  // Same code, same inputs: bit-identical outputs, equal to the reference.
  std::vector<float> lse;
  std::vector<float> a = runDense(embedded, 11, &lse);
  std::vector<float> b = runDense(shared, 11);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  // The manifest may outlive nothing: attnrt keeps its own copy.
  manifest.assign(manifest.size(), ' ');
  EXPECT_EQ(embedded.kernel("dense_f32").attention().num_q_heads, 2);
}

TEST(Embedded, LibraryFieldIsNotUsed) {
  std::string good = readFixtureManifest();
  EXPECT_EQ(openEmbedded(replaceAll(good, "\"libtestkernels.so\"",
                                    "\"not-here/libnothing.so\"")),
            ATTNRT_OK)
      << lastError();
  EXPECT_EQ(
      openEmbedded(replaceAll(good, "\"library\": \"libtestkernels.so\",", "")),
      ATTNRT_OK)
      << lastError();
}

TEST(Embedded, MissingSymbolIsNamed) {
  std::string good = readFixtureManifest();
  hidden = "ragged_f32__work_items";
  EXPECT_EQ(openEmbedded(good, lookupHiding), ATTNRT_ERR_LIBRARY);
  EXPECT_NE(lastError().find("kernel 'ragged_f32': symbol "
                             "'ragged_f32__work_items' is missing from the "
                             "embedded module (the lookup function returned "
                             "NULL); pass the manifest and the symbol "
                             "function of the same attnc artifact"),
            std::string::npos)
      << lastError();
  hidden = "";
  // A manifest naming a kernel the lookup does not know.
  EXPECT_EQ(openEmbedded(replaceAll(good, "\"count__run\"", "\"nope__run\"")),
            ATTNRT_ERR_LIBRARY);
  EXPECT_NE(lastError().find("kernel 'count': symbol 'nope__run' is missing"),
            std::string::npos);
  attnrt::Module m = attnrt::Module::embedded(good.c_str(), testkernels_symbol);
  EXPECT_THROW(m.kernel("prefill"), attnrt::Error);
  EXPECT_NE(lastError().find("no kernel named 'prefill' in the embedded "
                             "module; available: dense_f32, ragged_f32"),
            std::string::npos)
      << lastError();
}

std::string tilesManifest() {
  return R"({"format_version": 2, "target": "host", "kernels": [
    {"name": "tiles", "kind": "merge", "phases": 1,
     "entry_run": "tiles__run", "entry_work_items": "tiles__work_items",
     "instrumented": ["tile_stats"],
     "args": [{"name": "x", "role": "output", "dir": "out", "dtype": "f32",
               "shape": ["n"]}]}]})";
}

TEST(Embedded, TileCountersOfTheLinkedKernel) {
  attnrt::Module m =
      attnrt::Module::embedded(tilesManifest().c_str(), testkernels_symbol, 2);
  attnrt::Kernel tiles = m.kernel("tiles");
  ASSERT_TRUE(tiles.hasTileStats());
  tiles.resetTileStats();
  std::vector<float> x(100);
  int64_t n = 100;
  m.run(tiles, {{x.data(), ATTNRT_DTYPE_F32, 1, &n, nullptr}});
  // Items i = 0..99: i % 3 + 1 tiles (199 in all), 50 even items.
  EXPECT_EQ(tiles.tileStats(), (std::array<int64_t, 3>{199, 50, 100}));
  EXPECT_EQ(x[99], 99.0f);
  // The counters are the program's (testkernels.c's global).
  EXPECT_EQ(static_cast<int64_t *>(testkernels_symbol("tiles__tile_stats"))[0],
            199);
  // An instrumented manifest requires the counters.
  hidden = "tiles__tile_stats";
  EXPECT_EQ(openEmbedded(tilesManifest(), lookupHiding), ATTNRT_ERR_LIBRARY);
  EXPECT_NE(lastError().find("kernel 'tiles' (instrumented: tile_stats): "
                             "symbol 'tiles__tile_stats' is missing"),
            std::string::npos)
      << lastError();
  hidden = "";
}

TEST(Embedded, ArgumentAndManifestErrors) {
  std::string good = readFixtureManifest();
  attnrt_module *m = reinterpret_cast<attnrt_module *>(&good);
  EXPECT_EQ(attnrt_open_embedded(nullptr, testkernels_symbol, 0, &m),
            ATTNRT_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(m, nullptr);
  EXPECT_NE(lastError().find("attnrt_open_embedded: manifest_json is NULL; "
                             "pass attnc_<id>_manifest"),
            std::string::npos)
      << lastError();
  EXPECT_EQ(attnrt_open_embedded(good.c_str(), nullptr, 0, &m),
            ATTNRT_ERR_INVALID_ARGUMENT);
  EXPECT_NE(lastError().find("lookup is NULL; pass attnc_<id>_symbol"),
            std::string::npos);
  EXPECT_EQ(attnrt_open_embedded(good.c_str(), testkernels_symbol, 0, nullptr),
            ATTNRT_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(attnrt_open_embedded(good.c_str(), testkernels_symbol, -2, &m),
            ATTNRT_ERR_INVALID_ARGUMENT);
  EXPECT_NE(lastError().find("num_threads is -2"), std::string::npos);

  EXPECT_EQ(openEmbedded("{\"format_version\": 2,"), ATTNRT_ERR_MANIFEST);
  EXPECT_EQ(lastError().find("the embedded manifest is not valid JSON"), 0u)
      << lastError();
  EXPECT_EQ(openEmbedded(""), ATTNRT_ERR_MANIFEST);
  EXPECT_EQ(openEmbedded(replaceAll(good, "\"target\": \"host\"",
                                    "\"target\": \"sm_90\"")),
            ATTNRT_ERR_UNSUPPORTED);
  EXPECT_NE(lastError().find("the embedded manifest has target 'sm_90'"),
            std::string::npos)
      << lastError();
  EXPECT_EQ(
      openEmbedded(replaceAll(good, "\"head_dim\": 4", "\"head_dim\": \"4\"")),
      ATTNRT_ERR_MANIFEST);
  EXPECT_NE(lastError().find("kernel 'dense_f32' attention: field 'head_dim' "
                             "must be an integer"),
            std::string::npos)
      << lastError();
  try {
    attnrt::Module::embedded("[]", testkernels_symbol);
    ADD_FAILURE() << "a JSON array is no manifest";
  } catch (const attnrt::Error &e) {
    EXPECT_EQ(e.status(), ATTNRT_ERR_MANIFEST);
  }
}

TEST(Embedded, OpenRefusesAnObjectArtifact) {
  // attnc --linkage=object's directory: attnrt_open cannot dlopen a .o.
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() /
                 ("attnrt-embedded-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "manifest.json")
      << replaceAll(readFixtureManifest(), "libtestkernels.so", "kernels.o");
  fs::copy_file(fs::path(ATTNRT_FIXTURE_DIR) / "libtestkernels.so",
                dir / "kernels.o", fs::copy_options::overwrite_existing);
  attnrt_module *m = nullptr;
  EXPECT_EQ(attnrt_open(dir.c_str(), 1, &m), ATTNRT_ERR_LIBRARY);
  EXPECT_EQ(m, nullptr);
  EXPECT_NE(lastError().find("kernels.o is an object file (attnc "
                             "--linkage=object): link it into the program "
                             "and open it with attnrt_open_embedded"),
            std::string::npos)
      << lastError();
  fs::remove_all(dir);
}

} // namespace
