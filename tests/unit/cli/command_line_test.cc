#include "cli/command_line.h"

#include <gtest/gtest.h>

#include "flux_version.h"

namespace flux::cli {
namespace {

ParsedCommandLine parse(std::vector<std::string> args, Environment env = {}) { return parse_command_line(args, env); }

TEST(CommandLine, SubmitWithEveryOption) {
  auto p = parse({"submit",     "--input",      "https://example.com/a.mp4",
                  "--preset",   "720p_h264",    "--output",
                  "out/a.mp4",  "--storage",    "local",
                  "--type",     "single",       "--priority",
                  "-3",         "--callback",   "https://hook.example/x",
                  "--metadata", "title=Sample", "lang=en",
                  "--metadata", "x=y=z",        "--idempotency-key",
                  "k1",         "--wait"});
  ASSERT_TRUE(p.invocation) << p.err;
  const Invocation& inv = *p.invocation;
  EXPECT_EQ(inv.command, Command::kSubmit);
  EXPECT_EQ(inv.submit.input_url, "https://example.com/a.mp4");
  EXPECT_EQ(inv.submit.preset, "720p_h264");
  EXPECT_EQ(inv.submit.output_path, "out/a.mp4");
  EXPECT_EQ(inv.submit.storage, "local");
  EXPECT_EQ(inv.submit.type, "single");
  EXPECT_EQ(inv.submit.priority, -3);
  EXPECT_EQ(inv.submit.callback_url, "https://hook.example/x");
  EXPECT_EQ(inv.submit.metadata,
            (std::map<std::string, std::string>{{"title", "Sample"}, {"lang", "en"}, {"x", "y=z"}}));
  EXPECT_EQ(inv.submit.idempotency_key, "k1");
  EXPECT_TRUE(inv.submit.wait);
  EXPECT_EQ(inv.url, kDefaultUrl);
  EXPECT_FALSE(inv.json);
}

TEST(CommandLine, SubmitDefaultsLeaveOptionalFieldsUnset) {
  auto p = parse({"submit", "--input", "https://e.com/a", "--preset", "p", "--output", "o"});
  ASSERT_TRUE(p.invocation) << p.err;
  EXPECT_EQ(p.invocation->submit.storage, "");
  EXPECT_EQ(p.invocation->submit.type, "");
  EXPECT_FALSE(p.invocation->submit.priority.has_value());
  EXPECT_FALSE(p.invocation->submit.wait);
}

TEST(CommandLine, GlobalOptionsBeforeOrAfterTheCommand) {
  auto before = parse({"--url", "http://cp:9000", "--json", "get", "job_1"});
  ASSERT_TRUE(before.invocation) << before.err;
  EXPECT_EQ(before.invocation->url, "http://cp:9000");
  EXPECT_TRUE(before.invocation->json);
  EXPECT_EQ(before.invocation->job_id, "job_1");
  auto after = parse({"get", "job_1", "--json", "--api-key", "secret-key-123"});
  ASSERT_TRUE(after.invocation) << after.err;
  EXPECT_TRUE(after.invocation->json);
  EXPECT_EQ(after.invocation->api_key, "secret-key-123");
}

TEST(CommandLine, EnvironmentGivesDefaultsAndFlagsWin) {
  Environment env{std::string("http://from-env:1"), std::string("env-key")};
  auto p = parse({"workers"}, env);
  ASSERT_TRUE(p.invocation);
  EXPECT_EQ(p.invocation->url, "http://from-env:1");
  EXPECT_EQ(p.invocation->api_key, "env-key");
  auto q = parse({"--url", "https://flag:2", "--api-key", "flag-key", "presets"}, env);
  ASSERT_TRUE(q.invocation);
  EXPECT_EQ(q.invocation->url, "https://flag:2");
  EXPECT_EQ(q.invocation->api_key, "flag-key");
  EXPECT_EQ(q.invocation->command, Command::kPresets);
}

TEST(CommandLine, EveryCommandParses) {
  EXPECT_EQ(parse({"watch", "j"}).invocation->command, Command::kWatch);
  EXPECT_EQ(parse({"cancel", "j"}).invocation->command, Command::kCancel);
  auto list = parse({"list", "--status", "failed", "--limit", "5", "--cursor", "c1"});
  ASSERT_TRUE(list.invocation) << list.err;
  EXPECT_EQ(list.invocation->command, Command::kList);
  EXPECT_EQ(list.invocation->list.status, "failed");
  EXPECT_EQ(list.invocation->list.limit, 5);
  EXPECT_EQ(list.invocation->list.cursor, "c1");
}

TEST(CommandLine, UsageErrorsExitTwo) {
  const std::vector<std::vector<std::string>> bad = {
      {},
      {"frobnicate"},
      {"get"},
      {"get", ""},
      {"submit", "--preset", "p", "--output", "o"},
      {"submit", "--input", "i", "--preset", "p", "--output", "o", "--storage", "ftp"},
      {"submit", "--input", "i", "--preset", "p", "--output", "o", "--type", "mkv"},
      {"submit", "--input", "i", "--preset", "p", "--output", "o", "--priority", "11"},
      {"submit", "--input", "i", "--preset", "p", "--output", "o", "--priority", "x"},
      {"submit", "--input", "i", "--preset", "p", "--output", "o", "--metadata", "novalue"},
      {"list", "--limit", "0"},
      {"list", "--status", "done"},
      {"--bogus", "workers"},
      {"--url", "ftp://x", "workers"},
      {"--url", "localhost:8080", "workers"},
  };
  for (const auto& args : bad) {
    auto p = parse(args);
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    EXPECT_FALSE(p.invocation) << joined;
    EXPECT_EQ(p.exit_code, 2) << joined;
    EXPECT_FALSE(p.err.empty()) << joined;
  }
}

TEST(CommandLine, HelpAndVersionExitZero) {
  auto help = parse({"--help"});
  EXPECT_FALSE(help.invocation);
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("submit"), std::string::npos);
  EXPECT_NE(help.out.find("FLUX_URL"), std::string::npos);
  auto sub = parse({"submit", "--help"});
  EXPECT_EQ(sub.exit_code, 0);
  EXPECT_NE(sub.out.find("--idempotency-key"), std::string::npos);
  auto version = parse({"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_EQ(version.out, std::string("fluxctl ") + FLUX_VERSION + "\n");
}

TEST(CommandLine, TheApiKeyIsNeverPrinted) {
  Environment env{std::nullopt, std::string("env-secret-key")};
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--help"}, {"--api-key", "flag-secret-key", "--help"}, {"--api-key", "flag-secret-key", "bogus"}}) {
    auto p = parse(args, env);
    for (const std::string& text : {p.out, p.err}) {
      EXPECT_EQ(text.find("secret-key"), std::string::npos) << text;
    }
  }
}

}  // namespace
}  // namespace flux::cli
