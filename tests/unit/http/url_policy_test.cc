#include "shared/http/url_policy.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "shared/core/error.h"

namespace flux::http {
namespace {

namespace fs = std::filesystem;

struct UrlCase {
  std::string url;
  std::string code;  // "" = accepted
};

void PrintTo(const UrlCase& c, std::ostream* os) { *os << c.url << " -> " << (c.code.empty() ? "ok" : c.code); }

class CheckUrlTest : public ::testing::TestWithParam<UrlCase> {};

TEST_P(CheckUrlTest, GivesTheExpectedVerdict) {
  const UrlCase& c = GetParam();
  const absl::Status status = check_url(c.url, UrlPolicy{});
  EXPECT_EQ(flux::error_code(status), c.code) << status;
  if (!c.code.empty()) {
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Accepted, CheckUrlTest,
    ::testing::Values(UrlCase{"https://example.com/a.mp4", ""}, UrlCase{"http://example.com:8080/a.mp4?x=1#frag", ""},
                      UrlCase{"HTTPS://Example.COM/a.mp4", ""}, UrlCase{"https://user:pw@example.com/a.mp4", ""},
                      UrlCase{"https://8.8.8.8/a.mp4", ""}, UrlCase{"https://[2606:4700::1111]/a.mp4", ""},
                      UrlCase{"https://[::ffff:8.8.8.8]/a", ""}, UrlCase{"https://1e100.net/a", ""},
                      UrlCase{"s3://bucket/key.mp4", ""},
                      UrlCase{"s3://my-bucket/dir/sub/key%20with%20space.mov", ""}));

INSTANTIATE_TEST_SUITE_P(ForbiddenSchemes, CheckUrlTest,
                         ::testing::Values(UrlCase{"concat:a.mp4|b.mp4", "url_scheme_forbidden"},
                                           UrlCase{"data:video/mp4;base64,AAAA", "url_scheme_forbidden"},
                                           UrlCase{"data:text/plain,hello world", "url_scheme_forbidden"},
                                           UrlCase{"pipe:0", "url_scheme_forbidden"},
                                           UrlCase{"subfile:,,start,0,end,0,,:a.mp4", "url_scheme_forbidden"},
                                           UrlCase{"gopher://example.com/", "url_scheme_forbidden"},
                                           UrlCase{"ftp://example.com/a.mp4", "url_scheme_forbidden"},
                                           UrlCase{"file:///etc/passwd", "url_scheme_forbidden"},  // no LOCAL_INPUT_DIR
                                           UrlCase{"/etc/passwd", "url_scheme_forbidden"},
                                           UrlCase{"input.mp4", "url_scheme_forbidden"},
                                           UrlCase{"../../etc/passwd", "url_scheme_forbidden"},
                                           UrlCase{"rtmp://example.com/live", "url_scheme_forbidden"},
                                           UrlCase{"hls+http://example.com/a.m3u8", "url_scheme_forbidden"},
                                           UrlCase{"tcp://example.com:80", "url_scheme_forbidden"}));

INSTANTIATE_TEST_SUITE_P(
    Malformed, CheckUrlTest,
    ::testing::Values(
        UrlCase{"", "url_invalid"}, UrlCase{"https://exa mple.com/a", "url_invalid"},
        UrlCase{"https://example.com/a b", "url_invalid"}, UrlCase{"https://example.com/\x01", "url_invalid"},
        UrlCase{"https://example.com\\@127.0.0.1/", "url_invalid"}, UrlCase{"https://a@b@example.com/", "url_invalid"},
        UrlCase{"https://example.com:/a", "url_invalid"}, UrlCase{"https://example.com:0/a", "url_invalid"},
        UrlCase{"https://example.com:65536/a", "url_invalid"}, UrlCase{"https://example.com:80a/a", "url_invalid"},
        UrlCase{"https://example.com:-1/a", "url_invalid"}, UrlCase{"https:///a.mp4", "url_invalid"},
        UrlCase{"https:example.com/a", "url_invalid"}, UrlCase{"https://[::1/a", "url_invalid"},
        UrlCase{"https://[fe80::1%25eth0]/a", "url_invalid"}, UrlCase{"https://%31%32%37.0.0.1/", "url_invalid"},
        UrlCase{"https://ex\xc3\xa4mple.com/", "url_invalid"}, UrlCase{"https://256.1.1.1/", "url_invalid"},
        UrlCase{"https://1.2.3.4.5/", "url_invalid"}, UrlCase{"https://0x1ffffffff/", "url_invalid"},
        UrlCase{"https://089.1.1.1/", "url_invalid"}, UrlCase{"s3://bucket", "url_invalid"},
        UrlCase{"s3://bucket/", "url_invalid"}, UrlCase{"s3://b/key", "url_invalid"},
        UrlCase{"s3://bucket:9000/key", "url_invalid"}, UrlCase{"s3://bucket/a/../key", "url_invalid"},
        UrlCase{"s3://bucket/key?versionId=1", "url_invalid"}));

INSTANTIATE_TEST_SUITE_P(
    ForbiddenAddresses, CheckUrlTest,
    ::testing::Values(
        UrlCase{"http://127.0.0.1/", "url_address_forbidden"},
        UrlCase{"http://127.0.0.1:8080/a", "url_address_forbidden"}, UrlCase{"http://127.1/", "url_address_forbidden"},
        UrlCase{"http://127.0.1/", "url_address_forbidden"}, UrlCase{"http://2130706433/", "url_address_forbidden"},
        UrlCase{"http://0177.0.0.1/", "url_address_forbidden"}, UrlCase{"http://0x7f.1/", "url_address_forbidden"},
        UrlCase{"http://0x7f000001/", "url_address_forbidden"}, UrlCase{"http://0X7F.0.0.1/", "url_address_forbidden"},
        UrlCase{"http://017700000001/", "url_address_forbidden"},
        UrlCase{"http://127.0.0.1./", "url_address_forbidden"}, UrlCase{"http://0.0.0.0/", "url_address_forbidden"},
        UrlCase{"http://0/", "url_address_forbidden"}, UrlCase{"http://10.0.0.1/", "url_address_forbidden"},
        UrlCase{"http://172.16.5.4/", "url_address_forbidden"},
        UrlCase{"http://172.31.255.255/", "url_address_forbidden"},
        UrlCase{"http://192.168.1.1/", "url_address_forbidden"},
        UrlCase{"http://169.254.169.254/latest/meta-data/", "url_address_forbidden"},
        UrlCase{"http://0xa9fea9fe/", "url_address_forbidden"}, UrlCase{"http://100.64.0.1/", "url_address_forbidden"},
        UrlCase{"http://100.100.100.200/", "url_address_forbidden"},
        UrlCase{"http://224.0.0.1/", "url_address_forbidden"},
        UrlCase{"http://255.255.255.255/", "url_address_forbidden"}, UrlCase{"http://[::1]/", "url_address_forbidden"},
        UrlCase{"http://[::1]:8080/a", "url_address_forbidden"}, UrlCase{"http://[::]/", "url_address_forbidden"},
        UrlCase{"http://[0:0:0:0:0:0:0:1]/", "url_address_forbidden"},
        UrlCase{"http://[::ffff:127.0.0.1]/", "url_address_forbidden"},
        UrlCase{"http://[::ffff:7f00:1]/", "url_address_forbidden"},
        UrlCase{"http://[::ffff:169.254.169.254]/", "url_address_forbidden"},
        UrlCase{"http://[::127.0.0.1]/", "url_address_forbidden"},
        UrlCase{"http://[64:ff9b::7f00:1]/", "url_address_forbidden"},
        UrlCase{"http://[2002:7f00:1::]/", "url_address_forbidden"},
        UrlCase{"http://[fd00::1]/", "url_address_forbidden"},
        UrlCase{"http://[fd00:ec2::254]/", "url_address_forbidden"},
        UrlCase{"http://[fc00::1]/", "url_address_forbidden"}, UrlCase{"http://[fe80::1]/", "url_address_forbidden"},
        UrlCase{"http://[FE80::1]/", "url_address_forbidden"}, UrlCase{"http://[ff02::1]/", "url_address_forbidden"},
        UrlCase{"http://[2001:db8::1]/", "url_address_forbidden"},
        UrlCase{"http://localhost/", "url_address_forbidden"},
        UrlCase{"http://LOCALHOST:9000/", "url_address_forbidden"},
        UrlCase{"http://localhost./", "url_address_forbidden"},
        UrlCase{"http://foo.localhost/", "url_address_forbidden"},
        UrlCase{"http://metadata.google.internal/computeMetadata/v1/", "url_address_forbidden"},
        UrlCase{"http://metadata/", "url_address_forbidden"}, UrlCase{"http://printer.local/", "url_address_forbidden"},
        UrlCase{"http://user@127.0.0.1/", "url_address_forbidden"},
        UrlCase{"http://example.com@127.0.0.1/", "url_address_forbidden"}));

TEST(CheckUrl, AllowPrivateAcceptsLoopbackButNotBadSyntax) {
  UrlPolicy policy;
  policy.allow_private = true;
  for (const char* url : {"http://127.0.0.1:8080/a", "http://localhost/", "http://[::1]/", "http://0177.0.0.1/",
                          "http://10.0.0.8/", "http://[fd00::1]/"}) {
    EXPECT_TRUE(check_url(url, policy).ok()) << url;
  }
  EXPECT_EQ(flux::error_code(check_url("http://256.0.0.1/", policy)), "url_invalid");
  EXPECT_EQ(flux::error_code(check_url("gopher://127.0.0.1/", policy)), "url_scheme_forbidden");
}

// Allowing private inputs (an internal store) must not hand out the cloud
// instance's credentials: metadata services stay out of reach in every spelling.
TEST(CheckUrl, MetadataStaysForbiddenUnderAllowPrivate) {
  UrlPolicy policy;
  policy.allow_private = true;
  for (const char* url :
       {"http://169.254.169.254/latest/meta-data/", "http://0xa9fea9fe/", "http://2852039166/",
        "http://0251.0376.0251.0376/", "http://169.254.169.254./", "http://169.254.170.2/v2/creds",
        "http://[fd00:ec2::254]/", "http://[FD00:EC2:0:0:0:0:0:254]/", "http://[::ffff:169.254.169.254]/",
        "http://[::ffff:a9fe:a9fe]/", "http://[64:ff9b::a9fe:a9fe]/", "http://[2002:a9fe:a9fe::]/", "http://[fe80::1]/",
        "http://100.100.100.200/", "http://192.0.0.192/", "http://metadata.google.internal/", "http://metadata/",
        "http://instance-data./", "http://user@169.254.169.254/"}) {
    EXPECT_EQ(flux::error_code(check_url(url, policy)), "url_address_forbidden") << url;
  }
  // Only the exact test exemption lets one through.
  policy.test_only_allowed_addresses = {"169.254.169.254"};
  EXPECT_TRUE(check_url("http://169.254.169.254/", policy).ok());
  EXPECT_EQ(flux::error_code(check_url("http://169.254.170.2/", policy)), "url_address_forbidden");
}

TEST(CheckUrl, SchemeAllowListIsTheOperators) {
  UrlPolicy https_only;
  https_only.allowed_schemes = {"https"};
  EXPECT_TRUE(check_url("https://example.com/a.mp4", https_only).ok());
  EXPECT_EQ(flux::error_code(check_url("http://example.com/a.mp4", https_only)), "url_scheme_forbidden");
  EXPECT_EQ(flux::error_code(check_url("s3://bucket/key", https_only)), "url_scheme_forbidden");
  // Listing a dangerous scheme does not make it fetchable.
  UrlPolicy careless;
  careless.allowed_schemes = {"https", "ftp", "concat", "data"};
  EXPECT_EQ(flux::error_code(check_url("ftp://example.com/a", careless)), "url_scheme_forbidden");
  EXPECT_EQ(flux::error_code(check_url("concat:a|b", careless)), "url_scheme_forbidden");
}

TEST(CheckUrl, TestOnlyAllowListExemptsExactlyTheListedAddress) {
  UrlPolicy policy;
  policy.test_only_allowed_addresses = {"127.0.0.1"};
  EXPECT_TRUE(check_url("http://127.0.0.1:1234/", policy).ok());
  EXPECT_TRUE(check_url("http://2130706433:1234/", policy).ok());  // same address, other spelling
  EXPECT_EQ(flux::error_code(check_url("http://127.0.0.2/", policy)), "url_address_forbidden");
  EXPECT_EQ(flux::error_code(check_url("http://localhost/", policy)), "url_address_forbidden");
}

TEST(IsForbiddenAddress, ClassifiesSockaddrs) {
  const auto v4 = [](const char* text) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    inet_pton(AF_INET, text, &sin.sin_addr);
    return is_forbidden_address(reinterpret_cast<const sockaddr*>(&sin));
  };
  const auto v6 = [](const char* text) {
    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, text, &sin6.sin6_addr);
    return is_forbidden_address(reinterpret_cast<const sockaddr*>(&sin6));
  };
  EXPECT_TRUE(v4("127.0.0.1"));
  EXPECT_TRUE(v4("127.255.255.254"));
  EXPECT_TRUE(v4("169.254.169.254"));
  EXPECT_TRUE(v4("100.127.255.255"));
  EXPECT_FALSE(v4("100.128.0.1"));
  EXPECT_FALSE(v4("172.32.0.1"));
  EXPECT_FALSE(v4("8.8.8.8"));
  EXPECT_FALSE(v4("93.184.216.34"));
  EXPECT_TRUE(v6("::1"));
  EXPECT_TRUE(v6("::ffff:10.1.2.3"));
  EXPECT_FALSE(v6("::ffff:8.8.8.8"));
  EXPECT_FALSE(v6("64:ff9b::808:808"));
  EXPECT_FALSE(v6("2606:4700::1111"));
  EXPECT_TRUE(v6("2001::1"));  // Teredo
  sockaddr unix_family{};
  unix_family.sa_family = AF_UNIX;
  EXPECT_TRUE(is_forbidden_address(&unix_family));
  EXPECT_TRUE(is_forbidden_address(nullptr));
}

TEST(ParseUrl, SplitsTheParts) {
  auto url = parse_url("HTTPS://user:pw@Example.com:8443/a/b.mp4?x=1&y=2#frag");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->scheme, "https");
  EXPECT_EQ(url->userinfo, "user:pw");
  EXPECT_EQ(url->host, "example.com");
  EXPECT_EQ(url->port, 8443);
  EXPECT_EQ(url->path, "/a/b.mp4");
  EXPECT_EQ(url->query, "x=1&y=2");
  auto v6 = parse_url("http://[::1]:80");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 80);
  EXPECT_EQ(v6->path, "");
}

