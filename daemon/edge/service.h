#ifndef DAEMON_EDGE_SERVICE_H_
#define DAEMON_EDGE_SERVICE_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/base/config.h"
#include "daemon/edge/limits.h"
#include "daemon/edge/metrics.h"
#include "daemon/identity/audit.h"
#include "daemon/identity/peer.h"
#include "daemon/identity/policy.h"
#include "daemon/rootfs/rootfs_ops.h"
#include "mounthelper.grpc.pb.h"

namespace sc {

namespace v1 = ::stoppablecontainer::mounthelper::v1;

// The gRPC edge of the daemon. Each RPC reads: the caller (from the socket),
// the policy (policy.h, before any work), the operation (absl::Status inside,
// no gRPC type: rootfs_ops.h, launcher.h), the audit record, the reply.
// RPCs are grouped by concern:
//   service.cc         identity (WhoAmI) and the shared edge helpers
//   rootfs_service.cc  PrepareRootfs, ReleaseRootfs, BindMount, GetInstance,
//                      ListInstances, CheckRootfs
//   exec_service.cc    Exec (a streaming session's relay: stream_session.h)
class MountHelperService final : public v1::MountHelper::Service {
 public:
  MountHelperService(const DaemonConfig& config, PeerRegistry* peers, AuditLog* audit);
  ~MountHelperService() override;

  grpc::Status PrepareRootfs(grpc::ServerContext* context, const v1::PrepareRootfsRequest* request,
                             v1::Instance* response) override;
  grpc::Status ReleaseRootfs(grpc::ServerContext* context, const v1::ReleaseRootfsRequest* request,
                             v1::ReleaseRootfsResponse* response) override;
  grpc::Status BindMount(grpc::ServerContext* context, const v1::BindMountRequest* request,
                         v1::BindMountResponse* response) override;
  grpc::Status GetInstance(grpc::ServerContext* context, const v1::GetInstanceRequest* request,
                           v1::Instance* response) override;
  grpc::Status ListInstances(grpc::ServerContext* context, const v1::ListInstancesRequest* request,
                             v1::ListInstancesResponse* response) override;
  grpc::Status CheckRootfs(grpc::ServerContext* context, const v1::CheckRootfsRequest* request,
                           v1::CheckRootfsResponse* response) override;
  // Exec is served on raw ByteBuffers (daemon/edge/exec_stream.h: output leaves
  // without a copy): the constructor installs ExecRaw as its handler, and the
  // typed Exec of the generated base class is never called.
  grpc::Status ExecRaw(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>* stream);
  grpc::Status WhoAmI(grpc::ServerContext* context, const v1::WhoAmIRequest* request,
                      v1::PeerIdentity* response) override;

  // The exec sessions held now, in total and per pod (for the metrics).
  ExecSessionCounts ExecSessions();

 private:
  using Details = AuditDetails;

  // One call of a rootfs RPC, from its caller to its audit record. It holds
  // the caller's --max_calls_per_pod slot until the handler returns.
  class Call {
   public:
    const Peer& peer() const { return *peer_; }
    Details& details() { return details_; }
    // Audits the outcome (a status marked AsDenial is a refusal) and maps it
    // to the reply. Once per call.
    grpc::Status Finish(const absl::Status& status);

   private:
    friend class MountHelperService;
    MountHelperService* service_ = nullptr;
    Method method_ = Method::kWhoAmI;
    std::shared_ptr<const Peer> peer_;
    Details details_;
    KeyedLimiter::Slot slot_;
  };

  // The peer behind the call's connection. On failure the refusal is already
  // audited and the returned status is what the handler should answer.
  absl::StatusOr<std::shared_ptr<const Peer>> Caller(grpc::ServerContext* context,
                                                     const char* method);
  // The preamble of the rootfs RPCs: the Caller; for a pod, one of its
  // --max_calls_per_pod slots (RESOURCE_EXHAUSTED when none is free); the
  // policy's Admit. A refusal is audited (with `details`) and returned, and
  // the handler answers with it.
  absl::StatusOr<Call> Begin(grpc::ServerContext* context, Method method, Details details);
  // For the RPCs that name an instance (with checked names), the policy's
  // Decide on `ask`, and the instance looked up. A pod's answer depends on
  // what it has mounted of the instance, which is looked up first; an
  // operator's does not, and is given before anything is opened. A refusal or
  // a failure is returned for the handler to Finish with.
  absl::StatusOr<NamedInstance> Authorize(Call* call, const v1::InstanceRef& ref, Ask ask);
  // A pod's PrepareRootfs from its `provider` takes one of the pod's
  // --max_provider_waits_per_pod into `slot`: RESOURCE_EXHAUSTED when none is
  // free.
  absl::Status TakeProviderWait(const Peer& peer, KeyedLimiter::Slot* slot);

  // Audits the outcome of a call and maps it to a gRPC status. A refusal is
  // a status marked AsDenial (decision "deny"), as opposed to a failure of
  // an allowed call (decision "error").
  grpc::Status Finish(const char* method, const Peer& peer, const absl::Status& status,
                      Details details = {});

  // Installs ExecRaw (exec_service.cc).
  void ServeExecRaw();

  // Placeholder answer for RPCs whose issue has not landed yet.
  grpc::Status NotYet(grpc::ServerContext* context, const char* method, const char* what);

  const DaemonConfig& config_;
  PeerRegistry* const peers_;
  AuditLog* const audit_;
  // Serializes every change to instance mounts (prepare, bind, release): the
  // mount table is read, decided on and changed as one step.
  std::mutex rootfs_mu_;
  // Rootfs calls in flight per pod, and provider waits among them.
  KeyedLimiter calls_per_pod_;
  KeyedLimiter provider_waits_per_pod_;
  // Exec sessions running, in total and per pod UID (exec_service.cc).
  std::mutex exec_mu_;
  int execs_total_ = 0;
  std::map<std::string, int> execs_per_pod_;
};

}  // namespace sc

#endif  // DAEMON_EDGE_SERVICE_H_
