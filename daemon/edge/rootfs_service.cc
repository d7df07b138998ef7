// The rootfs RPCs at the service edge: PrepareRootfs, ReleaseRootfs,
// BindMount, GetInstance, ListInstances, CheckRootfs. Each reads: the caller,
// the policy (policy.h), the operation (rootfs_ops.h), the audit record, the
// reply.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/base/fs_util.h"
#include "daemon/base/paths.h"
#include "daemon/edge/service.h"
#include "daemon/edge/status_util.h"
#include "daemon/identity/policy.h"
#include "daemon/rootfs/instances.h"
#include "daemon/rootfs/mountinfo.h"
#include "daemon/rootfs/mounts.h"
#include "daemon/rootfs/rootfs_ops.h"
#include "spdlog/spdlog.h"

namespace sc {
namespace {

std::string RefName(const v1::InstanceRef& ref) {
  return InstanceRefName(ref.namespace_(), ref.name());
}

void FillMount(const MountInfoEntry& e, v1::MountEntry* out) {
  out->set_mount_id(static_cast<uint32_t>(e.id));
  out->set_target(e.target);
  out->set_fstype(e.fstype);
  out->set_source(e.source);
  out->set_options(absl::StrCat(e.vfs_options, ",", e.fs_options));
}

v1::Instance::State ToProto(InstanceStatus status) {
  switch (status) {
    case InstanceStatus::kReleased:
      return v1::Instance::RELEASED;
    case InstanceStatus::kReady:
      return v1::Instance::READY;
    case InstanceStatus::kPartial:
      break;
  }
  return v1::Instance::PARTIAL;
}

void FillInstance(const InstanceLayout& layout, const InstanceView& view, v1::Instance* out) {
  out->mutable_ref()->set_namespace_(layout.ns);
  out->mutable_ref()->set_name(layout.name);
  out->set_state(ToProto(view.status));
  out->set_instance_dir(layout.dir);
  out->set_rootfs(layout.rootfs);
  for (const std::string& dir : view.layers.lowerdirs) out->add_lower_dirs(dir);
  out->set_upper_dir(view.has_overlay ? view.layers.upperdir : layout.upper);
  out->set_work_dir(view.has_overlay ? view.layers.workdir : layout.work);
  for (const MountInfoEntry& e : view.mounts) FillMount(e, out->add_mounts());
}

}  // namespace

grpc::Status MountHelperService::PrepareRootfs(grpc::ServerContext* context,
                                               const v1::PrepareRootfsRequest* request,
                                               v1::Instance* response) {
  const v1::InstanceRef& ref = request->instance();
  absl::StatusOr<Call> call = Begin(context, Method::kPrepareRootfs, {{"instance", RefName(ref)}});
  if (!call.ok()) return ToGrpcStatus(call.status());
  if (absl::Status s = CheckInstanceNames(ref.namespace_(), ref.name()); !s.ok()) {
    return call->Finish(s);
  }
  if (request->lower_case() == v1::PrepareRootfsRequest::LOWER_NOT_SET) {
    return call->Finish(
        absl::InvalidArgumentError("give the lower layers: `layers` or `provider`"));
  }
  Ask ask(Method::kPrepareRootfs);
  ask.provider_layers = request->has_provider();
  absl::StatusOr<NamedInstance> instance = Authorize(&*call, ref, std::move(ask));
  if (!instance.ok()) return call->Finish(instance.status());

  PrepareLayers layers;
  KeyedLimiter::Slot wait_slot;  // held while the provider is waited for
  if (request->has_layers()) {
    layers.paths.assign(request->layers().paths().begin(), request->layers().paths().end());
  } else {
    if (absl::Status s = TakeProviderWait(call->peer(), &wait_slot); !s.ok()) {
      return call->Finish(s);
    }
    layers.provider_pod = &call->peer();
    layers.wait_ms = request->provider().wait_ms();
    layers.cancelled = [context] { return context->IsCancelled(); };
  }
  absl::StatusOr<Prepared> prepared =
      PrepareInstance(config_, &*instance, layers, &rootfs_mu_, &call->details());
  if (!prepared.ok()) return call->Finish(prepared.status());
  FillInstance(prepared->state.layout, prepared->state.view, response);
  response->set_created(prepared->created);
  call->details().emplace_back("created", prepared->created ? "true" : "false");
  return call->Finish(absl::OkStatus());
}

grpc::Status MountHelperService::ReleaseRootfs(grpc::ServerContext* context,
                                               const v1::ReleaseRootfsRequest* request,
                                               v1::ReleaseRootfsResponse* response) {
  const v1::InstanceRef& ref = request->instance();
  absl::StatusOr<Call> call = Begin(
      context, Method::kReleaseRootfs,
      {{"instance", RefName(ref)}, {"delete_data", request->delete_data() ? "true" : "false"}});
  if (!call.ok()) return ToGrpcStatus(call.status());
  if (absl::Status s = CheckInstanceNames(ref.namespace_(), ref.name()); !s.ok()) {
    return call->Finish(s);
  }
  Ask ask(Method::kReleaseRootfs);
  ask.delete_data = request->delete_data();
  absl::StatusOr<NamedInstance> instance = Authorize(&*call, ref, std::move(ask));
  if (!instance.ok()) return call->Finish(instance.status());

  absl::StatusOr<Released> released =
      ReleaseInstance(&*instance, request->delete_data(), &rootfs_mu_, &call->details());
  if (!released.ok()) return call->Finish(released.status());
  response->set_unmounted(released->unmounted);
  response->set_lazily_detached(released->lazily_detached);
  response->set_data_deleted(released->data_deleted);
  return call->Finish(absl::OkStatus());
}

grpc::Status MountHelperService::BindMount(grpc::ServerContext* context,
                                           const v1::BindMountRequest* request,
                                           v1::BindMountResponse* response) {
  const v1::InstanceRef& ref = request->instance();
  absl::StatusOr<Call> call = Begin(context, Method::kBindMount,
                                    {{"instance", RefName(ref)},
                                     {"source", request->source().substr(0, 512)},
                                     {"target", request->target().substr(0, 512)},
                                     {"read_only", request->read_only() ? "true" : "false"}});
  if (!call.ok()) return ToGrpcStatus(call.status());
  if (absl::Status s =
          CheckBindRequest(ref.namespace_(), ref.name(), request->source(), request->target());
      !s.ok()) {
    return call->Finish(s);
  }
  Ask ask(Method::kBindMount);
  ask.source = request->source();
  ask.bind_roots = config_.bind_roots;
  absl::StatusOr<NamedInstance> instance = Authorize(&*call, ref, std::move(ask));
  if (!instance.ok()) return call->Finish(instance.status());

  BindRequest bind;
  bind.source = request->source();
  bind.source_roots = BindSourceRoots(WhoIs(call->peer()), config_.bind_roots);
  bind.target = request->target();
  bind.read_only = request->read_only();
  absl::StatusOr<Bound> bound = BindIntoInstance(*instance, bind, &rootfs_mu_);
  if (!bound.ok()) return call->Finish(bound.status());
  if (bound->mount) FillMount(*bound->mount, response->mutable_mount());
  response->set_created(bound->created);
  call->details().emplace_back("created", bound->created ? "true" : "false");
  return call->Finish(absl::OkStatus());
}

grpc::Status MountHelperService::GetInstance(grpc::ServerContext* context,
                                             const v1::GetInstanceRequest* request,
                                             v1::Instance* response) {
  const v1::InstanceRef& ref = request->instance();
  absl::StatusOr<Call> call = Begin(context, Method::kGetInstance, {{"instance", RefName(ref)}});
  if (!call.ok()) return ToGrpcStatus(call.status());
  if (absl::Status s = CheckInstanceNames(ref.namespace_(), ref.name()); !s.ok()) {
    return call->Finish(s);
  }
  absl::StatusOr<NamedInstance> instance = Authorize(&*call, ref, Ask(Method::kGetInstance));
  if (!instance.ok()) return call->Finish(instance.status());

  absl::StatusOr<InstanceView> view = ViewInstance(*instance);
  if (!view.ok()) return call->Finish(view.status());
  FillInstance(instance->layout, *view, response);
  call->details().emplace_back("state", InstanceStatusName(view->status));
  return call->Finish(absl::OkStatus());
}

grpc::Status MountHelperService::ListInstances(grpc::ServerContext* context,
                                               const v1::ListInstancesRequest*,
                                               v1::ListInstancesResponse* response) {
  absl::StatusOr<Call> call = Begin(context, Method::kListInstances, {});
  if (!call.ok()) return ToGrpcStatus(call.status());
  const Peer& peer = call->peer();
  if (absl::Status s = Decide(WhoIs(peer), Ask(Method::kListInstances)); !s.ok()) {
    return call->Finish(s);
  }
  // A pod's list holds what GetInstance would show it, which depends on what
  // it has mounted of each instance (an operator's answer does not).
  std::function<bool(int)> visible;
  if (peer.kind() == PeerKind::kPod) {
    visible = [&peer](int instance_fd) {
      Who who = WhoIs(peer);
      absl::StatusOr<PodRelation> relation = PodRelationTo(peer, instance_fd);
      who.relation = relation.ok() ? *relation : PodRelation::kNone;
      return Decide(who, Ask(Method::kGetInstance)).ok();
    };
  }
  absl::StatusOr<std::vector<InstanceState>> listed = InstancesOnNode(config_, visible);
  if (!listed.ok()) return call->Finish(listed.status());
  for (const InstanceState& state : *listed) {
    FillInstance(state.layout, state.view, response->add_instances());
  }
  call->details().emplace_back("count", absl::StrCat(response->instances_size()));
  return call->Finish(absl::OkStatus());
}

grpc::Status MountHelperService::CheckRootfs(grpc::ServerContext* context,
                                             const v1::CheckRootfsRequest* request,
                                             v1::CheckRootfsResponse* response) {
  absl::StatusOr<Call> call = Begin(context, Method::kCheckRootfs, {});
  if (!call.ok()) return ToGrpcStatus(call.status());
  const Peer& peer = call->peer();
  if (absl::Status s = Decide(WhoIs(peer), Ask(Method::kCheckRootfs)); !s.ok()) {
    return call->Finish(s);
  }
  // An operator names the instance; a pod asks about the rootfs it sees.
  const v1::InstanceRef& ref = request->instance();
  absl::StatusOr<RootfsCheck> check =
      peer.is_operator() ? CheckNamedRootfs(config_, ref.namespace_(), ref.name(), &call->details())
                         : CheckPodRootfs(config_, peer, request->rootfs_path(), &call->details());
  if (!check.ok()) return call->Finish(check.status());
  response->set_ready(check->ready);
  if (check->found) {
    response->mutable_instance()->set_namespace_(check->ns);
    response->mutable_instance()->set_name(check->name);
  }
  if (!check->reason.empty()) response->set_reason(check->reason);
  return call->Finish(absl::OkStatus());
}

}  // namespace sc
