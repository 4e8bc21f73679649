#include "shared/http/url_policy.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <system_error>

#include "shared/core/error.h"

namespace flux::http {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxUrlLength = size_t{16} * 1024;

absl::Status url_invalid(std::string_view message) { return flux::invalid_argument("url_invalid", message); }
absl::Status scheme_forbidden(std::string_view message) {
  return flux::invalid_argument("url_scheme_forbidden", message);
}
absl::Status address_forbidden(std::string_view message) {
  return flux::invalid_argument("url_address_forbidden", message);
}
absl::Status path_forbidden(std::string_view message) { return flux::invalid_argument("url_path_forbidden", message); }

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
char to_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), to_lower);
  return out;
}
bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// The scheme of `url` in lower case, or nullopt when the text does not start
// with a syntactically valid one (a bare path, say).
std::optional<std::string> scheme_of(std::string_view url) {
  const size_t colon = url.find(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  if (!is_alpha(url[0])) return std::nullopt;
  for (size_t i = 1; i < colon; ++i) {
    const char c = url[i];
    if (!is_alpha(c) && !is_digit(c) && c != '+' && c != '-' && c != '.') return std::nullopt;
  }
  return lower(url.substr(0, colon));
}

// One label of a numeric IPv4 host the way inet_aton() (and so getaddrinfo(),
// and so curl) reads it: 0x-prefixed hex, 0-prefixed octal, or decimal.
std::optional<uint64_t> parse_ipv4_part(std::string_view part) {
  int base = 10;
  if (part.size() >= 2 && part[0] == '0' && (part[1] == 'x' || part[1] == 'X')) {
    base = 16;
    part.remove_prefix(2);
    if (part.empty()) return 0;
  } else if (part.size() >= 2 && part[0] == '0') {
    base = 8;
    part.remove_prefix(1);
  }
  if (part.empty()) return std::nullopt;
  uint64_t value = 0;
  for (char c : part) {
    uint64_t digit;
    if (is_digit(c)) {
      digit = static_cast<uint64_t>(c - '0');
    } else if (base == 16 && is_hex(c)) {
      digit = static_cast<uint64_t>(to_lower(c) - 'a') + 10;
    } else {
      return std::nullopt;
    }
    if (digit >= static_cast<uint64_t>(base)) return std::nullopt;
    value = value * static_cast<uint64_t>(base) + digit;
    if (value > 0xffffffffULL) return std::nullopt;
  }
  return value;
}

bool label_is_numeric(std::string_view label) {
  if (label.empty()) return false;
  if (label.size() >= 2 && label[0] == '0' && (label[1] == 'x' || label[1] == 'X')) {
    return std::all_of(label.begin() + 2, label.end(), is_hex);
  }
  return std::all_of(label.begin(), label.end(), is_digit);
}

// Hosts whose last label is a number are IPv4 addresses to libc ("127.1",
// "2130706433", "0x7f.1", "0177.0.0.1."); DNS names never end in one.
bool host_ends_in_number(std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  const size_t dot = host.rfind('.');
  return label_is_numeric(dot == std::string_view::npos ? host : host.substr(dot + 1));
}

// The address of a numeric IPv4 host in any spelling inet_aton() accepts, in
// host byte order; nullopt when it is not one.
std::optional<uint32_t> parse_ipv4_any(std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  std::vector<uint64_t> parts;
  size_t start = 0;
  while (true) {
    const size_t dot = host.find('.', start);
    const auto part = parse_ipv4_part(host.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (!part) return std::nullopt;
    parts.push_back(*part);
    if (parts.size() > 4) return std::nullopt;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  // All parts but the last are single bytes; the last fills the rest.
  uint64_t address = 0;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    if (parts[i] > 0xff) return std::nullopt;
    address |= parts[i] << (8 * (3 - i));
  }
  const uint64_t last_limit = 0xffffffffULL >> (8 * (parts.size() - 1));
  if (parts.back() > last_limit) return std::nullopt;
  address |= parts.back();
  return static_cast<uint32_t>(address);
}

bool in_v4(uint32_t address, uint32_t network, int prefix) {
  const uint32_t mask = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
  return (address & mask) == (network & mask);
}

constexpr uint32_t v4(uint32_t a, uint32_t b, uint32_t c, uint32_t d) { return (a << 24) | (b << 16) | (c << 8) | d; }

bool is_forbidden_v4(uint32_t a) {
  struct Range {
    uint32_t network;
    int prefix;
  };
  static constexpr std::array<Range, 14> kRanges{{
      {v4(0, 0, 0, 0), 8},        // "this network", 0.0.0.0 reaches loopback
      {v4(10, 0, 0, 0), 8},       // private
      {v4(100, 64, 0, 0), 10},    // carrier-grade NAT (also Alibaba's metadata)
      {v4(127, 0, 0, 0), 8},      // loopback
      {v4(169, 254, 0, 0), 16},   // link-local, AWS/GCP/Azure metadata
      {v4(172, 16, 0, 0), 12},    // private
      {v4(192, 0, 0, 0), 24},     // IETF protocol assignments (Oracle metadata)
      {v4(192, 0, 2, 0), 24},     // documentation
      {v4(192, 168, 0, 0), 16},   // private
      {v4(198, 18, 0, 0), 15},    // benchmarking
      {v4(198, 51, 100, 0), 24},  // documentation
      {v4(203, 0, 113, 0), 24},   // documentation
      {v4(224, 0, 0, 0), 4},      // multicast
      {v4(240, 0, 0, 0), 4},      // reserved, broadcast
  }};
  return std::any_of(kRanges.begin(), kRanges.end(), [a](const Range& r) { return in_v4(a, r.network, r.prefix); });
}

uint32_t v4_at(const uint8_t* bytes) {
  return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) | uint32_t{bytes[3]};
}

bool is_forbidden_v6(const uint8_t* b) {
  static constexpr uint8_t kZero[8] = {};
  if (std::memcmp(b, kZero, 8) == 0) {
    // ::ffff:a.b.c.d reaches the IPv4 address itself; everything else in ::/64
    // (::, ::1, IPv4-compatible, SIIT) is unspecified, loopback or obsolete.
    if (b[8] == 0 && b[9] == 0 && b[10] == 0xff && b[11] == 0xff) return is_forbidden_v4(v4_at(b + 12));
    return true;
  }
  const uint16_t first = static_cast<uint16_t>((b[0] << 8) | b[1]);
  const uint16_t second = static_cast<uint16_t>((b[2] << 8) | b[3]);
  if (first == 0x0064 && second == 0xff9b) {
    static constexpr uint8_t kNat64Middle[8] = {};
    if (std::memcmp(b + 4, kNat64Middle, 8) == 0) return is_forbidden_v4(v4_at(b + 12));  // 64:ff9b::/96
    return true;                                                                          // 64:ff9b:1::/48
  }
  if (first == 0x0100 && second == 0 && b[4] == 0 && b[5] == 0 && b[6] == 0 && b[7] == 0) return true;  // discard
  if (first == 0x2001 && second < 0x0200) return true;        // 2001::/23: Teredo, ORCHID, other special purposes
  if (first == 0x2001 && second == 0x0db8) return true;       // documentation
  if (first == 0x2002) return is_forbidden_v4(v4_at(b + 2));  // 6to4 embeds the IPv4 address
  if ((first & 0xfe00) == 0xfc00) return true;                // unique local (AWS metadata fd00:ec2::254)
  if ((first & 0xffc0) == 0xfe80) return true;                // link-local
  if ((first & 0xffc0) == 0xfec0) return true;                // site-local (deprecated)
  if ((first & 0xff00) == 0xff00) return true;                // multicast
  return false;
}

// Cloud metadata services hand instance credentials to whoever reaches them.
// They stay forbidden even under allow_private: an operator who lets jobs read
// from an internal store did not mean to hand out the instance's IAM role.
// Link-local (169.254/16, fe80::/10) holds AWS, GCP, Azure, ECS task and
// OpenStack metadata; 100.100.100.200 is Alibaba's, 192.0.0.192 Oracle's.
bool is_metadata_v4(uint32_t a) {
  return in_v4(a, v4(169, 254, 0, 0), 16) || a == v4(100, 100, 100, 200) || a == v4(192, 0, 0, 192);
}

bool is_metadata_v6(const uint8_t* b) {
  static constexpr uint8_t kAwsMetadata[16] = {0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54};
  if (std::memcmp(b, kAwsMetadata, 16) == 0) return true;      // fd00:ec2::254
  if ((b[0] == 0xfe) && ((b[1] & 0xc0) == 0x80)) return true;  // fe80::/10 link-local
  // IPv6 spellings that reach an IPv4 metadata address: mapped, compatible,
  // NAT64 and 6to4.
  static constexpr uint8_t kZero[12] = {};
  static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static constexpr uint8_t kNat64Prefix[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  if (std::memcmp(b, kMappedPrefix, 12) == 0 || std::memcmp(b, kZero, 12) == 0 ||
      std::memcmp(b, kNat64Prefix, 12) == 0) {
    return is_metadata_v4(v4_at(b + 12));
  }
  if (b[0] == 0x20 && b[1] == 0x02) return is_metadata_v4(v4_at(b + 2));
  return false;
}

bool is_metadata_address(const sockaddr* addr) {
  if (addr->sa_family == AF_INET) {
    return is_metadata_v4(ntohl(reinterpret_cast<const sockaddr_in*>(addr)->sin_addr.s_addr));
  }
  if (addr->sa_family == AF_INET6)
    return is_metadata_v6(reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr.s6_addr);
  return false;
}

// The names of metadata services: refused whatever the policy.
bool is_metadata_name(std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  static constexpr std::array<std::string_view, 4> kNames{"metadata", "metadata.google.internal", "instance-data",
                                                          "instance-data.ec2.internal"};
  return std::find(kNames.begin(), kNames.end(), host) != kNames.end();
}

// Names that reach the local machine or a metadata service without DNS, or
// that only internal resolvers answer.
bool is_forbidden_name(std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  static constexpr std::array<std::string_view, 7> kExact{
      "localhost", "localhost.localdomain",    "ip6-localhost", "ip6-loopback",
      "metadata",  "metadata.google.internal", "instance-data"};
  static constexpr std::array<std::string_view, 5> kSuffixes{".localhost", ".local", ".localdomain", ".internal",
                                                             ".home.arpa"};
  if (std::find(kExact.begin(), kExact.end(), host) != kExact.end()) return true;
  return std::any_of(kSuffixes.begin(), kSuffixes.end(), [host](std::string_view s) { return ends_with(host, s); });
}

struct SockAddr {
  sockaddr_storage storage{};
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

SockAddr make_v4(uint32_t host_order) {
  SockAddr out;
  auto* sin = reinterpret_cast<sockaddr_in*>(&out.storage);
  sin->sin_family = AF_INET;
  sin->sin_addr.s_addr = htonl(host_order);
  return out;
}

std::optional<SockAddr> make_v6(const std::string& text) {
  SockAddr out;
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
  sin6->sin6_family = AF_INET6;
  if (inet_pton(AF_INET6, text.c_str(), &sin6->sin6_addr) != 1) return std::nullopt;
  return out;
}

bool same_address(const sockaddr* a, const std::string& text) {
  if (a->sa_family == AF_INET) {
    in_addr parsed{};
    if (inet_pton(AF_INET, text.c_str(), &parsed) != 1) return false;
    return reinterpret_cast<const sockaddr_in*>(a)->sin_addr.s_addr == parsed.s_addr;
  }
  if (a->sa_family == AF_INET6) {
    in6_addr parsed{};
    if (inet_pton(AF_INET6, text.c_str(), &parsed) != 1) return false;
    return std::memcmp(&reinterpret_cast<const sockaddr_in6*>(a)->sin6_addr, &parsed, sizeof(parsed)) == 0;
  }
  return false;
}

// True when `p` (absolute, normalised) lies strictly below `root`.
bool path_within(const fs::path& p, const fs::path& root) {
  const fs::path relative = p.lexically_relative(root);
  if (relative.empty() || relative == ".") return false;
  return *relative.begin() != "..";
}

bool has_dot_segment(const fs::path& p) {
  return std::any_of(p.begin(), p.end(), [](const fs::path& part) { return part == ".." || part == "."; });
}

// The local path a file:// URL names, decoded and checked to be absolute,
// with no "." or ".." segment.
absl::StatusOr<fs::path> file_url_path(const ParsedUrl& url) {
  if (!url.host.empty() && url.host != "localhost") return url_invalid("file URLs must not name a remote host");
  if (url.port != -1 || !url.userinfo.empty() || !url.query.empty()) {
    return url_invalid("file URLs take no port, user or query");
  }
  const auto decoded = percent_decode(url.path);
  if (!decoded) return url_invalid("malformed percent escape in the path");
  if (decoded->empty() || (*decoded)[0] != '/') return url_invalid("file URLs need an absolute path");
  for (unsigned char c : *decoded) {
    if (c < 0x20 || c == 0x7f) return url_invalid("control character in the path");
  }
  fs::path p(*decoded);
  if (has_dot_segment(p)) return path_forbidden("'.' and '..' segments are not allowed in file URLs");
  return p.lexically_normal();
}

absl::Status check_s3(const ParsedUrl& url) {
  if (url.port != -1 || !url.userinfo.empty() || !url.query.empty()) {
    return url_invalid("s3 URLs take no port, user or query");
  }
  const std::string& bucket = url.host;
  if (bucket.size() < 3 || bucket.size() > 63) return url_invalid("s3 bucket names have 3 to 63 characters");
  const bool bucket_ok = std::all_of(bucket.begin(), bucket.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || is_digit(c) || c == '.' || c == '-' || c == '_';
  });
  if (!bucket_ok) return url_invalid("invalid s3 bucket name");
  if (url.path.size() < 2) return url_invalid("s3 URLs need an object key: s3://bucket/key");
  const auto key = percent_decode(std::string_view(url.path).substr(1));
  if (!key) return url_invalid("malformed percent escape in the s3 key");
  for (unsigned char c : *key) {
    if (c < 0x20 || c == 0x7f) return url_invalid("control character in the s3 key");
  }
  if (has_dot_segment(fs::path(*key))) return url_invalid("'.' and '..' segments are not allowed in s3 keys");
  return absl::OkStatus();
}

absl::Status check_http_host(const ParsedUrl& url, const UrlPolicy& policy) {
  if (url.host.empty()) return url_invalid("missing host");
  std::optional<SockAddr> literal;
  if (url.host.find(':') != std::string::npos) {
    literal = make_v6(url.host);
    if (!literal) return url_invalid("malformed IPv6 address");
  } else if (host_ends_in_number(url.host)) {
    const auto address = parse_ipv4_any(url.host);
    if (!address) return url_invalid("malformed numeric host: " + url.host);
    literal = make_v4(*address);
  }
  if (literal) {
    if (!is_address_allowed(literal->get(), policy)) {
      return address_forbidden("address " + url.host + " is loopback, private, link-local or otherwise not public");
    }
    return absl::OkStatus();
  }
  if (is_metadata_name(url.host) || (!policy.allow_private && is_forbidden_name(url.host))) {
    return address_forbidden("host " + url.host + " names the local machine or an internal service");
  }
  return absl::OkStatus();
}

std::string address_text(const sockaddr* addr) {
  char buffer[INET6_ADDRSTRLEN] = {};
  if (addr->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(addr)->sin_addr, buffer, sizeof(buffer));
  } else if (addr->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr, buffer, sizeof(buffer));
  }
  return buffer;
}

}  // namespace

