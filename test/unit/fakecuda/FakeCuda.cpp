//===- FakeCuda.cpp - a host-only CUDA driver for attnrt's tests ----------===//
//
// Implements what attnrt_cuda.h needs of the driver API with the driver's
// observable rules (a current context for memory and launches, the shared
// memory opt-in, parameter sizes from the image), so attnrt's GPU path is
// tested on machines without a GPU. See FakeCuda.h.
//
//===----------------------------------------------------------------------===//

#include "FakeCuda.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;

struct CUctx_st {
  int device = 0;
};

struct CUmod_st;

struct CUfunc_st {
  std::string name;
  const CUmod_st *module = nullptr;
  std::vector<int> paramSizes;
  std::map<int, int> attributes; // set with cuFuncSetAttribute
};

struct CUmod_st {
  std::string image;
  std::vector<std::unique_ptr<CUfunc_st>> functions;
};

struct CUevent_st {
  double ms = -1; // the fake clock when recorded; -1: never recorded
};

struct CUstream_st;

namespace {

enum : CUresult {
  kSuccess = 0,
  kInvalidValue = 1,
  kNotInitialized = 3,
  kNoDevice = 100,
  kInvalidDevice = 101,
  kInvalidImage = 200,
  kInvalidContext = 201,
  kInvalidHandle = 400,
  kNotFound = 500,
  kNotReady = 600,
};

const std::pair<CUresult, std::pair<const char *, const char *>> kErrors[] = {
    {0, {"CUDA_SUCCESS", "no error"}},
    {1, {"CUDA_ERROR_INVALID_VALUE", "invalid argument"}},
    {2, {"CUDA_ERROR_OUT_OF_MEMORY", "out of memory"}},
    {3, {"CUDA_ERROR_NOT_INITIALIZED", "initialization error"}},
    {35,
     {"CUDA_ERROR_INSUFFICIENT_DRIVER",
      "CUDA driver version is insufficient for CUDA runtime version"}},
    {100, {"CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"}},
    {101, {"CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"}},
    {200, {"CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"}},
    {201, {"CUDA_ERROR_INVALID_CONTEXT", "invalid device context"}},
    {209,
     {"CUDA_ERROR_NO_BINARY_FOR_GPU",
      "no kernel image is available for execution on the device"}},
    {218, {"CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"}},
    {222,
     {"CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
      "the provided PTX was compiled with an unsupported toolchain."}},
    {400, {"CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"}},
    {500, {"CUDA_ERROR_NOT_FOUND", "named symbol not found"}},
    {600, {"CUDA_ERROR_NOT_READY", "device not ready"}},
    {700,
     {"CUDA_ERROR_ILLEGAL_ADDRESS",
      "an illegal memory access was encountered"}},
    {701,
     {"CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
      "too many resources requested for launch"}},
    {719, {"CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"}},
    {999, {"CUDA_ERROR_UNKNOWN", "unknown error"}},
};

/// Everything the fake remembers; one mutex, since tests are small.
struct State {
  std::mutex mutex;
  int devices = 1, major = 9, minor = 0, smemOptin = 232448;
  int maxThreads = 1024;
  int sms = 132, occupancy = 4; // blocks per SM of every function
  int occupancyBlock = -1;      // the last occupancy query's arguments
  long long occupancySmem = -1;
  double launchMs = 0.5; // the fake clock advances this much per launch
  double clock = 0;
  std::map<std::string, CUresult> failures;
  std::map<std::string, int> calls;
  std::vector<fakecuda_launch> launches;
  fakecuda_launch_hook launchHook = nullptr;
  void *launchHookUser = nullptr;
  std::vector<std::string> loads;
  std::map<uintptr_t, size_t> allocations;
  std::set<CUmod_st *> modules;
  CUctx_st primary;
  int primaryRetains = 0;
  bool initialized = false;

