// sc-test-client SOCKET METHOD [TEXTPROTO]
//
// METHOD is a unary MountHelper RPC, Health, or Exec (TEXTPROTO is then an
// ExecStart; see ExecCall).
//
// Makes one unary call to the daemon, with the request written as a text
// proto, and prints the response as a text proto. On error it prints
// "CODE: message" to stderr and exits with the numeric gRPC code. Tests run it
// inside simulated pods to call as a pod peer; it is not shipped.
#include <google/protobuf/text_format.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <iostream>
#include <map>

#include "common/status_names.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "mounthelper.grpc.pb.h"

namespace {

namespace v1 = ::stoppablecontainer::mounthelper::v1;
using grpc::health::v1::Health;

const char* CodeName(grpc::StatusCode code) { return sc::StatusCodeName(static_cast<int>(code)); }

template <typename Stub, typename Req, typename Resp>
int Call(Stub* stub, grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
         const std::string& text) {
  Req request;
  if (!google::protobuf::TextFormat::ParseFromString(text, &request)) {
    std::cerr << "INVALID_REQUEST: cannot parse the request text proto\n";
    return 100;
  }
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  Resp response;
  grpc::Status status = (stub->*method)(&context, request, &response);
  if (!status.ok()) {
    std::cerr << CodeName(status.error_code()) << ": " << status.error_message() << "\n";
    return status.error_code();
  }
  std::string out;
  google::protobuf::TextFormat::PrintToString(response, &out);
  std::cout << out;
  return 0;
}

// Exec with a text-proto ExecStart: sends start and stdin EOF, prints every
// response as a text proto, and exits with the gRPC code (0 when the stream
// ended with an exit message).
int ExecCall(v1::MountHelper::Stub* stub, const std::string& text) {
  v1::ExecRequest start;
  if (!google::protobuf::TextFormat::ParseFromString(text, start.mutable_start())) {
    std::cerr << "INVALID_REQUEST: cannot parse the ExecStart text proto\n";
    return 100;
  }
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  auto stream = stub->Exec(&context);
  v1::ExecRequest eof;
  eof.mutable_stdin_eof();
  stream->Write(start);
  stream->Write(eof);
  stream->WritesDone();
  v1::ExecResponse response;
  while (stream->Read(&response)) {
    std::string out;
    google::protobuf::TextFormat::PrintToString(response, &out);
    std::cout << out;
  }
  grpc::Status status = stream->Finish();
  if (!status.ok()) {
    std::cerr << CodeName(status.error_code()) << ": " << status.error_message() << "\n";
    return status.error_code();
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: sc-test-client SOCKET METHOD [TEXTPROTO]\n";
    return 100;
  }
  auto channel =
      grpc::CreateChannel(std::string("unix:") + argv[1], grpc::InsecureChannelCredentials());
  auto stub = v1::MountHelper::NewStub(channel);
  auto health = Health::NewStub(channel);
  using S = v1::MountHelper::Stub;
  std::string text = argc > 3 ? argv[3] : "";
  const std::map<std::string, std::function<int()>> methods = {
      {"PrepareRootfs", [&] { return Call(stub.get(), &S::PrepareRootfs, text); }},
      {"ReleaseRootfs", [&] { return Call(stub.get(), &S::ReleaseRootfs, text); }},
      {"BindMount", [&] { return Call(stub.get(), &S::BindMount, text); }},
      {"GetInstance", [&] { return Call(stub.get(), &S::GetInstance, text); }},
      {"ListInstances", [&] { return Call(stub.get(), &S::ListInstances, text); }},
      {"CheckRootfs", [&] { return Call(stub.get(), &S::CheckRootfs, text); }},
      {"WhoAmI", [&] { return Call(stub.get(), &S::WhoAmI, text); }},
      {"Health", [&] { return Call(health.get(), &Health::Stub::Check, text); }},
      {"Exec", [&] { return ExecCall(stub.get(), text); }},
  };
  auto it = methods.find(argv[2]);
  if (it == methods.end()) {
    std::cerr << "unknown method " << argv[2] << "\n";
    return 100;
  }
  return it->second();
}
