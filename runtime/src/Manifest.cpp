//===- Manifest.cpp - manifest.json parser --------------------------------===//
//
// Strict parser: every field the runtime or attn-run relies on is checked for
// presence and type, and every message names the file, kernel and field.
//
//===----------------------------------------------------------------------===//

#include "Manifest.h"
#include "Error.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

using namespace attnrt;
using json = nlohmann::json;

namespace {

/// Field accessors bound to a location prefix for error messages.
class Reader {
public:
  Reader(const json &obj, std::string where)
      : obj(obj), where(std::move(where)) {}

  const json &field(const char *key) const {
    if (!obj.is_object())
      bad(std::string("is not a JSON object"));
    auto it = obj.find(key);
    if (it == obj.end())
      bad(std::string("is missing field '") + key +
          "'; regenerate the artifact with attnc");
    return *it;
  }
  bool has(const char *key) const {
    return obj.is_object() && obj.contains(key);
  }
  std::string str(const char *key) const {
    const json &v = field(key);
    if (!v.is_string())
      badField(key, "must be a string");
    return v.get<std::string>();
  }
  int64_t integer(const char *key) const {
    const json &v = field(key);
    if (!v.is_number_integer())
      badField(key, "must be an integer");
    return v.get<int64_t>();
  }
  int64_t integerOr(const char *key, int64_t dflt) const {
    return has(key) ? integer(key) : dflt;
  }
  double number(const char *key) const {
    const json &v = field(key);
    if (!v.is_number())
      badField(key, "must be a number");
    return v.get<double>();
  }
  bool boolean(const char *key) const {
    const json &v = field(key);
    if (!v.is_boolean())
      badField(key, "must be true or false");
    return v.get<bool>();
  }
  const json &array(const char *key) const {
    const json &v = field(key);
    if (!v.is_array())
      badField(key, "must be an array");
    return v;
  }
  [[noreturn]] void bad(const std::string &what) const {
    fail(ATTNRT_ERR_MANIFEST, where + " " + what);
  }
  [[noreturn]] void badField(const char *key, const std::string &what) const {
    fail(ATTNRT_ERR_MANIFEST,
         where + ": field '" + key + "' " + what + "; fix or regenerate it");
  }
  const std::string &location() const { return where; }

private:
  const json &obj;
  std::string where;
};

/// Looks `text` up in a name table; on failure names the field and lists the
/// accepted values.
template <typename T, size_t N>
T parseName(const Reader &r, const char *key,
            const std::pair<const char *, T> (&table)[N]) {
  std::string s = r.str(key);
  std::string names;
  for (const auto &[name, value] : table) {
    if (s == name)
      return value;
    names += (names.empty() ? "" : ", ") + std::string(name);
  }
  r.badField(key, "is '" + s + "', expected one of " + names);
}

attnrt_dtype parseDtype(const Reader &r, const char *key) {
  static const std::pair<const char *, attnrt_dtype> dtypes[] = {
      {"f32", ATTNRT_DTYPE_F32},
      {"f16", ATTNRT_DTYPE_F16},
      {"bf16", ATTNRT_DTYPE_BF16},
      {"i32", ATTNRT_DTYPE_I32},
      {"i8", ATTNRT_DTYPE_I8},
      {"u8", ATTNRT_DTYPE_U8},
      {"f8e4m3fn", ATTNRT_DTYPE_F8E4M3FN},
      {"f8e5m2", ATTNRT_DTYPE_F8E5M2}};
  return parseName(r, key, dtypes);
}

attnrt_role parseRole(const Reader &r) {
  static const std::pair<const char *, attnrt_role> roles[] = {
      {"query", ATTNRT_ROLE_QUERY},
      {"key", ATTNRT_ROLE_KEY},
      {"value", ATTNRT_ROLE_VALUE},
      {"cu_seqlens_q", ATTNRT_ROLE_CU_SEQLENS_Q},
      {"cu_seqlens_k", ATTNRT_ROLE_CU_SEQLENS_K},
      {"output", ATTNRT_ROLE_OUTPUT},
      {"lse", ATTNRT_ROLE_LSE},
      {"k_pages", ATTNRT_ROLE_K_PAGES},
      {"v_pages", ATTNRT_ROLE_V_PAGES},
      {"k_scale", ATTNRT_ROLE_K_SCALE},
      {"v_scale", ATTNRT_ROLE_V_SCALE},
      {"k_min", ATTNRT_ROLE_K_MIN},
      {"v_min", ATTNRT_ROLE_V_MIN},
      {"kv_indptr", ATTNRT_ROLE_KV_INDPTR},
      {"kv_indices", ATTNRT_ROLE_KV_INDICES},
      {"kv_last_page_len", ATTNRT_ROLE_KV_LAST_PAGE_LEN},
      {"qo_indptr", ATTNRT_ROLE_QO_INDPTR},
      {"k_new", ATTNRT_ROLE_K_NEW},
      {"v_new", ATTNRT_ROLE_V_NEW},
      {"slot_mapping", ATTNRT_ROLE_SLOT_MAPPING},
      {"partial_o", ATTNRT_ROLE_PARTIAL_O},
      {"partial_lse", ATTNRT_ROLE_PARTIAL_LSE},
      {"k_recent", ATTNRT_ROLE_K_RECENT},
      {"v_recent", ATTNRT_ROLE_V_RECENT},
      {"ring_slots", ATTNRT_ROLE_RING_SLOTS},
      {"kv_rings", ATTNRT_ROLE_KV_RINGS},
      {"block_offsets", ATTNRT_ROLE_BLOCK_OFFSETS},
      {"block_indices", ATTNRT_ROLE_BLOCK_INDICES},
      {"block_full", ATTNRT_ROLE_BLOCK_FULL},
      {"k_page_max", ATTNRT_ROLE_K_PAGE_MAX},
      {"k_page_min", ATTNRT_ROLE_K_PAGE_MIN}};
  return parseName(r, "role", roles);
}

attnrt_dir parseDir(const Reader &r) {
  static const std::pair<const char *, attnrt_dir> dirs[] = {
      {"in", ATTNRT_DIR_IN},
      {"out", ATTNRT_DIR_OUT},
      {"inout", ATTNRT_DIR_INOUT}};
  return parseName(r, "dir", dirs);
}

bool isIdentifier(const std::string &s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0])))
    return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_')
      return false;
  return true;
}

