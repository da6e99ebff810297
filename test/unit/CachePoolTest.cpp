//===- CachePoolTest.cpp - KV-cache page pool (attnrt_cache.h) ------------===//
//
// Unit tests of every entry point and error path of the page pool, the
// vLLM block-table conversion, and a randomized test (create / append / fork
// / free, including a full pool) that writes a payload per token through the
// returned slots and reads every sequence back through the page table, with
// and without per-sequence rings (residual window).
//
//===----------------------------------------------------------------------===//

#include "attnrt/attnrt_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace {

std::string lastError() { return attnrt_last_error(); }

#define EXPECT_ERROR(call, status, substr)                                     \
  do {                                                                         \
    EXPECT_EQ((call), (status));                                               \
    EXPECT_NE(lastError().find(substr), std::string::npos)                     \
        << "message: " << lastError();                                         \
  } while (0)

/// A pool freed at scope exit.
struct Pool {
  attnrt_cache_pool *p = nullptr;
  Pool() = default;
  Pool(int64_t pageSize, std::vector<attnrt_cache_component> comps,
       int64_t numPages) {
    EXPECT_EQ(attnrt_cache_pool_create(pageSize, comps.data(),
                                       static_cast<int>(comps.size()), numPages,
                                       &p),
              ATTNRT_OK)
        << lastError();
  }
  /// A pool with numRings rings of R tokens (numRings = 0: without rings).
  Pool(int64_t pageSize, std::vector<attnrt_cache_component> comps,
       int64_t numPages, int64_t numRings, int64_t R) {
    if (numRings == 0) {
      EXPECT_EQ(attnrt_cache_pool_create(pageSize, comps.data(),
                                         static_cast<int>(comps.size()),
                                         numPages, &p),
                ATTNRT_OK)
          << lastError();
      return;
    }
    EXPECT_EQ(attnrt_cache_pool_create_with_rings(
                  pageSize, comps.data(), static_cast<int>(comps.size()),
                  numPages, numRings, R, &p),
              ATTNRT_OK)
        << lastError();
  }
  ~Pool() { attnrt_cache_pool_destroy(p); }
  Pool(const Pool &) = delete;
  Pool &operator=(const Pool &) = delete;
  operator attnrt_cache_pool *() const { return p; }

  attnrt_cache_stats stats() const {
    attnrt_cache_stats s;
    EXPECT_EQ(attnrt_cache_pool_stats(p, &s), ATTNRT_OK) << lastError();
    return s;
  }
  int64_t seq() const {
    int64_t id = -1;
    EXPECT_EQ(attnrt_cache_seq_create(p, &id), ATTNRT_OK) << lastError();
    return id;
  }
  int64_t fork(int64_t src) const {
    int64_t id = -1;
    EXPECT_EQ(attnrt_cache_seq_fork(p, src, &id), ATTNRT_OK) << lastError();
    return id;
  }
  std::vector<int32_t> append(int64_t seq, int64_t n) const {
    std::vector<int32_t> slots(static_cast<size_t>(n), -1);
    EXPECT_EQ(attnrt_cache_seq_append(p, seq, n, slots.data()), ATTNRT_OK)
        << lastError();
    return slots;
  }
  /// append_with_rings: {slots, ring slots}.
  std::pair<std::vector<int32_t>, std::vector<int32_t>>
  appendRings(int64_t seq, int64_t n) const {
    std::vector<int32_t> slots(static_cast<size_t>(n), -1),
        rings(static_cast<size_t>(n), -1);
    EXPECT_EQ(attnrt_cache_seq_append_with_rings(p, seq, n, slots.data(),
                                                 rings.data()),
              ATTNRT_OK)
        << lastError();
    return {slots, rings};
  }
  int32_t ring(int64_t seq) const {
    int32_t r = -7;
    EXPECT_EQ(attnrt_cache_rings(p, &seq, 1, &r), ATTNRT_OK) << lastError();
    return r;
  }
  int64_t refs(int64_t page) const {
    int64_t r = -1;
    EXPECT_EQ(attnrt_cache_page_refcount(p, page, &r), ATTNRT_OK)
        << lastError();
    return r;
  }
  unsigned char *buffer(int component) const {
    void *data = nullptr;
    EXPECT_EQ(attnrt_cache_pool_buffer(p, component, &data, nullptr), ATTNRT_OK)
        << lastError();
    return static_cast<unsigned char *>(data);
  }
  /// Page numbers of one sequence, in token order.
  std::vector<int32_t> pages(int64_t seq, int32_t *lastLen = nullptr) const {
    int64_t n = -1;
    EXPECT_EQ(attnrt_cache_page_table_size(p, &seq, 1, &n), ATTNRT_OK)
        << lastError();
    std::vector<int32_t> indices(static_cast<size_t>(std::max<int64_t>(n, 0)));
    int32_t indptr[2] = {-1, -1}, last = -1;
    EXPECT_EQ(
        attnrt_cache_page_table(p, &seq, 1, indptr, indices.data(), n, &last),
        ATTNRT_OK)
        << lastError();
    EXPECT_EQ(indptr[0], 0);
    EXPECT_EQ(indptr[1], n);
    if (lastLen)
      *lastLen = last;
    return indices;
  }
};

/// One paged component of `bpp` bytes per page.
std::vector<attnrt_cache_component> oneComponent(int64_t bpp) {
  return {{"k_pages", 1, bpp}};
}

bool statsEqual(const attnrt_cache_stats &a, const attnrt_cache_stats &b) {
  return a.page_size == b.page_size && a.num_pages == b.num_pages &&
         a.free_pages == b.free_pages && a.used_pages == b.used_pages &&
         a.num_sequences == b.num_sequences &&
         a.bytes_per_page == b.bytes_per_page &&
         a.bytes_per_token == b.bytes_per_token &&
         a.bytes_in_use == b.bytes_in_use && a.num_rings == b.num_rings &&
         a.free_rings == b.free_rings;
}

//===----------------------------------------------------------------------===//
// Pool creation, buffers, accounting
//===----------------------------------------------------------------------===//

TEST(CachePool, CreateAllocatesAlignedZeroedBuffers) {
  Pool pool(16,
            {{"k_pages", 1, 16 * 8 * 64 * 2},
             {"v_pages", 1, 16 * 8 * 64 * 2},
             {"k_scale", 0, 8 * 4}},
            10);
  ASSERT_TRUE(pool.p);
  for (int c = 0; c < 3; ++c) {
    void *data = nullptr;
    int64_t bytes = -1;
    ASSERT_EQ(attnrt_cache_pool_buffer(pool, c, &data, &bytes), ATTNRT_OK);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(data) % 64, 0u) << c;
    EXPECT_EQ(bytes, c < 2 ? 10 * 16 * 8 * 64 * 2 : 32) << c;
    const unsigned char *b = static_cast<const unsigned char *>(data);
    EXPECT_TRUE(std::all_of(b, b + bytes, [](unsigned char x) { return !x; }))
        << c;
  }
  int index = -1;
  ASSERT_EQ(attnrt_cache_pool_find_component(pool, "v_pages", &index),
            ATTNRT_OK);
  EXPECT_EQ(index, 1);
  EXPECT_ERROR(attnrt_cache_pool_find_component(pool, "v_scale", &index),
               ATTNRT_ERR_INVALID_ARGUMENT,
               "no component 'v_scale'; the pool has 'k_pages', 'v_pages', "
               "'k_scale'");
  EXPECT_ERROR(attnrt_cache_pool_buffer(pool, 3, nullptr, nullptr),
               ATTNRT_ERR_INVALID_ARGUMENT, "component 3 is out of range");
  EXPECT_ERROR(attnrt_cache_pool_buffer(pool, -1, nullptr, nullptr),
               ATTNRT_ERR_INVALID_ARGUMENT, "out of range");
  // Success clears the message.
  EXPECT_EQ(attnrt_cache_pool_buffer(pool, 0, nullptr, nullptr), ATTNRT_OK);
  EXPECT_EQ(lastError(), "");
}

TEST(CachePool, CreateRejectsBadFormats) {
  attnrt_cache_pool *p = reinterpret_cast<attnrt_cache_pool *>(1);
  attnrt_cache_component k = {"k_pages", 1, 64};
  EXPECT_ERROR(attnrt_cache_pool_create(0, &k, 1, 4, &p),
               ATTNRT_ERR_INVALID_ARGUMENT, "page_size is 0; pass 1 to 256");
  EXPECT_EQ(p, nullptr);
  EXPECT_ERROR(attnrt_cache_pool_create(257, &k, 1, 4, &p),
               ATTNRT_ERR_INVALID_ARGUMENT, "page_size is 257");
  EXPECT_ERROR(attnrt_cache_pool_create(16, &k, 1, 0, &p),
               ATTNRT_ERR_INVALID_ARGUMENT, "num_pages is 0");
  EXPECT_ERROR(attnrt_cache_pool_create(16, &k, 1, int64_t(1) << 27, &p),
               ATTNRT_ERR_INVALID_ARGUMENT, "(slots are i32)");
  EXPECT_ERROR(attnrt_cache_pool_create(16, nullptr, 1, 4, &p),
               ATTNRT_ERR_INVALID_ARGUMENT, "components is NULL");
  EXPECT_ERROR(attnrt_cache_pool_create(16, &k, 0, 4, &p),
               ATTNRT_ERR_INVALID_ARGUMENT, "no components");
  EXPECT_ERROR(attnrt_cache_pool_create(16, &k, -1, 4, &p),
               ATTNRT_ERR_INVALID_ARGUMENT, "num_components -1");
  EXPECT_ERROR(attnrt_cache_pool_create(16, &k, 1, 4, nullptr),
               ATTNRT_ERR_INVALID_ARGUMENT, "out is NULL");

  attnrt_cache_component nullName[] = {{nullptr, 1, 64}};
  EXPECT_ERROR(attnrt_cache_pool_create(16, nullName, 1, 4, &p),
               ATTNRT_ERR_INVALID_ARGUMENT, "component 0 has a NULL name");
  attnrt_cache_component emptyName[] = {{"k_pages", 1, 64}, {"", 1, 64}};
  EXPECT_ERROR(attnrt_cache_pool_create(16, emptyName, 2, 4, &p),
               ATTNRT_ERR_INVALID_ARGUMENT, "component 1 has an empty name");
  attnrt_cache_component dup[] = {{"k_pages", 1, 64}, {"k_pages", 0, 4}};
  EXPECT_ERROR(attnrt_cache_pool_create(16, dup, 2, 4, &p),
               ATTNRT_ERR_INVALID_ARGUMENT,
               "component 1 'k_pages' repeats an earlier name");
  attnrt_cache_component zero[] = {{"k_pages", 1, 0}};
  EXPECT_ERROR(attnrt_cache_pool_create(16, zero, 1, 4, &p),
               ATTNRT_ERR_INVALID_ARGUMENT, "has 0 bytes per page");
  attnrt_cache_component neg[] = {{"k_pages", 1, 64}, {"k_scale", 0, -4}};
  EXPECT_ERROR(attnrt_cache_pool_create(16, neg, 2, 4, &p),
               ATTNRT_ERR_INVALID_ARGUMENT, "'k_scale' has -4 bytes;");
  attnrt_cache_component unpaged[] = {{"k_scale", 0, 64}};
  EXPECT_ERROR(attnrt_cache_pool_create(16, unpaged, 1, 4, &p),
               ATTNRT_ERR_INVALID_ARGUMENT, "no paged component");
  attnrt_cache_component huge[] = {{"k_pages", 1, int64_t(1) << 62}};
  EXPECT_ERROR(attnrt_cache_pool_create(1, huge, 1, 4, &p),
               ATTNRT_ERR_INVALID_ARGUMENT, "overflow int64");
  EXPECT_EQ(p, nullptr);
  attnrt_cache_pool_destroy(nullptr); // No-op.
}

