/*===- attnrt.h - attnc host runtime C API ------------------------*- C -*-===*\
|*                                                                            *|
|* Loads an attnc host artifact directory (manifest.json + kernel library),   *|
|* describes its kernels and runs them on a thread pool after validating      *|
|* every argument against the manifest. See docs/runtime.md.                  *|
|*                                                                            *|
\*===----------------------------------------------------------------------===*/

#ifndef ATTNRT_ATTNRT_H
#define ATTNRT_ATTNRT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define ATTNRT_API __attribute__((visibility("default")))
#else
#define ATTNRT_API
#endif

/* Every entry point returns a status; on failure attnrt_last_error() holds a
 * one-line message (what failed, where, how to fix it). */
typedef enum attnrt_status {
  ATTNRT_OK = 0,
  ATTNRT_ERR_INVALID_ARGUMENT = 1, /* API misuse: null pointer, bad index */
  ATTNRT_ERR_IO = 2,               /* a file is missing or unreadable */
  ATTNRT_ERR_MANIFEST = 3,         /* manifest.json is not valid JSON/schema */
  ATTNRT_ERR_UNSUPPORTED = 4,      /* format_version or target not supported */
  ATTNRT_ERR_LIBRARY = 5,          /* dlopen or dlsym failed */
  ATTNRT_ERR_NOT_FOUND = 6,        /* no kernel with that name */
  ATTNRT_ERR_VALIDATION = 7,       /* tensors do not match the manifest */
  ATTNRT_ERR_OUT_OF_PAGES = 8,     /* a KV-cache page pool is full */
  ATTNRT_ERR_CUDA = 9              /* a CUDA driver call failed */
} attnrt_status;

typedef enum attnrt_dtype {
  ATTNRT_DTYPE_F32 = 0,
  ATTNRT_DTYPE_F16 = 1,
  ATTNRT_DTYPE_BF16 = 2,
  ATTNRT_DTYPE_I32 = 3,
  ATTNRT_DTYPE_I8 = 4,
  ATTNRT_DTYPE_U8 = 5,       /* also packed pairs of 4-bit values (i4) */
  ATTNRT_DTYPE_F8E4M3FN = 6, /* ml_dtypes.float8_e4m3fn */
  ATTNRT_DTYPE_F8E5M2 = 7    /* ml_dtypes.float8_e5m2 */
} attnrt_dtype;

