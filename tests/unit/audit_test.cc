#include "daemon/identity/audit.h"

#include <catch2/catch.hpp>

namespace sc {

TEST_CASE("JSON quoting escapes what a hostile request could inject", "[audit]") {
  CHECK(JsonQuote("plain") == "\"plain\"");
  CHECK(JsonQuote("a\"b\\c") == "\"a\\\"b\\\\c\"");
  CHECK(JsonQuote("line\nbreak\t") == "\"line\\nbreak\\t\"");
  CHECK(JsonQuote(std::string("nul\0x", 5)) == "\"nul\\u0000x\"");
  CHECK(JsonQuote("\x1b[31m") == "\"\\u001b[31m\"");
  CHECK(JsonQuote("caf\xc3\xa9") == "\"caf\xc3\xa9\"");        // valid UTF-8 kept
  CHECK(JsonQuote("bad\xff\xc3") == "\"bad\\ufffd\\ufffd\"");  // invalid replaced
}

TEST_CASE("an audit record of an unidentified caller is one JSON object", "[audit]") {
  AuditRecord record;
  record.method = "Exec";
  record.grpc_peer = "fd:9\"}";
  record.status = AsDenial(absl::PermissionDeniedError("no \"peer\""));
  record.details = {{"instance", "ns/name"}};
  CHECK(AuditLog::Format(record) ==
        "\"audit\":true,\"method\":\"Exec\",\"peer\":\"fd:9\\\"}\",\"decision\":\"deny\","
        "\"code\":\"PERMISSION_DENIED\",\"error\":\"no \\\"peer\\\"\",\"instance\":\"ns/name\"");
}

}  // namespace sc
