// Instance names come straight from requests and end up in paths.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/names.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  if (sc::Dns1123LabelError(text).empty()) {
    // Whatever passes can never walk out of a directory.
    if (text.find('/') != std::string::npos || text.find('\0') != std::string::npos ||
        text == "." || text == ".." || text.size() > 63) {
      __builtin_trap();
    }
  }
  std::string ns, name;
  if (sc::ParseInstanceName(text, &ns, &name).empty()) {
    if (!sc::Dns1123LabelError(ns).empty() || !sc::Dns1123LabelError(name).empty()) {
      __builtin_trap();
    }
  }
  return 0;
}