TEST(CachePool, BytesPerTokenIsExact) {
  // The formats of docs/kv-cache.md for H = 8, D = 128.
  const int64_t H = 8, D = 128;
  struct Case {
    const char *name;
    int64_t pageSize;
    std::vector<attnrt_cache_component> comps;
    double bytesPerToken;
  };
  std::vector<Case> cases = {
      {"f16",
       16,
       {{"k_pages", 1, 16 * H * D * 2}, {"v_pages", 1, 16 * H * D * 2}},
       4096},
      {"fp8",
       16,
       {{"k_pages", 1, 16 * H * D},
        {"v_pages", 1, 16 * H * D},
        {"k_scale", 0, H * 4},
        {"v_scale", 0, H * 4}},
       2048},
      {"i8 k_group=64",
       64,
       {{"k_pages", 1, 64 * H * D},
        {"v_pages", 1, 64 * H * D},
        {"k_scale", 1, 1 * H * D * 2},
        {"v_scale", 1, 64 * H * 2}},
       2096},
      {"i4 k_group=64",
       64,
       {{"k_pages", 1, 64 * H * D / 2},
        {"v_pages", 1, 64 * H * D / 2},
        {"k_scale", 1, H * D * 2},
        {"k_min", 1, H * D * 2},
        {"v_scale", 1, 64 * H * 2},
        {"v_min", 1, 64 * H * 2}},
       1120},
      {"odd page size", 3, {{"k_pages", 1, 10}}, 10.0 / 3.0},
  };
  for (const Case &c : cases) {
    Pool pool(c.pageSize, c.comps, 8);
    attnrt_cache_stats s = pool.stats();
    EXPECT_EQ(s.bytes_per_token, c.bytesPerToken) << c.name;
    EXPECT_EQ(s.bytes_per_page,
              static_cast<int64_t>(c.bytesPerToken * c.pageSize + 0.5))
        << c.name;
    EXPECT_EQ(s.page_size, c.pageSize);
    EXPECT_EQ(s.num_pages, 8);
    EXPECT_EQ(s.free_pages, 8);
    EXPECT_EQ(s.used_pages, 0);
    EXPECT_EQ(s.bytes_in_use, 0);

    int64_t seq = pool.seq();
    pool.append(seq, 2 * c.pageSize + 1); // 3 pages
    s = pool.stats();
    EXPECT_EQ(s.used_pages, 3) << c.name;
    EXPECT_EQ(s.free_pages, 5) << c.name;
    EXPECT_EQ(s.bytes_in_use, 3 * s.bytes_per_page) << c.name;
    EXPECT_EQ(s.num_sequences, 1) << c.name;
  }
}

TEST(CachePool, StatsAndCheckRejectNull) {
  attnrt_cache_stats s;
  EXPECT_ERROR(attnrt_cache_pool_stats(nullptr, &s),
               ATTNRT_ERR_INVALID_ARGUMENT,
               "attnrt_cache_pool_stats: pool is NULL; create one with "
               "attnrt_cache_pool_create");
  Pool pool(4, oneComponent(16), 2);
  EXPECT_ERROR(attnrt_cache_pool_stats(pool, nullptr),
               ATTNRT_ERR_INVALID_ARGUMENT, "out is NULL");
  EXPECT_ERROR(attnrt_cache_pool_check(nullptr), ATTNRT_ERR_INVALID_ARGUMENT,
               "pool is NULL");
  EXPECT_EQ(attnrt_cache_pool_check(pool), ATTNRT_OK) << lastError();
  int64_t r;
  EXPECT_ERROR(attnrt_cache_page_refcount(pool, 2, &r),
               ATTNRT_ERR_INVALID_ARGUMENT,
               "page 2 is out of range; the pool has pages 0..1");
  EXPECT_ERROR(attnrt_cache_page_refcount(pool, 0, nullptr),
               ATTNRT_ERR_INVALID_ARGUMENT, "refcount is NULL");
}

//===----------------------------------------------------------------------===//
// Sequences: create, append, length
//===----------------------------------------------------------------------===//

