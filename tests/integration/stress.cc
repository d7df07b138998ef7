#include "tests/integration/stress.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>

namespace sc::test {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::unique_ptr<grpc::ClientContext> Context() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return ctx;
}

v1::InstanceRef Ref(const std::string& name) {
  v1::InstanceRef ref;
  ref.set_namespace_("ns");
  ref.set_name(name);
  return ref;
}

bool SetNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

// Appends what `fd` has now to `sink`; false at EOF or error.
bool DrainFd(int fd, std::string* sink) {
  char buf[65536];
  while (true) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      sink->append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && errno == EAGAIN;
  }
}

int DecodeStatus(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

// ------------------------------------------------------------ InstanceNode

InstanceNode::InstanceNode(std::vector<std::string> extra_args, const std::string& base_tmpfs_size)
    : base(dir / "instances"), layers(dir / "layers"), busybox(dir / "layers/busybox") {
  MakeBusyboxTree(busybox);
  fs::create_directories(base);
  if (!base_tmpfs_size.empty()) {
    std::string options = "size=" + base_tmpfs_size + ",mode=0755";
    if (mount("sc-test-base", base.c_str(), "tmpfs", 0, options.c_str()) != 0) {
      FAIL("mount tmpfs on " << base << ": " << strerror(errno));
    }
  }
  args_ = {"--instance_base=" + base, "--layer_root=" + layers};
  args_.insert(args_.end(), extra_args.begin(), extra_args.end());
  socket_ = dir / "mh.sock";
  Start();
}

InstanceNode::~InstanceNode() {
  // The daemon goes first; TempDir then detaches whatever is still mounted.
  daemon_.reset();
}

void InstanceNode::Start() {
  daemon_.reset();
  daemon_ = std::make_unique<DaemonProcess>(socket_, args_);
  REQUIRE(daemon_->started());
  // A fresh channel: the old one would first wait out its reconnect backoff.
  stub_ = v1::MountHelper::NewStub(
      grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials()));
}

void InstanceNode::Kill() { daemon_->Kill(); }

grpc::Status InstanceNode::Prepare(const std::string& name, v1::Instance* out) {
  v1::PrepareRootfsRequest req;
  *req.mutable_instance() = Ref(name);
  req.mutable_layers()->add_paths(busybox);
  v1::Instance ignored;
  return stub_->PrepareRootfs(Context().get(), req, out != nullptr ? out : &ignored);
}

grpc::Status InstanceNode::Release(const std::string& name, bool delete_data,
                                   v1::ReleaseRootfsResponse* out) {
  v1::ReleaseRootfsRequest req;
  *req.mutable_instance() = Ref(name);
  req.set_delete_data(delete_data);
  v1::ReleaseRootfsResponse ignored;
  return stub_->ReleaseRootfs(Context().get(), req, out != nullptr ? out : &ignored);
}

grpc::Status InstanceNode::Get(const std::string& name, v1::Instance* out) {
  v1::GetInstanceRequest req;
  *req.mutable_instance() = Ref(name);
  return stub_->GetInstance(Context().get(), req, out);
}

grpc::Status InstanceNode::List(v1::ListInstancesResponse* out) {
  return stub_->ListInstances(Context().get(), v1::ListInstancesRequest(), out);
}

std::unique_ptr<SimulatedPod> InstanceNode::ConsumerPod(const std::string& name) const {
  PodOptions options;
  options.rootfs_host_path = Rootfs(name);
  options.binds = {dir.path()};
  auto pod = std::make_unique<SimulatedPod>(options);
  REQUIRE(pod->started());
  return pod;
}

