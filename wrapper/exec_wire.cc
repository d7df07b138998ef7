#include "wrapper/exec_wire.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include <cstdint>
#include <string>

namespace sc {
namespace {

using google::protobuf::internal::WireFormatLite;
using google::protobuf::io::CodedOutputStream;

// Reads a varint from the bytes of `slices`, starting at slice *i, offset
// *at; advances them. False if it does not fit in 32 bits or runs out.
bool ReadVarint32(const std::vector<grpc::Slice>& slices, size_t* i, size_t* at, uint32_t* value) {
  uint32_t result = 0;
  for (int shift = 0; shift < 35; shift += 7) {
    while (*i < slices.size() && *at == slices[*i].size()) {
      ++*i;
      *at = 0;
    }
    if (*i == slices.size()) return false;
    uint8_t byte = slices[*i].begin()[(*at)++];
    if (shift == 28 && (byte & 0xf0) != 0) return false;
    result |= static_cast<uint32_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *value = result;
      return true;
    }
  }
  return false;
}

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
  size_t i = 0, at = 0;
  uint32_t tag = 0, length = 0;
  if (!ReadVarint32(slices, &i, &at, &tag) || !ReadVarint32(slices, &i, &at, &length)) {
    return false;
  }
  if (WireFormatLite::GetTagWireType(tag) != WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
    return false;
  }
  int field = WireFormatLite::GetTagFieldNumber(tag);
  if (field != v1::ExecResponse::kStdoutFieldNumber &&
      field != v1::ExecResponse::kStderrFieldNumber) {
    return false;
  }
  // The rest must be exactly the field's bytes: anything after it (another
  // field) is for protobuf to make sense of.
  data->clear();
  size_t left = length;
  for (; i < slices.size(); ++i, at = 0) {
    size_t n = slices[i].size() - at;
    if (n == 0) continue;
    if (n > left) return false;
    data->push_back(
        {const_cast<uint8_t*>(slices[i].begin() + at), n});  // writev does not write to it
    left -= n;
  }
  if (left != 0) return false;
  *is_stderr = field == v1::ExecResponse::kStderrFieldNumber;
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
