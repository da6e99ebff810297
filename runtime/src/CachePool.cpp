//===- CachePool.cpp - KV-cache page pool and its C API -------------------===//
//
// CachePool (see CachePool.h) and the thin C wrappers of attnrt_cache.h, plus
// the conversion of vLLM block tables to the CSR page table. Every entry
// point goes through guard() so failures become a status plus
// attnrt_last_error().
//
//===----------------------------------------------------------------------===//

#include "CachePool.h"
#include "Error.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>
#include <set>

using namespace attnrt;

namespace {

constexpr std::size_t kAlignment = 64;
constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

std::string str(int64_t v) { return std::to_string(v); }

int64_t ceilDiv(int64_t a, int64_t b) { return a / b + (a % b != 0); }

/// "a, b, c" for messages listing names.
std::string joinNames(const std::vector<std::string> &names) {
  std::string out;
  for (const std::string &n : names)
    out += (out.empty() ? "'" : ", '") + n + "'";
  return out;
}

} // namespace

//===----------------------------------------------------------------------===//
// CachePool
//===----------------------------------------------------------------------===//

void CachePool::AlignedFree::operator()(unsigned char *p) const {
  ::operator delete(p, std::align_val_t(kAlignment));
}

CachePool::CachePool(int64_t pageSize, std::vector<ComponentSpec> specs,
                     int64_t numPages, bool withRings, int64_t numRings,
                     int64_t ringTokens, const char *fn)
    : pageSize(pageSize), numPages(numPages),
      numRings(withRings ? numRings : 0),
      ringTokens(withRings ? ringTokens : 0) {
  if (pageSize < 1 || pageSize > ATTNRT_CACHE_MAX_PAGE_SIZE)
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) + ": page_size is " + str(pageSize) + "; pass 1 to " +
             str(ATTNRT_CACHE_MAX_PAGE_SIZE) +
             " tokens per page (docs/kv-cache.md)");
  if (numPages < 1)
    fail(ATTNRT_ERR_INVALID_ARGUMENT, std::string(fn) + ": num_pages is " +
                                          str(numPages) +
                                          "; pass a positive page count");
  if (numPages > kInt32Max / pageSize)
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) + ": num_pages * page_size = " + str(numPages) +
             " * " + str(pageSize) + " exceeds " + str(kInt32Max) +
             " (slots are i32); use at most " + str(kInt32Max / pageSize) +
             " pages of this size");
  if (withRings && numRings < 1)
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) + ": num_rings is " + str(numRings) +
             "; pass a positive ring count (at most that many sequences "
             "live at once)");
  if (withRings &&
      (ringTokens < 1 || ringTokens > ATTNRT_CACHE_MAX_RING_TOKENS))
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) + ": ring_tokens is " + str(ringTokens) +
             "; pass the cache's residual R, 1 to " +
             str(ATTNRT_CACHE_MAX_RING_TOKENS) + " (docs/kv-cache.md)");
  if (withRings && numRings > kInt32Max / ringTokens)
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) + ": num_rings * ring_tokens = " + str(numRings) +
             " * " + str(ringTokens) + " exceeds " + str(kInt32Max) +
             " (ring slots are i32); use at most " +
             str(kInt32Max / ringTokens) + " rings of this size");
  if (specs.empty())
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) + ": no components; pass at least one paged "
                           "component (e.g. k_pages)");

  std::set<std::string> seen;
  bool anyPaged = false;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const ComponentSpec &c = specs[i];
    std::string where =
        std::string(fn) + ": component " + str(static_cast<int64_t>(i));
    if (c.name.empty())
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           where + " has an empty name; name it after its kernel argument "
                   "suffix (k_pages, v_pages, k_scale, ...)");
    where += " '" + c.name + "'";
    if (!seen.insert(c.name).second)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           where + " repeats an earlier name; component names must be "
                   "unique");
    if (c.bytes <= 0)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           where + " has " + str(c.bytes) + " bytes" +
               (c.kind == Kind::PerPage   ? " per page"
                : c.kind == Kind::PerRing ? " per ring"
                                          : "") +
               "; pass a positive size");
    if (c.kind == Kind::PerRing) {
      if (!withRings)
        fail(ATTNRT_ERR_INVALID_ARGUMENT,
             where + " is per ring (paged = ATTNRT_CACHE_PER_RING) but the "
                     "pool has no rings; create it with "
                     "attnrt_cache_pool_create_with_rings");
      if (c.bytes > std::numeric_limits<int64_t>::max() / numRings)
        fail(ATTNRT_ERR_INVALID_ARGUMENT,
             where + ": " + str(numRings) + " rings of " + str(c.bytes) +
                 " bytes overflow int64; use fewer rings");
    }
    if (c.kind == Kind::PerPage) {
      anyPaged = true;
      if (c.bytes > std::numeric_limits<int64_t>::max() / numPages ||
          bytesPerPage >
              std::numeric_limits<int64_t>::max() / numPages - c.bytes)
        fail(ATTNRT_ERR_INVALID_ARGUMENT,
             where + ": " + str(numPages) + " pages of " + str(c.bytes) +
                 " bytes overflow int64; use fewer pages");
      bytesPerPage += c.bytes;
    }
  }
  if (!anyPaged)
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) + ": no paged component; at least one component "
                           "(k_pages) must have paged = 1");

  components.reserve(specs.size());
  for (ComponentSpec &c : specs) {
    int64_t total = c.kind == Kind::PerPage   ? c.bytes * numPages
                    : c.kind == Kind::PerRing ? c.bytes * numRings
                                              : c.bytes;
    // Round up so the allocation is a whole number of alignment units.
    std::size_t size = (static_cast<std::size_t>(total) + kAlignment - 1) /
                       kAlignment * kAlignment;
    unsigned char *p = nullptr;
    try {
      p = static_cast<unsigned char *>(
          ::operator new(size, std::align_val_t(kAlignment)));
    } catch (const std::bad_alloc &) {
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           std::string(fn) + ": out of memory allocating " + str(total) +
               " bytes for component '" + c.name +
               "'; create the pool with fewer pages");
    }
    std::memset(p, 0, size);
    components.push_back({std::move(c.name), c.kind, c.bytes,
                          std::unique_ptr<unsigned char[], AlignedFree>(p)});
  }

  // Popping from the back hands out pages 0, 1, 2, ... first.
  freeList.reserve(static_cast<std::size_t>(numPages));
  for (int64_t p = numPages - 1; p >= 0; --p)
    freeList.push_back(static_cast<int32_t>(p));
  refcounts.assign(static_cast<std::size_t>(numPages), 0);
  // Likewise rings 0, 1, 2, ...
  freeRings.reserve(static_cast<std::size_t>(numRings));
  for (int64_t r = numRings - 1; r >= 0; --r)
    freeRings.push_back(static_cast<int32_t>(r));
}

