//===- CudaModule.cpp - C API of CUDA artifacts (attnrt_cuda.h) -----------===//
//
// attnrt_gpu_open checks the whole artifact before it loads the driver, so
// a broken manifest fails the same way with or without a GPU; then it loads
// each kernel's image into one context, which every later call makes
// current for its duration (push/pop), leaving the caller's context alone.
//
//===----------------------------------------------------------------------===//

#include "CudaDriver.h"
#include "Error.h"
#include "GpuLaunch.h"
#include "Module.h"
#include "PtxSignature.h"

#include "attnrt/attnrt_cuda.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

using namespace attnrt;
using namespace attnrt::cuda;

struct attnrt_gpu_module {
  std::string dir;
  const Driver *driver = nullptr;
  CUcontext context = nullptr;
  CUdevice device = 0;
  bool retainedPrimary = false; // release it at close
  std::string arch, deviceName;
  attnrt_gpu_device_info info{};
  std::vector<CUmodule> images;
  std::vector<std::unique_ptr<attnrt_kernel>> kernels;

  ~attnrt_gpu_module();
};

namespace {

/// Makes `context` current for a scope unless it already is, and restores
/// the caller's context after.
class ContextScope {
public:
  ContextScope(const Driver &driver, CUcontext context) : driver(driver) {
    CUcontext current = nullptr;
    ATTNRT_CU(driver, cuCtxGetCurrent, &current);
    if (current != context) {
      ATTNRT_CU(driver, cuCtxPushCurrent, context);
      pushed = true;
    }
  }
  ~ContextScope() {
    CUcontext popped = nullptr;
    if (pushed)
      driver.cuCtxPopCurrent(&popped);
  }
  ContextScope(const ContextScope &) = delete;
  ContextScope &operator=(const ContextScope &) = delete;

private:
  const Driver &driver;
  bool pushed = false;
};

std::string str(int64_t v) { return std::to_string(v); }

void requireModule(const attnrt_gpu_module *module, const char *fn) {
  if (!module)
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) + ": module is NULL; open one with attnrt_gpu_open");
}

/// The kernel, which must be a CUDA kernel of `module`.
const attnrt_kernel &gpuKernelOf(const attnrt_gpu_module *module,
                                 const attnrt_kernel *kernel, const char *fn) {
  if (!kernel)
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) + ": kernel is NULL; get one from "
                           "attnrt_gpu_find_kernel or attnrt_gpu_kernel_at");
  if (!kernel->desc.hasGpu)
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) + ": kernel '" + kernel->desc.name +
             "' is a host kernel (attnrt_open); run it with attnrt_run");
  requireModule(module, fn);
  if (kernel->gpuModule != module)
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) + ": kernel '" + kernel->desc.name +
             "' does not belong to this module; pass the module it came "
             "from");
  return *kernel;
}

/// Every file the manifest names must be there before anything is loaded.
void requireFile(const std::string &dir, const std::string &file,
                 const KernelDesc &k, const std::string &field) {
  std::string path = dir + "/" + file;
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
    fail(ATTNRT_ERR_IO, path + " (kernel '" + k.name + "' " + field +
                            ") does not exist; the artifact is incomplete, "
                            "regenerate it with attnc");
}

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    fail(ATTNRT_ERR_IO, "cannot read " + path + " (" + std::strerror(errno) +
                            "); regenerate the artifact with attnc");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string archList(const std::map<std::string, std::string> &cubins) {
  std::string list;
  for (const auto &[arch, file] : cubins)
    list += (list.empty() ? "" : ", ") + arch;
  return list.empty() ? "none" : list;
}

