//===- SparsityTest.cpp - attnrt: block-sparse masks, trims, tile stats ---===//
//
// docs/sparsity.md on the runtime side: the manifest fields (block_sparse,
// select_pages, head_masks, instrumented) and roles, validation of the BSR
// operands, -1 page-table entries of trimmed pages (attnrt_cache_seq_trim),
// and the tile counters of instrumented kernels. The kernels are stubs of
// the fixture library (validated, never run), except `tiles`.
//
//===----------------------------------------------------------------------===//

#include "attnrt/attnrt.hpp"
#include "attnrt/attnrt_cache.h"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

std::string lastError() { return attnrt_last_error(); }

/// A temporary artifact directory: `manifest` plus a copy of the fixture
/// library (its own copy, so its tile counters are this artifact's).
struct TempArtifact {
  explicit TempArtifact(const std::string &manifest) {
    static int counter = 0;
    dir = fs::temp_directory_path() /
          ("attnrt-sparsity-" + std::to_string(::getpid()) + "-" +
           std::to_string(counter++));
    fs::create_directories(dir);
    std::ofstream(dir / "manifest.json") << manifest;
    fs::copy_file(fs::path(ATTNRT_FIXTURE_DIR) / "libtestkernels.so",
                  dir / "libtestkernels.so");
  }
  ~TempArtifact() { fs::remove_all(dir); }
  fs::path dir;
};

//===----------------------------------------------------------------------===//
// Manifest builders: Hq 4, Hkv 2, D 2, f32; paged caches f16, page_size 4.
//===----------------------------------------------------------------------===//

std::string mask(int64_t window, int64_t sinks, bool topLeft = false) {
  return R"({"causal": true, "align": ")" +
         std::string(topLeft ? "top_left" : "bottom_right") +
         R"(", "window": )" + std::to_string(window) + R"(, "sinks": )" +
         std::to_string(sinks) + "}";
}

std::string headMask(int64_t window, int64_t sinks, bool topLeft = false) {
  return R"({"causal": true, "window": )" + std::to_string(window) +
         R"(, "sinks": )" + std::to_string(sinks) + R"(, "top_left": )" +
         (topLeft ? "true" : "false") + "}";
}

std::string arg(const std::string &name, const std::string &role,
                const std::string &dtype, const std::string &shape,
                const std::string &dir = "in") {
  return R"({"name": ")" + name + R"(", "role": ")" + role + R"(", "dir": ")" +
         dir + R"(", "dtype": ")" + dtype + R"(", "shape": )" + shape + "}";
}

std::string join(const std::vector<std::string> &parts) {
  std::string s;
  for (const std::string &p : parts)
    s += (s.empty() ? "" : ",\n") + p;
  return s;
}

/// A kernel running the fixture's stub entry points. `fields` are extra
/// kernel-level fields ("\"attention\": {...}, ...").
std::string kernel(const std::string &name, const std::string &kind,
                   const std::string &fields,
                   const std::vector<std::string> &args,
                   const std::string &entry = "stub") {
  return R"({"name": ")" + name + R"(", "kind": ")" + kind +
         R"(", "phases": 1, "entry_run": ")" + entry +
         R"(__run", "entry_work_items": ")" + entry + R"(__work_items", )" +
         fields + (fields.empty() ? "" : ", ") + R"("args": [)" + join(args) +
         "]}";
}

std::string attention(const std::string &layout, const std::string &maskJson,
                      const std::string &headMasks = "") {
  return R"("attention": {"layout": ")" + layout +
         R"(", "num_q_heads": 4, "num_kv_heads": 2, "head_dim": 2, )"
         R"("dtype": "f32", "scale": 0.5, "softcap": 0.0, "mask": )" +
         maskJson +
         (headMasks.empty() ? "" : ", \"head_masks\": " + headMasks) +
         R"(, "has_lse": false})";
}

std::string blockSparse(int64_t bq, int64_t bk, int64_t heads) {
  return R"("block_sparse": {"block_q": )" + std::to_string(bq) +
         R"(, "block_kv": )" + std::to_string(bk) + R"(, "heads": )" +
         std::to_string(heads) + "}";
}

const char *kvCache =
    R"("kv_cache": {"name": "cache", "page_size": 4, "num_kv_heads": 2, )"
    R"("head_dim": 2, "layout": "nhd", "storage": "f16", "k_group": 0, )"
    R"("bytes_per_token": 16})";

std::vector<std::string> bsrArgs(const std::string &heads, bool full) {
  std::vector<std::string> a = {
      arg("block_offsets", "block_offsets", "i32",
          "[\"batch\", " + heads + ", \"nqb+1\"]"),
      arg("block_indices", "block_indices", "i32",
          "[\"batch\", " + heads + ", \"max_blocks\"]")};
  if (full)
    a.push_back(arg("block_full", "block_full", "i8",
                    "[\"batch\", " + heads + ", \"max_blocks\"]"));
  return a;
}

/// A paged_attention kernel of the f16 cache: decode, or with qo_indptr
/// (`append`); optional block-sparse operands (`bsr` = the block_sparse
/// field, one pattern for both heads).
std::string paged(const std::string &name, const std::string &maskJson,
                  bool append = false, const std::string &bsr = "",
                  bool full = false, const std::string &headMasks = "") {
  std::string rows = append ? "\"total_q\"" : "\"batch\"";
  std::vector<std::string> args = {
      arg("q", "query", "f32", "[" + rows + ", 4, 2]"),
      arg("cache_k_pages", "k_pages", "f16", R"(["num_pages", 4, 2, 2])"),
      arg("cache_v_pages", "v_pages", "f16", R"(["num_pages", 4, 2, 2])"),
      arg("kv_indptr", "kv_indptr", "i32", R"(["batch+1"])"),
      arg("kv_indices", "kv_indices", "i32", R"(["num_page_refs"])"),
      arg("kv_last_page_len", "kv_last_page_len", "i32", R"(["batch"])")};
  if (append)
    args.push_back(arg("qo_indptr", "qo_indptr", "i32", R"(["batch+1"])"));
  if (!bsr.empty())
    for (const std::string &a : bsrArgs("1", full))
      args.push_back(a);
  args.push_back(arg("o", "output", "f32", "[" + rows + ", 4, 2]", "out"));
  return kernel(name, "paged_attention",
                attention("paged", maskJson, headMasks) + ", " + kvCache +
                    (bsr.empty() ? "" : ", " + bsr),
                args);
}