int64_t CachePool::totalBytes(const Component &c) const {
  return c.kind == Kind::PerPage   ? c.bytes * numPages
         : c.kind == Kind::PerRing ? c.bytes * numRings
                                   : c.bytes;
}

void CachePool::buffer(int component, void **data, int64_t *bytes) {
  if (component < 0 || component >= numComponents())
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         "attnrt_cache_pool_buffer: component " + str(component) +
             " is out of range; the pool has " + str(numComponents()) +
             " components (0.." + str(numComponents() - 1) + ")");
  const Component &c = components[component];
  if (data)
    *data = c.data.get();
  if (bytes)
    *bytes = totalBytes(c);
}

int CachePool::findComponent(const std::string &name) const {
  std::vector<std::string> names;
  for (int i = 0; i < numComponents(); ++i) {
    if (components[i].name == name)
      return i;
    names.push_back(components[i].name);
  }
  fail(ATTNRT_ERR_INVALID_ARGUMENT,
       "attnrt_cache_pool_find_component: no component '" + name +
           "'; the pool has " + joinNames(names));
}

attnrt_cache_stats CachePool::stats() const {
  attnrt_cache_stats s;
  s.page_size = pageSize;
  s.num_pages = numPages;
  s.free_pages = static_cast<int64_t>(freeList.size());
  s.used_pages = numPages - s.free_pages;
  s.num_sequences = static_cast<int64_t>(sequences.size());
  s.bytes_per_page = bytesPerPage;
  s.bytes_per_token =
      static_cast<double>(bytesPerPage) / static_cast<double>(pageSize);
  s.bytes_in_use = s.used_pages * bytesPerPage;
  s.num_rings = numRings;
  s.free_rings = static_cast<int64_t>(freeRings.size());
  return s;
}

const CachePool::Sequence &CachePool::lookup(int64_t seq,
                                             const char *fn) const {
  auto it = sequences.find(seq);
  if (it != sequences.end())
    return it->second;
  if (seq >= 0 && seq < nextId)
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) + ": sequence " + str(seq) +
             " has been freed; ids are not reused, use a live id from "
             "attnrt_cache_seq_create or attnrt_cache_seq_fork");
  fail(ATTNRT_ERR_INVALID_ARGUMENT,
       std::string(fn) + ": sequence " + str(seq) +
           " was never created in this pool (ids so far: " +
           (nextId == 0 ? std::string("none") : "0.." + str(nextId - 1)) +
           "); use an id from attnrt_cache_seq_create or "
           "attnrt_cache_seq_fork of this pool");
}

