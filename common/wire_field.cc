#include "common/wire_field.h"

namespace sc {
namespace {

constexpr uint32_t kWireTypeLen = 2;

// A cursor over the pieces.
struct Cursor {
  const WirePieces& pieces;
  size_t piece = 0;
  size_t offset = 0;

  // Skips exhausted (and empty) pieces; false at the end.
  bool More() {
    while (piece < pieces.size() && offset == pieces[piece].second) {
      ++piece;
      offset = 0;
    }
    return piece < pieces.size();
  }
  bool ReadVarint32(uint32_t* value) {
    uint32_t result = 0;
    for (int shift = 0; shift < 35; shift += 7) {
      if (!More()) return false;
      uint8_t byte = pieces[piece].first[offset++];
      // The fifth byte holds the top 4 bits only.
      if (shift == 28 && (byte & 0xf0) != 0) return false;
      result |= static_cast<uint32_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) {
        *value = result;
        return true;
      }
    }
    return false;
  }
};

}  // namespace

bool ParseSingleBytesField(const WirePieces& pieces, SingleField* field) {
  Cursor c{pieces};
  uint32_t tag = 0, length = 0;
  if (!c.ReadVarint32(&tag) || (tag & 7) != kWireTypeLen || (tag >> 3) == 0) return false;
  if (!c.ReadVarint32(&length)) return false;
  SingleField out;
  out.number = static_cast<int>(tag >> 3);
  out.piece = c.piece;
  out.offset = c.offset;
  out.length = length;
  size_t rest = 0;
  for (size_t i = c.piece; i < pieces.size(); ++i) {
    rest += pieces[i].second - (i == c.piece ? c.offset : 0);
    if (rest > length) return false;
  }
  if (rest != length) return false;
  *field = out;
  return true;
}

}  // namespace sc
