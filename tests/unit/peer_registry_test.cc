#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "daemon/identity/peer.h"

namespace sc {
namespace {

struct SocketPair {
  SocketPair() {
    int fds[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    server.reset(fds[0]);
    client.reset(fds[1]);
  }
  UniqueFd server, client;
};

}  // namespace

TEST_CASE("connections are renumbered into the cycling range", "[peer]") {
  PeerRegistry registry(900, 4);
  std::vector<UniqueFd> held;
  std::vector<int> numbers;
  for (int i = 0; i < 4; ++i) {
    SocketPair pair;
    absl::StatusOr<UniqueFd> fd = registry.Renumber(std::move(pair.server));
    REQUIRE(fd.ok());
    numbers.push_back(fd->get());
    held.push_back(*std::move(fd));
  }
  CHECK(numbers == std::vector<int>{900, 901, 902, 903});
  // Once 902 is free again, the range wraps and the lowest free number at or
  // above the start is taken.
  held[2].reset();
  SocketPair pair;
  absl::StatusOr<UniqueFd> fd = registry.Renumber(std::move(pair.server));
  REQUIRE(fd.ok());
  CHECK(fd->get() == 902);
}

TEST_CASE("a lookup finds only a live connection it recorded", "[peer]") {
  PeerRegistry registry(1000, 64);
  SocketPair pair;
  absl::StatusOr<UniqueFd> fd = registry.Renumber(std::move(pair.server));
  REQUIRE(fd.ok());
  absl::StatusOr<std::shared_ptr<const Peer>> peer = Peer::FromSocket(fd->get());
  REQUIRE(peer.ok());
  CHECK((*peer)->pid() == getpid());
  registry.Add(fd->get(), *peer);
  std::string name = "fd:" + std::to_string(fd->get());

  absl::StatusOr<std::shared_ptr<const Peer>> found = registry.Find(name);
  REQUIRE(found.ok());
  CHECK(found->get() == peer->get());

  for (const char* bad : {"", "fd:", "fd:x", "fd:-1", "unix:/run/x.sock", "ipv4:127.0.0.1:1",
                          "fd:99999999999999999999", "fd:1000 "}) {
    INFO(bad);
    CHECK(registry.Find(bad).status().code() == absl::StatusCode::kNotFound);
  }

  // The fd is closed and its number reused by another socket: the recorded
  // inode no longer matches, so the old peer is not handed out.
  int number = fd->get();
  fd->reset();
  SocketPair other;
  REQUIRE(dup2(other.server.get(), number) == number);
  UniqueFd reused(number);
  CHECK(registry.Find(name).status().code() == absl::StatusCode::kNotFound);
  CHECK(registry.size() == 1);
  registry.Sweep();
  CHECK(registry.size() == 0);
}

}  // namespace sc
