//===- StepManifest.cpp - manifest "steps" parser and plan checks ---------===//
//
// Everything a run could get wrong about memory is decided here, once, at
// attnrt_open: every range lies inside its arena, kernels only touch device
// tiers, byte counts match shapes and dtypes, the planned scratch is large
// enough, and no kernel touches bytes a copy still in flight reads or
// writes. Messages name the manifest, the step, the program entry and the
// field.
//
//===----------------------------------------------------------------------===//

#include "StepManifest.h"
#include "Error.h"
#include "JsonFields.h"
#include "Manifest.h"

#include <nlohmann/json.hpp>

#include <map>
#include <set>

using namespace attnrt;
using json = nlohmann::json;

namespace {

std::string str(int64_t v) { return std::to_string(v); }

const char *kFix = "; fix the plan or regenerate it with attnc";

/// The object readers of this file: their messages end with kFix.
class Fields : public JsonFields {
public:
  Fields(const json &obj, std::string where)
      : JsonFields(obj, std::move(where), kFix) {}
};

attnrt_dtype parseDtype(const Fields &f) {
  std::string s = f.string("dtype");
  for (int d = ATTNRT_DTYPE_F32; d <= ATTNRT_DTYPE_F8E5M2; ++d)
    if (s == attnrt_dtype_name(static_cast<attnrt_dtype>(d)))
      return static_cast<attnrt_dtype>(d);
  f.badField("dtype", "is '" + s +
                          "', expected one of f32, f16, bf16, i32, i8, u8, "
                          "f8e4m3fn, f8e5m2");
}

std::vector<int64_t> parseShape(const Fields &f) {
  std::vector<int64_t> shape;
  for (const json &d : f.array("shape")) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0)
      f.badField("shape", "has entry " + d.dump() +
                              ", expected a non-negative integer (plans "
                              "have static shapes)");
    shape.push_back(d.get<int64_t>());
  }
  return shape;
}

std::string shapeText(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + str(shape[i]);
  return s + "]";
}

std::string manifestShapeText(const ArgDesc &a) {
  std::string s = "[";
  for (size_t i = 0; i < a.shape.size(); ++i)
    s += (i ? ", " : "") + (a.shape[i].symbol.empty() ? str(a.shape[i].value)
                                                      : a.shape[i].symbol);
  return s + "]";
}

/// Elements of `shape` times `elementBytes`; -1 on overflow.
int64_t shapeBytes(const std::vector<int64_t> &shape, int64_t elementBytes) {
  int64_t bytes = elementBytes;
  for (int64_t d : shape)
    if (__builtin_mul_overflow(bytes, d, &bytes))
      return -1;
  return bytes;
}

std::string rangeText(const StepRange &r) {
  return "[" + str(r.offset) + ", " + str(r.offset + r.bytes) + ")";
}

bool overlaps(const StepRange &a, const StepRange &b) {
  return a.tier == b.tier && a.bytes > 0 && b.bytes > 0 &&
         a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes;
}

/// A copy of the program, in issue order.
struct CopyInfo {
  int64_t id;
  size_t entry; // program index of its copy_start
  StepRange from, to;
  bool waited = false;
};

class StepParser {
public:
  StepParser(const std::vector<KernelDesc> &kernels, std::string file)
      : kernels(kernels), file(std::move(file)) {}

  StepDesc parse(const json &j, size_t index);

private:
  void parseTiers(const Fields &s);
  int tierIndex(const Fields &f, const char *key) const;
  /// {tier, offset} of `f` with `bytes`, inside the tier's arena.
  StepRange parseRange(const Fields &f, int64_t bytes) const;
  void parseBuffers(const Fields &s);
  void parseCopyStart(const Fields &e, size_t entry, StepOp &op);
  void parseCopyDone(const Fields &e, StepOp &op);
  void parseKernel(const Fields &e, StepOp &op);
  /// Kernels read device tiers (or the only tier of a host-only plan).
  void requireKernelTier(const Fields &f, const StepRange &r) const;
  /// A kernel must not touch what an unfinished copy writes, nor write what
  /// it reads: the copy thread runs concurrently with kernels.
  void checkNoRace(const Fields &f, const StepRange &r, bool writes) const;
  std::string copyText(const CopyInfo &c) const {
    return "copy " + str(c.id) + " (program[" + str(c.entry) + "])";
  }

