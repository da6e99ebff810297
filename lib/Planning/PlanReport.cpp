//===- PlanReport.cpp - the memory plan as JSON and as a table ------------===//

#include "attnc/Planning/PlanReport.h"

#include "attnc/Conversion/Passes.h"
#include "attnc/Planning/ArenaPlanner.h"
#include "attnc/Planning/StepPlan.h"

#include "llvm/Support/Format.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>

namespace attnc {
#define GEN_PASS_DEF_ATTNPRINTPLANREPORT
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
namespace json = llvm::json;

namespace {

std::optional<double> f64Attr(Operation *op, StringRef name) {
  if (auto f = op->getAttrOfType<FloatAttr>(name))
    return f.getValueAsDouble();
  return std::nullopt;
}

json::Value orNull(std::optional<double> x) {
  if (x)
    return *x;
  return nullptr;
}

struct TierRow {
  std::string name;
  std::optional<int64_t> capacity;
  int64_t peak = 0, lowerBound = 0;
  std::optional<double> ratio() const {
    if (lowerBound > 0)
      return double(peak) / double(lowerBound);
    if (peak == 0)
      return 1.0;
    return std::nullopt;
  }
};

/// One step function's report, from its planned IR.
struct StepReport {
  StepSchedule s;
  std::string target;
  std::vector<TierRow> tiers;
  std::string kernelTier;
  std::optional<double> stepSeconds, computeSeconds, noOffloadSeconds;
  int64_t bytesMoved = 0;

