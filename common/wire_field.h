#ifndef COMMON_WIRE_FIELD_H_
#define COMMON_WIRE_FIELD_H_

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace sc {

// The bulk messages of Exec (stdin, stdout, stderr) are protobuf messages of a
// single bytes field. Daemon and sc-exec take such a message apart where it
// lies, in the pieces (gRPC slices) it arrived in, instead of letting
// protobuf copy the bytes out; everything else goes to protobuf. Standard C++
// only: the static sc-exec links it too.

// A message's bytes, in order: (pointer, length) pieces.
using WirePieces = std::vector<std::pair<const uint8_t*, size_t>>;

struct SingleField {
  int number = 0;     // the field number
  size_t piece = 0;   // where its value starts: piece index...
  size_t offset = 0;  // ...and offset in it (== that piece's size when empty)
  size_t length = 0;  // the value's length; it runs to the end of the message
};

// True when `pieces` hold exactly one field of wire type LEN (a tag, a length,
// that many bytes, nothing after), with a field number in 1..2^29-1 and a
// length that fits 32 bits. False for anything else (other wire types, a
// second field, truncation, overlong varints): protobuf decides then.
bool ParseSingleBytesField(const WirePieces& pieces, SingleField* field);

}  // namespace sc

#endif  // COMMON_WIRE_FIELD_H_
