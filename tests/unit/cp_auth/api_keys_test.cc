#include "controlplane/auth/api_keys.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace flux::controlplane::auth {
namespace {

using ::testing::Optional;

const std::string kKey = "k3y-0123456789abcdef";
const std::string kOther = "second-key_ZZZ";

TEST(ApiKeysTest, AcceptsEachConfiguredKeyAndNamesItByANonSecretId) {
  const auto keys = ApiKeys::from({kKey, kOther});
  EXPECT_EQ(keys.size(), 2u);
  const auto first = keys.authenticate("Bearer " + kKey);
  const auto second = keys.authenticate("Bearer " + kOther);
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(second.has_value());
  EXPECT_NE(*first, *second);
  EXPECT_EQ(*first, ApiKeys::key_id(kKey));
  EXPECT_THAT(*first, ::testing::MatchesRegex("[0-9a-f]{8}"));
  EXPECT_EQ(first->find(kKey), std::string::npos);
}

TEST(ApiKeysTest, RefusesKeysThatAreAlmostRight) {
  const auto keys = ApiKeys::from({kKey});
  std::string same_length = kKey;
  same_length.back() = 'X';
  EXPECT_EQ(keys.authenticate("Bearer " + same_length), std::nullopt);
  EXPECT_EQ(keys.authenticate("Bearer " + kKey.substr(0, kKey.size() - 1)), std::nullopt);  // a prefix
  EXPECT_EQ(keys.authenticate("Bearer " + kKey + "0"), std::nullopt);                       // longer
  EXPECT_EQ(keys.authenticate("Bearer " + kOther), std::nullopt);
}

TEST(ApiKeysTest, ParsesTheBearerSchemeStrictly) {
  const auto keys = ApiKeys::from({kKey});
  EXPECT_EQ(keys.authenticate(""), std::nullopt);
  EXPECT_EQ(keys.authenticate(kKey), std::nullopt);  // no scheme
  EXPECT_EQ(keys.authenticate("Bearer"), std::nullopt);
  EXPECT_EQ(keys.authenticate("Bearer "), std::nullopt);
  EXPECT_EQ(keys.authenticate("Basic " + kKey), std::nullopt);
  EXPECT_EQ(keys.authenticate("Bearer" + kKey), std::nullopt);  // no separator
  EXPECT_EQ(keys.authenticate("Bearer\t" + kKey), std::nullopt);
  EXPECT_EQ(keys.authenticate("Bearer " + kKey + " "), std::nullopt);
  EXPECT_EQ(keys.authenticate("Bearer " + kKey + " extra"), std::nullopt);
  EXPECT_EQ(keys.authenticate("Token " + kKey), std::nullopt);
  // The scheme is case-insensitive (RFC 7235); the key is not.
  EXPECT_THAT(keys.authenticate("bearer " + kKey), Optional(ApiKeys::key_id(kKey)));
  EXPECT_THAT(keys.authenticate("BEARER  " + kKey), Optional(ApiKeys::key_id(kKey)));
  std::string upper = kKey;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_EQ(keys.authenticate("Bearer " + upper), std::nullopt);
}

TEST(ApiKeysTest, ConfigurationTrimsAndDropsEmptyEntries) {
  const auto keys = ApiKeys::from({" " + kKey + " ", "", "  ", kKey});
  EXPECT_EQ(keys.size(), 1u);
  EXPECT_TRUE(keys.authenticate("Bearer " + kKey).has_value());
  EXPECT_TRUE(ApiKeys::from({"", " "}).empty());
}

TEST(ApiKeysTest, NoKeysAuthenticatesNothing) {
  const auto keys = ApiKeys::from({});
  EXPECT_TRUE(keys.empty());
  EXPECT_EQ(keys.authenticate("Bearer anything"), std::nullopt);
  EXPECT_EQ(keys.authenticate(""), std::nullopt);
}

}  // namespace
}  // namespace flux::controlplane::auth