CachePool::Sequence &CachePool::lookup(int64_t seq, const char *fn) {
  return const_cast<Sequence &>(
      static_cast<const CachePool *>(this)->lookup(seq, fn));
}

int32_t CachePool::takePage() {
  int32_t page = freeList.back();
  freeList.pop_back();
  refcounts[page] = 1;
  return page;
}

void CachePool::releasePage(int32_t page) {
  if (--refcounts[page] == 0)
    freeList.push_back(page); // Within the reserved capacity: never throws.
}

void CachePool::copyPage(int32_t from, int32_t to) {
  for (Component &c : components) {
    if (c.kind != Kind::PerPage)
      continue;
    std::memcpy(c.data.get() + to * c.bytes, c.data.get() + from * c.bytes,
                static_cast<std::size_t>(c.bytes));
  }
}

void CachePool::copyRing(int32_t from, int32_t to) {
  for (Component &c : components) {
    if (c.kind != Kind::PerRing)
      continue;
    std::memcpy(c.data.get() + to * c.bytes, c.data.get() + from * c.bytes,
                static_cast<std::size_t>(c.bytes));
  }
}

namespace {
[[noreturn]] void outOfRings(const char *fn, int64_t numRings, int64_t live) {
  fail(ATTNRT_ERR_OUT_OF_PAGES,
       std::string(fn) + ": no free ring: all " + str(numRings) +
           " rings are owned by the " + str(live) +
           " live sequences (every sequence of a cache with a residual "
           "window owns one); free or preempt a sequence, or create the "
           "pool with more rings");
}
} // namespace

int64_t CachePool::createSequence() {
  if (hasRings() && freeRings.empty())
    outOfRings("attnrt_cache_seq_create", numRings,
               static_cast<int64_t>(sequences.size()));
  int64_t id = nextId;
  // Insert first: if it throws (out of memory), nothing has changed.
  Sequence &s = sequences.emplace(id, Sequence()).first->second;
  ++nextId;
  if (hasRings()) {
    s.ring = freeRings.back();
    freeRings.pop_back();
  }
  return id;
}

int64_t CachePool::fork(int64_t src) {
  const char *fn = "attnrt_cache_seq_fork";
  Sequence copy = lookup(src, fn);
  if (hasRings() && freeRings.empty())
    outOfRings(fn, numRings, static_cast<int64_t>(sequences.size()));
  int64_t id = nextId;
  // Insert first: if it throws (out of memory), no count has changed.
  Sequence &s = sequences.emplace(id, std::move(copy)).first->second;
  ++nextId;
  for (int32_t page : s.pages) // Trimmed entries stay trimmed in the copy.
    if (page != kTrimmed)
      ++refcounts[page];
  if (hasRings()) {
    s.ring = freeRings.back();
    freeRings.pop_back();
    copyRing(sequences.find(src)->second.ring, s.ring);
  }
  return id;
}

void CachePool::free(int64_t seq) {
  Sequence &s = lookup(seq, "attnrt_cache_seq_free");
  for (int32_t page : s.pages)
    if (page != kTrimmed)
      releasePage(page);
  if (s.ring >= 0)
    freeRings.push_back(s.ring); // Within the reserved capacity.
  sequences.erase(seq);
}

void CachePool::trim(int64_t seq, int64_t sinkTokens, int64_t windowTokens) {
  const char *fn = "attnrt_cache_seq_trim";
  Sequence &s = lookup(seq, fn);
  if (sinkTokens < 0 || windowTokens < 0)
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) + ": sink_tokens is " + str(sinkTokens) +
             " and window_tokens is " + str(windowTokens) + " for sequence " +
             str(seq) +
             "; pass the mask's sinks and window (both >= 0; a mask without "
             "a window sees every key, so nothing can be trimmed)");
  // The last query (position length - 1) sees keys >= keepFrom, and later
  // queries only later ones: pages wholly in [sinks, keepFrom) are never
  // read again. The last page holds length - 1, so it always stays, and
  // appends never need a trimmed page.
  int64_t keepFrom = s.length - 1 - windowTokens;
  if (keepFrom <= 0)
    return;
  int64_t end = std::min<int64_t>(keepFrom / pageSize,
                                  static_cast<int64_t>(s.pages.size()));
  for (int64_t p = ceilDiv(sinkTokens, pageSize); p < end; ++p) {
    if (s.pages[p] == kTrimmed)
      continue; // Idempotent.
    releasePage(s.pages[p]);
    s.pages[p] = kTrimmed;
  }
}