/// The cubin of the device's exact architecture, else the PTX when the
/// device is at least ptx_arch (the driver JIT-compiles it).
void chooseImage(attnrt_kernel &k, const attnrt_gpu_module &m) {
  const GpuKernelDesc &gpu = k.desc.gpu;
  auto cubin = gpu.cubins.find(m.arch);
  if (cubin != gpu.cubins.end()) {
    k.gpuImage = cubin->second;
    k.gpuImageArch = cubin->first;
    k.gpuInfo.image_is_ptx = 0;
    return;
  }
  if (archNumber(m.arch) >= archNumber(gpu.ptxArch)) {
    k.gpuImage = gpu.ptx;
    k.gpuImageArch = gpu.ptxArch;
    k.gpuInfo.image_is_ptx = 1;
    return;
  }
  fail(ATTNRT_ERR_UNSUPPORTED,
       m.dir + ": kernel '" + k.desc.name + "' cannot run on device " +
           str(m.device) + " (" + m.deviceName + ", " + m.arch +
           "): the artifact has cubins for " + archList(gpu.cubins) +
           " and PTX for " + gpu.ptxArch + ", which needs " + gpu.ptxArch +
           " or newer; compile with attnc --target=" + m.arch +
           " if attnc supports it, or run on a newer GPU");
}