/// A symbol is an identifier optionally followed by "+N" (e.g. "batch+1").
DimDesc parseSymbol(const Reader &r, const std::string &text) {
  DimDesc d;
  d.symbol = text;
  size_t plus = text.find('+');
  d.symbolName = text.substr(0, plus);
  bool ok = isIdentifier(d.symbolName);
  if (ok && plus != std::string::npos) {
    std::string off = text.substr(plus + 1);
    ok = !off.empty() && off.size() < 10 &&
         off.find_first_not_of("0123456789") == std::string::npos;
    if (ok)
      d.value = std::stoll(off);
  }
  if (!ok)
    r.badField("shape", "has symbol '" + text +
                            "', expected a name or name+N (e.g. batch+1)");
  return d;
}

std::vector<DimDesc> parseShape(const Reader &r) {
  std::vector<DimDesc> shape;
  for (const json &d : r.array("shape")) {
    if (d.is_number_integer() && d.get<int64_t>() >= 0) {
      DimDesc dim;
      dim.value = d.get<int64_t>();
      shape.push_back(dim);
    } else if (d.is_string()) {
      shape.push_back(parseSymbol(r, d.get<std::string>()));
    } else {
      r.badField("shape", "has entry " + d.dump() +
                              ", expected a non-negative integer or a symbol");
    }
  }
  return shape;
}

ArgDesc parseArg(const json &j, const std::string &where) {
  Reader r(j, where);
  ArgDesc a;
  a.name = r.str("name");
  a.role = parseRole(r);
  a.dir = parseDir(r);
  a.dtype = parseDtype(r, "dtype");
  a.shape = parseShape(r);
  return a;
}

/// Scratch buffers: {name, dtype, shape}; the runtime owns them.
ArgDesc parseScratch(const json &j, const std::string &where) {
  Reader r(j, where);
  ArgDesc a;
  a.name = r.str("name");
  a.role = ATTNRT_ROLE_QUERY; // unused
  a.dir = ATTNRT_DIR_INOUT;
  a.dtype = parseDtype(r, "dtype");
  a.shape = parseShape(r);
  return a;
}

/// "where argument 'NAME'" for element i of a list of named objects.
std::string elementWhere(const std::string &where, const char *what,
                         const json &list, size_t i) {
  if (list[i].is_object() && list[i].contains("name") &&
      list[i]["name"].is_string())
    return where + " " + what + " '" + list[i]["name"].get<std::string>() + "'";
  return where + " " + what + "[" + std::to_string(i) + "]";
}

/// {causal, align | top_left, window, sinks}. The kernel's mask has `align`
/// (required when `requireAlign`); head masks may give `top_left` instead.
attnrt_mask_info parseMask(const Reader &mask, bool requireAlign) {
  attnrt_mask_info m{};
  m.causal = mask.boolean("causal");
  m.bottom_right = 1;
  if (requireAlign || mask.has("align")) {
    std::string align = mask.str("align");
    if (align != "bottom_right" && align != "top_left")
      mask.badField("align",
                    "is '" + align + "', expected bottom_right or top_left");
    m.bottom_right = align == "bottom_right";
  } else if (mask.has("top_left")) {
    m.bottom_right = !mask.boolean("top_left");
  }
  m.window = mask.integer("window");
  m.sinks = mask.integer("sinks");
  if (m.window < -1 || m.sinks < 0)
    mask.bad("has window=" + std::to_string(m.window) +
             " sinks=" + std::to_string(m.sinks) +
             "; window must be >= -1 (-1 = none) and sinks >= 0");
  return m;
}

