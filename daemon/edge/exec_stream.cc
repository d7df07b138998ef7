#include "daemon/edge/exec_stream.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/impl/codegen/proto_utils.h>

#include <cstdint>

#include "common/wire_field.h"

namespace sc {

bool ExecStream::Read(v1::ExecRequest* request) {
  grpc::ByteBuffer buffer;
  if (!raw_->Read(&buffer)) return false;
  malformed_ = !grpc::SerializationTraits<v1::ExecRequest>::Deserialize(&buffer, request).ok();
  return !malformed_;
}

ExecStream::Got ExecStream::ReadInput(v1::ExecRequest* request,
                                      std::vector<grpc::Slice>* stdin_data) {
  grpc::ByteBuffer buffer;
  if (!raw_->Read(&buffer)) return Got::kEnd;
  std::vector<grpc::Slice> slices;
  if (buffer.Dump(&slices).ok()) {
    WirePieces pieces;
    pieces.reserve(slices.size());
    for (const grpc::Slice& s : slices) pieces.emplace_back(s.begin(), s.size());
    SingleField field;
    if (ParseSingleBytesField(pieces, &field) &&
        field.number == v1::ExecRequest::kStdinFieldNumber) {
      stdin_data->clear();
      for (size_t i = field.piece; i < slices.size(); ++i) {
        size_t from = i == field.piece ? field.offset : 0;
        if (from < slices[i].size()) stdin_data->push_back(slices[i].sub(from, slices[i].size()));
      }
      meter_.OnStdin(field.length);
      return Got::kStdin;
    }
  }
  malformed_ = !grpc::SerializationTraits<v1::ExecRequest>::Deserialize(&buffer, request).ok();
  if (!malformed_) meter_.OnStdin(request->stdin().size());
  return malformed_ ? Got::kEnd : Got::kMessage;
}

bool ExecStream::Write(const v1::ExecResponse& response) {
  grpc::ByteBuffer buffer;
  bool own = false;
  if (!grpc::SerializationTraits<v1::ExecResponse>::Serialize(response, &buffer, &own).ok()) {
    return false;
  }
  meter_.OnSent(response);
  return raw_->Write(buffer);
}

bool ExecStream::WriteOutput(bool is_stderr, grpc::Slice data) {
  meter_.OnOutput(is_stderr, data.size());
  return raw_->Write(OutputMessage(is_stderr, std::move(data)));
}

grpc::ByteBuffer OutputMessage(bool is_stderr, grpc::Slice data) {
  using google::protobuf::internal::WireFormatLite;
  using google::protobuf::io::CodedOutputStream;
  int field =
      is_stderr ? v1::ExecResponse::kStderrFieldNumber : v1::ExecResponse::kStdoutFieldNumber;
  // A tag of one field (at most 5 bytes) and a length (at most 5).
  uint8_t header[10];
  uint8_t* end = CodedOutputStream::WriteTagToArray(
      WireFormatLite::MakeTag(field, WireFormatLite::WIRETYPE_LENGTH_DELIMITED), header);
  end = CodedOutputStream::WriteVarint32ToArray(static_cast<uint32_t>(data.size()), end);
  grpc::Slice slices[2] = {grpc::Slice(header, static_cast<size_t>(end - header)), std::move(data)};
  return grpc::ByteBuffer(slices, 2);
}

}  // namespace sc