std::vector<std::string> InstanceNode::ScExec(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {ScExecBinary(), "--socket", socket_};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

// ------------------------------------------------------------ PipedProcess

PipedProcess::PipedProcess(const std::vector<std::string>& argv) {
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    FAIL("pipe2: " << strerror(errno));
  }
  UniqueFd in_r(in[0]), out_w(out[1]), err_w(err[1]);
  in_.reset(in[1]);
  out_.reset(out[0]);
  err_.reset(err[0]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_r.get(), 0);
  posix_spawn_file_actions_adddup2(&actions, out_w.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, err_w.get(), 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_strings = ChildEnv();
  std::vector<char*> envp;
  for (const std::string& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  int rc = posix_spawn(&pid_, args[0], &actions, &attr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) FAIL("posix_spawn " << argv[0] << ": " << strerror(rc));
  pidfd_.reset(static_cast<int>(syscall(SYS_pidfd_open, pid_, 0)));
  for (int fd : {in_.get(), out_.get(), err_.get()}) SetNonBlocking(fd);
}

PipedProcess::~PipedProcess() {
  if (pid_ > 0 && status_ < 0) {
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

bool PipedProcess::DrainStdout() {
  if (!out_) return false;
  if (!DrainFd(out_.get(), &out_data_)) {
    out_.reset();
    return false;
  }
  return true;
}

bool PipedProcess::DrainStderr() {
  if (!err_) return false;
  if (!DrainFd(err_.get(), &err_data_)) {
    err_.reset();
    return false;
  }
  return true;
}

bool PipedProcess::WaitForOutput(const std::string& needle, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (out_data_.find(needle) == std::string::npos) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0 || !out_) return out_data_.find(needle) != std::string::npos;
    pollfd p[2] = {{out_.get(), POLLIN, 0}, {err_ ? err_.get() : -1, POLLIN, 0}};
    poll(p, 2, static_cast<int>(std::min<long>(left, 100)));
    DrainStdout();
    DrainStderr();
  }
  return true;
}

bool PipedProcess::TryReap() {
  if (status_ >= 0) return true;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r != pid_) return false;
  status_ = DecodeStatus(status);
  return true;
}

int PipedProcess::Wait(milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (true) {
    DrainStdout();
    DrainStderr();
    if (TryReap() && !out_ && !err_) return status_;
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return status_ >= 0 ? status_ : -1;
    pollfd p[3] = {{out_ ? out_.get() : -1, POLLIN, 0},
                   {err_ ? err_.get() : -1, POLLIN, 0},
                   {status_ < 0 ? pidfd_.get() : -1, POLLIN, 0}};
    poll(p, 3, static_cast<int>(std::min<long>(left, 100)));
  }
}

// ------------------------------------------------------------ censuses

std::set<pid_t> PodProcesses(const SimulatedPod& pod) {
  std::set<pid_t> pids;
  std::istringstream in(ReadFile(pod.cgroup_dirs().at(0) + "/cgroup.procs"));
  pid_t pid;
  while (in >> pid) pids.insert(pid);
  return pids;
}

std::string DescribeProcesses(const std::set<pid_t>& pids) {
  std::string out;
  for (pid_t pid : pids) {
    std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
    std::string cmdline = ReadFile("/proc/" + std::to_string(pid) + "/cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    out += stat.substr(0, stat.find(')') + 3) + " [" + cmdline.substr(0, 160) + "]\n";
  }
  return out;
}

std::vector<pid_t> ProcessesWith(const std::string& marker) {
  std::vector<pid_t> found;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc", ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    std::string name = it->path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = ReadFile(it->path() / "cmdline");
    if (cmdline.find(marker) != std::string::npos) found.push_back(std::stoi(name));
  }
  return found;
}

std::vector<std::pair<std::string, int>> StackedMounts(const std::string& dir) {
  std::map<std::string, int> count;
  for (const std::string& m : MountsUnder(dir)) count[m]++;
  return {count.begin(), count.end()};
}

size_t MountCount(pid_t pid, const std::string& own_dir) {
  auto below = [](const std::string& path, const std::string& dir) {
    return path.compare(0, dir.size(), dir) == 0 &&
           (path.size() == dir.size() || path[dir.size()] == '/');
  };
  std::istringstream table(ReadFile("/proc/" + std::to_string(pid) + "/mountinfo"));
  size_t count = 0;
  std::string line;
  while (std::getline(table, line)) {
    // "id parent major:minor root mount-point ...": spaces in a path are \040.
    std::istringstream fields(line);
    std::string id, parent, device, root, mount_point;
    if (!(fields >> id >> parent >> device >> root >> mount_point)) continue;
    if (below(mount_point, "/tmp") && !below(mount_point, own_dir)) continue;
    ++count;
  }
  return count;
}

long RssKiB(pid_t pid) {
  std::istringstream in(ReadFile("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

int Zombies(const std::set<pid_t>& pids) {
  int zombies = 0;
  for (pid_t pid : pids) {
    std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
    size_t close = stat.rfind(')');
    if (close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z') {
      ++zombies;
    }
  }
  return zombies;
}

std::vector<std::string> ChildEnv(std::vector<std::string> env) {
  env.push_back("PATH=/usr/sbin:/usr/bin:/sbin:/bin");
  for (const char* name : {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS"}) {
    if (const char* v = getenv(name)) env.push_back(std::string(name) + "=" + v);
  }
  return env;
}

long EnvNumber(const char* name, long fallback) {
  const char* v = getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  long n = std::strtol(v, &end, 10);
  return end != nullptr && *end == '\0' ? n : fallback;
}

void ByteStream::Fill(char* data, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (left_ == 0) {
      state_ ^= state_ << 13;
      state_ ^= state_ >> 7;
      state_ ^= state_ << 17;
      word_ = state_;
      left_ = 8;
    }
    data[i] = static_cast<char>(word_ & 0xff);
    word_ >>= 8;
    --left_;
  }
}

}  // namespace sc::test