TEST(CachePool, AppendAllocatesPagesAndWritesSlots) {
  Pool pool(4, oneComponent(16), 8);
  int64_t a = pool.seq(), b = pool.seq();
  EXPECT_NE(a, b);
  int64_t len = -1;
  ASSERT_EQ(attnrt_cache_seq_length(pool, a, &len), ATTNRT_OK);
  EXPECT_EQ(len, 0);

  // Pages are handed out 0, 1, 2, ...
  EXPECT_EQ(pool.append(a, 3), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(pool.append(b, 5), (std::vector<int32_t>{4, 5, 6, 7, 8}));
  EXPECT_EQ(pool.append(a, 3), (std::vector<int32_t>{3, 12, 13}));
  EXPECT_EQ(pool.append(a, 0), (std::vector<int32_t>{}));
  EXPECT_EQ(attnrt_cache_seq_append(pool, a, 0, nullptr), ATTNRT_OK);
  ASSERT_EQ(attnrt_cache_seq_length(pool, a, &len), ATTNRT_OK);
  EXPECT_EQ(len, 6);
  int32_t last = -1;
  EXPECT_EQ(pool.pages(a, &last), (std::vector<int32_t>{0, 3}));
  EXPECT_EQ(last, 2);
  EXPECT_EQ(pool.pages(b, &last), (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(last, 1);
  // Filling the last page exactly allocates nothing; the next token does.
  EXPECT_EQ(pool.append(a, 2), (std::vector<int32_t>{14, 15}));
  EXPECT_EQ(pool.stats().used_pages, 4);
  EXPECT_EQ(pool.pages(a, &last), (std::vector<int32_t>{0, 3}));
  EXPECT_EQ(last, 4);
  EXPECT_EQ(pool.append(a, 1), (std::vector<int32_t>{16}));
  EXPECT_EQ(pool.stats().used_pages, 5);
  EXPECT_EQ(attnrt_cache_pool_check(pool), ATTNRT_OK) << lastError();
}

TEST(CachePool, AppendRejectsBadArguments) {
  Pool pool(4, oneComponent(16), 8);
  int64_t a = pool.seq();
  int32_t slots[4];
  EXPECT_ERROR(attnrt_cache_seq_append(pool, a, -1, slots),
               ATTNRT_ERR_INVALID_ARGUMENT,
               "num_tokens is -1 for sequence 0; pass 0 or more");
  EXPECT_ERROR(attnrt_cache_seq_append(pool, a, 2, nullptr),
               ATTNRT_ERR_INVALID_ARGUMENT, "slots_out is NULL for 2 tokens");
  EXPECT_ERROR(attnrt_cache_seq_append(nullptr, a, 2, slots),
               ATTNRT_ERR_INVALID_ARGUMENT,
               "attnrt_cache_seq_append: pool is NULL");
  EXPECT_ERROR(attnrt_cache_seq_append(pool, 7, 2, slots),
               ATTNRT_ERR_INVALID_ARGUMENT,
               "sequence 7 was never created in this pool (ids so far: 0..0)");
  EXPECT_ERROR(attnrt_cache_seq_append(pool, -3, 2, slots),
               ATTNRT_ERR_INVALID_ARGUMENT, "sequence -3 was never created");
  int64_t id;
  EXPECT_ERROR(attnrt_cache_seq_create(pool, nullptr),
               ATTNRT_ERR_INVALID_ARGUMENT, "seq is NULL");
  EXPECT_ERROR(attnrt_cache_seq_create(nullptr, &id),
               ATTNRT_ERR_INVALID_ARGUMENT, "pool is NULL");
  EXPECT_ERROR(attnrt_cache_seq_length(pool, a, nullptr),
               ATTNRT_ERR_INVALID_ARGUMENT, "len is NULL");
  EXPECT_ERROR(attnrt_cache_seq_fork(pool, a, nullptr),
               ATTNRT_ERR_INVALID_ARGUMENT, "out is NULL");
  EXPECT_EQ(pool.stats().used_pages, 0);
  EXPECT_EQ(pool.stats().num_sequences, 1);
}

TEST(CachePool, FullPoolAppendIsAtomic) {
  Pool pool(4, oneComponent(16), 3);
  int64_t a = pool.seq(), b = pool.seq();
  pool.append(a, 5); // pages 0, 1
  attnrt_cache_stats before = pool.stats();
  std::vector<int32_t> slots(9, -7);
  // 5 + 8 = 13 tokens need 4 pages: 2 more, only 1 free.
  EXPECT_ERROR(attnrt_cache_seq_append(pool, a, 8, slots.data()),
               ATTNRT_ERR_OUT_OF_PAGES,
               "attnrt_cache_seq_append: sequence 0 (5 tokens) needs 2 free "
               "pages to append 8 tokens (2 new) but the pool has 1 free of "
               "3; free or preempt sequences, or create a larger pool");
  EXPECT_TRUE(statsEqual(pool.stats(), before));
  EXPECT_TRUE(std::all_of(slots.begin(), slots.end(),
                          [](int32_t s) { return s == -7; }));
  int64_t len;
  ASSERT_EQ(attnrt_cache_seq_length(pool, a, &len), ATTNRT_OK);
  EXPECT_EQ(len, 5);
  EXPECT_EQ(pool.pages(a), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(attnrt_cache_pool_check(pool), ATTNRT_OK) << lastError();

  // Exactly what is left still fits: 7 more tokens fill pages 1 and 2.
  EXPECT_EQ(pool.append(a, 7), (std::vector<int32_t>{5, 6, 7, 8, 9, 10, 11}));
  EXPECT_EQ(pool.stats().free_pages, 0);
  EXPECT_ERROR(attnrt_cache_seq_append(pool, b, 1, slots.data()),
               ATTNRT_ERR_OUT_OF_PAGES, "needs 1 free pages");
  EXPECT_ERROR(attnrt_cache_seq_append(pool, a, int64_t(1) << 62, slots.data()),
               ATTNRT_ERR_OUT_OF_PAGES, "but the pool has 0 free of 3");
  EXPECT_EQ(std::string(attnrt_status_string(ATTNRT_ERR_OUT_OF_PAGES)),
            "out of pages");
  // Freeing makes room again.
  ASSERT_EQ(attnrt_cache_seq_free(pool, a), ATTNRT_OK);
  EXPECT_EQ(pool.append(b, 1), (std::vector<int32_t>{8}));
}

//===----------------------------------------------------------------------===//
// Fork, copy-on-write, free
//===----------------------------------------------------------------------===//

TEST(CachePool, ForkSharesPagesWithoutCopying) {
  Pool pool(4, oneComponent(16), 8);
  int64_t a = pool.seq();
  pool.append(a, 10); // pages 0, 1, 2
  attnrt_cache_stats before = pool.stats();
  int64_t b = pool.fork(a);
  EXPECT_NE(a, b);
  int64_t len = -1;
  ASSERT_EQ(attnrt_cache_seq_length(pool, b, &len), ATTNRT_OK);
  EXPECT_EQ(len, 10);
  EXPECT_EQ(pool.pages(b), pool.pages(a));
  attnrt_cache_stats after = pool.stats();
  EXPECT_EQ(after.used_pages, before.used_pages);
  EXPECT_EQ(after.bytes_in_use, before.bytes_in_use);
  EXPECT_EQ(after.num_sequences, 2);
  for (int32_t p : pool.pages(a))
    EXPECT_EQ(pool.refs(p), 2) << p;
  int64_t c = pool.fork(b);
  for (int32_t p : pool.pages(a))
    EXPECT_EQ(pool.refs(p), 3) << p;
  // Forking an empty sequence gives an empty one.
  int64_t e = pool.seq();
  int64_t f = pool.fork(e);
  EXPECT_TRUE(pool.pages(f).empty());
  EXPECT_EQ(pool.refs(3), 0);
  (void)c;
  EXPECT_EQ(attnrt_cache_pool_check(pool), ATTNRT_OK) << lastError();
}

TEST(CachePool, AppendIntoSharedPartialPageCopiesOnWrite) {
  // Two paged components (K payload and a per-page "scale"), one non-paged.
  const int64_t P = 4;
  Pool pool(P, {{"k_pages", 1, P * 2}, {"k_scale", 1, 3}, {"fp8", 0, 5}}, 6);
  unsigned char *k = pool.buffer(0), *scale = pool.buffer(1),
                *fp8 = pool.buffer(2);
  std::memset(fp8, 0x5c, 5);
  int64_t a = pool.seq();
  std::vector<int32_t> slots = pool.append(a, 6); // page 0 full, page 1: 2
  for (int i = 0; i < 6; ++i)
    k[slots[i] * 2] = static_cast<unsigned char>(10 + i);
  std::memcpy(scale + 1 * 3, "\x01\x02\x03", 3); // page 1's scales
  int64_t b = pool.fork(a);
  EXPECT_EQ(pool.refs(1), 2);

  std::vector<unsigned char> page1Before(k + 1 * P * 2, k + 2 * P * 2);
  std::vector<int32_t> bSlots = pool.append(b, 1);
  std::vector<int32_t> bPages = pool.pages(b);
  ASSERT_EQ(bPages.size(), 2u);
  EXPECT_EQ(bPages[0], 0); // full page: still shared
  EXPECT_EQ(bPages[1], 2); // the copy
  EXPECT_EQ(bSlots, (std::vector<int32_t>{2 * P + 2}));
  EXPECT_EQ(pool.refs(0), 2);
  EXPECT_EQ(pool.refs(1), 1); // only a now
  EXPECT_EQ(pool.refs(2), 1);
  EXPECT_EQ(pool.pages(a), (std::vector<int32_t>{0, 1}));
  // The copy holds the whole page of every paged component.
  EXPECT_EQ(0, std::memcmp(k + 2 * P * 2, page1Before.data(), P * 2));
  EXPECT_EQ(0, std::memcmp(scale + 2 * 3, "\x01\x02\x03", 3));
  // Writing b's token leaves a's page untouched.
  k[bSlots[0] * 2] = 99;
  EXPECT_EQ(0, std::memcmp(k + 1 * P * 2, page1Before.data(), P * 2));
  // a now owns page 1 alone: it appends in place, no copy.
  EXPECT_EQ(pool.append(a, 1), (std::vector<int32_t>{1 * P + 2}));
  EXPECT_EQ(pool.stats().used_pages, 3);
  // The non-paged component is never touched.
  EXPECT_TRUE(
      std::all_of(fp8, fp8 + 5, [](unsigned char x) { return x == 0x5c; }));
  EXPECT_EQ(attnrt_cache_pool_check(pool), ATTNRT_OK) << lastError();
}

TEST(CachePool, SharedFullLastPageNeedsNoCopy) {
  Pool pool(4, oneComponent(16), 4);
  int64_t a = pool.seq();
  pool.append(a, 8); // pages 0, 1, both full
  int64_t b = pool.fork(a);
  EXPECT_EQ(pool.append(b, 1), (std::vector<int32_t>{8}));
  EXPECT_EQ(pool.pages(b), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(pool.refs(1), 2);
  EXPECT_EQ(pool.stats().used_pages, 3);
}

TEST(CachePool, CopyOnWriteCountsTowardsAtomicity) {
  Pool pool(4, oneComponent(16), 3);
  int64_t a = pool.seq(), filler = pool.seq();
  pool.append(a, 2);      // page 0, partly filled
  pool.append(filler, 8); // pages 1, 2: pool full
  int64_t b = pool.fork(a);
  attnrt_cache_stats before = pool.stats();
  int32_t slot = -7;
  // Even one token needs a page: the copy of shared page 0.
  EXPECT_ERROR(attnrt_cache_seq_append(pool, b, 1, &slot),
               ATTNRT_ERR_OUT_OF_PAGES,
               "needs 1 free pages to append 1 tokens (0 new + 1 copy of its "
               "shared last page 0) but the pool has 0 free of 3");
  EXPECT_EQ(slot, -7);
  EXPECT_TRUE(statsEqual(pool.stats(), before));
  EXPECT_EQ(pool.refs(0), 2);
  EXPECT_EQ(pool.pages(b), (std::vector<int32_t>{0}));
  EXPECT_EQ(attnrt_cache_pool_check(pool), ATTNRT_OK) << lastError();
  // Once b is the only holder again it appends in place.
  ASSERT_EQ(attnrt_cache_seq_free(pool, a), ATTNRT_OK);
  EXPECT_EQ(pool.append(b, 2), (std::vector<int32_t>{2, 3}));
}

TEST(CachePool, FreeReturnsPagesAtRefcountZero) {
  Pool pool(4, oneComponent(16), 8);
  int64_t a = pool.seq();
  pool.append(a, 9); // pages 0, 1, 2
  int64_t b = pool.fork(a);
  pool.append(b, 4); // copy of page 2 -> 3, then page 4
  EXPECT_EQ(pool.stats().used_pages, 5);
  ASSERT_EQ(attnrt_cache_seq_free(pool, a), ATTNRT_OK);
  attnrt_cache_stats s = pool.stats();
  EXPECT_EQ(s.used_pages, 4); // page 2 was a's alone
  EXPECT_EQ(s.num_sequences, 1);
  EXPECT_EQ(pool.refs(0), 1);
  EXPECT_EQ(pool.refs(2), 0);
  ASSERT_EQ(attnrt_cache_seq_free(pool, b), ATTNRT_OK);
  s = pool.stats();
  EXPECT_EQ(s.used_pages, 0);
  EXPECT_EQ(s.free_pages, 8);
  EXPECT_EQ(s.bytes_in_use, 0);
  EXPECT_EQ(s.num_sequences, 0);
  EXPECT_EQ(attnrt_cache_pool_check(pool), ATTNRT_OK) << lastError();
  // Freed pages are handed out again.
  int64_t c = pool.seq();
  pool.append(c, 32);
  EXPECT_EQ(pool.stats().free_pages, 0);
}

TEST(CachePool, FreedIdsAreRejectedEverywhere) {
  Pool pool(4, oneComponent(16), 8);
  int64_t a = pool.seq();
  pool.append(a, 5);
  int64_t b = pool.seq();
  ASSERT_EQ(attnrt_cache_seq_free(pool, a), ATTNRT_OK);
  attnrt_cache_stats before = pool.stats();
  const char *freed = "sequence 0 has been freed; ids are not reused";
  int64_t out = -1;
  int32_t slots[2], indptr[3], indices[4], last[2];
  EXPECT_ERROR(attnrt_cache_seq_free(pool, a), ATTNRT_ERR_INVALID_ARGUMENT,
               std::string("attnrt_cache_seq_free: ") + freed);
  EXPECT_ERROR(attnrt_cache_seq_length(pool, a, &out),
               ATTNRT_ERR_INVALID_ARGUMENT, freed);
  EXPECT_ERROR(attnrt_cache_seq_append(pool, a, 2, slots),
               ATTNRT_ERR_INVALID_ARGUMENT, freed);
  EXPECT_ERROR(attnrt_cache_seq_fork(pool, a, &out),
               ATTNRT_ERR_INVALID_ARGUMENT,
               std::string("attnrt_cache_seq_fork: ") + freed);
  int64_t batch[2] = {b, a};
  EXPECT_ERROR(attnrt_cache_page_table_size(pool, batch, 2, &out),
               ATTNRT_ERR_INVALID_ARGUMENT, freed);
  EXPECT_ERROR(
      attnrt_cache_page_table(pool, batch, 2, indptr, indices, 4, last),
      ATTNRT_ERR_INVALID_ARGUMENT,
      std::string("attnrt_cache_page_table: ") + freed);
  EXPECT_TRUE(statsEqual(pool.stats(), before));
  // A new sequence gets a new id, never the freed one.
  EXPECT_EQ(pool.seq(), 2);
  EXPECT_ERROR(attnrt_cache_seq_free(pool, 3), ATTNRT_ERR_INVALID_ARGUMENT,
               "sequence 3 was never created in this pool (ids so far: 0..2)");
}

//===----------------------------------------------------------------------===//
// Trimming (streaming heads: sinks + window)
//===----------------------------------------------------------------------===//

using Pages = std::vector<int32_t>;

TEST(CachePoolTrim, FreesPagesOutsideSinksAndWindow) {
  Pool pool(4, oneComponent(64), 16);
  int64_t a = pool.seq();
  pool.append(a, 23); // pages 0..5, 3 tokens in the last
  // Keeps [0, 4) and [22 - 6, 23) = [16, 23): pages 1, 2, 3 go.
  ASSERT_EQ(attnrt_cache_seq_trim(pool, a, 4, 6), ATTNRT_OK) << lastError();
  int32_t last = -1;
  EXPECT_EQ(pool.pages(a, &last), (Pages{0, -1, -1, -1, 4, 5}));
  EXPECT_EQ(last, 3);
  attnrt_cache_stats s = pool.stats();
  EXPECT_EQ(s.used_pages, 3);
  EXPECT_EQ(s.free_pages, 13);
  EXPECT_EQ(s.bytes_in_use, 3 * 64);
  EXPECT_EQ(pool.refs(1), 0);
  EXPECT_EQ(pool.refs(4), 1);
  int64_t len = -1;
  ASSERT_EQ(attnrt_cache_seq_length(pool, a, &len), ATTNRT_OK);
  EXPECT_EQ(len, 23); // the logical length stays
  EXPECT_EQ(attnrt_cache_pool_check(pool), ATTNRT_OK) << lastError();
  // Idempotent.
  ASSERT_EQ(attnrt_cache_seq_trim(pool, a, 4, 6), ATTNRT_OK);
  EXPECT_TRUE(statsEqual(pool.stats(), s));
  // Appends go on (the trimmed pages are handed out again, last freed
  // first); trimming again frees what left the window since.
  std::vector<int32_t> slots = pool.append(a, 9); // 23..31
  EXPECT_EQ(slots[0], 5 * 4 + 3);
  EXPECT_EQ(slots[1], 3 * 4);
  EXPECT_EQ(slots[5], 2 * 4);
  EXPECT_EQ(pool.pages(a), (Pages{0, -1, -1, -1, 4, 5, 3, 2}));
  ASSERT_EQ(attnrt_cache_seq_trim(pool, a, 4, 6), ATTNRT_OK); // keeps >= 25
  EXPECT_EQ(pool.pages(a), (Pages{0, -1, -1, -1, -1, -1, 3, 2}));
  EXPECT_EQ(pool.stats().used_pages, 3);
  // Without sinks page 0 goes too; the last page always stays.
  ASSERT_EQ(attnrt_cache_seq_trim(pool, a, 0, 0), ATTNRT_OK); // keeps 31
  EXPECT_EQ(pool.pages(a), (Pages{-1, -1, -1, -1, -1, -1, -1, 2}));
  EXPECT_EQ(pool.stats().used_pages, 1);
  EXPECT_EQ(attnrt_cache_pool_check(pool), ATTNRT_OK) << lastError();
  // Free skips the trimmed entries.
  ASSERT_EQ(attnrt_cache_seq_free(pool, a), ATTNRT_OK);
  EXPECT_EQ(pool.stats().free_pages, 16);
  EXPECT_EQ(attnrt_cache_pool_check(pool), ATTNRT_OK) << lastError();
}

TEST(CachePoolTrim, NothingToTrim) {
  Pool pool(4, oneComponent(16), 8);
  int64_t empty = pool.seq(), a = pool.seq();
  pool.append(a, 10);
  attnrt_cache_stats before = pool.stats();
  ASSERT_EQ(attnrt_cache_seq_trim(pool, empty, 0, 0), ATTNRT_OK);
  ASSERT_EQ(attnrt_cache_seq_trim(pool, a, 0, 100), ATTNRT_OK); // wide window
  ASSERT_EQ(attnrt_cache_seq_trim(pool, a, 8, 1), ATTNRT_OK);   // sinks cover
  // A page holding any kept position stays: keeps [0, 1) and [5, 10).
  ASSERT_EQ(attnrt_cache_seq_trim(pool, a, 1, 4), ATTNRT_OK);
  EXPECT_TRUE(statsEqual(pool.stats(), before));
  EXPECT_EQ(pool.pages(a), (Pages{0, 1, 2}));
  ASSERT_EQ(attnrt_cache_seq_trim(pool, a, 0, 4), ATTNRT_OK); // keeps >= 5
  EXPECT_EQ(pool.pages(a), (Pages{-1, 1, 2}));
}

TEST(CachePoolTrim, SharedPagesForkAndCopyOnWrite) {
  Pool pool(4, oneComponent(16), 16);
  int64_t a = pool.seq();
  pool.append(a, 14); // pages 0..3, 2 tokens in the last
  int64_t b = pool.fork(a);
  // a drops its references to pages 0, 1; b still holds them.
  ASSERT_EQ(attnrt_cache_seq_trim(pool, a, 0, 2), ATTNRT_OK); // keeps >= 11
  EXPECT_EQ(pool.pages(a), (Pages{-1, -1, 2, 3}));
  EXPECT_EQ(pool.pages(b), (Pages{0, 1, 2, 3}));
  EXPECT_EQ(pool.refs(0), 1);
  EXPECT_EQ(pool.refs(2), 2);
  EXPECT_EQ(pool.stats().used_pages, 4);
  // A fork copies the trimmed marks.
  int64_t c = pool.fork(a);
  EXPECT_EQ(pool.pages(c), (Pages{-1, -1, 2, 3}));
  EXPECT_EQ(pool.refs(3), 3);
  EXPECT_EQ(pool.refs(1), 1);
  // Append into the shared partial last page copies it as usual.
  pool.append(c, 3);
  EXPECT_EQ(pool.pages(c), (Pages{-1, -1, 2, 4, 5}));
  EXPECT_EQ(pool.refs(3), 2);
  EXPECT_EQ(attnrt_cache_pool_check(pool), ATTNRT_OK) << lastError();
  ASSERT_EQ(attnrt_cache_seq_free(pool, b), ATTNRT_OK);
  EXPECT_EQ(pool.refs(0), 0);            // b held the last reference
  EXPECT_EQ(pool.stats().used_pages, 4); // 2, 3, 4, 5
  ASSERT_EQ(attnrt_cache_seq_free(pool, a), ATTNRT_OK);
  ASSERT_EQ(attnrt_cache_seq_free(pool, c), ATTNRT_OK);
  EXPECT_EQ(pool.stats().free_pages, 16);
  EXPECT_EQ(attnrt_cache_pool_check(pool), ATTNRT_OK) << lastError();
}

TEST(CachePoolTrim, PageTableOfABatchWritesMinusOne) {
  Pool pool(2, oneComponent(16), 16);
  int64_t a = pool.seq(), b = pool.seq();
  pool.append(a, 7);                                          // pages 0..3
  pool.append(b, 3);                                          // pages 4, 5
  ASSERT_EQ(attnrt_cache_seq_trim(pool, a, 2, 1), ATTNRT_OK); // keeps 0,1,5,6
  int64_t batch[] = {b, a}, n = -1;
  ASSERT_EQ(attnrt_cache_page_table_size(pool, batch, 2, &n), ATTNRT_OK);
  EXPECT_EQ(n, 6); // trimmed entries keep their place
  std::vector<int32_t> indptr(3), indices(6), last(2);
  ASSERT_EQ(attnrt_cache_page_table(pool, batch, 2, indptr.data(),
                                    indices.data(), n, last.data()),
            ATTNRT_OK);
  EXPECT_EQ(indptr, (Pages{0, 2, 6}));
  EXPECT_EQ(indices, (Pages{4, 5, 0, -1, 2, 3}));
  EXPECT_EQ(last, (Pages{1, 1}));
}

TEST(CachePoolTrim, Errors) {
  Pool pool(4, oneComponent(16), 8);
  int64_t a = pool.seq();
  pool.append(a, 12);
  attnrt_cache_stats before = pool.stats();
  EXPECT_ERROR(attnrt_cache_seq_trim(pool, a, -1, 4),
               ATTNRT_ERR_INVALID_ARGUMENT,
               "attnrt_cache_seq_trim: sink_tokens is -1 and window_tokens "
               "is 4 for sequence 0; pass the mask's sinks and window (both "
               ">= 0; a mask without a window sees every key, so nothing can "
               "be trimmed)");
  EXPECT_ERROR(attnrt_cache_seq_trim(pool, a, 0, -1),
               ATTNRT_ERR_INVALID_ARGUMENT, "window_tokens is -1");
  EXPECT_ERROR(attnrt_cache_seq_trim(nullptr, a, 0, 1),
               ATTNRT_ERR_INVALID_ARGUMENT,
               "attnrt_cache_seq_trim: pool is "
               "NULL");
  EXPECT_ERROR(attnrt_cache_seq_trim(pool, 5, 0, 1),
               ATTNRT_ERR_INVALID_ARGUMENT,
               "attnrt_cache_seq_trim: sequence 5 was never created");
  EXPECT_TRUE(statsEqual(pool.stats(), before));
  ASSERT_EQ(attnrt_cache_seq_free(pool, a), ATTNRT_OK);
  EXPECT_ERROR(attnrt_cache_seq_trim(pool, a, 0, 1),
               ATTNRT_ERR_INVALID_ARGUMENT,
               "attnrt_cache_seq_trim: sequence 0 has been freed");
}

//===----------------------------------------------------------------------===//
// Page tables
//===----------------------------------------------------------------------===//

TEST(CachePool, PageTableOfABatch) {
  Pool pool(4, oneComponent(16), 16);
  int64_t a = pool.seq(), empty = pool.seq(), b = pool.seq();
  pool.append(a, 4); // page 0, full
  pool.append(b, 1); // page 1
  pool.append(a, 1); // page 2
  int64_t c = pool.fork(a);
  pool.append(b, 6); // page 1 full, page 3: 3
  int64_t batch[] = {a, empty, b, c, a};
  int64_t n = -1;
  ASSERT_EQ(attnrt_cache_page_table_size(pool, batch, 5, &n), ATTNRT_OK);
  EXPECT_EQ(n, 8);
  std::vector<int32_t> indptr(6, -1), indices(8, -1), last(5, -1);
  ASSERT_EQ(attnrt_cache_page_table(pool, batch, 5, indptr.data(),
                                    indices.data(), 8, last.data()),
            ATTNRT_OK)
      << lastError();
  EXPECT_EQ(indptr, (std::vector<int32_t>{0, 2, 2, 4, 6, 8}));
  EXPECT_EQ(indices, (std::vector<int32_t>{0, 2, 1, 3, 0, 2, 0, 2}));
  EXPECT_EQ(last, (std::vector<int32_t>{1, 0, 3, 1, 1}));

  // An empty batch: kv_indptr = {0}.
  int32_t one = -1;
  ASSERT_EQ(
      attnrt_cache_page_table(pool, nullptr, 0, &one, nullptr, 0, nullptr),
      ATTNRT_OK);
  EXPECT_EQ(one, 0);
  ASSERT_EQ(attnrt_cache_page_table_size(pool, nullptr, 0, &n), ATTNRT_OK);
  EXPECT_EQ(n, 0);
}

TEST(CachePool, PageTableErrorsWriteNothing) {
  Pool pool(4, oneComponent(16), 16);
  int64_t a = pool.seq(), b = pool.seq();
  pool.append(a, 9);
  pool.append(b, 4);
  int64_t batch[] = {a, b};
  std::vector<int32_t> indptr(3, -7), indices(4, -7), last(2, -7);
  auto untouched = [&] {
    for (const auto *v : {&indptr, &indices, &last})
      for (int32_t x : *v)
        if (x != -7)
          return false;
    return true;
  };
  EXPECT_ERROR(attnrt_cache_page_table(pool, batch, 2, indptr.data(),
                                       indices.data(), 3, last.data()),
               ATTNRT_ERR_INVALID_ARGUMENT,
               "attnrt_cache_page_table: kv_indices needs 4 entries but "
               "indices_capacity is 3; size it with "
               "attnrt_cache_page_table_size");
  EXPECT_TRUE(untouched());
  EXPECT_ERROR(attnrt_cache_page_table(pool, batch, 2, indptr.data(), nullptr,
                                       4, last.data()),
               ATTNRT_ERR_INVALID_ARGUMENT, "kv_indices is NULL");
  EXPECT_ERROR(attnrt_cache_page_table(pool, batch, 2, nullptr, indices.data(),
                                       4, last.data()),
               ATTNRT_ERR_INVALID_ARGUMENT, "kv_indptr is NULL");
  EXPECT_ERROR(attnrt_cache_page_table(pool, batch, 2, indptr.data(),
                                       indices.data(), 4, nullptr),
               ATTNRT_ERR_INVALID_ARGUMENT, "kv_last_page_len is NULL");
  EXPECT_ERROR(attnrt_cache_page_table(pool, batch, 2, indptr.data(),
                                       indices.data(), -1, last.data()),
               ATTNRT_ERR_INVALID_ARGUMENT, "indices_capacity is -1");
  EXPECT_ERROR(attnrt_cache_page_table(pool, batch, -1, indptr.data(),
                                       indices.data(), 4, last.data()),
               ATTNRT_ERR_INVALID_ARGUMENT, "num_seqs is -1");
  EXPECT_ERROR(attnrt_cache_page_table(pool, nullptr, 2, indptr.data(),
                                       indices.data(), 4, last.data()),
               ATTNRT_ERR_INVALID_ARGUMENT, "seqs is NULL for 2 sequences");
  int64_t unknown[] = {a, 42};
  EXPECT_ERROR(attnrt_cache_page_table(pool, unknown, 2, indptr.data(),
                                       indices.data(), 4, last.data()),
               ATTNRT_ERR_INVALID_ARGUMENT, "sequence 42 was never created");
  EXPECT_ERROR(attnrt_cache_page_table(nullptr, batch, 2, indptr.data(),
                                       indices.data(), 4, last.data()),
               ATTNRT_ERR_INVALID_ARGUMENT, "pool is NULL");
  EXPECT_TRUE(untouched());
  int64_t n;
  EXPECT_ERROR(attnrt_cache_page_table_size(pool, batch, 2, nullptr),
               ATTNRT_ERR_INVALID_ARGUMENT, "num_refs is NULL");
  ASSERT_EQ(attnrt_cache_page_table_size(pool, batch, 2, &n), ATTNRT_OK);
  EXPECT_EQ(n, 4);
}

TEST(CachePool, BlockTablesToCsr) {
  // vLLM block_tables [4, 3], padded with 0 / garbage past each row's pages.
  const int32_t bt[] = {7, 3,  0,  //
                        5, -1, -1, //
                        2, 9,  4,  //
                        8, 8,  8};
  const int32_t lens[] = {5, 0, 12, 4};
  std::vector<int32_t> indptr(5, -1), indices(6, -1), last(4, -1);
  ASSERT_EQ(attnrt_page_table_from_block_tables(bt, 4, 3, lens, 4,
                                                indptr.data(), indices.data(),
                                                6, last.data()),
            ATTNRT_OK)
      << lastError();
  EXPECT_EQ(indptr, (std::vector<int32_t>{0, 2, 2, 5, 6}));
  EXPECT_EQ(indices, (std::vector<int32_t>{7, 3, 2, 9, 4, 8}));
  EXPECT_EQ(last, (std::vector<int32_t>{1, 0, 4, 4}));
  // An empty batch.
  int32_t one = -1;
  ASSERT_EQ(attnrt_page_table_from_block_tables(nullptr, 0, 3, nullptr, 4, &one,
                                                nullptr, 0, nullptr),
            ATTNRT_OK);
  EXPECT_EQ(one, 0);
}

TEST(CachePool, BlockTablesErrors) {
  const int32_t bt[] = {7, 3, 0, 5, -1, -1};
  std::vector<int32_t> indptr(3, -7), indices(6, -7), last(2, -7);
  auto untouched = [&] {
    for (const auto *v : {&indptr, &indices, &last})
      for (int32_t x : *v)
        if (x != -7)
          return false;
    return true;
  };
  auto convert = [&](const int32_t *lens, int64_t pageSize, int64_t capacity) {
    return attnrt_page_table_from_block_tables(bt, 2, 3, lens, pageSize,
                                               indptr.data(), indices.data(),
                                               capacity, last.data());
  };
  const int32_t negative[] = {3, -1};
  EXPECT_ERROR(convert(negative, 4, 6), ATTNRT_ERR_INVALID_ARGUMENT,
               "seq_lens[1] is -1; sequence lengths must be 0 or more");
  const int32_t tooLong[] = {13, 1};
  EXPECT_ERROR(convert(tooLong, 4, 6), ATTNRT_ERR_INVALID_ARGUMENT,
               "sequence 0 has 13 tokens = 4 pages of 4 but block_tables has "
               "only max_blocks = 3 columns");
  const int32_t padded[] = {4, 5}; // row 1's second page is -1
  EXPECT_ERROR(convert(padded, 4, 6), ATTNRT_ERR_INVALID_ARGUMENT,
               "block_tables[1, 1] is -1 but sequence 1 (5 tokens) uses that "
               "block");
  const int32_t ok[] = {12, 4};
  EXPECT_ERROR(convert(ok, 4, 3), ATTNRT_ERR_INVALID_ARGUMENT,
               "kv_indices needs 4 entries but indices_capacity is 3");
  EXPECT_ERROR(convert(ok, 0, 6), ATTNRT_ERR_INVALID_ARGUMENT,
               "page_size is 0");
  EXPECT_ERROR(convert(ok, 4, -1), ATTNRT_ERR_INVALID_ARGUMENT,
               "indices_capacity is -1");
  EXPECT_ERROR(
      attnrt_page_table_from_block_tables(bt, -1, 3, ok, 4, indptr.data(),
                                          indices.data(), 6, last.data()),
      ATTNRT_ERR_INVALID_ARGUMENT, "batch is -1");
  EXPECT_ERROR(
      attnrt_page_table_from_block_tables(nullptr, 2, 3, ok, 4, indptr.data(),
                                          indices.data(), 6, last.data()),
      ATTNRT_ERR_INVALID_ARGUMENT, "block_tables is NULL");
  EXPECT_ERROR(
      attnrt_page_table_from_block_tables(bt, 2, 3, nullptr, 4, indptr.data(),
                                          indices.data(), 6, last.data()),
      ATTNRT_ERR_INVALID_ARGUMENT, "seq_lens is NULL");
  EXPECT_ERROR(attnrt_page_table_from_block_tables(
                   bt, 2, 3, ok, 4, nullptr, indices.data(), 6, last.data()),
               ATTNRT_ERR_INVALID_ARGUMENT, "kv_indptr is NULL");
  EXPECT_TRUE(untouched());
  // Exactly enough capacity succeeds.
  ASSERT_EQ(convert(ok, 4, 4), ATTNRT_OK) << lastError();
  EXPECT_EQ(indptr, (std::vector<int32_t>{0, 3, 4}));
  EXPECT_EQ(last, (std::vector<int32_t>{4, 4}));
}

//===----------------------------------------------------------------------===//
// Rings (residual window)
//===----------------------------------------------------------------------===//

/// The residual format of docs/kv-cache.md for H = 2, D = 4, R = 3, page 4:
/// i8 pages + f16 rings [num_rings, R, H, D].
std::vector<attnrt_cache_component> ringFormat() {
  return {{"k_pages", ATTNRT_CACHE_PER_PAGE, 4 * 2 * 4},
          {"v_pages", ATTNRT_CACHE_PER_PAGE, 4 * 2 * 4},
          {"k_recent", ATTNRT_CACHE_PER_RING, 3 * 2 * 4 * 2},
          {"v_recent", ATTNRT_CACHE_PER_RING, 3 * 2 * 4 * 2},
          {"k_scale", ATTNRT_CACHE_TOTAL, 8}};
}

TEST(CachePoolRings, CreateBuffersAndStats) {
  Pool pool(4, ringFormat(), 10, 5, 3);
  ASSERT_TRUE(pool.p);
  const int64_t expect[] = {10 * 32, 10 * 32, 5 * 48, 5 * 48, 8};
  for (int c = 0; c < 5; ++c) {
    void *data = nullptr;
    int64_t bytes = -1;
    ASSERT_EQ(attnrt_cache_pool_buffer(pool, c, &data, &bytes), ATTNRT_OK);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(data) % 64, 0u) << c;
    EXPECT_EQ(bytes, expect[c]) << c;
    const unsigned char *b = static_cast<const unsigned char *>(data);
    EXPECT_TRUE(std::all_of(b, b + bytes, [](unsigned char x) { return !x; }))
        << c;
  }
  attnrt_cache_stats s = pool.stats();
  EXPECT_EQ(s.num_rings, 5);
  EXPECT_EQ(s.free_rings, 5);
  // Rings are not paged: bytes per token counts the pages only.
  EXPECT_EQ(s.bytes_per_page, 64);
  EXPECT_EQ(s.bytes_per_token, 16.0);
  int64_t a = pool.seq();
  pool.append(a, 5);
  s = pool.stats();
  EXPECT_EQ(s.free_rings, 4);
  EXPECT_EQ(s.bytes_in_use, 2 * 64);
  EXPECT_EQ(attnrt_cache_pool_check(pool), ATTNRT_OK) << lastError();

  // A pool without rings reports none.
  Pool plain(4, oneComponent(16), 2);
  EXPECT_EQ(plain.stats().num_rings, 0);
  EXPECT_EQ(plain.stats().free_rings, 0);
}

TEST(CachePoolRings, CreateRejectsBadRings) {
  attnrt_cache_pool *p = reinterpret_cast<attnrt_cache_pool *>(1);
  std::vector<attnrt_cache_component> f = ringFormat();
  EXPECT_ERROR(attnrt_cache_pool_create_with_rings(4, f.data(), 5, 8, 0, 3, &p),
               ATTNRT_ERR_INVALID_ARGUMENT,
               "attnrt_cache_pool_create_with_rings: num_rings is 0; pass a "
               "positive ring count");
  EXPECT_EQ(p, nullptr);
  EXPECT_ERROR(attnrt_cache_pool_create_with_rings(4, f.data(), 5, 8, 4, 0, &p),
               ATTNRT_ERR_INVALID_ARGUMENT,
               "ring_tokens is 0; pass the cache's residual R, 1 to 4096");
  EXPECT_ERROR(
      attnrt_cache_pool_create_with_rings(4, f.data(), 5, 8, 4, 4097, &p),
      ATTNRT_ERR_INVALID_ARGUMENT, "ring_tokens is 4097");
  EXPECT_ERROR(attnrt_cache_pool_create_with_rings(4, f.data(), 5, 8,
                                                   int64_t(1) << 20, 4096, &p),
               ATTNRT_ERR_INVALID_ARGUMENT, "(ring slots are i32)");
  EXPECT_ERROR(
      attnrt_cache_pool_create_with_rings(4, f.data(), 5, 8, 4, 3, nullptr),
      ATTNRT_ERR_INVALID_ARGUMENT, "out is NULL");
  // Per-ring components need a pool with rings.
  EXPECT_ERROR(attnrt_cache_pool_create(4, f.data(), 5, 8, &p),
               ATTNRT_ERR_INVALID_ARGUMENT,
               "attnrt_cache_pool_create: component 2 'k_recent' is per ring "
               "(paged = ATTNRT_CACHE_PER_RING) but the pool has no rings; "
               "create it with attnrt_cache_pool_create_with_rings");
  attnrt_cache_component bad[] = {{"k_pages", 1, 64}, {"x", 3, 8}};
  EXPECT_ERROR(attnrt_cache_pool_create_with_rings(4, bad, 2, 8, 4, 3, &p),
               ATTNRT_ERR_INVALID_ARGUMENT,
               "component 1 'x' has paged = 3; pass 0 (bytes in total), 1 "
               "(per page) or 2 (per ring)");
  attnrt_cache_component zero[] = {{"k_pages", 1, 64}, {"k_recent", 2, 0}};
  EXPECT_ERROR(attnrt_cache_pool_create_with_rings(4, zero, 2, 8, 4, 3, &p),
               ATTNRT_ERR_INVALID_ARGUMENT, "has 0 bytes per ring");
  attnrt_cache_component ringsOnly[] = {{"k_recent", 2, 8}};
  EXPECT_ERROR(
      attnrt_cache_pool_create_with_rings(4, ringsOnly, 1, 8, 4, 3, &p),
      ATTNRT_ERR_INVALID_ARGUMENT, "no paged component");
  attnrt_cache_component huge[] = {{"k_pages", 1, 64},
                                   {"k_recent", 2, int64_t(1) << 62}};
  EXPECT_ERROR(attnrt_cache_pool_create_with_rings(4, huge, 2, 8, 4, 3, &p),
               ATTNRT_ERR_INVALID_ARGUMENT,
               "4 rings of 4611686018427387904 bytes overflow int64");
  EXPECT_EQ(p, nullptr);
  // A pool with rings but no per-ring component is fine (ring slots only).
  Pool noRingData(4, oneComponent(16), 2, 2, 3);
  EXPECT_EQ(noRingData.stats().num_rings, 2);
}

TEST(CachePoolRings, EverySequenceOwnsARing) {
  Pool pool(4, ringFormat(), 8, 3, 3);
  int64_t a = pool.seq(), b = pool.seq(), c = pool.seq();
  // Rings are handed out 0, 1, 2, ...
  EXPECT_EQ(pool.ring(a), 0);
  EXPECT_EQ(pool.ring(b), 1);
  EXPECT_EQ(pool.ring(c), 2);
  EXPECT_EQ(pool.stats().free_rings, 0);

  // No free ring: create and fork fail and change nothing.
  attnrt_cache_stats before = pool.stats();
  int64_t out = -5;
  EXPECT_ERROR(attnrt_cache_seq_create(pool, &out), ATTNRT_ERR_OUT_OF_PAGES,
               "attnrt_cache_seq_create: no free ring: all 3 rings are owned "
               "by the 3 live sequences");
  EXPECT_ERROR(attnrt_cache_seq_fork(pool, a, &out), ATTNRT_ERR_OUT_OF_PAGES,
               "attnrt_cache_seq_fork: no free ring");
  EXPECT_EQ(out, -5);
  EXPECT_TRUE(statsEqual(pool.stats(), before));
  EXPECT_EQ(attnrt_cache_pool_check(pool), ATTNRT_OK) << lastError();
  // A freed-id fork reports the id, not the rings.
  ASSERT_EQ(attnrt_cache_seq_free(pool, b), ATTNRT_OK);
  EXPECT_ERROR(attnrt_cache_seq_fork(pool, b, &out),
               ATTNRT_ERR_INVALID_ARGUMENT, "has been freed");

  // Freeing returns the ring; the next sequence takes it. Failed creates
  // did not use up ids.
  EXPECT_EQ(pool.stats().free_rings, 1);
  int64_t d = pool.seq();
  EXPECT_EQ(d, c + 1);
  EXPECT_EQ(pool.ring(d), 1);
  EXPECT_EQ(attnrt_cache_pool_check(pool), ATTNRT_OK) << lastError();
}

TEST(CachePoolRings, AppendWritesRingSlots) {
  const int64_t R = 3;
  Pool pool(4, ringFormat(), 8, 4, R);
  int64_t a = pool.seq(), b = pool.seq();
  auto [slots, rings] = pool.appendRings(b, 5);
  EXPECT_EQ(slots, (std::vector<int32_t>{0, 1, 2, 3, 4}));
  // Ring 1: 1 * 3 + position % 3.
  EXPECT_EQ(rings, (std::vector<int32_t>{3, 4, 5, 3, 4}));
  auto more = pool.appendRings(b, 2); // positions 5, 6
  EXPECT_EQ(more.second, (std::vector<int32_t>{5, 3}));
  auto first = pool.appendRings(a, 1);
  EXPECT_EQ(first.second, (std::vector<int32_t>{0}));
  // Plain append still works in a pool with rings (page slots only).
  EXPECT_EQ(pool.append(a, 1).size(), 1u);
  EXPECT_EQ(pool.appendRings(a, 1).second, (std::vector<int32_t>{2}));
  // Zero tokens: nothing needed, nothing written.
  EXPECT_EQ(attnrt_cache_seq_append_with_rings(pool, a, 0, nullptr, nullptr),
            ATTNRT_OK);
  int64_t len = -1;
  ASSERT_EQ(attnrt_cache_seq_length(pool, a, &len), ATTNRT_OK);
  EXPECT_EQ(len, 3);
}

TEST(CachePoolRings, AppendWithRingsErrors) {
  Pool pool(4, ringFormat(), 2, 2, 3);
  int64_t a = pool.seq();
  int32_t slots[16], rings[16];
  EXPECT_ERROR(attnrt_cache_seq_append_with_rings(pool, a, 2, slots, nullptr),
               ATTNRT_ERR_INVALID_ARGUMENT,
               "attnrt_cache_seq_append_with_rings: ring_slots_out is NULL "
               "for 2 tokens");
  EXPECT_ERROR(attnrt_cache_seq_append_with_rings(pool, a, 2, nullptr, rings),
               ATTNRT_ERR_INVALID_ARGUMENT, "slots_out is NULL");
  EXPECT_ERROR(attnrt_cache_seq_append_with_rings(pool, a, -1, slots, rings),
               ATTNRT_ERR_INVALID_ARGUMENT, "num_tokens is -1");
  EXPECT_ERROR(attnrt_cache_seq_append_with_rings(pool, 9, 1, slots, rings),
               ATTNRT_ERR_INVALID_ARGUMENT, "sequence 9 was never created");
  EXPECT_ERROR(attnrt_cache_seq_append_with_rings(nullptr, a, 1, slots, rings),
               ATTNRT_ERR_INVALID_ARGUMENT, "pool is NULL");
  // Full pool: all or nothing, ring slots included.
  std::fill(std::begin(rings), std::end(rings), -7);
  attnrt_cache_stats before = pool.stats();
  EXPECT_ERROR(attnrt_cache_seq_append_with_rings(pool, a, 9, slots, rings),
               ATTNRT_ERR_OUT_OF_PAGES, "needs 3 free pages");
  EXPECT_TRUE(statsEqual(pool.stats(), before));
  EXPECT_TRUE(std::all_of(std::begin(rings), std::end(rings),
                          [](int32_t r) { return r == -7; }));
  // A pool without rings has no ring slots to give.
  Pool plain(4, oneComponent(16), 2);
  int64_t s = plain.seq();
  EXPECT_ERROR(attnrt_cache_seq_append_with_rings(plain, s, 1, slots, rings),
               ATTNRT_ERR_INVALID_ARGUMENT,
               "attnrt_cache_seq_append_with_rings: the pool has no rings (its "
               "cache has no residual window); create it with "
               "attnrt_cache_pool_create_with_rings");
  EXPECT_EQ(plain.stats().used_pages, 0);
}

TEST(CachePoolRings, ForkCopiesTheRing) {
  const int64_t R = 3, ringBytes = 3 * 2 * 4 * 2;
  Pool pool(4, ringFormat(), 8, 4, R);
  unsigned char *kr = pool.buffer(2), *vr = pool.buffer(3);
  int64_t a = pool.seq();
  pool.appendRings(a, 5);
  for (int64_t i = 0; i < ringBytes; ++i) {
    kr[pool.ring(a) * ringBytes + i] = static_cast<unsigned char>(i + 1);
    vr[pool.ring(a) * ringBytes + i] = static_cast<unsigned char>(200 - i);
  }
  int64_t b = pool.fork(a);
  ASSERT_NE(pool.ring(b), pool.ring(a));
  EXPECT_EQ(std::memcmp(kr + pool.ring(a) * ringBytes,
                        kr + pool.ring(b) * ringBytes, ringBytes),
            0);
  EXPECT_EQ(std::memcmp(vr + pool.ring(a) * ringBytes,
                        vr + pool.ring(b) * ringBytes, ringBytes),
            0);
  // The copy is independent: appending to the fork writes its own ring.
  auto [slots, rings] = pool.appendRings(b, 1); // position 5
  EXPECT_EQ(rings[0], pool.ring(b) * R + 5 % R);
  EXPECT_EQ(pool.stats().free_rings, 2);
  EXPECT_EQ(attnrt_cache_pool_check(pool), ATTNRT_OK) << lastError();
}

TEST(CachePoolRings, RingsOfABatch) {
  Pool pool(4, ringFormat(), 8, 4, 3);
  int64_t a = pool.seq(), b = pool.seq(), c = pool.seq();
  ASSERT_EQ(attnrt_cache_seq_free(pool, b), ATTNRT_OK);
  int64_t d = pool.seq(); // takes ring 1 again
  int64_t batch[] = {c, a, d, a};
  int32_t out[4] = {-7, -7, -7, -7};
  ASSERT_EQ(attnrt_cache_rings(pool, batch, 4, out), ATTNRT_OK) << lastError();
  EXPECT_EQ(std::vector<int32_t>(out, out + 4),
            (std::vector<int32_t>{2, 0, 1, 0}));
  EXPECT_EQ(attnrt_cache_rings(pool, nullptr, 0, nullptr), ATTNRT_OK);

  // Errors write nothing.
  int32_t untouched[4] = {-7, -7, -7, -7};
  int64_t withFreed[] = {a, b};
  EXPECT_ERROR(attnrt_cache_rings(pool, withFreed, 2, untouched),
               ATTNRT_ERR_INVALID_ARGUMENT,
               "attnrt_cache_rings: sequence " + std::to_string(b) +
                   " has been freed");
  EXPECT_EQ(untouched[0], -7);
  EXPECT_ERROR(attnrt_cache_rings(pool, batch, -1, untouched),
               ATTNRT_ERR_INVALID_ARGUMENT, "num_seqs is -1");
  EXPECT_ERROR(attnrt_cache_rings(pool, batch, 2, nullptr),
               ATTNRT_ERR_INVALID_ARGUMENT, "rings_out is NULL for 2");
  EXPECT_ERROR(attnrt_cache_rings(pool, nullptr, 2, untouched),
               ATTNRT_ERR_INVALID_ARGUMENT, "seqs is NULL for 2");
  EXPECT_ERROR(attnrt_cache_rings(nullptr, batch, 1, untouched),
               ATTNRT_ERR_INVALID_ARGUMENT, "pool is NULL");
  Pool plain(4, oneComponent(16), 2);
  int64_t s = plain.seq();
  EXPECT_ERROR(attnrt_cache_rings(plain, &s, 1, untouched),
               ATTNRT_ERR_INVALID_ARGUMENT,
               "attnrt_cache_rings: the pool has no rings");
  EXPECT_EQ(untouched[0], -7);
}

//===----------------------------------------------------------------------===//
// Randomized operations against a model
//===----------------------------------------------------------------------===//

uint64_t fuzzSeed(uint64_t fallback) {
  if (const char *env = std::getenv("ATTNRT_FUZZ_SEED"))
    if (*env)
      return std::strtoull(env, nullptr, 0);
  return fallback;
}

/// Drives one pool with random operations and checks it against a model:
/// for each live sequence, the ids of the tokens appended to it (inherited
/// ones included). The test writes each token's payload into two paged
/// components, K (8 bytes: the id) and V (4 bytes: a hash of it), laid out
/// [page][offset][bytes], and reads every sequence back via the page table.
/// With rings (numRings > 0, R = ringTokens), each token's id is also
/// written to its ring slot of a per-ring component (8 bytes per token), and
/// every sequence's ring must hold the ids of its last R tokens (fork copies
/// the ring; fewer rings than maxLive makes create and fork run out). Trims
/// with random sinks and windows drop pages from the model's sequences: their
/// entries must read -1, the rest must still read back.
class Fuzzer {
public:
  static constexpr int64_t kBytes = 8, vBytes = 4, scaleBytes = 24,
                           ringBytes = 8;
  static constexpr size_t maxLive = 48;

  static std::vector<attnrt_cache_component> format(int64_t pageSize,
                                                    int64_t ringTokens) {
    std::vector<attnrt_cache_component> f = {{"k_pages", 1, pageSize * kBytes},
                                             {"v_pages", 1, pageSize * vBytes},
                                             {"k_scale", 0, scaleBytes}};
    if (ringTokens > 0)
      f.push_back({"k_recent", ATTNRT_CACHE_PER_RING, ringTokens * ringBytes});
    return f;
  }

  Fuzzer(uint64_t seed, int64_t pageSize, int64_t numPages,
         int64_t numRings = 0, int64_t ringTokens = 0)
      : seed(seed), rng(seed), P(pageSize), numPages(numPages),
        numRings(numRings), R(ringTokens),
        pool(pageSize, format(pageSize, numRings ? ringTokens : 0), numPages,
             numRings, ringTokens) {
    k = pool.buffer(0);
    v = pool.buffer(1);
    scale = pool.buffer(2);
    if (numRings)
      ring = pool.buffer(3);
    for (int i = 0; i < scaleBytes; ++i)
      scale[i] = static_cast<unsigned char>(0xa0 + i);
  }

  void run(int64_t numOps, int64_t fullCheckEvery) {
    for (op = 0; op < numOps; ++op) {
      step();
      if (::testing::Test::HasFatalFailure())
        return;
      attnrt_cache_stats s = pool.stats();
      ASSERT_EQ(s.used_pages + s.free_pages, numPages) << where();
      ASSERT_EQ(s.num_sequences, static_cast<int64_t>(model.size())) << where();
      ASSERT_EQ(s.bytes_in_use, s.used_pages * s.bytes_per_page) << where();
      if (op % fullCheckEvery == 0) {
        fullCheck();
        if (::testing::Test::HasFatalFailure())
          return;
      }
    }
    fullCheck();
    if (::testing::Test::HasFatalFailure())
      return;
    // Free everything: no page may leak.
    while (!live.empty()) {
      freeSeq(live.back());
      if (::testing::Test::HasFatalFailure())
        return;
    }
    attnrt_cache_stats s = pool.stats();
    EXPECT_EQ(s.free_pages, numPages) << where();
    EXPECT_EQ(s.used_pages, 0);
    EXPECT_EQ(s.bytes_in_use, 0);
    EXPECT_EQ(s.num_sequences, 0);
    EXPECT_EQ(s.free_rings, numRings);
    for (int64_t p = 0; p < numPages; ++p)
      ASSERT_EQ(pool.refs(p), 0) << "page " << p << where();
    EXPECT_EQ(attnrt_cache_pool_check(pool), ATTNRT_OK) << lastError();
    for (int i = 0; i < scaleBytes; ++i)
      ASSERT_EQ(scale[i], 0xa0 + i) << "non-paged component byte " << i;

    std::cout << "[ fuzz     ] page_size=" << P << " pages=" << numPages
              << " ops=" << numOps << ": " << counts["append"] << " appends ("
              << counts["cow"] << " copy-on-write, " << counts["full"]
              << " refused by a full pool), " << counts["create"]
              << " creates, " << counts["fork"] << " forks, " << counts["free"]
              << " frees, " << counts["bad id"] << " freed-id calls, "
              << counts["trim"] << " trims (" << counts["trimmed"]
              << " entries, " << counts["trim freed"] << " pages freed)";
    if (numRings)
      std::cout << "; rings=" << numRings << " R=" << R << ": "
                << counts["no ring"] << " creates/forks refused for want of a "
                << "ring";
    std::cout << "\n";
    // The run must have exercised what it is meant to test.
    if (P > 1) { // With one token per page, no page is ever partly filled.
      EXPECT_GT(counts["cow"], 0);
    }
    EXPECT_GT(counts["full"], 0);
    EXPECT_GT(counts["fork"], 0);
    EXPECT_GT(counts["trimmed"], 0);
    if (numRings) {
      EXPECT_GT(counts["no ring"], 0);
    }
  }

private:
  std::string where() const {
    return " (seed " + std::to_string(seed) + ", op " + std::to_string(op) +
           "; rerun with ATTNRT_FUZZ_SEED=" + std::to_string(seed) + ")";
  }
  int64_t rand(int64_t lo, int64_t hi) { // inclusive
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  }
  int64_t pickLive() {
    return live[static_cast<size_t>(rand(0, int64_t(live.size()) - 1))];
  }

  static uint32_t vOf(uint64_t id) {
    return static_cast<uint32_t>(id * 0x9e3779b97f4a7c15ull >> 29) ^
           0xa5a5a5a5u;
  }
  void writeToken(int32_t slot, uint64_t id) {
    std::memcpy(k + int64_t(slot) * kBytes, &id, kBytes);
    uint32_t vv = vOf(id);
    std::memcpy(v + int64_t(slot) * vBytes, &vv, vBytes);
  }

  void step() {
    int64_t r = rand(0, 99);
    if (live.empty() || (r < 8 && live.size() < maxLive))
      return create();
    if (r < 20 && live.size() < maxLive)
      return fork();
    if (r < 32)
      return freeSeq(pickLive());
    if (r < 33 && !dead.empty())
      return badId();
    if (r >= 33 && r < 36)
      return trim();
    return append();
  }

  /// Trims a random live sequence and checks exactly the pages wholly
  /// outside [0, sinks) and [len - 1 - window, len) became -1, each
  /// freed when this sequence held its last reference.
  void trim() {
    int64_t id = pickLive();
    int64_t sinks = rand(0, 2 * P), window = rand(0, 3 * P);
    int64_t len = static_cast<int64_t>(model[id].size());
    std::vector<int32_t> before = pool.pages(id);
    std::set<int64_t> &cut = trimmedPages[id];
    int64_t keepFrom = len - 1 - window, freed = 0;
    std::set<int64_t> expect = cut;
    for (int64_t p = (sinks + P - 1) / P; keepFrom > 0 && p < keepFrom / P; ++p)
      if (expect.insert(p).second)
        freed += pool.refs(before[p]) == 1;
    int64_t usedBefore = pool.stats().used_pages;
    ASSERT_EQ(attnrt_cache_seq_trim(pool, id, sinks, window), ATTNRT_OK)
        << lastError() << where();
    ASSERT_EQ(pool.stats().used_pages, usedBefore - freed) << where();
    counts["trimmed"] += static_cast<int64_t>(expect.size() - cut.size());
    counts["trim freed"] += freed;
    ++counts["trim"];
    cut = expect;
    checkSequence(id, pool.pages(id));
  }

  /// With rings, create and fork fail when every ring is owned; true if
  /// this one did (and the pool did not change).
  bool refusedForWantOfRing(attnrt_status st,
                            const attnrt_cache_stats &before) {
    bool noRing = numRings > 0 && before.free_rings == 0;
    if (!noRing) {
      EXPECT_EQ(st, ATTNRT_OK) << lastError() << where();
      return false;
    }
    EXPECT_EQ(st, ATTNRT_ERR_OUT_OF_PAGES) << where();
    EXPECT_NE(lastError().find("no free ring"), std::string::npos)
        << lastError() << where();
    EXPECT_TRUE(statsEqual(pool.stats(), before)) << where();
    ++counts["no ring"];
    freeSeq(pickLive()); // Preempt, as a serving loop would.
    return true;
  }

  void create() {
    attnrt_cache_stats before = pool.stats();
    int64_t id = -1;
    attnrt_status st = attnrt_cache_seq_create(pool, &id);
    if (refusedForWantOfRing(st, before))
      return;
    ASSERT_EQ(st, ATTNRT_OK) << where();
    ASSERT_EQ(model.count(id), 0u) << "id " << id << " reused" << where();
    model[id];
    trimmedPages[id];
    live.push_back(id);
    ++counts["create"];
  }

  void fork() {
    int64_t src = pickLive();
    std::vector<int32_t> srcPages = pool.pages(src);
    std::vector<int64_t> refsBefore;
    for (int32_t p : srcPages)
      refsBefore.push_back(p < 0 ? 0 : pool.refs(p));
    attnrt_cache_stats before = pool.stats();
    int64_t usedBefore = before.used_pages;
    int64_t id = -1;
    attnrt_status st = attnrt_cache_seq_fork(pool, src, &id);
    if (refusedForWantOfRing(st, before))
      return;
    ASSERT_EQ(st, ATTNRT_OK) << where();
    ASSERT_EQ(model.count(id), 0u) << "id " << id << " reused" << where();
    model[id] = model[src];
    trimmedPages[id] = trimmedPages[src];
    live.push_back(id);
    ASSERT_EQ(pool.pages(id), srcPages) << where();
    ASSERT_EQ(pool.stats().used_pages, usedBefore) << where();
    for (size_t i = 0; i < srcPages.size(); ++i)
      if (srcPages[i] >= 0) {
        ASSERT_EQ(pool.refs(srcPages[i]), refsBefore[i] + 1) << where();
      }
    if (numRings) {
      ASSERT_NE(pool.ring(id), pool.ring(src)) << where();
      checkRing(id); // The copy holds the source's last R tokens.
    }
    ++counts["fork"];
  }

  void freeSeq(int64_t id) {
    int64_t freed = 0;
    for (int32_t p : pool.pages(id))
      freed += p >= 0 && pool.refs(p) == 1; // trimmed entries hold none
    int64_t usedBefore = pool.stats().used_pages;
    ASSERT_EQ(attnrt_cache_seq_free(pool, id), ATTNRT_OK)
        << lastError() << where();
    ASSERT_EQ(pool.stats().used_pages, usedBefore - freed) << where();
    model.erase(id);
    trimmedPages.erase(id);
    live.erase(std::find(live.begin(), live.end(), id));
    dead.push_back(id);
    ++counts["free"];
  }

  void badId() {
    int64_t id = dead[static_cast<size_t>(rand(0, int64_t(dead.size()) - 1))];
    attnrt_cache_stats before = pool.stats();
    int32_t slots[2];
    EXPECT_EQ(attnrt_cache_seq_append(pool, id, 2, slots),
              ATTNRT_ERR_INVALID_ARGUMENT)
        << where();
    EXPECT_NE(lastError().find("has been freed"), std::string::npos)
        << lastError() << where();
    int64_t out;
    EXPECT_EQ(attnrt_cache_seq_fork(pool, id, &out),
              ATTNRT_ERR_INVALID_ARGUMENT)
        << where();
    EXPECT_EQ(attnrt_cache_seq_free(pool, id), ATTNRT_ERR_INVALID_ARGUMENT)
        << where();
    ASSERT_TRUE(statsEqual(pool.stats(), before)) << where();
    ++counts["bad id"];
  }

  void append() {
    int64_t id = pickLive();
    int64_t n = rand(1, 40);
    std::vector<uint64_t> &tokens = model[id];
    int64_t len = static_cast<int64_t>(tokens.size());
    int32_t lastLen = -1;
    std::vector<int32_t> pagesBefore = pool.pages(id, &lastLen);
    ASSERT_EQ(static_cast<int64_t>(pagesBefore.size()), (len + P - 1) / P)
        << where();
    // Predict the pages the append needs, copy-on-write included.
    bool cow = len % P != 0 && pool.refs(pagesBefore.back()) > 1;
    int64_t newPages = (len + n + P - 1) / P - (len + P - 1) / P;
    int64_t needed = newPages + (cow ? 1 : 0);
    attnrt_cache_stats before = pool.stats();
    std::vector<int32_t> slots(static_cast<size_t>(n), -7),
        ringSlots(static_cast<size_t>(n), -7);
    attnrt_status st =
        numRings ? attnrt_cache_seq_append_with_rings(pool, id, n, slots.data(),
                                                      ringSlots.data())
                 : attnrt_cache_seq_append(pool, id, n, slots.data());
    ++counts["append"];

    if (needed > before.free_pages) {
      // Refused, and nothing changed.
      ASSERT_EQ(st, ATTNRT_ERR_OUT_OF_PAGES) << where();
      std::string expect = "needs " + std::to_string(needed) + " free pages";
      ASSERT_NE(lastError().find(expect), std::string::npos)
          << lastError() << where();
      ASSERT_TRUE(statsEqual(pool.stats(), before)) << where();
      ASSERT_EQ(pool.pages(id), pagesBefore) << where();
      ASSERT_TRUE(std::all_of(slots.begin(), slots.end(), [](int32_t s) {
        return s == -7;
      })) << where();
      ASSERT_TRUE(std::all_of(ringSlots.begin(), ringSlots.end(),
                              [](int32_t s) { return s == -7; }))
          << where();
      if (cow) {
        ASSERT_GT(pool.refs(pagesBefore.back()), 1) << where();
      }
      ++counts["full"];
      // Make room, as a serving loop would by preempting a sequence.
      freeSeq(pickLive());
      return;
    }
    ASSERT_EQ(st, ATTNRT_OK) << lastError() << where();
    ASSERT_EQ(pool.stats().free_pages, before.free_pages - needed) << where();
    std::vector<int32_t> pagesAfter = pool.pages(id);
    ASSERT_EQ(static_cast<int64_t>(pagesAfter.size()), (len + n + P - 1) / P)
        << where();
    // Full pages are kept; only a shared partial last page is replaced.
    for (size_t i = 0; i < pagesBefore.size(); ++i) {
      bool replaced = cow && i + 1 == pagesBefore.size();
      if (replaced) {
        ASSERT_NE(pagesAfter[i], pagesBefore[i]) << where();
      } else {
        ASSERT_EQ(pagesAfter[i], pagesBefore[i]) << where();
      }
    }
    counts["cow"] += cow;
    for (int64_t i = 0; i < n; ++i) {
      int64_t pos = len + i;
      ASSERT_EQ(slots[i], pagesAfter[pos / P] * P + pos % P)
          << "token " << i << where();
      // The sequence must own every page it writes to.
      ASSERT_EQ(pool.refs(slots[i] / P), 1) << "token " << i << where();
    }
    int32_t r = numRings ? pool.ring(id) : -1;
    for (int64_t i = 0; i < n; ++i) {
      uint64_t tok = nextToken++;
      writeToken(slots[i], tok);
      if (numRings) {
        ASSERT_EQ(ringSlots[i], r * R + (len + i) % R)
            << "token " << i << where();
        // In order: a later position of the same ring slot overwrites.
        std::memcpy(ring + int64_t(ringSlots[i]) * ringBytes, &tok, ringBytes);
      }
      tokens.push_back(tok);
    }
    checkSequence(id, pagesAfter);
    if (numRings)
      checkRing(id);
  }

  /// The ring of sequence id holds the ids of its last R tokens.
  void checkRing(int64_t id, int32_t r = -1) {
    if (r < 0)
      r = pool.ring(id);
    const std::vector<uint64_t> &tokens = model[id];
    int64_t len = static_cast<int64_t>(tokens.size());
    for (int64_t pos = std::max<int64_t>(0, len - R); pos < len; ++pos) {
      uint64_t got;
      std::memcpy(&got, ring + (int64_t(r) * R + pos % R) * ringBytes,
                  ringBytes);
      ASSERT_EQ(got, tokens[pos]) << "ring " << r << " of sequence " << id
                                  << " position " << pos << where();
    }
  }

  /// Reads the sequence back through its pages and compares with the model.
  void checkSequence(int64_t id, const std::vector<int32_t> &pages,
                     int32_t lastLen = -1) {
    const std::vector<uint64_t> &tokens = model[id];
    int64_t len = static_cast<int64_t>(tokens.size());
    ASSERT_EQ(static_cast<int64_t>(pages.size()), (len + P - 1) / P)
        << "sequence " << id << where();
    if (lastLen >= 0) {
      ASSERT_EQ(lastLen,
                pages.empty()
                    ? 0
                    : len - (static_cast<int64_t>(pages.size()) - 1) * P)
          << "sequence " << id << where();
    }
    const std::set<int64_t> &cut = trimmedPages[id];
    for (int64_t p = 0; p < static_cast<int64_t>(pages.size()); ++p)
      ASSERT_EQ(pages[p] == -1, cut.count(p) == 1)
          << "sequence " << id << " page " << p << " is " << pages[p]
          << where();
    for (int64_t pos = 0; pos < len; ++pos) {
      if (cut.count(pos / P))
        continue; // trimmed: its page belongs to the pool again
      int64_t slot = int64_t(pages[pos / P]) * P + pos % P;
      uint64_t kk;
      uint32_t vv;
      std::memcpy(&kk, k + slot * kBytes, kBytes);
      std::memcpy(&vv, v + slot * vBytes, vBytes);
      ASSERT_EQ(kk, tokens[pos])
          << "K of sequence " << id << " token " << pos << where();
      ASSERT_EQ(vv, vOf(tokens[pos]))
          << "V of sequence " << id << " token " << pos << where();
    }
  }

  /// Every live sequence reads back its tokens; reference counts equal the
  /// references of the page table; free pages are exactly the unreferenced.
  void fullCheck() {
    std::vector<int64_t> batch(live.begin(), live.end());
    int64_t n = -1;
    ASSERT_EQ(attnrt_cache_page_table_size(pool, batch.data(),
                                           static_cast<int>(batch.size()), &n),
              ATTNRT_OK)
        << lastError() << where();
    std::vector<int32_t> indptr(batch.size() + 1), indices(n),
        last(batch.size());
    ASSERT_EQ(attnrt_cache_page_table(
                  pool, batch.data(), static_cast<int>(batch.size()),
                  indptr.data(), indices.data(), n, last.data()),
              ATTNRT_OK)
        << lastError() << where();
    ASSERT_EQ(indptr[0], 0);
    ASSERT_EQ(indptr.back(), n);
    std::vector<int64_t> refs(static_cast<size_t>(numPages), 0);
    for (size_t b = 0; b < batch.size(); ++b) {
      std::vector<int32_t> pages(indices.begin() + indptr[b],
                                 indices.begin() + indptr[b + 1]);
      checkSequence(batch[b], pages, last[b]);
      if (::testing::Test::HasFatalFailure())
        return;
      std::vector<int32_t> held;
      for (int32_t p : pages)
        if (p != -1) // trimmed
          held.push_back(p);
      std::set<int32_t> distinct(held.begin(), held.end());
      ASSERT_EQ(distinct.size(), held.size())
          << "sequence " << batch[b] << " holds a page twice" << where();
      for (int32_t p : held) {
        ASSERT_TRUE(p >= 0 && p < numPages) << where();
        ++refs[p];
      }
    }
    int64_t unreferenced = 0;
    for (int64_t p = 0; p < numPages; ++p) {
      ASSERT_EQ(pool.refs(p), refs[p]) << "page " << p << where();
      unreferenced += refs[p] == 0;
    }
    attnrt_cache_stats s = pool.stats();
    ASSERT_EQ(s.free_pages, unreferenced) << where();
    ASSERT_EQ(s.used_pages + s.free_pages, numPages) << where();
    if (numRings) {
      // Distinct rings, one per live sequence, each holding its last R.
      std::vector<int32_t> rings(batch.size() + 1, -1);
      ASSERT_EQ(attnrt_cache_rings(pool, batch.data(),
                                   static_cast<int>(batch.size()),
                                   rings.data()),
                ATTNRT_OK)
          << lastError() << where();
      std::set<int32_t> distinct(rings.begin(), rings.begin() + batch.size());
      ASSERT_EQ(distinct.size(), batch.size()) << where();
      ASSERT_EQ(s.free_rings, numRings - int64_t(batch.size())) << where();
      for (size_t b = 0; b < batch.size(); ++b) {
        ASSERT_TRUE(rings[b] >= 0 && rings[b] < numRings) << where();
        checkRing(batch[b], rings[b]);
        if (::testing::Test::HasFatalFailure())
          return;
      }
    }
    // Free list vs counts, recomputed inside the pool (no duplicates, no
    // referenced page on it).
    ASSERT_EQ(attnrt_cache_pool_check(pool), ATTNRT_OK)
        << lastError() << where();
  }

  uint64_t seed;
  std::mt19937_64 rng;
  int64_t P, numPages, numRings, R;
  Pool pool;
  unsigned char *k = nullptr, *v = nullptr, *scale = nullptr, *ring = nullptr;
  std::map<int64_t, std::vector<uint64_t>> model;
  std::map<int64_t, std::set<int64_t>> trimmedPages; ///< Per live sequence.
  std::vector<int64_t> live, dead;
  uint64_t nextToken = 1;
  int64_t op = 0;
  std::map<std::string, int64_t> counts;
};

void runFuzz(uint64_t defaultSeed, int64_t pageSize, int64_t numPages,
             int64_t ops, int64_t numRings = 0, int64_t ringTokens = 0) {
  uint64_t seed = fuzzSeed(defaultSeed);
  std::cout << "[ fuzz     ] seed=" << seed
            << " (set ATTNRT_FUZZ_SEED to override)\n";
  Fuzzer f(seed, pageSize, numPages, numRings, ringTokens);
  f.run(ops, 100);
}

TEST(CachePoolFuzz, RandomOps100k) { runFuzz(20240611, 16, 128, 100000); }
TEST(CachePoolFuzz, RandomOpsPageSize1) { runFuzz(77, 1, 1024, 20000); }
TEST(CachePoolFuzz, RandomOpsPageSize7) { runFuzz(4242, 7, 96, 20000); }
// Rings: fewer than the live-sequence cap, R below, equal to and above the
// page size and the largest append (40).
TEST(CachePoolFuzz, RandomOpsRings) { runFuzz(31337, 16, 128, 50000, 12, 5); }
TEST(CachePoolFuzz, RandomOpsRingsR1) { runFuzz(99, 4, 256, 20000, 10, 1); }
TEST(CachePoolFuzz, RandomOpsRingsLong) {
  runFuzz(2718, 8, 160, 20000, 12, 64);
}

} // namespace