/// Loads the chosen image and resolves the entry; the JIT's error log goes
/// into the message when PTX does not compile.
void loadKernel(attnrt_kernel &k, attnrt_gpu_module &m) {
  const Driver &d = *m.driver;
  const GpuKernelDesc &gpu = k.desc.gpu;
  bool ptx = k.gpuInfo.image_is_ptx;
  std::string image = readFile(m.dir + "/" + k.gpuImage); // PTX: NUL-ended
  std::string what =
      m.dir + ": kernel '" + k.desc.name + "': loading " + k.gpuImage + " (" +
      (ptx ? "PTX for " + gpu.ptxArch + ", JIT-compiled for " + m.arch
           : "cubin for " + m.arch) +
      ")";
  char log[4096] = {0};
  int options[2] = {CU_JIT_ERROR_LOG_BUFFER,
                    CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
  void *values[2] = {log, reinterpret_cast<void *>(uintptr_t(sizeof log))};
  CUmodule loaded = nullptr;
  CUresult r = d.cuModuleLoadDataEx(&loaded, image.c_str(), 2, options, values);
  if (r != CUDA_SUCCESS) {
    log[sizeof log - 1] = 0;
    std::string jit(log);
    for (char &c : jit) // messages are one line
      if (c == '\n')
        c = ' ';
    while (!jit.empty() && jit.back() == ' ')
      jit.pop_back();
    fail(ATTNRT_ERR_CUDA, what + ": cuModuleLoadDataEx: " + d.describe(r) +
                              (jit.empty() ? "" : "; JIT log: " + jit));
  }
  m.images.push_back(loaded);
  CUfunction fn = nullptr;
  d.check(d.cuModuleGetFunction(&fn, loaded, gpu.entry.c_str()),
          "cuModuleGetFunction",
          m.dir + ": kernel '" + k.desc.name + "': entry '" + gpu.entry +
              "' of " + k.gpuImage + " (gpu.entry does not match the image)");
  k.cuFunction = fn;

  std::string where = m.dir + ": kernel '" + k.desc.name + "'";
  int maxThreads = 0;
  d.check(d.cuFuncGetAttribute(&maxThreads,
                               CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, fn),
          "cuFuncGetAttribute", where);
  int64_t threads = gpu.block[0] * gpu.block[1] * gpu.block[2];
  if (threads > maxThreads)
    fail(ATTNRT_ERR_UNSUPPORTED,
         where + ": gpu.block has " + str(threads) + " threads but " +
             k.gpuImage + " can run at most " + str(maxThreads) +
             " per block on " + m.arch +
             " (registers per thread); regenerate it with attnc");
  if (gpu.smemBytes > m.info.max_shared_memory_optin)
    fail(ATTNRT_ERR_UNSUPPORTED,
         where + ": gpu.smem_bytes is " + str(gpu.smemBytes) + " but device " +
             str(m.device) + " (" + m.arch + ") gives a block at most " +
             str(m.info.max_shared_memory_optin) +
             " bytes of shared memory; compile for this device with attnc "
             "--target=" +
             m.arch);
  // Above the default 48 KiB a kernel must opt in to its dynamic size.
  if (gpu.smemBytes > kDefaultSmemBytes)
    d.check(
        d.cuFuncSetAttribute(fn,
                             CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                             static_cast<int>(gpu.smemBytes)),
        "cuFuncSetAttribute",
        where + " (" + str(gpu.smemBytes) + " bytes of dynamic shared memory)");
}

/// The C view of a kernel's gpu object.
void linkGpuInfo(attnrt_kernel &k) {
  const GpuKernelDesc &gpu = k.desc.gpu;
  attnrt_gpu_kernel_info &info = k.gpuInfo;
  info.entry = gpu.entry.c_str();
  info.image = k.gpuImage.c_str();
  info.image_arch = k.gpuImageArch.c_str();
  info.ptx = gpu.ptx.c_str();
  info.ptx_arch = gpu.ptxArch.c_str();
  for (int i = 0; i < 3; ++i) {
    info.block[i] = gpu.block[i];
    const GridDimDesc &g = gpu.grid[i];
    info.grid[i] = {g.symbol.empty() ? nullptr : g.symbol.c_str(), g.value,
                    g.multiply, g.divide};
  }
  info.smem_bytes = gpu.smemBytes;
  info.num_params = static_cast<int>(gpu.params.size());
  auto report = gpu.ptxas.find(k.gpuImageArch);
  info.ptxas = !info.image_is_ptx && report != gpu.ptxas.end() ? &report->second
                                                               : nullptr;
}

/// The context current on this thread, or device 0's primary context.
void bindContext(attnrt_gpu_module &m) {
  const Driver &d = *m.driver;
  ATTNRT_CU(d, cuCtxGetCurrent, &m.context);
  if (m.context) {
    ATTNRT_CU(d, cuCtxGetDevice, &m.device);
    return;
  }
  int count = 0;
  ATTNRT_CU(d, cuDeviceGetCount, &count);
  if (count < 1)
    fail(ATTNRT_ERR_CUDA, "the CUDA driver (" + d.path +
                              ") reports no device; attnrt_gpu_open needs "
                              "an NVIDIA GPU");
  ATTNRT_CU(d, cuDeviceGet, &m.device, 0);
  ATTNRT_CU(d, cuDevicePrimaryCtxRetain, &m.context, m.device);
  m.retainedPrimary = true;
}

void describeDevice(attnrt_gpu_module &m) {
  const Driver &d = *m.driver;
  attnrt_gpu_device_info &info = m.info;
  int optin = 0;
  ATTNRT_CU(d, cuDeviceGetAttribute, &info.compute_major,
            CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, m.device);
  ATTNRT_CU(d, cuDeviceGetAttribute, &info.compute_minor,
            CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, m.device);
  ATTNRT_CU(d, cuDeviceGetAttribute, &optin,
            CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, m.device);
  char name[256] = {0};
  ATTNRT_CU(d, cuDeviceGetName, name, static_cast<int>(sizeof name - 1),
            m.device);
  ATTNRT_CU(d, cuDriverGetVersion, &info.driver_version);
  m.deviceName = name;
  m.arch = archName(info.compute_major, info.compute_minor);
  info.ordinal = m.device;
  info.arch = m.arch.c_str();
  info.name = m.deviceName.c_str();
  info.max_shared_memory_optin = optin;
}

void launch(attnrt_gpu_module &m, const attnrt_kernel &k, GpuLaunch &l,
            CUstream stream) {
  if (l.empty())
    return;
  std::vector<void *> params;
  for (uint64_t &slot : l.paramSlots)
    params.push_back(&slot);
  const attnrt_gpu_launch &g = l.dims;
  m.driver->check(
      m.driver->cuLaunchKernel(
          static_cast<CUfunction>(k.cuFunction), g.grid[0], g.grid[1],
          g.grid[2], g.block[0], g.block[1], g.block[2], g.smem_bytes, stream,
          params.empty() ? nullptr : params.data(), nullptr),
      "cuLaunchKernel",
      "kernel '" + k.desc.name + "' (grid " + str(g.grid[0]) + "x" +
          str(g.grid[1]) + "x" + str(g.grid[2]) + ", block " + str(g.block[0]) +
          "x" + str(g.block[1]) + "x" + str(g.block[2]) + ", " +
          str(g.smem_bytes) + " bytes of shared memory)");
}

/// Owns the events of attnrt_gpu_time_runs.
struct Events {
  const Driver &d;
  std::vector<CUevent> events;
  ~Events() {
    for (CUevent e : events)
      d.cuEventDestroy(e);
  }
  CUevent create() {
    CUevent e = nullptr;
    ATTNRT_CU(d, cuEventCreate, &e, CU_EVENT_DEFAULT);
    events.push_back(e);
    return e;
  }
};

} // namespace

