#include "tests/integration/harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/unique_fd.h"

extern char** environ;

namespace sc::test {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

int PidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

bool WriteFile(const std::string& path, const std::string& content) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return false;
  return write(fd.get(), content.data(), content.size()) == static_cast<ssize_t>(content.size());
}

std::string SelfExe() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "/proc/self/exe";
  return std::string(buf, static_cast<size_t>(n));
}

// mountinfo escapes ' ', '\t', '\n' and '\\' as octal.
std::string UnescapeMountPath(const std::string& raw) {
  std::string out;
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\\' && i + 3 < raw.size() + 1 && i + 3 <= raw.size()) {
      out += static_cast<char>(std::stoi(raw.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += raw[i];
    }
  }
  return out;
}

struct MountLine {
  std::string target;
  std::string fstype;
  std::string super_options;
};

std::vector<MountLine> ReadMountinfo() {
  std::vector<MountLine> mounts;
  std::istringstream in(ReadFile("/proc/self/mountinfo"));
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::vector<std::string> f;
    std::string word;
    while (fields >> word) f.push_back(word);
    auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 5 || dash == f.end() || dash + 3 >= f.end() + 1) continue;
    MountLine m;
    m.target = UnescapeMountPath(f[4]);
    m.fstype = *(dash + 1);
    m.super_options = dash + 3 < f.end() ? *(dash + 3) : "";
    mounts.push_back(m);
  }
  return mounts;
}

// Waits for `pid` (our child) to exit, at most `timeout`. Returns the wait
// status, or -1 if it is still running.
int WaitFor(pid_t pid, milliseconds timeout) {
  UniqueFd pidfd(PidfdOpen(pid));
  if (pidfd) {
    pollfd p{pidfd.get(), POLLIN, 0};
    int ready;
    do {
      ready = poll(&p, 1, static_cast<int>(timeout.count()));
    } while (ready < 0 && errno == EINTR);
    if (ready == 0) return -1;
  }
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  return r == pid ? status : -1;
}

void FillResult(int status, ProcessResult* result) {
  if (WIFEXITED(status)) result->exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result->signal = WTERMSIG(status);
}

std::vector<char*> CStrings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  for (const std::string& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// Starts argv (looked up in PATH) with `actions` applied, an empty signal
// mask (the test's gRPC threads may block some) and, with `own_group`, a
// process group of its own. Fails the test if it cannot start.
pid_t Spawn(const std::vector<std::string>& argv, posix_spawn_file_actions_t* actions,
            char** envp = environ, bool own_group = false) {
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  short flags = POSIX_SPAWN_SETSIGMASK;
  if (own_group) {
    flags |= POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setpgroup(&attr, 0);
  }
  posix_spawnattr_setflags(&attr, flags);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  std::vector<char*> args = CStrings(argv);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, args[0], actions, &attr, args.data(), envp);
  posix_spawn_file_actions_destroy(actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) FAIL("posix_spawn " << argv[0] << ": " << strerror(rc));
  return pid;
}

// The cgroup hierarchies mounted on this machine: v1 ones and the v2 one.
struct Hierarchy {
  std::string mount_point;
  bool cpuset_v1 = false;
};

std::vector<Hierarchy> CgroupHierarchies() {
  std::vector<Hierarchy> out;
  for (const MountLine& m : ReadMountinfo()) {
    if (m.fstype != "cgroup" && m.fstype != "cgroup2") continue;
    if (m.target.rfind("/sys/fs/cgroup", 0) != 0) continue;
    Hierarchy h;
    h.mount_point = m.target;
    h.cpuset_v1 = m.fstype == "cgroup" && m.super_options.find("cpuset") != std::string::npos;
    out.push_back(h);
  }
  return out;
}

// mkdir, and for a v1 cpuset cgroup the cpus and mems of its parent: it
// admits no process without them.
void MakeCgroupDir(const Hierarchy& h, const std::string& dir) {
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    FAIL("mkdir " << dir << ": " << strerror(errno));
  }
  if (!h.cpuset_v1) return;
  std::string parent = fs::path(dir).parent_path().string();
  for (const char* file : {"/cpuset.cpus", "/cpuset.mems"}) {
    std::string current = ReadFile(dir + file);
    if (current.find_first_not_of(" \n") == std::string::npos) {
      WriteFile(dir + file, ReadFile(parent + file));
    }
  }
}