  const std::vector<KernelDesc> &kernels;
  std::string file;
  StepDesc step;
  std::vector<CopyInfo> copies;
  std::map<int64_t, size_t> copyById; // id -> index into copies
  /// id -> program index of the first copy_start with it, for messages.
  std::map<int64_t, size_t> startedLater;
  /// Copies [0, completed) have finished at the current program point: the
  /// copy thread runs them in order, so a wait finishes every earlier one.
  size_t completed = 0;
};

void StepParser::parseTiers(const Fields &s) {
  const json &list = s.array("tiers");
  if (list.empty())
    s.badField("tiers", "is empty; a plan has at least one tier");
  for (size_t i = 0; i < list.size(); ++i) {
    Fields t(list[i], s.location() + " tiers[" + str(i) + "]");
    StepTier tier;
    tier.name = t.string("name");
    if (tier.name.empty())
      t.badField("name", "is empty");
    for (const StepTier &other : step.tiers)
      if (other.name == tier.name)
        t.badField("name", "'" + tier.name + "' names two tiers");
    Fields named(list[i], s.location() + " tier '" + tier.name + "'");
    tier.capacity = named.nonNegative("capacity");
    tier.size = named.nonNegative("size");
    tier.device = named.boolean("device");
    if (tier.size > tier.capacity)
      named.bad("size " + str(tier.size) + " exceeds the tier's capacity " +
                str(tier.capacity) + "; the plan does not fit the target");
    step.tiers.push_back(std::move(tier));
  }
}

int StepParser::tierIndex(const Fields &f, const char *key) const {
  std::string name = f.string(key);
  std::string names;
  for (size_t i = 0; i < step.tiers.size(); ++i) {
    if (step.tiers[i].name == name)
      return static_cast<int>(i);
    names += (names.empty() ? "'" : ", '") + step.tiers[i].name + "'";
  }
  f.badField(key, "names tier '" + name + "', which the step does not have (" +
                      "its tiers: " + names + ")");
}

StepRange StepParser::parseRange(const Fields &f, int64_t bytes) const {
  StepRange r;
  r.tier = tierIndex(f, "tier");
  r.offset = f.nonNegative("offset");
  r.bytes = bytes;
  const StepTier &tier = step.tiers[r.tier];
  if (r.offset > tier.size || bytes > tier.size - r.offset)
    f.bad("bytes [" + str(r.offset) + ", " + str(r.offset) + " + " +
          str(bytes) + ") lie outside tier '" + tier.name + "', whose arena " +
          "has " + str(tier.size) + " bytes");
  return r;
}

void StepParser::parseBuffers(const Fields &s) {
  const json &list = s.array("buffers");
  std::set<std::string> names;
  for (size_t i = 0; i < list.size(); ++i) {
    Fields b0(list[i], s.location() + " buffers[" + str(i) + "]");
    StepBuffer buf;
    buf.name = b0.string("name");
    if (buf.name.empty())
      b0.badField("name", "is empty");
    if (!names.insert(buf.name).second)
      b0.badField("name", "'" + buf.name + "' names two buffers");
    Fields b(list[i], s.location() + " buffer '" + buf.name + "'");
    std::string dir = b.string("dir");
    if (dir == "in")
      buf.dir = ATTNRT_DIR_IN;
    else if (dir == "out")
      buf.dir = ATTNRT_DIR_OUT;
    else if (dir == "inout")
      buf.dir = ATTNRT_DIR_INOUT;
    else
      b.badField("dir", "is '" + dir + "', expected in, out or inout");
    buf.dtype = parseDtype(b);
    buf.shape = parseShape(b);
    int64_t bytes = b.nonNegative("bytes");
    int64_t expect = shapeBytes(buf.shape, attnrt_dtype_size(buf.dtype));
    if (bytes != expect)
      b.badField("bytes", "is " + str(bytes) + " but shape " +
                              shapeText(buf.shape) + " of " +
                              attnrt_dtype_name(buf.dtype) + " has " +
                              str(expect) + " bytes");
    buf.range = parseRange(b, bytes);
    if (buf.range.offset % attnrt_dtype_size(buf.dtype) != 0)
      b.badField("offset", "is " + str(buf.range.offset) +
                               ", not a multiple of the element size " +
                               str(attnrt_dtype_size(buf.dtype)));
    // The caller writes every in/inout buffer before a run and reads every
    // out/inout buffer after it, so two of either kind must not share a
    // byte. An output may take an input's bytes (after the input's last use
    // within the run).
    for (const StepBuffer &other : step.buffers) {
      bool bothWritten =
          buf.dir != ATTNRT_DIR_OUT && other.dir != ATTNRT_DIR_OUT;
      bool bothRead = buf.dir != ATTNRT_DIR_IN && other.dir != ATTNRT_DIR_IN;
      if ((bothWritten || bothRead) && overlaps(other.range, buf.range))
        b.bad("bytes " + rangeText(buf.range) + " of tier '" +
              step.tiers[buf.range.tier].name + "' overlap buffer '" +
              other.name + "' " + rangeText(other.range) + ", and the caller " +
              (bothWritten ? "writes both before" : "reads both after") +
              " a run");
    }
    step.buffers.push_back(std::move(buf));
  }
}

