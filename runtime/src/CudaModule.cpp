//===- CudaModule.cpp - C API of CUDA artifacts (attnrt_cuda.h) -----------===//
//
// attnrt_gpu_open checks the whole artifact before it loads the driver, so
// a broken manifest fails the same way with or without a GPU; then it loads
// each kernel's image into one context, which every later call makes
// current for its duration (push/pop), leaving the caller's context alone.
// Split-KV kernels choose num_splits per call from the occupancy taken at
// open, and take their partial results' scratch from the module.
//
//===----------------------------------------------------------------------===//

#include "CudaDriver.h"
#include "Error.h"
#include "GpuLaunch.h"
#include "Module.h"
#include "PtxSignature.h"

#include "attnrt/attnrt_cuda.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
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
  attnrt::KernelList kernels;
  // Split-KV scratch: the caller's (attnrt_gpu_set_scratch) when set, else
  // attnrt's own, grown on demand and freed at close.
  std::mutex scratchMutex;
  CUdeviceptr callerScratch = 0;
  size_t callerScratchBytes = 0;
  CUdeviceptr ownScratch = 0;
  size_t ownScratchBytes = 0;

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

std::string hex(uint64_t v) {
  char text[24];
  std::snprintf(text, sizeof text, "0x%llx",
                static_cast<unsigned long long>(v));
  return text;
}

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

/// Resolves the entry of `launch` (`field`: "gpu" or "gpu.merge") in the
/// loaded image and checks its block and shared memory against the device,
/// opting in to dynamic shared memory above 48 KiB.
CUfunction resolveEntry(const attnrt_kernel &k, const attnrt_gpu_module &m,
                        CUmodule loaded, const GpuLaunchDesc &launch,
                        const std::string &field) {
  const Driver &d = *m.driver;
  bool merge = field != "gpu";
  std::string where = m.dir + ": kernel '" + k.desc.name + "'" +
                      (merge ? " merge '" + launch.entry + "'" : "");
  CUfunction fn = nullptr;
  d.check(d.cuModuleGetFunction(&fn, loaded, launch.entry.c_str()),
          "cuModuleGetFunction",
          m.dir + ": kernel '" + k.desc.name + "': entry '" + launch.entry +
              "' of " + k.gpuImage + " (" + field +
              ".entry does not match the image)");
  int maxThreads = 0;
  d.check(d.cuFuncGetAttribute(&maxThreads,
                               CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, fn),
          "cuFuncGetAttribute", where);
  int64_t threads = launch.block[0] * launch.block[1] * launch.block[2];
  if (threads > maxThreads)
    fail(ATTNRT_ERR_UNSUPPORTED,
         where + ": " + field + ".block has " + str(threads) + " threads but " +
             k.gpuImage + " can run at most " + str(maxThreads) +
             " per block on " + m.arch +
             " (registers per thread); regenerate it with attnc");
  if (launch.smemBytes > m.info.max_shared_memory_optin)
    fail(ATTNRT_ERR_UNSUPPORTED,
         where + ": " + field + ".smem_bytes is " + str(launch.smemBytes) +
             " but device " + str(m.device) + " (" + m.arch +
             ") gives a block at most " + str(m.info.max_shared_memory_optin) +
             " bytes of shared memory; compile for this device with attnc "
             "--target=" +
             m.arch);
  // Above the default 48 KiB a kernel must opt in to its dynamic size.
  if (launch.smemBytes > kDefaultSmemBytes)
    d.check(d.cuFuncSetAttribute(
                fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                static_cast<int>(launch.smemBytes)),
            "cuFuncSetAttribute",
            where + " (" + str(launch.smemBytes) +
                " bytes of dynamic shared memory)");
  return fn;
}