// Removes cgroup directories in order, each once it is empty (bounded).
void RemoveCgroupDirs(const std::vector<std::string>& dirs) {
  auto deadline = Clock::now() + std::chrono::seconds(10);
  for (const std::string& dir : dirs) {
    while (rmdir(dir.c_str()) != 0 && errno == EBUSY && Clock::now() < deadline) {
      pollfd none{};
      poll(&none, 0, 10);
    }
  }
}

}  // namespace

std::string ReadFile(const std::string& path) {
  std::string content;
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return content;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    // A /proc file of a process that just exited fails with ESRCH: what was
    // read so far is the answer, never an exception in the middle of a wait.
    if (n <= 0) break;
    content.append(buf, static_cast<size_t>(n));
  }
  return content;
}

void SkipOrFailUnderCi(const std::string& under_ci, const std::string& skipped) {
  const char* ci = std::getenv("CI");
  if (ci != nullptr && std::string(ci) == "true") FAIL(under_ci);
  WARN("skipped: " << skipped);
}

bool RequireRoot() {
  if (geteuid() == 0) return true;
  SkipOrFailUnderCi("this test needs root, and CI=true does not allow skipping it",
                    "this test needs root (real mounts, namespaces and cgroups)");
  return false;
}

std::string DaemonBinary() { return SC_DAEMON_BIN; }
std::string ScExecBinary() { return SC_EXEC_BIN; }
std::string TestClientBinary() { return SC_TEST_CLIENT_BIN; }

std::string RandomHex(size_t n) {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) out += kHex[rng() % 16];
  return out;
}

void MakeBusyboxTree(const std::string& dir) {
  for (const char* sub : {"/bin", "/etc", "/tmp", "/proc", "/sys", "/dev", "/root"}) {
    fs::create_directories(dir + sub);
  }
  fs::permissions(dir + "/tmp", fs::perms::all | fs::perms::sticky_bit);
  fs::copy_file("/bin/busybox", dir + "/bin/busybox", fs::copy_options::overwrite_existing);
  ProcessResult list = Run({"/bin/busybox", "--list"});
  REQUIRE(list.exit_code == 0);
  std::istringstream applets(list.out);
  std::string applet;
  while (applets >> applet) {
    if (applet == "busybox") continue;
    std::error_code ec;
    fs::create_symlink("busybox", dir + "/bin/" + applet, ec);
  }
  std::ofstream(dir + "/etc/passwd") << "root:x:0:0:root:/root:/bin/sh\n";
  std::ofstream(dir + "/etc/group") << "root:x:0:\n";
}

BackgroundProcess::BackgroundProcess(const std::vector<std::string>& argv) {
  char tmpl[] = "/tmp/sc-test-bg-XXXXXX";
  int fd = mkstemp(tmpl);
  if (fd < 0) FAIL("mkstemp: " << strerror(errno));
  UniqueFd out(fd);
  output_path_ = tmpl;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, out.get(), 2);
  pid_ = Spawn(argv, &actions);
}

BackgroundProcess::~BackgroundProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    WaitFor(pid_, milliseconds(10000));
  }
  unlink(output_path_.c_str());
}

void BackgroundProcess::Signal(int sig) const {
  if (pid_ > 0) kill(pid_, sig);
}

ProcessResult BackgroundProcess::Wait(milliseconds timeout) {
  ProcessResult result;
  int status = pid_ > 0 ? WaitFor(pid_, timeout) : -1;
  if (status == -1) {
    result.timed_out = true;
  } else {
    pid_ = -1;
    FillResult(status, &result);
  }
  result.out = Output();
  return result;
}

std::string BackgroundProcess::Output() const { return ReadFile(output_path_); }

bool PollUntil(const std::function<bool()>& condition, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!condition()) {
    if (Clock::now() >= deadline) return false;
    pollfd none{};
    poll(&none, 0, 10);
  }
  return true;
}

std::string ProcessResult::Describe() const {
  std::string what = timed_out     ? "timed out"
                     : signal != 0 ? "killed by signal " + std::to_string(signal)
                                   : "exited " + std::to_string(exit_code);
  return what + "; stderr: " + err.substr(0, 2000);
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/sc-test-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) FAIL("mkdtemp: " << strerror(errno));
  path_ = tmpl;
}

TempDir::~TempDir() {
  UnmountUnder(path_);
  if (!MountsUnder(path_).empty()) {
    WARN("leaving " << path_ << " in place: something is still mounted below it");
    return;
  }
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::vector<std::string> MountsUnder(const std::string& dir) {
  std::vector<std::string> out;
  for (const MountLine& m : ReadMountinfo()) {
    if (m.target == dir || m.target.rfind(dir + "/", 0) == 0) out.push_back(m.target);
  }
  // Later lines are mounted on top of earlier ones: undo them first.
  std::reverse(out.begin(), out.end());
  std::stable_sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) {
    return std::count(a.begin(), a.end(), '/') > std::count(b.begin(), b.end(), '/');
  });
  return out;
}

