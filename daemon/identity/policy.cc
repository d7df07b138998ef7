#include "daemon/identity/policy.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "daemon/base/paths.h"
#include "daemon/identity/audit.h"

namespace sc {
namespace {

// What a caller gets: allowed, or a refusal (kSentences below).
enum Verdict {
  kAllow,
  kUnknown,         // only operators and pods may ...
  kNotMounted,      // the pod has not mounted the instance's directory or rootfs
  kNotMountedHint,  // the same, for a prepare: mount the directory first
  kNotMountedIt,    // the same, for an inspection
  kProviderPreps,   // a consumer may not prepare: its provider does
  kProviderRels,    // a consumer may not release: its provider does
  kOpsDelete,       // only operators delete an instance's data
  kOwnFilesOnly,    // a pod binds only from its own directory under a bind root
  kHasNoPod,        // an operator has no pod to take layers from
  kOwnRootfsOnly,   // a pod execs only into the rootfs mounted into it
  kNameInstance,    // an operator names the instance to exec into
  kNoRootfsPath,    // rootfs_path is a pod's
  kOnlyAsItself,    // a caller that is not root runs only as itself
  kStreamsOnly,     // stdio by reference is a pod's
};

// What a request asks, as the rows of one method tell requests apart.
enum class Asks {
  kAnything,
  kExplicitLayers,   // PrepareRootfs with `layers`
  kProviderLayers,   // PrepareRootfs with `provider`: the caller's pod's layers
  kKeepingData,      // ReleaseRootfs
  kDeletingData,     // ReleaseRootfs with delete_data
  kSourceOfItsOwn,   // BindMount from where the caller may (BindSourceRoots)
  kSourceElsewhere,  // BindMount from anywhere else
  kNamedInstance,    // Exec into an instance by name
  kItsRootfs,        // Exec into the rootfs the caller sees
  kRootfsPath,       // Exec naming where the caller sees its rootfs
  kAnotherUser,      // Exec as a uid, gid or group that a caller other than root has not
  kByReference,      // Exec with stdio by reference
};

struct Rule {
  Method method;
  Asks asks;
  Verdict unknown, op, pod_none, pod_consumer, pod_provider;
};

using M = Method;
using A = Asks;

// Who may ask for what. A request matches one or more rows of its method, in
// order, and the first refusal is the answer. The pod columns say what the
// calling pod has mounted of the instance the request names: nothing, only
// its rootfs (a consumer), its directory (the provider); where no instance is
// named they do not differ.
// clang-format off
constexpr Rule kRules[] = {
//  method            what is asked        unknown   operator       pod: nothing     pod: rootfs     pod: directory
  {M::kWhoAmI,        A::kAnything,        kAllow,   kAllow,        kAllow,          kAllow,         kAllow},
  {M::kListInstances, A::kAnything,        kUnknown, kAllow,        kAllow,          kAllow,         kAllow},  // (1)
  {M::kGetInstance,   A::kAnything,        kUnknown, kAllow,        kNotMountedIt,   kAllow,         kAllow},
  {M::kCheckRootfs,   A::kAnything,        kUnknown, kAllow,        kAllow,          kAllow,         kAllow},  // (2)
  {M::kPrepareRootfs, A::kExplicitLayers,  kUnknown, kAllow,        kNotMountedHint, kProviderPreps, kAllow},  // (3)
  {M::kPrepareRootfs, A::kProviderLayers,  kUnknown, kHasNoPod,     kNotMountedHint, kProviderPreps, kAllow},
  {M::kReleaseRootfs, A::kDeletingData,    kUnknown, kAllow,        kOpsDelete,      kOpsDelete,     kOpsDelete},
  {M::kReleaseRootfs, A::kKeepingData,     kUnknown, kAllow,        kNotMounted,     kProviderRels,  kAllow},
  {M::kBindMount,     A::kSourceOfItsOwn,  kUnknown, kAllow,        kNotMounted,     kAllow,         kAllow},
  {M::kBindMount,     A::kSourceElsewhere, kUnknown, kAllow,        kNotMounted,     kOwnFilesOnly,  kOwnFilesOnly},  // (4)
  {M::kExec,          A::kNamedInstance,   kUnknown, kAllow,        kOwnRootfsOnly,  kOwnRootfsOnly, kOwnRootfsOnly},
  {M::kExec,          A::kItsRootfs,       kUnknown, kNameInstance, kAllow,          kAllow,         kAllow},  // (5)
  {M::kExec,          A::kRootfsPath,      kUnknown, kNoRootfsPath, kAllow,          kAllow,         kAllow},
  {M::kExec,          A::kAnotherUser,     kUnknown, kAllow,        kOnlyAsItself,   kOnlyAsItself,  kOnlyAsItself},  // (6)
  {M::kExec,          A::kByReference,     kUnknown, kStreamsOnly,  kAllow,          kAllow,         kAllow},
};
// clang-format on
// (1) A pod's list holds the instances GetInstance would show it.
// (2) An operator names the instance; a pod asks about the rootfs it sees in
//     its own mount namespace, so it learns only of what it has mounted.
// (3) Only an operator's request can name an instance whose directory does
//     not exist yet (a pod cannot have mounted it): only operators make the
//     daemon create one.
// (4) With no --bind_root every source is "of its own" here, and the
//     operation refuses every bind mount as disabled.
// (5) A pod's exec runs in its own namespaces, in the rootfs it sees; an
//     operator's in fresh namespaces, in the instance it names.
// (6) Operators are uid 0 and never ask this; neither does a pod's root.

struct Sentence {
  Verdict verdict;
  absl::StatusCode code;
  bool denial;  // audited "deny"; else the request does not fit the caller
  const char* text;
};

constexpr absl::StatusCode kDenied = absl::StatusCode::kPermissionDenied;
constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

// What the caller reads. {pod} is its pod UID, {uid} its uid; {instance}
// ("ns/name"), {dir}, {rootfs} and {source} are from the request; {own roots}
// is BindSourceRoots.
constexpr Sentence kSentences[] = {
    {kNotMounted, kDenied, true, "pod {pod} has not mounted {dir} or {rootfs}"},
    {kNotMountedHint, kDenied, true,
     "pod {pod} has not mounted {dir} or {rootfs} (mount the instance directory into the pod "
     "first)"},
    {kNotMountedIt, kDenied, true, "pod {pod} has not mounted instance {instance}"},
    {kProviderPreps, kDenied, true,
     "pod {pod} has mounted only the rootfs of instance {instance}: preparing it is for its "
     "provider pod, which mounts {dir}"},
    {kProviderRels, kDenied, true,
     "pod {pod} has mounted only the rootfs of instance {instance}: releasing it is for its "
     "provider pod, which mounts {dir}"},
    {kOpsDelete, kDenied, true,
     "pod {pod} may not delete instance {instance}'s data: deleting is for operators only "
     "(release without delete_data keeps the upper layer)"},
    {kOwnFilesOnly, kDenied, true,
     "source: pod {pod} may bind only its own files: \"{source}\" is not inside {own roots}"},
    {kHasNoPod, kInvalid, false,
     "`provider` takes the layers from the caller's own pod; an operator has no pod and must "
     "give explicit `layers`"},
    {kOwnRootfsOnly, kDenied, true,
     "a pod execs only into the rootfs mounted into it: leave instance empty"},
    {kNameInstance, kInvalid, true, "operators must name the instance to exec into"},
    {kNoRootfsPath, kInvalid, false, "rootfs_path is for pod callers; operators name an instance"},
    {kOnlyAsItself, kDenied, true,
     "a caller with uid {uid} may only run as itself (its own uid, gid and groups)"},
    {kStreamsOnly, kInvalid, false,
     "stdio by reference is for pod callers: an operator's session streams (it lives in the "
     "daemon's pod and ends with it)"},
};

struct MethodInfo {
  Method method;
  const char* name;
  const char* only_who;  // the start of an unknown caller's refusal
};

constexpr MethodInfo kMethods[] = {
    {M::kWhoAmI, "WhoAmI", ""},
    {M::kListInstances, "ListInstances", "only operators and pods may list instances"},
    {M::kGetInstance, "GetInstance", "only operators and pods may inspect instances"},
    {M::kCheckRootfs, "CheckRootfs", "only operators and pods may check a rootfs"},
    {M::kPrepareRootfs, "PrepareRootfs", "only operators and pods may prepare a rootfs"},
    {M::kReleaseRootfs, "ReleaseRootfs", "only operators and pods may release a rootfs"},
    {M::kBindMount, "BindMount", "only operators and pods may bind-mount"},
    {M::kExec, "Exec", "only pods and operators may exec"},
};

const MethodInfo& InfoOf(Method method) {
  for (const MethodInfo& info : kMethods) {
    if (info.method == method) return info;
  }
  return kMethods[0];  // every Method has a row: the unit test checks it
}

bool SourceElsewhere(const Who& who, const Ask& ask) {
  if (ask.bind_roots.empty()) return false;  // (4)
  for (const std::string& root : BindSourceRoots(who, ask.bind_roots)) {
    if (PathLexicallyUnder(ask.source, root)) return false;
  }
  return true;
}

bool AnotherUser(const Who& who, const Ask& ask) {
  if (!ask.user || who.uid == 0) return false;
  if (ask.user->uid != who.uid || ask.user->gid != who.gid) return true;
  for (gid_t g : ask.user->groups) {
    if (g != who.gid && std::find(who.groups.begin(), who.groups.end(), g) == who.groups.end()) {
      return true;
    }
  }
  return false;
}

bool Matches(Asks asks, const Who& who, const Ask& ask) {
  switch (asks) {
    case A::kAnything:
      return true;
    case A::kExplicitLayers:
      return !ask.provider_layers;
    case A::kProviderLayers:
      return ask.provider_layers;
    case A::kKeepingData:
      return !ask.delete_data;
    case A::kDeletingData:
      return ask.delete_data;
    case A::kSourceOfItsOwn:
      return !SourceElsewhere(who, ask);
    case A::kSourceElsewhere:
      return SourceElsewhere(who, ask);
    case A::kNamedInstance:
      return ask.names_instance;
    case A::kItsRootfs:
      return !ask.names_instance;
    case A::kRootfsPath:
      return ask.rootfs_path;
    case A::kAnotherUser:
      return AnotherUser(who, ask);
    case A::kByReference:
      return ask.by_reference;
  }
  return false;
}

Verdict CellFor(const Rule& rule, const Who& who) {
  switch (who.kind) {
    case PeerKind::kOperator:
      return rule.op;
    case PeerKind::kPod:
      switch (who.relation) {
        case PodRelation::kNone:
          return rule.pod_none;
        case PodRelation::kConsumer:
          return rule.pod_consumer;
        case PodRelation::kProvider:
          return rule.pod_provider;
      }
      return rule.pod_none;
    case PeerKind::kUnknown:
      break;
  }
  return rule.unknown;
}

absl::Status Refusal(Verdict verdict, const Who& who, const Ask& ask) {
  if (verdict == kUnknown) {
    return RefuseUnknown(InfoOf(ask.method).only_who, who.unknown_reason,
                         who.unknown_for_want_of_resources);
  }
  for (const Sentence& s : kSentences) {
    if (s.verdict != verdict) continue;
    std::string text = absl::StrReplaceAll(
        s.text, {{"{pod}", who.pod_uid},
                 {"{uid}", absl::StrCat(who.uid)},
                 {"{instance}", ask.instance},
                 {"{dir}", ask.instance_dir},
                 {"{rootfs}", ask.rootfs},
                 {"{source}", absl::string_view(ask.source).substr(0, 256)},
                 {"{own roots}", absl::StrJoin(BindSourceRoots(who, ask.bind_roots), " or ")}});
    absl::Status status(s.code, text);
    return s.denial ? AsDenial(status) : status;
  }
  // Fail closed: a verdict without a sentence is still a refusal.
  return AsDenial(absl::PermissionDeniedError(
      absl::StrCat(InfoOf(ask.method).name, ": refused (verdict ", verdict, " has no sentence)")));
}

}  // namespace

const char* MethodName(Method method) { return InfoOf(method).name; }

Who WhoIs(const Peer& peer) {
  Who who;
  who.kind = peer.kind();
  who.uid = peer.uid();
  who.gid = peer.gid();
  if (peer.pod()) who.pod_uid = peer.pod()->pod_uid;
  who.unknown_reason = peer.unknown_reason();
  who.unknown_for_want_of_resources = peer.unknown_for_want_of_resources();
  return who;
}

absl::Status Admit(Method method, const Who& who) {
  if (who.kind != PeerKind::kUnknown) return absl::OkStatus();
  Ask ask(method);
  for (const Rule& rule : kRules) {
    if (rule.method == method) {
      return rule.unknown == kAllow ? absl::OkStatus() : Refusal(rule.unknown, who, ask);
    }
  }
  return Refusal(kUnknown, who, ask);
}

absl::Status Decide(const Who& who, const Ask& ask) {
  bool matched = false;
  for (const Rule& rule : kRules) {
    if (rule.method != ask.method || !Matches(rule.asks, who, ask)) continue;
    matched = true;
    if (Verdict verdict = CellFor(rule, who); verdict != kAllow) return Refusal(verdict, who, ask);
  }
  if (!matched) {
    // Fail closed: a request no row speaks of is not allowed.
    return AsDenial(absl::PermissionDeniedError(
        absl::StrCat(MethodName(ask.method), ": no rule allows this request")));
  }
  return absl::OkStatus();
}

std::vector<std::string> BindSourceRoots(const Who& who,
                                         const std::vector<std::string>& bind_roots) {
  switch (who.kind) {
    case PeerKind::kOperator:
      return bind_roots;
    case PeerKind::kPod: {
      std::vector<std::string> own;
      own.reserve(bind_roots.size());
      for (const std::string& root : bind_roots) {
        own.push_back(absl::StrCat(absl::StripSuffix(root, "/"), "/", who.pod_uid));
      }
      return own;
    }
    case PeerKind::kUnknown:
      break;
  }
  return {};
}

absl::Status RefuseUnidentified(absl::string_view why) {
  return AsDenial(absl::PermissionDeniedError(absl::StrCat(
      "cannot identify the caller: ", why, " (connect through the daemon's Unix socket)")));
}

absl::Status RefuseExited(absl::string_view why) {
  return AsDenial(absl::PermissionDeniedError(
      absl::StrCat(why, "; its connection is not used for anyone else (reconnect)")));
}

absl::Status RefuseUnknown(absl::string_view only_who, absl::string_view reason,
                           bool for_want_of_resources) {
  if (for_want_of_resources) {
    return AsDenial(absl::ResourceExhaustedError(absl::StrCat(
        "the daemon ran short while it identified the caller (", reason,
        "): retry later; if this persists, the daemon's fd or memory limit is too low for the "
        "node's load")));
  }
  return AsDenial(absl::PermissionDeniedError(absl::StrCat(only_who, ": ", reason)));
}

}  // namespace sc