void CachePool::requireRings(const char *fn) const {
  if (!hasRings())
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) +
             ": the pool has no rings (its cache has no residual window); "
             "create it with attnrt_cache_pool_create_with_rings, or use "
             "attnrt_cache_seq_append without ring slots");
}

int64_t CachePool::length(int64_t seq) const {
  return lookup(seq, "attnrt_cache_seq_length").length;
}

void CachePool::append(int64_t seq, int64_t numTokens, int32_t *slots,
                       bool withRings, int32_t *ringSlots, const char *fn) {
  if (withRings)
    requireRings(fn);
  Sequence &s = lookup(seq, fn);
  if (numTokens < 0)
    fail(ATTNRT_ERR_INVALID_ARGUMENT, std::string(fn) + ": num_tokens is " +
                                          str(numTokens) + " for sequence " +
                                          str(seq) + "; pass 0 or more");
  if (numTokens == 0)
    return;
  if (!slots)
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) + ": slots_out is NULL for " + str(numTokens) +
             " tokens; pass an int32 array of num_tokens entries");
  if (withRings && !ringSlots)
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) + ": ring_slots_out is NULL for " + str(numTokens) +
             " tokens; pass an int32 array of num_tokens entries");

  int64_t held = static_cast<int64_t>(s.pages.size());
  int64_t room = held * pageSize - s.length; // Free positions, last page.
  bool partial = s.length % pageSize != 0;
  bool cow = partial && refcounts[s.pages.back()] > 1;
  int64_t newPages =
      numTokens <= room ? 0 : ceilDiv(numTokens - room, pageSize);
  int64_t needed = newPages + (cow ? 1 : 0);
  int64_t available = static_cast<int64_t>(freeList.size());
  if (needed > available)
    fail(ATTNRT_ERR_OUT_OF_PAGES,
         std::string(fn) + ": sequence " + str(seq) + " (" + str(s.length) +
             " tokens) needs " + str(needed) + " free pages to append " +
             str(numTokens) + " tokens (" + str(newPages) + " new" +
             (cow ? " + 1 copy of its shared last page " + str(s.pages.back())
                  : std::string()) +
             ") but the pool has " + str(available) + " free of " +
             str(numPages) +
             "; free or preempt sequences, or create a larger pool");

  // May throw (out of memory) before anything has changed.
  s.pages.reserve(static_cast<std::size_t>(held + newPages));
  if (cow) {
    int32_t shared = s.pages.back();
    int32_t copy = takePage();
    copyPage(shared, copy);
    --refcounts[shared]; // Still > 0: another sequence holds it.
    s.pages.back() = copy;
  }
  for (int64_t i = 0; i < newPages; ++i)
    s.pages.push_back(takePage());
  for (int64_t i = 0; i < numTokens; ++i) {
    int64_t pos = s.length + i;
    slots[i] = static_cast<int32_t>(s.pages[pos / pageSize] * pageSize +
                                    pos % pageSize);
    if (withRings)
      ringSlots[i] =
          static_cast<int32_t>(s.ring * ringTokens + pos % ringTokens);
  }
  s.length += numTokens;
}

int64_t CachePool::pageTableSize(const int64_t *seqs, int numSeqs,
                                 const char *fn) const {
  if (numSeqs < 0)
    fail(ATTNRT_ERR_INVALID_ARGUMENT, std::string(fn) + ": num_seqs is " +
                                          str(numSeqs) + "; pass 0 or more");
  if (numSeqs > 0 && !seqs)
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) + ": seqs is NULL for " + str(numSeqs) +
             " sequences; pass an array of num_seqs sequence ids");
  int64_t total = 0;
  for (int b = 0; b < numSeqs; ++b)
    total += static_cast<int64_t>(lookup(seqs[b], fn).pages.size());
  return total;
}

void CachePool::pageTable(const int64_t *seqs, int numSeqs, int32_t *indptr,
                          int32_t *indices, int64_t capacity,
                          int32_t *lastPageLen) const {
  const char *fn = "attnrt_cache_page_table";
  int64_t total = pageTableSize(seqs, numSeqs, fn);
  if (!indptr)
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) +
             ": kv_indptr is NULL; pass an int32 array of "
             "num_seqs + 1 = " +
             str(int64_t(numSeqs) + 1) + " entries");
  if (numSeqs > 0 && !lastPageLen)
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) +
             ": kv_last_page_len is NULL; pass an int32 "
             "array of num_seqs = " +
             str(numSeqs) + " entries");
  if (capacity < 0)
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) + ": indices_capacity is " + str(capacity) +
             "; pass the size of kv_indices (0 or more)");
  if (total > kInt32Max)
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) + ": the batch references " + str(total) +
             " pages, more than an i32 kv_indptr can index; split the "
             "batch");
  if (total > capacity)
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) + ": kv_indices needs " + str(total) +
             " entries but indices_capacity is " + str(capacity) +
             "; size it with attnrt_cache_page_table_size");
  if (total > 0 && !indices)
    fail(ATTNRT_ERR_INVALID_ARGUMENT, std::string(fn) +
                                          ": kv_indices is NULL but " +
                                          str(total) + " entries are needed");

  int64_t at = 0;
  indptr[0] = 0;
  for (int b = 0; b < numSeqs; ++b) {
    const Sequence &s = sequences.find(seqs[b])->second;
    for (int32_t page : s.pages)
      indices[at++] = page;
    indptr[b + 1] = static_cast<int32_t>(at);
    int64_t pages = static_cast<int64_t>(s.pages.size());
    lastPageLen[b] = static_cast<int32_t>(
        pages == 0 ? 0 : s.length - (pages - 1) * pageSize);
  }
}

