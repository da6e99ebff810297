//===- attnrt.cpp - C API: modules, kernels, runs -------------------------===//
//
// Glue between the C API and the internal pieces (Manifest, Library,
// Validate, ThreadPool). Every entry point goes through guard() so failures
// become a status plus attnrt_last_error().
//
//===----------------------------------------------------------------------===//

#include "Error.h"
#include "Module.h"
#include "Validate.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>

using namespace attnrt;

AlignedBlock::~AlignedBlock() { std::free(data); }

void AlignedBlock::reserve(size_t n) {
  if (data && n <= bytes)
    return;
  std::free(data);
  data = nullptr;
  bytes = 0;
  // At least one alignment unit, so kernels never see NULL scratch.
  size_t size = std::max(n + kScratchAlign - 1, kScratchAlign) / kScratchAlign *
                kScratchAlign;
  data = std::aligned_alloc(kScratchAlign, size);
  if (!data)
    throw std::bad_alloc();
  bytes = size;
}

namespace {

void requireKernel(const attnrt_kernel *kernel) {
  if (!kernel)
    fail(ATTNRT_ERR_INVALID_ARGUMENT, "attnrt: kernel is NULL; get one from "
                                      "attnrt_find_kernel or attnrt_kernel_at");
}

unsigned threadCount(int threads, const char *what) {
  if (threads < 0)
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(what) + ": num_threads is " + std::to_string(threads) +
             "; pass 0 (default) or a positive count");
  return static_cast<unsigned>(threads);
}

/// Resolves every kernel's symbols in `module->library` and starts the
/// pool; shared by attnrt_open and attnrt_open_embedded.
void bindKernels(attnrt_module &module, Manifest &manifest, unsigned threads) {
  for (KernelDesc &k : manifest.kernels) {
    auto kernel = std::make_unique<attnrt_kernel>();
    kernel->module = &module;
    kernel->desc = std::move(k);
    std::string what = "kernel '" + kernel->desc.name + "'";
    kernel->run = reinterpret_cast<RunFn>(
        module.library->symbol(kernel->desc.entryRun, what));
    kernel->workItems = reinterpret_cast<WorkItemsFn>(
        module.library->symbol(kernel->desc.entryWorkItems, what));
    // Required when the manifest says the kernel counts tiles, picked up
    // when present otherwise (an older manifest of an instrumented build).
    std::string stats = kernel->desc.name + "__tile_stats";
    kernel->tileStats = static_cast<int64_t *>(
        kernel->desc.tileStats
            ? module.library->symbol(stats, what + " (instrumented: "
                                                   "tile_stats)")
            : module.library->find(stats));
    linkViews(kernel->desc);
    module.kernels.push_back(std::move(kernel));
  }
  module.steps = std::move(manifest.steps);
  module.pool = std::make_unique<ThreadPool>(threads);
}
} // namespace

extern "C" attnrt_status attnrt_open(const char *dir, int numThreads,
                                     attnrt_module **out) {
  return guard([&] {
    if (!out)
      fail(ATTNRT_ERR_INVALID_ARGUMENT, "attnrt_open: out is NULL");
    *out = nullptr;
    if (!dir || !*dir)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           "attnrt_open: directory is empty; pass the directory attnc -o "
           "wrote");
    unsigned threads = threadCount(numThreads, "attnrt_open");
    auto module = std::make_unique<attnrt_module>();
    module->dir = dir;
    Manifest manifest = loadManifest(module->dir, ArtifactTarget::Host);
    module->library =
        std::make_unique<Library>(module->dir + "/" + manifest.library);
    bindKernels(*module, manifest, threads);
    *out = module.release();
  });
}

extern "C" attnrt_status attnrt_open_embedded(const char *manifestJson,
                                              void *(*lookup)(const char *),
                                              int numThreads,
                                              attnrt_module **out) {
  return guard([&] {
    const char *fn = "attnrt_open_embedded";
    if (!out)
      fail(ATTNRT_ERR_INVALID_ARGUMENT, std::string(fn) + ": out is NULL");
    *out = nullptr;
    if (!manifestJson)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           std::string(fn) + ": manifest_json is NULL; pass attnc_<id>_"
                             "manifest from the header attnc "
                             "--linkage=object wrote");
    if (!lookup)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           std::string(fn) + ": lookup is NULL; pass attnc_<id>_symbol from "
                             "the header attnc --linkage=object wrote");
    unsigned threads = threadCount(numThreads, fn);
    auto module = std::make_unique<attnrt_module>();
    // The kernels are already in the process: "library" names a file that
    // need not exist here, so it is only used to describe the module.
    Manifest manifest =
        parseManifest(manifestJson, "the embedded manifest",
                      ArtifactTarget::Host, /*needLibrary=*/false);
    module->dir = "the embedded module";
    module->library = std::make_unique<Library>(lookup, module->dir);
    bindKernels(*module, manifest, threads);
    *out = module.release();
  });
}

extern "C" void attnrt_close(attnrt_module *module) { delete module; }

extern "C" int attnrt_num_kernels(const attnrt_module *module) {
  return module ? static_cast<int>(module->kernels.size()) : 0;
}