void UnmountUnder(const std::string& dir) {
  // Stacked mounts need several rounds; bounded in case one cannot go.
  for (int round = 0; round < 16; ++round) {
    std::vector<std::string> mounts = MountsUnder(dir);
    if (mounts.empty()) return;
    for (const std::string& m : mounts) umount2(m.c_str(), MNT_DETACH);
  }
}

ProcessResult Run(const std::vector<std::string>& argv, const RunOptions& options) {
  ProcessResult result;
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    FAIL("pipe2: " << strerror(errno));
  }
  UniqueFd in_r(in[0]), in_w(in[1]), out_r(out[0]), out_w(out[1]), err_r(err[0]), err_w(err[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_r.get(), 0);
  posix_spawn_file_actions_adddup2(&actions, out_w.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, err_w.get(), 2);
  // A fresh process group, so that a timeout can kill everything it started.
  std::vector<char*> env = options.env.empty() ? std::vector<char*>() : CStrings(options.env);
  pid_t pid = Spawn(argv, &actions, options.env.empty() ? environ : env.data(), true);
  in_r.reset();
  out_w.reset();
  err_w.reset();
  fcntl(in_w.get(), F_SETFL, O_NONBLOCK);
  UniqueFd pidfd(PidfdOpen(pid));

  size_t written = 0;
  if (options.stdin_data.empty() && options.close_stdin) in_w.reset();
  bool exited = false;
  int status = 0;
  auto deadline = Clock::now() + options.timeout;
  char buf[65536];
  while (out_r || err_r || !exited) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      result.timed_out = true;
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      break;
    }
    pollfd fds[4];
    int n = 0;
    int idx_in = -1, idx_out = -1, idx_err = -1, idx_pid = -1;
    if (in_w && written < options.stdin_data.size()) {
      idx_in = n;
      fds[n++] = {in_w.get(), POLLOUT, 0};
    }
    if (out_r) {
      idx_out = n;
      fds[n++] = {out_r.get(), POLLIN, 0};
    }
    if (err_r) {
      idx_err = n;
      fds[n++] = {err_r.get(), POLLIN, 0};
    }
    if (!exited) {
      idx_pid = n;
      fds[n++] = {pidfd.get(), POLLIN, 0};
    }
    int ready = poll(fds, n, static_cast<int>(std::min<long>(left, 1000)));
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    if (idx_in >= 0 && fds[idx_in].revents != 0) {
      ssize_t w = write(in_w.get(), options.stdin_data.data() + written,
                        std::min<size_t>(options.stdin_data.size() - written, 1 << 20));
      if (w > 0) written += static_cast<size_t>(w);
      if (w < 0 && errno != EAGAIN) in_w.reset();  // EPIPE: the process stopped reading
      if (written == options.stdin_data.size() && options.close_stdin) in_w.reset();
    }
    for (auto [idx, fd, sink] :
         {std::tuple{idx_out, &out_r, &result.out}, std::tuple{idx_err, &err_r, &result.err}}) {
      if (idx < 0 || fds[idx].revents == 0) continue;
      ssize_t r = read(fd->get(), buf, sizeof(buf));
      if (r > 0) {
        sink->append(buf, static_cast<size_t>(r));
      } else if (r == 0 || errno != EINTR) {
        fd->reset();
      }
    }
    if (idx_pid >= 0 && fds[idx_pid].revents != 0) {
      waitpid(pid, &status, 0);
      exited = true;
      // Leave stdin open no longer than the process lives.
      in_w.reset();
    }
  }
  if (!exited) {
    waitpid(pid, &status, 0);
  }
  FillResult(status, &result);
  return result;
}