void CachePool::rings(const int64_t *seqs, int numSeqs, int32_t *out) const {
  const char *fn = "attnrt_cache_rings";
  requireRings(fn);
  if (numSeqs < 0)
    fail(ATTNRT_ERR_INVALID_ARGUMENT, std::string(fn) + ": num_seqs is " +
                                          str(numSeqs) + "; pass 0 or more");
  if (numSeqs > 0 && (!seqs || !out))
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) + ": " + (seqs ? "rings_out" : "seqs") +
             " is NULL for " + str(numSeqs) +
             " sequences; pass an array of num_seqs entries");
  for (int b = 0; b < numSeqs; ++b) // Check all before writing anything.
    lookup(seqs[b], fn);
  for (int b = 0; b < numSeqs; ++b)
    out[b] = sequences.find(seqs[b])->second.ring;
}

int64_t CachePool::refcount(int64_t page) const {
  if (page < 0 || page >= numPages)
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         "attnrt_cache_page_refcount: page " + str(page) +
             " is out of range; the pool has pages 0.." + str(numPages - 1));
  return refcounts[page];
}

void CachePool::check() const {
  const std::string fn = "attnrt_cache_pool_check: ";
  auto broken = [&](const std::string &what) {
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         fn + what + " (an attnrt bug; please report it)");
  };
  std::vector<int64_t> counted(static_cast<std::size_t>(numPages), 0);
  for (const auto &[id, s] : sequences) {
    if (id < 0 || id >= nextId)
      broken("sequence id " + str(id) + " is outside 0.." + str(nextId - 1));
    if (s.length < 0 ||
        static_cast<int64_t>(s.pages.size()) != ceilDiv(s.length, pageSize))
      broken("sequence " + str(id) + " has " + str(s.length) + " tokens but " +
             str(static_cast<int64_t>(s.pages.size())) + " pages");
    if (!s.pages.empty() && s.pages.back() == kTrimmed)
      broken("sequence " + str(id) + " has its last page trimmed");
    std::set<int32_t> own;
    for (int32_t page : s.pages) {
      if (page == kTrimmed)
        continue;
      if (page < 0 || page >= numPages)
        broken("sequence " + str(id) + " references page " + str(page) +
               ", out of range");
      if (!own.insert(page).second)
        broken("sequence " + str(id) + " references page " + str(page) +
               " twice");
      ++counted[page];
    }
  }
  std::vector<char> onFreeList(static_cast<std::size_t>(numPages), 0);
  for (int32_t page : freeList) {
    if (page < 0 || page >= numPages)
      broken("free list holds page " + str(page) + ", out of range");
    if (onFreeList[page])
      broken("free list holds page " + str(page) + " twice");
    onFreeList[page] = 1;
  }
  for (int64_t p = 0; p < numPages; ++p) {
    if (refcounts[p] != counted[p])
      broken("page " + str(p) + " has reference count " + str(refcounts[p]) +
             " but " + str(counted[p]) + " sequences reference it");
    if ((counted[p] == 0) != (onFreeList[p] != 0))
      broken("page " + str(p) + " is " +
             (onFreeList[p] ? "on the free list" : "not on the free list") +
             " with " + str(counted[p]) + " references");
  }

  // Rings: each live sequence owns a distinct one, the free stack holds
  // exactly the others once each.
  std::vector<int64_t> owner(static_cast<std::size_t>(numRings), -1);
  for (const auto &[id, s] : sequences) {
    if (!hasRings()) {
      if (s.ring != -1)
        broken("sequence " + str(id) + " owns ring " + str(s.ring) +
               " in a pool without rings");
      continue;
    }
    if (s.ring < 0 || s.ring >= numRings)
      broken("sequence " + str(id) + " owns ring " + str(s.ring) +
             ", out of range 0.." + str(numRings - 1));
    if (owner[s.ring] >= 0)
      broken("ring " + str(s.ring) + " is owned by sequences " +
             str(owner[s.ring]) + " and " + str(id));
    owner[s.ring] = id;
  }
  std::vector<char> ringFree(static_cast<std::size_t>(numRings), 0);
  for (int32_t r : freeRings) {
    if (r < 0 || r >= numRings)
      broken("free ring list holds ring " + str(r) + ", out of range");
    if (ringFree[r])
      broken("free ring list holds ring " + str(r) + " twice");
    ringFree[r] = 1;
  }
  for (int64_t r = 0; r < numRings; ++r)
    if ((owner[r] < 0) != (ringFree[r] != 0))
      broken("ring " + str(r) + " is " +
             (ringFree[r] ? "on the free ring list and owned by sequence " +
                                str(owner[r])
                          : std::string("neither free nor owned")));
}

