// Small helpers shared by the storage tests.
#pragma once

#include <string>
#include <string_view>

namespace kv::storage::testing {

// prefix + decimal n. (Written with append: GCC 12 warns falsely, -Wrestrict, on
// `"literal" + std::to_string(n)`.)
inline std::string cat(std::string_view prefix, long long n) {
  std::string s(prefix);
  s.append(std::to_string(n));
  return s;
}

}  // namespace kv::storage::testing