  /// The environment's configuration (FakeCuda.h).
  void configure() {
    devices = 1;
    major = 9;
    minor = 0;
    smemOptin = 232448;
    maxThreads = 1024;
    sms = 132;
    occupancy = 4;
    occupancyBlock = -1;
    occupancySmem = -1;
    failures.clear();
    if (const char *n = std::getenv("FAKECUDA_SMS"))
      sms = std::atoi(n);
    if (const char *n = std::getenv("FAKECUDA_OCCUPANCY"))
      occupancy = std::atoi(n);
    if (const char *n = std::getenv("FAKECUDA_DEVICES"))
      devices = std::atoi(n);
    if (const char *cc = std::getenv("FAKECUDA_CC"))
      std::sscanf(cc, "%d.%d", &major, &minor);
    if (const char *f = std::getenv("FAKECUDA_FAIL")) {
      std::string list = f;
      size_t start = 0;
      while (start < list.size()) {
        size_t comma = list.find(',', start);
        std::string item = list.substr(start, comma - start);
        size_t eq = item.find('=');
        if (eq != std::string::npos)
          failures[item.substr(0, eq)] = std::atoi(item.c_str() + eq + 1);
        start = comma == std::string::npos ? list.size() : comma + 1;
      }
    }
  }
};

State &state() {
  static State *s = [] {
    auto *st = new State;
    st->configure();
    return st;
  }();
  return *s;
}

thread_local std::vector<CUctx_st *> contextStack;

/// Counts the call and returns its injected failure (0 if none).
CUresult enter(State &s, const char *call) {
  ++s.calls[call];
  auto it = s.failures.find(call);
  return it == s.failures.end() ? kSuccess : it->second;
}

#define FAKE_ENTER(name)                                                       \
  State &s = state();                                                          \
  std::lock_guard<std::mutex> lock(s.mutex);                                   \
  if (CUresult injected = enter(s, name))                                      \
    return injected;

#define FAKE_NEED_CONTEXT()                                                    \
  if (!s.initialized)                                                          \
    return kNotInitialized;                                                    \
  if (contextStack.empty())                                                    \
    return kInvalidContext;

/// The parameter sizes of `.entry NAME(...)` in a PTX-like image, or false
/// when the image declares no such entry.
bool entryParams(const std::string &image, const std::string &name,
                 std::vector<int> &sizes) {
  for (size_t at = image.find(".entry"); at != std::string::npos;
       at = image.find(".entry", at + 6)) {
    size_t p = at + 6;
    while (p < image.size() &&
           std::isspace(static_cast<unsigned char>(image[p])))
      ++p;
    size_t end = p;
    while (end < image.size() &&
           (std::isalnum(static_cast<unsigned char>(image[end])) ||
            image[end] == '_' || image[end] == '$'))
      ++end;
    if (image.compare(p, end - p, name) != 0 || end - p != name.size())
      continue;
    size_t open = image.find('(', end), close = image.find(')', end);
    sizes.clear();
    if (open == std::string::npos || close == std::string::npos || close < open)
      return true; // no parameter list: no parameters
    std::string list = image.substr(open, close - open);
    for (size_t q = list.find(".param"); q != std::string::npos;
         q = list.find(".param", q + 6)) {
      size_t type = list.find('.', q + 6);
      if (type == std::string::npos)
        break;
      int bits = std::atoi(list.c_str() + type + 2); // .u64 -> 64
      sizes.push_back(bits / 8);
    }
    return true;
  }
  return false;
}

bool inAllocation(const State &s, CUdeviceptr p, size_t bytes) {
  for (const auto &[base, size] : s.allocations)
    if (p >= base && p + bytes <= base + size)
      return true;
  return false;
}

} // namespace

#define FAKE_API extern "C" __attribute__((visibility("default")))

FAKE_API CUresult cuInit(unsigned flags) {
  FAKE_ENTER("cuInit");
  if (flags != 0)
    return kInvalidValue;
  if (s.devices < 1)
    return kNoDevice;
  s.initialized = true;
  return kSuccess;
}

FAKE_API CUresult cuDriverGetVersion(int *version) {
  FAKE_ENTER("cuDriverGetVersion");
  *version = 12040;
  return kSuccess;
}

FAKE_API CUresult cuGetErrorName(CUresult error, const char **name) {
  for (const auto &[code, text] : kErrors)
    if (code == error) {
      *name = text.first;
      return kSuccess;
    }
  *name = nullptr;
  return kInvalidValue;
}