std::vector<std::string>
selectArgs(const std::string &indicesShape = R"(["batch", 2, 4])") {
  return {
      arg("q", "query", "f32", R"(["batch", 4, 2])"),
      arg("cache_k_pages", "k_pages", "f16", R"(["num_pages", 4, 2, 2])"),
      arg("cache_v_pages", "v_pages", "f16", R"(["num_pages", 4, 2, 2])"),
      arg("cache_k_page_max", "k_page_max", "f16", R"(["num_pages", 2, 2])"),
      arg("cache_k_page_min", "k_page_min", "f16", R"(["num_pages", 2, 2])"),
      arg("kv_indptr", "kv_indptr", "i32", R"(["batch+1"])"),
      arg("kv_indices", "kv_indices", "i32", R"(["num_page_refs"])"),
      arg("kv_last_page_len", "kv_last_page_len", "i32", R"(["batch"])"),
      arg("block_offsets", "block_offsets", "i32", R"(["batch", 2, 2])", "out"),
      arg("block_indices", "block_indices", "i32", indicesShape, "out")};
}

const char *selectFields =
    R"("select_pages": {"top_k": 4, "sink_pages": 1, "recent_pages": 1})";

std::string selectKernel(const std::string &name,
                         const std::vector<std::string> &args = selectArgs(),
                         const std::string &fields = selectFields) {
  return kernel(name, "select_pages",
                std::string(kvCache) + (fields.empty() ? "" : ", " + fields),
                args);
}

std::string manifest(const std::vector<std::string> &kernels) {
  return R"({"format_version": 2, "target": "host", )"
         R"("library": "libtestkernels.so", "kernels": [)" +
         join(kernels) + "]}";
}

std::string denseBsr() {
  std::vector<std::string> args = {
      arg("q", "query", "f32", R"(["batch", "seqlen_q", 4, 2])"),
      arg("k", "key", "f32", R"(["batch", "seqlen_k", 2, 2])"),
      arg("v", "value", "f32", R"(["batch", "seqlen_k", 2, 2])")};
  for (const std::string &a : bsrArgs("2", true))
    args.push_back(a);
  args.push_back(
      arg("o", "output", "f32", R"(["batch", "seqlen_q", 4, 2])", "out"));
  return kernel("bsr_dense", "attention",
                attention("dense", mask(-1, 0)) + ", " + blockSparse(2, 4, 2),
                args);
}

std::string raggedBsr() {
  std::vector<std::string> args = {
      arg("q", "query", "f32", R"(["total_q", 4, 2])"),
      arg("k", "key", "f32", R"(["total_k", 2, 2])"),
      arg("v", "value", "f32", R"(["total_k", 2, 2])"),
      arg("cu_seqlens_q", "cu_seqlens_q", "i32", R"(["batch+1"])"),
      arg("cu_seqlens_k", "cu_seqlens_k", "i32", R"(["batch+1"])")};
  for (const std::string &a : bsrArgs("1", false))
    args.push_back(a);
  args.push_back(arg("o", "output", "f32", R"(["total_q", 4, 2])", "out"));
  return kernel("bsr_ragged", "attention",
                attention("ragged", mask(-1, 0)) + ", " + blockSparse(2, 3, 1),
                args);
}

/// Every kernel of the validation tests.
std::string sparsityManifest() {
  return manifest({
      denseBsr(),
      raggedBsr(),
      paged("decode_win", mask(6, 4)),
      paged("decode_win5", mask(5, 4)),
      paged("decode_win8", mask(8, 4)),
      paged("decode_sinks5", mask(6, 5)),
      paged("decode_causal", mask(-1, 0)),
      paged("decode_topleft", mask(6, 4, true)),
      paged("decode_heads", mask(-1, 0), false, "", false,
            "[" + headMask(6, 4) + ", " + headMask(3, 0) + "]"),
      paged("decode_heads_full", mask(-1, 0), false, "", false,
            "[" + headMask(6, 4) + ", " + headMask(-1, 0) + "]"),
      paged("append_win", mask(6, 4), true),
      paged("append_bsr", mask(-1, 0), true, blockSparse(2, 4, 1)),
      paged("decode_bsr_win", mask(6, 4), false, blockSparse(1, 4, 1), true),
      selectKernel("select"),
      selectKernel("select_k", selectArgs(R"(["batch", 2, "k"])")),
  });
}

/// One call's tensors, sized from the kernel's manifest shapes and the
/// given symbol values, zero-filled.
struct Call {
  Call(attnrt::Kernel k, const std::map<std::string, int64_t> &symbols) : k(k) {
    for (int i = 0; i < k.numArgs(); ++i) {
      const attnrt_arg_info &a = k.arg(i);
      std::vector<int64_t> dims;
      int64_t n = 1;
      for (int d = 0; d < a.rank; ++d) {
        const attnrt_dim &dim = a.shape[d];
        dims.push_back(dim.symbol ? symbols.at(dim.symbol_name) + dim.value
                                  : dim.value);
        n *= dims.back();
      }
      buffers.emplace_back(
          static_cast<size_t>(n * attnrt_dtype_size(a.dtype) + 8), 0);
      sizes.push_back(dims);
      names.push_back(a.name);
      dtypes.push_back(a.dtype);
    }
  }
  size_t index(const std::string &name) const {
    for (size_t i = 0; i < names.size(); ++i)
      if (names[i] == name)
        return i;
    ADD_FAILURE() << "no argument " << name;
    return 0;
  }
  /// Sets an i32 or i8 argument to `values` (all of its elements).
  void set(const std::string &name, const std::vector<int32_t> &values) {
    size_t i = index(name);
    int64_t n = 1;
    for (int64_t d : sizes[i])
      n *= d;
    ASSERT_EQ(static_cast<int64_t>(values.size()), n) << name;
    for (size_t e = 0; e < values.size(); ++e) {
      if (dtypes[i] == ATTNRT_DTYPE_I32)
        reinterpret_cast<int32_t *>(buffers[i].data())[e] = values[e];
      else
        reinterpret_cast<int8_t *>(buffers[i].data())[e] =
            static_cast<int8_t>(values[e]);
    }
  }
  int32_t *ints(const std::string &name) {
    return reinterpret_cast<int32_t *>(buffers[index(name)].data());
  }
  const std::vector<attnrt_tensor> &tensors() {
    args.clear();
    for (size_t i = 0; i < buffers.size(); ++i)
      args.push_back({buffers[i].data(), dtypes[i], (int)sizes[i].size(),
                      sizes[i].data(), nullptr});
    return args;
  }
  attnrt_status validate() {
    const std::vector<attnrt_tensor> &t = tensors();
    return attnrt_validate(k.get(), t.data(), static_cast<int>(t.size()));
  }