std::optional<std::string> percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    if (i + 2 >= text.size() || !is_hex(text[i + 1]) || !is_hex(text[i + 2])) return std::nullopt;
    const auto nibble = [](char c) { return is_digit(c) ? c - '0' : to_lower(c) - 'a' + 10; };
    const char decoded = static_cast<char>(nibble(text[i + 1]) * 16 + nibble(text[i + 2]));
    if (decoded == '\0') return std::nullopt;
    out.push_back(decoded);
    i += 2;
  }
  return out;
}

absl::StatusOr<ParsedUrl> parse_url(std::string_view url) {
  if (url.empty()) return url_invalid("empty URL");
  if (url.size() > kMaxUrlLength) return url_invalid("URL longer than 16 KiB");
  for (unsigned char c : url) {
    if (c <= 0x20 || c == 0x7f) return url_invalid("control character or space in the URL");
    if (c == '\\') return url_invalid("backslash in the URL");
  }
  const auto scheme = scheme_of(url);
  if (!scheme) return url_invalid("missing or malformed scheme");
  ParsedUrl out;
  out.scheme = *scheme;
  std::string_view rest = url.substr(scheme->size() + 1);
  if (const size_t hash = rest.find('#'); hash != std::string_view::npos) rest = rest.substr(0, hash);

  if (rest.substr(0, 2) == "//") {
    rest.remove_prefix(2);
    const size_t authority_end = rest.find_first_of("/?");
    std::string_view authority = rest.substr(0, authority_end);
    rest = authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);

    if (std::count(authority.begin(), authority.end(), '@') > 1) return url_invalid("more than one '@' in the host");
    if (const size_t at = authority.find('@'); at != std::string_view::npos) {
      out.userinfo = std::string(authority.substr(0, at));
      authority.remove_prefix(at + 1);
    }
    for (unsigned char c : authority) {
      if (c >= 0x80 || c == '%') return url_invalid("non-ASCII or percent-encoded host (use punycode)");
    }
    for (unsigned char c : out.userinfo) {
      if (c >= 0x80) return url_invalid("non-ASCII user information");
    }

    std::string_view host;
    std::string_view port_part;
    bool has_port = false;
    if (!authority.empty() && authority[0] == '[') {
      const size_t close = authority.find(']');
      if (close == std::string_view::npos) return url_invalid("unterminated '[' in the host");
      host = authority.substr(1, close - 1);
      const std::string_view after = authority.substr(close + 1);
      if (!after.empty()) {
        if (after[0] != ':') return url_invalid("garbage after the IPv6 address");
        has_port = true;
        port_part = after.substr(1);
      }
      in6_addr parsed{};
      if (inet_pton(AF_INET6, std::string(host).c_str(), &parsed) != 1) return url_invalid("malformed IPv6 address");
    } else {
      const size_t colon = authority.find(':');
      host = authority.substr(0, colon);
      if (colon != std::string_view::npos) {
        has_port = true;
        port_part = authority.substr(colon + 1);
      }
      const bool host_ok = std::all_of(host.begin(), host.end(), [](char c) {
        return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_';
      });
      if (!host_ok) return url_invalid("invalid character in the host");
    }
    if (has_port) {
      if (port_part.empty() || port_part.size() > 5 || !std::all_of(port_part.begin(), port_part.end(), is_digit)) {
        return url_invalid("malformed port");
      }
      const int port = std::stoi(std::string(port_part));
      if (port < 1 || port > 65535) return url_invalid("port out of range");
      out.port = port;
    }
    out.host = lower(host);
  }

  const size_t question = rest.find('?');
  out.path = std::string(rest.substr(0, question));
  if (question != std::string_view::npos) out.query = std::string(rest.substr(question + 1));
  return out;
}

