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
 * ATTNRT_ERR_UNSUPPORTED naming both), loaded and its entry resolved; the
 * maximum dynamic shared memory is raised for kernels above 48 KiB. Every
 * later call runs in that context (pushed for the call when another one is
 * current) from any thread. A host artifact is refused
 * (ATTNRT_ERR_UNSUPPORTED: use attnrt_open). */
ATTNRT_API attnrt_status attnrt_gpu_open(const char *dir,
                                         attnrt_gpu_module **out);
/* Unloads the kernels and releases the primary context if open retained
 * it. Launches in flight must have finished (synchronize first). */
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

/* The manifest's gpu object of a kernel and the image loaded for it. */
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
} attnrt_gpu_kernel_info;

/* NULL for kernels of host modules (attnrt_open). */
ATTNRT_API const attnrt_gpu_kernel_info *
attnrt_kernel_gpu(const attnrt_kernel *kernel);

/* The launch attnrt_gpu_run would make for these arguments. */
typedef struct attnrt_gpu_launch {
  uint32_t grid[3]; /* a 0 entry: nothing to do, nothing is launched */
  uint32_t block[3];
  uint32_t smem_bytes;
} attnrt_gpu_launch;

/* Validates args as attnrt_gpu_run does and computes the launch; touches no
 * device. */
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
 * INT32_MAX are refused (the kernel takes them as i32). */
ATTNRT_API attnrt_status attnrt_gpu_run(attnrt_gpu_module *module,
                                        const attnrt_kernel *kernel,
                                        const attnrt_tensor *args, int num_args,
                                        void *stream);

/* Launches `runs` times on `stream`, each between two CUDA events, waits
 * for them and writes each launch's milliseconds to ms[0..runs). */
ATTNRT_API attnrt_status attnrt_gpu_time_runs(attnrt_gpu_module *module,
                                              const attnrt_kernel *kernel,
                                              const attnrt_tensor *args,
                                              int num_args, void *stream,
                                              int runs, float *ms);

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