  attnrt::Kernel k;
  std::vector<std::vector<char>> buffers;
  std::vector<std::vector<int64_t>> sizes;
  std::vector<std::string> names;
  std::vector<attnrt_dtype> dtypes;
  std::vector<attnrt_tensor> args;
};

#define EXPECT_VALID(call)                                                     \
  EXPECT_EQ((call).validate(), ATTNRT_OK) << lastError()

/// Validation fails with a message starting with the kernel and argument
/// and containing `text`.
void expectError(Call &c, const std::string &argName, const std::string &text) {
  EXPECT_EQ(c.validate(), ATTNRT_ERR_VALIDATION) << text;
  std::string prefix =
      "kernel '" + c.k.name() + "' argument '" + argName + "' (#";
  EXPECT_EQ(lastError().find(prefix), 0u) << lastError();
  EXPECT_NE(lastError().find(text), std::string::npos) << lastError();
}

class Sparsity : public ::testing::Test {
protected:
  Sparsity() : a(sparsityManifest()), m(a.dir.string(), 1) {}
  attnrt::Kernel k(const std::string &name) { return m.kernel(name); }
  TempArtifact a;
  attnrt::Module m;
};

//===----------------------------------------------------------------------===//
// Manifest
//===----------------------------------------------------------------------===//

TEST(SparsityManifest, RoleNames) {
  const char *names[] = {"block_offsets", "block_indices", "block_full",
                         "k_page_max", "k_page_min"};
  for (int r = ATTNRT_ROLE_BLOCK_OFFSETS; r <= ATTNRT_ROLE_K_PAGE_MIN; ++r)
    EXPECT_STREQ(attnrt_role_name(static_cast<attnrt_role>(r)),
                 names[r - ATTNRT_ROLE_BLOCK_OFFSETS]);
  EXPECT_EQ(ATTNRT_ROLE_BLOCK_OFFSETS, 26);
  EXPECT_EQ(ATTNRT_ROLE_K_PAGE_MIN, 30);
}

TEST_F(Sparsity, FieldsAndAccessors) {
  attnrt::Kernel dense = k("bsr_dense");
  const attnrt_block_sparse_info *bs = attnrt_kernel_block_sparse(dense.get());
  ASSERT_NE(bs, nullptr);
  EXPECT_EQ(bs->block_q, 2);
  EXPECT_EQ(bs->block_kv, 4);
  EXPECT_EQ(bs->heads, 2);
  EXPECT_EQ(dense.blockSparse(), bs);
  EXPECT_EQ(dense.arg(3).role, ATTNRT_ROLE_BLOCK_OFFSETS);
  EXPECT_EQ(dense.arg(4).role, ATTNRT_ROLE_BLOCK_INDICES);
  EXPECT_EQ(dense.arg(5).role, ATTNRT_ROLE_BLOCK_FULL);
  EXPECT_EQ(dense.arg(5).dtype, ATTNRT_DTYPE_I8);
  EXPECT_EQ(dense.attention().num_head_masks, 0);
  EXPECT_EQ(dense.attention().head_masks, nullptr);
  EXPECT_EQ(attnrt_kernel_select_pages(dense.get()), nullptr);
  EXPECT_EQ(attnrt_kernel_block_sparse(k("decode_win").get()), nullptr);

  attnrt::Kernel heads = k("decode_heads");
  ASSERT_EQ(heads.attention().num_head_masks, 2);
  const attnrt_mask_info &h1 = heads.attention().head_masks[1];
  EXPECT_EQ(h1.causal, 1);
  EXPECT_EQ(h1.bottom_right, 1);
  EXPECT_EQ(h1.window, 3);
  EXPECT_EQ(h1.sinks, 0);
  EXPECT_EQ(heads.attention().head_masks[0].sinks, 4);

  attnrt::Kernel select = k("select");
  EXPECT_EQ(select.kind(), "select_pages");
  EXPECT_EQ(select.attentionOrNull(), nullptr);
  ASSERT_NE(select.kvCache(), nullptr);
  const attnrt_select_pages_info *sp = attnrt_kernel_select_pages(select.get());
  ASSERT_NE(sp, nullptr);
  EXPECT_EQ(sp->top_k, 4);
  EXPECT_EQ(sp->sink_pages, 1);
  EXPECT_EQ(sp->recent_pages, 1);
  EXPECT_EQ(select.selectPages(), sp);
  EXPECT_EQ(select.blockSparse(), nullptr);
  EXPECT_EQ(select.arg(3).role, ATTNRT_ROLE_K_PAGE_MAX);
  EXPECT_EQ(select.arg(4).role, ATTNRT_ROLE_K_PAGE_MIN);
  EXPECT_EQ(select.arg(8).dir, ATTNRT_DIR_OUT);
  EXPECT_EQ(attnrt_kernel_block_sparse(select.get()), nullptr);
  EXPECT_EQ(attnrt_kernel_block_sparse(nullptr), nullptr);
  EXPECT_EQ(attnrt_kernel_select_pages(nullptr), nullptr);
  EXPECT_EQ(attnrt_kernel_has_tile_stats(select.get()), 0);
}

void expectManifestError(const std::string &kernelJson,
                         const std::string &text) {
  TempArtifact a(manifest({kernelJson}));
  attnrt_module *m = nullptr;
  EXPECT_EQ(attnrt_open(a.dir.c_str(), 1, &m), ATTNRT_ERR_MANIFEST) << text;
  attnrt_close(m);
  EXPECT_NE(lastError().find(text), std::string::npos) << lastError();
}

