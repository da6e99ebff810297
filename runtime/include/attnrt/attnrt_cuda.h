/*===- attnrt_cuda.h - attnc CUDA artifacts C API -----------------*- C -*-===*\
|*                                                                            *|
|* Loads an artifact directory of attnc --target=sm_XY (manifest.json with   *|
|* "target": "cuda", PTX and cubins; docs/gpu-artifacts.md) into the current *|
|* CUDA context and launches its kernels on the caller's stream. The CUDA    *|
|* driver (libcuda.so.1, or $ATTNRT_LIBCUDA) is loaded with dlopen on first  *|
|* use, so attnrt needs neither CUDA headers nor a GPU to build or load.     *|
|* Kernels are attnrt_kernel handles: attnrt.h describes them (arguments,    *|
|* attention parameters, ...). See docs/runtime.md, "CUDA (GPU) modules".    *|
|*                                                                            *|
\*===----------------------------------------------------------------------===*/

#ifndef ATTNRT_ATTNRT_CUDA_H
#define ATTNRT_ATTNRT_CUDA_H

#include "attnrt/attnrt.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct attnrt_gpu_module attnrt_gpu_module;

/* ATTNRT_OK when the CUDA driver loads, initializes (cuInit) and has a
 * device. Otherwise the status of the failure (ATTNRT_ERR_LIBRARY: no
 * driver; ATTNRT_ERR_CUDA: cuInit failed, e.g. CUDA_ERROR_NO_DEVICE) with
 * the reason in attnrt_last_error(). */
ATTNRT_API attnrt_status attnrt_cuda_available(void);

/* The "target" of DIR/manifest.json: *target is the static string "host" or
 * "cuda" (ATTNRT_ERR_UNSUPPORTED for any other target). Reads only the
 * manifest; loads nothing. */
ATTNRT_API attnrt_status attnrt_artifact_target(const char *dir,
                                                const char **target);

/* Opens DIR/manifest.json ("target": "cuda"). The whole manifest (the gpu
 * object of every kernel, archs) and the existence of every PTX and cubin
 * file are checked before the driver is touched. Then, in the CUDA context
 * current on this thread (or, when none is, the retained primary context of
 * device 0), each kernel's image is chosen (the cubin of the device's exact
 * architecture, else the PTX when the device is at least ptx_arch, else
 * ATTNRT_ERR_UNSUPPORTED naming both), loaded and its entries (the merge's
 * too) resolved; the maximum dynamic shared memory is raised for entries
 * above 48 KiB, and the occupancy of split-KV kernels is taken. Every
 * later call runs in that context (pushed for the call when another one is
 * current) from any thread. A host artifact is refused
 * (ATTNRT_ERR_UNSUPPORTED: use attnrt_open). */
ATTNRT_API attnrt_status attnrt_gpu_open(const char *dir,
                                         attnrt_gpu_module **out);
/* Unloads the kernels, frees attnrt's split-KV scratch and releases the
 * primary context if open retained it. Launches in flight must have
 * finished (synchronize first). */
ATTNRT_API void attnrt_gpu_close(attnrt_gpu_module *module);

ATTNRT_API int attnrt_gpu_num_kernels(const attnrt_gpu_module *module);
/* NULL (and an error message) when index is out of range. */
ATTNRT_API const attnrt_kernel *
attnrt_gpu_kernel_at(const attnrt_gpu_module *module, int index);
ATTNRT_API attnrt_status attnrt_gpu_find_kernel(const attnrt_gpu_module *module,
                                                const char *name,
                                                const attnrt_kernel **out);

/* The device a module runs on. */
typedef struct attnrt_gpu_device_info {
  int ordinal;       /* CUdevice */
  int compute_major; /* compute capability, e.g. 9 */
  int compute_minor; /* e.g. 0 */
  const char *arch;  /* "sm_90" */
  const char *name;  /* cuDeviceGetName, e.g. "NVIDIA H100 80GB HBM3" */
  int64_t max_shared_memory_optin; /* bytes per block a kernel may opt in to */
  int driver_version;              /* cuDriverGetVersion, e.g. 12040 */
  int multiprocessor_count;        /* SMs, e.g. 132 */
} attnrt_gpu_device_info;

