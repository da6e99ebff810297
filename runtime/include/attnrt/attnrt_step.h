/*===- attnrt_step.h - memory plans (manifest steps) C API --------*- C -*-===*\
|*                                                                            *|
|* Runs the step functions the memory planner wrote to manifest.json         *|
|* ("steps", docs/memory-planning.md): one arena per memory tier of exactly  *|
|* the planned size, the plan's copies on a copy thread (the CPU stand-in    *|
|* for a copy stream), its kernels through attnrt_run's checks, and every    *|
|* access checked against its arena when the module is opened. See          *|
|* docs/runtime.md, "Steps (memory plans)".                                  *|
|*                                                                            *|
\*===----------------------------------------------------------------------===*/

#ifndef ATTNRT_ATTNRT_STEP_H
#define ATTNRT_ATTNRT_STEP_H

#include "attnrt/attnrt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One memory tier of a step: its arena. */
typedef struct attnrt_step_tier_info {
  const char *name; /* "hbm", "host", ... */
  int64_t capacity; /* the target's capacity of the tier, in bytes */
  int64_t size;     /* the arena's size: exactly the plan's peak, in bytes */
  int device;       /* 1: kernels read this tier */
  void *data;       /* the arena: 64-byte aligned, zero-filled at open */
} attnrt_step_tier_info;

/* One buffer the caller writes before a run (dir in, inout) or reads after
 * it (out, inout), at its home place in a tier's arena. */
typedef struct attnrt_step_buffer_info {
  const char *name; /* "q0", "cache0.k_pages", ... */
  attnrt_dir dir;
  attnrt_dtype dtype;
  int rank;
  const int64_t *shape; /* rank static sizes */
  int tier;             /* index for attnrt_step_tier */
  int64_t offset;       /* bytes from the start of the tier's arena */
  int64_t bytes;        /* product of shape times the dtype size */
} attnrt_step_buffer_info;

/* Timings and counters of the last completed attnrt_step_run. */
typedef struct attnrt_step_run_stats {
  int64_t runs;           /* completed runs of this step object */
  int64_t copies;         /* copies of the last run */
  int64_t bytes_copied;   /* their bytes */
  int64_t kernels;        /* kernel launches of the last run */
  double copy_seconds;    /* time the copy thread spent copying */
  double exposed_seconds; /* time the run waited in copy_done */
  double kernel_seconds;  /* time in kernels */
  double overlap_seconds; /* copy time that overlapped a kernel */
  double total_seconds;   /* the whole run */
} attnrt_step_run_stats;

typedef struct attnrt_step attnrt_step;

/* Number of step functions in the module's manifest (0 without "steps"). */
ATTNRT_API int attnrt_num_steps(const attnrt_module *module);
/* Name of step `index`; NULL (and an error message) when out of range. */
ATTNRT_API const char *attnrt_step_name_at(const attnrt_module *module,
                                           int index);

/* Allocates the step's arenas (one per tier, exactly its size, 64-byte
 * aligned, zero-filled) and starts its copy thread. The plan was checked
 * when the module was opened. The step must be closed before its module.
 * ATTNRT_ERR_NOT_FOUND (listing the steps) for an unknown name. */
ATTNRT_API attnrt_status attnrt_step_open(attnrt_module *module,
                                          const char *name, attnrt_step **out);
/* Stops the copy thread and frees the arenas. NULL is a no-op; not while a
 * run of the step is in flight. */
ATTNRT_API void attnrt_step_close(attnrt_step *step);
ATTNRT_API const char *attnrt_step_name(const attnrt_step *step);

ATTNRT_API int attnrt_step_num_tiers(const attnrt_step *step);
ATTNRT_API attnrt_status attnrt_step_tier(const attnrt_step *step, int index,
                                          attnrt_step_tier_info *out);

ATTNRT_API int attnrt_step_num_buffers(const attnrt_step *step);
/* NULL (and an error message) when index is out of range. Valid until the
 * step is closed. */
ATTNRT_API const attnrt_step_buffer_info *
attnrt_step_buffer(const attnrt_step *step, int index);
/* Index of the buffer called `name` (ATTNRT_ERR_NOT_FOUND listing them). */
ATTNRT_API attnrt_status attnrt_step_find_buffer(const attnrt_step *step,
                                                 const char *name, int *index);
/* The buffer's memory in its arena (bytes of attnrt_step_buffer's info);
 * NULL when index is out of range. It never moves while the step is open. */
ATTNRT_API void *attnrt_step_data(const attnrt_step *step, int index);

/* Runs the step's program in order: copy_start hands a copy to the step's
 * copy thread (copies run one at a time, in order), copy_done waits for it,
 * kernel runs the kernel on its places in the arenas with every check of
 * attnrt_run (num_threads as there), using the planned scratch when the plan
 * gives it. Runs of one step are serialized; different steps may run
 * concurrently. On a failure every started copy has finished when it
 * returns. */
ATTNRT_API attnrt_status attnrt_step_run(attnrt_step *step, int num_threads);
ATTNRT_API attnrt_status attnrt_step_stats(const attnrt_step *step,
                                           attnrt_step_run_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* ATTNRT_ATTNRT_STEP_H */