TEST(SparsityManifest, BlockSparseErrors) {
  // The field and the operands come together.
  expectManifestError(
      kernel(
          "d", "paged_attention",
          attention("paged", mask(-1, 0)) + ", " + kvCache + ", " +
              blockSparse(1, 4, 1),
          {arg("q", "query", "f32", R"(["batch", 4, 2])"),
           arg("cache_k_pages", "k_pages", "f16", R"(["num_pages", 4, 2, 2])"),
           arg("kv_indptr", "kv_indptr", "i32", R"(["batch+1"])"),
           arg("kv_indices", "kv_indices", "i32", R"(["n"])"),
           arg("kv_last_page_len", "kv_last_page_len", "i32", R"(["batch"])")}),
      "kernel 'd' has field 'block_sparse' but no block_offsets / "
      "block_indices arguments");
  std::string noField = paged("d", mask(-1, 0), false, blockSparse(1, 4, 1));
  size_t at = noField.find(", \"block_sparse\"");
  noField.erase(at, noField.find('}', at) + 1 - at);
  expectManifestError(noField, "kernel 'd' has block-sparse arguments but no "
                               "field 'block_sparse'");
  expectManifestError(paged("d", mask(-1, 0), false, blockSparse(1, 4, 3)),
                      "kernel 'd' block_sparse: field 'heads' is 3, expected "
                      "num_kv_heads (2) or 1");
  expectManifestError(paged("d", mask(-1, 0), false, blockSparse(1, 0, 1)),
                      "block_q=1 block_kv=0; block sizes must be >= 1");
  std::string i8 = paged("d", mask(-1, 0), false, blockSparse(1, 4, 1));
  i8.replace(i8.find("\"i32\", \"shape\": [\"batch\", 1, \"nqb+1\"]"), 5,
             "\"i8\"");
  expectManifestError(i8, "has argument 'block_offsets' of role "
                          "block_offsets; it must be i32 of rank 3");
  std::string alone = paged("d", mask(-1, 0), false, blockSparse(1, 4, 1));
  alone.replace(alone.find("\"role\": \"block_indices\""), 23,
                "\"role\": \"lse\"");
  expectManifestError(alone, "has no argument of role block_indices; "
                             "block_offsets and block_indices come together");
  std::string out = paged("d", mask(-1, 0), false, blockSparse(1, 4, 1));
  size_t idx = out.find("\"role\": \"block_indices\", \"dir\": \"in\"");
  out.replace(idx, 36, "\"role\": \"block_indices\", \"dir\": \"out\"");
  expectManifestError(out, "has argument 'block_indices' of role "
                           "block_indices; it must be an input (dir in)");
  expectManifestError(
      kernel("m", "merge", blockSparse(1, 4, 1),
             {arg("x", "output", "f32", R"(["n"])", "out")}),
      "kernel 'm': field 'block_sparse' is present but a merge kernel takes "
      "no block-sparse mask");
}

TEST(SparsityManifest, SelectPagesErrors) {
  // Without select_pages / with a bad one / on another kind.
  expectManifestError(selectKernel("s", selectArgs(), ""),
                      "kernel 's' is missing field 'select_pages'");
  expectManifestError(
      selectKernel("s", selectArgs(),
                   R"("select_pages": {"top_k": 1, "sink_pages": 1, )"
                   R"("recent_pages": 1})"),
      "kernel 's' select_pages has top_k=1 sink_pages=1 recent_pages=1; "
      "top_k must be >= 1 and >= sink_pages + recent_pages");
  expectManifestError(
      kernel("m", "merge", selectFields,
             {arg("x", "output", "f32", R"(["n"])", "out")}),
      "kernel 'm': field 'select_pages' is present but the kernel's kind is "
      "merge");
  // Outputs, not inputs; no full flags; both summaries.
  std::vector<std::string> in = selectArgs();
  in[8] = arg("block_offsets", "block_offsets", "i32", R"(["batch", 2, 2])");
  expectManifestError(selectKernel("s", in),
                      "has argument 'block_offsets' of role block_offsets; it "
                      "must be an output (dir out) of select_pages");
  std::vector<std::string> full = selectArgs();
  full.push_back(
      arg("block_full", "block_full", "i8", R"(["batch", 2, 4])", "out"));
  expectManifestError(selectKernel("s", full),
                      "has argument 'block_full' of role block_full; "
                      "select_pages writes no full flags");
  std::vector<std::string> noMin = selectArgs();
  noMin.erase(noMin.begin() + 4);
  expectManifestError(selectKernel("s", noMin),
                      "has no argument of role k_page_min; a cache with "
                      "summary = minmax has both");
  std::vector<std::string> noSummary = selectArgs();
  noSummary.erase(noSummary.begin() + 3, noSummary.begin() + 5);
  expectManifestError(selectKernel("s", noSummary),
                      "has no argument of role k_page_max, which "
                      "select_pages needs");
  std::vector<std::string> f32 = selectArgs();
  f32[3] =
      arg("cache_k_page_max", "k_page_max", "f32", R"(["num_pages", 2, 2])");
  expectManifestError(selectKernel("s", f32),
                      "has argument 'cache_k_page_max' of role k_page_max; "
                      "it must be f16 of rank 3");
  // select_pages has no attention object.
  expectManifestError(
      kernel("s", "select_pages",
             attention("paged", mask(-1, 0)) + ", " + kvCache + ", " +
                 selectFields,
             selectArgs()),
      "kernel 's': field 'attention' is present but a select_pages kernel "
      "has no attention parameters");
}

