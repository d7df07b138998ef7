#ifndef DAEMON_EDGE_EXEC_STREAM_H_
#define DAEMON_EDGE_EXEC_STREAM_H_

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>
#include <grpcpp/support/sync_stream.h>

#include <vector>

#include "daemon/edge/metrics.h"
#include "mounthelper.pb.h"

namespace sc {

namespace v1 = ::stoppablecontainer::mounthelper::v1;

// The wire of one Exec call. Exec is served on raw ByteBuffers (see
// MountHelperService::ServeExecRaw) so that output leaves without being
// copied in user space: the pump reads the process's output straight into a
// gRPC slice, and the message is a few header bytes (the field's tag and
// length) followed by that slice. Everything else is (de)serialized with
// protobuf exactly as the generated code would: the bytes on the wire are
// the same. The stream also tells the metrics what its client was sent and
// sent (ExecSessionMeter): the session's start, end and stdio bytes.
class ExecStream {
 public:
  using Raw = grpc::ServerReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>;
  explicit ExecStream(Raw* raw) : raw_(raw) {}

  // The next client message; false at the end of the stream, or when a
  // message does not parse (the generated API's Read does the same; then
  // malformed() tells the two apart).
  bool Read(v1::ExecRequest* request);

  enum class Got { kEnd, kMessage, kStdin };
  // As Read, but a message that is nothing but stdin is not parsed: its bytes
  // are left where they arrived, in `stdin_data` (kStdin), and `request` is
  // not touched. kMessage: parsed into `request`.
  Got ReadInput(v1::ExecRequest* request, std::vector<grpc::Slice>* stdin_data);
  bool Write(const v1::ExecResponse& response);
  // Sends `data` as an ExecResponse's stdout (or stderr). Blocks while the
  // client's flow-control window is closed, as Write does.
  bool WriteOutput(bool is_stderr, grpc::Slice data);
  // Whether Read or ReadInput stopped at a message that is not an
  // ExecRequest rather than at the end of the stream.
  bool malformed() const { return malformed_; }

 private:
  Raw* raw_;
  bool malformed_ = false;
  ExecSessionMeter meter_;
};

// An ExecResponse with `data` as its stdout or stderr, serialized as
// protobuf would, `data` itself not copied. Exposed for tests.
grpc::ByteBuffer OutputMessage(bool is_stderr, grpc::Slice data);

}  // namespace sc

#endif  // DAEMON_EDGE_EXEC_STREAM_H_