typedef enum attnrt_role {
  ATTNRT_ROLE_QUERY = 0,
  ATTNRT_ROLE_KEY = 1,
  ATTNRT_ROLE_VALUE = 2,
  ATTNRT_ROLE_CU_SEQLENS_Q = 3,
  ATTNRT_ROLE_CU_SEQLENS_K = 4,
  ATTNRT_ROLE_OUTPUT = 5,
  ATTNRT_ROLE_LSE = 6,
  /* KV-cache components (docs/kv-cache.md), named CACHE_<component>. */
  ATTNRT_ROLE_K_PAGES = 7,
  ATTNRT_ROLE_V_PAGES = 8,
  ATTNRT_ROLE_K_SCALE = 9,
  ATTNRT_ROLE_V_SCALE = 10,
  ATTNRT_ROLE_K_MIN = 11,
  ATTNRT_ROLE_V_MIN = 12,
  /* Page table (CSR) and ragged query offsets. */
  ATTNRT_ROLE_KV_INDPTR = 13,
  ATTNRT_ROLE_KV_INDICES = 14,
  ATTNRT_ROLE_KV_LAST_PAGE_LEN = 15,
  ATTNRT_ROLE_QO_INDPTR = 16,
  /* kv_append inputs. */
  ATTNRT_ROLE_K_NEW = 17,
  ATTNRT_ROLE_V_NEW = 18,
  ATTNRT_ROLE_SLOT_MAPPING = 19,
  /* merge inputs. */
  ATTNRT_ROLE_PARTIAL_O = 20,
  ATTNRT_ROLE_PARTIAL_LSE = 21,
  /* Residual window (kv_cache.residual = R > 0, docs/kv-cache.md): the f16
   * rings [num_rings, R, H, D] of the R latest tokens of every sequence
   * (cache components), the ring slots of kv_append ([num_new], ring * R +
   * position % R or -1) and the ring of each sequence of paged_attention
   * ([batch]). */
  ATTNRT_ROLE_K_RECENT = 22,
  ATTNRT_ROLE_V_RECENT = 23,
  ATTNRT_ROLE_RING_SLOTS = 24,
  ATTNRT_ROLE_KV_RINGS = 25,
  /* Block-sparse mask (docs/sparsity.md), per (batch, H) with H = kv_heads
   * or 1: CSR row offsets i32 [batch, H, num_q_blocks + 1], KV block indices
   * i32 [batch, H, max_blocks] and their optional full flags i8 [batch, H,
   * max_blocks]. Inputs of attention/paged_attention, outputs of
   * select_pages. */
  ATTNRT_ROLE_BLOCK_OFFSETS = 26,
  ATTNRT_ROLE_BLOCK_INDICES = 27,
  ATTNRT_ROLE_BLOCK_FULL = 28,
  /* Per-page key summaries of a cache with summary = minmax (cache
   * components, f16 [num_pages, kv_heads, head_dim]). */
  ATTNRT_ROLE_K_PAGE_MAX = 29,
  ATTNRT_ROLE_K_PAGE_MIN = 30
} attnrt_role;

typedef enum attnrt_dir {
  ATTNRT_DIR_IN = 0,
  ATTNRT_DIR_OUT = 1,
  ATTNRT_DIR_INOUT = 2 /* read and written in place (cache components) */
} attnrt_dir;

/* One dimension of a manifest shape: static (symbol == NULL, value >= 0) or
 * symbolic. A symbol is a name, optionally with a constant offset ("batch+1"):
 * symbol_name is the bare name, value is the offset. */
typedef struct attnrt_dim {
  const char *symbol; /* full manifest text, e.g. "batch+1"; NULL if static */
  const char *symbol_name; /* e.g. "batch"; NULL if static */
  int64_t value;           /* static size, or the offset added to the symbol */
} attnrt_dim;

typedef struct attnrt_arg_info {
  const char *name;
  attnrt_role role;
  attnrt_dir dir;
  attnrt_dtype dtype;
  int rank;
  const attnrt_dim *shape; /* rank entries */
} attnrt_arg_info;

/* One structured mask (docs/semantics.md). */
typedef struct attnrt_mask_info {
  int causal;
  int bottom_right; /* 1 = bottom_right, 0 = top_left */
  int64_t window;   /* -1 = no sliding window */
  int64_t sinks;
} attnrt_mask_info;

/* Attention parameters of kinds "attention" and "paged_attention". */
typedef struct attnrt_attention_info {
  int ragged; /* layout "ragged" (1) or "dense"/"paged" (0) */
  int64_t num_q_heads;
  int64_t num_kv_heads;
  int64_t head_dim;
  attnrt_dtype dtype;
  double scale;
  double softcap; /* 0 = none */
  int causal;
  int bottom_right; /* align: 1 = bottom_right, 0 = top_left */
  int64_t window;   /* -1 = no sliding window */
  int64_t sinks;
  int has_lse;
  /* Tile info; 0 when the manifest does not give it. */
  int64_t block_q;
  int64_t block_kv;
  int64_t vector_width;
  int64_t workspace_bytes;
  int paged; /* layout "paged" (kind "paged_attention") */
  /* Per-KV-head masks (manifest head_masks): num_kv_heads entries that
   * replace the mask fields above (KV head h uses head_masks[h]), or 0 and
   * NULL when the kernel has one mask. */
  int64_t num_head_masks;
  const attnrt_mask_info *head_masks;
} attnrt_attention_info;

