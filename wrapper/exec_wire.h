#ifndef WRAPPER_EXEC_WIRE_H_
#define WRAPPER_EXEC_WIRE_H_

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>
#include <sys/uio.h>

#include <vector>

#include "mounthelper.pb.h"

namespace sc {

namespace v1 = ::stoppablecontainer::mounthelper::v1;

// sc-exec's side of the Exec wire, on raw ByteBuffers (as the daemon's
// daemon/edge/exec_stream.h): the bytes are protobuf's, but stdin and output are
// not copied on their way between the socket and the file descriptors.

// `request` serialized.
grpc::ByteBuffer RequestMessage(const v1::ExecRequest& request);

// An ExecRequest with `data` as its stdin, `data` not copied.
grpc::ByteBuffer StdinMessage(grpc::Slice data);

// When `slices` (one ExecResponse) hold nothing but its stdout or stderr,
// sets *is_stderr, points `data` at the bytes inside the slices and returns
// true. Otherwise (started, exit, or any other encoding) returns false: parse
// the message with protobuf.
bool OutputOf(const std::vector<grpc::Slice>& slices, bool* is_stderr, std::vector<iovec>* data);

// The whole message parsed with protobuf.
bool ParseResponse(const std::vector<grpc::Slice>& slices, v1::ExecResponse* response);

}  // namespace sc

#endif  // WRAPPER_EXEC_WIRE_H_