TEST(SparsityManifest, HeadMasksAndInstrumentedErrors) {
  expectManifestError(
      paged("d", mask(-1, 0), false, "", false, "[" + headMask(6, 4) + "]"),
      "kernel 'd' attention: field 'head_masks' has 1 entries "
      "but num_kv_heads is 2");
  expectManifestError(
      paged("d", mask(-1, 0), false, "", false,
            "[" + headMask(6, 4) + ", " + headMask(6, 4, true) + "]"),
      "field 'head_masks' mixes top_left and bottom_right "
      "alignments (entry 1)");
  expectManifestError(
      paged("d", mask(-1, 0), false, "", false,
            "[" + headMask(6, 4) + ", " + headMask(-2, 0) + "]"),
      "kernel 'd' head_masks[1] has window=-2 sinks=0; "
      "window must be >= -1");
  expectManifestError(
      kernel("m", "merge", R"("instrumented": [1])",
             {arg("x", "output", "f32", R"(["n"])", "out")}),
      "kernel 'm': field 'instrumented' has entry 1, expected a string");
  // Instrumented without the counters in the library: open fails.
  TempArtifact a(
      manifest({kernel("nostats", "merge", R"("instrumented": ["tile_stats"])",
                       {arg("x", "output", "f32", R"(["n"])", "out")})}));
  attnrt_module *m = nullptr;
  EXPECT_EQ(attnrt_open(a.dir.c_str(), 1, &m), ATTNRT_ERR_LIBRARY);
  EXPECT_NE(lastError().find("kernel 'nostats' (instrumented: tile_stats): "
                             "symbol 'nostats__tile_stats' is missing"),
            std::string::npos)
      << lastError();
}

TEST(SparsityManifest, HeadMasksAtKernelLevelAndAlign) {
  // head_masks may also sit at the kernel level, and give `align`.
  std::string k = paged("d", mask(-1, 0));
  std::string hm = R"("head_masks": [{"causal": true, "align": "top_left", )"
                   R"("window": 2, "sinks": 1}, {"causal": false, "align": )"
                   R"("top_left", "window": -1, "sinks": 0}], )";
  k.insert(k.find("\"args\""), hm);
  TempArtifact a(manifest({k}));
  attnrt::Module m(a.dir.string(), 1);
  const attnrt_attention_info &ai = m.kernel("d").attention();
  ASSERT_EQ(ai.num_head_masks, 2);
  EXPECT_EQ(ai.head_masks[0].bottom_right, 0);
  EXPECT_EQ(ai.head_masks[0].window, 2);
  EXPECT_EQ(ai.head_masks[1].causal, 0);
}

//===----------------------------------------------------------------------===//
// Block-sparse validation
//===----------------------------------------------------------------------===//

/// bsr_dense (BQ 2, BK 4, H 2): batch 2, 3 queries (2 query blocks), 9 keys
/// (3 KV blocks), nqb 2, max_blocks 3. Batch 0 rows list {0} and {1, 0}
/// (both heads); batch 1 head 0 {2} and nothing, head 1 nothing and {2, 1}.
Call goodDense(attnrt::Kernel k) {
  Call c(k, {{"batch", 2},
             {"seqlen_q", 3},
             {"seqlen_k", 9},
             {"nqb", 2},
             {"max_blocks", 3}});
  c.set("block_offsets", {0, 1, 3, 0, 1, 3, 0, 1, 1, 0, 0, 2});
  c.set("block_indices", {0, 1, 0, 0, 1, 0, 2, 7, 7, 2, 1, 7});
  c.set("block_full", {1, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0});
  return c;
}

TEST_F(Sparsity, DenseGoodPatternsPass) {
  Call c = goodDense(k("bsr_dense"));
  EXPECT_VALID(c);
  // Entries past offsets[last] are never read (7 above); a row may be
  // empty; a block may repeat across rows; more rows than needed are fine.
  Call wide(k("bsr_dense"), {{"batch", 1},
                             {"seqlen_q", 1},
                             {"seqlen_k", 1},
                             {"nqb", 3},
                             {"max_blocks", 2}});
  wide.set("block_offsets", {0, 0, 1, 2, 0, 1, 1, 1});
  wide.set("block_indices", {0, 0, 0, -5});
  EXPECT_VALID(wide);
  std::vector<attnrt_tensor> t = c.tensors();
  EXPECT_EQ(attnrt_run(m.get(), c.k.get(), t.data(), (int)t.size(), 1),
            ATTNRT_OK)
      << lastError();
}

TEST_F(Sparsity, DenseOffsetErrors) {
  Call a = goodDense(k("bsr_dense"));
  a.ints("block_offsets")[6] = -1; // batch 1 head 0
  expectError(a, "block_offsets",
              "batch 1 head 0: offsets[0] = -1 is negative");
  Call b = goodDense(k("bsr_dense"));
  b.ints("block_offsets")[4] = 4; // batch 0 head 1: 0, 4, 3
  expectError(b, "block_offsets",
              "batch 0 head 1: offsets decrease at row 2 (4 -> 3)");
  Call c = goodDense(k("bsr_dense"));
  c.ints("block_offsets")[11] = 4; // batch 1 head 1 ends past max_blocks
  expectError(c, "block_offsets",
              "batch 1 head 1: offsets[2] = 4 exceeds max_blocks = 3 (dim 2 "
              "of 'block_indices')");
}

TEST_F(Sparsity, DenseIndexErrors) {
  Call a = goodDense(k("bsr_dense"));
  a.ints("block_indices")[10] = 3; // batch 1 head 1, row 1, entry 1
  expectError(a, "block_indices",
              "batch 1 head 1: row 1 entry 1 is KV block 3 but sequence 1 "
              "has 9 keys = 3 blocks of block_kv = 4; listed blocks must be "
              "in [0, 3)");
  Call b = goodDense(k("bsr_dense"));
  b.ints("block_indices")[0] = -1;
  expectError(b, "block_indices",
              "batch 0 head 0: row 0 entry 0 is KV "
              "block -1 but sequence 0 has 9 keys");
  Call c = goodDense(k("bsr_dense"));
  c.ints("block_indices")[5] = 1; // batch 0 head 1 row 1 lists {1, 1}
  expectError(c, "block_indices",
              "batch 0 head 1: row 1 entry 2 is KV block 1, listed twice in "
              "row 1; a block may appear once per row");
}

TEST_F(Sparsity, DenseTooFewQueryBlocks) {
  Call c(k("bsr_dense"), {{"batch", 1},
                          {"seqlen_q", 5},
                          {"seqlen_k", 4},
                          {"nqb", 2},
                          {"max_blocks", 1}});
  expectError(c, "block_offsets",
              "has num_q_blocks = 2 (dim 2 - 1) but batch 0 has 5 queries = 3 "
              "query blocks of block_q = 2; num_q_blocks must be at least "
              "ceil(Lq / block_q) of every sequence");
  Call empty(k("bsr_dense"), {{"batch", 1},
                              {"seqlen_q", 0},
                              {"seqlen_k", 0},
                              {"nqb", 0},
                              {"max_blocks", 0}});
  EXPECT_VALID(empty);
}