/* The manifest's block_sparse object (kernels with a block-sparse mask):
 * query-block and KV-block sizes in tokens, and H, the heads of the BSR
 * operands (num_kv_heads, or 1 for one pattern shared by every head). */
typedef struct attnrt_block_sparse_info {
  int64_t block_q;
  int64_t block_kv;
  int64_t heads;
} attnrt_block_sparse_info;

/* The manifest's select_pages object (kind "select_pages"). */
typedef struct attnrt_select_pages_info {
  int64_t top_k;
  int64_t sink_pages;
  int64_t recent_pages;
} attnrt_select_pages_info;

/* The manifest's kv_cache object: the cache a kernel reads or appends to.
 * Its components are arguments named NAME_k_pages, NAME_v_pages, ... */
typedef struct attnrt_kv_cache_info {
  const char *name;
  int64_t page_size; /* tokens per page */
  int64_t num_kv_heads;
  int64_t head_dim;
  const char *layout;     /* "nhd" or "hnd" */
  const char *storage;    /* "f16", "bf16", "f8e4m3fn", "f8e5m2", "i8", "i4" */
  int64_t k_group;        /* tokens sharing one K scale (page_size if unset) */
  double bytes_per_token; /* per layer, paged components only */
  int64_t residual;       /* R: latest tokens kept in f16 rings; 0 = none */
} attnrt_kv_cache_info;

/* A caller tensor. sizes and strides are in elements; strides may be NULL
 * for row-major contiguous. The data is not copied. */
typedef struct attnrt_tensor {
  void *data;
  attnrt_dtype dtype;
  int rank;
  const int64_t *sizes;
  const int64_t *strides;
} attnrt_tensor;

typedef struct attnrt_module attnrt_module;
typedef struct attnrt_kernel attnrt_kernel; /* owned by its module */

/* Message of the last failing call on this thread ("" after a success). */
ATTNRT_API const char *attnrt_last_error(void);
ATTNRT_API const char *attnrt_status_string(attnrt_status status);
ATTNRT_API const char *attnrt_dtype_name(attnrt_dtype dtype);
ATTNRT_API const char *attnrt_role_name(attnrt_role role);
/* "in", "out" or "inout" (the manifest's names). */
ATTNRT_API const char *attnrt_dir_name(attnrt_dir dir);
ATTNRT_API int64_t attnrt_dtype_size(attnrt_dtype dtype);

/* Opens DIR/manifest.json and DIR/<library>. num_threads is the default
 * number of threads for attnrt_run (0 = std::thread::hardware_concurrency). */
ATTNRT_API attnrt_status attnrt_open(const char *dir, int num_threads,
                                     attnrt_module **out);
/* Opens kernels linked into the program (attnc --linkage=object, e.g. through
 * the CMake function attnc_add_kernels): manifest_json is the manifest text
 * (the artifact's attnc_<id>_manifest) and lookup returns the address of an
 * exported symbol by name, NULL for unknown names (attnc_<id>_symbol). The
 * checks are attnrt_open's: every kernel's symbols are resolved now, and a
 * missing one fails with ATTNRT_ERR_LIBRARY naming it. The manifest's
 * "library" is not used. Close with attnrt_close. */
ATTNRT_API attnrt_status attnrt_open_embedded(const char *manifest_json,
                                              void *(*lookup)(const char *),
                                              int num_threads,
                                              attnrt_module **out);
ATTNRT_API void attnrt_close(attnrt_module *module);

ATTNRT_API int attnrt_num_kernels(const attnrt_module *module);
/* NULL (and an error message) when index is out of range. */
ATTNRT_API const attnrt_kernel *attnrt_kernel_at(const attnrt_module *module,
                                                 int index);
ATTNRT_API attnrt_status attnrt_find_kernel(const attnrt_module *module,
                                            const char *name,
                                            const attnrt_kernel **out);

