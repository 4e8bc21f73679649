#include "shared/config/env.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include "shared/core/error.h"

namespace flux::config {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

using Vars = std::map<std::string, std::string>;

Env env_with(std::string name, std::string value) { return Env(Vars{{std::move(name), std::move(value)}}); }

// Every malformed value: code invalid_config, the variable first, the value quoted.
void expect_invalid(const absl::Status& status, const std::string& name, const std::string& value) {
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(error_code(status), "invalid_config");
  EXPECT_THAT(std::string(status.message()), StartsWith(name + ": expected "));
  EXPECT_THAT(std::string(status.message()), HasSubstr("got \"" + value + "\""));
}

TEST(Env, RawTreatsEmptyAsUnset) {
  Env env(Vars{{"SET", "x"}, {"EMPTY", ""}});
  EXPECT_EQ(env.raw("SET"), "x");
  EXPECT_EQ(env.raw("EMPTY"), std::nullopt);
  EXPECT_EQ(env.raw("MISSING"), std::nullopt);
}

TEST(Env, FromProcessSeesTheEnvironment) {
  ::setenv("FLUX_ENV_TEST_VALUE", "a=b", 1);
  EXPECT_EQ(Env::from_process().raw("FLUX_ENV_TEST_VALUE"), "a=b");
  ::unsetenv("FLUX_ENV_TEST_VALUE");
  EXPECT_EQ(Env::from_process().raw("FLUX_ENV_TEST_VALUE"), std::nullopt);
}

TEST(Env, String) {
  EXPECT_EQ(*env_with("WORK_DIR", "/data/jobs").string("WORK_DIR", "/tmp"), "/data/jobs");
  EXPECT_EQ(*Env(Vars{}).string("WORK_DIR", "/tmp"), "/tmp");
}

TEST(Env, Integer) {
  EXPECT_EQ(*env_with("N", "42").integer("N", 2, 1, 1024), 42);
  EXPECT_EQ(*env_with("N", " 7 ").integer("N", 2, 1, 1024), 7);
  EXPECT_EQ(*env_with("N", "-5").integer("N", 2, -10, 10), -5);
  EXPECT_EQ(*Env(Vars{}).integer("N", 2, 1, 1024), 2);
  EXPECT_EQ(*env_with("N", "1024").integer("N", 2, 1, 1024), 1024);

  auto bad = env_with("MAX_CONCURRENT_JOBS", "abc").integer("MAX_CONCURRENT_JOBS", 2, 1, 1024);
  expect_invalid(bad.status(), "MAX_CONCURRENT_JOBS", "abc");
  EXPECT_EQ(bad.status().message(), "MAX_CONCURRENT_JOBS: expected an integer between 1 and 1024, got \"abc\"");

  for (const char* value : {"0", "1025", "1.5", "12abc", "0x10", "99999999999999999999999", "+"}) {
    expect_invalid(env_with("N", value).integer("N", 2, 1, 1024).status(), "N", value);
  }
}

TEST(Env, Boolean) {
  for (const char* yes : {"true", "TRUE", "1", "yes", "Yes", "on"}) {
    EXPECT_TRUE(*env_with("B", yes).boolean("B", false)) << yes;
  }
  for (const char* no : {"false", "False", "0", "no", "NO", "off"}) {
    EXPECT_FALSE(*env_with("B", no).boolean("B", true)) << no;
  }
  EXPECT_TRUE(*Env(Vars{}).boolean("B", true));
  for (const char* bad : {"2", "truthy", "y", "-"}) {
    expect_invalid(env_with("DISABLE_AUTO_SHUTDOWN", bad).boolean("DISABLE_AUTO_SHUTDOWN", false).status(),
                   "DISABLE_AUTO_SHUTDOWN", bad);
  }
}

TEST(Env, Seconds) {
  const auto read = [](const char* value) { return env_with("T", value).seconds("T", 1, 0, 86400); };
  EXPECT_EQ(*read("1"), milliseconds(1000));
  EXPECT_EQ(*read("0.5"), milliseconds(500));
  EXPECT_EQ(*read("30s"), milliseconds(30000));
  EXPECT_EQ(*read("500ms"), milliseconds(500));
  EXPECT_EQ(*read("2m"), milliseconds(120000));
  EXPECT_EQ(*read("1h"), milliseconds(3600000));
  EXPECT_EQ(*read(" 1.5 S "), milliseconds(1500));
  EXPECT_EQ(*Env(Vars{}).seconds("T", 600, 0, 86400), milliseconds(600000));
  EXPECT_EQ(*Env(Vars{}).seconds("T", 0.25, 0, 86400), milliseconds(250));

  auto bad = env_with("JOB_TIMEOUT", "soon").seconds("JOB_TIMEOUT", 3600, 1, 86400);
  expect_invalid(bad.status(), "JOB_TIMEOUT", "soon");
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("between 1 and 86400 seconds"));

