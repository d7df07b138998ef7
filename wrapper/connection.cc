#include "wrapper/connection.h"

#include <grpcpp/create_channel_posix.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/defaults.h"
#include "common/unique_fd.h"
#include "wrapper/trace.h"

namespace sc {

std::string SocketPathFromEnvironment() {
  const char* env = std::getenv(kSocketEnv);
  return env != nullptr && *env != '\0' ? env : kDefaultSocketPath;
}

Connection ConnectToDaemon(const std::string& socket_path) {
  Connection result;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof(addr.sun_path)) {
    result.error = "socket path is empty or longer than 107 bytes";
    return result;
  }
  memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    result.error = std::string("socket: ") + strerror(errno);
    return result;
  }
  int rc;
  do {
    rc = connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int err = errno;
    result.error = strerror(err);
    if (err == ENOENT || err == ECONNREFUSED)
      result.error += " (is the mount-helper running on this node?)";
    if (err == EACCES) result.error += " (the socket's mode or group does not admit this user)";
    return result;
  }
  TracePoint("connected");
  grpc::ChannelArguments args;
  // Exec streams carry up to 1 MiB of stdin or output per message.
  args.SetMaxReceiveMessageSize(4 << 20);
  args.SetMaxSendMessageSize(4 << 20);
  result.channel =
      grpc::CreateCustomInsecureChannelFromFd("unix:" + socket_path, fd.release(), args);
  return result;
}

}  // namespace sc
