//===- CachePool.h - KV-cache page pool -------------------------*- C++ -*-===//
//
// The runtime cache manager behind attnrt_cache.h: one pool of fixed-size
// pages per KV cache, a free list (a stack), a reference count per page and
// per sequence its list of pages plus its length in tokens. Forks share pages
// (counts + 1); an append into a shared partly filled last page copies that
// page first (copy-on-write). A pool for a cache with a residual window also
// has rings (one per live sequence, on a free stack like pages; fork copies
// the ring). Every mutating operation either completes or throws
// RuntimeError before changing anything. Not thread-safe.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNRT_SRC_CACHEPOOL_H
#define ATTNRT_SRC_CACHEPOOL_H

#include "attnrt/attnrt_cache.h"

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace attnrt {

class CachePool {
public:
  enum class Kind { Total, PerPage, PerRing };
  struct ComponentSpec {
    std::string name;
    Kind kind = Kind::PerPage;
    int64_t bytes = 0; ///< Per page, per ring or in total.
  };

  /// Validates the format and allocates the zero-filled, 64-byte aligned
  /// component buffers; throws RuntimeError (`fn`: ...). Without rings
  /// there is no PerRing component; withRings: numRings >= 1 rings of
  /// ringTokens = R (1..4096) tokens.
  CachePool(int64_t pageSize, std::vector<ComponentSpec> components,
            int64_t numPages, bool withRings = false, int64_t numRings = 0,
            int64_t ringTokens = 0,
            const char *fn = "attnrt_cache_pool_create");

  int numComponents() const { return static_cast<int>(components.size()); }
  /// Throws for an index out of range.
  void buffer(int component, void **data, int64_t *bytes);
  /// Throws (listing the names) when there is no such component.
  int findComponent(const std::string &name) const;
  attnrt_cache_stats stats() const;

  int64_t createSequence();
  int64_t fork(int64_t src);
  void free(int64_t seq);
  /// Releases the pages of seq wholly outside [0, sinkTokens) and
  /// [length - 1 - windowTokens, length); their entries become kTrimmed.
  void trim(int64_t seq, int64_t sinkTokens, int64_t windowTokens);
  int64_t length(int64_t seq) const;
  /// Reserves numTokens positions and writes their slots (and, withRings,
  /// their ring slots: a pool with rings only); all or nothing.
  void append(int64_t seq, int64_t numTokens, int32_t *slots,
              bool withRings = false, int32_t *ringSlots = nullptr,
              const char *fn = "attnrt_cache_seq_append");
  void rings(const int64_t *seqs, int numSeqs, int32_t *out) const;
  bool hasRings() const { return numRings > 0; }

  int64_t pageTableSize(const int64_t *seqs, int numSeqs, const char *fn) const;
  void pageTable(const int64_t *seqs, int numSeqs, int32_t *indptr,
                 int32_t *indices, int64_t capacity,
                 int32_t *lastPageLen) const;

  int64_t refcount(int64_t page) const;
  /// Recomputes every invariant; throws naming the first broken one.
  void check() const;

private:
  struct AlignedFree {
    void operator()(unsigned char *p) const;
  };
  struct Component {
    std::string name;
    Kind kind;
    int64_t bytes; ///< Per page, per ring or in total.
    std::unique_ptr<unsigned char[], AlignedFree> data;
  };
  /// A page-table entry whose page trim() returned to the pool (the
  /// sequence keeps its logical length; the page table reads -1).
  static constexpr int32_t kTrimmed = -1;

  struct Sequence {
    std::vector<int32_t> pages; ///< In token order; kTrimmed when trimmed.
    int64_t length = 0;         ///< Tokens.
    int32_t ring = -1;          ///< Its ring; -1 in a pool without rings.
  };

  const Sequence &lookup(int64_t seq, const char *fn) const;
  Sequence &lookup(int64_t seq, const char *fn);
  int32_t takePage();
  void releasePage(int32_t page);
  void copyPage(int32_t from, int32_t to);
  void copyRing(int32_t from, int32_t to);
  int64_t totalBytes(const Component &c) const;
  void requireRings(const char *fn) const;

  int64_t pageSize;
  int64_t numPages;
  int64_t bytesPerPage = 0; ///< Sum over the paged components.
  std::vector<Component> components;
  std::vector<int32_t> freeList; ///< Stack; capacity numPages, never grows.
  std::vector<int64_t> refcounts;
  int64_t numRings = 0;
  int64_t ringTokens = 0;
  std::vector<int32_t> freeRings; ///< Stack; capacity numRings.
  std::unordered_map<int64_t, Sequence> sequences;
  int64_t nextId = 0; ///< Ids are never reused.
};

} // namespace attnrt

#endif // ATTNRT_SRC_CACHEPOOL_H