void parseAttention(const Reader &kr, KernelDesc &kd,
                    const std::string &where) {
  Reader at(kr.field("attention"), where + " attention");
  attnrt_attention_info &ai = kd.attention;
  std::string layout = at.str("layout");
  if (kd.kind == "paged_attention") {
    if (layout != "paged")
      at.badField("layout", "is '" + layout +
                                "', expected paged for a paged_attention "
                                "kernel");
  } else if (layout != "dense" && layout != "ragged") {
    at.badField("layout", "is '" + layout + "', expected dense or ragged");
  }
  ai.ragged = layout == "ragged";
  ai.paged = layout == "paged";
  ai.num_q_heads = at.integer("num_q_heads");
  ai.num_kv_heads = at.integer("num_kv_heads");
  ai.head_dim = at.integer("head_dim");
  if (ai.num_q_heads <= 0 || ai.num_kv_heads <= 0 || ai.head_dim <= 0 ||
      ai.num_q_heads % ai.num_kv_heads != 0)
    at.bad("has num_q_heads=" + std::to_string(ai.num_q_heads) +
           " num_kv_heads=" + std::to_string(ai.num_kv_heads) +
           " head_dim=" + std::to_string(ai.head_dim) +
           "; they must be positive and num_q_heads a multiple of "
           "num_kv_heads");
  ai.dtype = parseDtype(at, "dtype");
  ai.scale = at.number("scale");
  ai.softcap = at.number("softcap");
  if (ai.softcap < 0)
    at.badField("softcap", "must be >= 0 (0 = none)");
  ai.has_lse = at.boolean("has_lse");
  attnrt_mask_info mask =
      parseMask(Reader(at.field("mask"), where + " attention.mask"), true);
  ai.causal = mask.causal;
  ai.bottom_right = mask.bottom_right;
  ai.window = mask.window;
  ai.sinks = mask.sinks;
  // Per-KV-head masks (docs/sparsity.md section 1): next to `mask` in the
  // attention object; a kernel-level field is accepted too.
  const Reader *hmOwner = at.has("head_masks")   ? &at
                          : kr.has("head_masks") ? &kr
                                                 : nullptr;
  if (hmOwner) {
    const json &list = hmOwner->array("head_masks");
    if (static_cast<int64_t>(list.size()) != ai.num_kv_heads)
      hmOwner->badField("head_masks", "has " + std::to_string(list.size()) +
                                          " entries but num_kv_heads is " +
                                          std::to_string(ai.num_kv_heads) +
                                          "; give one mask per KV head");
    for (size_t h = 0; h < list.size(); ++h) {
      kd.headMasks.push_back(parseMask(
          Reader(list[h], where + " head_masks[" + std::to_string(h) + "]"),
          false));
      if (kd.headMasks.back().bottom_right != kd.headMasks[0].bottom_right)
        hmOwner->badField("head_masks",
                          "mixes top_left and bottom_right alignments (entry " +
                              std::to_string(h) +
                              "); all heads share one alignment");
    }
  }

  // Tile info is informational; tolerate its absence.
  if (kr.has("tile")) {
    Reader tile(kr.field("tile"), where + " tile");
    ai.block_q = tile.integerOr("block_q", 0);
    ai.block_kv = tile.integerOr("block_kv", 0);
    ai.vector_width = tile.integerOr("vector_width", 0);
  }
  ai.workspace_bytes = kr.integerOr("workspace_bytes", 0);
}

void parseKvCache(const Reader &kr, KernelDesc &kd, const std::string &where) {
  Reader c(kr.field("kv_cache"), where + " kv_cache");
  KvCacheDesc &kc = kd.kvCache;
  attnrt_kv_cache_info &v = kc.view;
  kc.name = c.str("name");
  v.page_size = c.integer("page_size");
  if (v.page_size < 1 || v.page_size > 256)
    c.badField("page_size",
               "is " + std::to_string(v.page_size) + ", expected 1 to 256");
  v.num_kv_heads = c.integer("num_kv_heads");
  if (v.num_kv_heads < 1)
    c.badField("num_kv_heads", "must be positive");
  v.head_dim = c.integer("head_dim");
  if (v.head_dim < 1)
    c.badField("head_dim", "must be positive");
  kc.layout = c.str("layout");
  if (kc.layout != "nhd" && kc.layout != "hnd")
    c.badField("layout", "is '" + kc.layout + "', expected nhd or hnd");
  kc.storage = c.str("storage");
  static const char *storages[] = {"f16",    "bf16", "f8e4m3fn",
                                   "f8e5m2", "i8",   "i4"};
  bool known = false;
  for (const char *s : storages)
    known |= kc.storage == s;
  if (!known)
    c.badField("storage", "is '" + kc.storage +
                              "', expected one of f16, bf16, f8e4m3fn, "
                              "f8e5m2, i8, i4");
  // 0 or absent: no K groups (non-integer storage) = one group per page.
  v.k_group = c.integerOr("k_group", 0);
  if (v.k_group == 0)
    v.k_group = v.page_size;
  if (v.k_group < 0 || v.page_size % v.k_group != 0)
    c.badField("k_group", "is " + std::to_string(v.k_group) +
                              ", expected a divisor of page_size " +
                              std::to_string(v.page_size));
  v.bytes_per_token = c.number("bytes_per_token");
  if (!(v.bytes_per_token > 0))
    c.badField("bytes_per_token", "must be positive");
  // 0 or absent: no residual window (docs/kv-cache.md).
  v.residual = c.integerOr("residual", 0);
  if (v.residual < 0 || v.residual > 4096)
    c.badField("residual", "is " + std::to_string(v.residual) +
                               ", expected 0 (none) to 4096");
  if (v.residual > 0 && (kc.storage == "f16" || kc.storage == "bf16"))
    c.badField("residual", "is " + std::to_string(v.residual) +
                               " but storage '" + kc.storage +
                               "' is not quantized; a residual window needs "
                               "f8e4m3fn, f8e5m2, i8 or i4 storage");
}

