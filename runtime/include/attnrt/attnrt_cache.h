/*===- attnrt_cache.h - KV-cache page pool C API ------------------*- C -*-===*\
|*                                                                            *|
|* A page pool per KV cache: component buffers laid out [num_pages][bytes    *|
|* per page], sequences as lists of pages with reference counts (fork shares *|
|* a prefix, append copies a shared partly filled last page first), a ring   *|
|* per sequence for caches with a residual window, the FlashInfer CSR page   *|
|* table of a batch, and exact byte accounting. See                          *|
|* docs/kv-cache.md (the contract) and docs/runtime.md (this API).           *|
|*                                                                            *|
|* A pool is NOT thread-safe: use one pool per serving thread, or guard all  *|
|* calls on one pool with an external lock.                                  *|
|*                                                                            *|
\*===----------------------------------------------------------------------===*/

#ifndef ATTNRT_ATTNRT_CACHE_H
#define ATTNRT_ATTNRT_CACHE_H

#include "attnrt/attnrt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest page size (tokens per page) a pool accepts (docs/kv-cache.md). */
#define ATTNRT_CACHE_MAX_PAGE_SIZE 256

/* Values of attnrt_cache_component.paged. */
#define ATTNRT_CACHE_TOTAL 0    /* `bytes` in total (fp8 per-head scales) */
#define ATTNRT_CACHE_PER_PAGE 1 /* `bytes` per page */
#define ATTNRT_CACHE_PER_RING 2 /* `bytes` per ring (residual window) */

/* Largest ring (tokens of the residual window) a pool accepts. */
#define ATTNRT_CACHE_MAX_RING_TOKENS 4096

/* One buffer of a cache format. Paged components (k_pages, v_pages, per-page
 * scales and minima) have `bytes` per page and are laid out
 * [num_pages][bytes]: page p occupies bytes [p * bytes, (p + 1) * bytes).
 * Per-ring components (k_recent, v_recent of a cache with a residual window;
 * only in pools made by attnrt_cache_pool_create_with_rings) have `bytes`
 * per ring and are laid out [num_rings][bytes]. Non-paged components (fp8
 * per-head scales) have `bytes` in total; the pool only owns them (never
 * copies or clears them after creation). */
typedef struct attnrt_cache_component {
  const char *name; /* unique, non-empty; copied by the pool */
  int paged;        /* ATTNRT_CACHE_TOTAL, _PER_PAGE or _PER_RING */
  int64_t bytes;    /* positive */
} attnrt_cache_component;

typedef struct attnrt_cache_stats {
  int64_t page_size;      /* tokens per page */
  int64_t num_pages;      /* pages in the pool */
  int64_t free_pages;     /* pages on the free list */
  int64_t used_pages;     /* pages referenced by at least one sequence */
  int64_t num_sequences;  /* live sequences */
  int64_t bytes_per_page; /* sum of the paged components' bytes per page */
  double bytes_per_token; /* bytes_per_page / page_size */
  int64_t bytes_in_use;   /* used_pages * bytes_per_page */
  int64_t num_rings;      /* rings in the pool (0: a pool without rings) */
  int64_t free_rings;     /* rings not owned by a live sequence */
} attnrt_cache_stats;

typedef struct attnrt_cache_pool attnrt_cache_pool;

/* Creates a pool of num_pages pages of page_size (1..256) tokens. Every
 * component buffer is allocated 64-byte aligned and zero-filled. Requires at
 * least one paged component and num_pages * page_size <= INT32_MAX (slots
 * are i32). *out is NULL on failure. */
ATTNRT_API attnrt_status attnrt_cache_pool_create(
    int64_t page_size, const attnrt_cache_component *components,
    int num_components, int64_t num_pages, attnrt_cache_pool **out);
/* Like attnrt_cache_pool_create, for a cache with a residual window of
 * ring_tokens = R (1..4096) tokens: the pool also has num_rings (>= 1)
 * rings, and every live sequence owns one (so at most num_rings sequences
 * live at once). Components may be ATTNRT_CACHE_PER_RING; num_rings *
 * ring_tokens <= INT32_MAX (ring slots are i32). */