//===----------------------------------------------------------------------===//
// C API
//===----------------------------------------------------------------------===//

struct attnrt_cache_pool {
  std::unique_ptr<CachePool> impl;
};

namespace {

template <typename Pool> Pool *requirePool(Pool *pool, const char *fn) {
  if (!pool)
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) +
             ": pool is NULL; create one with attnrt_cache_pool_create");
  return pool;
}

template <typename T>
void requireOut(T *out, const char *fn, const char *name) {
  if (!out)
    fail(ATTNRT_ERR_INVALID_ARGUMENT, std::string(fn) + ": " + name +
                                          " is NULL; pass where to store the "
                                          "result");
}

} // namespace

namespace {

attnrt_status createPool(const char *fn, int64_t pageSize,
                         const attnrt_cache_component *components,
                         int numComponents, int64_t numPages, bool withRings,
                         int64_t numRings, int64_t ringTokens,
                         attnrt_cache_pool **out) {
  return guard([&] {
    requireOut(out, fn, "out");
    *out = nullptr;
    if (numComponents < 0 || (numComponents > 0 && !components))
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           std::string(fn) + ": components is " +
               (components ? "given" : "NULL") + " with num_components " +
               str(numComponents) +
               "; pass an array of num_components (>= 1) components");
    std::vector<CachePool::ComponentSpec> specs;
    for (int i = 0; i < numComponents; ++i) {
      if (!components[i].name)
        fail(ATTNRT_ERR_INVALID_ARGUMENT,
             std::string(fn) + ": component " + str(i) +
                 " has a NULL name; name it (k_pages, v_pages, k_scale, ...)");
      int kind = components[i].paged;
      if (kind != ATTNRT_CACHE_TOTAL && kind != ATTNRT_CACHE_PER_PAGE &&
          kind != ATTNRT_CACHE_PER_RING)
        fail(ATTNRT_ERR_INVALID_ARGUMENT,
             std::string(fn) + ": component " + str(i) + " '" +
                 components[i].name + "' has paged = " + str(kind) +
                 "; pass 0 (bytes in total), 1 (per page) or 2 (per ring)");
      specs.push_back({components[i].name,
                       kind == ATTNRT_CACHE_PER_PAGE ? CachePool::Kind::PerPage
                       : kind == ATTNRT_CACHE_PER_RING
                           ? CachePool::Kind::PerRing
                           : CachePool::Kind::Total,
                       components[i].bytes});
    }
    auto pool = std::make_unique<attnrt_cache_pool>();
    pool->impl =
        std::make_unique<CachePool>(pageSize, std::move(specs), numPages,
                                    withRings, numRings, ringTokens, fn);
    *out = pool.release();
  });
}

} // namespace

extern "C" attnrt_status attnrt_cache_pool_create(
    int64_t pageSize, const attnrt_cache_component *components,
    int numComponents, int64_t numPages, attnrt_cache_pool **out) {
  return createPool("attnrt_cache_pool_create", pageSize, components,
                    numComponents, numPages, false, 0, 0, out);
}

extern "C" attnrt_status attnrt_cache_pool_create_with_rings(
    int64_t pageSize, const attnrt_cache_component *components,
    int numComponents, int64_t numPages, int64_t numRings, int64_t ringTokens,
    attnrt_cache_pool **out) {
  return createPool("attnrt_cache_pool_create_with_rings", pageSize, components,
                    numComponents, numPages, true, numRings, ringTokens, out);
}

extern "C" void attnrt_cache_pool_destroy(attnrt_cache_pool *pool) {
  delete pool;
}

extern "C" attnrt_status attnrt_cache_pool_buffer(attnrt_cache_pool *pool,
                                                  int component, void **data,
                                                  int64_t *bytes) {
  return guard([&] {
    requirePool(pool, "attnrt_cache_pool_buffer")
        ->impl->buffer(component, data, bytes);
  });
}

