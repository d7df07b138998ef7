#include "common/names.h"

#include <catch2/catch.hpp>

namespace sc {

TEST_CASE("DNS-1123 labels", "[names]") {
  for (std::string ok : {std::string("a"), std::string("default"), std::string("my-app-1"),
                         std::string("0abc"), std::string(63, 'x')}) {
    INFO(ok);
    CHECK(Dns1123LabelError(ok).empty());
  }
  for (std::string bad :
       {std::string(""), std::string("-a"), std::string("a-"), std::string("A"), std::string("a_b"),
        std::string("a.b"), std::string(".."), std::string("a/b"), std::string(64, 'x'),
        std::string("a\0b", 3), std::string("caf\xc3\xa9")}) {
    INFO(bad);
    CHECK(!Dns1123LabelError(bad).empty());
  }
}

TEST_CASE("error messages never echo raw control bytes", "[names]") {
  std::string error = Dns1123LabelError(std::string("a\nb\x01", 4));
  CHECK(error.find('\n') == std::string::npos);
  CHECK(error.find("\\x0a") != std::string::npos);
  CHECK(Dns1123LabelError(std::string(10000, 'A')).size() < 200);
}

TEST_CASE("NAMESPACE/NAME", "[names]") {
  std::string ns, name;
  CHECK(ParseInstanceName("team-a/web", &ns, &name).empty());
  CHECK(ns == "team-a");
  CHECK(name == "web");
  CHECK(!ParseInstanceName("web", &ns, &name).empty());
  CHECK(!ParseInstanceName("a/b/c", &ns, &name).empty());
  CHECK(!ParseInstanceName("/web", &ns, &name).empty());
  CHECK(!ParseInstanceName("../web", &ns, &name).empty());
}

}  // namespace sc
