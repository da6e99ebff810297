//===- CachePool.h - KV-cache page pool -------------------------*- C++ -*-===//
//
// The runtime cache manager behind attnrt_cache.h: one pool of fixed-size
// pages per KV cache, a free list (a stack), a reference count per page and
// per sequence its list of pages plus its length in tokens. Forks share pages
// (counts + 1); an append into a shared partly filled last page copies that
// page first (copy-on-write). Every mutating operation either completes or
// throws RuntimeError before changing anything. Not thread-safe.
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
  struct ComponentSpec {
    std::string name;
    bool paged = true;
    int64_t bytes = 0; ///< Per page if paged, else in total.
  };

  /// Validates the format and allocates the zero-filled, 64-byte aligned
  /// component buffers; throws RuntimeError (attnrt_cache_pool_create: ...).
  CachePool(int64_t pageSize, std::vector<ComponentSpec> components,
            int64_t numPages);

  int numComponents() const { return static_cast<int>(components.size()); }
  /// Throws for an index out of range.
  void buffer(int component, void **data, int64_t *bytes);
  /// Throws (listing the names) when there is no such component.
  int findComponent(const std::string &name) const;
  attnrt_cache_stats stats() const;

  int64_t createSequence();
  int64_t fork(int64_t src);
  void free(int64_t seq);
  int64_t length(int64_t seq) const;
  /// Reserves numTokens positions and writes their slots; all or nothing.
  void append(int64_t seq, int64_t numTokens, int32_t *slots);

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
    bool paged;
    int64_t bytes; ///< Per page if paged, else in total.
    std::unique_ptr<unsigned char[], AlignedFree> data;
  };
  struct Sequence {
    std::vector<int32_t> pages; ///< In token order.
    int64_t length = 0;         ///< Tokens.
  };

  const Sequence &lookup(int64_t seq, const char *fn) const;
  Sequence &lookup(int64_t seq, const char *fn);
  int32_t takePage();
  void releasePage(int32_t page);
  void copyPage(int32_t from, int32_t to);

  int64_t pageSize;
  int64_t numPages;
  int64_t bytesPerPage = 0; ///< Sum over the paged components.
  std::vector<Component> components;
  std::vector<int32_t> freeList; ///< Stack; capacity numPages, never grows.
  std::vector<int64_t> refcounts;
  std::unordered_map<int64_t, Sequence> sequences;
  int64_t nextId = 0; ///< Ids are never reused.
};

} // namespace attnrt

#endif // ATTNRT_SRC_CACHEPOOL_H