/// Loads the chosen image and resolves the entries; the JIT's error log
/// goes into the message when PTX does not compile. Split-KV kernels also
/// get their occupancy, which chooses num_splits.
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
  k.cuFunction = resolveEntry(k, m, loaded, gpu, "gpu");
  if (!gpu.splitKv())
    return;
  k.cuMergeFunction = resolveEntry(k, m, loaded, gpu.merge, "gpu.merge");
  // After the opt-in: the occupancy counts the dynamic shared memory.
  int perSm = 0;
  int threads = static_cast<int>(gpu.block[0] * gpu.block[1] * gpu.block[2]);
  d.check(d.cuOccupancyMaxActiveBlocksPerMultiprocessor(
              &perSm, static_cast<CUfunction>(k.cuFunction), threads,
              static_cast<size_t>(gpu.smemBytes)),
          "cuOccupancyMaxActiveBlocksPerMultiprocessor",
          m.dir + ": kernel '" + k.desc.name + "' (" + str(threads) +
              " threads, " + str(gpu.smemBytes) +
              " bytes of dynamic shared memory per block)");
  k.gpuResidentBlocks = std::max<int64_t>(
      1, static_cast<int64_t>(m.info.multiprocessor_count) * perSm);
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
  // Reports describe cubins: none for PTX.
  auto reportOf = [&](const GpuLaunchDesc &launch) {
    auto it = launch.ptxas.find(k.gpuImageArch);
    return !info.image_is_ptx && it != launch.ptxas.end() ? &it->second
                                                          : nullptr;
  };
  info.ptxas = reportOf(gpu);
  if (!gpu.splitKv())
    return;
  const GpuLaunchDesc &merge = gpu.merge;
  info.max_splits = gpu.maxSplits;
  info.split_symbol = gpu.splitSymbol.c_str();
  info.merge_entry = merge.entry.c_str();
  for (int i = 0; i < 3; ++i) {
    info.merge_block[i] = merge.block[i];
    const GridDimDesc &g = merge.grid[i];
    info.merge_grid[i] = {g.symbol.empty() ? nullptr : g.symbol.c_str(),
                          g.value, g.multiply, g.divide};
  }
  info.merge_smem_bytes = merge.smemBytes;
  info.merge_num_params = static_cast<int>(merge.params.size());
  info.merge_ptxas = reportOf(merge);
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
  ATTNRT_CU(d, cuDeviceGetAttribute, &info.multiprocessor_count,
            CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, m.device);
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

/// One cuLaunchKernel; a grid with a 0 dimension launches nothing. `what`
/// names the launch in messages.
void launchOne(const Driver &d, void *fn, const std::string &what,
               const uint32_t grid[3], const uint32_t block[3], uint32_t smem,
               std::vector<uint64_t> &slots, CUstream stream) {
  if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0)
    return;
  std::vector<void *> params;
  for (uint64_t &slot : slots)
    params.push_back(&slot);
  d.check(d.cuLaunchKernel(static_cast<CUfunction>(fn), grid[0], grid[1],
                           grid[2], block[0], block[1], block[2], smem, stream,
                           params.empty() ? nullptr : params.data(), nullptr),
          "cuLaunchKernel",
          what + " (grid " + str(grid[0]) + "x" + str(grid[1]) + "x" +
              str(grid[2]) + ", block " + str(block[0]) + "x" + str(block[1]) +
              "x" + str(block[2]) + ", " + str(smem) +
              " bytes of shared memory)");
}

/// The main kernel, then (split-KV, num_splits > 1) the merge, which the
/// stream orders after it.
void launch(attnrt_gpu_module &m, const attnrt_kernel &k, GpuLaunch &l,
            CUstream stream) {
  if (l.empty())
    return;
  const attnrt_gpu_launch &g = l.dims;
  launchOne(*m.driver, k.cuFunction, "kernel '" + k.desc.name + "'", g.grid,
            g.block, g.smem_bytes, l.paramSlots, stream);
  if (l.merge)
    launchOne(
        *m.driver, k.cuMergeFunction,
        "kernel '" + k.desc.name + "' merge '" + k.desc.gpu.merge.entry + "'",
        g.merge_grid, g.merge_block, g.merge_smem_bytes, l.mergeSlots, stream);
}

/// The launches of `k` for `args`, with the kernel's num_splits policy.
GpuLaunch plan(const attnrt_kernel &k, const attnrt_tensor *args, int numArgs) {
  return planGpuLaunch(k.desc, args, numArgs,
                       {k.gpuResidentBlocks, k.gpuFixedSplits.load()});
}