ATTNRT_API const char *attnrt_kernel_name(const attnrt_kernel *kernel);
/* "attention", "paged_attention", "kv_append", "merge" or "select_pages". */
ATTNRT_API const char *attnrt_kernel_kind(const attnrt_kernel *kernel);
/* Number of phases (>= 1); attnrt_run runs them in order with a barrier
 * between consecutive phases. */
ATTNRT_API int attnrt_kernel_num_phases(const attnrt_kernel *kernel);
ATTNRT_API int attnrt_kernel_num_args(const attnrt_kernel *kernel);
ATTNRT_API const attnrt_arg_info *attnrt_kernel_arg(const attnrt_kernel *kernel,
                                                    int index);
/* Scratch buffers attnrt_run allocates per call (they follow the arguments
 * in the kernel's args[]); role is unused (0) and dir is ATTNRT_DIR_INOUT. */
ATTNRT_API int attnrt_kernel_num_scratch(const attnrt_kernel *kernel);
ATTNRT_API const attnrt_arg_info *
attnrt_kernel_scratch(const attnrt_kernel *kernel, int index);
/* NULL for kinds without attention parameters (kv_append, merge,
 * select_pages). */
ATTNRT_API const attnrt_attention_info *
attnrt_kernel_attention(const attnrt_kernel *kernel);
/* NULL for kernels without a KV cache. */
ATTNRT_API const attnrt_kv_cache_info *
attnrt_kernel_kv_cache(const attnrt_kernel *kernel);
/* NULL for kernels without a block-sparse mask. */
ATTNRT_API const attnrt_block_sparse_info *
attnrt_kernel_block_sparse(const attnrt_kernel *kernel);
/* NULL for kinds other than "select_pages". */
ATTNRT_API const attnrt_select_pages_info *
attnrt_kernel_select_pages(const attnrt_kernel *kernel);

/* Tile counters of a kernel compiled with attnc --count-tiles (manifest
 * "instrumented": ["tile_stats"]; the library exports int64_t
 * NAME__tile_stats[3], which the kernel increments atomically). 1 if the
 * kernel has them, else 0. */
ATTNRT_API int attnrt_kernel_has_tile_stats(const attnrt_kernel *kernel);
/* out[0] = KV tiles run, out[1] = tiles that applied the element predicate,
 * out[2] = work items, summed over every run since the library was loaded
 * or last reset. ATTNRT_ERR_UNSUPPORTED for a kernel without counters.
 * The counters live in the library, which every module opened on the same
 * artifact path shares (dlopen). */
ATTNRT_API attnrt_status attnrt_kernel_tile_stats(const attnrt_kernel *kernel,
                                                  int64_t out[3]);
/* Zeroes the counters (not while a run of the kernel is in flight). The
 * kernel handle stays const: the counters are the library's, not the
 * handle's. ATTNRT_ERR_UNSUPPORTED for a kernel without counters. */
ATTNRT_API attnrt_status
attnrt_kernel_reset_tile_stats(const attnrt_kernel *kernel);

/* Checks args against the manifest exactly as attnrt_run does, runs nothing. */
ATTNRT_API attnrt_status attnrt_validate(const attnrt_kernel *kernel,
                                         const attnrt_tensor *args,
                                         int num_args);

/* Validates, allocates the scratch buffers, then for each phase in order
 * runs its NAME__work_items(args, phase) work items on the thread pool and
 * waits for them. num_threads: 0 = the module default, 1 = only the calling
 * thread. Out and inout tensors are written in place. */
ATTNRT_API attnrt_status attnrt_run(attnrt_module *module,
                                    const attnrt_kernel *kernel,
                                    const attnrt_tensor *args, int num_args,
                                    int num_threads);

#ifdef __cplusplus
}
#endif

#endif /* ATTNRT_ATTNRT_H */
