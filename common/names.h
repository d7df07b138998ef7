#ifndef COMMON_NAMES_H_
#define COMMON_NAMES_H_

#include <string>
#include <string_view>

namespace sc {

// Checks a Kubernetes DNS-1123 label (namespace or object name as used for an
// instance): 1-63 characters of [a-z0-9-], starting and ending with [a-z0-9].
// Returns "" when valid, otherwise what is wrong, for a person.
std::string Dns1123LabelError(std::string_view value);

// Splits "NAMESPACE/NAME" and checks both parts. Returns "" when valid.
std::string ParseInstanceName(std::string_view text, std::string* ns, std::string* name);

}  // namespace sc

#endif  // COMMON_NAMES_H_