/// bsr_ragged (BQ 2, BK 3, H 1): queries 1, 0, 3 and keys 5, 0, 7 (2, 0
/// and 3 KV blocks); nqb 2, max_blocks 3.
Call goodRagged(attnrt::Kernel k) {
  Call c(k, {{"batch", 3},
             {"total_q", 4},
             {"total_k", 12},
             {"nqb", 2},
             {"max_blocks", 3}});
  c.set("cu_seqlens_q", {0, 1, 1, 4});
  c.set("cu_seqlens_k", {0, 5, 5, 12});
  c.set("block_offsets", {0, 2, 2, 0, 0, 0, 0, 2, 3});
  c.set("block_indices", {1, 0, 0, 0, 0, 0, 2, 0, 2});
  return c;
}

TEST_F(Sparsity, RaggedLengthsPerSequence) {
  Call c = goodRagged(k("bsr_ragged"));
  EXPECT_VALID(c);
  Call a = goodRagged(k("bsr_ragged"));
  a.ints("block_indices")[0] = 2; // sequence 0 has only 2 KV blocks
  expectError(a, "block_indices",
              "batch 0 head 0: row 0 entry 0 is KV block 2 but sequence 0 "
              "has 5 keys = 2 blocks of block_kv = 3");
  Call b = goodRagged(k("bsr_ragged"));
  b.ints("block_offsets")[5] = 1; // sequence 1 (no keys) lists a block
  expectError(b, "block_indices",
              "batch 1 head 0: row 1 entry 0 is KV block 0 but sequence 1 "
              "has 0 keys = 0 blocks of block_kv = 3; listed blocks must be "
              "in [0, 0)");
  Call nqb(k("bsr_ragged"), {{"batch", 3},
                             {"total_q", 4},
                             {"total_k", 12},
                             {"nqb", 1},
                             {"max_blocks", 3}});
  nqb.set("cu_seqlens_q", {0, 1, 1, 4});
  nqb.set("cu_seqlens_k", {0, 5, 5, 12});
  expectError(nqb, "block_offsets",
              "has num_q_blocks = 1 (dim 2 - 1) but batch 2 has 3 queries = "
              "2 query blocks of block_q = 2");
}

/// append_bsr (BQ 2, BK 4, H 1, page_size 4): sequence 0 pages {0, 1} with
/// 3 in the last (7 keys, 2 KV blocks) and 3 queries; sequence 1 page {2}
/// full (4 keys, 1 block) and 1 query. nqb 2, max_blocks 2.
Call goodPagedBsr(attnrt::Kernel k) {
  Call c(k, {{"batch", 2},
             {"total_q", 4},
             {"num_pages", 3},
             {"num_page_refs", 3},
             {"nqb", 2},
             {"max_blocks", 2}});
  c.set("kv_indptr", {0, 2, 3});
  c.set("kv_indices", {0, 1, 2});
  c.set("kv_last_page_len", {3, 4});
  c.set("qo_indptr", {0, 3, 4});
  c.set("block_offsets", {0, 1, 2, 0, 1, 1});
  c.set("block_indices", {1, 0, 0, 9});
  return c;
}

TEST_F(Sparsity, PagedLengthsFromThePageTable) {
  Call c = goodPagedBsr(k("append_bsr"));
  EXPECT_VALID(c);
  Call a = goodPagedBsr(k("append_bsr"));
  a.ints("block_indices")[2] = 1;
  expectError(a, "block_indices",
              "batch 1 head 0: row 0 entry 0 is KV block 1 but sequence 1 "
              "has 4 keys = 1 blocks of block_kv = 4");
  Call b = goodPagedBsr(k("append_bsr"));
  b.ints("qo_indptr")[1] = 1; // sequence 1 now has 3 queries = 2 blocks
  b.ints("block_offsets")[3] = 0;
  EXPECT_VALID(b);
  Call nqb(k("append_bsr"), {{"batch", 2},
                             {"total_q", 4},
                             {"num_pages", 3},
                             {"num_page_refs", 3},
                             {"nqb", 1},
                             {"max_blocks", 2}});
  nqb.set("kv_indptr", {0, 2, 3});
  nqb.set("kv_indices", {0, 1, 2});
  nqb.set("kv_last_page_len", {3, 4});
  nqb.set("qo_indptr", {0, 3, 4});
  expectError(nqb, "block_offsets",
              "has num_q_blocks = 1 (dim 2 - 1) but batch 0 has 3 queries = "
              "2 query blocks of block_q = 2");
  // Decode: one query per sequence, so num_q_blocks >= 1.
  Call decode(k("decode_bsr_win"), {{"batch", 1},
                                    {"num_pages", 1},
                                    {"num_page_refs", 1},
                                    {"nqb", 0},
                                    {"max_blocks", 1}});
  decode.set("kv_indptr", {0, 1});
  decode.set("kv_last_page_len", {2});
  expectError(decode, "block_offsets",
              "has num_q_blocks = 0 (dim 2 - 1) but batch 0 has 1 queries");
}

TEST_F(Sparsity, SelectPagesOutputsAndRun) {
  Call c(k("select"), {{"batch", 2}, {"num_pages", 4}, {"num_page_refs", 3}});
  c.set("kv_indptr", {0, 2, 3});
  c.set("kv_indices", {0, 1, 3});
  c.set("kv_last_page_len", {1, 4});
  EXPECT_VALID(c);
  std::vector<attnrt_tensor> t = c.tensors();
  EXPECT_EQ(attnrt_run(m.get(), c.k.get(), t.data(), (int)t.size(), 1),
            ATTNRT_OK)
      << lastError();
  // The outputs must hold top_k indices per (batch, head).
  Call narrow(k("select_k"),
              {{"batch", 1}, {"num_pages", 1}, {"num_page_refs", 1}, {"k", 3}});
  narrow.set("kv_indptr", {0, 1});
  narrow.set("kv_last_page_len", {1});
  expectError(narrow, "block_indices",
              "shape is [1, 2, 3] but select_pages writes [1, 2, 4] ([batch, "
              "num_kv_heads, top_k])");
  // A trimmed page is never accepted: select_pages reads every summary.
  c.ints("kv_indices")[0] = -1;
  expectError(c, "kv_indices",
              "entry 0 (sequence 0) is page -1 but the pool "
              "'cache_k_pages' has 4 pages; page numbers must be in [0, 4) "
              "(-1 marks a page trimmed by attnrt_cache_seq_trim, which this "
              "kernel does not accept: only paged_attention kernels whose "
              "masks have a sliding window accept it");
}

