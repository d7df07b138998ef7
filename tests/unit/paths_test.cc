// OpenBeneath on a real directory tree (no mounts, no root needed), through
// openat2 and through the O_PATH walk fallback.
#include "daemon/base/paths.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

namespace sc {
namespace {

namespace fs = std::filesystem;

struct Tree {
  std::string root;
  Tree() {
    char tmpl[] = "/tmp/sc-test-paths-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    root = tmpl;
    fs::create_directories(root + "/in/a/b");
    fs::create_directories(root + "/out");
    std::ofstream(root + "/in/a/file") << "x";
    fs::create_symlink(root + "/out", root + "/in/abs-out");
    fs::create_symlink("../out", root + "/in/rel-out");
    fs::create_symlink("a", root + "/in/rel-in");
  }
  ~Tree() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
};

}  // namespace

TEST_CASE("request paths are checked before use", "[paths]") {
  CHECK(CheckRequestPath("/a/b", true, "p").ok());
  CHECK_FALSE(CheckRequestPath("a/b", true, "p").ok());
  CHECK_FALSE(CheckRequestPath("/a/../b", true, "p").ok());
  CHECK_FALSE(CheckRequestPath("", false, "p").ok());
  CHECK_FALSE(CheckRequestPath(std::string("/a\0b", 4), true, "p").ok());
  CHECK_FALSE(CheckRequestPath(std::string(5000, 'a'), false, "p").ok());
  CHECK(PathComponents("//a/./b/") == std::vector<std::string>{"a", "b"});
}

TEST_CASE("OpenBeneath never follows a symlink nor leaves its root", "[paths]") {
  Tree tree;
  for (bool walk : {false, true}) {
    DYNAMIC_SECTION((walk ? "O_PATH walk" : "openat2")) {
      ForceOpenPathWalkForTesting(walk);
      int in = open((tree.root + "/in").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
      REQUIRE(in >= 0);
      UniqueFd in_fd(in);
      CHECK(OpenBeneath(in, "a/b", O_PATH | O_DIRECTORY).ok());
      CHECK(OpenBeneath(in, "a/file", O_RDONLY).ok());
      CHECK(OpenBeneath(in, "", O_PATH | O_DIRECTORY).ok());
      CHECK(OpenBeneath(in, "abs-out", O_PATH).status().code() ==
            absl::StatusCode::kInvalidArgument);
      CHECK(OpenBeneath(in, "rel-out/x", O_PATH).status().code() ==
            absl::StatusCode::kInvalidArgument);
      CHECK(OpenBeneath(in, "rel-in/file", O_RDONLY).status().code() ==
            absl::StatusCode::kInvalidArgument);
      CHECK(OpenBeneath(in, "rel-in", O_PATH).status().code() ==
            absl::StatusCode::kInvalidArgument);
      CHECK(OpenBeneath(in, "../out", O_PATH).status().code() ==
            absl::StatusCode::kInvalidArgument);
      CHECK(OpenBeneath(in, "a/nope", O_PATH).status().code() == absl::StatusCode::kNotFound);
      CHECK_FALSE(OpenBeneath(in, "a/file", O_PATH | O_DIRECTORY).ok());
      ForceOpenPathWalkForTesting(false);
    }
  }
}

TEST_CASE("OpenUnderRoots requires a lexical match and no symlink below it", "[paths]") {
  Tree tree;
  std::vector<std::string> roots = {tree.root + "/in"};
  CHECK(OpenUnderRoots(roots, tree.root + "/in/a/b", O_PATH | O_DIRECTORY).ok());
  CHECK(OpenUnderRoots(roots, tree.root + "/out", O_PATH).status().code() ==
        absl::StatusCode::kPermissionDenied);
  CHECK(OpenUnderRoots(roots, tree.root + "/inx", O_PATH).status().code() ==
        absl::StatusCode::kPermissionDenied);
  CHECK(OpenUnderRoots(roots, tree.root + "/in/abs-out", O_PATH).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(OpenUnderRoots(roots, tree.root + "/in/../out", O_PATH).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(OpenUnderRoots({}, tree.root + "/in", O_PATH).status().code() ==
        absl::StatusCode::kPermissionDenied);
}

TEST_CASE("MakeDirBeneath creates once and refuses a symlink in place", "[paths]") {
  Tree tree;
  UniqueFd in(open((tree.root + "/in").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(in);
  CHECK(MakeDirBeneath(in.get(), "new", 0755).ok());
  CHECK(MakeDirBeneath(in.get(), "new", 0755).ok());
  CHECK(MakeDirBeneath(in.get(), "abs-out", 0755).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK_FALSE(fs::exists(tree.root + "/out/new"));
}

}  // namespace sc
