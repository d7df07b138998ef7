#ifndef COMMON_STATUS_NAMES_H_
#define COMMON_STATUS_NAMES_H_

namespace sc {

// The canonical name of a gRPC (or absl) status code, "PERMISSION_DENIED",
// for messages a person reads; "UNKNOWN" outside the 0-16 range.
const char* StatusCodeName(int code);

}  // namespace sc

#endif  // COMMON_STATUS_NAMES_H_
