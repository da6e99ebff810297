//===- JsonFields.h - Checked access to one JSON object ---------*- C++ -*-===//
//
// The manifest readers of steps (StepManifest.cpp) and GPU kernels
// (GpuManifest.cpp) read JSON objects the same way: every field checked for
// presence and type, every failure an ATTNRT_ERR_MANIFEST that names the
// object's location, the field and what was expected, and how to fix it.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNRT_SRC_JSONFIELDS_H
#define ATTNRT_SRC_JSONFIELDS_H

#include "Error.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <initializer_list>
#include <string>

namespace attnrt {

class JsonFields {
public:
  /// `where` names the object in messages; `fix` ends them (e.g. "; fix the
  /// manifest or regenerate it with attnc").
  JsonFields(const nlohmann::json &obj, std::string where, const char *fix)
      : obj(obj), where(std::move(where)), fix(fix) {
    if (!obj.is_object())
      bad("is " + obj.dump() + ", expected a JSON object");
  }

  [[noreturn]] void bad(const std::string &what) const {
    fail(ATTNRT_ERR_MANIFEST, where + ": " + what + fix);
  }
  [[noreturn]] void badField(const char *key, const std::string &what) const {
    bad("field '" + std::string(key) + "' " + what);
  }
  bool has(const char *key) const { return obj.contains(key); }
  const nlohmann::json &field(const char *key) const {
    auto it = obj.find(key);
    if (it == obj.end())
      bad("is missing field '" + std::string(key) + "'");
    return *it;
  }
  std::string string(const char *key) const {
    const nlohmann::json &v = field(key);
    if (!v.is_string())
      badField(key, "is " + v.dump() + ", expected a string");
    return v.get<std::string>();
  }
  int64_t integer(const char *key) const {
    const nlohmann::json &v = field(key);
    if (!v.is_number_integer())
      badField(key, "is " + v.dump() + ", expected an integer");
    return v.get<int64_t>();
  }
  /// An integer in [min, max] (values beyond int64 count as INT64_MAX).
  int64_t integer(const char *key, int64_t min, int64_t max) const {
    const nlohmann::json &v = field(key);
    if (!v.is_number_integer())
      badField(key, "is " + v.dump() + ", expected an integer");
    int64_t i = v.get<int64_t>();
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX))
      i = INT64_MAX;
    if (i < min || i > max)
      badField(key, "is " + v.dump() + ", expected " + std::to_string(min) +
                        " to " + std::to_string(max));
    return i;
  }
  int64_t nonNegative(const char *key) const {
    int64_t v = integer(key);
    if (v < 0)
      badField(key, "is " + std::to_string(v) + ", expected an integer >= 0");
    return v;
  }
  bool boolean(const char *key) const {
    const nlohmann::json &v = field(key);
    if (!v.is_boolean())
      badField(key, "is " + v.dump() + ", expected true or false");
    return v.get<bool>();
  }
  const nlohmann::json &array(const char *key) const {
    const nlohmann::json &v = field(key);
    if (!v.is_array())
      badField(key, "is " + v.dump() + ", expected an array");
    return v;
  }
  /// Refuses keys outside `known`.
  void onlyKeys(std::initializer_list<const char *> known) const {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      bool ok = false;
      std::string names;
      for (const char *k : known) {
        ok |= it.key() == k;
        names += (names.empty() ? "" : ", ") + std::string(k);
      }
      if (!ok)
        bad("has unknown field '" + it.key() + "' (expected " + names + ")");
    }
  }
  const std::string &location() const { return where; }

private:
  const nlohmann::json &obj;
  std::string where;
  const char *fix;
};

} // namespace attnrt

#endif // ATTNRT_SRC_JSONFIELDS_H
