// Audit records quote request bytes: the result must always be one valid JSON
// string on one line, whatever the input.
#include <cstddef>
#include <cstdint>
#include <string>

#include "daemon/identity/audit.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  std::string out = sc::JsonQuote(in);
  if (out.size() < 2 || out.front() != '"' || out.back() != '"') __builtin_trap();
  bool escaped = false;
  for (size_t i = 1; i + 1 < out.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(out[i]);
    if (c < 0x20 || c == 0x7f) __builtin_trap();  // no raw control byte, no newline
    if (escaped) {
      escaped = false;
    } else if (c == '\\') {
      escaped = true;
    } else if (c == '"') {
      __builtin_trap();  // an unescaped quote would end the string early
    }
  }
  if (escaped) __builtin_trap();
  return 0;
}
