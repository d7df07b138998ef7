#include "daemon/edge/exec_stream.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

namespace sc {
namespace {

// The bytes of a ByteBuffer, and whether `data` is among its slices as it
// was given (not copied).
std::string Flatten(const grpc::ByteBuffer& buffer, const grpc::Slice& data, bool* shared) {
  std::vector<grpc::Slice> slices;
  REQUIRE(buffer.Dump(&slices).ok());
  std::string out;
  *shared = false;
  for (const grpc::Slice& s : slices) {
    *shared = *shared || (s.begin() == data.begin() && s.size() == data.size());
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return out;
}

}  // namespace

TEST_CASE("OutputMessage is an ExecResponse as protobuf writes it, the data not copied", "[exec]") {
  // Sizes around the one-byte/two-byte/three-byte length boundaries, and the
  // largest output message (1 MiB).
  for (size_t size :
       {size_t{1}, size_t{127}, size_t{128}, size_t{16383}, size_t{16384}, size_t{1} << 20}) {
    std::string payload(size, '\0');
    for (size_t i = 0; i < size; ++i) payload[i] = static_cast<char>(i * 7 + size);
    for (bool is_stderr : {false, true}) {
      INFO("size " << size << (is_stderr ? " stderr" : " stdout"));
      grpc::Slice data(payload.data(), payload.size());
      grpc::ByteBuffer message = OutputMessage(is_stderr, data);
      bool shared = false;
      std::string wire = Flatten(message, data, &shared);
      v1::ExecResponse expected;
      if (is_stderr) {
        expected.set_stderr(payload);
      } else {
        expected.set_stdout(payload);
      }
      CHECK(wire == expected.SerializeAsString());
      v1::ExecResponse parsed;
      REQUIRE(parsed.ParseFromString(wire));
      CHECK(parsed.kind_case() ==
            (is_stderr ? v1::ExecResponse::kStderr : v1::ExecResponse::kStdout));
      CHECK((is_stderr ? parsed.stderr() : parsed.stdout()) == payload);
      // Small slices are inlined by gRPC (copied by design); from a few
      // dozen bytes on they are referenced.
      if (size > 64) CHECK(shared);
    }
  }
}

}  // namespace sc
