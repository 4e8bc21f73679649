#include "shared/core/xml_text.h"

namespace flux {

void append_xml_escaped(std::string& out, std::string_view text) {
  out.reserve(out.size() + text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += "&#";
          out += std::to_string(static_cast<unsigned char>(c));
          out += ';';
        } else {
          out.push_back(c);
        }
    }
  }
}

}  // namespace flux
