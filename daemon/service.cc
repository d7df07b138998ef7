#include "daemon/service.h"

#include "absl/strings/str_cat.h"
#include "daemon/status_util.h"

namespace sc {

MountHelperService::MountHelperService(const DaemonConfig& config, PeerRegistry* peers,
                                       AuditLog* audit)
    : config_(config),
      peers_(peers),
      audit_(audit),
      calls_per_pod_(config.max_calls_per_pod),
      provider_waits_per_pod_(config.max_provider_waits_per_pod) {
  ServeExecRaw();
}

MountHelperService::~MountHelperService() = default;

absl::StatusOr<std::shared_ptr<const Peer>> MountHelperService::Caller(grpc::ServerContext* context,
                                                                       const char* method) {
  std::string grpc_peer = context->peer();
  absl::StatusOr<std::shared_ptr<const Peer>> peer = peers_->Find(grpc_peer);
  if (!peer.ok()) {
    absl::Status denied = absl::PermissionDeniedError(
        absl::StrCat("cannot identify the caller: ", peer.status().message(),
                     " (connect through the daemon's Unix socket)"));
    audit_->Write({method, nullptr, grpc_peer, denied, "deny", {}});
    return denied;
  }
  // A connection is only good while the process that opened it lives: once
  // it has exited, whoever holds the socket now (a process it was passed to,
  // or the pid's next owner) is someone else, and no call is applied for it.
  if ((*peer)->pidfd() >= 0) {
    if (absl::Status alive = (*peer)->CheckAlive(); !alive.ok()) {
      absl::Status denied = absl::PermissionDeniedError(absl::StrCat(
          alive.message(), "; its connection is not used for anyone else (reconnect)"));
      audit_->Write({method, peer->get(), "", denied, "deny", {}});
      return denied;
    }
  }
  return peer;
}

absl::StatusOr<std::shared_ptr<const Peer>> MountHelperService::Caller(grpc::ServerContext* context,
                                                                       const char* method,
                                                                       KeyedLimiter::Slot* slot) {
  absl::StatusOr<std::shared_ptr<const Peer>> peer = Caller(context, method);
  if (!peer.ok() || !(*peer)->pod()) return peer;
  *slot = calls_per_pod_.TryAcquire((*peer)->pod()->pod_uid);
  if (!slot->held()) {
    absl::Status refused = absl::ResourceExhaustedError(
        absl::StrCat("this pod has ", calls_per_pod_.max_per_key(),
                     " calls in flight, its maximum (--max_calls_per_pod); retry when they end"));
    audit_->Write({method, peer->get(), "", refused, "deny", {}});
    return refused;
  }
  return peer;
}

grpc::Status MountHelperService::Finish(const char* method, const Peer& peer,
                                        const absl::Status& status, Details details, bool refused) {
  audit_->Write({method, &peer, "", status, refused ? "deny" : "", std::move(details)});
  return ToGrpcStatus(status);
}

grpc::Status MountHelperService::NotYet(grpc::ServerContext* context, const char* method,
                                        const char* what) {
  absl::StatusOr<std::shared_ptr<const Peer>> peer = Caller(context, method);
  if (!peer.ok()) return ToGrpcStatus(peer.status());
  return Finish(method, **peer,
                absl::UnimplementedError(
                    absl::StrCat(method, " (", what, ") is not implemented in this version")));
}

grpc::Status MountHelperService::WhoAmI(grpc::ServerContext* context, const v1::WhoAmIRequest*,
                                        v1::PeerIdentity* response) {
  absl::StatusOr<std::shared_ptr<const Peer>> caller = Caller(context, "WhoAmI");
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  const Peer& peer = **caller;
  switch (peer.kind()) {
    case PeerKind::kOperator:
      response->set_kind(v1::PeerIdentity::OPERATOR);
      break;
    case PeerKind::kPod:
      response->set_kind(v1::PeerIdentity::POD);
      break;
    case PeerKind::kUnknown:
      response->set_kind(v1::PeerIdentity::UNKNOWN);
      break;
  }
  response->set_pid(peer.pid());
  response->set_uid(peer.uid());
  response->set_gid(peer.gid());
  response->set_pinned_by_socket(peer.pinned_by_socket());
  if (peer.pod()) {
    response->set_pod_uid(peer.pod()->pod_uid);
    response->set_container_id(peer.pod()->container_id);
    response->set_qos_class(peer.pod()->qos_class);
    response->set_cgroup_driver(CgroupDriverName(peer.pod()->driver));
    response->set_cgroup_path(peer.pod()->path);
  }
  Details details;
  if (!peer.unknown_reason().empty()) details.emplace_back("reason", peer.unknown_reason());
  return Finish("WhoAmI", peer, absl::OkStatus(), std::move(details));
}

ExecSessionCounts MountHelperService::ExecSessions() {
  std::lock_guard<std::mutex> lock(exec_mu_);
  return {execs_total_, execs_per_pod_};
}

}  // namespace sc
