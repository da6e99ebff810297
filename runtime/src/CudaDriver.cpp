//===- CudaDriver.cpp - the CUDA driver API, loaded at run time -----------===//

#include "CudaDriver.h"
#include "Error.h"

#include <dlfcn.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>

using namespace attnrt;
using namespace attnrt::cuda;

namespace {

const char *kDefaultLibrary = "libcuda.so.1";

/// Where the driver comes from, for messages.
std::string origin(const std::string &path, bool fromEnv) {
  return fromEnv ? path + ", from ATTNRT_LIBCUDA" : path;
}

/// Resolves `name` into `fn`; the function types are those of cuda.h.
template <typename Fn>
void resolve(void *handle, const std::string &where, const char *name, Fn &fn) {
  dlerror();
  void *sym = dlsym(handle, name);
  if (!sym) {
    const char *why = dlerror();
    fail(ATTNRT_ERR_LIBRARY,
         "the CUDA driver (" + where + ") lacks " + name + ": " +
             (why ? why : "no such symbol") +
             "; attnrt's GPU path needs the driver of CUDA 11 or newer");
  }
  fn = reinterpret_cast<Fn>(sym);
}

std::unique_ptr<Driver> openDriver(const std::string &path, bool fromEnv) {
  std::string where = origin(path, fromEnv);
  // RTLD_LOCAL: the driver's symbols stay out of the global namespace, as
  // they would be behind libcudart.
  void *handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char *why = dlerror();
    fail(ATTNRT_ERR_LIBRARY,
         "the CUDA driver (" + where +
             ") could not be loaded: " + (why ? why : "unknown error") +
             "; attnrt's GPU path needs an NVIDIA driver" +
             (fromEnv ? " (unset ATTNRT_LIBCUDA to use " +
                            std::string(kDefaultLibrary) + ")"
                      : ""));
  }
  auto d = std::make_unique<Driver>();
  d->path = path;
  // The _v2 names are the current ABI of the functions cuda.h renames.
  try {
    resolve(handle, where, "cuInit", d->cuInit);
    resolve(handle, where, "cuDriverGetVersion", d->cuDriverGetVersion);
    resolve(handle, where, "cuGetErrorName", d->cuGetErrorName);
    resolve(handle, where, "cuGetErrorString", d->cuGetErrorString);
    resolve(handle, where, "cuDeviceGetCount", d->cuDeviceGetCount);
    resolve(handle, where, "cuDeviceGet", d->cuDeviceGet);
    resolve(handle, where, "cuDeviceGetAttribute", d->cuDeviceGetAttribute);
    resolve(handle, where, "cuDeviceGetName", d->cuDeviceGetName);
    resolve(handle, where, "cuDevicePrimaryCtxRetain",
            d->cuDevicePrimaryCtxRetain);
    resolve(handle, where, "cuDevicePrimaryCtxRelease_v2",
            d->cuDevicePrimaryCtxRelease);
    resolve(handle, where, "cuCtxGetCurrent", d->cuCtxGetCurrent);
    resolve(handle, where, "cuCtxGetDevice", d->cuCtxGetDevice);
    resolve(handle, where, "cuCtxPushCurrent_v2", d->cuCtxPushCurrent);
    resolve(handle, where, "cuCtxPopCurrent_v2", d->cuCtxPopCurrent);
    resolve(handle, where, "cuCtxSynchronize", d->cuCtxSynchronize);
    resolve(handle, where, "cuMemAlloc_v2", d->cuMemAlloc);
    resolve(handle, where, "cuMemFree_v2", d->cuMemFree);
    resolve(handle, where, "cuMemcpyHtoD_v2", d->cuMemcpyHtoD);
    resolve(handle, where, "cuMemcpyDtoH_v2", d->cuMemcpyDtoH);
    resolve(handle, where, "cuModuleLoadDataEx", d->cuModuleLoadDataEx);
    resolve(handle, where, "cuModuleUnload", d->cuModuleUnload);
    resolve(handle, where, "cuModuleGetFunction", d->cuModuleGetFunction);
    resolve(handle, where, "cuFuncGetAttribute", d->cuFuncGetAttribute);
    resolve(handle, where, "cuFuncSetAttribute", d->cuFuncSetAttribute);
    resolve(handle, where, "cuOccupancyMaxActiveBlocksPerMultiprocessor",
            d->cuOccupancyMaxActiveBlocksPerMultiprocessor);
    resolve(handle, where, "cuLaunchKernel", d->cuLaunchKernel);
    resolve(handle, where, "cuStreamSynchronize", d->cuStreamSynchronize);
    resolve(handle, where, "cuEventCreate", d->cuEventCreate);
    resolve(handle, where, "cuEventRecord", d->cuEventRecord);
    resolve(handle, where, "cuEventSynchronize", d->cuEventSynchronize);
    resolve(handle, where, "cuEventElapsedTime", d->cuEventElapsedTime);
    resolve(handle, where, "cuEventDestroy_v2", d->cuEventDestroy);
  } catch (...) {
    dlclose(handle);
    throw;
  }
  return d;
}

} // namespace

std::string Driver::describe(CUresult result) const {
  const char *name = nullptr, *text = nullptr;
  if (cuGetErrorName(result, &name) != CUDA_SUCCESS || !name)
    return "CUresult " + std::to_string(result) +
           " (not a code this driver knows)";
  if (cuGetErrorString(result, &text) != CUDA_SUCCESS || !text)
    return name;
  return std::string(name) + " (" + text + ")";
}

void Driver::check(CUresult result, const char *call,
                   const std::string &context) const {
  if (result == CUDA_SUCCESS)
    return;
  fail(ATTNRT_ERR_CUDA, (context.empty() ? "" : context + ": ") + call + ": " +
                            describe(result));
}

const Driver &attnrt::cuda::loadDriver() {
  // Drivers stay loaded for the life of the process: unloading libcuda with
  // contexts alive is unsafe, and the handful of paths is bounded.
  static std::mutex mutex;
  static std::map<std::string, std::unique_ptr<Driver>> loaded;
  const char *env = std::getenv("ATTNRT_LIBCUDA");
  bool fromEnv = env && *env;
  std::string path = fromEnv ? env : kDefaultLibrary;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = loaded.find(path);
  if (it == loaded.end())
    it = loaded.emplace(path, openDriver(path, fromEnv)).first;
  const Driver &d = *it->second;
  // Cheap after the first success; retried after a failure (no device yet).
  d.check(d.cuInit(0), "cuInit",
          "the CUDA driver (" + origin(path, fromEnv) + ") did not initialize");
  return d;
}