bool is_forbidden_address(const sockaddr* addr) {
  if (addr == nullptr) return true;
  if (addr->sa_family == AF_INET) {
    return is_forbidden_v4(ntohl(reinterpret_cast<const sockaddr_in*>(addr)->sin_addr.s_addr));
  }
  if (addr->sa_family == AF_INET6) {
    return is_forbidden_v6(reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr.s6_addr);
  }
  return true;
}

bool is_address_allowed(const sockaddr* addr, const UrlPolicy& policy) {
  if (addr == nullptr || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6)) return false;
  if (!is_metadata_address(addr) && (policy.allow_private || !is_forbidden_address(addr))) return true;
  return std::any_of(policy.test_only_allowed_addresses.begin(), policy.test_only_allowed_addresses.end(),
                     [addr](const std::string& allowed) { return same_address(addr, allowed); });
}

absl::Status check_url(std::string_view url, const UrlPolicy& policy) {
  if (url.empty()) return url_invalid("empty URL");
  const auto scheme = scheme_of(url);
  if (!scheme) return scheme_forbidden("not a URL with a scheme; bare paths are not accepted");
  // Only these schemes are ever fetched, whatever the allow-list says:
  // concat:, data:, pipe:, subfile:, gopher:, ftp: ... are refused outright.
  if (*scheme == "file") {
    if (!policy.local_input_dir) return scheme_forbidden("file URLs are not allowed (LOCAL_INPUT_DIR is not set)");
  } else {
    const bool supported = *scheme == "http" || *scheme == "https" || *scheme == "s3";
    const bool listed = std::find(policy.allowed_schemes.begin(), policy.allowed_schemes.end(), *scheme) !=
                        policy.allowed_schemes.end();
    if (!supported || !listed) return scheme_forbidden("scheme '" + *scheme + "' is not allowed");
  }

  auto parsed = parse_url(url);
  if (!parsed.ok()) return parsed.status();
  if (parsed->scheme == "s3") return check_s3(*parsed);
  if (parsed->scheme == "file") {
    auto path = file_url_path(*parsed);
    if (!path.ok()) return path.status();
    const fs::path root = fs::absolute(*policy.local_input_dir).lexically_normal();
    if (!path_within(*path, root)) return path_forbidden("file URL outside LOCAL_INPUT_DIR");
    return absl::OkStatus();
  }
  if (url.substr(scheme->size() + 1, 2) != "//") return url_invalid("http URLs need '//' and a host");
  return check_http_host(*parsed, policy);
}