void StepParser::requireKernelTier(const Fields &f, const StepRange &r) const {
  const StepTier &tier = step.tiers[r.tier];
  if (tier.device)
    return;
  std::string devices;
  for (const StepTier &t : step.tiers)
    if (t.device)
      devices += (devices.empty() ? "'" : ", '") + t.name + "'";
  if (!devices.empty())
    f.bad("is in tier '" + tier.name + "', which kernels cannot read (not a " +
          "device tier); kernels read " + devices +
          ": copy the data there first (copy_start/copy_done)");
  if (step.tiers.size() > 1)
    f.bad("is in tier '" + tier.name + "' but the plan has " +
          str(step.tiers.size()) +
          " tiers and none is a device tier; kernels read a device tier, "
          "or the only tier of a host-only plan");
}

void StepParser::checkNoRace(const Fields &f, const StepRange &r,
                             bool writes) const {
  for (size_t c = completed; c < copies.size(); ++c) {
    const CopyInfo &copy = copies[c];
    std::string tier = step.tiers[r.tier].name;
    if (overlaps(r, copy.to))
      f.bad("bytes " + rangeText(r) + " of tier '" + tier + "' overlap " +
            rangeText(copy.to) + ", which " + copyText(copy) +
            " is still writing; wait for it (copy_done " + str(copy.id) +
            ") before this kernel");
    if (writes && overlaps(r, copy.from))
      f.bad("bytes " + rangeText(r) + " of tier '" + tier +
            "' are written by the kernel but " + copyText(copy) +
            " is still reading " + rangeText(copy.from) +
            "; wait for it (copy_done " + str(copy.id) +
            ") before this kernel");
  }
}

void StepParser::parseCopyStart(const Fields &e, size_t entry, StepOp &op) {
  op.kind = StepOp::CopyStart;
  op.id = e.integer("id");
  auto seen = copyById.find(op.id);
  if (seen != copyById.end())
    e.badField("id", "is " + str(op.id) + ", which " +
                         copyText(copies[seen->second]) +
                         " already uses; give every copy its own id");
  int64_t bytes = e.nonNegative("bytes");
  op.from = parseRange(Fields(e.field("from"), e.location() + " from"), bytes);
  op.to = parseRange(Fields(e.field("to"), e.location() + " to"), bytes);
  if (overlaps(op.from, op.to))
    e.bad("source " + rangeText(op.from) + " and destination " +
          rangeText(op.to) + " of tier '" + step.tiers[op.from.tier].name +
          "' overlap");
  op.copy = static_cast<int>(copies.size());
  copyById[op.id] = copies.size();
  copies.push_back({op.id, entry, op.from, op.to});
}

void StepParser::parseCopyDone(const Fields &e, StepOp &op) {
  op.kind = StepOp::CopyDone;
  op.id = e.integer("id");
  auto it = copyById.find(op.id);
  if (it == copyById.end()) {
    auto later = startedLater.find(op.id);
    if (later != startedLater.end())
      e.badField("id", "is " + str(op.id) + ", but copy " + str(op.id) +
                           " is started only later, at program[" +
                           str(later->second) +
                           "]; put copy_done after its copy_start");
    e.badField("id", "is " + str(op.id) +
                         ", but no copy_start in the program has this id");
  }
  CopyInfo &copy = copies[it->second];
  if (copy.waited)
    e.badField("id", "is " + str(op.id) + ", but " + copyText(copy) +
                         " has already been waited for; wait once per copy");
  copy.waited = true;
  op.copy = static_cast<int>(it->second);
  completed = std::max(completed, it->second + 1);
}

