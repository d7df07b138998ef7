#include "common/names.h"

namespace sc {
namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// Quotes a value for an error message without letting control bytes or a huge
// value through: requests are hostile and messages end up in logs.
std::string Printable(std::string_view value) {
  constexpr size_t kMax = 80;
  std::string out = "\"";
  for (size_t i = 0; i < value.size() && i < kMax; ++i) {
    unsigned char c = static_cast<unsigned char>(value[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  if (value.size() > kMax) out += "...";
  out += "\"";
  return out;
}

}  // namespace

std::string Dns1123LabelError(std::string_view value) {
  if (value.empty()) return "must not be empty";
  if (value.size() > 63) {
    return Printable(value) + " is longer than 63 characters";
  }
  for (char c : value) {
    if (!IsLowerAlnum(c) && c != '-') {
      return Printable(value) +
             " must consist of lowercase letters, digits and '-' (a DNS-1123 "
             "label)";
    }
  }
  if (!IsLowerAlnum(value.front()) || !IsLowerAlnum(value.back())) {
    return Printable(value) + " must start and end with a letter or digit";
  }
  return "";
}

std::string ParseInstanceName(std::string_view text, std::string* ns, std::string* name) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return Printable(text) + " is not of the form NAMESPACE/NAME";
  }
  std::string_view ns_part = text.substr(0, slash);
  std::string_view name_part = text.substr(slash + 1);
  if (std::string e = Dns1123LabelError(ns_part); !e.empty()) {
    return "namespace " + e;
  }
  if (std::string e = Dns1123LabelError(name_part); !e.empty()) {
    return "name " + e;
  }
  ns->assign(ns_part);
  name->assign(name_part);
  return "";
}

}  // namespace sc