ATTNRT_API attnrt_status attnrt_gpu_device(const attnrt_gpu_module *module,
                                           attnrt_gpu_device_info *out);

/* One entry of the manifest's gpu.grid: the constant `value` (symbol NULL),
 * or ceil(value(symbol) * multiply / divide). */
typedef struct attnrt_gpu_grid_dim {
  const char *symbol;
  int64_t value;
  int64_t multiply;
  int64_t divide;
} attnrt_gpu_grid_dim;

/* ptxas -v of a cubin (manifest gpu.ptxas); -1 for a field it lacks. */
typedef struct attnrt_gpu_ptxas_info {
  int64_t registers;
  int64_t spill_stores; /* bytes */
  int64_t spill_loads;  /* bytes */
  int64_t stack_bytes;
  int64_t static_smem_bytes;
  int64_t barriers;
} attnrt_gpu_ptxas_info;

/* The manifest's gpu object of a kernel and the image loaded for it. A
 * split-KV kernel (gpu.split_kv, docs/gpu-artifacts.md) cuts each sequence's
 * keys into num_splits ranges, 1 to max_splits, chosen per call; above 1 its
 * partial results go to scratch and a second kernel of the same image, the
 * merge, combines them. */
typedef struct attnrt_gpu_kernel_info {
  const char *entry;      /* the .entry / cubin function name */
  const char *image;      /* the file loaded: NAME.sm_XY.cubin or NAME.ptx */
  const char *image_arch; /* its architecture: "sm_90" (cubin), ptx_arch */
  int image_is_ptx;       /* 1: PTX, JIT-compiled by the driver */
  const char *ptx;        /* gpu.ptx */
  const char *ptx_arch;   /* gpu.ptx_arch */
  int64_t block[3];       /* threads per block */
  attnrt_gpu_grid_dim grid[3];
  int64_t smem_bytes; /* dynamic shared memory per block */
  int num_params;
  /* ptxas report of the loaded cubin; NULL for PTX or without a report. */
  const attnrt_gpu_ptxas_info *ptxas;
  /* Split-KV: gpu.split_kv.max_splits, 0 for other kernels (whose merge
   * fields below are NULL and 0). */
  int max_splits;
  const char *split_symbol; /* the symbol bound to num_splits; NULL if none */
  const char *merge_entry;  /* gpu.merge.entry; NULL if none */
  int64_t merge_block[3];
  attnrt_gpu_grid_dim merge_grid[3];
  int64_t merge_smem_bytes;
  int merge_num_params;
  /* ptxas report of the merge in the loaded cubin; NULL as for ptxas. */
  const attnrt_gpu_ptxas_info *merge_ptxas;
} attnrt_gpu_kernel_info;

/* NULL for kernels of host modules (attnrt_open). */
ATTNRT_API const attnrt_gpu_kernel_info *
attnrt_kernel_gpu(const attnrt_kernel *kernel);

/* The launches attnrt_gpu_run would make for these arguments. */
typedef struct attnrt_gpu_launch {
  uint32_t grid[3]; /* a 0 entry: nothing to do, nothing is launched */
  uint32_t block[3];
  uint32_t smem_bytes;
  /* Split-KV: the call's num_splits (1 for other kernels), the scratch it
   * needs (0 when unused: num_splits 1 or nothing launched), and the merge
   * launch (grid all 0 when the merge does not run: num_splits 1). */
  uint32_t num_splits;
  uint64_t scratch_bytes;
  uint32_t merge_grid[3];
  uint32_t merge_block[3];
  uint32_t merge_smem_bytes;
} attnrt_gpu_launch;

/* Validates args as attnrt_gpu_run does and computes the launches, with the
 * num_splits attnrt_gpu_run would choose (from the occupancy taken at open,
 * or the kernel's attnrt_gpu_set_num_splits); touches no device. */
ATTNRT_API attnrt_status attnrt_gpu_launch_config(const attnrt_kernel *kernel,
                                                  const attnrt_tensor *args,
                                                  int num_args,
                                                  attnrt_gpu_launch *out);