  static FailureOr<StepReport> read(func::FuncOp step);
  std::string tierOf(const PlacedValue &v) const {
    return v.place ? stringifyMemoryTier(v.place.getTier()).str() : "none";
  }
  StringRef direction(const StepCopy &c) const {
    return tierOf(s.buffers[c.destination]) == kernelTier ? "prefetch"
                                                          : "offload";
  }
  void writeJSON(json::OStream &j);
  void printTable(llvm::raw_ostream &os);
};

} // namespace

FailureOr<StepReport> StepReport::read(func::FuncOp step) {
  FailureOr<StepSchedule> schedule = StepSchedule::build(step);
  if (failed(schedule))
    return failure();
  StepReport r;
  r.s = std::move(*schedule);

  auto plan = step->getAttrOfType<DictionaryAttr>("attn.plan");
  TargetAttr target;
  if (plan)
    target = plan.getAs<TargetAttr>("target");
  if (!target)
    if (auto module = step->getParentOfType<ModuleOp>())
      target = module->getAttrOfType<TargetAttr>("attn.target");
  r.target =
      !target ? "unknown" : target.getPresetName().value_or("custom").str();

  if (auto list = plan ? plan.getAs<ArrayAttr>("tiers") : ArrayAttr()) {
    for (Attribute a : list) {
      auto d = dyn_cast<DictionaryAttr>(a);
      if (!d)
        continue;
      TierRow row;
      if (auto name = d.getAs<StringAttr>("name"))
        row.name = name.str();
      if (auto c = d.getAs<IntegerAttr>("capacity"))
        row.capacity = c.getInt();
      if (auto p = d.getAs<IntegerAttr>("peak"))
        row.peak = p.getInt();
      if (auto l = d.getAs<IntegerAttr>("lower_bound"))
        row.lowerBound = l.getInt();
      r.tiers.push_back(row);
    }
  } else {
    // Unplanned summary: the tiers the places use, measured from them.
    for (MemoryTier t : {MemoryTier::HBM, MemoryTier::Host}) {
      std::vector<ArenaBuffer> arena;
      TierRow row;
      row.name = stringifyMemoryTier(t).str();
      for (const PlacedValue &v : r.s.buffers) {
        if (!v.place || v.place.getTier() != t)
          continue;
        arena.push_back({v.name, uint64_t(v.bytes), 1, v.firstPos, v.lastPos});
        row.peak = std::max(row.peak, v.place.getOffset() + v.bytes);
      }
      if (arena.empty())
        continue;
      row.lowerBound = int64_t(arenaLowerBound(arena));
      if (target)
        row.capacity =
            t == MemoryTier::HBM ? target.getHbmBytes() : target.getHostBytes();
      r.tiers.push_back(row);
    }
  }
  bool device =
      llvm::any_of(r.tiers, [](const TierRow &t) { return t.name == "hbm"; });
  if (target)
    device = target.hasDevice();
  r.kernelTier = device ? "hbm" : "host";

  double compute = 0, exposed = 0;
  for (Operation *op : r.s.computeOps)
    compute += f64Attr(op, "attn.seconds").value_or(0);
  for (const StepCopy &c : r.s.copies) {
    exposed += f64Attr(c.done, "attn.exposed_seconds").value_or(0);
    r.bytesMoved += c.bytes;
  }
  auto planF64 = [&](StringRef name) -> std::optional<double> {
    if (auto f = plan ? plan.getAs<FloatAttr>(name) : FloatAttr())
      return f.getValueAsDouble();
    return std::nullopt;
  };
  r.computeSeconds = planF64("compute_seconds").value_or(compute);
  r.stepSeconds = planF64("step_seconds").value_or(compute + exposed);
  r.noOffloadSeconds = planF64("no_offload_seconds");
  if (auto moved =
          plan ? plan.getAs<IntegerAttr>("bytes_moved") : IntegerAttr())
    r.bytesMoved = moved.getInt();
  return r;
}

void StepReport::writeJSON(json::OStream &j) {
  auto number = [&](StringRef key, std::optional<double> x) {
    j.attribute(key, orNull(x));
  };
  j.objectBegin();
  j.attribute("name", s.func.getSymName());
  j.attribute("target", target);
  j.attributeArray("tiers", [&] {
    for (const TierRow &t : tiers)
      j.object([&] {
        j.attribute("name", t.name);
        j.attribute("capacity", t.capacity ? json::Value(*t.capacity)
                                           : json::Value(nullptr));
        j.attribute("peak", t.peak);
        j.attribute("lower_bound", t.lowerBound);
        number("peak_over_lower_bound", t.ratio());
      });
  });
  j.attributeArray("buffers", [&] {
    for (const PlacedValue &v : s.buffers)
      j.object([&] {
        j.attribute("name", v.name);
        j.attribute("tier", tierOf(v));
        j.attribute("offset", v.place ? json::Value(v.place.getOffset())
                                      : json::Value(nullptr));
        j.attribute("bytes", v.bytes);
        j.attribute("first_step", v.firstStep);
        j.attribute("last_step", v.lastStep);
        j.attribute("kind", stringifyPlacedKind(v.kind));
      });
  });
  j.attributeArray("transfers", [&] {
    for (StepCopy &c : s.copies)
      j.object([&] {
        j.attribute("buffer", s.buffers[c.source].name);
        j.attribute("direction", direction(c));
        j.attribute("from", tierOf(s.buffers[c.source]));
        j.attribute("to", stringifyMemoryTier(c.start.getTo().getTier()));
        j.attribute("bytes", c.bytes);
        j.attribute("issue_step", c.issueStep);
        j.attribute("wait_step", c.waitStep);
        number("transfer_seconds", f64Attr(c.start, "attn.transfer_seconds"));
        number("exposed_seconds", f64Attr(c.done, "attn.exposed_seconds"));
      });
  });
  j.attributeArray("ops", [&] {
    for (auto [i, op] : llvm::enumerate(s.computeOps))
      j.object([&] {
        j.attribute("step", int64_t(i));
        j.attribute("op", op->getName().getStringRef());
        j.attribute("location", locationText(op->getLoc()));
        number("seconds", f64Attr(op, "attn.seconds"));
      });
  });
  number("step_seconds", stepSeconds);
  number("compute_seconds", computeSeconds);
  number("no_offload_seconds", noOffloadSeconds);
  j.attribute("bytes_moved", bytesMoved);
  j.objectEnd();
}

/// `x` with three significant digits at most, without trailing zeros.
static std::string shortNumber(double x) {
  int decimals = x < 10 ? 2 : x < 100 ? 1 : 0;
  std::string text;
  llvm::raw_string_ostream(text) << llvm::format("%.*f", decimals, x);
  if (text.find('.') != std::string::npos) {
    while (text.back() == '0')
      text.pop_back();
    if (text.back() == '.')
      text.pop_back();
  }
  return text;
}

/// 512 B, 1.5 KiB, 64 MiB, 74.5 GiB.
static std::string humanBytes(int64_t bytes) {
  static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double x = double(bytes);
  int unit = 0;
  while (x >= 1024 && unit < 5) {
    x /= 1024;
    ++unit;
  }
  // 1023.9 KiB rounds to "1024 KiB"; say "1 MiB".
  if (unit < 5 && std::round(x) >= 1024) {
    x /= 1024;
    ++unit;
  }
  return (unit == 0 ? std::to_string(bytes) : shortNumber(x)) + " " +
         units[unit];
}

/// 1.2 s, 12.3 ms, 512 us, 80 ns.
static std::string humanSeconds(std::optional<double> seconds) {
  if (!seconds)
    return "n/a";
  double s = *seconds;
  if (s == 0)
    return "0 us";
  if (s >= 1)
    return shortNumber(s) + " s";
  if (s >= 1e-3)
    return shortNumber(s * 1e3) + " ms";
  if (s >= 1e-6)
    return shortNumber(s * 1e6) + " us";
  return shortNumber(s * 1e9) + " ns";
}

void StepReport::printTable(llvm::raw_ostream &os) {
  os << "step " << s.func.getSymName() << " (target " << target << ", "
     << s.numSteps() << (s.numSteps() == 1 ? " step" : " steps") << ")\n";
  os << llvm::format("  %-6s %12s %12s %12s %9s\n", "tier", "capacity", "peak",
                     "lower bound", "peak/lb");
  for (const TierRow &t : tiers) {
    std::optional<double> ratio = t.ratio();
    std::string ratioText = "n/a";
    if (ratio)
      llvm::raw_string_ostream(ratioText = "") << llvm::format("%.3f", *ratio);
    os << llvm::format(
        "  %-6s %12s %12s %12s %9s\n", t.name.c_str(),
        (t.capacity ? humanBytes(*t.capacity) : std::string("n/a")).c_str(),
        humanBytes(t.peak).c_str(), humanBytes(t.lowerBound).c_str(),
        ratioText.c_str());
  }

  os << "  held in each tier:\n";
  for (const TierRow &t : tiers) {
    int64_t stays = 0, stayBytes = 0, copies = 0, copyBytes = 0;
    for (const PlacedValue &v : s.buffers) {
      if (tierOf(v) != t.name)
        continue;
      bool copy = v.op && isa<CopyStartOp>(v.op);
      (copy ? copies : stays) += 1;
      (copy ? copyBytes : stayBytes) += v.bytes;
    }
    os << llvm::format("  %-6s %4d %-7s %10s", t.name.c_str(), int(stays),
                       stays == 1 ? "buffer" : "buffers",
                       humanBytes(stayBytes).c_str());
    if (copies)
      os << llvm::format(", and %d %s %s", int(copies),
                         copies == 1 ? "copy" : "copies",
                         humanBytes(copyBytes).c_str());
    os << "\n";
  }

  if (s.copies.empty()) {
    os << "  transfers: none\n";
  } else {
    os << "  transfers:\n";
    os << llvm::format("  %-24s %-9s %-12s %12s %6s %6s %10s %10s\n", "buffer",
                       "direction", "from -> to", "bytes", "issue", "wait",
                       "transfer", "exposed");
    for (StepCopy &c : s.copies) {
      std::string route = tierOf(s.buffers[c.source]) + " -> " +
                          stringifyMemoryTier(c.start.getTo().getTier()).str();
      os << llvm::format(
          "  %-24s %-9s %-12s %12s %6d %6d %10s %10s\n",
          s.buffers[c.source].name.c_str(), direction(c).str().c_str(),
          route.c_str(), humanBytes(c.bytes).c_str(), int(c.issueStep),
          int(c.waitStep),
          humanSeconds(f64Attr(c.start, "attn.transfer_seconds")).c_str(),
          humanSeconds(f64Attr(c.done, "attn.exposed_seconds")).c_str());
    }
  }
  os << "  predicted step time " << humanSeconds(stepSeconds) << " (compute "
     << humanSeconds(computeSeconds) << "); without offload "
     << humanSeconds(noOffloadSeconds) << "; " << humanBytes(bytesMoved)
     << " moved\n";
}

static std::vector<StepReport> readReports(ModuleOp module) {
  std::vector<StepReport> reports;
  for (auto fn : module.getOps<func::FuncOp>()) {
    if (!fn->hasAttr("attn.step"))
      continue;
    FailureOr<StepReport> r = StepReport::read(fn);
    if (succeeded(r))
      reports.push_back(std::move(*r));
  }
  return reports;
}

std::string attnc::planReportJSON(ModuleOp module) {
  std::string text;
  llvm::raw_string_ostream os(text);
  {
    json::OStream j(os, /*IndentSize=*/2);
    j.object([&] {
      j.attributeArray("steps", [&] {
        for (StepReport &r : readReports(module))
          r.writeJSON(j);
      });
    });
  }
  os << "\n";
  return text;
}

json::Value attnc::planReport(ModuleOp module) {
  llvm::Expected<json::Value> value = json::parse(planReportJSON(module));
  assert(value && "the report is valid JSON");
  return std::move(*value);
}

std::string attnc::planReportTable(ModuleOp module) {
  std::string text;
  llvm::raw_string_ostream os(text);
  std::vector<StepReport> reports = readReports(module);
  if (reports.empty())
    os << "no step functions (attn.step)\n";
  for (auto [i, r] : llvm::enumerate(reports)) {
    if (i)
      os << "\n";
    r.printTable(os);
  }
  return text;
}

namespace {

struct AttnPrintPlanReportPass
    : public attnc::impl::AttnPrintPlanReportBase<AttnPrintPlanReportPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (format != "table" && format != "json") {
      module.emitError() << "attn-print-plan-report: unknown format '" << format
                         << "'; expected table or json";
      return signalPassFailure();
    }
    // Steps that do not read as step functions report their own errors.
    bool bad = false;
    for (auto fn : module.getOps<func::FuncOp>())
      if (fn->hasAttr("attn.step") && failed(StepSchedule::build(fn)))
        bad = true;
    if (bad)
      return signalPassFailure();
    llvm::outs() << (format == "json" ? planReportJSON(module)
                                      : planReportTable(module));
    llvm::outs().flush();
    markAllAnalysesPreserved();
  }
};

} // namespace