extern "C" const attnrt_kernel *attnrt_kernel_at(const attnrt_module *module,
                                                 int index) {
  const attnrt_kernel *result = nullptr;
  guard([&] {
    if (!module)
      fail(ATTNRT_ERR_INVALID_ARGUMENT, "attnrt_kernel_at: module is NULL");
    result = kernelAt(module->kernels, index, "attnrt_kernel_at");
  });
  return result;
}

extern "C" attnrt_status attnrt_find_kernel(const attnrt_module *module,
                                            const char *name,
                                            const attnrt_kernel **out) {
  return guard([&] {
    if (!module || !name || !out)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           "attnrt_find_kernel: module, name and out must be non-NULL");
    *out = nullptr; // on failure too
    *out = findKernel(module->kernels, module->dir, name);
  });
}

const attnrt_kernel *attnrt::kernelAt(const KernelList &kernels, int index,
                                      const char *fn) {
  if (index < 0 || static_cast<size_t>(index) >= kernels.size())
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) + ": index " + std::to_string(index) +
             " is out of range; the artifact has " +
             std::to_string(kernels.size()) + " kernels");
  return kernels[index].get();
}

const attnrt_kernel *attnrt::findKernel(const KernelList &kernels,
                                        const std::string &dir,
                                        const char *name) {
  std::string names;
  for (const auto &k : kernels) {
    if (k->desc.name == name)
      return k.get();
    names += (names.empty() ? "" : ", ") + k->desc.name;
  }
  fail(ATTNRT_ERR_NOT_FOUND, std::string("no kernel named '") + name + "' in " +
                                 dir + "; available: " + names);
}

extern "C" const char *attnrt_kernel_name(const attnrt_kernel *kernel) {
  return kernel ? kernel->desc.name.c_str() : nullptr;
}

extern "C" int attnrt_kernel_num_args(const attnrt_kernel *kernel) {
  return kernel ? static_cast<int>(kernel->desc.args.size()) : 0;
}

extern "C" const attnrt_arg_info *attnrt_kernel_arg(const attnrt_kernel *kernel,
                                                    int index) {
  if (!kernel || index < 0 ||
      static_cast<size_t>(index) >= kernel->desc.argViews.size())
    return nullptr;
  return &kernel->desc.argViews[index];
}

extern "C" const char *attnrt_kernel_kind(const attnrt_kernel *kernel) {
  return kernel ? kernel->desc.kind.c_str() : nullptr;
}

extern "C" int attnrt_kernel_num_phases(const attnrt_kernel *kernel) {
  return kernel ? kernel->desc.phases : 0;
}

extern "C" int attnrt_kernel_num_scratch(const attnrt_kernel *kernel) {
  return kernel ? static_cast<int>(kernel->desc.scratch.size()) : 0;
}

extern "C" const attnrt_arg_info *
attnrt_kernel_scratch(const attnrt_kernel *kernel, int index) {
  if (!kernel || index < 0 ||
      static_cast<size_t>(index) >= kernel->desc.scratchViews.size())
    return nullptr;
  return &kernel->desc.scratchViews[index];
}

extern "C" const attnrt_attention_info *
attnrt_kernel_attention(const attnrt_kernel *kernel) {
  return kernel && kernel->desc.hasAttention ? &kernel->desc.attention
                                             : nullptr;
}

extern "C" const attnrt_kv_cache_info *
attnrt_kernel_kv_cache(const attnrt_kernel *kernel) {
  return kernel && kernel->desc.hasKvCache ? &kernel->desc.kvCache.view
                                           : nullptr;
}

extern "C" const attnrt_block_sparse_info *
attnrt_kernel_block_sparse(const attnrt_kernel *kernel) {
  return kernel && kernel->desc.hasBlockSparse ? &kernel->desc.blockSparse
                                               : nullptr;
}

extern "C" const attnrt_select_pages_info *
attnrt_kernel_select_pages(const attnrt_kernel *kernel) {
  return kernel && kernel->desc.hasSelectPages ? &kernel->desc.selectPages
                                               : nullptr;
}

extern "C" int attnrt_kernel_has_tile_stats(const attnrt_kernel *kernel) {
  return kernel && kernel->tileStats ? 1 : 0;
}

namespace {
int64_t *requireTileStats(const attnrt_kernel *kernel, const char *fn) {
  requireKernel(kernel);
  if (kernel->desc.hasGpu)
    fail(ATTNRT_ERR_UNSUPPORTED,
         std::string(fn) + ": kernel '" + kernel->desc.name +
             "' is a CUDA kernel; tile counters exist only in host kernels "
             "compiled with attnc --count-tiles");
  if (!kernel->tileStats)
    fail(ATTNRT_ERR_UNSUPPORTED,
         std::string(fn) + ": kernel '" + kernel->desc.name +
             "' has no tile counters (its library does not export '" +
             kernel->desc.name +
             "__tile_stats'); compile it with attnc --count-tiles");
  return kernel->tileStats;
}
} // namespace