/// The residual window (kv_cache.residual = R > 0): rings k_recent/v_recent
/// [num_rings, R, ...], ring_slots for kv_append, kv_rings for
/// paged_attention; none of them without a residual.
void checkResidualRoles(const Reader &kr, const KernelDesc &kd) {
  int64_t residual = kd.hasKvCache ? kd.kvCache.view.residual : 0;
  const attnrt_role ringRoles[] = {ATTNRT_ROLE_K_RECENT, ATTNRT_ROLE_V_RECENT,
                                   ATTNRT_ROLE_RING_SLOTS,
                                   ATTNRT_ROLE_KV_RINGS};
  if (residual == 0) {
    for (attnrt_role role : ringRoles) {
      int i = kd.findRole(role);
      if (i >= 0)
        kr.badField("args", "has argument '" + kd.args[i].name + "' of role " +
                                attnrt_role_name(role) +
                                " but the kernel's kv_cache has no residual "
                                "window (kv_cache.residual is 0 or "
                                "absent)");
    }
    return;
  }
  std::string why = "a cache with residual = " + std::to_string(residual);
  auto require = [&](attnrt_role role) {
    if (kd.findRole(role) < 0)
      kr.badField("args", std::string("has no argument of role ") +
                              attnrt_role_name(role) + ", which " + why +
                              " needs (docs/kv-cache.md)");
  };
  for (attnrt_role role : {ATTNRT_ROLE_K_RECENT, ATTNRT_ROLE_V_RECENT}) {
    require(role);
    const ArgDesc &a = kd.args[kd.findRole(role)];
    if (a.dtype != ATTNRT_DTYPE_F16 || a.shape.size() < 2 ||
        (a.shape[1].symbol.empty() && a.shape[1].value != residual))
      kr.badField("args",
                  "has argument '" + a.name + "' of role " +
                      attnrt_role_name(role) + "; it must be f16 [num_rings, " +
                      std::to_string(residual) + ", H, D] (" + why + ")");
  }
  if (kd.kind == "kv_append")
    require(ATTNRT_ROLE_RING_SLOTS);
  if (kd.kind == "paged_attention")
    require(ATTNRT_ROLE_KV_RINGS);
}

/// block_sparse {block_q, block_kv, heads} (kernels with a block-sparse
/// mask) and select_pages {top_k, sink_pages, recent_pages}.
void parseSparsity(const Reader &kr, KernelDesc &kd, const std::string &where) {
  bool attention = kd.kind == "attention" || kd.kind == "paged_attention";
  kd.hasBlockSparse = kr.has("block_sparse");
  if (kd.hasBlockSparse) {
    if (!attention)
      kr.badField("block_sparse", "is present but a " + kd.kind +
                                      " kernel takes no block-sparse mask; "
                                      "remove it or fix 'kind'");
    Reader bs(kr.field("block_sparse"), where + " block_sparse");
    attnrt_block_sparse_info &b = kd.blockSparse;
    b.block_q = bs.integer("block_q");
    b.block_kv = bs.integer("block_kv");
    b.heads = bs.integer("heads");
    if (b.block_q < 1 || b.block_kv < 1)
      bs.bad("has block_q=" + std::to_string(b.block_q) + " block_kv=" +
             std::to_string(b.block_kv) + "; block sizes must be >= 1 token");
    if (b.heads != 1 && b.heads != kd.attention.num_kv_heads)
      bs.badField("heads", "is " + std::to_string(b.heads) +
                               ", expected num_kv_heads (" +
                               std::to_string(kd.attention.num_kv_heads) +
                               ") or 1 (one pattern for every head)");
  }
  kd.hasSelectPages = kd.kind == "select_pages";
  if (!kd.hasSelectPages) {
    if (kr.has("select_pages"))
      kr.badField("select_pages", "is present but the kernel's kind is " +
                                      kd.kind + "; remove it or fix 'kind'");
    return;
  }
  Reader sp(kr.field("select_pages"), where + " select_pages");
  attnrt_select_pages_info &p = kd.selectPages;
  p.top_k = sp.integer("top_k");
  p.sink_pages = sp.integer("sink_pages");
  p.recent_pages = sp.integer("recent_pages");
  if (p.top_k < 1 || p.sink_pages < 0 || p.recent_pages < 0 ||
      p.top_k < p.sink_pages + p.recent_pages)
    sp.bad("has top_k=" + std::to_string(p.top_k) +
           " sink_pages=" + std::to_string(p.sink_pages) +
           " recent_pages=" + std::to_string(p.recent_pages) +
           "; top_k must be >= 1 and >= sink_pages + recent_pages (both "
           ">= 0)");
}

