// The Exec RPC. Placeholder until the exec issue lands.
#include "daemon/service.h"

namespace sc {

grpc::Status MountHelperService::Exec(
    grpc::ServerContext* context, grpc::ServerReaderWriter<v1::ExecResponse, v1::ExecRequest>*) {
  return NotYet(context, "Exec", "chroot exec");
}

}  // namespace sc
