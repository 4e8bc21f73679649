#include "shared/s3/sigv4.h"

#include <gtest/gtest.h>

#include "shared/s3/s3_client.h"

namespace flux::s3 {
namespace {

using std::chrono::seconds;
using std::chrono::system_clock;

TEST(UriEncode, KeepsOnlyUnreservedCharactersAndOptionallySlash) {
  EXPECT_EQ(uri_encode("AZaz09-_.~", false), "AZaz09-_.~");
  EXPECT_EQ(uri_encode("a b+c=d&e/f", false), "a%20b%2Bc%3Dd%26e%2Ff");
  EXPECT_EQ(uri_encode("a b+c=d&e/f", true), "a%20b%2Bc%3Dd%26e/f");
  EXPECT_EQ(uri_encode("caf\xc3\xa9", true), "caf%C3%A9");  // UTF-8 bytes, upper-case hex
  EXPECT_EQ(uri_encode(std::string("\0\x7f", 2), true), "%00%7F");
}

TEST(EncodeKey, EncodesEachSegmentAndKeepsSlashes) {
  EXPECT_EQ(encode_key("jobs/job 1/master.m3u8"), "jobs/job%201/master.m3u8");
  EXPECT_EQ(encode_key("a/./b//c"), "a/./b//c");
  EXPECT_EQ(encode_key("x?y#z%"), "x%3Fy%23z%25");
}

TEST(CanonicalQuery, SortsByEncodedNameAndAlwaysHasEquals) {
  EXPECT_EQ(canonical_query({{"uploads", ""}}), "uploads=");
  EXPECT_EQ(canonical_query({{"uploadId", "a+b/c="}, {"partNumber", "12"}}), "partNumber=12&uploadId=a%2Bb%2Fc%3D");
  EXPECT_EQ(canonical_query({}), "");
}

TEST(Hashing, MatchesKnownDigests) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // RFC 4231 test case 2.
  EXPECT_EQ(hex_encode(hmac_sha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(AmzTimestamp, IsUtcBasicFormat) {
  EXPECT_EQ(amz_timestamp(system_clock::time_point(seconds(1369353600))), "20130524T000000Z");
}

// The worked example of AWS's "Authenticating Requests: Using Query
// Parameters" documentation (examplebucket/test.txt, 24 May 2013, 86400 s).
TEST(PresignGetUrl, ReproducesTheAwsDocumentationExample) {
  PresignInput input;
  input.host = "examplebucket.s3.amazonaws.com";
  input.canonical_uri = "/test.txt";
  input.access_key_id = "AKIAIOSFODNN7EXAMPLE";
  input.secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
  input.region = "us-east-1";
  input.expires = seconds(86400);
  input.now = system_clock::time_point(seconds(1369353600));
  EXPECT_EQ(presign_get_url(input),
            "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
            "AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-"
            "Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature="
            "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
}

TEST(PresignGetUrl, ClampsExpiryToSevenDays) {
  PresignInput input;
  input.host = "h";
  input.canonical_uri = "/k";
  input.region = "us-east-1";
  input.expires = seconds(10'000'000);
  EXPECT_NE(presign_get_url(input).find("X-Amz-Expires=604800&"), std::string::npos);
  input.expires = seconds(0);
  EXPECT_NE(presign_get_url(input).find("X-Amz-Expires=1&"), std::string::npos);
}

TEST(ObjectUrl, AwsDefaultIsVirtualHosted) {
  S3Config config;
  config.region = "eu-central-1";
  S3Client client(config);
  EXPECT_EQ(client.object_url("media", "out/job 1/master.m3u8"),
            "https://media.s3.eu-central-1.amazonaws.com/out/job%201/master.m3u8");
}

TEST(ObjectUrl, AwsPathStyleWhenForcedOrTheBucketIsNoDnsLabel) {
  S3Config config;
  config.region = "us-east-1";
  config.force_path_style = true;
  EXPECT_EQ(S3Client(config).object_url("media", "a.mp4"), "https://s3.us-east-1.amazonaws.com/media/a.mp4");
  config.force_path_style = false;
  EXPECT_EQ(S3Client(config).object_url("my.media", "a.mp4"), "https://s3.us-east-1.amazonaws.com/my.media/a.mp4");
}

TEST(ObjectUrl, EndpointPathStyle) {
  S3Config config;
  config.endpoint = "http://127.0.0.1:4568/";
  config.force_path_style = true;
  EXPECT_EQ(S3Client(config).object_url("bucket", "x/y z.ts"), "http://127.0.0.1:4568/bucket/x/y%20z.ts");
}

TEST(ObjectUrl, EndpointVirtualHostedAndDefaultPortDropped) {
  S3Config config;
  config.endpoint = "https://minio.example.com:443";
  EXPECT_EQ(S3Client(config).object_url("bucket", "k.mp4"), "https://bucket.minio.example.com/k.mp4");
  config.endpoint = "storage.example.com:9000";  // no scheme: https
  EXPECT_EQ(S3Client(config).object_url("bucket", "k.mp4"), "https://bucket.storage.example.com:9000/k.mp4");
}

TEST(PresignGet, UsesTheObjectLocationAndSessionToken) {
  S3Config config;
  config.region = "us-east-1";
  config.credentials = {"AKIAIOSFODNN7EXAMPLE", "secret", "token/with+chars"};
  const std::string url =
      S3Client(config).presign_get("bucket", "a b.mp4", seconds(60), system_clock::time_point(seconds(1369353600)));
  EXPECT_EQ(url.rfind("https://bucket.s3.us-east-1.amazonaws.com/a%20b.mp4?", 0), 0u) << url;
  EXPECT_NE(url.find("X-Amz-Security-Token=token%2Fwith%2Bchars&"), std::string::npos) << url;
}

TEST(Credentials, FromEnvironment) {
  ::setenv("AWS_ACCESS_KEY_ID", "AK", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "SK", 1);
  ::unsetenv("AWS_SESSION_TOKEN");
  const Credentials c = Credentials::from_env();
  EXPECT_EQ(c.access_key_id, "AK");
  EXPECT_EQ(c.secret_access_key, "SK");
  EXPECT_EQ(c.session_token, "");
}

}  // namespace
}  // namespace flux::s3
