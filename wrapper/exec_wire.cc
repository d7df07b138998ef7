#include "wrapper/exec_wire.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include <cstdint>
#include <string>

#include "common/wire_field.h"

namespace sc {
namespace {

using google::protobuf::internal::WireFormatLite;
using google::protobuf::io::CodedOutputStream;

}  // namespace

grpc::ByteBuffer RequestMessage(const v1::ExecRequest& request) {
  grpc::Slice slice(request.SerializeAsString());
  return grpc::ByteBuffer(&slice, 1);
}

grpc::ByteBuffer StdinMessage(grpc::Slice data) {
  // A tag of one field (at most 5 bytes) and a length (at most 5).
  uint8_t header[10];
  uint8_t* end = CodedOutputStream::WriteTagToArray(
      WireFormatLite::MakeTag(v1::ExecRequest::kStdinFieldNumber,
                              WireFormatLite::WIRETYPE_LENGTH_DELIMITED),
      header);
  end = CodedOutputStream::WriteVarint32ToArray(static_cast<uint32_t>(data.size()), end);
  grpc::Slice slices[2] = {grpc::Slice(header, static_cast<size_t>(end - header)), std::move(data)};
  return grpc::ByteBuffer(slices, 2);
}

bool OutputOf(const std::vector<grpc::Slice>& slices, bool* is_stderr, std::vector<iovec>* data) {
  WirePieces pieces;
  pieces.reserve(slices.size());
  for (const grpc::Slice& s : slices) pieces.emplace_back(s.begin(), s.size());
  SingleField field;
  if (!ParseSingleBytesField(pieces, &field) ||
      (field.number != v1::ExecResponse::kStdoutFieldNumber &&
       field.number != v1::ExecResponse::kStderrFieldNumber)) {
    return false;
  }
  data->clear();
  for (size_t i = field.piece; i < pieces.size(); ++i) {
    size_t from = i == field.piece ? field.offset : 0;
    if (pieces[i].second == from) continue;
    // writev only reads through the pointer.
    data->push_back({const_cast<uint8_t*>(pieces[i].first + from), pieces[i].second - from});
  }
  *is_stderr = field.number == v1::ExecResponse::kStderrFieldNumber;
  return true;
}

bool ParseResponse(const std::vector<grpc::Slice>& slices, v1::ExecResponse* response) {
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return response->ParseFromString(bytes);
}

}  // namespace sc
