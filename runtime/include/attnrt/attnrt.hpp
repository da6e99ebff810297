//===- attnrt.hpp - header-only C++ wrapper over attnrt.h -------*- C++ -*-===//
//
// RAII for modules and steps and exceptions for failures; nothing here adds
// behavior, it only forwards to the C API so both stay in sync.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNRT_ATTNRT_HPP
#define ATTNRT_ATTNRT_HPP

#include "attnrt/attnrt.h"
#include "attnrt/attnrt_cuda.h"
#include "attnrt/attnrt_step.h"

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace attnrt {

class Error : public std::runtime_error {
public:
  Error(attnrt_status status, const std::string &message)
      : std::runtime_error(message), status_(status) {}
  attnrt_status status() const { return status_; }

private:
  attnrt_status status_;
};

inline void check(attnrt_status status) {
  if (status != ATTNRT_OK)
    throw Error(status, attnrt_last_error());
}

/// Non-owning handle to a kernel of a Module.
class Kernel {
public:
  explicit Kernel(const attnrt_kernel *k = nullptr) : k_(k) {}
  const attnrt_kernel *get() const { return k_; }
  std::string name() const { return attnrt_kernel_name(k_); }
  /// "attention", "paged_attention", "kv_append", "merge" or "select_pages".
  std::string kind() const { return attnrt_kernel_kind(k_); }
  int numPhases() const { return attnrt_kernel_num_phases(k_); }
  int numArgs() const { return attnrt_kernel_num_args(k_); }
  const attnrt_arg_info &arg(int i) const {
    const attnrt_arg_info *info = attnrt_kernel_arg(k_, i);
    if (!info)
      throw Error(ATTNRT_ERR_INVALID_ARGUMENT,
                  "argument index " + std::to_string(i) + " out of range");
    return *info;
  }
  int numScratch() const { return attnrt_kernel_num_scratch(k_); }
  const attnrt_arg_info &scratch(int i) const {
    const attnrt_arg_info *info = attnrt_kernel_scratch(k_, i);
    if (!info)
      throw Error(ATTNRT_ERR_INVALID_ARGUMENT,
                  "scratch index " + std::to_string(i) + " out of range");
    return *info;
  }
  /// Throws for kinds without attention parameters (kv_append, merge).
  const attnrt_attention_info &attention() const {
    const attnrt_attention_info *info = attnrt_kernel_attention(k_);
    if (!info)
      throw Error(ATTNRT_ERR_INVALID_ARGUMENT,
                  "kernel '" + name() + "' is a " + kind() +
                      " kernel and has no attention parameters");
    return *info;
  }
  /// NULL for kinds without attention parameters.
  const attnrt_attention_info *attentionOrNull() const {
    return attnrt_kernel_attention(k_);
  }
  /// NULL for kernels without a KV cache.
  const attnrt_kv_cache_info *kvCache() const {
    return attnrt_kernel_kv_cache(k_);
  }
  /// NULL for kernels without a block-sparse mask.
  const attnrt_block_sparse_info *blockSparse() const {
    return attnrt_kernel_block_sparse(k_);
  }
  /// NULL for kinds other than select_pages.
  const attnrt_select_pages_info *selectPages() const {
    return attnrt_kernel_select_pages(k_);
  }
  /// Whether the kernel was compiled with attnc --count-tiles.
  bool hasTileStats() const { return attnrt_kernel_has_tile_stats(k_) != 0; }
  /// {KV tiles run, tiles that applied the element predicate, work items};
  /// throws for a kernel without counters.
  std::array<int64_t, 3> tileStats() const {
    std::array<int64_t, 3> out{};
    check(attnrt_kernel_tile_stats(k_, out.data()));
    return out;
  }
  void resetTileStats() const { check(attnrt_kernel_reset_tile_stats(k_)); }
  /// The gpu object and loaded image of a CUDA kernel; NULL for host ones.
  const attnrt_gpu_kernel_info *gpu() const { return attnrt_kernel_gpu(k_); }
  void validate(const std::vector<attnrt_tensor> &args) const {
    check(attnrt_validate(k_, args.data(), static_cast<int>(args.size())));
  }

private:
  const attnrt_kernel *k_;
};

class Module {
public:
  explicit Module(const std::string &dir, int numThreads = 0) {
    check(attnrt_open(dir.c_str(), numThreads, &m_));
  }
  /// Kernels linked into the program (attnrt_open_embedded): pass the
  /// artifact header's attnc_<id>_manifest and attnc_<id>_symbol.
  static Module embedded(const char *manifestJson,
                         void *(*lookup)(const char *), int numThreads = 0) {
    attnrt_module *m = nullptr;
    check(attnrt_open_embedded(manifestJson, lookup, numThreads, &m));
    return Module(m);
  }
  ~Module() { attnrt_close(m_); }
  Module(const Module &) = delete;
  Module &operator=(const Module &) = delete;
  Module(Module &&other) noexcept : m_(other.m_) { other.m_ = nullptr; }

  attnrt_module *get() const { return m_; }
  int numKernels() const { return attnrt_num_kernels(m_); }
  Kernel kernel(int i) const {
    const attnrt_kernel *k = attnrt_kernel_at(m_, i);
    if (!k)
      throw Error(ATTNRT_ERR_INVALID_ARGUMENT, attnrt_last_error());
    return Kernel(k);
  }
  Kernel kernel(const std::string &name) const {
    const attnrt_kernel *k = nullptr;
    check(attnrt_find_kernel(m_, name.c_str(), &k));
    return Kernel(k);
  }
  void run(Kernel k, const std::vector<attnrt_tensor> &args,
           int numThreads = 0) {
    check(attnrt_run(m_, k.get(), args.data(), static_cast<int>(args.size()),
                     numThreads));
  }
  /// Step functions of the manifest's "steps" (memory plans); open one
  /// with Step.
  int numSteps() const { return attnrt_num_steps(m_); }
  std::string stepName(int i) const {
    const char *name = attnrt_step_name_at(m_, i);
    if (!name)
      throw Error(ATTNRT_ERR_INVALID_ARGUMENT, attnrt_last_error());
    return name;
  }

private:
  explicit Module(attnrt_module *m) : m_(m) {}
  attnrt_module *m_ = nullptr;
};

/// A CUDA artifact (attnrt_gpu_open); its kernels are Kernel handles.
class GpuModule {
public:
  explicit GpuModule(const std::string &dir) {
    check(attnrt_gpu_open(dir.c_str(), &m_));
  }
  ~GpuModule() { attnrt_gpu_close(m_); }
  GpuModule(const GpuModule &) = delete;
  GpuModule &operator=(const GpuModule &) = delete;
  GpuModule(GpuModule &&other) noexcept : m_(other.m_) { other.m_ = nullptr; }

  attnrt_gpu_module *get() const { return m_; }
  int numKernels() const { return attnrt_gpu_num_kernels(m_); }
  Kernel kernel(int i) const {
    const attnrt_kernel *k = attnrt_gpu_kernel_at(m_, i);
    if (!k)
      throw Error(ATTNRT_ERR_INVALID_ARGUMENT, attnrt_last_error());
    return Kernel(k);
  }
  Kernel kernel(const std::string &name) const {
    const attnrt_kernel *k = nullptr;
    check(attnrt_gpu_find_kernel(m_, name.c_str(), &k));
    return Kernel(k);
  }
  attnrt_gpu_device_info device() const {
    attnrt_gpu_device_info info;
    check(attnrt_gpu_device(m_, &info));
    return info;
  }
  /// Launches on `stream` (NULL: the default stream) without waiting.
  void run(Kernel k, const std::vector<attnrt_tensor> &args,
           void *stream = nullptr) {
    check(attnrt_gpu_run(m_, k.get(), args.data(),
                         static_cast<int>(args.size()), stream));
  }
  /// Milliseconds of `runs` back-to-back launches (CUDA events).
  std::vector<float> timeRuns(Kernel k, const std::vector<attnrt_tensor> &args,
                              int runs, void *stream = nullptr) {
    std::vector<float> ms(runs > 0 ? runs : 0);
    check(attnrt_gpu_time_runs(m_, k.get(), args.data(),
                               static_cast<int>(args.size()), stream, runs,
                               ms.data()));
    return ms;
  }
  void synchronize(void *stream = nullptr) {
    check(attnrt_gpu_synchronize(m_, stream));
  }
  /// The launches run() would make (num_splits, scratch, merge included).
  attnrt_gpu_launch launchConfig(Kernel k,
                                 const std::vector<attnrt_tensor> &args) const {
    attnrt_gpu_launch l;
    check(attnrt_gpu_launch_config(k.get(), args.data(),
                                   static_cast<int>(args.size()), &l));
    return l;
  }
  /// Split-KV: 0 chooses num_splits per call, 1 to max_splits fixes it.
  void setNumSplits(Kernel k, int numSplits) {
    check(attnrt_gpu_set_num_splits(m_, k.get(), numSplits));
  }
  /// Split-KV scratch of the caller's (nullptr: attnrt's own).
  void setScratch(void *devicePtr, size_t bytes) {
    check(attnrt_gpu_set_scratch(m_, devicePtr, bytes));
  }

private:
  attnrt_gpu_module *m_ = nullptr;
};

/// Device memory of a GpuModule's context, freed on destruction (before
/// the module is closed).
class DeviceBuffer {
public:
  DeviceBuffer(GpuModule &module, size_t bytes)
      : m_(module.get()), bytes_(bytes) {
    check(attnrt_gpu_alloc(m_, bytes, &data_));
  }
  ~DeviceBuffer() { attnrt_gpu_free(m_, data_); }
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;
  DeviceBuffer(DeviceBuffer &&other) noexcept
      : m_(other.m_), data_(other.data_), bytes_(other.bytes_) {
    other.data_ = nullptr;
  }

  void *data() const { return data_; }
  size_t bytes() const { return bytes_; }
  void copyFrom(const void *host, size_t bytes) {
    checkSize(bytes);
    check(attnrt_gpu_copy_to_device(m_, data_, host, bytes));
  }
  void copyTo(void *host, size_t bytes) const {
    checkSize(bytes);
    check(attnrt_gpu_copy_to_host(m_, host, data_, bytes));
  }

private:
  void checkSize(size_t bytes) const {
    if (bytes > bytes_)
      throw Error(ATTNRT_ERR_INVALID_ARGUMENT,
                  "DeviceBuffer: copying " + std::to_string(bytes) +
                      " bytes but the buffer has " + std::to_string(bytes_));
  }

  attnrt_gpu_module *m_;
  void *data_ = nullptr;
  size_t bytes_;
};

/// An open step (attnrt_step_open): its arenas, buffers and copy thread.
/// Close it (destroy it) before its Module.
class Step {
public:
  Step(const Module &module, const std::string &name) {
    check(attnrt_step_open(module.get(), name.c_str(), &s_));
  }
  ~Step() { attnrt_step_close(s_); }
  Step(const Step &) = delete;
  Step &operator=(const Step &) = delete;
  Step(Step &&other) noexcept : s_(other.s_) { other.s_ = nullptr; }

  attnrt_step *get() const { return s_; }
  std::string name() const { return attnrt_step_name(s_); }
  int numTiers() const { return attnrt_step_num_tiers(s_); }
  attnrt_step_tier_info tier(int i) const {
    attnrt_step_tier_info info;
    check(attnrt_step_tier(s_, i, &info));
    return info;
  }
  int numBuffers() const { return attnrt_step_num_buffers(s_); }
  const attnrt_step_buffer_info &buffer(int i) const {
    const attnrt_step_buffer_info *info = attnrt_step_buffer(s_, i);
    if (!info)
      throw Error(ATTNRT_ERR_INVALID_ARGUMENT, attnrt_last_error());
    return *info;
  }
  int findBuffer(const std::string &name) const {
    int index = -1;
    check(attnrt_step_find_buffer(s_, name.c_str(), &index));
    return index;
  }
  /// The buffer's memory in its arena (buffer(i).bytes bytes).
  void *data(int i) const {
    buffer(i); // throws for a bad index
    return attnrt_step_data(s_, i);
  }
  void *data(const std::string &name) const {
    return attnrt_step_data(s_, findBuffer(name));
  }
  void run(int numThreads = 0) { check(attnrt_step_run(s_, numThreads)); }
  attnrt_step_run_stats stats() const {
    attnrt_step_run_stats out;
    check(attnrt_step_stats(s_, &out));
    return out;
  }

private:
  attnrt_step *s_ = nullptr;
};

} // namespace attnrt

#endif // ATTNRT_ATTNRT_HPP