  for (const char* value : {"-1", "2d", "1e3", "1.2.3", "ms", "", "25h", "nan", "inf"}) {
    if (*value == '\0') continue;  // empty means unset
    expect_invalid(read(value).status(), "T", value);
  }
  // Range is checked after the unit is applied: 2m is 120 s.
  expect_invalid(env_with("T", "2m").seconds("T", 1, 0, 60).status(), "T", "2m");
}

TEST(Env, Bytes) {
  const auto read = [](const char* value) { return env_with("MAX_INPUT_BYTES", value).bytes("MAX_INPUT_BYTES", 7); };
  EXPECT_EQ(*read("1048576"), 1048576u);
  EXPECT_EQ(*read("512MiB"), 512ull << 20);
  EXPECT_EQ(*read("2GB"), 2000000000ull);
  EXPECT_EQ(*read("10G"), 10ull << 30);
  EXPECT_EQ(*read("10 gib"), 10ull << 30);
  EXPECT_EQ(*read("1.5KiB"), 1536u);
  EXPECT_EQ(*read("64k"), 65536u);
  EXPECT_EQ(*read("3B"), 3u);
  EXPECT_EQ(*read("18446744073709551615"), 18446744073709551615ull);
  EXPECT_EQ(*Env(Vars{}).bytes("MAX_INPUT_BYTES", 7), 7u);

  for (const char* value : {"lots", "-1", "12XB", "1.5", "20000000TiB", "18446744073709551616", "1..5G", "G"}) {
    expect_invalid(read(value).status(), "MAX_INPUT_BYTES", value);
  }
}

TEST(Env, OneOf) {
  const std::vector<std::string> allowed = {"local", "s3"};
  EXPECT_EQ(*env_with("STORAGE_TYPE", "s3").one_of("STORAGE_TYPE", "local", allowed), "s3");
  EXPECT_EQ(*env_with("STORAGE_TYPE", "S3").one_of("STORAGE_TYPE", "local", allowed), "s3");
  EXPECT_EQ(*Env(Vars{}).one_of("STORAGE_TYPE", "local", allowed), "local");
  auto bad = env_with("STORAGE_TYPE", "gcs").one_of("STORAGE_TYPE", "local", allowed);
  expect_invalid(bad.status(), "STORAGE_TYPE", "gcs");
  EXPECT_EQ(bad.status().message(), "STORAGE_TYPE: expected one of local or s3, got \"gcs\"");
}

TEST(Env, List) {
  EXPECT_EQ(*env_with("WORKER_NODES", " a:1 , b:2,,c:3 ,").list("WORKER_NODES", {}),
            (std::vector<std::string>{"a:1", "b:2", "c:3"}));
  EXPECT_EQ(*env_with("WORKER_NODES", "single").list("WORKER_NODES", {}), (std::vector<std::string>{"single"}));
  EXPECT_EQ(*Env(Vars{}).list("WORKER_NODES", {"localhost:50051"}), (std::vector<std::string>{"localhost:50051"}));
  EXPECT_TRUE(env_with("WORKER_NODES", " , ").list("WORKER_NODES", {"x"})->empty());
}

TEST(Env, SecretValuesAreNeverEchoed) {
  for (const char* name : {"API_KEY", "WEBHOOK_SECRET", "METRICS_TOKEN", "DB_PASSWORD", "aws_secret_access_key"}) {
    Env env = env_with(name, "hunter2-super-secret");
    for (const absl::Status& status :
         {env.integer(name, 1, 0, 10).status(), env.boolean(name, false).status(), env.seconds(name, 1, 0, 10).status(),
          env.bytes(name, 1).status(), env.one_of(name, "a", {"a", "b"}).status()}) {
      ASSERT_FALSE(status.ok()) << name;
      EXPECT_THAT(std::string(status.message()), StartsWith(std::string(name) + ": "));
      EXPECT_THAT(std::string(status.message()), Not(HasSubstr("hunter2"))) << status.message();
      EXPECT_THAT(std::string(status.message()), HasSubstr("<redacted>"));
    }
  }
  EXPECT_FALSE(is_secret_name("MAX_CONCURRENT_JOBS"));
  EXPECT_TRUE(is_secret_name("Api_Key"));
}

TEST(Env, ControlCharactersInValuesAreEscaped) {
  auto bad = env_with("N", "1\n{\"level\":\"error\"}").integer("N", 1, 0, 10);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), Not(HasSubstr("\n")));
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("got \"1\\n{\\\"level\\\""));
}

}  // namespace
}  // namespace flux::config
