// Who may ask for what (daemon/identity/policy.h), cell by cell: every row of the
// policy's table (a method and what is asked) for every caller column (an
// unknown caller, an operator, a pod that has mounted nothing of the
// instance, only its rootfs, its directory), with the code, whether it is
// audited as a denial, and the exact sentence the caller reads. The rules are
// written out again here, independently of the table they check.
#include "daemon/identity/policy.h"

#include <catch2/catch.hpp>
#include <functional>
#include <string>
#include <vector>

#include "daemon/identity/audit.h"

namespace sc {
namespace {

const std::string kPod = "8d0f0c52-1111-4222-8333-444455556666";
const std::string kInstance = "team-a/web";
const std::string kDir = "/var/lib/stoppablecontainer/team-a/web";
const std::string kRootfs = kDir + "/rootfs";
const std::string kWhyUnknown = "pid 42 is in no pod and not in the daemon's namespaces";
const std::vector<std::string> kBindRoots = {"/var/lib/kubelet/pods/", "/srv/binds"};
const std::string kOwnSource = "/var/lib/kubelet/pods/" + kPod + "/volumes/cache";
const std::string kOthersSource = "/var/lib/kubelet/pods/0b5c3a4e-victim/volumes/secret";

// The callers of the columns. Pods run as uid 1000, operators as root.
enum Column { kUnknownCaller, kOperator, kPodNone, kPodConsumer, kPodProvider };
const char* const kColumnNames[] = {"unknown caller", "operator", "pod that has mounted nothing",
                                    "pod that has mounted the rootfs (consumer)",
                                    "pod that has mounted the directory (provider)"};

Who CallerOf(Column column) {
  Who who;
  switch (column) {
    case kUnknownCaller:
      who.kind = PeerKind::kUnknown;
      who.uid = 1000;
      who.gid = 1000;
      who.unknown_reason = kWhyUnknown;
      break;
    case kOperator:
      who.kind = PeerKind::kOperator;
      break;
    case kPodNone:
    case kPodConsumer:
    case kPodProvider:
      who.kind = PeerKind::kPod;
      who.uid = 1000;
      who.gid = 1000;
      who.groups = {1000, 2000};
      who.pod_uid = kPod;
      who.relation = column == kPodNone       ? PodRelation::kNone
                     : column == kPodConsumer ? PodRelation::kConsumer
                                              : PodRelation::kProvider;
      break;
  }
  return who;
}

// What a cell says.
struct Expect {
  absl::StatusCode code = absl::StatusCode::kOk;
  bool denial = false;  // audited "deny"
  std::string text;
};

const Expect kAllowed;

Expect Denied(const std::string& text) { return {absl::StatusCode::kPermissionDenied, true, text}; }
Expect Invalid(const std::string& text, bool denial) {
  return {absl::StatusCode::kInvalidArgument, denial, text};
}
Expect Unknown(const std::string& only_who) { return Denied(only_who + ": " + kWhyUnknown); }

const Expect kNotMounted = Denied("pod " + kPod + " has not mounted " + kDir + " or " + kRootfs);

// One row: the request (it may differ by caller: an operator's exec names an
// instance, a pod's does not, so that only the row's own question is asked)
// and what each column gets.
struct Row {
  std::string what;
  std::function<Ask(Column)> ask;
  Expect cells[5];
};

Ask Named(Method method) {
  Ask ask(method);
  ask.instance = kInstance;
  ask.instance_dir = kDir;
  ask.rootfs = kRootfs;
  return ask;
}

// A request naming the instance, with what `tweak` asks.
std::function<Ask(Column)> Asking(Method method, const std::function<void(Ask&)>& tweak = {}) {
  return [method, tweak](Column) {
    Ask ask = Named(method);
    if (tweak) tweak(ask);
    return ask;
  };
}

// An exec request that is right for the caller but for what `tweak` asks:
// an operator's names the instance, a pod's does not.
std::function<Ask(Column)> ExecAsk(const std::function<void(Ask&)>& tweak) {
  return [tweak](Column column) {
    Ask ask(Method::kExec);
    ask.names_instance = column == kOperator;
    if (ask.names_instance) ask.instance = kInstance;
    if (tweak) tweak(ask);
    return ask;
  };
}

const Expect kNotMountedHint =
    Denied("pod " + kPod + " has not mounted " + kDir + " or " + kRootfs +
           " (mount the instance directory into the pod first)");
const Expect kConsumerPrepares =
    Denied("pod " + kPod + " has mounted only the rootfs of instance " + kInstance +
           ": preparing it is for its provider pod, which mounts " + kDir);
const Expect kMayNotDelete =
    Denied("pod " + kPod + " may not delete instance " + kInstance +
           "'s data: deleting is for operators only (release without delete_data keeps the "
           "upper layer)");
const Expect kNotOwnFiles =
    Denied("source: pod " + kPod + " may bind only its own files: \"" + kOthersSource +
           "\" is not inside /var/lib/kubelet/pods/" + kPod + " or /srv/binds/" + kPod);
const Expect kExecsOwnRootfs =
    Denied("a pod execs only into the rootfs mounted into it: leave instance empty");
const Expect kOnlyAsItself =
    Denied("a caller with uid 1000 may only run as itself (its own uid, gid and groups)");

std::vector<Row> Table() {
  const auto bind_from = [](const std::string& source) {
    return [source](Ask& ask) {
      ask.source = source;
      ask.bind_roots = kBindRoots;
    };
  };
  return {
      {"WhoAmI", Asking(Method::kWhoAmI), {kAllowed, kAllowed, kAllowed, kAllowed, kAllowed}},
      {"ListInstances",
       Asking(Method::kListInstances),
       {Unknown("only operators and pods may list instances"), kAllowed, kAllowed, kAllowed,
        kAllowed}},
      {"GetInstance",
       Asking(Method::kGetInstance),
       {Unknown("only operators and pods may inspect instances"), kAllowed,
        Denied("pod " + kPod + " has not mounted instance " + kInstance), kAllowed, kAllowed}},
      {"CheckRootfs",
       Asking(Method::kCheckRootfs),
       {Unknown("only operators and pods may check a rootfs"), kAllowed, kAllowed, kAllowed,
        kAllowed}},
      {"PrepareRootfs with explicit layers",
       Asking(Method::kPrepareRootfs),
       {Unknown("only operators and pods may prepare a rootfs"), kAllowed, kNotMountedHint,
        kConsumerPrepares, kAllowed}},
      {"PrepareRootfs with its pod's layers (provider)",
       Asking(Method::kPrepareRootfs, [](Ask& ask) { ask.provider_layers = true; }),
       {Unknown("only operators and pods may prepare a rootfs"),
        Invalid("`provider` takes the layers from the caller's own pod; an operator has no pod "
                "and must give explicit `layers`",
                false),
        kNotMountedHint, kConsumerPrepares, kAllowed}},
      {"ReleaseRootfs keeping the data",
       Asking(Method::kReleaseRootfs),
       {Unknown("only operators and pods may release a rootfs"), kAllowed, kNotMounted,
        Denied("pod " + kPod + " has mounted only the rootfs of instance " + kInstance +
               ": releasing it is for its provider pod, which mounts " + kDir),
        kAllowed}},
      {"ReleaseRootfs deleting the data",
       Asking(Method::kReleaseRootfs, [](Ask& ask) { ask.delete_data = true; }),
       {Unknown("only operators and pods may release a rootfs"), kAllowed, kMayNotDelete,
        kMayNotDelete, kMayNotDelete}},
      {"BindMount from the caller's own pod directory",
       Asking(Method::kBindMount, bind_from(kOwnSource)),
       {Unknown("only operators and pods may bind-mount"), kAllowed, kNotMounted, kAllowed,
        kAllowed}},
      {"BindMount from another pod's directory",
       Asking(Method::kBindMount, bind_from(kOthersSource)),
       {Unknown("only operators and pods may bind-mount"), kAllowed, kNotMounted, kNotOwnFiles,
        kNotOwnFiles}},
      {"Exec into an instance by name",
       Asking(Method::kExec, [](Ask& ask) { ask.names_instance = true; }),
       {Unknown("only pods and operators may exec"), kAllowed, kExecsOwnRootfs, kExecsOwnRootfs,
        kExecsOwnRootfs}},
      {"Exec into the rootfs the caller sees",
       [](Column) { return Ask(Method::kExec); },
       {Unknown("only pods and operators may exec"),
        Invalid("operators must name the instance to exec into", true), kAllowed, kAllowed,
        kAllowed}},
      {"Exec with a rootfs_path",
       ExecAsk([](Ask& ask) { ask.rootfs_path = true; }),
       {Unknown("only pods and operators may exec"),
        Invalid("rootfs_path is for pod callers; operators name an instance", false), kAllowed,
        kAllowed, kAllowed}},
      {"Exec as root (another user for a caller that is not root)",
       ExecAsk([](Ask& ask) {
         ask.user = Ask::RunAs{0, 0, {}};
       }),
       {Unknown("only pods and operators may exec"), kAllowed, kOnlyAsItself, kOnlyAsItself,
        kOnlyAsItself}},
      {"Exec with stdio by reference",
       ExecAsk([](Ask& ask) { ask.by_reference = true; }),
       {Unknown("only pods and operators may exec"),
        Invalid("stdio by reference is for pod callers: an operator's session streams (it lives "
                "in the daemon's pod and ends with it)",
                false),
        kAllowed, kAllowed, kAllowed}},
  };
}

void CheckAnswer(const absl::Status& got, const Expect& want) {
  INFO("got " << got.ToString() << (IsDenial(got) ? " (denial)" : ""));
  CHECK(got.code() == want.code);
  CHECK(std::string(got.message()) == want.text);
  CHECK(IsDenial(got) == want.denial);
}

}  // namespace

TEST_CASE("policy: every cell of the table, with its code and sentence", "[policy]") {
  const std::vector<Row> table = Table();
  int cells = 0;
  for (const Row& row : table) {
    for (int c = kUnknownCaller; c <= kPodProvider; ++c) {
      Column column = static_cast<Column>(c);
      INFO(row.what << ", asked by " << kColumnNames[c]);
      CheckAnswer(Decide(CallerOf(column), row.ask(column)), row.cells[c]);
      ++cells;
    }
  }
  // 15 rows of 5 callers: the table's size, so that a row added there and
  // not here shows (the methods are checked below).
  CHECK(cells == 75);
}

TEST_CASE("policy: Admit refuses an unknown caller everything but WhoAmI, before the request",
          "[policy]") {
  const std::vector<std::pair<Method, std::string>> methods = {
      {Method::kWhoAmI, ""},
      {Method::kListInstances, "only operators and pods may list instances"},
      {Method::kGetInstance, "only operators and pods may inspect instances"},
      {Method::kCheckRootfs, "only operators and pods may check a rootfs"},
      {Method::kPrepareRootfs, "only operators and pods may prepare a rootfs"},
      {Method::kReleaseRootfs, "only operators and pods may release a rootfs"},
      {Method::kBindMount, "only operators and pods may bind-mount"},
      {Method::kExec, "only pods and operators may exec"},
  };
  for (const auto& [method, only_who] : methods) {
    INFO(MethodName(method));
    CheckAnswer(Admit(method, CallerOf(kUnknownCaller)),
                only_who.empty() ? kAllowed : Unknown(only_who));
    // Operators and pods, whatever they have mounted: the rest is Decide's.
    for (Column c : {kOperator, kPodNone, kPodConsumer, kPodProvider}) {
      CHECK(Admit(method, CallerOf(c)).ok());
    }
  }
  CHECK(std::string(MethodName(Method::kPrepareRootfs)) == "PrepareRootfs");
  CHECK(std::string(MethodName(Method::kExec)) == "Exec");
  CHECK(std::string(MethodName(Method::kWhoAmI)) == "WhoAmI");
}

TEST_CASE("policy: an unknown caller identified while the daemon ran short is told to retry",
          "[policy]") {
  Who who = CallerOf(kUnknownCaller);
  who.unknown_for_want_of_resources = true;
  who.unknown_reason = "open cgroup: Too many open files (EMFILE)";
  const Expect retry = {absl::StatusCode::kResourceExhausted, true,
                        "the daemon ran short while it identified the caller (open cgroup: Too "
                        "many open files (EMFILE)): retry later; if this persists, the daemon's "
                        "fd or memory limit is too low for the node's load"};
  CheckAnswer(Admit(Method::kExec, who), retry);
  CheckAnswer(Decide(who, Named(Method::kPrepareRootfs)), retry);
  CheckAnswer(RefuseUnknown("only pods and operators may exec", "no pod", false),
              Denied("only pods and operators may exec: no pod"));
}

TEST_CASE("policy: a connection with no live, verified caller is refused", "[policy]") {
  CheckAnswer(RefuseUnidentified("no connection fd:12"),
              Denied("cannot identify the caller: no connection fd:12 (connect through the "
                     "daemon's Unix socket)"));
  CheckAnswer(RefuseExited("the caller (pid 42) has exited"),
              Denied("the caller (pid 42) has exited; its connection is not used for anyone else "
                     "(reconnect)"));
}

TEST_CASE("policy: the first refusal among the rows a request matches is the answer", "[policy]") {
  // A pod naming an instance and asking to run as root: the instance first.
  Ask exec(Method::kExec);
  exec.names_instance = true;
  exec.user = Ask::RunAs{0, 0, {}};
  CheckAnswer(Decide(CallerOf(kPodProvider), exec), kExecsOwnRootfs);
  // An operator naming no instance, with a rootfs_path and stdio by reference.
  Ask op(Method::kExec);
  op.rootfs_path = true;
  op.by_reference = true;
  CheckAnswer(Decide(CallerOf(kOperator), op),
              Invalid("operators must name the instance to exec into", true));
  op.names_instance = true;
  CheckAnswer(Decide(CallerOf(kOperator), op),
              Invalid("rootfs_path is for pod callers; operators name an instance", false));
  // A pod that has mounted nothing and asks to delete: deleting is refused
  // first, whatever it has mounted.
  Ask release = Named(Method::kReleaseRootfs);
  release.delete_data = true;
  CheckAnswer(Decide(CallerOf(kPodNone), release), kMayNotDelete);
  // A pod that has mounted nothing binds another pod's files: it has not
  // mounted the instance, which is said first.
  Ask bind = Named(Method::kBindMount);
  bind.source = kOthersSource;
  bind.bind_roots = kBindRoots;
  CheckAnswer(Decide(CallerOf(kPodNone), bind), kNotMounted);
}

TEST_CASE("policy: a caller runs as itself unless it is root", "[policy]") {
  auto exec_as = [](uid_t uid, gid_t gid, std::vector<gid_t> groups) {
    Ask ask(Method::kExec);
    ask.user = Ask::RunAs{uid, gid, std::move(groups)};
    return ask;
  };
  const Who pod = CallerOf(kPodConsumer);  // uid 1000, gid 1000, groups 1000 and 2000
  CheckAnswer(Decide(pod, exec_as(1000, 1000, {})), kAllowed);
  CheckAnswer(Decide(pod, exec_as(1000, 1000, {1000, 2000})), kAllowed);
  CheckAnswer(Decide(pod, exec_as(1000, 1000, {2000, 0})), kOnlyAsItself);
  CheckAnswer(Decide(pod, exec_as(1000, 0, {})), kOnlyAsItself);
  CheckAnswer(Decide(pod, exec_as(1001, 1000, {})), kOnlyAsItself);
  // A pod's root may run as anyone.
  Who root = pod;
  root.uid = 0;
  root.gid = 0;
  root.groups.clear();
  CheckAnswer(Decide(root, exec_as(1000, 1000, {4, 27})), kAllowed);
}

TEST_CASE("policy: a pod binds from its own directory under a bind root, component by component",
          "[policy]") {
  auto bind = [](const std::string& source, std::vector<std::string> roots) {
    Ask ask = Named(Method::kBindMount);
    ask.source = source;
    ask.bind_roots = std::move(roots);
    return ask;
  };
  const Who pod = CallerOf(kPodConsumer);
  CHECK(Decide(pod, bind("/srv/binds/" + kPod, kBindRoots)).ok());
  CHECK(Decide(pod, bind("/srv/binds/./" + kPod + "//etc-hosts", kBindRoots)).ok());
  // A name that only starts like the pod's is another pod's.
  CHECK(absl::IsPermissionDenied(Decide(pod, bind("/srv/binds/" + kPod + "-x/f", kBindRoots))));
  CHECK(absl::IsPermissionDenied(Decide(pod, bind("/srv/binds", kBindRoots))));
  // With no --bind_root the policy has nothing to scope: the operation
  // refuses every bind mount as disabled.
  CHECK(Decide(pod, bind(kOthersSource, {})).ok());
  // The source is quoted, cut to 256 bytes, and never expanded.
  absl::Status refused = Decide(pod, bind("/x/{pod}/" + std::string(300, 'a'), kBindRoots));
  CHECK(std::string(refused.message()) ==
        "source: pod " + kPod + " may bind only its own files: \"/x/{pod}/" +
            std::string(256 - 9, 'a') + "\" is not inside /var/lib/kubelet/pods/" + kPod +
            " or /srv/binds/" + kPod);

  CHECK(BindSourceRoots(CallerOf(kOperator), kBindRoots) == kBindRoots);
  CHECK(BindSourceRoots(pod, kBindRoots) ==
        std::vector<std::string>{"/var/lib/kubelet/pods/" + kPod, "/srv/binds/" + kPod});
  CHECK(BindSourceRoots(CallerOf(kUnknownCaller), kBindRoots).empty());
}

}  // namespace sc
