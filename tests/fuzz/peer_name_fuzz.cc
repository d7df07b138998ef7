// gRPC's peer string is mapped back to a connection: only "fd:<digits>" of a
// recorded connection may ever resolve.
#include <cstddef>
#include <cstdint>
#include <string>

#include "daemon/identity/peer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static sc::PeerRegistry* registry = new sc::PeerRegistry(1000, 16);
  std::string name(reinterpret_cast<const char*>(data), size);
  // Nothing was recorded, so nothing may be found.
  if (registry->Find(name).ok()) __builtin_trap();
  return 0;
}