/* Launches the kernel on `stream` (a CUstream of the module's context; NULL
 * = the legacy default stream) and returns without waiting. args: one
 * tensor per manifest argument whose data are DEVICE pointers (never read
 * on the host): dtype, rank, static sizes and symbols are checked as for
 * attnrt_run, strides must be row-major contiguous, and written arguments
 * must not overlap others. Data-dependent checks of attnrt_run (cu_seqlens,
 * page tables, slots, block-sparse indices) need the data on the host and
 * are not made. A grid with a 0 dimension launches nothing. Symbols above
 * INT32_MAX are refused (the kernel takes them as i32).
 *
 * Split-KV kernels: num_splits is the kernel's attnrt_gpu_set_num_splits,
 * else clamp(resident / blocks, 1, max_splits), where blocks is the product
 * of the main grid's dimensions without the split symbol and resident the
 * device's SMs times the blocks of the main entry one SM holds
 * (cuOccupancyMaxActiveBlocksPerMultiprocessor at open). Above 1 the
 * scratch buffers are laid out back to back at 256-byte aligned offsets in
 * the caller's buffer (attnrt_gpu_set_scratch) or attnrt's own (allocated
 * on first need, grown after cuCtxSynchronize when a call needs more), and
 * the merge is launched after the main kernel on the same stream. Two
 * streams launching at once with attnrt's own scratch race on it: give each
 * stream its own module or scratch. */
ATTNRT_API attnrt_status attnrt_gpu_run(attnrt_gpu_module *module,
                                        const attnrt_kernel *kernel,
                                        const attnrt_tensor *args, int num_args,
                                        void *stream);

/* Launches `runs` times on `stream`, each between two CUDA events, waits
 * for them and writes each run's milliseconds to ms[0..runs) (a split-KV
 * run: its main and merge launches together). */
ATTNRT_API attnrt_status attnrt_gpu_time_runs(attnrt_gpu_module *module,
                                              const attnrt_kernel *kernel,
                                              const attnrt_tensor *args,
                                              int num_args, void *stream,
                                              int runs, float *ms);

/* The num_splits of every later call of split-KV `kernel` (attnrt_gpu_run,
 * _time_runs, _launch_config): 0, the default, chooses it per call
 * (attnrt_gpu_run); 1 to max_splits fixes it. Other values, and any but 0
 * and 1 for a kernel without gpu.split_kv, are ATTNRT_ERR_VALIDATION. */
ATTNRT_API attnrt_status attnrt_gpu_set_num_splits(attnrt_gpu_module *module,
                                                   const attnrt_kernel *kernel,
                                                   int num_splits);

/* Scratch for split-KV launches: `bytes` of device memory of the module's
 * context at device_ptr (256-byte aligned, else
 * ATTNRT_ERR_INVALID_ARGUMENT), used by every later launch instead of
 * attnrt's own buffer; a launch that needs more (attnrt_gpu_launch's
 * scratch_bytes) fails with ATTNRT_ERR_VALIDATION saying how much. The
 * caller keeps it alive, and unused by others, while launches run. NULL:
 * back to attnrt's own buffer (which, once allocated, is kept until close).
 * Contents are undefined between calls. */
ATTNRT_API attnrt_status attnrt_gpu_set_scratch(attnrt_gpu_module *module,
                                                void *device_ptr, size_t bytes);

/* Waits for `stream` (NULL: for all work of the module's context). */
ATTNRT_API attnrt_status attnrt_gpu_synchronize(attnrt_gpu_module *module,
                                                void *stream);

/* Device memory of the module's context (cuMemAlloc; 0 bytes allocates 1 so
 * the pointer is never NULL) and synchronous copies (cuMemcpyHtoD/DtoH). */
ATTNRT_API attnrt_status attnrt_gpu_alloc(attnrt_gpu_module *module,
                                          size_t bytes, void **device_ptr);
ATTNRT_API attnrt_status attnrt_gpu_free(attnrt_gpu_module *module,
                                         void *device_ptr);
ATTNRT_API attnrt_status attnrt_gpu_copy_to_device(attnrt_gpu_module *module,
                                                   void *device_dst,
                                                   const void *host_src,
                                                   size_t bytes);
ATTNRT_API attnrt_status attnrt_gpu_copy_to_host(attnrt_gpu_module *module,
                                                 void *host_dst,
                                                 const void *device_src,
                                                 size_t bytes);

#ifdef __cplusplus
}
#endif

#endif /* ATTNRT_ATTNRT_CUDA_H */
