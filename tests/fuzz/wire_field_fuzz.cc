// The daemon takes stdin messages apart itself (common/wire_field.h): whatever
// the client sends, a field it accepts must be exactly what protobuf parses.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/wire_field.h"
#include "mounthelper.pb.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace v1 = ::stoppablecontainer::mounthelper::v1;
  // The first byte cuts the rest in two pieces, as gRPC slices may.
  if (size == 0) return 0;
  size_t cut = std::min<size_t>(data[0], size - 1);
  const uint8_t* bytes = data + 1;
  size_t n = size - 1;
  sc::WirePieces pieces = {{bytes, cut}, {bytes + cut, n - cut}};
  sc::SingleField f;
  if (!sc::ParseSingleBytesField(pieces, &f)) return 0;
  std::string value;
  for (size_t i = f.piece; i < pieces.size(); ++i) {
    size_t from = i == f.piece ? f.offset : 0;
    if (from > pieces[i].second) __builtin_trap();
    value.append(reinterpret_cast<const char*>(pieces[i].first) + from, pieces[i].second - from);
  }
  if (value.size() != f.length) __builtin_trap();
  if (f.number == v1::ExecRequest::kStdinFieldNumber) {
    v1::ExecRequest parsed;
    if (!parsed.ParseFromArray(bytes, static_cast<int>(n)) || !parsed.has_stdin() ||
        parsed.stdin() != value) {
      __builtin_trap();
    }
  }
  return 0;
}
