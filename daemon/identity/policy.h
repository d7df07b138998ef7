#ifndef DAEMON_IDENTITY_POLICY_H_
#define DAEMON_IDENTITY_POLICY_H_

// Who may ask for what (ARCHITECTURE.md, "Who may ask for what"), decided in
// one place: the table in policy.cc. Every RPC asks it before any work, in two
// steps of the same table:
//   Admit   as soon as the caller is known, before the request is read: may
//           this kind of caller call the method at all (an unknown caller may
//           only ask WhoAmI). A caller refused here holds nothing of the
//           daemon's, not even an Exec stream waiting for its start.
//   Decide  once the request is read and checked and, for a pod, what it has
//           mounted of the instance the request names is known: every row of
//           the method that the request matches, in order; the first refusal
//           is the answer.
// Nothing else in the daemon decides who may do what. What a request names is
// also checked where it is opened, the same for every caller: paths resolved
// under an allow-listed root without symlinks (paths.h), an fd that is the
// daemon's own socket (caller_fds.h), a working directory that leads out of
// the rootfs (launcher.h). Limits (limits.h) bound what a caller may hold, not
// what it may ask.
//
// A refusal is what the caller gets: its gRPC code and the sentence it reads.
// A refusal of what the caller asked is marked AsDenial (audited "deny"); a
// few say instead that the request does not fit this kind of caller (an
// operator has no pod to take layers from) and are audited as errors.

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "daemon/identity/peer.h"

namespace sc {

// The RPCs of the MountHelper service (grpc.health.v1 answers everyone).
enum class Method {
  kWhoAmI,
  kListInstances,
  kGetInstance,
  kCheckRootfs,
  kPrepareRootfs,
  kReleaseRootfs,
  kBindMount,
  kExec,
};
// The RPC's name, as the audit log writes it ("PrepareRootfs").
const char* MethodName(Method method);

// What a pod has mounted of the instance a request names, seen through its
// own root: the provider pod mounts the instance directory (with the upper
// layer), consumer pods only its rootfs.
enum class PodRelation { kNone, kConsumer, kProvider };

// The verified caller (peer.h), as far as the rules look at it.
struct Who {
  PeerKind kind = PeerKind::kUnknown;
  uid_t uid = 0;
  gid_t gid = 0;
  // Its supplementary groups, read only for an Exec that names a user.
  std::vector<gid_t> groups;
  std::string pod_uid;                         // kPod
  PodRelation relation = PodRelation::kNone;   // kPod, for a request naming an instance
  std::string unknown_reason;                  // kUnknown: why
  bool unknown_for_want_of_resources = false;  // kUnknown: the daemon ran short
};

// The verified caller as the rules see it. What it has mounted of an instance
// and its groups are for the handler to add where the request needs them.
Who WhoIs(const Peer& peer);

// What is asked, as far as the rules look at it, and what a refusal names.
struct Ask {
  Ask() = default;
  explicit Ask(Method m) : method(m) {}

  Method method = Method::kWhoAmI;
  // The instance named: "ns/name", its directory and its rootfs on the node.
  std::string instance;
  std::string instance_dir;
  std::string rootfs;
  // PrepareRootfs: the lower layers of the caller's own pod (`provider`).
  bool provider_layers = false;
  // ReleaseRootfs: delete the instance's data too.
  bool delete_data = false;
  // BindMount: the source, and the daemon's --bind_root directories.
  std::string source;
  std::vector<std::string> bind_roots;
  // Exec.
  bool names_instance = false;
  bool rootfs_path = false;   // names a rootfs_path
  bool by_reference = false;  // stdio by reference
  struct RunAs {
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;
  };
  std::optional<RunAs> user;  // ExecStart.user
};

// The first step: OK, or the refusal of a caller of this kind.
absl::Status Admit(Method method, const Who& who);
// The whole table: OK, or the refusal.
absl::Status Decide(const Who& who, const Ask& ask);

// Where a caller may take a bind mount's source from: an operator anywhere
// under the --bind_root directories, a pod only under its own directory in
// each, <bind_root>/<pod UID>, which the kubelet keeps for it (its volumes,
// tokens, etc-hosts).
std::vector<std::string> BindSourceRoots(const Who& who,
                                         const std::vector<std::string>& bind_roots);

// Refusals of a connection with no live, verified caller behind it, whatever
// it asks: the daemon cannot tie the call to a process (`why`), or the process
// that connected has exited (`why` says so).
absl::Status RefuseUnidentified(absl::string_view why);
absl::Status RefuseExited(absl::string_view why);

// The refusal of an unknown caller, `only_who` saying who may make the call
// ("only pods and operators may exec"): PERMISSION_DENIED with the reason the
// caller is unknown, unless the daemon ran out of fds or memory while it
// identified it: RESOURCE_EXHAUSTED (the caller may be entitled; retry).
absl::Status RefuseUnknown(absl::string_view only_who, absl::string_view reason,
                           bool for_want_of_resources);

}  // namespace sc

#endif  // DAEMON_IDENTITY_POLICY_H_