/// "instrumented": ["tile_stats", ...] (attnc --count-tiles). Unknown
/// entries are kept (a newer attnc may add counters) but not used.
void parseInstrumented(const Reader &kr, KernelDesc &kd) {
  if (!kr.has("instrumented"))
    return;
  for (const json &e : kr.array("instrumented")) {
    if (!e.is_string())
      kr.badField("instrumented", "has entry " + e.dump() +
                                      ", expected a string such as "
                                      "\"tile_stats\"");
    kd.instrumented.push_back(e.get<std::string>());
    kd.tileStats |= kd.instrumented.back() == "tile_stats";
  }
}

/// Block-sparse operands (docs/sparsity.md section 2) and page summaries
/// (section 3): ranks and dtypes validation relies on, and which kinds take
/// them in which direction.
void checkSparsityRoles(const Reader &kr, const KernelDesc &kd) {
  bool attention = kd.kind == "attention" || kd.kind == "paged_attention";
  bool select = kd.kind == "select_pages";
  struct Rule {
    attnrt_role role;
    attnrt_dtype dtype;
    size_t rank;
  };
  const Rule rules[] = {{ATTNRT_ROLE_BLOCK_OFFSETS, ATTNRT_DTYPE_I32, 3},
                        {ATTNRT_ROLE_BLOCK_INDICES, ATTNRT_DTYPE_I32, 3},
                        {ATTNRT_ROLE_BLOCK_FULL, ATTNRT_DTYPE_I8, 3},
                        {ATTNRT_ROLE_K_PAGE_MAX, ATTNRT_DTYPE_F16, 3},
                        {ATTNRT_ROLE_K_PAGE_MIN, ATTNRT_DTYPE_F16, 3}};
  for (const ArgDesc &a : kd.args)
    for (const Rule &r : rules)
      if (a.role == r.role && (a.dtype != r.dtype || a.shape.size() != r.rank))
        kr.badField("args", "has argument '" + a.name + "' of role " +
                                attnrt_role_name(r.role) + "; it must be " +
                                attnrt_dtype_name(r.dtype) + " of rank " +
                                std::to_string(r.rank));
  int offsets = kd.findRole(ATTNRT_ROLE_BLOCK_OFFSETS);
  int indices = kd.findRole(ATTNRT_ROLE_BLOCK_INDICES);
  int full = kd.findRole(ATTNRT_ROLE_BLOCK_FULL);
  bool bsr = offsets >= 0 || indices >= 0 || full >= 0;
  if (bsr && !attention && !select)
    kr.badField("args", "has block-sparse arguments but a " + kd.kind +
                            " kernel takes none");
  if (bsr && (offsets < 0 || indices < 0))
    kr.badField("args", std::string("has no argument of role ") +
                            (offsets < 0 ? "block_offsets" : "block_indices") +
                            "; block_offsets and block_indices come together");
  attnrt_dir want = select ? ATTNRT_DIR_OUT : ATTNRT_DIR_IN;
  for (int i : {offsets, indices, full})
    if (i >= 0 && kd.args[i].dir != want)
      kr.badField("args", "has argument '" + kd.args[i].name + "' of role " +
                              attnrt_role_name(kd.args[i].role) +
                              "; it must be " +
                              (select ? "an output (dir out) of select_pages"
                                      : "an input (dir in)"));
  if (select && full >= 0)
    kr.badField("args", "has argument '" + kd.args[full].name +
                            "' of role block_full; select_pages writes no "
                            "full flags");
  if (attention && bsr != kd.hasBlockSparse)
    kr.bad(bsr ? "has block-sparse arguments but no field 'block_sparse' "
                 "(block sizes and heads); regenerate the artifact with attnc"
               : "has field 'block_sparse' but no block_offsets / "
                 "block_indices arguments; regenerate the artifact with attnc");
  int kmax = kd.findRole(ATTNRT_ROLE_K_PAGE_MAX);
  int kmin = kd.findRole(ATTNRT_ROLE_K_PAGE_MIN);
  if ((kmax >= 0) != (kmin >= 0))
    kr.badField("args", std::string("has no argument of role ") +
                            (kmax < 0 ? "k_page_max" : "k_page_min") +
                            "; a cache with summary = minmax has both");
  if (!select)
    return;
  auto require = [&](attnrt_role role) {
    if (kd.findRole(role) < 0)
      kr.badField("args", std::string("has no argument of role ") +
                              attnrt_role_name(role) +
                              ", which select_pages needs");
  };
  for (attnrt_role role :
       {ATTNRT_ROLE_QUERY, ATTNRT_ROLE_KV_INDPTR, ATTNRT_ROLE_K_PAGE_MAX,
        ATTNRT_ROLE_K_PAGE_MIN, ATTNRT_ROLE_BLOCK_OFFSETS})
    require(role);
}