FAKE_API CUresult cuGetErrorString(CUresult error, const char **str) {
  for (const auto &[code, text] : kErrors)
    if (code == error) {
      *str = text.second;
      return kSuccess;
    }
  *str = nullptr;
  return kInvalidValue;
}

FAKE_API CUresult cuDeviceGetCount(int *count) {
  FAKE_ENTER("cuDeviceGetCount");
  if (!s.initialized)
    return kNotInitialized;
  *count = s.devices;
  return kSuccess;
}

FAKE_API CUresult cuDeviceGet(CUdevice *device, int ordinal) {
  FAKE_ENTER("cuDeviceGet");
  if (ordinal < 0 || ordinal >= s.devices)
    return kInvalidDevice;
  *device = ordinal;
  return kSuccess;
}

FAKE_API CUresult cuDeviceGetAttribute(int *value, int attribute,
                                       CUdevice device) {
  FAKE_ENTER("cuDeviceGetAttribute");
  if (device < 0 || device >= s.devices)
    return kInvalidDevice;
  switch (attribute) {
  case 75:
    *value = s.major;
    return kSuccess;
  case 76:
    *value = s.minor;
    return kSuccess;
  case 97:
    *value = s.smemOptin;
    return kSuccess;
  case 16: // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
    *value = s.sms;
    return kSuccess;
  }
  return kInvalidValue;
}

FAKE_API CUresult cuDeviceGetName(char *name, int len, CUdevice device) {
  FAKE_ENTER("cuDeviceGetName");
  if (device < 0 || device >= s.devices || len < 1)
    return kInvalidValue;
  std::snprintf(name, static_cast<size_t>(len), "Fake CUDA Device sm_%d%d",
                s.major, s.minor);
  return kSuccess;
}

FAKE_API CUresult cuDevicePrimaryCtxRetain(CUctx_st **context,
                                           CUdevice device) {
  FAKE_ENTER("cuDevicePrimaryCtxRetain");
  if (device != 0)
    return kInvalidDevice;
  ++s.primaryRetains;
  *context = &s.primary;
  return kSuccess;
}

FAKE_API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice device) {
  FAKE_ENTER("cuDevicePrimaryCtxRelease_v2");
  if (device != 0 || s.primaryRetains < 1)
    return kInvalidContext;
  --s.primaryRetains;
  return kSuccess;
}

FAKE_API CUresult cuCtxGetCurrent(CUctx_st **context) {
  FAKE_ENTER("cuCtxGetCurrent");
  *context = contextStack.empty() ? nullptr : contextStack.back();
  return kSuccess;
}

FAKE_API CUresult cuCtxGetDevice(CUdevice *device) {
  FAKE_ENTER("cuCtxGetDevice");
  FAKE_NEED_CONTEXT();
  *device = contextStack.back()->device;
  return kSuccess;
}

FAKE_API CUresult cuCtxPushCurrent_v2(CUctx_st *context) {
  FAKE_ENTER("cuCtxPushCurrent_v2");
  if (!context)
    return kInvalidContext;
  contextStack.push_back(context);
  return kSuccess;
}

FAKE_API CUresult cuCtxPopCurrent_v2(CUctx_st **context) {
  FAKE_ENTER("cuCtxPopCurrent_v2");
  if (contextStack.empty())
    return kInvalidContext;
  if (context)
    *context = contextStack.back();
  contextStack.pop_back();
  return kSuccess;
}

FAKE_API CUresult cuCtxSynchronize() {
  FAKE_ENTER("cuCtxSynchronize");
  FAKE_NEED_CONTEXT();
  return kSuccess;
}

FAKE_API CUresult cuMemAlloc_v2(CUdeviceptr *ptr, size_t bytes) {
  FAKE_ENTER("cuMemAlloc_v2");
  FAKE_NEED_CONTEXT();
  if (bytes == 0)
    return kInvalidValue;
  // The driver's allocations are at least 256-byte aligned.
  void *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  if (!p)
    return 2; // CUDA_ERROR_OUT_OF_MEMORY
  *ptr = reinterpret_cast<uintptr_t>(p);
  s.allocations[*ptr] = bytes;
  return kSuccess;
}