//===----------------------------------------------------------------------===//
// Trimmed pages (-1 entries) against the masks
//===----------------------------------------------------------------------===//

/// A pool matching the f16 cache (page_size 4, Hkv 2, D 2) with 8 pages:
/// sequence 0 of 5 tokens, sequence 1 of 23 tokens trimmed with sinks 4 and
/// window 6, so its pages read {p, -1, -1, -1, p, p}.
class Trimmed : public Sparsity {
protected:
  Trimmed() {
    attnrt_cache_component fmt[] = {{"k_pages", 1, 4 * 2 * 2 * 2},
                                    {"v_pages", 1, 4 * 2 * 2 * 2}};
    EXPECT_EQ(attnrt_cache_pool_create(4, fmt, 2, 8, &pool), ATTNRT_OK);
    int32_t slots[23];
    EXPECT_EQ(attnrt_cache_seq_create(pool, &seqs[0]), ATTNRT_OK);
    EXPECT_EQ(attnrt_cache_seq_create(pool, &seqs[1]), ATTNRT_OK);
    EXPECT_EQ(attnrt_cache_seq_append(pool, seqs[0], 5, slots), ATTNRT_OK);
    EXPECT_EQ(attnrt_cache_seq_append(pool, seqs[1], 23, slots), ATTNRT_OK);
    EXPECT_EQ(attnrt_cache_seq_trim(pool, seqs[1], 4, 6), ATTNRT_OK)
        << lastError();
  }
  ~Trimmed() override { attnrt_cache_pool_destroy(pool); }

  /// The batch {0, 1} through kernel `name` (qo_indptr for append kernels:
  /// `queries` per sequence).
  Call call(const std::string &name, int32_t queries = 1) {
    attnrt::Kernel kk = k(name);
    int64_t n = 0;
    EXPECT_EQ(attnrt_cache_page_table_size(pool, seqs, 2, &n), ATTNRT_OK);
    std::map<std::string, int64_t> symbols = {
        {"batch", 2},     {"total_q", 2 * queries},
        {"num_pages", 8}, {"num_page_refs", n},
        {"nqb", 1},       {"max_blocks", 3}};
    Call c(kk, symbols);
    EXPECT_EQ(attnrt_cache_page_table(pool, seqs, 2, c.ints("kv_indptr"),
                                      c.ints("kv_indices"), n,
                                      c.ints("kv_last_page_len")),
              ATTNRT_OK)
        << lastError();
    if (name.rfind("append", 0) == 0)
      c.set("qo_indptr", {0, queries, 2 * queries});
    return c;
  }

  attnrt_cache_pool *pool = nullptr;
  int64_t seqs[2] = {-1, -1};
};

TEST_F(Trimmed, PageTableHasMinusOne) {
  Call c = call("decode_win");
  std::vector<int32_t> indices(c.ints("kv_indices"), c.ints("kv_indices") + 8);
  EXPECT_EQ(indices, (std::vector<int32_t>{0, 1, 2, -1, -1, -1, 6, 7}));
}

TEST_F(Trimmed, AcceptedWhenNoQueryCanSeeThePages) {
  for (const char *name : {"decode_win", "decode_win5", "decode_heads"}) {
    Call c = call(name);
    EXPECT_VALID(c) << name;
    std::vector<attnrt_tensor> t = c.tensors();
    EXPECT_EQ(attnrt_run(m.get(), c.k.get(), t.data(), (int)t.size(), 1),
              ATTNRT_OK)
        << lastError();
  }
  Call one = call("append_win", 1);
  EXPECT_VALID(one);
}

TEST_F(Trimmed, RejectedWhenTheWindowReachesThem) {
  // Window 8 from position 22 sees keys >= 14: page 3 holds 12..15.
  Call wide = call("decode_win8");
  expectError(wide, "kv_indices",
              "entry 5 (sequence 1, its page 3) is -1, a page trimmed by "
              "attnrt_cache_seq_trim, but it holds keys [12, 16) and the "
              "sequence's 1 query(s) see keys [0, 4) and [14, 23) (sinks 4, "
              "window 8)");
  // Five sinks reach into page 1.
  Call sinks = call("decode_sinks5");
  expectError(sinks, "kv_indices",
              "entry 3 (sequence 1, its page 1) is -1, a page trimmed by "
              "attnrt_cache_seq_trim, but it holds keys [4, 8)");
  // Three queries (positions 20..22): the first sees keys >= 14.
  Call append = call("append_win", 3);
  expectError(append, "kv_indices",
              "entry 5 (sequence 1, its page 3) is -1, a page trimmed by "
              "attnrt_cache_seq_trim, but it holds keys [12, 16) and the "
              "sequence's 3 query(s) see keys [0, 4) and [14, 23)");
}

TEST_F(Trimmed, RejectedForMasksWithoutAWindow) {
  Call causal = call("decode_causal");
  expectError(causal, "kv_indices",
              "entry 3 (sequence 1) is page -1 but the pool 'cache_k_pages' "
              "has 8 pages; page numbers must be in [0, 8) (-1 marks a page "
              "trimmed by attnrt_cache_seq_trim, which this kernel does not "
              "accept: the kernel's mask has no sliding window, so every key "
              "is visible; do not trim sequences this kernel reads)");
  Call heads = call("decode_heads_full");
  expectError(heads, "kv_indices",
              "does not accept: head_masks[1] has no sliding window");
  Call topLeft = call("decode_topleft");
  expectError(topLeft, "kv_indices",
              "does not accept: the kernel's mask is top_left aligned");
}

TEST_F(Trimmed, OtherNegativeEntriesStayErrors) {
  Call c = call("decode_win");
  c.ints("kv_indices")[2] = -2;
  expectError(c, "kv_indices",
              "entry 2 (sequence 1) is page -2 but the pool 'cache_k_pages' "
              "has 8 pages");
  // The last page always holds a visible key.
  Call last = call("decode_win");
  last.ints("kv_indices")[7] = -1;
  expectError(last, "kv_indices",
              "entry 7 (sequence 1, its page 5) is -1, a page trimmed by "
              "attnrt_cache_seq_trim, but it holds keys [20, 23)");
}