extern "C" attnrt_status attnrt_kernel_tile_stats(const attnrt_kernel *kernel,
                                                  int64_t out[3]) {
  return guard([&] {
    const char *fn = "attnrt_kernel_tile_stats";
    int64_t *stats = requireTileStats(kernel, fn);
    if (!out)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           std::string(fn) + ": out is NULL; pass an int64_t[3]");
    // The kernel adds atomically, possibly from a run on another thread.
    for (int i = 0; i < 3; ++i)
      out[i] = __atomic_load_n(&stats[i], __ATOMIC_RELAXED);
  });
}

extern "C" attnrt_status
attnrt_kernel_reset_tile_stats(const attnrt_kernel *kernel) {
  return guard([&] {
    int64_t *stats = requireTileStats(kernel, "attnrt_kernel_reset_tile_stats");
    for (int i = 0; i < 3; ++i)
      __atomic_store_n(&stats[i], 0, __ATOMIC_RELAXED);
  });
}

extern "C" attnrt_status attnrt_validate(const attnrt_kernel *kernel,
                                         const attnrt_tensor *args,
                                         int numArgs) {
  return guard([&] {
    requireKernel(kernel);
    // A CUDA kernel's data are device pointers: only what needs no data.
    if (kernel->desc.hasGpu)
      validateDeviceArgs(kernel->desc, args, numArgs);
    else
      validateArgs(kernel->desc, args, numArgs, nullptr);
  });
}

extern "C" attnrt_status attnrt_run(attnrt_module *module,
                                    const attnrt_kernel *kernel,
                                    const attnrt_tensor *args, int numArgs,
                                    int numThreads) {
  return guard([&] {
    requireKernel(kernel);
    if (kernel->desc.hasGpu)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           "attnrt_run: kernel '" + kernel->desc.name +
               "' is a CUDA kernel (attnrt_gpu_open); launch it with "
               "attnrt_gpu_run");
    if (!module || kernel->module != module)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           "attnrt_run: kernel '" + kernel->desc.name +
               "' does not belong to this module; pass the module it came "
               "from");
    unsigned threads = threadCount(numThreads, "attnrt_run");
    runKernel(*module, *kernel, args, numArgs, threads, nullptr);
  });
}

void attnrt::runKernel(attnrt_module &module, const attnrt_kernel &kernel,
                       const attnrt_tensor *args, int numArgs, unsigned threads,
                       const ScratchPlacement *scratch) {
  Descriptors desc;
  validateArgs(kernel.desc, args, numArgs, &desc);
  // Held until the last phase has finished.
  std::unique_lock<std::mutex> reuse;
  AlignedBlock own;
  if (scratch) {
    size_t n = kernel.desc.scratch.size();
    if (scratch->data.size() != n || scratch->bytes.size() != n)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           "kernel '" + kernel.desc.name +
               "': " + std::to_string(scratch->data.size()) +
               " scratch buffers were placed but the kernel has " +
               std::to_string(n));
    for (size_t i = 0; i < n; ++i) {
      // The layout rounds each buffer up to kScratchAlign; the kernel uses
      // only its elements.
      int64_t need = attnrt_dtype_size(kernel.desc.scratch[i].dtype);
      for (int64_t size : desc.scratchSizes[i])
        need *= size;
      if (scratch->bytes[i] < need)
        fail(ATTNRT_ERR_VALIDATION,
             "kernel '" + kernel.desc.name + "': scratch buffer '" +
                 kernel.desc.scratch[i].name + "' has " +
                 std::to_string(scratch->bytes[i]) + " bytes but needs " +
                 std::to_string(need) + " for these argument sizes");
    }
    // bindScratch places buffer i at block + scratchOffsets[i]: the lowest
    // placed address is the block (buffers may lie in different arenas).
    uintptr_t base = UINTPTR_MAX;
    for (void *p : scratch->data)
      base = std::min(base, reinterpret_cast<uintptr_t>(p));
    for (size_t i = 0; i < n; ++i)
      desc.scratchOffsets[i] =
          reinterpret_cast<uintptr_t>(scratch->data[i]) - base;
    if (n)
      bindScratch(desc, reinterpret_cast<void *>(base));
  } else if (!kernel.desc.scratch.empty()) {
    reuse = std::unique_lock<std::mutex>(module.scratchMutex, std::try_to_lock);
    AlignedBlock &block = reuse.owns_lock() ? module.scratch : own;
    block.reserve(desc.scratchBytes);
    bindScratch(desc, block.data);
  }
  void **argv = desc.pointers.data();
  RunFn run = kernel.run;
  // Phase p + 1 starts after every item of phase p has finished
  // (parallelFor returns only then), so it sees all of phase p's writes.
  for (int phase = 0; phase < kernel.desc.phases; ++phase) {
    int64_t n = kernel.workItems(argv, phase);
    if (n < 0)
      fail(ATTNRT_ERR_LIBRARY,
           "kernel '" + kernel.desc.name + "': work_items returned " +
               std::to_string(n) + " for phase " + std::to_string(phase) +
               "; the kernel library is broken");
    module.pool->parallelFor(n, threads, [&](int64_t begin, int64_t end) {
      run(argv, phase, begin, end);
    });
  }
}
