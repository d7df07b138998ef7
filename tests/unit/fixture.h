#ifndef TESTS_UNIT_FIXTURE_H_
#define TESTS_UNIT_FIXTURE_H_

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <string>

namespace sc::test {

// The content of tests/fixtures/<path>; the test fails if it cannot be read.
inline std::string ReadFixture(const std::string& path) {
  std::ifstream in(std::string(SC_FIXTURES) + "/" + path);
  REQUIRE(in.good());
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

}  // namespace sc::test

#endif  // TESTS_UNIT_FIXTURE_H_