TEST(RedactUrl, DropsCredentialsAndQuery) {
  EXPECT_EQ(redact_url("https://user:secret@example.com:8443/a.mp4?X-Amz-Signature=abc"),
            "https://example.com:8443/a.mp4");
  EXPECT_EQ(redact_url("data:text/plain,secret"), "data:<redacted>");
}

TEST(PercentDecode, DecodesAndRefusesMalformed) {
  EXPECT_EQ(percent_decode("a%20b%2Fc").value_or("?"), "a b/c");
  EXPECT_FALSE(percent_decode("a%2").has_value());
  EXPECT_FALSE(percent_decode("a%zz").has_value());
  EXPECT_FALSE(percent_decode("a%00b").has_value());
}

// A LOCAL_INPUT_DIR with a file inside, a file outside and a symlink escaping.
class LocalInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/flux-url-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    root_ = pattern;
    inputs_ = root_ / "inputs";
    fs::create_directories(inputs_ / "sub");
    write(inputs_ / "clip.mp4", "data");
    write(inputs_ / "sub" / "my clip.mp4", "data");
    write(root_ / "secret.txt", "secret");
    fs::create_symlink(root_ / "secret.txt", inputs_ / "escape.mp4");
    fs::create_symlink(inputs_ / "clip.mp4", inputs_ / "alias.mp4");
    policy_.local_input_dir = inputs_;
  }
  void TearDown() override { fs::remove_all(root_); }
  static void write(const fs::path& p, const std::string& content) { std::ofstream(p) << content; }
  std::string url(const fs::path& p) const { return "file://" + p.string(); }

  fs::path root_, inputs_;
  UrlPolicy policy_;
};