attnrt_gpu_module::~attnrt_gpu_module() {
  if (!driver)
    return;
  // Errors are ignored: a sticky context error must not keep the rest
  // loaded, and close has no status.
  CUcontext current = nullptr;
  bool pushed = false;
  if (context && driver->cuCtxGetCurrent(&current) == CUDA_SUCCESS &&
      current != context)
    pushed = driver->cuCtxPushCurrent(context) == CUDA_SUCCESS;
  for (CUmodule image : images)
    driver->cuModuleUnload(image);
  if (pushed)
    driver->cuCtxPopCurrent(&current);
  if (retainedPrimary)
    driver->cuDevicePrimaryCtxRelease(device);
}

extern "C" attnrt_status attnrt_cuda_available(void) {
  return guard([&] {
    const Driver &d = loadDriver();
    int count = 0;
    ATTNRT_CU(d, cuDeviceGetCount, &count);
    if (count < 1)
      fail(ATTNRT_ERR_CUDA, "the CUDA driver (" + d.path +
                                ") reports no device; attnrt's GPU path "
                                "needs an NVIDIA GPU");
  });
}

extern "C" attnrt_status attnrt_artifact_target(const char *dir,
                                                const char **target) {
  return guard([&] {
    if (!dir || !*dir || !target)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           "attnrt_artifact_target: dir and target must be non-NULL (dir: "
           "the directory attnc -o wrote)");
    *target = nullptr;
    std::string t = loadManifestTarget(dir);
    if (t == "host")
      *target = "host";
    else if (t == "cuda")
      *target = "cuda";
    else
      fail(ATTNRT_ERR_UNSUPPORTED,
           std::string(dir) + "/manifest.json has target '" + t +
               "' but attnrt runs only 'host' and 'cuda' artifacts; compile "
               "with attnc --target=host or --target=sm_XY");
  });
}

extern "C" attnrt_status attnrt_gpu_open(const char *dir,
                                         attnrt_gpu_module **out) {
  return guard([&] {
    if (!out)
      fail(ATTNRT_ERR_INVALID_ARGUMENT, "attnrt_gpu_open: out is NULL");
    *out = nullptr;
    if (!dir || !*dir)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           "attnrt_gpu_open: directory is empty; pass the directory attnc "
           "-o wrote");
    auto m = std::make_unique<attnrt_gpu_module>();
    m->dir = dir;
    // Everything that can be checked without CUDA, first.
    Manifest manifest = loadManifest(m->dir, ArtifactTarget::Cuda);
    for (const KernelDesc &k : manifest.kernels) {
      requireFile(m->dir, k.gpu.ptx, k, "gpu.ptx");
      for (const auto &[arch, file] : k.gpu.cubins)
        requireFile(m->dir, file, k, "gpu.cubins." + arch);
      std::string ptx = m->dir + "/" + k.gpu.ptx;
      checkPtxSignature(k, readFile(ptx), ptx);
    }
    m->driver = &loadDriver();
    bindContext(*m);
    ContextScope scope(*m->driver, m->context);
    describeDevice(*m);
    for (KernelDesc &desc : manifest.kernels) {
      auto k = std::make_unique<attnrt_kernel>();
      k->gpuModule = m.get();
      k->desc = std::move(desc);
      linkViews(k->desc);
      chooseImage(*k, *m);
      loadKernel(*k, *m);
      linkGpuInfo(*k);
      m->kernels.push_back(std::move(k));
    }
    *out = m.release();
  });
}