TEST_F(Trimmed, ListedBlocksMustNotCoverThem) {
  // decode_bsr_win: BQ 1, BK 4 (one page per block), H 1, max_blocks 3.
  // Sequence 1 (pages {p, -1, -1, -1, p, p}) lists blocks 0 and 5.
  Call c = call("decode_bsr_win");
  c.set("block_offsets", {0, 2, 0, 2});
  c.set("block_indices", {0, 1, 0, 0, 5, 2}); // entry 2 is past offsets
  c.set("block_full", {1, 1, 0, 1, 0, 1});
  EXPECT_VALID(c);
  std::vector<attnrt_tensor> t = c.tensors();
  EXPECT_EQ(attnrt_run(m.get(), c.k.get(), t.data(), (int)t.size(), 1),
            ATTNRT_OK)
      << lastError();
  // A listed block over a trimmed page: the kernel would load it, even
  // though the mask hides it (partial) ...
  c.set("block_offsets", {0, 2, 0, 3});
  c.set("block_full", {1, 1, 0, 1, 0, 0});
  expectError(c, "kv_indices",
              "entry 4 (sequence 1, its page 2) is -1, a page trimmed by "
              "attnrt_cache_seq_trim, but KV block 2 (keys [8, 12)) is "
              "listed for batch 1 head 0 row 0 (entry 2), and the kernel "
              "loads every listed block");
  // ... and a full one would even be visible.
  c.set("block_full", {1, 1, 0, 1, 0, 1});
  c.set("block_indices", {0, 1, 0, 2, 0, 5});
  expectError(c, "kv_indices",
              "entry 4 (sequence 1, its page 2) is -1, a page trimmed by "
              "attnrt_cache_seq_trim, but KV block 2 (keys [8, 12)) is "
              "listed as full for batch 1 head 0 row 0 (entry 0)");
}

//===----------------------------------------------------------------------===//
// Tile statistics
//===----------------------------------------------------------------------===//

std::string tilesManifest() {
  return manifest(
      {kernel("tiles", "merge", R"("instrumented": ["tile_stats"])",
              {arg("x", "output", "f32", R"(["n"])", "out")}, "tiles"),
       kernel("plain", "merge", "",
              {arg("x", "output", "f32", R"(["n"])", "out")})});
}

TEST(TileStats, CountsAccumulateAndReset) {
  TempArtifact a(tilesManifest());
  attnrt::Module m(a.dir.string(), 3);
  attnrt::Kernel tiles = m.kernel("tiles");
  EXPECT_EQ(attnrt_kernel_has_tile_stats(tiles.get()), 1);
  int64_t stats[3] = {-1, -1, -1};
  ASSERT_EQ(attnrt_kernel_tile_stats(tiles.get(), stats), ATTNRT_OK)
      << lastError();
  EXPECT_EQ(stats[0], 0);
  EXPECT_EQ(stats[2], 0);
  std::vector<float> x(100);
  int64_t n = 100;
  attnrt_tensor t = {x.data(), ATTNRT_DTYPE_F32, 1, &n, nullptr};
  // Items i = 0..99: i % 3 + 1 tiles (199 in all), 50 even items.
  for (int run = 1; run <= 2; ++run) {
    ASSERT_EQ(attnrt_run(m.get(), tiles.get(), &t, 1, 0), ATTNRT_OK)
        << lastError();
    ASSERT_EQ(attnrt_kernel_tile_stats(tiles.get(), stats), ATTNRT_OK);
    EXPECT_EQ(stats[0], 199 * run);
    EXPECT_EQ(stats[1], 50 * run);
    EXPECT_EQ(stats[2], 100 * run);
  }
  EXPECT_EQ(x[99], 99.0f);
  EXPECT_TRUE(tiles.hasTileStats());
  EXPECT_EQ(tiles.tileStats(), (std::array<int64_t, 3>{398, 100, 200}));
  ASSERT_EQ(attnrt_kernel_reset_tile_stats(tiles.get()), ATTNRT_OK);
  ASSERT_EQ(attnrt_kernel_tile_stats(tiles.get(), stats), ATTNRT_OK);
  EXPECT_EQ(stats[0], 0);
  EXPECT_EQ(stats[1], 0);
  EXPECT_EQ(stats[2], 0);
  EXPECT_EQ(attnrt_kernel_tile_stats(tiles.get(), nullptr),
            ATTNRT_ERR_INVALID_ARGUMENT);
}

TEST(TileStats, UninstrumentedKernel) {
  TempArtifact a(tilesManifest());
  attnrt::Module m(a.dir.string(), 1);
  attnrt::Kernel plain = m.kernel("plain");
  EXPECT_EQ(attnrt_kernel_has_tile_stats(plain.get()), 0);
  int64_t stats[3] = {7, 7, 7};
  EXPECT_EQ(attnrt_kernel_tile_stats(plain.get(), stats),
            ATTNRT_ERR_UNSUPPORTED);
  EXPECT_NE(lastError().find("attnrt_kernel_tile_stats: kernel 'plain' has "
                             "no tile counters (its library does not export "
                             "'plain__tile_stats'); compile it with attnc "
                             "--count-tiles"),
            std::string::npos)
      << lastError();
  EXPECT_EQ(stats[0], 7);
  EXPECT_EQ(attnrt_kernel_reset_tile_stats(plain.get()),
            ATTNRT_ERR_UNSUPPORTED);
  EXPECT_EQ(attnrt_kernel_tile_stats(nullptr, stats),
            ATTNRT_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(attnrt_kernel_has_tile_stats(nullptr), 0);
  EXPECT_FALSE(plain.hasTileStats());
  EXPECT_THROW(plain.tileStats(), attnrt::Error);
  // The fixture's kernels are not instrumented.
  attnrt::Module fixture(ATTNRT_FIXTURE_DIR, 1);
  EXPECT_EQ(attnrt_kernel_has_tile_stats(fixture.kernel("count").get()), 0);
}

} // namespace