TEST_F(LocalInputTest, CheckUrlAcceptsOnlyPathsInsideTheDirectory) {
  EXPECT_TRUE(check_url(url(inputs_ / "clip.mp4"), policy_).ok());
  EXPECT_TRUE(check_url("file://localhost" + (inputs_ / "clip.mp4").string(), policy_).ok());
  EXPECT_TRUE(check_url("file://" + (inputs_ / "sub").string() + "/my%20clip.mp4", policy_).ok());
  EXPECT_EQ(flux::error_code(check_url(url(root_ / "secret.txt"), policy_)), "url_path_forbidden");
  EXPECT_EQ(flux::error_code(check_url("file:///etc/passwd", policy_)), "url_path_forbidden");
  EXPECT_EQ(flux::error_code(check_url(url(inputs_) + "/../secret.txt", policy_)), "url_path_forbidden");
  EXPECT_EQ(flux::error_code(check_url(url(inputs_) + "/%2e%2e/secret.txt", policy_)), "url_path_forbidden");
  EXPECT_EQ(flux::error_code(check_url(url(inputs_), policy_)), "url_path_forbidden");  // the dir itself
  // A sibling whose name merely starts with the directory's.
  EXPECT_EQ(flux::error_code(check_url(url(root_ / "inputs-other" / "a.mp4"), policy_)), "url_path_forbidden");
  EXPECT_EQ(flux::error_code(check_url("file://otherhost" + (inputs_ / "clip.mp4").string(), policy_)), "url_invalid");
  EXPECT_EQ(flux::error_code(check_url("file:clip.mp4", policy_)), "url_invalid");
}