absl::Status check_url_resolved(std::string_view url, const UrlPolicy& policy) {
  if (auto status = check_url(url, policy); !status.ok()) return status;
  auto parsed = parse_url(url);
  if (!parsed.ok()) return parsed.status();
  if (parsed->scheme != "http" && parsed->scheme != "https") return absl::OkStatus();
  if (policy.allow_private) return absl::OkStatus();

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* raw = nullptr;
  const int rc = getaddrinfo(parsed->host.c_str(), nullptr, &hints, &raw);
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> results(raw, &freeaddrinfo);
  if (rc == EAI_AGAIN) return flux::unavailable("url_resolve_failed", "temporary DNS failure for " + parsed->host);
  if (rc != 0) return url_invalid("cannot resolve host " + parsed->host + ": " + gai_strerror(rc));
  for (const addrinfo* ai = results.get(); ai != nullptr; ai = ai->ai_next) {
    if (!is_address_allowed(ai->ai_addr, policy)) {
      return address_forbidden("host " + parsed->host + " resolves to the non-public address " +
                               address_text(ai->ai_addr));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<fs::path> resolve_local_input(std::string_view file_url, const fs::path& dir) {
  auto parsed = parse_url(file_url);
  if (!parsed.ok()) return parsed.status();
  if (parsed->scheme != "file") return scheme_forbidden("not a file URL");
  auto path = file_url_path(*parsed);
  if (!path.ok()) return path.status();

  std::error_code ec;
  const fs::path root = fs::canonical(dir, ec);
  if (ec) return flux::failed_precondition("local_input_dir_unavailable", "LOCAL_INPUT_DIR: " + ec.message());
  const fs::path lexical_root = fs::absolute(dir, ec).lexically_normal();
  // The URL may name the directory as configured or as it really is.
  if (!path_within(*path, lexical_root) && !path_within(*path, root)) {
    return path_forbidden("file URL outside LOCAL_INPUT_DIR");
  }
  const fs::path real = fs::canonical(*path, ec);
  if (ec) return flux::not_found("input_not_found", "local input " + path->string() + ": " + ec.message());
  if (!path_within(real, root)) return path_forbidden("file URL leads outside LOCAL_INPUT_DIR (symlink)");
  if (!fs::is_regular_file(real, ec)) return path_forbidden("local input is not a regular file");
  return real;
}

std::string redact_url(std::string_view url) {
  auto parsed = parse_url(url);
  if (!parsed.ok()) return "<invalid url>";
  const std::string& s = parsed->scheme;
  if (s != "http" && s != "https" && s != "s3" && s != "file") return s + ":<redacted>";
  std::string out = s + "://";
  out += parsed->host.find(':') != std::string::npos ? "[" + parsed->host + "]" : parsed->host;
  if (parsed->port != -1) out += ":" + std::to_string(parsed->port);
  out += parsed->path;
  return out;
}

}  // namespace flux::http
