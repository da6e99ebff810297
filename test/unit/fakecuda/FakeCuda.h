/*===- FakeCuda.h - control of the fake CUDA driver (tests only) --*- C -*-===*\
|*                                                                            *|
|* libattnrt_fakecuda.so implements the subset of the CUDA driver API attnrt *|
|* uses, on the host: device memory is malloc'ed, modules are text whose     *|
|* ".entry NAME(.param .u64 ..., .param .u32 ...)" declarations give each    *|
|* function's parameter sizes, and cuLaunchKernel records the launch and     *|
|* runs nothing, unless a launch hook runs it (the PTX emulator, test/gpu/   *|
|* emulator). Like the real driver it refuses calls without a current       *|
|* context and launches above 48 KiB of dynamic shared memory without the    *|
|* function's opt-in. Tests point ATTNRT_LIBCUDA at it and steer it here or, *|
|* from another process, with FAKECUDA_DEVICES=N, FAKECUDA_CC=X.Y,           *|
|* FAKECUDA_SMS=N, FAKECUDA_OCCUPANCY=N and                                  *|
|* FAKECUDA_FAIL=call=code[,call=code...].                                   *|
|*                                                                            *|
\*===----------------------------------------------------------------------===*/

#ifndef ATTNRT_TEST_FAKECUDA_H
#define ATTNRT_TEST_FAKECUDA_H

#ifdef __cplusplus
extern "C" {
#endif

enum { FAKECUDA_MAX_PARAMS = 32 };

typedef struct fakecuda_launch {
  char name[128]; /* the function's entry */
  unsigned grid[3];
  unsigned block[3];
  unsigned smem_bytes;
  void *stream;
  int num_params;
  int param_size[FAKECUDA_MAX_PARAMS];         /* bytes: 4 or 8 */
  unsigned char param[FAKECUDA_MAX_PARAMS][8]; /* the raw bytes passed */
} fakecuda_launch;

/* Back to the state the environment describes (default: one sm_90 device
 * with 132 SMs and 227 KiB of opt-in shared memory, 1024 threads and 4
 * resident blocks per SM for every function, no failures), forgetting every
 * record. Live allocations and modules are kept. */
void fakecuda_reset(void);
void fakecuda_set_device(int count, int major, int minor, int smem_optin);
/* CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT. */
void fakecuda_set_sms(int sms);
/* What cuOccupancyMaxActiveBlocksPerMultiprocessor answers for every
 * function, unless the dynamic shared memory asked about exceeds the
 * function's opt-in (48 KiB without one): then 0, as the driver does. */
void fakecuda_set_occupancy(int blocks_per_sm);
/* The block size and dynamic shared memory of the last occupancy query
 * since the reset: 0, or -1 when there was none. */
int fakecuda_occupancy_query(int *block_size, long long *smem_bytes);
/* CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK of every function. */
void fakecuda_set_max_threads(int threads);
/* Every later call of `call` (the exported name, e.g. "cuMemAlloc_v2")
 * returns `result`; 0 restores it. */
void fakecuda_fail(const char *call, int result);
/* Calls of `call` since the last reset. */
int fakecuda_calls(const char *call);

int fakecuda_num_launches(void);
/* 0 and *out filled, or -1 when i is out of range. */
int fakecuda_get_launch(int i, fakecuda_launch *out);
/* Images passed to cuModuleLoadDataEx since the last reset, in order. */
int fakecuda_num_loads(void);
const char *fakecuda_loaded_image(int i);
/* The last value set with cuFuncSetAttribute for functions named `entry`,
 * or -1 if none was set. */
int fakecuda_func_attribute(const char *entry, int attribute);

int fakecuda_live_allocations(void);
/* The live allocation (cuMemAlloc: 256-byte aligned) holding device
 * address ptr: 0 with its base and size, or -1 when none does. */
int fakecuda_find_allocation(unsigned long long ptr, unsigned long long *base,
                             unsigned long long *bytes);
/* The live allocations' bases and sizes, up to `max` of them; returns how
 * many there are. */
int fakecuda_allocations(unsigned long long *bases, unsigned long long *bytes,
                         int max);
/* Called by every cuLaunchKernel that passes the driver's checks, after it is
 * recorded and outside the fake's lock, with the launch and the text of its
 * function's module; its result is the launch's (0: success). NULL removes
 * it. The PTX emulator runs launches through it (test/gpu/emulator). */
typedef int (*fakecuda_launch_hook)(const fakecuda_launch *launch,
                                    const char *image, void *user);
void fakecuda_set_launch_hook(fakecuda_launch_hook hook, void *user);
int fakecuda_live_modules(void);
/* Contexts pushed on the calling thread. */
int fakecuda_context_depth(void);
/* Retains minus releases of device 0's primary context. */
int fakecuda_primary_retains(void);

#ifdef __cplusplus
}
#endif

#endif /* ATTNRT_TEST_FAKECUDA_H */