extern "C" void attnrt_gpu_close(attnrt_gpu_module *module) { delete module; }

extern "C" int attnrt_gpu_num_kernels(const attnrt_gpu_module *module) {
  return module ? static_cast<int>(module->kernels.size()) : 0;
}

extern "C" const attnrt_kernel *
attnrt_gpu_kernel_at(const attnrt_gpu_module *module, int index) {
  const attnrt_kernel *result = nullptr;
  guard([&] {
    requireModule(module, "attnrt_gpu_kernel_at");
    if (index < 0 || static_cast<size_t>(index) >= module->kernels.size())
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           "attnrt_gpu_kernel_at: index " + str(index) +
               " is out of range; the artifact has " +
               str(module->kernels.size()) + " kernels");
    result = module->kernels[index].get();
  });
  return result;
}

extern "C" attnrt_status attnrt_gpu_find_kernel(const attnrt_gpu_module *module,
                                                const char *name,
                                                const attnrt_kernel **out) {
  return guard([&] {
    if (!module || !name || !out)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           "attnrt_gpu_find_kernel: module, name and out must be non-NULL");
    *out = nullptr;
    std::string names;
    for (const auto &k : module->kernels) {
      if (k->desc.name == name) {
        *out = k.get();
        return;
      }
      names += (names.empty() ? "" : ", ") + k->desc.name;
    }
    fail(ATTNRT_ERR_NOT_FOUND, std::string("no kernel named '") + name +
                                   "' in " + module->dir +
                                   "; available: " + names);
  });
}

extern "C" attnrt_status attnrt_gpu_device(const attnrt_gpu_module *module,
                                           attnrt_gpu_device_info *out) {
  return guard([&] {
    requireModule(module, "attnrt_gpu_device");
    if (!out)
      fail(ATTNRT_ERR_INVALID_ARGUMENT, "attnrt_gpu_device: out is NULL");
    *out = module->info;
  });
}

extern "C" const attnrt_gpu_kernel_info *
attnrt_kernel_gpu(const attnrt_kernel *kernel) {
  return kernel && kernel->gpuModule ? &kernel->gpuInfo : nullptr;
}

extern "C" attnrt_status attnrt_gpu_launch_config(const attnrt_kernel *kernel,
                                                  const attnrt_tensor *args,
                                                  int numArgs,
                                                  attnrt_gpu_launch *out) {
  return guard([&] {
    const char *fn = "attnrt_gpu_launch_config";
    if (!out)
      fail(ATTNRT_ERR_INVALID_ARGUMENT, std::string(fn) + ": out is NULL");
    gpuKernelOf(kernel ? kernel->gpuModule : nullptr, kernel, fn);
    *out = planGpuLaunch(kernel->desc, args, numArgs).dims;
  });
}

extern "C" attnrt_status attnrt_gpu_run(attnrt_gpu_module *module,
                                        const attnrt_kernel *kernel,
                                        const attnrt_tensor *args, int numArgs,
                                        void *stream) {
  return guard([&] {
    const attnrt_kernel &k = gpuKernelOf(module, kernel, "attnrt_gpu_run");
    GpuLaunch l = planGpuLaunch(k.desc, args, numArgs);
    ContextScope scope(*module->driver, module->context);
    launch(*module, k, l, static_cast<CUstream>(stream));
  });
}