FAKE_API CUresult cuMemFree_v2(CUdeviceptr ptr) {
  FAKE_ENTER("cuMemFree_v2");
  FAKE_NEED_CONTEXT();
  auto it = s.allocations.find(ptr);
  if (it == s.allocations.end())
    return kInvalidValue;
  std::free(reinterpret_cast<void *>(static_cast<uintptr_t>(ptr)));
  s.allocations.erase(it);
  return kSuccess;
}

FAKE_API CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src,
                                  size_t bytes) {
  FAKE_ENTER("cuMemcpyHtoD_v2");
  FAKE_NEED_CONTEXT();
  if (!inAllocation(s, dst, bytes))
    return kInvalidValue;
  std::memcpy(reinterpret_cast<void *>(static_cast<uintptr_t>(dst)), src,
              bytes);
  return kSuccess;
}

FAKE_API CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t bytes) {
  FAKE_ENTER("cuMemcpyDtoH_v2");
  FAKE_NEED_CONTEXT();
  if (!inAllocation(s, src, bytes))
    return kInvalidValue;
  std::memcpy(dst, reinterpret_cast<const void *>(static_cast<uintptr_t>(src)),
              bytes);
  return kSuccess;
}

FAKE_API CUresult cuModuleLoadDataEx(CUmod_st **module, const void *image,
                                     unsigned numOptions, int *options,
                                     void **values) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  ++s.calls["cuModuleLoadDataEx"];
  auto failure = s.failures.find("cuModuleLoadDataEx");
  if (failure != s.failures.end() && failure->second) {
    // What the JIT writes into CU_JIT_ERROR_LOG_BUFFER (option 5).
    for (unsigned i = 0; i < numOptions; ++i)
      if (options[i] == 5 && values[i])
        std::strcpy(static_cast<char *>(values[i]),
                    "ptxas application ptx input, line 7; error   : fake "
                    "failure\nptxas fatal   : Ptx assembly aborted\n");
    return failure->second;
  }
  FAKE_NEED_CONTEXT();
  const char *text = static_cast<const char *>(image);
  if (!text || !*text)
    return kInvalidImage;
  auto m = std::make_unique<CUmod_st>();
  m->image = text;
  s.loads.push_back(m->image);
  *module = m.get();
  s.modules.insert(m.release());
  return kSuccess;
}

FAKE_API CUresult cuModuleUnload(CUmod_st *module) {
  FAKE_ENTER("cuModuleUnload");
  FAKE_NEED_CONTEXT();
  if (!s.modules.erase(module))
    return kInvalidHandle;
  delete module;
  return kSuccess;
}

FAKE_API CUresult cuModuleGetFunction(CUfunc_st **function, CUmod_st *module,
                                      const char *name) {
  FAKE_ENTER("cuModuleGetFunction");
  FAKE_NEED_CONTEXT();
  if (!s.modules.count(module))
    return kInvalidHandle;
  std::vector<int> sizes;
  if (!entryParams(module->image, name, sizes))
    return kNotFound;
  auto f = std::make_unique<CUfunc_st>();
  f->name = name;
  f->module = module;
  f->paramSizes = sizes;
  *function = f.get();
  module->functions.push_back(std::move(f));
  return kSuccess;
}

FAKE_API CUresult cuFuncGetAttribute(int *value, int attribute,
                                     CUfunc_st *function) {
  FAKE_ENTER("cuFuncGetAttribute");
  if (!function)
    return kInvalidHandle;
  if (attribute == 0) { // CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK
    *value = s.maxThreads;
    return kSuccess;
  }
  auto it = function->attributes.find(attribute);
  *value = it == function->attributes.end() ? 0 : it->second;
  return kSuccess;
}

FAKE_API CUresult cuFuncSetAttribute(CUfunc_st *function, int attribute,
                                     int value) {
  FAKE_ENTER("cuFuncSetAttribute");
  if (!function)
    return kInvalidHandle;
  // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES up to the opt-in limit.
  if (attribute == 8 && (value < 0 || value > s.smemOptin))
    return kInvalidValue;
  function->attributes[attribute] = value;
  return kSuccess;
}