DaemonProcess::DaemonProcess(const std::string& socket_path, std::vector<std::string> extra_args)
    : socket_path_(socket_path) {
  char tmpl[] = "/tmp/sc-test-daemon-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) FAIL("mkdtemp: " << strerror(errno));
  dir_ = tmpl;
  audit_log_ = dir_ + "/audit.log";
  log_path_ = dir_ + "/daemon.log";
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) FAIL("pipe2: " << strerror(errno));
  UniqueFd ready_r(ready[0]), ready_w(ready[1]);
  std::vector<std::string> argv = {DaemonBinary(), "--socket=" + socket_path,
                                   "--audit_log=" + audit_log_, "--ready_fd=3",
                                   "--log_level=debug"};
  // SC_TEST_DAEMON_ARGS forces the paths an older kernel takes (for example
  // "--peer_pidfd=pidfd_open --overlay_layers=proc_fd_paths") on this one, so
  // a failure seen only in the VM can be looped natively in seconds a case.
  if (const char* forced = std::getenv("SC_TEST_DAEMON_ARGS")) {
    for (absl::string_view arg : absl::StrSplit(forced, ' ', absl::SkipEmpty())) {
      argv.emplace_back(arg);
    }
  }
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_adddup2(&actions, ready_w.get(), 3);
  pid_t pid = Spawn(argv, &actions);
  ready_w.reset();
  pid_ = pid;
  // A cgroup of its own below kubepods/ (where tests make cgroups), so that
  // what the daemon makes below its cgroup (its operator execs', made once it
  // serves) goes with it.
  std::string leaf = "sc-test-daemon-" + RandomHex(8);
  for (const Hierarchy& h : CgroupHierarchies()) {
    MakeCgroupDir(h, h.mount_point + "/kubepods");
    std::string dir = h.mount_point + "/kubepods/" + leaf;
    MakeCgroupDir(h, dir);
    cgroup_dirs_.push_back(dir);
    if (!WriteFile(dir + "/cgroup.procs", std::to_string(pid))) {
      FAIL("move the daemon into " << dir << ": " << strerror(errno));
    }
  }

  // The daemon writes READY once it serves; EOF first means it gave up.
  pollfd p{ready_r.get(), POLLIN, 0};
  std::string said;
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (said.find('\n') == std::string::npos && Clock::now() < deadline) {
    int left =
        static_cast<int>(std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count());
    if (poll(&p, 1, std::max(left, 1)) <= 0) continue;
    char buf[64];
    ssize_t n = read(ready_r.get(), buf, sizeof(buf));
    if (n <= 0) break;
    said.append(buf, static_cast<size_t>(n));
  }
  if (said != "READY\n") {
    Kill();
    pid_ = -1;
  }
}

DaemonProcess::~DaemonProcess() {
  Kill();
  std::error_code ec;
  fs::remove_all(dir_, ec);
  // An operator exec's processes end within the daemon's kill grace of it.
  std::vector<std::string> dirs;
  for (const std::string& dir : cgroup_dirs_) {
    dirs.push_back(dir + "/sc-operator-exec");
    dirs.push_back(dir);
  }
  RemoveCgroupDirs(dirs);
}

std::string DaemonProcess::Log() const { return ReadFile(log_path_); }
std::string DaemonProcess::AuditLog() const { return ReadFile(audit_log_); }

int DaemonProcess::Terminate(milliseconds timeout) {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = WaitFor(pid_, timeout);
  if (status == -1) return -1;
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void DaemonProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  WaitFor(pid_, milliseconds(10000));
  pid_ = -1;
}

int DaemonProcess::OpenFdCount() const {
  int count = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc/" + std::to_string(pid_) + "/fd", ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    ++count;
  }
  return count;
}

int DaemonProcess::ChildCount() const {
  int count = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc/" + std::to_string(pid_) + "/task", ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::istringstream children(ReadFile(it->path().string() + "/children"));
    pid_t child;
    while (children >> child) ++count;
  }
  return count;
}

ProcessResult RunScExec(const std::string& socket, const std::vector<std::string>& args,
                        const RunOptions& options) {
  std::vector<std::string> argv = {ScExecBinary(), "--socket", socket};
  argv.insert(argv.end(), args.begin(), args.end());
  return Run(argv, options);
}

// ------------------------------------------------------------ SimulatedPod

