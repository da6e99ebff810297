//===- FixtureText.h - text helpers shared by the runtime unit tests ------===//

#ifndef ATTNRT_TEST_UNIT_FIXTURETEXT_H
#define ATTNRT_TEST_UNIT_FIXTURETEXT_H

#include <fstream>
#include <sstream>
#include <string>

namespace attnrt_test {

/// The fixture kernels' manifest.json (test/unit/fixture), as text to edit.
inline std::string readFixtureManifest() {
  std::ifstream in(std::string(ATTNRT_FIXTURE_DIR) + "/manifest.json");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string replaceAll(std::string s, const std::string &from,
                              const std::string &to) {
  for (size_t pos = s.find(from); pos != std::string::npos;
       pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
  return s;
}

} // namespace attnrt_test

#endif // ATTNRT_TEST_UNIT_FIXTURETEXT_H
