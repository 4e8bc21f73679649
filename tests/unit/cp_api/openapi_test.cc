#include "controlplane/api/openapi.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "shared/process/subprocess.h"

namespace flux::controlplane::api {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const json& document() {
  static const json doc = json::parse(openapi_document());
  return doc;
}

// The node a local "#/a/b" reference names, or nullptr.
const json* resolve(const std::string& ref) {
  if (ref.rfind("#/", 0) != 0) return nullptr;
  const json::json_pointer pointer(ref.substr(1));
  return document().contains(pointer) ? &document().at(pointer) : nullptr;
}

const json& follow(const json& node) {
  const json* current = &node;
  for (int i = 0; i < 10 && current->is_object() && current->contains("$ref"); ++i) {
    const json* target = resolve(current->at("$ref").get<std::string>());
    if (target == nullptr) return *current;
    current = target;
  }
  return *current;
}

TEST(OpenApi, IsAnOpenApi303Document) {
  const json& doc = document();
  EXPECT_EQ(doc.at("openapi"), "3.0.3");
  EXPECT_TRUE(doc.at("info").contains("license"));
  EXPECT_FALSE(doc.at("servers").empty());
  EXPECT_EQ(doc.at("security"), json::parse(R"([{"bearerAuth": []}])"));
  EXPECT_EQ(doc.at("/components/securitySchemes/bearerAuth/scheme"_json_pointer), "bearer");
}

TEST(OpenApi, DescribesEveryRouteOfTheSpec) {
  const std::set<std::pair<std::string, std::string>> expected = {
      {"/api/v1/jobs", "post"},
      {"/api/v1/jobs", "get"},
      {"/api/v1/jobs/{id}", "get"},
      {"/api/v1/jobs/{id}/cancel", "post"},
      {"/api/v1/jobs/{id}/stream", "get"},
      {"/api/v1/workers/status", "get"},
      {"/api/v1/presets", "get"},
      {"/health", "get"},
      {"/ready", "get"},
      {"/metrics", "get"},
      {"/openapi.json", "get"},
      {"/docs", "get"},
  };
  std::set<std::pair<std::string, std::string>> described;
  std::set<std::string> operation_ids;
  for (const auto& [path, item] : document().at("paths").items()) {
    for (const auto& [method, operation] : item.items()) {
      described.emplace(path, method);
      ASSERT_TRUE(operation.contains("operationId")) << method << " " << path;
      EXPECT_TRUE(operation_ids.insert(operation.at("operationId").get<std::string>()).second)
          << "duplicate operationId on " << method << " " << path;
      EXPECT_FALSE(operation.value("tags", json::array()).empty()) << method << " " << path;
      EXPECT_TRUE(operation.contains("summary")) << method << " " << path;
    }
  }
  EXPECT_EQ(described, expected);
}

TEST(OpenApi, OpenRoutesNeedNoKeyAndTheApiDoes) {
  const std::set<std::string> open = {"/health", "/ready", "/metrics", "/openapi.json", "/docs"};
  for (const auto& [path, item] : document().at("paths").items()) {
    for (const auto& [method, operation] : item.items()) {
      if (open.count(path) != 0) {
        EXPECT_EQ(operation.value("security", json(nullptr)), json::array()) << path;
      } else if (path == "/api/v1/jobs/{id}/stream") {
        // The header or, for a browser's EventSource, ?access_token= (below).
        EXPECT_EQ(operation.at("security"), json::parse(R"([{"bearerAuth": []}, {"accessToken": []}])"));
        EXPECT_TRUE(operation.at("responses").contains("401")) << method << " " << path;
      } else {
        EXPECT_FALSE(operation.contains("security")) << path << " must inherit the global bearerAuth";
        EXPECT_TRUE(operation.at("responses").contains("401")) << method << " " << path;
      }
    }
  }
}

TEST(OpenApi, ProgressStreamDescribesTheAccessTokenQueryParameter) {
  const json& stream = document().at("/paths/~1api~1v1~1jobs~1{id}~1stream/get"_json_pointer);
  const json* access_token = nullptr;
  for (const json& parameter : stream.at("parameters")) {
    if (parameter.value("name", "") == "access_token") access_token = &parameter;
  }
  ASSERT_NE(access_token, nullptr) << "the stream route takes ?access_token= (EventSource cannot send headers)";
  EXPECT_EQ(access_token->at("in"), "query");
  EXPECT_EQ(access_token->at("required"), false);
  EXPECT_EQ(access_token->at("/schema/type"_json_pointer), "string");
  const json& scheme = document().at("/components/securitySchemes/accessToken"_json_pointer);
  EXPECT_EQ(scheme.at("type"), "apiKey");
  EXPECT_EQ(scheme.at("in"), "query");
  EXPECT_EQ(scheme.at("name"), "access_token");
  // No other route takes it: the server accepts it on the stream only.
  for (const auto& [path, item] : document().at("paths").items()) {
    for (const auto& [method, operation] : item.items()) {
      if (path == "/api/v1/jobs/{id}/stream") continue;
      EXPECT_EQ(operation.value("security", json::array()).dump().find("accessToken"), std::string::npos) << path;
      for (const json& parameter : operation.value("parameters", json::array())) {
        EXPECT_NE(parameter.value("name", ""), "access_token") << method << " " << path;
      }
    }
  }
}

TEST(OpenApi, EveryErrorResponseUsesTheErrorSchema) {
  int errors_seen = 0;
  for (const auto& [path, item] : document().at("paths").items()) {
    for (const auto& [method, operation] : item.items()) {
      for (const auto& [status, response_ref] : operation.at("responses").items()) {
        if (status[0] != '4' || path == "/ready") continue;  // /ready's 503 carries its readiness report
        const json& response = follow(response_ref);
        ASSERT_TRUE(response.contains("content")) << method << " " << path << " " << status;
        const json& schema = response.at("/content/application~1json/schema"_json_pointer);
        EXPECT_EQ(schema.value("$ref", ""), "#/components/schemas/Error") << method << " " << path << " " << status;
        ++errors_seen;
      }
    }
  }
  EXPECT_GE(errors_seen, 20);
  const json& error = document().at("/components/schemas/Error"_json_pointer);
  EXPECT_EQ(error.at("required"), json::parse(R"(["error", "code"])"));
  EXPECT_TRUE(error.at("properties").contains("field"));
}

TEST(OpenApi, DocumentsTheStatusesOfTheSpec) {
  const json& create = document().at("/paths/~1api~1v1~1jobs/post/responses"_json_pointer);
  for (const char* status : {"202", "400", "401", "413", "429", "503"}) {
    EXPECT_TRUE(create.contains(status)) << status;
  }
  EXPECT_TRUE(document().at("/paths/~1api~1v1~1jobs~1{id}~1cancel/post/responses"_json_pointer).contains("409"));
  EXPECT_TRUE(document().at("/paths/~1api~1v1~1jobs~1{id}/get/responses"_json_pointer).contains("404"));
  EXPECT_TRUE(follow(create.at("429")).at("headers").contains("Retry-After"));
  EXPECT_TRUE(follow(create.at("503")).at("headers").contains("Retry-After"));
  EXPECT_TRUE(follow(create.at("401")).at("headers").contains("WWW-Authenticate"));
  EXPECT_TRUE(document()
                  .at("/paths/~1api~1v1~1jobs~1{id}~1stream/get/responses/200/content"_json_pointer)
                  .contains("text/event-stream"));
  const json& accepted = document().at("/components/schemas/JobAccepted"_json_pointer);
  EXPECT_EQ(accepted.at("required"), json::parse(R"(["job_id", "status", "stream_url", "job_url"])"));
  EXPECT_EQ(document().at("/components/schemas/JobList/required"_json_pointer),
            json::parse(R"(["jobs", "next_cursor"])"));
}

TEST(OpenApi, EveryReferenceResolves) {
  std::vector<const json*> stack = {&document()};
  int refs = 0;
  while (!stack.empty()) {
    const json* node = stack.back();
    stack.pop_back();
    if (node->is_object() && node->contains("$ref")) {
      ++refs;
      EXPECT_NE(resolve(node->at("$ref").get<std::string>()), nullptr) << node->at("$ref");
    }
    if (node->is_structured()) {
      for (const auto& child : *node) stack.push_back(&child);
    }
  }
  EXPECT_GT(refs, 30);
}

TEST(DocsPage, IsSelfContainedAndLoadsTheDocument) {
  const std::string& page = docs_page();
  EXPECT_EQ(page.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(page.find("fetch(\"/openapi.json\""), std::string::npos);
  // Nothing from elsewhere: no external scripts, styles, fonts or images.
  for (const char* external : {"<script src", "<link", "@import", "url(", "<img", "//cdn", "https://", "http://"}) {
    EXPECT_EQ(page.find(external), std::string::npos) << external;
  }
  // Text from the document is set with textContent, never parsed as HTML.
  EXPECT_EQ(page.find("innerHTML"), std::string::npos);
  EXPECT_EQ(page.find("document.write"), std::string::npos);
}

// The real linter, when installed (tests/node_modules, from the test lockfile).
TEST(OpenApi, PassesRedoclyLint) {
  std::string redocly;
  if (const char* env = std::getenv("FLUX_REDOCLY"); env != nullptr && env[0] != '\0') {
    redocly = env;
  } else {
    redocly = std::string(FLUX_SOURCE_DIR) + "/tests/node_modules/.bin/redocly";
  }
  if (!fs::exists(redocly)) GTEST_SKIP() << "redocly not installed at " << redocly << " (set FLUX_REDOCLY)";

  const fs::path dir = fs::temp_directory_path() / ("flux_openapi_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path file = dir / "openapi.json";
  std::ofstream(file) << openapi_document();
  auto result =
      process::run({std::string(FLUX_SOURCE_DIR) + "/tests/unit/cp_api/openapi_lint.sh", redocly, file.string()},
                   std::chrono::seconds(120));
  fs::remove_all(dir);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->status.ok()) << result->out << result->err;
}

}  // namespace
}  // namespace flux::controlplane::api
