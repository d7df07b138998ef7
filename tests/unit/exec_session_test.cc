#include "daemon/exec/exec_session.h"

#include <linux/filter.h>
#include <signal.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <climits>
#include <cstdint>
#include <functional>
#include <string>

#include "daemon/exec/launcher.h"
#include "daemon/exec/seccomp_filter.h"
#include "daemon/identity/cgroup.h"

namespace sc {
namespace {

v1::ExecStart ValidStart() {
  v1::ExecStart start;
  start.add_argv("sh");
  start.add_argv("-c");
  start.add_env("PATH=/bin");
  start.set_working_dir("/home");
  return start;
}

}  // namespace

TEST_CASE("ValidateExecStart accepts a plain start and refuses hostile ones", "[exec]") {
  CHECK(ValidateExecStart(ValidStart()).ok());
  {
    v1::ExecStart s;
    CHECK(absl::IsInvalidArgument(ValidateExecStart(s)));
    s.add_argv("");
    CHECK(absl::IsInvalidArgument(ValidateExecStart(s)));
  }
  {
    v1::ExecStart s = ValidStart();
    s.add_argv(std::string("a\0b", 3));
    CHECK(absl::IsInvalidArgument(ValidateExecStart(s)));
  }
  {
    v1::ExecStart s = ValidStart();
    s.add_env("NOEQUALS");
    CHECK(absl::IsInvalidArgument(ValidateExecStart(s)));
    s = ValidStart();
    s.add_env("=value");
    CHECK(absl::IsInvalidArgument(ValidateExecStart(s)));
  }
  {
    v1::ExecStart s = ValidStart();
    s.set_working_dir("relative/dir");
    CHECK(absl::IsInvalidArgument(ValidateExecStart(s)));
    s.set_working_dir(std::string(5000, '/'));
    CHECK(absl::IsInvalidArgument(ValidateExecStart(s)));
    s = ValidStart();
    s.set_rootfs_path("rootfs");
    CHECK(absl::IsInvalidArgument(ValidateExecStart(s)));
  }
  {
    v1::ExecStart s = ValidStart();
    for (int i = 0; i < 5000; ++i) s.add_argv("x");
    CHECK(absl::IsInvalidArgument(ValidateExecStart(s)));
    s = ValidStart();
    s.add_argv(std::string(2 << 20, 'x'));
    CHECK(absl::IsInvalidArgument(ValidateExecStart(s)));
  }
  {
    v1::ExecStart s = ValidStart();
    s.mutable_window_size()->set_rows(70000);
    CHECK(absl::IsInvalidArgument(ValidateExecStart(s)));
  }
}

TEST_CASE("ValidateExecStart refuses by-reference fd numbers no fd table holds",
          "[exec][by_reference]") {
  auto with = [](const std::function<void(v1::StdioByReference*)>& tweak) {
    v1::ExecStart s = ValidStart();
    v1::StdioByReference* ref = s.mutable_by_reference();
    ref->set_stdin_fd(0);
    ref->set_stdout_fd(1);
    ref->set_stderr_fd(2);
    ref->set_status_fd(5);
    ref->set_control_fd(6);
    tweak(ref);
    return ValidateExecStart(s);
  };
  // What sc-exec sends, an unset message (every field 0) and the extremes.
  CHECK(with([](v1::StdioByReference*) {}).ok());
  {
    v1::ExecStart s = ValidStart();
    s.mutable_by_reference();
    CHECK(ValidateExecStart(s).ok());
  }
  CHECK(with([](v1::StdioByReference* r) { r->set_control_fd(kMaxCallerFd - 1); }).ok());
  CHECK(kMaxCallerFd == 1048576);

  struct Bad {
    std::function<void(v1::StdioByReference*)> tweak;
    std::string message;
  };
  const Bad bad[] = {
      {[](v1::StdioByReference* r) { r->set_stdin_fd(-1); },
       "by_reference.stdin_fd: -1 is not an fd number (0 to 1048575)"},
      {[](v1::StdioByReference* r) { r->set_stdout_fd(kMaxCallerFd); },
       "by_reference.stdout_fd: 1048576 is not an fd number (0 to 1048575)"},
      {[](v1::StdioByReference* r) { r->set_stderr_fd(INT32_MIN); },
       "by_reference.stderr_fd: -2147483648 is not an fd number"},
      {[](v1::StdioByReference* r) { r->set_status_fd(INT32_MAX); },
       "by_reference.status_fd: 2147483647 is not an fd number"},
      {[](v1::StdioByReference* r) { r->set_control_fd(-2); },
       "by_reference.control_fd: -2 is not an fd number"},
  };
  for (const Bad& b : bad) {
    absl::Status s = with(b.tweak);
    INFO(s.ToString());
    CHECK(absl::IsInvalidArgument(s));
    CHECK(std::string(s.message()).find(b.message) != std::string::npos);
  }
  // With a terminal stderr is unused; a number out of range is still refused.
  v1::ExecStart tty = ValidStart();
  tty.set_tty(true);
  tty.mutable_by_reference()->set_stderr_fd(-1);
  CHECK(absl::IsInvalidArgument(ValidateExecStart(tty)));
  // Without by_reference nothing of it is looked at.
  CHECK_FALSE(ValidStart().has_by_reference());
}

TEST_CASE("ExecInput turns messages into actions and enforces the protocol", "[exec]") {
  ExecInput input(/*tty=*/false);
  v1::ExecRequest r;
  r.set_stdin("abc");
  auto a = input.OnMessage(&r);
  REQUIRE(a.ok());
  CHECK(a->kind == ExecInput::Kind::kStdin);
  CHECK(a->data == "abc");

  v1::ExecRequest big;
  big.set_stdin(std::string(kMaxStdinChunk + 1, 'x'));
  CHECK(absl::IsInvalidArgument(input.OnMessage(&big).status()));

  v1::ExecRequest resize;
  resize.mutable_resize()->set_rows(10);
  CHECK(absl::IsInvalidArgument(input.OnMessage(&resize).status()));  // no tty

  for (int sig : {0, -1, 65}) {
    v1::ExecRequest s;
    s.mutable_signal()->set_signal(sig);
    CHECK(absl::IsInvalidArgument(input.OnMessage(&s).status()));
  }
  v1::ExecRequest term;
  term.mutable_signal()->set_signal(SIGTERM);
  auto t = input.OnMessage(&term);
  REQUIRE(t.ok());
  CHECK(t->kind == ExecInput::Kind::kSignal);
  CHECK(t->signal == SIGTERM);

  v1::ExecRequest start;
  start.mutable_start()->add_argv("x");
  CHECK(absl::IsInvalidArgument(input.OnMessage(&start).status()));

  v1::ExecRequest empty;
  CHECK(absl::IsInvalidArgument(input.OnMessage(&empty).status()));

  v1::ExecRequest eof;
  eof.mutable_stdin_eof();
  auto e = input.OnMessage(&eof);
  REQUIRE(e.ok());
  CHECK(e->kind == ExecInput::Kind::kStdinEof);
  CHECK(input.stdin_closed());
  // A second EOF is harmless; data after it is not; half-close adds nothing.
  auto e2 = input.OnMessage(&eof);
  REQUIRE(e2.ok());
  CHECK(e2->kind == ExecInput::Kind::kNone);
  v1::ExecRequest late;
  late.set_stdin("x");
  CHECK(absl::IsInvalidArgument(input.OnMessage(&late).status()));
  CHECK(input.OnHalfClose().kind == ExecInput::Kind::kNone);
}

TEST_CASE("ExecInput with a terminal accepts resizes; half-close is EOF", "[exec]") {
  ExecInput input(/*tty=*/true);
  v1::ExecRequest resize;
  resize.mutable_resize()->set_rows(50);
  resize.mutable_resize()->set_cols(132);
  auto a = input.OnMessage(&resize);
  REQUIRE(a.ok());
  CHECK(a->kind == ExecInput::Kind::kResize);
  CHECK(a->size.ws_row == 50);
  CHECK(a->size.ws_col == 132);
  resize.mutable_resize()->set_cols(1 << 20);
  CHECK(absl::IsInvalidArgument(input.OnMessage(&resize).status()));
  CHECK(input.OnHalfClose().kind == ExecInput::Kind::kStdinEof);
  CHECK(input.OnHalfClose().kind == ExecInput::Kind::kNone);
}

TEST_CASE("ExecOutput sends the exit only after both streams and the exit", "[exec]") {
  ExecOutput out(/*tty=*/false);
  CHECK_FALSE(out.Done());
  out.OnExit(CLD_EXITED, 7);
  CHECK_FALSE(out.Done());
  out.OnStdoutEof();
  CHECK_FALSE(out.Done());
  out.OnStderrEof();
  CHECK(out.Done());
  v1::ExecExit e = out.ExitMessage("");
  CHECK(e.status_case() == v1::ExecExit::kExitCode);
  CHECK(e.exit_code() == 7);
  CHECK(out.Describe() == "exited 7");

  ExecOutput tty(/*tty=*/true);  // no separate stderr
  tty.OnStdoutEof();
  tty.OnExit(CLD_DUMPED, SIGSEGV);
  CHECK(tty.Done());
  v1::ExecExit k = tty.ExitMessage("why");
  CHECK(k.status_case() == v1::ExecExit::kSignal);
  CHECK(k.signal() == SIGSEGV);
  CHECK(k.core_dumped());
  CHECK(k.message() == "why");
  CHECK(tty.Describe() == "killed by signal 11 (core dumped)");
}

TEST_CASE("ExecCandidates follows PATH like execvp", "[exec]") {
  CHECK(ExecCandidates("/bin/sh", {"PATH=/x"}) == std::vector<std::string>{"/bin/sh"});
  CHECK(ExecCandidates("./run", {}) == std::vector<std::string>{"./run"});
  CHECK(ExecCandidates("ls", {"PATH=/a:/b", "PATH=/c::/d"}) ==
        std::vector<std::string>{"/c/ls", "./ls", "/d/ls"});
  std::vector<std::string> def = ExecCandidates("ls", {"HOME=/"});
  REQUIRE(def.size() == 6);
  CHECK(def.front() == "/usr/local/sbin/ls");
  CHECK(def.back() == "/bin/ls");
}

TEST_CASE("cgroup mounts are found for v1 and v2 lines", "[exec]") {
  std::string mountinfo =
      "30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
      "31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
      "32 25 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
      "33 25 0:29 /kubepods /mnt/sc\\040test rw - cgroup cgroup rw,memory\n"
      "40 25 0:30 / /proc rw - proc proc rw\n";
  std::vector<CgroupMount> mounts = ParseCgroupMounts(mountinfo);
  REQUIRE(mounts.size() == 4);
  CHECK(mounts[0].v2);
  CHECK(mounts[3].target == "/mnt/sc test");
  auto dir = [&](int id, const char* controllers, const char* path) {
    return CgroupDirFor(CgroupLine{id, controllers, path}, mounts);
  };
  CHECK(*dir(0, "", "/kubepods/podX/c") == "/sys/fs/cgroup/unified/kubepods/podX/c");
  CHECK(*dir(0, "", "/") == "/sys/fs/cgroup/unified");
  CHECK(*dir(3, "cpu,cpuacct", "/kubepods/p") == "/sys/fs/cgroup/cpu,cpuacct/kubepods/p");
  CHECK(*dir(1, "name=systemd", "/a") == "/sys/fs/cgroup/systemd/a");
  // A mount of a sub-tree holds only what lies below its root.
  CHECK(*dir(5, "memory", "/kubepods/pod1") == "/mnt/sc test/pod1");
  CHECK(absl::IsNotFound(dir(5, "memory", "/other").status()));
  CHECK(absl::IsNotFound(dir(6, "pids", "/kubepods").status()));
  CHECK(absl::IsInvalidArgument(dir(0, "", "/kubepods/../../etc").status()));
}

TEST_CASE("the seccomp program builds, once, to classic BPF", "[exec]") {
  absl::StatusOr<SeccompProgram> p = BuildSeccompProgram();
  REQUIRE(p.ok());
  CHECK(p->instructions.size() > 20);
  CHECK(p->instructions.size() <= BPF_MAXINSNS);
  absl::StatusOr<const SeccompProgram*> a = DefaultSeccompProgram();
  absl::StatusOr<const SeccompProgram*> b = DefaultSeccompProgram();
  REQUIRE(a.ok());
  CHECK(*a == *b);
  CHECK((*a)->instructions.size() == p->instructions.size());
}

}  // namespace sc
