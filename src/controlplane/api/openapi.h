#pragma once
// The control plane's self-description: GET /openapi.json and GET /docs.
#include <string>

namespace flux::controlplane::api {

// An OpenAPI 3.0.3 JSON document of every route of SPEC §3: requests,
// responses, the error body of every error status, and bearer auth (global;
// /health, /ready, /metrics, /openapi.json and /docs are open). Lint-clean
// with @redocly/cli (tests/unit/cp_api/openapi_lint.sh).
const std::string& openapi_document();

// A self-contained HTML page (no external resources) that fetches
// /openapi.json and renders its operations, parameters, bodies and schemas.
// Its one inline <script> and <style> need a CSP that allows them (or none).
const std::string& docs_page();

}  // namespace flux::controlplane::api