/// Structural rules validation relies on: page-table and slot arguments are
/// rank-1 i32, and come with the arguments and cache they refer to.
void checkRoles(const Reader &kr, const KernelDesc &kd) {
  const attnrt_role indexRoles[] = {
      ATTNRT_ROLE_CU_SEQLENS_Q,     ATTNRT_ROLE_CU_SEQLENS_K,
      ATTNRT_ROLE_KV_INDPTR,        ATTNRT_ROLE_KV_INDICES,
      ATTNRT_ROLE_KV_LAST_PAGE_LEN, ATTNRT_ROLE_QO_INDPTR,
      ATTNRT_ROLE_SLOT_MAPPING,     ATTNRT_ROLE_RING_SLOTS,
      ATTNRT_ROLE_KV_RINGS};
  for (const ArgDesc &a : kd.args)
    for (attnrt_role role : indexRoles)
      if (a.role == role && (a.dtype != ATTNRT_DTYPE_I32 ||
                             a.shape.size() != 1 || a.dir != ATTNRT_DIR_IN))
        kr.badField("args", "has argument '" + a.name + "' of role " +
                                attnrt_role_name(role) +
                                "; it must be a rank-1 i32 input");
  auto require = [&](attnrt_role role, const char *because) {
    if (kd.findRole(role) < 0)
      kr.badField("args", std::string("has no argument of role ") +
                              attnrt_role_name(role) + ", which " + because +
                              " needs");
  };
  bool pageTable = kd.findRole(ATTNRT_ROLE_KV_INDPTR) >= 0 ||
                   kd.findRole(ATTNRT_ROLE_KV_INDICES) >= 0 ||
                   kd.findRole(ATTNRT_ROLE_KV_LAST_PAGE_LEN) >= 0;
  if (pageTable) {
    const char *why = "a page table";
    require(ATTNRT_ROLE_KV_INDPTR, why);
    require(ATTNRT_ROLE_KV_INDICES, why);
    require(ATTNRT_ROLE_KV_LAST_PAGE_LEN, why);
    require(ATTNRT_ROLE_K_PAGES, why);
  }
  if (kd.findRole(ATTNRT_ROLE_SLOT_MAPPING) >= 0)
    require(ATTNRT_ROLE_K_PAGES, "slot_mapping");
  if (kd.findRole(ATTNRT_ROLE_QO_INDPTR) >= 0)
    require(ATTNRT_ROLE_QUERY, "qo_indptr");
  int pages = kd.findRole(ATTNRT_ROLE_K_PAGES);
  if (pages >= 0 && kd.args[pages].shape.empty())
    kr.badField("args", "has k_pages argument '" + kd.args[pages].name +
                            "' of rank 0; dim 0 must be the number of pages");
  if ((pageTable || kd.findRole(ATTNRT_ROLE_SLOT_MAPPING) >= 0) &&
      !kd.hasKvCache)
    kr.bad("has a page table or slot_mapping but is missing field 'kv_cache' "
           "(its page_size is needed); regenerate the artifact with attnc");
  checkResidualRoles(kr, kd);
  checkSparsityRoles(kr, kd);
}

/// Scratch sizes come from the symbols the arguments bind, and for
/// split-KV kernels from the split symbol (`splitSymbol`, else empty).
void checkScratchSymbols(const Reader &kr, const KernelDesc &kd,
                         const std::string &splitSymbol) {
  for (const ArgDesc &s : kd.scratch)
    for (const DimDesc &d : s.shape) {
      if (d.symbol.empty())
        continue;
      bool bound = !splitSymbol.empty() && d.symbolName == splitSymbol;
      for (const ArgDesc &a : kd.args)
        for (const DimDesc &ad : a.shape)
          bound |= ad.symbolName == d.symbolName;
      if (!bound)
        kr.badField("scratch",
                    "buffer '" + s.name + "' uses symbol '" + d.symbolName +
                        "' that no argument's shape binds" +
                        (splitSymbol.empty()
                             ? std::string()
                             : " and that is not gpu.split_kv.symbol ('" +
                                   splitSymbol + "')") +
                        "; its size would be unknown");
    }
}