ATTNRT_API attnrt_status attnrt_cache_pool_create_with_rings(
    int64_t page_size, const attnrt_cache_component *components,
    int num_components, int64_t num_pages, int64_t num_rings,
    int64_t ring_tokens, attnrt_cache_pool **out);
/* Frees the pool, its buffers and all its sequences. NULL is a no-op. */
ATTNRT_API void attnrt_cache_pool_destroy(attnrt_cache_pool *pool);

/* The buffer of component `component` (index in the create list) and its
 * size in bytes (num_pages * bytes for paged components, num_rings * bytes
 * for per-ring ones). Either output may
 * be NULL. Buffers never move for the lifetime of the pool. */
ATTNRT_API attnrt_status attnrt_cache_pool_buffer(attnrt_cache_pool *pool,
                                                  int component, void **data,
                                                  int64_t *bytes);
/* Index of the component called `name`. */
ATTNRT_API attnrt_status attnrt_cache_pool_find_component(
    const attnrt_cache_pool *pool, const char *name, int *index);
ATTNRT_API attnrt_status attnrt_cache_pool_stats(const attnrt_cache_pool *pool,
                                                 attnrt_cache_stats *out);

/* New empty sequence. Ids are never reused within a pool, so a freed id is
 * always reported as such. In a pool with rings the sequence takes a free
 * ring (its contents are stale until appended to); when none is free this
 * fails with ATTNRT_ERR_OUT_OF_PAGES and changes nothing. */
ATTNRT_API attnrt_status attnrt_cache_seq_create(attnrt_cache_pool *pool,
                                                 int64_t *seq);
/* New sequence sharing all of src's pages and tokens (reference counts +1,
 * no page is copied). In a pool with rings it takes a free ring and copies
 * src's ring into it (every per-ring component); no free ring:
 * ATTNRT_ERR_OUT_OF_PAGES, nothing changed. */
ATTNRT_API attnrt_status attnrt_cache_seq_fork(attnrt_cache_pool *pool,
                                               int64_t src, int64_t *out);
/* Drops the sequence; each of its pages whose reference count reaches 0
 * returns to the free list, and its ring (if any) is free again. */
ATTNRT_API attnrt_status attnrt_cache_seq_free(attnrt_cache_pool *pool,
                                               int64_t seq);
ATTNRT_API attnrt_status attnrt_cache_seq_length(const attnrt_cache_pool *pool,
                                                 int64_t seq, int64_t *len);

/* Returns to the pool the pages of seq that a paged_attention with a
 * sliding window (window = window_tokens, sinks = sink_tokens, bottom-right
 * aligned) can never read again: those wholly outside positions
 * [0, sink_tokens) and [len - 1 - window_tokens, len), len = seq's length
 * (the last query sees keys >= len - 1 - window_tokens; later queries only
 * later keys). Each such page's reference count drops by one (the page is
 * free at 0; a fork keeps its own reference) and seq's page-table entry for
 * it becomes -1: attnrt_cache_page_table writes -1 there, and attnrt accepts
 * such entries only for kernels whose masks cannot see them
 * (docs/runtime.md). The sequence keeps its length; appends go on as
 * before, fork copies the -1 entries, free skips them. Idempotent; call it
 * again after appends to trim the pages that fell out of the window since.
 * sink_tokens, window_tokens >= 0. */
ATTNRT_API attnrt_status attnrt_cache_seq_trim(attnrt_cache_pool *pool,
                                               int64_t seq, int64_t sink_tokens,
                                               int64_t window_tokens);

/* Reserves the next num_tokens (>= 0) positions of seq and writes their slots
 * (slot = page * page_size + offset) to slots_out[0 .. num_tokens), which may
 * be NULL only when num_tokens is 0. Allocates pages as needed; if the last
 * page is partly filled and shared with another sequence, it is first copied
 * (every paged component's whole page) to a free page that replaces it in
 * seq. All or nothing: when the pool lacks a page this needs, it returns
 * ATTNRT_ERR_OUT_OF_PAGES and leaves the pool, the sequence and slots_out
 * unchanged. */