FAKE_API CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(
    int *numBlocks, CUfunc_st *function, int blockSize, size_t smem) {
  FAKE_ENTER("cuOccupancyMaxActiveBlocksPerMultiprocessor");
  FAKE_NEED_CONTEXT();
  if (!function)
    return kInvalidHandle;
  if (!numBlocks || blockSize < 1 || blockSize > s.maxThreads)
    return kInvalidValue;
  s.occupancyBlock = blockSize;
  s.occupancySmem = static_cast<long long>(smem);
  // Like the driver: no block fits with more dynamic shared memory than
  // the function may use (48 KiB without the opt-in).
  auto optIn = function->attributes.find(8);
  size_t limit = optIn == function->attributes.end()
                     ? 48 * 1024
                     : std::max<size_t>(48 * 1024, optIn->second);
  *numBlocks = smem > limit ? 0 : s.occupancy;
  return kSuccess;
}

namespace {

/// cuLaunchKernel's checks and record; the launch hook, if any, is returned
/// to be called without the lock (it may call back into the fake).
CUresult recordLaunch(CUfunc_st *f, const unsigned grid[3],
                      const unsigned block[3], unsigned smem, void **params,
                      void **extra, fakecuda_launch &l, std::string &image,
                      fakecuda_launch_hook &hook, void *&hookUser) {
  FAKE_ENTER("cuLaunchKernel");
  FAKE_NEED_CONTEXT();
  if (!f)
    return kInvalidHandle;
  if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || block[0] == 0 ||
      block[1] == 0 || block[2] == 0 ||
      static_cast<long>(block[0]) * block[1] * block[2] > s.maxThreads || extra)
    return kInvalidValue;
  auto optIn = f->attributes.find(8);
  if (smem > 48 * 1024 &&
      (optIn == f->attributes.end() || smem > unsigned(optIn->second)))
    return kInvalidValue;
  if (!f->paramSizes.empty() && !params)
    return kInvalidValue;
  std::snprintf(l.name, sizeof l.name, "%s", f->name.c_str());
  std::memcpy(l.grid, grid, sizeof l.grid);
  std::memcpy(l.block, block, sizeof l.block);
  l.smem_bytes = smem;
  l.num_params = static_cast<int>(f->paramSizes.size());
  for (int i = 0; i < l.num_params && i < FAKECUDA_MAX_PARAMS; ++i) {
    l.param_size[i] = f->paramSizes[i];
    std::memcpy(l.param[i], params[i], f->paramSizes[i]);
  }
  s.launches.push_back(l);
  s.clock += s.launchMs;
  hook = s.launchHook;
  hookUser = s.launchHookUser;
  if (hook && f->module)
    image = f->module->image;
  return kSuccess;
}

} // namespace

FAKE_API CUresult cuLaunchKernel(CUfunc_st *f, unsigned gx, unsigned gy,
                                 unsigned gz, unsigned bx, unsigned by,
                                 unsigned bz, unsigned smem,
                                 CUstream_st *stream, void **params,
                                 void **extra) {
  const unsigned grid[3] = {gx, gy, gz}, block[3] = {bx, by, bz};
  fakecuda_launch l{};
  l.stream = stream;
  std::string image;
  fakecuda_launch_hook hook = nullptr;
  void *hookUser = nullptr;
  if (CUresult r = recordLaunch(f, grid, block, smem, params, extra, l, image,
                                hook, hookUser))
    return r;
  return hook ? hook(&l, image.c_str(), hookUser) : kSuccess;
}

FAKE_API CUresult cuStreamSynchronize(CUstream_st *) {
  FAKE_ENTER("cuStreamSynchronize");
  FAKE_NEED_CONTEXT();
  return kSuccess;
}

FAKE_API CUresult cuEventCreate(CUevent_st **event, unsigned flags) {
  FAKE_ENTER("cuEventCreate");
  FAKE_NEED_CONTEXT();
  if (flags != 0)
    return kInvalidValue;
  *event = new CUevent_st;
  return kSuccess;
}

FAKE_API CUresult cuEventRecord(CUevent_st *event, CUstream_st *) {
  FAKE_ENTER("cuEventRecord");
  FAKE_NEED_CONTEXT();
  event->ms = s.clock;
  return kSuccess;
}

