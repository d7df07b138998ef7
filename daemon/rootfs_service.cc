// Rootfs lifecycle RPCs. Placeholders until the rootfs issue lands: they
// identify and audit the caller, then answer UNIMPLEMENTED.
#include "daemon/service.h"

namespace sc {

grpc::Status MountHelperService::PrepareRootfs(grpc::ServerContext* context,
                                               const v1::PrepareRootfsRequest*, v1::Instance*) {
  return NotYet(context, "PrepareRootfs", "overlay rootfs");
}

grpc::Status MountHelperService::ReleaseRootfs(grpc::ServerContext* context,
                                               const v1::ReleaseRootfsRequest*,
                                               v1::ReleaseRootfsResponse*) {
  return NotYet(context, "ReleaseRootfs", "overlay rootfs");
}

grpc::Status MountHelperService::BindMount(grpc::ServerContext* context,
                                           const v1::BindMountRequest*, v1::BindMountResponse*) {
  return NotYet(context, "BindMount", "bind mounts");
}

grpc::Status MountHelperService::GetInstance(grpc::ServerContext* context,
                                             const v1::GetInstanceRequest*, v1::Instance*) {
  return NotYet(context, "GetInstance", "instance state");
}

grpc::Status MountHelperService::ListInstances(grpc::ServerContext* context,
                                               const v1::ListInstancesRequest*,
                                               v1::ListInstancesResponse*) {
  return NotYet(context, "ListInstances", "instance state");
}

grpc::Status MountHelperService::CheckRootfs(grpc::ServerContext* context,
                                             const v1::CheckRootfsRequest*,
                                             v1::CheckRootfsResponse*) {
  return NotYet(context, "CheckRootfs", "rootfs readiness");
}

}  // namespace sc