ATTNRT_API attnrt_status attnrt_cache_seq_append(attnrt_cache_pool *pool,
                                                 int64_t seq,
                                                 int64_t num_tokens,
                                                 int32_t *slots_out);

/* attnrt_cache_seq_append that also writes the ring slots of the new
 * positions (pool with rings only): ring_slots_out[i] = ring * R + (length
 * + i) % R, where ring is seq's ring and length its length before the call
 * (with num_tokens > R, earlier positions share slots with later ones:
 * write them in order). ring_slots_out may be NULL only when num_tokens is
 * 0. All or nothing, as attnrt_cache_seq_append. */
ATTNRT_API attnrt_status attnrt_cache_seq_append_with_rings(
    attnrt_cache_pool *pool, int64_t seq, int64_t num_tokens,
    int32_t *slots_out, int32_t *ring_slots_out);
/* The ring of each of seqs[0 .. num_seqs) (paged_attention's kv_rings) into
 * rings_out[0 .. num_seqs). Pool with rings only; nothing is written on
 * failure. */
ATTNRT_API attnrt_status attnrt_cache_rings(const attnrt_cache_pool *pool,
                                            const int64_t *seqs, int num_seqs,
                                            int32_t *rings_out);

/* Number of kv_indices entries attnrt_cache_page_table needs for seqs
 * (trimmed entries included). */
ATTNRT_API attnrt_status
attnrt_cache_page_table_size(const attnrt_cache_pool *pool, const int64_t *seqs,
                             int num_seqs, int64_t *num_refs);
/* FlashInfer CSR page table of the batch seqs[0 .. num_seqs) (a sequence may
 * appear more than once): kv_indptr [num_seqs + 1], kv_indices
 * [indices_capacity], kv_last_page_len [num_seqs]. A sequence with no token
 * has no page and last_page_len 0; a trimmed page (attnrt_cache_seq_trim)
 * keeps its entry, written as -1. Nothing is written on failure. */
ATTNRT_API attnrt_status
attnrt_cache_page_table(const attnrt_cache_pool *pool, const int64_t *seqs,
                        int num_seqs, int32_t *kv_indptr, int32_t *kv_indices,
                        int64_t indices_capacity, int32_t *kv_last_page_len);

/* Number of sequences referencing page (0 = free). For tests and debugging. */
ATTNRT_API attnrt_status attnrt_cache_page_refcount(
    const attnrt_cache_pool *pool, int64_t page, int64_t *refcount);
/* Recomputes every invariant from scratch (reference counts equal the number
 * of sequence references, the free list holds exactly the unreferenced pages
 * once each, sequence lengths match their page counts, every live sequence
 * of a pool with rings owns a distinct ring and the free rings are exactly
 * the unowned ones). ATTNRT_OK, or
 * ATTNRT_ERR_INVALID_ARGUMENT naming the first broken invariant (an attnrt
 * bug). O(pages + references); for tests and debugging. */
ATTNRT_API attnrt_status attnrt_cache_pool_check(const attnrt_cache_pool *pool);

/* Converts vLLM's padded block_tables [batch, max_blocks] (row-major) and
 * seq_lens [batch] to the CSR page table: row b keeps its first
 * ceil(seq_lens[b] / page_size) entries, kv_last_page_len[b] = seq_lens[b] -
 * (pages - 1) * page_size (0 for an empty sequence). page_size >= 1.
 * kv_indptr [batch + 1], kv_indices [indices_capacity], kv_last_page_len
 * [batch]. Fails (writing nothing) on a negative seq_len, a row needing more
 * than max_blocks pages, a negative page number among the kept entries, or a
 * too small indices_capacity (the message gives the size needed). */
ATTNRT_API attnrt_status attnrt_page_table_from_block_tables(
    const int32_t *block_tables, int64_t batch, int64_t max_blocks,
    const int32_t *seq_lens, int64_t page_size, int32_t *kv_indptr,
    int32_t *kv_indices, int64_t indices_capacity, int32_t *kv_last_page_len);

#ifdef __cplusplus
}
#endif

#endif /* ATTNRT_ATTNRT_CACHE_H */