extern "C" attnrt_status
attnrt_cache_pool_find_component(const attnrt_cache_pool *pool,
                                 const char *name, int *index) {
  return guard([&] {
    const char *fn = "attnrt_cache_pool_find_component";
    requirePool(pool, fn);
    requireOut(index, fn, "index");
    if (!name)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           std::string(fn) + ": name is NULL; pass a component name");
    *index = pool->impl->findComponent(name);
  });
}

extern "C" attnrt_status attnrt_cache_pool_stats(const attnrt_cache_pool *pool,
                                                 attnrt_cache_stats *out) {
  return guard([&] {
    const char *fn = "attnrt_cache_pool_stats";
    requirePool(pool, fn);
    requireOut(out, fn, "out");
    *out = pool->impl->stats();
  });
}

extern "C" attnrt_status attnrt_cache_seq_create(attnrt_cache_pool *pool,
                                                 int64_t *seq) {
  return guard([&] {
    const char *fn = "attnrt_cache_seq_create";
    requirePool(pool, fn);
    requireOut(seq, fn, "seq");
    *seq = pool->impl->createSequence();
  });
}

extern "C" attnrt_status attnrt_cache_seq_fork(attnrt_cache_pool *pool,
                                               int64_t src, int64_t *out) {
  return guard([&] {
    const char *fn = "attnrt_cache_seq_fork";
    requirePool(pool, fn);
    requireOut(out, fn, "out");
    *out = pool->impl->fork(src);
  });
}

extern "C" attnrt_status attnrt_cache_seq_free(attnrt_cache_pool *pool,
                                               int64_t seq) {
  return guard(
      [&] { requirePool(pool, "attnrt_cache_seq_free")->impl->free(seq); });
}

extern "C" attnrt_status attnrt_cache_seq_trim(attnrt_cache_pool *pool,
                                               int64_t seq, int64_t sinkTokens,
                                               int64_t windowTokens) {
  return guard([&] {
    requirePool(pool, "attnrt_cache_seq_trim")
        ->impl->trim(seq, sinkTokens, windowTokens);
  });
}

extern "C" attnrt_status attnrt_cache_seq_length(const attnrt_cache_pool *pool,
                                                 int64_t seq, int64_t *len) {
  return guard([&] {
    const char *fn = "attnrt_cache_seq_length";
    requirePool(pool, fn);
    requireOut(len, fn, "len");
    *len = pool->impl->length(seq);
  });
}

extern "C" attnrt_status attnrt_cache_seq_append(attnrt_cache_pool *pool,
                                                 int64_t seq, int64_t numTokens,
                                                 int32_t *slotsOut) {
  return guard([&] {
    requirePool(pool, "attnrt_cache_seq_append")
        ->impl->append(seq, numTokens, slotsOut);
  });
}

extern "C" attnrt_status
attnrt_cache_seq_append_with_rings(attnrt_cache_pool *pool, int64_t seq,
                                   int64_t numTokens, int32_t *slotsOut,
                                   int32_t *ringSlotsOut) {
  return guard([&] {
    const char *fn = "attnrt_cache_seq_append_with_rings";
    requirePool(pool, fn)->impl->append(seq, numTokens, slotsOut, true,
                                        ringSlotsOut, fn);
  });
}

extern "C" attnrt_status attnrt_cache_rings(const attnrt_cache_pool *pool,
                                            const int64_t *seqs, int numSeqs,
                                            int32_t *ringsOut) {
  return guard([&] {
    requirePool(pool, "attnrt_cache_rings")
        ->impl->rings(seqs, numSeqs, ringsOut);
  });
}

extern "C" attnrt_status
attnrt_cache_page_table_size(const attnrt_cache_pool *pool, const int64_t *seqs,
                             int numSeqs, int64_t *numRefs) {
  return guard([&] {
    const char *fn = "attnrt_cache_page_table_size";
    requirePool(pool, fn);
    requireOut(numRefs, fn, "num_refs");
    *numRefs = pool->impl->pageTableSize(seqs, numSeqs, fn);
  });
}

extern "C" attnrt_status
attnrt_cache_page_table(const attnrt_cache_pool *pool, const int64_t *seqs,
                        int numSeqs, int32_t *kvIndptr, int32_t *kvIndices,
                        int64_t indicesCapacity, int32_t *kvLastPageLen) {
  return guard([&] {
    requirePool(pool, "attnrt_cache_page_table")
        ->impl->pageTable(seqs, numSeqs, kvIndptr, kvIndices, indicesCapacity,
                          kvLastPageLen);
  });
}

