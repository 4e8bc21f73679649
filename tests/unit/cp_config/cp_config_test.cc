#include "controlplane/config/cp_config.h"

#include <gtest/gtest.h>

#include "shared/core/error.h"

namespace flux::controlplane::config {
namespace {

absl::StatusOr<ControlPlaneConfig> load(std::map<std::string, std::string> vars) {
  return load_control_plane_config(flux::config::Env(std::move(vars)));
}

constexpr char kKey[] = "0123456789abcdef0123";

TEST(ControlPlaneConfig, DefaultsInDevelopmentWithoutKeys) {
  auto c = load({{"ENV", "development"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->port, 8080);
  EXPECT_EQ(c->queue_limit, 1000);
  EXPECT_EQ(c->max_attempts, 3);
  EXPECT_EQ(c->job_timeout, std::chrono::seconds(3600));
  EXPECT_EQ(c->worker_startup_timeout, std::chrono::seconds(60));
  EXPECT_EQ(c->database_path, "./data/flux.db");
  EXPECT_EQ(c->http_max_connections, 20000u);
  EXPECT_FALSE(c->http_pin_threads);
  EXPECT_TRUE(c->api_keys.empty());
}

TEST(ControlPlaneConfig, ProductionRefusesToStartWithoutKeys) {
  auto c = load({});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(error_code(c.status()), "invalid_config");
  EXPECT_NE(std::string(c.status().message()).find("API_KEYS"), std::string::npos);
  EXPECT_TRUE(load({{"API_KEY", kKey}}).ok());
}

TEST(ControlPlaneConfig, ParsesKeysAndWorkers) {
  auto c = load({{"API_KEYS", std::string(kKey) + ", " + kKey + "x"},
                 {"WORKER_NODES", "10.0.0.1:50051,worker-b:50052"},
                 {"QUEUE_LIMIT", "0"},
                 {"RATE_LIMIT_RPS", "5"},
                 {"HTTP_PIN_THREADS", "true"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->http_pin_threads);
  EXPECT_EQ(c->api_keys.size(), 2u);
  EXPECT_EQ(c->worker_nodes, (std::vector<std::string>{"10.0.0.1:50051", "worker-b:50052"}));
  EXPECT_EQ(c->queue_limit, 0);
  EXPECT_EQ(c->rate_limit_rps, 5);
  EXPECT_EQ(c->rate_limit_burst, 10);
}

TEST(ControlPlaneConfig, MalformedValuesNameTheirVariable) {
  const std::vector<std::pair<std::string, std::string>> bad = {{"PORT", "http"},
                                                                {"WORKER_NODES", "nohost"},
                                                                {"WORKER_NODES", "a:99999"},
                                                                {"QUEUE_LIMIT", "-1"},
                                                                {"MAX_ATTEMPTS", "0"},
                                                                {"ENV", "staging"},
                                                                {"INPUT_SCHEMES", "ftp"},
                                                                {"API_KEYS", "short"},
                                                                {"WORKER_STARTUP_TIMEOUT", "soon"},
                                                                {"ALLOW_PRIVATE_INPUTS", "maybe"},
                                                                {"HTTP_MAX_CONNECTIONS", "-5"},
                                                                {"HTTP_PIN_THREADS", "sometimes"}};
  for (const auto& [name, value] : bad) {
    std::map<std::string, std::string> vars = {{"ENV", "development"}};
    vars[name] = value;
    auto c = load(vars);
    ASSERT_FALSE(c.ok()) << name << "=" << value;
    EXPECT_NE(std::string(c.status().message()).find(name), std::string::npos) << c.status();
  }
}

TEST(ControlPlaneConfig, LocalInputDirEnablesFileScheme) {
  auto c = load({{"ENV", "development"}, {"LOCAL_INPUT_DIR", "/srv/in"}});
  ASSERT_TRUE(c.ok());
  EXPECT_NE(std::find(c->input_schemes.begin(), c->input_schemes.end(), "file"), c->input_schemes.end());
}

}  // namespace
}  // namespace flux::controlplane::config