void StepParser::parseKernel(const Fields &e, StepOp &op) {
  op.kind = StepOp::Kernel;
  std::string name = e.string("kernel");
  std::string names;
  op.kernel = kernels.size();
  for (size_t k = 0; k < kernels.size(); ++k) {
    if (kernels[k].name == name)
      op.kernel = k;
    names += (names.empty() ? "'" : ", '") + kernels[k].name + "'";
  }
  if (op.kernel == kernels.size())
    e.badField("kernel", "names '" + name +
                             "', which is not a kernel of the manifest "
                             "(kernels: " +
                             names + ")");
  const KernelDesc &kernel = kernels[op.kernel];
  std::string where = e.location() + " (kernel '" + name + "')";
  const json &args = e.array("args");
  if (args.size() != kernel.args.size()) {
    std::string argNames;
    for (const ArgDesc &a : kernel.args)
      argNames += (argNames.empty() ? "" : ", ") + a.name;
    e.badField("args", "has " + str(args.size()) + " entries but kernel '" +
                           name + "' takes " + str(kernel.args.size()) +
                           " arguments (" + argNames + "), in this order");
  }
  // Symbol values as the arguments bind them, for the static checks of
  // attnrt_run and the scratch sizes.
  std::map<std::string, std::pair<int64_t, std::string>> symbols;
  for (size_t i = 0; i < args.size(); ++i) {
    const ArgDesc &ad = kernel.args[i];
    Fields a(args[i], where + " arg " + str(i) + " ('" + ad.name + "')");
    StepArg arg;
    arg.shape = parseShape(a);
    int64_t bytes = a.nonNegative("bytes");
    int64_t expect = shapeBytes(arg.shape, attnrt_dtype_size(ad.dtype));
    if (bytes != expect)
      a.badField("bytes",
                 "is " + str(bytes) + " but shape " + shapeText(arg.shape) +
                     " of " + attnrt_dtype_name(ad.dtype) +
                     " (the kernel's dtype) has " + str(expect) + " bytes");
    if (arg.shape.size() != ad.shape.size())
      a.badField("shape", "is " + shapeText(arg.shape) + " (rank " +
                              str(arg.shape.size()) +
                              ") but the kernel expects " +
                              manifestShapeText(ad));
    for (size_t d = 0; d < arg.shape.size(); ++d) {
      const DimDesc &dim = ad.shape[d];
      if (dim.symbol.empty()) {
        if (arg.shape[d] != dim.value)
          a.badField("shape", "is " + shapeText(arg.shape) +
                                  " but the kernel expects " +
                                  manifestShapeText(ad) + ": dim " + str(d) +
                                  " must be " + str(dim.value));
        continue;
      }
      int64_t value = arg.shape[d] - dim.value;
      std::string origin = "arg " + str(i) + " dim " + str(d);
      if (value < 0)
        a.badField("shape", "dim " + str(d) + " is " + str(arg.shape[d]) +
                                " but must be " + dim.symbol +
                                " >= " + str(dim.value));
      auto [it, inserted] =
          symbols.emplace(dim.symbolName, std::make_pair(value, origin));
      if (!inserted && it->second.first != value)
        a.badField("shape", "is " + shapeText(arg.shape) + " " +
                                manifestShapeText(ad) + ": dim " + str(d) +
                                " gives " + dim.symbolName + " = " +
                                str(value) + " but " + it->second.second +
                                " gives " + str(it->second.first));
    }
    arg.range = parseRange(a, bytes);
    if (arg.range.offset % attnrt_dtype_size(ad.dtype) != 0)
      a.badField("offset", "is " + str(arg.range.offset) +
                               ", not a multiple of the element size " +
                               str(attnrt_dtype_size(ad.dtype)));
    requireKernelTier(a, arg.range);
    checkNoRace(a, arg.range, ad.dir != ATTNRT_DIR_IN);
    op.args.push_back(std::move(arg));
  }
  if (!e.has("scratch") || e.array("scratch").empty())
    return;
  const json &scratch = e.array("scratch");
  if (scratch.size() != kernel.scratch.size())
    e.badField("scratch",
               "has " + str(scratch.size()) + " entries but kernel '" + name +
                   "' has " + str(kernel.scratch.size()) +
                   " scratch buffers; give one per buffer in the kernel's "
                   "scratch order, or none (attnrt then allocates them)");
  for (size_t i = 0; i < scratch.size(); ++i) {
    const ArgDesc &sd = kernel.scratch[i];
    Fields s(scratch[i], where + " scratch " + str(i) + " ('" + sd.name + "')");
    int64_t need = attnrt_dtype_size(sd.dtype);
    for (const DimDesc &d : sd.shape) {
      int64_t size = d.value;
      if (!d.symbol.empty()) // the kernel parser made sure args bind it
        size += symbols.at(d.symbolName).first;
      if (__builtin_mul_overflow(need, size, &need))
        s.bad("would need more than 2^63 bytes");
    }
    int64_t bytes = s.nonNegative("bytes");
    if (bytes < need)
      s.badField("bytes", "is " + str(bytes) + " but the kernel needs " +
                              str(need) + " bytes of scratch for these " +
                              "argument shapes");
    StepRange r = parseRange(s, bytes);
    // attnrt's scratch promise (docs/runtime.md), which kernels may assume.
    if (r.offset % 64 != 0)
      s.badField("offset", "is " + str(r.offset) +
                               ", not a multiple of 64 (scratch buffers are "
                               "64-byte aligned)");
    requireKernelTier(s, r);
    checkNoRace(s, r, true);
    op.scratch.push_back(r);
  }
}

