#include "common/wire_field.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "mounthelper.pb.h"

namespace sc {
namespace {

namespace v1 = ::stoppablecontainer::mounthelper::v1;

// `bytes` cut into pieces at the given offsets.
WirePieces Cut(const std::string& bytes, std::vector<size_t> cuts) {
  WirePieces pieces;
  size_t at = 0;
  cuts.push_back(bytes.size());
  for (size_t cut : cuts) {
    pieces.emplace_back(reinterpret_cast<const uint8_t*>(bytes.data()) + at, cut - at);
    at = cut;
  }
  return pieces;
}

// The value the parser points at, gathered from the pieces.
std::string Value(const WirePieces& pieces, const SingleField& f) {
  std::string out;
  for (size_t i = f.piece; i < pieces.size(); ++i) {
    size_t from = i == f.piece ? f.offset : 0;
    out.append(reinterpret_cast<const char*>(pieces[i].first) + from, pieces[i].second - from);
  }
  return out;
}

}  // namespace

TEST_CASE("ParseSingleBytesField finds stdin/stdout/stderr where protobuf put them", "[exec]") {
  for (size_t size : {size_t{0}, size_t{1}, size_t{127}, size_t{128}, size_t{300000}}) {
    std::string payload(size, 'x');
    for (size_t i = 0; i < size; ++i) payload[i] = static_cast<char>(i * 13);
    v1::ExecResponse out;
    out.set_stderr(payload);
    v1::ExecRequest in;
    in.set_stdin(payload);
    for (const auto& [bytes, number] :
         {std::make_pair(out.SerializeAsString(), int{v1::ExecResponse::kStderrFieldNumber}),
          std::make_pair(in.SerializeAsString(), int{v1::ExecRequest::kStdinFieldNumber})}) {
      // Every way of cutting the header, and a cut inside the value.
      for (size_t cut = 0; cut <= std::min<size_t>(bytes.size(), 6); ++cut) {
        INFO("size " << size << " cut " << cut);
        WirePieces pieces = Cut(bytes, {cut, std::max(cut, bytes.size() / 2)});
        SingleField f;
        REQUIRE(ParseSingleBytesField(pieces, &f));
        CHECK(f.number == number);
        CHECK(f.length == size);
        CHECK(Value(pieces, f) == payload);
      }
    }
  }
}

TEST_CASE("ParseSingleBytesField leaves everything else to protobuf", "[exec]") {
  SingleField f;
  auto parse = [&](const std::string& bytes) { return ParseSingleBytesField(Cut(bytes, {}), &f); };
  CHECK_FALSE(parse(""));
  CHECK_FALSE(parse(std::string("\x12", 1)));  // no length
  CHECK_FALSE(
      parse(std::string("\x12\x03"
                        "ab")));  // truncated
  CHECK_FALSE(
      parse(std::string("\x12\x01"
                        "ab")));                                       // a byte after the field
  CHECK_FALSE(parse(std::string("\x08\x01", 2)));                      // varint field
  CHECK_FALSE(parse(std::string("\x02\x00", 2)));                      // field number 0
  CHECK_FALSE(parse(std::string("\x12\xff\xff\xff\xff\x7f", 6)));      // length beyond 32 bits
  CHECK_FALSE(parse(std::string("\x12\x80\x80\x80\x80\x80\x00", 7)));  // overlong varint
  v1::ExecResponse exit;
  exit.mutable_exit()->set_exit_code(3);
  // exit is a message (also LEN): a single field, number 4, for the caller to
  // tell apart from output.
  REQUIRE(parse(exit.SerializeAsString()));
  CHECK(f.number == v1::ExecResponse::kExitFieldNumber);
  v1::ExecResponse two;
  two.set_stdout("a");
  std::string bytes = two.SerializeAsString() + two.SerializeAsString();
  CHECK_FALSE(parse(bytes));  // two fields (protobuf: the last one wins)
}

}  // namespace sc