/// Points the launch's scratch parameters at the caller's scratch or at
/// attnrt's own, grown to what `l` needs; in the module's context.
void bindScratch(attnrt_gpu_module &m, const attnrt_kernel &k, GpuLaunch &l) {
  uint64_t need = l.dims.scratch_bytes;
  if (need == 0)
    return;
  const Driver &d = *m.driver;
  std::lock_guard<std::mutex> lock(m.scratchMutex);
  std::string what = "kernel '" + k.desc.name +
                     "' with num_splits = " + str(l.dims.num_splits) +
                     " needs " + str(need) + " bytes of scratch";
  if (m.callerScratch) {
    if (need > m.callerScratchBytes)
      fail(ATTNRT_ERR_VALIDATION,
           what + " but the buffer given to attnrt_gpu_set_scratch has " +
               str(m.callerScratchBytes) + "; give one of at least " +
               str(need) +
               " bytes (attnrt_gpu_launch_config's scratch_bytes), or NULL "
               "to let attnrt allocate it");
    l.bindScratch(k.desc.gpu, m.callerScratch);
    return;
  }
  if (need > m.ownScratchBytes) {
    if (m.ownScratch) {
      // Launches in flight may still read the old buffer.
      ATTNRT_CU(d, cuCtxSynchronize);
      ATTNRT_CU(d, cuMemFree, m.ownScratch);
      m.ownScratch = 0;
      m.ownScratchBytes = 0;
    }
    d.check(d.cuMemAlloc(&m.ownScratch, need), "cuMemAlloc", what);
    m.ownScratchBytes = need;
  }
  l.bindScratch(k.desc.gpu, m.ownScratch);
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
  if (ownScratch)
    driver->cuMemFree(ownScratch);
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
    result = kernelAt(module->kernels, index, "attnrt_gpu_kernel_at");
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
    *out = nullptr; // on failure too
    *out = findKernel(module->kernels, module->dir, name);
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
    *out = plan(*kernel, args, numArgs).dims;
  });
}

extern "C" attnrt_status attnrt_gpu_run(attnrt_gpu_module *module,
                                        const attnrt_kernel *kernel,
                                        const attnrt_tensor *args, int numArgs,
                                        void *stream) {
  return guard([&] {
    const attnrt_kernel &k = gpuKernelOf(module, kernel, "attnrt_gpu_run");
    GpuLaunch l = plan(k, args, numArgs);
    ContextScope scope(*module->driver, module->context);
    bindScratch(*module, k, l);
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
    GpuLaunch l = plan(k, args, numArgs);
    const Driver &d = *module->driver;
    ContextScope scope(d, module->context);
    bindScratch(*module, k, l);
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

extern "C" attnrt_status attnrt_gpu_set_num_splits(attnrt_gpu_module *module,
                                                   const attnrt_kernel *kernel,
                                                   int numSplits) {
  return guard([&] {
    const char *fn = "attnrt_gpu_set_num_splits";
    const attnrt_kernel &k = gpuKernelOf(module, kernel, fn);
    const GpuKernelDesc &gpu = k.desc.gpu;
    if (!gpu.splitKv() && numSplits != 0 && numSplits != 1)
      fail(ATTNRT_ERR_VALIDATION,
           std::string(fn) + ": num_splits is " + str(numSplits) +
               " but kernel '" + k.desc.name +
               "' is not split-KV (its manifest has no gpu.split_kv) and "
               "always runs unsplit; pass 0 (automatic) or 1");
    if (numSplits < 0 || numSplits > std::max(gpu.maxSplits, 1))
      fail(ATTNRT_ERR_VALIDATION,
           std::string(fn) + ": num_splits is " + str(numSplits) +
               " but kernel '" + k.desc.name + "' takes 1 to " +
               str(gpu.maxSplits) +
               " (gpu.split_kv.max_splits); pass one of those, or 0 to "
               "choose per call");
    k.gpuFixedSplits.store(gpu.splitKv() ? numSplits : 0);
  });
}

extern "C" attnrt_status attnrt_gpu_set_scratch(attnrt_gpu_module *module,
                                                void *devicePtr, size_t bytes) {
  return guard([&] {
    const char *fn = "attnrt_gpu_set_scratch";
    requireModule(module, fn);
    auto p = static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(devicePtr));
    // The buffers are laid out at 256-byte aligned offsets from it.
    if (p % kGpuScratchAlign)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           std::string(fn) + ": device_ptr " + hex(p) + " is not " +
               str(kGpuScratchAlign) +
               "-byte aligned; pass a pointer cuMemAlloc returned (or one "
               "at a multiple of " +
               str(kGpuScratchAlign) + " bytes into it)");
    std::lock_guard<std::mutex> lock(module->scratchMutex);
    module->callerScratch = p;
    module->callerScratchBytes = p ? bytes : 0;
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