TEST_F(LocalInputTest, ResolveLocalInputFollowsSymlinksAndStaysInside) {
  auto inside = resolve_local_input(url(inputs_ / "clip.mp4"), inputs_);
  ASSERT_TRUE(inside.ok()) << inside.status();
  EXPECT_EQ(*inside, fs::canonical(inputs_ / "clip.mp4"));

  auto spaced = resolve_local_input("file://" + (inputs_ / "sub").string() + "/my%20clip.mp4", inputs_);
  ASSERT_TRUE(spaced.ok()) << spaced.status();
  EXPECT_EQ(spaced->filename(), "my clip.mp4");

  auto alias = resolve_local_input(url(inputs_ / "alias.mp4"), inputs_);
  ASSERT_TRUE(alias.ok()) << alias.status();
  EXPECT_EQ(*alias, fs::canonical(inputs_ / "clip.mp4"));

  EXPECT_EQ(flux::error_code(resolve_local_input(url(inputs_ / "escape.mp4"), inputs_).status()), "url_path_forbidden");
  EXPECT_EQ(flux::error_code(resolve_local_input(url(inputs_) + "/../secret.txt", inputs_).status()),
            "url_path_forbidden");
  EXPECT_EQ(flux::error_code(resolve_local_input(url(root_ / "secret.txt"), inputs_).status()), "url_path_forbidden");
  EXPECT_EQ(flux::error_code(resolve_local_input(url(inputs_ / "sub"), inputs_).status()), "url_path_forbidden");
  EXPECT_EQ(flux::error_code(resolve_local_input(url(inputs_ / "missing.mp4"), inputs_).status()), "input_not_found");
  EXPECT_EQ(flux::error_code(resolve_local_input("https://example.com/a", inputs_).status()), "url_scheme_forbidden");
}

