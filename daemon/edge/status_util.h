#ifndef DAEMON_EDGE_STATUS_UTIL_H_
#define DAEMON_EDGE_STATUS_UTIL_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace sc {

// absl and gRPC share the canonical code numbering, so the mapping at the
// service edge keeps both the code and the message.
inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace sc

#endif  // DAEMON_EDGE_STATUS_UTIL_H_
