// The OpenAPI document, kept as a JSON literal so that it reads like the
// contract it is. tests/unit/cp_api checks it parses, names every route of
// SPEC §3, and passes a real OpenAPI linter.
#include "controlplane/api/openapi.h"

namespace flux::controlplane::api {

const std::string& openapi_document() {
  static const std::string document = R"json({
  "openapi": "3.0.3",
  "info": {
    "title": "flux-encoder control plane",
    "version": "1.0.0",
    "description": "Submit video encoding jobs by preset, follow their progress over Server-Sent Events, and inspect workers and presets. Every timestamp is RFC 3339 in UTC with milliseconds. Every error body is {\"error\", \"code\", \"field\"}.",
    "license": {"name": "MIT", "url": "https://opensource.org/licenses/MIT"}
  },
  "servers": [{"url": "/", "description": "The control plane serving this document"}],
  "security": [{"bearerAuth": []}],
  "tags": [
    {"name": "jobs", "description": "Encoding jobs: submit, inspect, list, cancel, follow."},
    {"name": "workers", "description": "The configured worker nodes."},
    {"name": "presets", "description": "The encoding presets clients choose from by name."},
    {"name": "operations", "description": "Liveness, readiness and metrics, for platforms and monitoring."},
    {"name": "docs", "description": "This description and a page that renders it."}
  ],
  "paths": {
    "/api/v1/jobs": {
      "post": {
        "tags": ["jobs"],
        "operationId": "createJob",
        "summary": "Create a job",
        "description": "Validates the request (SPEC §3.1), stores the job durably and queues it. Nothing is stored for a refused request. Unknown fields are ignored. The body is at most 64 KiB.",
        "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
        "requestBody": {
          "required": true,
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}}}
        },
        "responses": {
          "202": {
            "description": "Accepted and queued (or, with a repeated Idempotency-Key, the job created the first time).",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobAccepted"}}}
          },
          "400": {"$ref": "#/components/responses/BadRequest"},
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "413": {"$ref": "#/components/responses/PayloadTooLarge"},
          "429": {"$ref": "#/components/responses/TooManyRequests"},
          "503": {"$ref": "#/components/responses/ServiceUnavailable"}
        }
      },
      "get": {
        "tags": ["jobs"],
        "operationId": "listJobs",
        "summary": "List jobs",
        "description": "Newest first, with cursor pagination: pass the next_cursor of one page as cursor to get the next.",
        "parameters": [
          {"name": "status", "in": "query", "required": false, "description": "Only jobs with this status.",
           "schema": {"$ref": "#/components/schemas/JobStatus"}},
          {"name": "limit", "in": "query", "required": false, "description": "Page size.",
           "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
          {"name": "cursor", "in": "query", "required": false, "description": "The next_cursor of the previous page.",
           "schema": {"type": "string"}}
        ],
        "responses": {
          "200": {
            "description": "One page of jobs.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobList"}}}
          },
          "400": {"$ref": "#/components/responses/BadRequest"},
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "429": {"$ref": "#/components/responses/TooManyRequests"}
        }
      }
    },
    "/api/v1/jobs/{id}": {
      "get": {
        "tags": ["jobs"],
        "operationId": "getJob",
        "summary": "Get a job",
        "parameters": [{"$ref": "#/components/parameters/JobId"}],
        "responses": {
          "200": {
            "description": "The job document.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}
          },
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "404": {"$ref": "#/components/responses/NotFound"},
          "429": {"$ref": "#/components/responses/TooManyRequests"}
        }
      }
    },
    "/api/v1/jobs/{id}/cancel": {
      "post": {
        "tags": ["jobs"],
        "operationId": "cancelJob",
        "summary": "Cancel a job",
        "description": "Cancels a queued or running job; a running one is cancelled on its worker. Idempotent: cancelling a cancelled job answers 200 again. A job that already completed or failed answers 409.",
        "parameters": [{"$ref": "#/components/parameters/JobId"}],
        "responses": {
          "200": {
            "description": "The job document after the cancellation.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}
          },
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "404": {"$ref": "#/components/responses/NotFound"},
          "409": {"$ref": "#/components/responses/Conflict"},
          "429": {"$ref": "#/components/responses/TooManyRequests"}
        }
      }
    },
    "/api/v1/jobs/{id}/stream": {
      "get": {
        "tags": ["jobs"],
        "operationId": "streamJob",
        "summary": "Follow a job's progress (Server-Sent Events)",
        "description": "Unnamed events (EventSource.onmessage sees them all), each `id: <sequence>` then `data: <one-line JSON ProgressEvent>`. The first event is the job's current state; then live events; a `: keep-alive` comment every 15 s; the server closes the stream after the terminal event (a finished job sends its final state and closes). Last-Event-ID replays missed events from a bounded buffer. A client that does not keep up is disconnected.",
        "security": [{"bearerAuth": []}, {"accessToken": []}],
        "parameters": [
          {"$ref": "#/components/parameters/JobId"},
          {"name": "Last-Event-ID", "in": "header", "required": false,
           "description": "The id of the last event received; the stream resumes after it.",
           "schema": {"type": "string"}},
          {"name": "access_token", "in": "query", "required": false,
           "description": "An API key, for clients that cannot send an Authorization header (a browser's EventSource): `new EventSource('/api/v1/jobs/' + id + '/stream?access_token=' + encodeURIComponent(key))`. Accepted on this read-only route only, and ignored when an Authorization header is present. A URL may end up in browser history and proxy logs: prefer the header, and a key with access to little, where you can.",
           "schema": {"type": "string"}}
        ],
        "responses": {
          "200": {
            "description": "An event stream. The schema is that of the JSON in each event's data line; the frames look like:\n\n```\nid: 3\ndata: {\"job_id\":\"job_abc\",\"status\":\"processing\",\"phase\":\"encoding\",\"progress\":42.5,\"message\":\"encoding\",\"timestamp\":\"2026-11-30T08:43:25.123Z\"}\n\n: keep-alive\n```",
            "headers": {
              "Cache-Control": {"description": "Always no-cache.", "schema": {"type": "string"}},
              "X-Accel-Buffering": {"description": "Always no, so proxies do not buffer events.", "schema": {"type": "string"}}
            },
            "content": {
              "text/event-stream": {
                "schema": {"$ref": "#/components/schemas/ProgressEvent"}
              }
            }
          },
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "404": {"$ref": "#/components/responses/NotFound"},
          "429": {"$ref": "#/components/responses/TooManyRequests"}
        }
      }
    },
    "/api/v1/workers/status": {
      "get": {
        "tags": ["workers"],
        "operationId": "getWorkersStatus",
        "summary": "Status of every configured worker",
        "responses": {
          "200": {
            "description": "Every configured worker, in configuration order.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WorkerList"}}}
          },
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "429": {"$ref": "#/components/responses/TooManyRequests"}
        }
      }
    },
    "/api/v1/presets": {
      "get": {
        "tags": ["presets"],
        "operationId": "listPresets",
        "summary": "The preset catalogue",
        "responses": {
          "200": {
            "description": "Every preset a job may name.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PresetList"}}}
          },
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "429": {"$ref": "#/components/responses/TooManyRequests"}
        }
      }
    },
    "/health": {
      "get": {
        "tags": ["operations"],
        "operationId": "getHealth",
        "summary": "Liveness",
        "description": "200 while the process serves HTTP. No authentication.",
        "security": [],
        "responses": {
          "200": {
            "description": "Alive.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}
          }
        }
      }
    },
    "/ready": {
      "get": {
        "tags": ["operations"],
        "operationId": "getReady",
        "summary": "Readiness",
        "description": "200 when the store is open and at least one worker is configured, else 503. No authentication.",
        "security": [],
        "responses": {
          "200": {
            "description": "Ready to accept jobs.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}
          },
          "503": {
            "description": "Not ready.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}
          }
        }
      }
    },
    "/metrics": {
      "get": {
        "tags": ["operations"],
        "operationId": "getMetrics",
        "summary": "Prometheus metrics",
        "description": "Prometheus text exposition format. Open, unless METRICS_TOKEN is set: then it needs `Authorization: Bearer <METRICS_TOKEN>`.",
        "security": [],
        "responses": {
          "200": {
            "description": "The metrics.",
            "content": {"text/plain": {"schema": {"type": "string"}}}
          },
          "401": {"$ref": "#/components/responses/Unauthorized"}
        }
      }
    },
    "/openapi.json": {
      "get": {
        "tags": ["docs"],
        "operationId": "getOpenApi",
        "summary": "This OpenAPI document",
        "security": [],
        "responses": {
          "200": {
            "description": "The OpenAPI 3.0.3 document.",
            "content": {"application/json": {"schema": {"type": "object"}}}
          }
        }
      }
    },
    "/docs": {
      "get": {
        "tags": ["docs"],
        "operationId": "getDocs",
        "summary": "A human page for this API",
        "security": [],
        "responses": {
          "200": {
            "description": "A self-contained HTML page rendering /openapi.json.",
            "content": {"text/html": {"schema": {"type": "string"}}}
          }
        }
      }
    }
  },
  "components": {
    "securitySchemes": {
      "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "One of the keys in API_KEYS (or API_KEY): `Authorization: Bearer <key>`."
      },
      "accessToken": {
        "type": "apiKey",
        "in": "query",
        "name": "access_token",
        "description": "The same API keys as a query parameter, on the progress stream only (GET /api/v1/jobs/{id}/stream), for a browser's EventSource, which cannot send headers."
      }
    },
    "parameters": {
      "JobId": {
        "name": "id", "in": "path", "required": true, "description": "The job id returned at creation.",
        "schema": {"type": "string", "example": "job_k3v7q2m4x8n6p5r2t9w4y7z3ab"}
      },
      "IdempotencyKey": {
        "name": "Idempotency-Key", "in": "header", "required": false,
        "description": "Makes a retried POST return the job created the first time instead of a duplicate (per API key).",
        "schema": {"type": "string", "maxLength": 255}
      }
    },
    "headers": {
      "RetryAfter": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer", "minimum": 0}},
      "WWWAuthenticate": {"description": "Always `Bearer`.", "schema": {"type": "string"}}
    },
    "responses": {
      "BadRequest": {
        "description": "The request is invalid; `code` says which rule, `field` where.",
        "content": {"application/json": {
          "schema": {"$ref": "#/components/schemas/Error"},
          "example": {"error": "output.path must not contain a '..' segment", "code": "output_path_invalid", "field": "output.path"}
        }}
      },
      "Unauthorized": {
        "description": "Missing or invalid API key.",
        "headers": {"WWW-Authenticate": {"$ref": "#/components/headers/WWWAuthenticate"}},
        "content": {"application/json": {
          "schema": {"$ref": "#/components/schemas/Error"},
          "example": {"error": "missing or invalid API key", "code": "unauthorized"}
        }}
      },
      "NotFound": {
        "description": "No such job.",
        "content": {"application/json": {
          "schema": {"$ref": "#/components/schemas/Error"},
          "example": {"error": "job not found", "code": "job_not_found"}
        }}
      },
      "Conflict": {
        "description": "The job already finished.",
        "content": {"application/json": {
          "schema": {"$ref": "#/components/schemas/Error"},
          "example": {"error": "the job already completed", "code": "job_finished"}
        }}
      },
      "PayloadTooLarge": {
        "description": "The body is larger than 64 KiB.",
        "content": {"application/json": {
          "schema": {"$ref": "#/components/schemas/Error"},
          "example": {"error": "request body larger than 65536 bytes", "code": "body_too_large"}
        }}
      },
      "TooManyRequests": {
        "description": "Rate limit of this API key exceeded.",
        "headers": {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}},
        "content": {"application/json": {
          "schema": {"$ref": "#/components/schemas/Error"},
          "example": {"error": "rate limit exceeded", "code": "rate_limited"}
        }}
      },
      "ServiceUnavailable": {
        "description": "The queue is full (queue_full), no worker is free with QUEUE_LIMIT=0 (no_worker_available), no worker is configured (no_worker_configured), DNS failed for a moment (dns_unavailable), the control plane is shutting down (dispatcher_stopped), or HTTP_MAX_CONNECTIONS connections are open (too_many_connections, possible on every route). Retry after the Retry-After delay.",
        "headers": {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}},
        "content": {"application/json": {
          "schema": {"$ref": "#/components/schemas/Error"},
          "example": {"error": "the job queue is full", "code": "queue_full"}
        }}
      }
    },
    "schemas": {
      "Error": {
        "type": "object",
        "required": ["error", "code"],
        "properties": {
          "error": {"type": "string", "description": "A human message."},
          "code": {"type": "string", "description": "A machine code, e.g. input_url_scheme_forbidden, preset_unknown, output_path_invalid, metadata_invalid, priority_invalid, invalid_json."},
          "field": {"type": "string", "description": "The JSON path of the offending field, when there is one (e.g. output.metadata.title)."}
        }
      },
      "JobStatus": {
        "type": "string",
        "enum": ["queued", "processing", "uploading", "completed", "failed", "cancelled"]
      },
      "OutputType": {"type": "string", "enum": ["single", "hls", "dash"]},
      "Metadata": {
        "type": "object",
        "description": "At most 32 entries; keys match [A-Za-z0-9_-]{1,64}; values at most 1024 bytes without control characters.",
        "maxProperties": 32,
        "additionalProperties": {"type": "string", "maxLength": 1024}
      },
      "OutputRequest": {
        "type": "object",
        "required": ["storage", "path"],
        "properties": {
          "storage": {"type": "string", "enum": ["s3", "local"], "description": "Some configured worker must serve it."},
          "path": {"type": "string", "minLength": 1, "maxLength": 1024,
                   "description": "A relative key: no leading '/', no '..' segment, no backslash or control characters. For hls/dash, a directory prefix."},
          "type": {"$ref": "#/components/schemas/OutputType"},
          "metadata": {"$ref": "#/components/schemas/Metadata"}
        }
      },
      "JobRequest": {
        "type": "object",
        "required": ["input_url", "preset", "output"],
        "properties": {
          "input_url": {"type": "string", "description": "https, http or s3 by default (INPUT_SCHEMES); file:// only under LOCAL_INPUT_DIR. Loopback, private, link-local and metadata addresses are refused unless ALLOW_PRIVATE_INPUTS.",
                        "example": "https://media.example.org/source.mp4"},
          "preset": {"type": "string", "description": "The name of a preset of GET /api/v1/presets.", "example": "720p_h264"},
          "output": {"$ref": "#/components/schemas/OutputRequest"},
          "callback_url": {"type": "string", "description": "http or https; called with the job document on a terminal status, under the same address rules as inputs.",
                           "example": "https://hooks.example.org/flux"},
          "priority": {"type": "integer", "minimum": -10, "maximum": 10, "default": 0, "description": "Higher first; FIFO within a priority."}
        },
        "example": {
          "input_url": "https://media.example.org/source.mp4",
          "preset": "720p_h264",
          "output": {"storage": "s3", "path": "outputs/video_123.mp4", "type": "single", "metadata": {"title": "Sample"}},
          "callback_url": "https://hooks.example.org/flux",
          "priority": 0
        }
      },
      "JobAccepted": {
        "type": "object",
        "required": ["job_id", "status", "stream_url", "job_url"],
        "properties": {
          "job_id": {"type": "string"},
          "status": {"type": "string", "enum": ["accepted"]},
          "stream_url": {"type": "string", "description": "The SSE stream, e.g. /api/v1/jobs/{id}/stream."},
          "job_url": {"type": "string", "description": "The job document, e.g. /api/v1/jobs/{id}."}
        }
      },
      "OutputFile": {
        "type": "object",
        "properties": {
          "key": {"type": "string"},
          "size_bytes": {"type": "integer", "format": "int64", "minimum": 0},
          "url": {"type": "string"}
        }
      },
      "JobResult": {
        "type": "object",
        "description": "What the worker produced, on completion.",
        "properties": {
          "duration_seconds": {"type": "number"},
          "size_bytes": {"type": "integer", "format": "int64", "minimum": 0},
          "file_count": {"type": "integer", "minimum": 0},
          "video_codec": {"type": "string"},
          "width": {"type": "integer"},
          "height": {"type": "integer"},
          "fps": {"type": "number"},
          "pixel_format": {"type": "string"},
          "audio_codec": {"type": "string", "description": "Empty when the output has no audio."},
          "audio_channels": {"type": "integer"},
          "audio_sample_rate": {"type": "integer"},
          "files": {"type": "array", "items": {"$ref": "#/components/schemas/OutputFile"}}
        }
      },
      "WebhookDelivery": {
        "type": "object",
        "properties": {
          "state": {"type": "string", "enum": ["none", "pending", "delivered", "failed"]},
          "attempts": {"type": "integer", "minimum": 0},
          "last_status": {"type": "integer", "description": "HTTP status of the last try; 0 when there was no response."},
          "last_error": {"type": "string", "nullable": true},
          "delivered_at": {"type": "string", "format": "date-time", "nullable": true}
        }
      },
      "Job": {
        "type": "object",
        "required": ["job_id", "status", "phase", "progress", "preset", "input_url", "output", "attempts", "priority", "created_at"],
        "properties": {
          "job_id": {"type": "string"},
          "status": {"$ref": "#/components/schemas/JobStatus"},
          "phase": {"type": "string", "description": "queued, downloading, probing, encoding, validating, uploading or done."},
          "progress": {"type": "number", "minimum": 0, "maximum": 100},
          "message": {"type": "string"},
          "preset": {"type": "string"},
          "input_url": {"type": "string"},
          "output": {
            "type": "object",
            "properties": {
              "storage": {"type": "string", "enum": ["s3", "local"]},
              "path": {"type": "string"},
              "type": {"type": "string", "enum": ["single", "hls", "dash"], "nullable": true},
              "metadata": {"type": "object", "additionalProperties": {"type": "string"}}
            }
          },
          "output_url": {"type": "string", "nullable": true},
          "callback_url": {"type": "string", "nullable": true},
          "error": {"type": "string", "description": "Present when failed or cancelled."},
          "error_code": {"type": "string", "description": "Present when failed or cancelled, e.g. timeout, input_not_found."},
          "worker_id": {"type": "string", "nullable": true},
          "attempts": {"type": "integer", "minimum": 0, "description": "Dispatches so far."},
          "priority": {"type": "integer", "minimum": -10, "maximum": 10},
          "created_at": {"type": "string", "format": "date-time"},
          "started_at": {"type": "string", "format": "date-time", "nullable": true},
          "finished_at": {"type": "string", "format": "date-time", "nullable": true},
          "phase_durations": {"type": "object", "description": "Seconds spent in each phase.", "additionalProperties": {"type": "number"}},
          "result": {"type": "object", "nullable": true, "allOf": [{"$ref": "#/components/schemas/JobResult"}], "description": "Set on completion."},
          "webhook": {"$ref": "#/components/schemas/WebhookDelivery"}
        }
      },
      "JobList": {
        "type": "object",
        "required": ["jobs", "next_cursor"],
        "properties": {
          "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
          "next_cursor": {"type": "string", "nullable": true, "description": "null on the last page."}
        }
      },
      "ProgressEvent": {
        "type": "object",
        "description": "The data of one SSE event.",
        "required": ["job_id", "status", "progress", "message", "timestamp"],
        "properties": {
          "job_id": {"type": "string"},
          "status": {"$ref": "#/components/schemas/JobStatus"},
          "phase": {"type": "string"},
          "progress": {"type": "number", "minimum": 0, "maximum": 100},
          "message": {"type": "string"},
          "timestamp": {"type": "string", "format": "date-time"},
          "output_url": {"type": "string"},
          "error": {"type": "string"},
          "error_code": {"type": "string"},
          "result": {"$ref": "#/components/schemas/JobResult"}
        }
      },
      "Worker": {
        "type": "object",
        "required": ["address", "state"],
        "properties": {
          "address": {"type": "string", "description": "host:port as configured in WORKER_NODES."},
          "worker_id": {"type": "string", "nullable": true},
          "state": {"type": "string", "enum": ["up", "starting", "down", "draining"]},
          "current_jobs": {"type": "integer", "minimum": 0},
          "max_concurrent_jobs": {"type": "integer", "minimum": 0},
          "active_job_ids": {"type": "array", "items": {"type": "string"}},
          "version": {"type": "string", "nullable": true},
          "last_seen": {"type": "string", "format": "date-time", "nullable": true},
          "storage_types": {"type": "array", "items": {"type": "string"}},
          "presets": {"type": "array", "items": {"type": "string"}}
        }
      },
      "WorkerList": {
        "type": "object",
        "required": ["workers"],
        "properties": {"workers": {"type": "array", "items": {"$ref": "#/components/schemas/Worker"}}}
      },
      "Preset": {
        "type": "object",
        "required": ["name", "output_type", "extension"],
        "properties": {
          "name": {"type": "string", "example": "720p_h264"},
          "description": {"type": "string"},
          "output_type": {"$ref": "#/components/schemas/OutputType"},
          "extension": {"type": "string", "example": "mp4"}
        }
      },
      "PresetList": {
        "type": "object",
        "required": ["presets"],
        "properties": {"presets": {"type": "array", "items": {"$ref": "#/components/schemas/Preset"}}}
      },
      "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string", "enum": ["ok"]}}
      },
      "Readiness": {
        "type": "object",
        "required": ["status"],
        "properties": {
          "status": {"type": "string", "enum": ["ready", "not_ready"]},
          "checks": {"type": "object", "description": "Each check by name (store, workers) and its outcome.", "additionalProperties": {"type": "string"}}
        }
      }
    }
  }
})json";
  return document;
}

}  // namespace flux::controlplane::api