TEST(CheckUrlResolved, LocalhostRefusedUnlessPrivateAllowed) {
  UrlPolicy policy;
  EXPECT_EQ(flux::error_code(check_url_resolved("http://localhost:8080/a", policy)), "url_address_forbidden");
  policy.allow_private = true;
  EXPECT_TRUE(check_url_resolved("http://localhost:8080/a", policy).ok());
}

// A name that check_url() cannot judge without DNS, but that resolves to
// loopback: taken from /etc/hosts (no DNS server is reachable in tests).
TEST(CheckUrlResolved, NameResolvingToLoopbackIsRefused) {
  std::ifstream hosts("/etc/hosts");
  std::string line, name;
  while (name.empty() && std::getline(hosts, line)) {
    std::istringstream fields(line);
    std::string address, candidate;
    fields >> address;
    if (address.rfind("127.", 0) != 0) continue;
    while (fields >> candidate) {
      if (candidate[0] == '#') break;
      if (check_url("http://" + candidate + "/a", UrlPolicy{}).ok()) {
        name = candidate;
        break;
      }
    }
  }
  if (name.empty()) GTEST_SKIP() << "no loopback alias in /etc/hosts besides blocked names";
  const absl::Status status = check_url_resolved("http://" + name + "/a", UrlPolicy{});
  EXPECT_EQ(flux::error_code(status), "url_address_forbidden") << name << ": " << status;
  UrlPolicy permissive;
  permissive.allow_private = true;
  EXPECT_TRUE(check_url_resolved("http://" + name + "/a", permissive).ok());
}

}  // namespace
}  // namespace flux::http