SimulatedPod::SimulatedPod(PodOptions options) : options_(std::move(options)) {
  std::string u = RandomHex(32);
  uid_ = u.substr(0, 8) + "-" + u.substr(8, 4) + "-" + u.substr(12, 4) + "-" + u.substr(16, 4) +
         "-" + u.substr(20, 12);
  container_id_ = RandomHex(64);

  std::vector<std::string> procs_files;
  for (const Hierarchy& h : CgroupHierarchies()) {
    std::vector<std::string> levels = {h.mount_point + "/kubepods"};
    if (options_.qos != "guaranteed") levels.push_back(levels.back() + "/" + options_.qos);
    levels.push_back(levels.back() + "/pod" + uid_);
    levels.push_back(levels.back() + "/" + container_id_);
    for (const std::string& dir : levels) MakeCgroupDir(h, dir);
    // Removal goes deepest first; shared levels are removed when empty.
    for (auto it = levels.rbegin(); it != levels.rend(); ++it) cgroup_dirs_.push_back(*it);
    procs_files.push_back(levels.back() + "/cgroup.procs");
  }
  // cgroup_dirs() promises the container's directories first.
  std::stable_partition(cgroup_dirs_.begin(), cgroup_dirs_.end(), [this](const std::string& d) {
    return d.size() >= container_id_.size() &&
           d.compare(d.size() - container_id_.size(), container_id_.size(), container_id_) == 0;
  });

  // Only a mount point inside the pod's namespace; removed by the destructor.
  char root_tmpl[] = "/tmp/sc-test-podroot-XXXXXX";
  if (mkdtemp(root_tmpl) == nullptr) FAIL("mkdtemp: " << strerror(errno));
  pod_root_ = root_tmpl;

  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) FAIL("pipe2: " << strerror(errno));
  UniqueFd ready_r(ready[0]), ready_w(ready[1]);
  std::vector<std::string> argv = {
      SelfExe(),
      "__sc_pod_init",
      "3",
      options_.hostname,
      options_.rootfs_host_path.empty() ? "-" : options_.rootfs_host_path,
      pod_root_};
  for (const std::string& b : options_.binds) argv.push_back("--bind=" + b);
  for (const std::string& e : options_.init_env) argv.push_back("--env=" + e);
  if (!options_.root_lower.empty()) argv.push_back("--root_lower=" + options_.root_lower);
  for (const std::string& p : procs_files) argv.push_back("--cgroup=" + p);
  for (const std::string& d : options_.devices) argv.push_back("--device=" + d);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, ready_w.get(), 3);
  pid_t pid = Spawn(argv, &actions);
  launcher_pid_ = pid;
  ready_w.reset();

  // The launcher writes the host pid of the pod's pid 1 once it is set up.
  std::string said;
  pollfd p{ready_r.get(), POLLIN, 0};
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (said.find('\n') == std::string::npos && Clock::now() < deadline) {
    if (poll(&p, 1, 1000) <= 0) continue;
    char buf[64];
    ssize_t n = read(ready_r.get(), buf, sizeof(buf));
    if (n <= 0) break;
    said.append(buf, static_cast<size_t>(n));
  }
  if (said.empty() || said.back() != '\n') {
    FAIL("the simulated pod did not start");
  }
  init_pid_ = std::stoi(said);
}

SimulatedPod::~SimulatedPod() {
  // Killing a pid namespace's pid 1 kills every process in it.
  if (init_pid_ > 0) kill(init_pid_, SIGKILL);
  if (launcher_pid_ > 0) {
    if (WaitFor(launcher_pid_, milliseconds(10000)) == -1) {
      kill(launcher_pid_, SIGKILL);
      WaitFor(launcher_pid_, milliseconds(10000));
    }
  }
  if (!pod_root_.empty()) rmdir(pod_root_.c_str());
  // Processes the daemon started in the pod are reaped by the daemon; the
  // cgroup empties once they are. Bounded.
  auto deadline = Clock::now() + std::chrono::seconds(10);
  for (const std::string& dir : cgroup_dirs_) {
    while (rmdir(dir.c_str()) != 0 && errno == EBUSY && Clock::now() < deadline) {
      bool own = dir.find(uid_) != std::string::npos;
      if (!own) break;  // a shared level still used by another pod
      pollfd none{};
      poll(&none, 0, 10);
    }
  }
}

std::vector<std::string> SimulatedPod::ExecPrefix() const {
  std::vector<std::string> argv = {SelfExe(), "__sc_pod_exec", std::to_string(init_pid_)};
  for (const std::string& dir : cgroup_dirs_) {
    if (dir.size() > container_id_.size() &&
        dir.compare(dir.size() - container_id_.size(), container_id_.size(), container_id_) == 0) {
      argv.push_back("--cgroup=" + dir + "/cgroup.procs");
    }
  }
  argv.push_back("--");
  return argv;
}

ProcessResult SimulatedPod::Exec(const std::vector<std::string>& argv, const RunOptions& options) {
  std::vector<std::string> full = ExecPrefix();
  full.insert(full.end(), argv.begin(), argv.end());
  return Run(full, options);
}

// ------------------------------------------------ re-executed entry points

