// /proc/<pid>/cgroup is written by the kernel, but its paths are names that
// pods and runtimes chose: the parser must hold for any bytes.
#include <cstddef>
#include <cstdint>
#include <string>

#include "daemon/identity/cgroup.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string content(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<std::vector<sc::CgroupLine>> lines = sc::ParseCgroupFile(content);
  if (lines.ok()) {
    absl::StatusOr<sc::PodCgroup> pod = sc::PodFromCgroupLines(*lines);
    if (pod.ok()) {
      // A pod UID is 32 hex digits or a 36-character UUID, never more.
      if (pod->pod_uid.size() != 32 && pod->pod_uid.size() != 36) __builtin_trap();
      if (pod->qos_class != "guaranteed" && pod->qos_class != "burstable" &&
          pod->qos_class != "besteffort") {
        __builtin_trap();
      }
    }
  }
  (void)sc::PodFromCgroupPath(content);
  return 0;
}