/// A CUDA kernel's gpu object (docs/gpu-artifacts.md): one launch, or for
/// split-KV kernels a main launch and a merge launch sharing scratch.
void parseGpu(const Reader &kr, KernelDesc &kd, const std::string &where,
              const std::vector<std::string> &archs) {
  if (kd.phases != 1)
    kr.badField("phases", "is " + std::to_string(kd.phases) +
                              " but a CUDA kernel is one launch (phases 1)");
  std::vector<std::string> argNames, scratchNames;
  std::set<std::string> symbols;
  for (const ArgDesc &a : kd.args) {
    argNames.push_back(a.name);
    for (const DimDesc &d : a.shape)
      if (!d.symbol.empty())
        symbols.insert(d.symbolName);
  }
  for (const ArgDesc &s : kd.scratch)
    scratchNames.push_back(s.name);
  kd.hasGpu = true;
  kd.gpu = parseGpuKernel(kr.field("gpu"), where, argNames, scratchNames,
                          symbols, archs);
  // Only the partial results of split-KV kernels live in scratch.
  if (!kd.scratch.empty() && !kd.gpu.splitKv())
    kr.badField("scratch", "lists " + std::to_string(kd.scratch.size()) +
                               " buffers but only split-KV CUDA kernels "
                               "(gpu.split_kv) take scratch");
  checkScratchSymbols(kr, kd, kd.gpu.splitSymbol);
  // The tiling lives in gpu.tile; the host's kernel-level tile wins.
  if (kd.hasAttention && !kr.has("tile")) {
    kd.attention.block_q = kd.gpu.tileBlockQ;
    kd.attention.block_kv = kd.gpu.tileBlockKv;
  }
}

KernelDesc parseKernel(const json &j, const std::string &file, size_t index,
                       const std::vector<std::string> *cudaArchs) {
  Reader k(j, file + ": kernel #" + std::to_string(index));
  KernelDesc kd;
  kd.name = k.str("name");
  std::string where = file + ": kernel '" + kd.name + "'";
  Reader kr(j, where);
  kd.kind = kr.str("kind");
  if (kd.kind != "attention" && kd.kind != "paged_attention" &&
      kd.kind != "kv_append" && kd.kind != "merge" && kd.kind != "select_pages")
    kr.badField("kind", "is '" + kd.kind +
                            "', expected one of attention, paged_attention, "
                            "kv_append, merge, select_pages");
  // CUDA kernels are one launch of gpu.entry: no phases or host entries.
  int64_t phases = cudaArchs ? kr.integerOr("phases", 1) : kr.integer("phases");
  if (phases < 1 || phases > 1024)
    kr.badField("phases",
                "is " + std::to_string(phases) + ", expected 1 to 1024");
  kd.phases = static_cast<int>(phases);
  if (!cudaArchs) {
    kd.entryRun = kr.str("entry_run");
    kd.entryWorkItems = kr.str("entry_work_items");
  }

  kd.hasAttention = kd.kind == "attention" || kd.kind == "paged_attention";
  if (kd.hasAttention)
    parseAttention(kr, kd, where);
  else if (kr.has("attention"))
    kr.badField("attention", "is present but a " + kd.kind +
                                 " kernel has no attention parameters; "
                                 "remove it or fix 'kind'");

  kd.hasKvCache = kr.has("kv_cache");
  if (kd.hasKvCache)
    parseKvCache(kr, kd, where);
  parseSparsity(kr, kd, where);
  parseInstrumented(kr, kd);

  const json &args = kr.array("args");
  for (size_t i = 0; i < args.size(); ++i)
    kd.args.push_back(
        parseArg(args[i], elementWhere(where, "argument", args, i)));
  if (kd.args.empty())
    kr.badField("args", "is empty; a kernel needs at least one argument");
  if (kr.has("scratch")) {
    const json &scratch = kr.array("scratch");
    for (size_t i = 0; i < scratch.size(); ++i)
      kd.scratch.push_back(
          parseScratch(scratch[i], elementWhere(where, "scratch", scratch, i)));
  }

  std::vector<const ArgDesc *> all;
  for (const ArgDesc &a : kd.args)
    all.push_back(&a);
  for (const ArgDesc &a : kd.scratch)
    all.push_back(&a);
  for (size_t i = 0; i < all.size(); ++i)
    for (size_t k2 = i + 1; k2 < all.size(); ++k2)
      if (all[i]->name == all[k2]->name)
        kr.badField(k2 < kd.args.size() ? "args" : "scratch",
                    "has two buffers named '" + all[i]->name +
                        "'; argument and scratch names must be unique");
  // CUDA kernels may also size scratch by the split symbol (parseGpu).
  if (!cudaArchs)
    checkScratchSymbols(kr, kd, "");
  checkRoles(kr, kd);
  if (cudaArchs)
    parseGpu(kr, kd, where, *cudaArchs);
  return kd;
}