namespace {

[[noreturn]] void Die(const char* what) {
  dprintf(2, "sc-test pod: %s: %s\n", what, strerror(errno));
  _exit(125);
}

bool JoinCgroups(const std::vector<std::string>& procs_files) {
  std::string self = std::to_string(getpid());
  for (const std::string& f : procs_files) {
    if (!WriteFile(f, self)) return false;
  }
  return true;
}

// The /dev a runtime gives a container (runc, with the runtime-spec's
// defaults): a tmpfs with null, zero, full, random, urandom and tty, the
// usual links, a devpts and an mqueue of its own, a tmpfs shm; plus the
// host's device nodes in `devices` (a volumeDevices entry, a device plugin's
// device), at their paths below /dev.
void SetUpPodDev(const std::string& dev, const std::vector<std::string>& devices) {
  if (mount("tmpfs", dev.c_str(), "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k") !=
      0) {
    Die("mount the pod's /dev");
  }
  const struct {
    const char* name;
    unsigned major, minor;
  } nodes[] = {{"null", 1, 3},   {"zero", 1, 5},    {"full", 1, 7},
               {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
  for (const auto& n : nodes) {
    std::string path = dev + "/" + n.name;
    if (mknod(path.c_str(), S_IFCHR | 0666, makedev(n.major, n.minor)) != 0 ||
        chmod(path.c_str(), 0666) != 0) {
      Die("mknod in the pod's /dev");
    }
  }
  for (const auto& [name, target] :
       std::vector<std::pair<std::string, std::string>>{{"ptmx", "pts/ptmx"},
                                                        {"fd", "/proc/self/fd"},
                                                        {"stdin", "/proc/self/fd/0"},
                                                        {"stdout", "/proc/self/fd/1"},
                                                        {"stderr", "/proc/self/fd/2"}}) {
    if (symlink(target.c_str(), (dev + "/" + name).c_str()) != 0) Die("symlink in /dev");
  }
  for (const char* d : {"pts", "shm", "mqueue"}) {
    if (mkdir((dev + "/" + d).c_str(), 0755) != 0) Die("mkdir in /dev");
  }
  if (mount("devpts", (dev + "/pts").c_str(), "devpts", MS_NOSUID | MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5") != 0 ||
      mount("shm", (dev + "/shm").c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
            "mode=1777,size=65536k") != 0 ||
      mount("mqueue", (dev + "/mqueue").c_str(), "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC,
            nullptr) != 0) {
    Die("mount in the pod's /dev");
  }
  for (const std::string& host : devices) {
    struct stat st {};
    if (stat(host.c_str(), &st) != 0 || host.rfind("/dev/", 0) != 0) Die("stat a pod's device");
    std::string path = dev + host.substr(4);
    fs::create_directories(fs::path(path).parent_path());
    if (mknod(path.c_str(), st.st_mode, st.st_rdev) != 0) Die("mknod a pod's device");
  }
}

// Builds the pod's root: a tmpfs holding binds of the host's top-level
// directories (so binaries, the build tree and /tmp are where they are on the
// host), a /dev of a container's (SetUpPodDev), /rootfs and a /proc of its
// own, then pivots into it.
void SetUpPodRoot(const std::string& pod_root, const std::string& rootfs,
                  const std::vector<std::string>& binds, const std::string& lower,
                  const std::vector<std::string>& devices) {
  if (mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) Die("make / rslave");
  if (mount("tmpfs", pod_root.c_str(), "tmpfs", 0, "mode=0755") != 0) Die("mount tmpfs root");
  std::string root = pod_root;
  if (!lower.empty()) {
    // An overlay root, as a runtime mounts a container's image.
    for (const char* d : {"/upper", "/work", "/merged"}) {
      if (mkdir((pod_root + d).c_str(), 0755) != 0) Die("mkdir overlay dirs");
    }
    std::string options =
        "lowerdir=" + lower + ",upperdir=" + pod_root + "/upper,workdir=" + pod_root + "/work";
    root = pod_root + "/merged";
    if (mount("overlay", root.c_str(), "overlay", 0, options.c_str()) != 0) Die("mount overlay");
  }
  for (const auto& entry : fs::directory_iterator("/")) {
    std::string name = entry.path().filename().string();
    if (name == "proc" || name == "rootfs") continue;
    std::string target = root + "/" + name;
    if (name == "dev") {
      if (mkdir(target.c_str(), 0755) != 0 && errno != EEXIST) Die("mkdir /dev in pod root");
      SetUpPodDev(target, devices);
      continue;
    }
    if (entry.is_symlink()) {
      std::error_code ec;
      fs::create_symlink(fs::read_symlink(entry.path()), target, ec);
      continue;
    }
    if (!entry.is_directory()) continue;
    if (mkdir(target.c_str(), 0755) != 0 && errno != EEXIST) Die("mkdir in pod root");
    if (mount(entry.path().c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
      Die("bind host directory into pod root");
    }
  }
  for (const std::string& b : binds) {
    std::string target = root + b;
    std::error_code ec;
    if (fs::is_directory(b)) {
      fs::create_directories(target, ec);
    } else {
      fs::create_directories(fs::path(target).parent_path(), ec);
      UniqueFd(open(target.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    }
    if (mount(b.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
      Die("bind into pod");
    }
  }
  if (mkdir((root + "/proc").c_str(), 0555) != 0 && errno != EEXIST) Die("mkdir /proc");
  if (mkdir((root + "/rootfs").c_str(), 0755) != 0 && errno != EEXIST) Die("mkdir /rootfs");
  if (rootfs != "-") {
    // Like a hostPath with HostToContainer propagation: rbind, rslave.
    if (mount(rootfs.c_str(), (root + "/rootfs").c_str(), nullptr, MS_BIND | MS_REC, nullptr) !=
        0) {
      Die("bind rootfs");
    }
  }
  if (mount(nullptr, root.c_str(), nullptr, MS_REC | MS_SLAVE, nullptr) != 0) Die("rslave root");
  if (chdir(root.c_str()) != 0) Die("chdir pod root");
  if (syscall(SYS_pivot_root, ".", ".") != 0) Die("pivot_root");
  if (umount2(".", MNT_DETACH) != 0) Die("detach old root");
  if (chdir("/") != 0) Die("chdir /");
}

// What a pod exec's helper forwards to its child, as a runtime's exec would.
constexpr int kPodExecForwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
volatile pid_t g_forward_to = 0;
void ForwardSignal(int sig) {
  if (g_forward_to > 0) kill(g_forward_to, sig);
}

}  // namespace

int PodInitMain(int argc, char** argv) {
  // argv: exe __sc_pod_init READY_FD HOSTNAME ROOTFS POD_ROOT [--bind=P] [--env=E] [--cgroup=F]
  if (argc < 6) return 120;
  int ready_fd = std::atoi(argv[2]);
  std::string hostname = argv[3];
  std::string rootfs = argv[4];
  std::string pod_root = argv[5];
  std::vector<std::string> binds, env, cgroups, devices;
  std::string root_lower;
  for (int i = 6; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--root_lower=", 0) == 0) root_lower = a.substr(13);
    if (a.rfind("--bind=", 0) == 0) binds.push_back(a.substr(7));
    if (a.rfind("--env=", 0) == 0) env.push_back(a.substr(6));
    if (a.rfind("--cgroup=", 0) == 0) cgroups.push_back(a.substr(9));
    if (a.rfind("--device=", 0) == 0) devices.push_back(a.substr(9));
  }
  if (!JoinCgroups(cgroups)) Die("join cgroups");
  if (unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID) != 0) {
    Die("unshare");
  }
  if (sethostname(hostname.c_str(), hostname.size()) != 0) Die("sethostname");
  SetUpPodRoot(pod_root, rootfs, binds, root_lower, devices);
  int sync[2];
  if (pipe2(sync, O_CLOEXEC) != 0) Die("pipe2");
  pid_t init = fork();
  if (init < 0) Die("fork");
  if (init == 0) {
    // The pod's pid 1: a /proc of its own, then the reaper, exec'd so that
    // /proc/1/environ is exactly the pod's environment.
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
      Die("mount proc");
    }
    if (write(sync[1], "x", 1) != 1) Die("sync");
    std::vector<std::string> reaper = {"/proc/self/exe", "__sc_pod_reaper"};
    std::vector<char*> args = CStrings(reaper);
    std::vector<char*> envp = CStrings(env);
    execve(args[0], args.data(), envp.data());
    Die("exec reaper");
  }
  close(sync[1]);
  char c;
  if (read(sync[0], &c, 1) != 1) Die("pod pid 1 did not start");
  std::string said = std::to_string(init) + "\n";
  if (write(ready_fd, said.data(), said.size()) != static_cast<ssize_t>(said.size())) {
    Die("report pid");
  }
  close(ready_fd);
  int status = 0;
  while (waitpid(init, &status, 0) < 0 && errno == EINTR) {
  }
  return 0;
}

int PodReaperMain() {
  // Reaps orphans until killed, like a pause container's pid 1.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  while (true) {
    int sig = 0;
    sigwait(&set, &sig);
    while (waitpid(-1, nullptr, WNOHANG) > 0) {
    }
  }
}

int PodExecMain(int argc, char** argv) {
  // argv: exe __sc_pod_exec INIT_PID [--cgroup=F]... -- CMD ARGS...
  if (argc < 4) return 120;
  std::string init = argv[2];
  std::vector<std::string> cgroups;
  int i = 3;
  for (; i < argc && std::string(argv[i]) != "--"; ++i) {
    std::string a = argv[i];
    if (a.rfind("--cgroup=", 0) == 0) cgroups.push_back(a.substr(9));
  }
  if (i + 1 >= argc) return 120;
  if (!JoinCgroups(cgroups)) Die("join cgroups");
  // Open every namespace before entering any: after the mount namespace the
  // host's /proc is gone.
  const char* kinds[] = {"ipc", "uts", "net", "pid", "mnt"};
  std::vector<UniqueFd> fds;
  for (const char* ns : kinds) {
    fds.emplace_back(open(("/proc/" + init + "/ns/" + ns).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fds.back()) Die("open namespace");
  }
  for (UniqueFd& fd : fds) {
    if (setns(fd.get(), 0) != 0) Die("setns");
  }
  if (chdir("/") != 0) Die("chdir");
  // Blocked from before the fork until the handler knows the child: a signal
  // sent in between waits for it, instead of ending this helper with the
  // default action (tests signal it as soon as the child has printed).
  sigset_t forwarded, old_mask;
  sigemptyset(&forwarded);
  for (int sig : kPodExecForwarded) sigaddset(&forwarded, sig);
  if (sigprocmask(SIG_BLOCK, &forwarded, &old_mask) != 0) Die("sigprocmask");
  pid_t child = fork();
  if (child < 0) Die("fork");
  if (child == 0) {
    sigprocmask(SIG_SETMASK, &old_mask, nullptr);
    execvp(argv[i + 1], argv + i + 1);
    int err = errno;
    dprintf(2, "sc-test pod exec: %s: %s\n", argv[i + 1], strerror(err));
    _exit(err == ENOENT ? 127 : 126);
  }
  g_forward_to = child;
  for (int sig : kPodExecForwarded) signal(sig, ForwardSignal);
  if (sigprocmask(SIG_SETMASK, &old_mask, nullptr) != 0) Die("sigprocmask");
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) {
    signal(WTERMSIG(status), SIG_DFL);
    kill(getpid(), WTERMSIG(status));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 125;
}

namespace {

struct CloneArgs3 {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
      set_tid_size, cgroup;
};

}  // namespace

ProcessWithPid::ProcessWithPid(pid_t pid) {
  int exec_barrier[2];
  REQUIRE(pipe2(exec_barrier, O_CLOEXEC) == 0);
  UniqueFd barrier_r(exec_barrier[0]), barrier_w(exec_barrier[1]);
  pid_t want = pid;
  CloneArgs3 args{};
  args.exit_signal = SIGCHLD;
  args.set_tid = reinterpret_cast<uint64_t>(&want);
  args.set_tid_size = 1;
  long r = syscall(SYS_clone3, &args, sizeof(args));
  if (r == 0) {
    execl("/bin/sleep", "sleep", "1000", nullptr);
    _exit(127);
  }
  if (r < 0) FAIL("clone3 with set_tid " << pid << ": " << strerror(errno));
  pid_ = static_cast<pid_t>(r);
  barrier_w.reset();
  char c;
  ssize_t n;
  while ((n = read(barrier_r.get(), &c, 1)) < 0 && errno == EINTR) {
  }
  REQUIRE(n == 0);  // EOF: the write end closed with execve
}

ProcessWithPid::~ProcessWithPid() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

int ProcessEntries(const std::string& proc) {
  int n = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(proc, ec)) {
    const std::string name = entry.path().filename().string();
    if (!name.empty() && std::all_of(name.begin(), name.end(), ::isdigit)) ++n;
  }
  return n;
}

namespace {

// One byte of data and room for one fd: what SendFd and ReceiveFd exchange.
// Not copyable: msg points into it.
struct FdMessage {
  FdMessage() {
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
  }
  FdMessage(const FdMessage&) = delete;
  FdMessage& operator=(const FdMessage&) = delete;
  char byte = 'c';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
};

}  // namespace

bool SendFd(int socket, int fd) {
  FdMessage m;
  cmsghdr* cmsg = CMSG_FIRSTHDR(&m.msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
  return sendmsg(socket, &m.msg, 0) == 1;
}

int ReceiveFd(int socket) {
  FdMessage m;
  if (recvmsg(socket, &m.msg, MSG_CMSG_CLOEXEC) != 1) return -1;
  cmsghdr* cmsg = CMSG_FIRSTHDR(&m.msg);
  if (cmsg == nullptr || cmsg->cmsg_type != SCM_RIGHTS) return -1;
  int fd = -1;
  std::memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
  return fd;
}

}  // namespace sc::test
