#pragma once
// The rules for URLs the product fetches or calls (job inputs, webhooks):
// which schemes are allowed, and which addresses must never be reached, so
// that a job cannot make a worker or the control plane talk to loopback,
// private networks or a cloud metadata service (SSRF).
//
// Two layers, both needed: check_url() refuses what is visible in the text
// (scheme, literal addresses in every spelling libc accepts, well-known
// internal names) and check_url_resolved() adds a DNS lookup; but DNS can
// answer differently a moment later, so the HTTP client checks again, with
// is_address_allowed(), on the very address it connects to.
//
// Error codes: "url_invalid", "url_scheme_forbidden", "url_address_forbidden",
// "url_path_forbidden" (all with category INVALID_ARGUMENT).
#include <sys/socket.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace flux::http {

// The parts of an absolute URL. `scheme` and `host` are lower case; an IPv6
// host keeps no brackets. `path` and `query` are as written (not decoded);
// `query` excludes the '?', and the fragment is dropped. `port` is -1 when
// absent.
struct ParsedUrl {
  std::string scheme, host, path, query;
  int port = -1;
  std::string userinfo;
};

// Strict parser: refuses control characters, spaces, backslashes, non-ASCII
// or '%' in the authority, more than one '@', empty or out-of-range ports and
// malformed bracketed IPv6. A URL without "//" after the scheme ("data:...")
// parses with an empty host and the rest as its path.
absl::StatusOr<ParsedUrl> parse_url(std::string_view url);

struct UrlPolicy {
  std::vector<std::string> allowed_schemes{"https", "http", "s3"};
  // ALLOW_PRIVATE_INPUTS: loopback and private addresses allowed. Link-local
  // and cloud metadata addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254,
  // 100.100.100.200, 192.0.0.192, in every IPv6 spelling) and metadata names
  // stay forbidden: they hand out the machine's cloud credentials.
  bool allow_private = false;
  // LOCAL_INPUT_DIR: file:// URLs are allowed only for paths under it.
  std::optional<std::filesystem::path> local_input_dir;
  // Exact numeric addresses ("127.0.0.1", "::1") allowed although forbidden.
  // NOT read from configuration: it exists so that tests on loopback can allow
  // one address while proving that every other forbidden one is refused,
  // including at connect time. Leave empty in production code.
  std::vector<std::string> test_only_allowed_addresses;
};

// Syntax, scheme, literal address and well-known internal names; no DNS.
absl::Status check_url(std::string_view url, const UrlPolicy& policy);

// check_url() plus a DNS lookup of the host (http/https only): refused when
// ANY resolved address is forbidden, unless allow_private. A name that does
// not resolve is "url_invalid".
absl::Status check_url_resolved(std::string_view url, const UrlPolicy& policy);

// True for loopback, private, link-local, cloud metadata, unspecified,
// multicast, carrier-grade NAT, reserved and documentation ranges, and for
// IPv6 forms that embed such an IPv4 address (mapped, compatible, NAT64,
// 6to4). Also true for non-IP families. The one classifier used everywhere.
bool is_forbidden_address(const sockaddr* addr);

// The policy's verdict on one address: allowed when public, when the policy
// allows private addresses and it is not a metadata address, or when listed
// in test_only_allowed_addresses.
bool is_address_allowed(const sockaddr* addr, const UrlPolicy& policy);

// For file:// URLs: the canonical local path (symlinks resolved) when it is a
// regular file inside `dir`; "url_path_forbidden" when it escapes `dir` or is
// not a regular file, "input_not_found" when it does not exist.
absl::StatusOr<std::filesystem::path> resolve_local_input(std::string_view file_url, const std::filesystem::path& dir);

// The URL without userinfo and query, for logs and error messages (queries
// often carry presigned signatures or tokens).
std::string redact_url(std::string_view url);

// Decodes %XX escapes; nullopt on a malformed escape or an encoded NUL.
std::optional<std::string> percent_decode(std::string_view text);

}  // namespace flux::http
