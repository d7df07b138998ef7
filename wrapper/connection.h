#ifndef WRAPPER_CONNECTION_H_
#define WRAPPER_CONNECTION_H_

#include <grpcpp/channel.h>

#include <memory>
#include <string>

namespace sc {

struct Connection {
  std::shared_ptr<grpc::Channel> channel;
  std::string error;  // why it failed, for a person ("" on success)
};

// Connects to the daemon's Unix socket itself and hands the connected fd to
// gRPC: the errno of a failed connect() becomes the message (gRPC would only
// say UNAVAILABLE), and no name resolver or background connect is involved.
Connection ConnectToDaemon(const std::string& socket_path);

// The socket path: $SC_SOCKET, else the default.
std::string SocketPathFromEnvironment();

}  // namespace sc

#endif  // WRAPPER_CONNECTION_H_