StepDesc StepParser::parse(const json &j, size_t index) {
  Fields s0(j, file + ": steps[" + str(index) + "]");
  step.name = s0.string("name");
  if (step.name.empty())
    s0.badField("name", "is empty");
  Fields s(j, file + ": step '" + step.name + "'");
  parseTiers(s);
  parseBuffers(s);
  const json &program = s.array("program");
  for (size_t i = program.size(); i-- > 0;)
    if (program[i].is_object() && program[i].value("op", "") == "copy_start" &&
        program[i].contains("id") && program[i]["id"].is_number_integer())
      startedLater[program[i]["id"].get<int64_t>()] = i;
  for (size_t i = 0; i < program.size(); ++i) {
    Fields e0(program[i], s.location() + " program[" + str(i) + "]");
    std::string kind = e0.string("op");
    StepOp op;
    if (kind == "copy_start") {
      Fields e(program[i], e0.location() + " (copy_start)");
      parseCopyStart(e, i, op);
    } else if (kind == "copy_done") {
      Fields e(program[i], e0.location() + " (copy_done)");
      parseCopyDone(e, op);
    } else if (kind == "kernel") {
      parseKernel(e0, op);
    } else {
      e0.badField("op", "is '" + kind +
                            "', expected copy_start, copy_done or kernel");
    }
    step.program.push_back(std::move(op));
  }
  for (const CopyInfo &c : copies)
    if (!c.waited)
      s.bad(copyText(c) +
            " is never waited for; add {\"op\": \"copy_done\", "
            "\"id\": " +
            str(c.id) + "} after it (a run ends with every copy finished)");
  step.numCopies = static_cast<int>(copies.size());
  return std::move(step);
}

} // namespace

std::vector<StepDesc> attnrt::parseSteps(const json &root,
                                         const std::vector<KernelDesc> &kernels,
                                         const std::string &where) {
  std::vector<StepDesc> steps;
  if (!root.contains("steps"))
    return steps;
  const json &list = root["steps"];
  if (!list.is_array())
    fail(ATTNRT_ERR_MANIFEST,
         where + ": field 'steps' must be an array" + kFix);
  for (size_t i = 0; i < list.size(); ++i) {
    steps.push_back(StepParser(kernels, where).parse(list[i], i));
    for (size_t k = 0; k < i; ++k)
      if (steps[k].name == steps[i].name)
        fail(ATTNRT_ERR_MANIFEST,
             where + ": two steps are named '" + steps[i].name + "'" + kFix);
  }
  return steps;
}
