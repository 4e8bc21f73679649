#pragma once
// The control plane's API keys (SPEC §3.4): `Authorization: Bearer <key>`.
//
// Only SHA-256 digests of the keys are kept. A presented key is hashed and
// compared with every configured digest using CRYPTO_memcmp, without stopping
// at the first match, so neither the position of the first differing byte nor
// the key's length nor which key matched shows in the timing.
// A successful check yields the key's id: the first 8 hex digits of its
// SHA-256, safe to log and to store (it cannot be turned back into the key).
#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flux::controlplane::auth {

class ApiKeys {
 public:
  // Surrounding spaces are trimmed and empty entries dropped, so the pieces of
  // "a, b," make two keys. Duplicates are kept once.
  static ApiKeys from(const std::vector<std::string>& keys);

  // No key configured: the caller decides whether that is allowed (ENV=development).
  bool empty() const { return keys_.empty(); }
  size_t size() const { return keys_.size(); }

  // The id of the key in a header value "Bearer <key>" (scheme in any case, one
  // or more spaces, a key of visible ASCII), or nullopt when the header is
  // malformed or the key is not one of ours.
  std::optional<std::string> authenticate(std::string_view authorization_header) const;

  // The id authenticate() returns for this key.
  static std::string key_id(std::string_view key);

 private:
  struct Key {
    std::array<unsigned char, 32> digest;
    std::string id;
  };
  std::vector<Key> keys_;
};

}  // namespace flux::controlplane::auth