/// attnrt_open and attnrt_gpu_open each refuse the other's artifacts,
/// saying which one to use.
void checkTarget(const std::string &target, ArtifactTarget expected,
                 const std::string &where) {
  if (target == "host" && expected == ArtifactTarget::Cuda)
    fail(ATTNRT_ERR_UNSUPPORTED,
         where + " has target 'host' (a host artifact); open it with "
                 "attnrt_open (attnrt/attnrt.h), or compile for the GPU with "
                 "attnc --target=sm_XY");
  if (target == "cuda" && expected == ArtifactTarget::Host)
    fail(ATTNRT_ERR_UNSUPPORTED,
         where + " has target 'cuda' (a CUDA artifact); open it with "
                 "attnrt_gpu_open (attnrt/attnrt_cuda.h), or compile for the "
                 "CPU with attnc --target=host");
  if (target != "host" && target != "cuda")
    fail(ATTNRT_ERR_UNSUPPORTED,
         where + " has target '" + target +
             "' but attnrt runs only 'host' and 'cuda' artifacts; compile "
             "with attnc --target=host or --target=sm_XY");
}

/// The root object's format_version (2) and target.
std::string parseTarget(const json &root, const std::string &where) {
  Reader r(root, where);
  int64_t version = r.integer("format_version");
  if (version != 2)
    fail(ATTNRT_ERR_UNSUPPORTED,
         where + " has format_version " + std::to_string(version) +
             " but this attnrt supports only 2; rebuild attnrt and attnc "
             "from the same source tree");
  return r.str("target");
}

json parseJson(const std::string &text, const std::string &where) {
  try {
    return json::parse(text);
  } catch (const json::parse_error &e) {
    // nlohmann messages are one line and include the byte position.
    fail(ATTNRT_ERR_MANIFEST, where + " is not valid JSON (" + e.what() +
                                  "); regenerate it with attnc");
  }
}

std::string readManifestText(const std::string &dir, std::string &path) {
  path = dir + "/manifest.json";
  std::ifstream in(path, std::ios::binary);
  if (!in)
    fail(ATTNRT_ERR_IO, "cannot read " + path + " (" + std::strerror(errno) +
                            "); pass the directory attnc -o wrote");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

} // namespace

Manifest attnrt::parseManifest(const std::string &text,
                               const std::string &where,
                               ArtifactTarget expected, bool needLibrary) {
  json root = parseJson(text, where);
  Reader r(root, where);
  Manifest m;
  m.formatVersion = 2;
  m.target = parseTarget(root, where);
  checkTarget(m.target, expected, where);
  bool cuda = expected == ArtifactTarget::Cuda;
  if (cuda)
    m.archs = parseArchs(root, where);
  if (needLibrary && !cuda) {
    m.library = r.str("library");
    if (m.library.empty() || m.library.find('/') != std::string::npos)
      r.badField("library",
                 "must be a file name inside the artifact directory");
  }
  if (r.has("header"))
    m.header = r.str("header");
  const json &kernels = r.array("kernels");
  for (size_t i = 0; i < kernels.size(); ++i)
    m.kernels.push_back(
        parseKernel(kernels[i], where, i, cuda ? &m.archs : nullptr));
  for (size_t i = 0; i < m.kernels.size(); ++i)
    for (size_t k = i + 1; k < m.kernels.size(); ++k)
      if (m.kernels[i].name == m.kernels[k].name)
        r.badField("kernels",
                   "has two kernels named '" + m.kernels[i].name + "'");
  if (cuda && r.has("steps"))
    r.badField("steps", "is present but memory plans run only on the host "
                        "runtime (attnrt_open); remove it");
  m.steps = parseSteps(root, m.kernels, where);
  return m;
}

Manifest attnrt::loadManifest(const std::string &dir, ArtifactTarget expected) {
  std::string path;
  std::string text = readManifestText(dir, path);
  return parseManifest(text, path, expected);
}

std::string attnrt::loadManifestTarget(const std::string &dir) {
  std::string path;
  std::string text = readManifestText(dir, path);
  return parseTarget(parseJson(text, path), path);
}

void attnrt::linkViews(KernelDesc &k) {
  auto link = [](std::vector<ArgDesc> &list,
                 std::vector<attnrt_arg_info> &views) {
    views.clear();
    for (ArgDesc &a : list) {
      a.dimViews.clear();
      for (DimDesc &d : a.shape)
        a.dimViews.push_back({d.symbol.empty() ? nullptr : d.symbol.c_str(),
                              d.symbol.empty() ? nullptr : d.symbolName.c_str(),
                              d.value});
      views.push_back({a.name.c_str(), a.role, a.dir, a.dtype,
                       static_cast<int>(a.shape.size()), a.dimViews.data()});
    }
  };
  link(k.args, k.argViews);
  link(k.scratch, k.scratchViews);
  k.attention.num_head_masks = static_cast<int64_t>(k.headMasks.size());
  k.attention.head_masks = k.headMasks.empty() ? nullptr : k.headMasks.data();
  k.kvCache.view.name = k.kvCache.name.c_str();
  k.kvCache.view.layout = k.kvCache.layout.c_str();
  k.kvCache.view.storage = k.kvCache.storage.c_str();
}
