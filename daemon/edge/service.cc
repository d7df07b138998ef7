#include "daemon/edge/service.h"

#include "absl/strings/str_cat.h"
#include "daemon/edge/status_util.h"

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
    absl::Status denied = RefuseUnidentified(peer.status().message());
    audit_->Write({method, nullptr, grpc_peer, denied, {}});
    return denied;
  }
  // A connection is only good while the process that opened it lives: once
  // it has exited, whoever holds the socket now (a process it was passed to,
  // or the pid's next owner) is someone else, and no call is applied for it.
  if ((*peer)->pidfd() >= 0) {
    if (absl::Status alive = (*peer)->CheckAlive(); !alive.ok()) {
      absl::Status denied = RefuseExited(alive.message());
      audit_->Write({method, peer->get(), "", denied, {}});
      return denied;
    }
  }
  return peer;
}

absl::StatusOr<MountHelperService::Call> MountHelperService::Begin(grpc::ServerContext* context,
                                                                   Method method, Details details) {
  Call call;
  call.service_ = this;
  call.method_ = method;
  call.details_ = std::move(details);
  absl::StatusOr<std::shared_ptr<const Peer>> peer = Caller(context, MethodName(method));
  if (!peer.ok()) return peer.status();
  call.peer_ = *std::move(peer);
  if (const std::optional<PodCgroup>& pod = call.peer_->pod()) {
    call.slot_ = calls_per_pod_.TryAcquire(pod->pod_uid);
    if (!call.slot_.held()) {
      absl::Status refused = AsDenial(absl::ResourceExhaustedError(absl::StrCat(
          "this pod has ", calls_per_pod_.max_per_key(),
          " calls in flight, its maximum (--max_calls_per_pod); retry when they end")));
      audit_->Write({MethodName(method), call.peer_.get(), "", refused, {}});
      return refused;
    }
  }
  if (absl::Status admitted = Admit(method, WhoIs(*call.peer_)); !admitted.ok()) {
    call.Finish(admitted);
    return admitted;
  }
  return call;
}

absl::StatusOr<NamedInstance> MountHelperService::Authorize(Call* call, const v1::InstanceRef& ref,
                                                            Ask ask) {
  // Two differences between the RPCs, kept as they were: Prepare alone
  // records the instance directory in its audit record, and answers a failed
  // look at what a pod has mounted with that failure (the others with "has
  // not mounted").
  const bool prepare = ask.method == Method::kPrepareRootfs;
  const Peer& peer = call->peer();
  Who who = WhoIs(peer);
  ask.instance = InstanceRefName(ref.namespace_(), ref.name());
  auto look_up = [&]() -> absl::StatusOr<NamedInstance> {
    absl::StatusOr<NamedInstance> found = LookUpInstance(config_, ref.namespace_(), ref.name());
    if (!found.ok()) return found.status();
    if (prepare) call->details().emplace_back("instance_dir", found->layout.dir);
    ask.instance_dir = found->layout.dir;
    ask.rootfs = found->layout.rootfs;
    return found;
  };
  if (peer.kind() != PeerKind::kPod) {
    if (absl::Status decided = Decide(who, ask); !decided.ok()) return decided;
    return look_up();
  }
  absl::StatusOr<NamedInstance> instance = look_up();
  if (!instance.ok()) return instance.status();
  absl::StatusOr<PodRelation> relation = PodRelationTo(peer, *instance);
  if (!relation.ok() && prepare && !absl::IsNotFound(relation.status())) {
    return relation.status();
  }
  who.relation = relation.ok() ? *relation : PodRelation::kNone;
  if (absl::Status decided = Decide(who, ask); !decided.ok()) return decided;
  return instance;
}

absl::Status MountHelperService::TakeProviderWait(const Peer& peer, KeyedLimiter::Slot* slot) {
  *slot = provider_waits_per_pod_.TryAcquire(peer.pod()->pod_uid);
  if (slot->held()) return absl::OkStatus();
  return AsDenial(absl::ResourceExhaustedError(
      absl::StrCat("this pod has ", provider_waits_per_pod_.max_per_key(),
                   " PrepareRootfs calls waiting for its rootfs container, its maximum "
                   "(--max_provider_waits_per_pod); retry when they end")));
}

grpc::Status MountHelperService::Call::Finish(const absl::Status& status) {
  return service_->Finish(MethodName(method_), *peer_, status, std::move(details_));
}

grpc::Status MountHelperService::Finish(const char* method, const Peer& peer,
                                        const absl::Status& status, Details details) {
  audit_->Write({method, &peer, "", status, std::move(details)});
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
  if (absl::Status admitted = Admit(Method::kWhoAmI, WhoIs(peer)); !admitted.ok()) {
    return Finish("WhoAmI", peer, admitted);
  }
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