extern "C" attnrt_status attnrt_gpu_time_runs(attnrt_gpu_module *module,
                                              const attnrt_kernel *kernel,
                                              const attnrt_tensor *args,
                                              int numArgs, void *stream,
                                              int runs, float *ms) {
  return guard([&] {
    const char *fn = "attnrt_gpu_time_runs";
    const attnrt_kernel &k = gpuKernelOf(module, kernel, fn);
    if (runs < 1 || !ms)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           std::string(fn) + ": runs is " + str(runs) +
               (ms ? "" : " and ms is NULL") +
               "; pass runs >= 1 and room for runs floats");
    GpuLaunch l = planGpuLaunch(k.desc, args, numArgs);
    const Driver &d = *module->driver;
    ContextScope scope(d, module->context);
    auto s = static_cast<CUstream>(stream);
    Events events{d, {}};
    std::vector<CUevent> marks;
    for (int i = 0; i <= runs; ++i)
      marks.push_back(events.create());
    // Back to back: run i lies between marks i and i + 1.
    ATTNRT_CU(d, cuEventRecord, marks[0], s);
    for (int i = 0; i < runs; ++i) {
      launch(*module, k, l, s);
      ATTNRT_CU(d, cuEventRecord, marks[i + 1], s);
    }
    ATTNRT_CU(d, cuEventSynchronize, marks[runs]);
    for (int i = 0; i < runs; ++i)
      ATTNRT_CU(d, cuEventElapsedTime, &ms[i], marks[i], marks[i + 1]);
  });
}

extern "C" attnrt_status attnrt_gpu_synchronize(attnrt_gpu_module *module,
                                                void *stream) {
  return guard([&] {
    requireModule(module, "attnrt_gpu_synchronize");
    const Driver &d = *module->driver;
    ContextScope scope(d, module->context);
    if (stream)
      ATTNRT_CU(d, cuStreamSynchronize, static_cast<CUstream>(stream));
    else
      ATTNRT_CU(d, cuCtxSynchronize);
  });
}

extern "C" attnrt_status attnrt_gpu_alloc(attnrt_gpu_module *module,
                                          size_t bytes, void **devicePtr) {
  return guard([&] {
    requireModule(module, "attnrt_gpu_alloc");
    if (!devicePtr)
      fail(ATTNRT_ERR_INVALID_ARGUMENT, "attnrt_gpu_alloc: device_ptr is NULL");
    *devicePtr = nullptr;
    const Driver &d = *module->driver;
    ContextScope scope(d, module->context);
    CUdeviceptr p = 0;
    d.check(d.cuMemAlloc(&p, bytes ? bytes : 1), "cuMemAlloc",
            "attnrt_gpu_alloc(" + str(static_cast<int64_t>(bytes)) + " bytes)");
    *devicePtr = reinterpret_cast<void *>(static_cast<uintptr_t>(p));
  });
}

extern "C" attnrt_status attnrt_gpu_free(attnrt_gpu_module *module,
                                         void *devicePtr) {
  return guard([&] {
    requireModule(module, "attnrt_gpu_free");
    if (!devicePtr)
      return;
    const Driver &d = *module->driver;
    ContextScope scope(d, module->context);
    ATTNRT_CU(d, cuMemFree,
              static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(devicePtr)));
  });
}

extern "C" attnrt_status attnrt_gpu_copy_to_device(attnrt_gpu_module *module,
                                                   void *deviceDst,
                                                   const void *hostSrc,
                                                   size_t bytes) {
  return guard([&] {
    requireModule(module, "attnrt_gpu_copy_to_device");
    if (!bytes)
      return;
    if (!deviceDst || !hostSrc)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           "attnrt_gpu_copy_to_device: a pointer is NULL");
    const Driver &d = *module->driver;
    ContextScope scope(d, module->context);
    ATTNRT_CU(d, cuMemcpyHtoD,
              static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(deviceDst)),
              hostSrc, bytes);
  });
}

extern "C" attnrt_status attnrt_gpu_copy_to_host(attnrt_gpu_module *module,
                                                 void *hostDst,
                                                 const void *deviceSrc,
                                                 size_t bytes) {
  return guard([&] {
    requireModule(module, "attnrt_gpu_copy_to_host");
    if (!bytes)
      return;
    if (!hostDst || !deviceSrc)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           "attnrt_gpu_copy_to_host: a pointer is NULL");
    const Driver &d = *module->driver;
    ContextScope scope(d, module->context);
    ATTNRT_CU(d, cuMemcpyDtoH, hostDst,
              static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(deviceSrc)),
              bytes);
  });
}