extern "C" attnrt_status
attnrt_cache_page_refcount(const attnrt_cache_pool *pool, int64_t page,
                           int64_t *refcount) {
  return guard([&] {
    const char *fn = "attnrt_cache_page_refcount";
    requirePool(pool, fn);
    requireOut(refcount, fn, "refcount");
    *refcount = pool->impl->refcount(page);
  });
}

extern "C" attnrt_status
attnrt_cache_pool_check(const attnrt_cache_pool *pool) {
  return guard(
      [&] { requirePool(pool, "attnrt_cache_pool_check")->impl->check(); });
}

extern "C" attnrt_status attnrt_page_table_from_block_tables(
    const int32_t *blockTables, int64_t batch, int64_t maxBlocks,
    const int32_t *seqLens, int64_t pageSize, int32_t *kvIndptr,
    int32_t *kvIndices, int64_t indicesCapacity, int32_t *kvLastPageLen) {
  return guard([&] {
    const std::string fn = "attnrt_page_table_from_block_tables: ";
    if (batch < 0 || maxBlocks < 0)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           fn + "batch is " + str(batch) + " and max_blocks is " +
               str(maxBlocks) + "; both must be 0 or more");
    if (batch >= kInt32Max)
      fail(ATTNRT_ERR_INVALID_ARGUMENT, fn + "batch is " + str(batch) +
                                            "; at most " + str(kInt32Max - 1) +
                                            " sequences fit an i32 page table");
    if (pageSize < 1)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           fn + "page_size is " + str(pageSize) +
               "; pass the block size (tokens per page, >= 1)");
    if (indicesCapacity < 0)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           fn + "indices_capacity is " + str(indicesCapacity) +
               "; pass the size of kv_indices (0 or more)");
    if (!kvIndptr)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           fn + "kv_indptr is NULL; pass an int32 array of batch + 1 = " +
               str(batch + 1) + " entries");
    if (batch > 0 && (!seqLens || !kvLastPageLen))
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           fn + (seqLens ? "kv_last_page_len" : "seq_lens") +
               " is NULL; pass an int32 array of batch = " + str(batch) +
               " entries");
    if (batch > 0 && maxBlocks > 0 && !blockTables)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           fn + "block_tables is NULL; pass the int32 [batch, max_blocks] = [" +
               str(batch) + ", " + str(maxBlocks) + "] table");

    // Validate everything and size the result before writing anything.
    int64_t total = 0;
    for (int64_t b = 0; b < batch; ++b) {
      int64_t len = seqLens[b];
      if (len < 0)
        fail(ATTNRT_ERR_INVALID_ARGUMENT,
             fn + "seq_lens[" + str(b) + "] is " + str(len) +
                 "; sequence lengths must be 0 or more");
      int64_t pages = ceilDiv(len, pageSize);
      if (pages > maxBlocks)
        fail(ATTNRT_ERR_INVALID_ARGUMENT,
             fn + "sequence " + str(b) + " has " + str(len) +
                 " tokens = " + str(pages) + " pages of " + str(pageSize) +
                 " but block_tables has only max_blocks = " + str(maxBlocks) +
                 " columns; check seq_lens, page_size and max_blocks");
      for (int64_t j = 0; j < pages; ++j)
        if (blockTables[b * maxBlocks + j] < 0)
          fail(ATTNRT_ERR_INVALID_ARGUMENT,
               fn + "block_tables[" + str(b) + ", " + str(j) + "] is " +
                   str(blockTables[b * maxBlocks + j]) + " but sequence " +
                   str(b) + " (" + str(len) +
                   " tokens) uses that block; pass a page number >= 0");
      total += pages;
    }
    if (total > kInt32Max)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           fn + "the batch references " + str(total) +
               " pages, more than an i32 kv_indptr can index; split the "
               "batch");
    if (total > indicesCapacity)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           fn + "kv_indices needs " + str(total) +
               " entries but indices_capacity is " + str(indicesCapacity) +
               "; pass an array of at least " + str(total));
    if (total > 0 && !kvIndices)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           fn + "kv_indices is NULL but " + str(total) + " entries are needed");

    int64_t at = 0;
    kvIndptr[0] = 0;
    for (int64_t b = 0; b < batch; ++b) {
      int64_t len = seqLens[b];
      int64_t pages = ceilDiv(len, pageSize);
      for (int64_t j = 0; j < pages; ++j)
        kvIndices[at++] = blockTables[b * maxBlocks + j];
      kvIndptr[b + 1] = static_cast<int32_t>(at);
      kvLastPageLen[b] =
          static_cast<int32_t>(pages == 0 ? 0 : len - (pages - 1) * pageSize);
    }
  });
}