FAKE_API CUresult cuEventSynchronize(CUevent_st *event) {
  FAKE_ENTER("cuEventSynchronize");
  return event->ms < 0 ? kInvalidHandle : kSuccess;
}

FAKE_API CUresult cuEventElapsedTime(float *ms, CUevent_st *start,
                                     CUevent_st *end) {
  FAKE_ENTER("cuEventElapsedTime");
  if (start->ms < 0 || end->ms < 0)
    return kNotReady;
  *ms = static_cast<float>(end->ms - start->ms);
  return kSuccess;
}

FAKE_API CUresult cuEventDestroy_v2(CUevent_st *event) {
  FAKE_ENTER("cuEventDestroy_v2");
  delete event;
  return kSuccess;
}

// Control (FakeCuda.h).

FAKE_API void fakecuda_reset(void) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.configure();
  s.calls.clear();
  s.launches.clear();
  s.loads.clear();
}

FAKE_API void fakecuda_set_device(int count, int major, int minor,
                                  int smemOptin) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.devices = count;
  s.major = major;
  s.minor = minor;
  s.smemOptin = smemOptin;
}

FAKE_API void fakecuda_set_sms(int sms) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.sms = sms;
}

FAKE_API void fakecuda_set_occupancy(int blocksPerSm) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.occupancy = blocksPerSm;
}

FAKE_API int fakecuda_occupancy_query(int *blockSize, long long *smemBytes) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.occupancyBlock < 0)
    return -1;
  *blockSize = s.occupancyBlock;
  *smemBytes = s.occupancySmem;
  return 0;
}

FAKE_API int fakecuda_find_allocation(unsigned long long ptr,
                                      unsigned long long *base,
                                      unsigned long long *bytes) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  for (const auto &[b, size] : s.allocations)
    if (ptr >= b && ptr < b + size) {
      *base = b;
      *bytes = size;
      return 0;
    }
  return -1;
}

FAKE_API int fakecuda_allocations(unsigned long long *bases,
                                  unsigned long long *bytes, int max) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  int n = 0;
  for (const auto &[b, size] : s.allocations) {
    if (n < max) {
      bases[n] = b;
      bytes[n] = size;
    }
    ++n;
  }
  return n;
}

FAKE_API void fakecuda_set_launch_hook(fakecuda_launch_hook hook, void *user) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.launchHook = hook;
  s.launchHookUser = user;
}

FAKE_API void fakecuda_set_max_threads(int threads) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.maxThreads = threads;
}

FAKE_API void fakecuda_fail(const char *call, int result) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (result)
    s.failures[call] = result;
  else
    s.failures.erase(call);
}

FAKE_API int fakecuda_calls(const char *call) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  auto it = s.calls.find(call);
  return it == s.calls.end() ? 0 : it->second;
}

FAKE_API int fakecuda_num_launches(void) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return static_cast<int>(s.launches.size());
}

FAKE_API int fakecuda_get_launch(int i, fakecuda_launch *out) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (i < 0 || static_cast<size_t>(i) >= s.launches.size())
    return -1;
  *out = s.launches[i];
  return 0;
}

FAKE_API int fakecuda_num_loads(void) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return static_cast<int>(s.loads.size());
}

FAKE_API const char *fakecuda_loaded_image(int i) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (i < 0 || static_cast<size_t>(i) >= s.loads.size())
    return nullptr;
  return s.loads[i].c_str();
}

FAKE_API int fakecuda_func_attribute(const char *entry, int attribute) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  int value = -1;
  for (CUmod_st *m : s.modules)
    for (const auto &f : m->functions)
      if (f->name == entry && f->attributes.count(attribute))
        value = f->attributes.at(attribute);
  return value;
}

FAKE_API int fakecuda_live_allocations(void) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return static_cast<int>(s.allocations.size());
}

FAKE_API int fakecuda_live_modules(void) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return static_cast<int>(s.modules.size());
}

FAKE_API int fakecuda_context_depth(void) {
  return static_cast<int>(contextStack.size());
}

FAKE_API int fakecuda_primary_retains(void) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.primaryRetains;
}
