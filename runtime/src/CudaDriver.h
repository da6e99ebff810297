//===- CudaDriver.h - the CUDA driver API, loaded at run time ---*- C++ -*-===//
//
// attnrt must build and load without CUDA: the few driver types and
// constants it uses are declared here (values from the CUDA driver API
// reference, stable across releases) and the functions are resolved with
// dlsym from libcuda.so.1 (or $ATTNRT_LIBCUDA) on first use.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNRT_SRC_CUDADRIVER_H
#define ATTNRT_SRC_CUDADRIVER_H

#include <cstddef>
#include <string>

namespace attnrt::cuda {

using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = struct CUctx_st *;
using CUmodule = struct CUmod_st *;
using CUfunction = struct CUfunc_st *;
using CUstream = struct CUstream_st *;
using CUevent = struct CUevent_st *;

constexpr CUresult CUDA_SUCCESS = 0;
// CUdevice_attribute
constexpr int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
constexpr int CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
// CUfunction_attribute
constexpr int CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 0;
constexpr int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
// CUjit_option
constexpr int CU_JIT_ERROR_LOG_BUFFER = 5;
constexpr int CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6;
// cuEventCreate flags
constexpr unsigned CU_EVENT_DEFAULT = 0;

/// Shared memory a block may use without opting in.
constexpr long kDefaultSmemBytes = 48 * 1024;

/// The driver functions attnrt calls, named as in cuda.h (each resolved from
/// the symbol the driver exports for the current ABI, e.g. cuMemAlloc_v2).
struct Driver {
  std::string path; // as passed to dlopen
  CUresult (*cuInit)(unsigned);
  CUresult (*cuDriverGetVersion)(int *);
  CUresult (*cuGetErrorName)(CUresult, const char **);
  CUresult (*cuGetErrorString)(CUresult, const char **);
  CUresult (*cuDeviceGetCount)(int *);
  CUresult (*cuDeviceGet)(CUdevice *, int);
  CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice);
  CUresult (*cuDeviceGetName)(char *, int, CUdevice);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
  CUresult (*cuDevicePrimaryCtxRelease)(CUdevice);
  CUresult (*cuCtxGetCurrent)(CUcontext *);
  CUresult (*cuCtxGetDevice)(CUdevice *);
  CUresult (*cuCtxPushCurrent)(CUcontext);
  CUresult (*cuCtxPopCurrent)(CUcontext *);
  CUresult (*cuCtxSynchronize)();
  CUresult (*cuMemAlloc)(CUdeviceptr *, size_t);
  CUresult (*cuMemFree)(CUdeviceptr);
  CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void *, size_t);
  CUresult (*cuMemcpyDtoH)(void *, CUdeviceptr, size_t);
  CUresult (*cuModuleLoadDataEx)(CUmodule *, const void *, unsigned, int *,
                                 void **);
  CUresult (*cuModuleUnload)(CUmodule);
  CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
  CUresult (*cuFuncGetAttribute)(int *, int, CUfunction);
  CUresult (*cuFuncSetAttribute)(CUfunction, int, int);
  CUresult (*cuOccupancyMaxActiveBlocksPerMultiprocessor)(int *, CUfunction,
                                                          int, size_t);
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned,
                             unsigned, unsigned, unsigned, CUstream, void **,
                             void **);
  CUresult (*cuStreamSynchronize)(CUstream);
  CUresult (*cuEventCreate)(CUevent *, unsigned);
  CUresult (*cuEventRecord)(CUevent, CUstream);
  CUresult (*cuEventSynchronize)(CUevent);
  CUresult (*cuEventElapsedTime)(float *, CUevent, CUevent);
  CUresult (*cuEventDestroy)(CUevent);

  /// "CUDA_ERROR_X (its description)", or "CUresult N" for codes the driver
  /// does not name.
  std::string describe(CUresult result) const;
  /// Throws RuntimeError(ATTNRT_ERR_CUDA) "CALL: CUDA_ERROR_X (text)" with
  /// `context` (what attnrt was doing) in front when given.
  void check(CUresult result, const char *call,
             const std::string &context = "") const;
};

/// The driver named by $ATTNRT_LIBCUDA (when set and not empty) or
/// libcuda.so.1, loaded once per path and never unloaded, after cuInit(0)
/// succeeded. Throws RuntimeError: ATTNRT_ERR_LIBRARY when it cannot be
/// loaded or lacks a function, ATTNRT_ERR_CUDA when cuInit fails. Failures
/// are not cached, so a later call (or another $ATTNRT_LIBCUDA) retries.
const Driver &loadDriver();

} // namespace attnrt::cuda

/// Calls DRIVER.FN(ARGS...) and throws ATTNRT_ERR_CUDA naming FN on failure.
#define ATTNRT_CU(driver, fn, ...) (driver).check((driver).fn(__VA_ARGS__), #fn)

#endif // ATTNRT_SRC_CUDADRIVER_H
