// GET /docs: renders /openapi.json in the browser with plain JavaScript, so
// the page works offline and pulls nothing from a CDN. Every piece of text
// from the document goes through textContent, never innerHTML.
#include "controlplane/api/openapi.h"

namespace flux::controlplane::api {

const std::string& docs_page() {
  static const std::string page = R"html(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>flux-encoder API</title>
<style>
  body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d232b; background: #f6f7f9; }
  header { background: #1d2a3a; color: #fff; padding: 1.2rem 2rem; }
  header h1 { margin: 0; font-size: 1.5rem; }
  header p { margin: .4rem 0 0; color: #c9d3df; max-width: 60rem; }
  main { padding: 1rem 2rem 3rem; max-width: 72rem; }
  h2 { margin-top: 2rem; border-bottom: 1px solid #d5dae1; padding-bottom: .3rem; }
  details.op { background: #fff; border: 1px solid #d5dae1; border-radius: 6px; margin: .5rem 0; }
  details.op > summary { cursor: pointer; padding: .6rem .8rem; list-style: none; display: flex; gap: .8rem; align-items: baseline; }
  details.op > div { padding: 0 1rem 1rem; }
  .method { font-weight: 700; font-family: ui-monospace, monospace; min-width: 4.5rem; text-transform: uppercase;
            border-radius: 4px; padding: .1rem .4rem; color: #fff; text-align: center; }
  .get { background: #2f7d4f; } .post { background: #2a62b8; } .put, .patch { background: #a86b12; } .delete { background: #b33a3a; }
  .path { font-family: ui-monospace, monospace; font-weight: 600; }
  .summary { color: #4a5563; }
  .open { font-size: .75rem; color: #7a4f00; background: #fff1cc; border-radius: 3px; padding: 0 .3rem; }
  table { border-collapse: collapse; width: 100%; margin: .4rem 0; font-size: .92rem; }
  th, td { text-align: left; border-bottom: 1px solid #e4e7ec; padding: .3rem .5rem; vertical-align: top; }
  th { background: #f0f2f5; }
  code, .mono { font-family: ui-monospace, monospace; font-size: .9em; }
  pre { background: #0f1720; color: #e3e9f0; padding: .7rem; border-radius: 4px; overflow-x: auto; font-size: .85rem; }
  .schema { background: #fff; border: 1px solid #d5dae1; border-radius: 6px; padding: .2rem 1rem .8rem; margin: .8rem 0; }
  .error { color: #b33a3a; }
  a { color: #2a62b8; }
</style>
</head>
<body>
<header>
  <h1 id="title">flux-encoder API</h1>
  <p id="description">Loading <a href="/openapi.json">/openapi.json</a>&hellip;</p>
</header>
<main id="content"></main>
<script>
"use strict";
(function () {
  var content = document.getElementById("content");

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k]; else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }
  function refName(ref) { return ref.split("/").pop(); }
  function resolve(doc, obj) {
    var seen = 0;
    while (obj && obj.$ref && seen++ < 20) {
      obj = obj.$ref.replace(/^#\//, "").split("/").reduce(function (o, k) { return o ? o[k] : undefined; }, doc);
    }
    return obj || {};
  }
  // A short type label; named schemas become links to their section.
  function typeNode(schema) {
    if (!schema) return document.createTextNode("");
    if (schema.$ref) return el("a", {href: "#schema-" + refName(schema.$ref), text: refName(schema.$ref)});
    if (schema.allOf && schema.allOf.length === 1) {
      var inner = el("span", {}, [typeNode(schema.allOf[0])]);
      if (schema.nullable) inner.appendChild(document.createTextNode(" | null"));
      return inner;
    }
    var span = el("span", {"class": "mono"});
    if (schema.type === "array") {
      span.appendChild(document.createTextNode("array of "));
      span.appendChild(typeNode(schema.items));
    } else if (schema.type === "object" && schema.additionalProperties && typeof schema.additionalProperties === "object") {
      span.appendChild(document.createTextNode("map of "));
      span.appendChild(typeNode(schema.additionalProperties));
    } else {
      span.appendChild(document.createTextNode(schema.type || "any"));
    }
    var notes = [];
    if (schema.enum) notes.push("one of " + schema.enum.join(", "));
    if (schema.format) notes.push(schema.format);
    if (schema.minimum !== undefined) notes.push("min " + schema.minimum);
    if (schema.maximum !== undefined) notes.push("max " + schema.maximum);
    if (schema.minLength !== undefined) notes.push("min length " + schema.minLength);
    if (schema.maxLength !== undefined) notes.push("max length " + schema.maxLength);
    if (schema.maxProperties !== undefined) notes.push("at most " + schema.maxProperties + " entries");
    if (schema["default"] !== undefined) notes.push("default " + JSON.stringify(schema["default"]));
    if (schema.nullable) notes.push("nullable");
    if (notes.length) span.appendChild(document.createTextNode(" (" + notes.join("; ") + ")"));
    return span;
  }
  function propertiesTable(doc, schema) {
    schema = resolve(doc, schema);
    var required = schema.required || [];
    var rows = Object.keys(schema.properties || {}).map(function (name) {
      var prop = schema.properties[name];
      var desc = prop.description || (prop.$ref ? resolve(doc, prop).description : "") || "";
      if (prop.type === "object" && prop.properties) {
        return el("tr", {}, [el("td", {"class": "mono", text: name + (required.indexOf(name) >= 0 ? " *" : "")}),
                              el("td", {}, [typeNode({type: "object"})]),
                              el("td", {}, [document.createTextNode(desc), propertiesTable(doc, prop)])]);
      }
      return el("tr", {}, [el("td", {"class": "mono", text: name + (required.indexOf(name) >= 0 ? " *" : "")}),
                            el("td", {}, [typeNode(prop)]), el("td", {text: desc})]);
    });
    if (!rows.length) return el("p", {}, [typeNode(schema)]);
    return el("table", {}, [el("tr", {}, [el("th", {text: "field (* required)"}), el("th", {text: "type"}),
                                          el("th", {text: "description"})])].concat(rows));
  }
  function operation(doc, path, method, op) {
    var body = el("div");
    if (op.description) body.appendChild(el("p", {text: op.description}));
    if (op.security && op.security.length === 0) body.appendChild(el("p", {}, [el("span", {"class": "open", text: "no authentication"})]));
    var params = (op.parameters || []).map(function (p) { return resolve(doc, p); });
    if (params.length) {
      body.appendChild(el("h4", {text: "Parameters"}));
      body.appendChild(el("table", {}, [el("tr", {}, [el("th", {text: "name"}), el("th", {text: "in"}),
          el("th", {text: "type"}), el("th", {text: "description"})])].concat(params.map(function (p) {
        return el("tr", {}, [el("td", {"class": "mono", text: p.name + (p.required ? " *" : "")}), el("td", {text: p["in"]}),
                              el("td", {}, [typeNode(p.schema)]), el("td", {text: p.description || ""})]);
      }))));
    }
    if (op.requestBody) {
      var rb = resolve(doc, op.requestBody);
      body.appendChild(el("h4", {text: "Request body"}));
      Object.keys(rb.content || {}).forEach(function (type) {
        body.appendChild(el("p", {}, [el("code", {text: type}), document.createTextNode(" "), typeNode(rb.content[type].schema)]));
        var example = resolve(doc, rb.content[type].schema).example;
        if (example) body.appendChild(el("pre", {text: JSON.stringify(example, null, 2)}));
      });
    }
    body.appendChild(el("h4", {text: "Responses"}));
    body.appendChild(el("table", {}, [el("tr", {}, [el("th", {text: "status"}), el("th", {text: "description"}),
        el("th", {text: "body"})])].concat(Object.keys(op.responses || {}).map(function (status) {
      var r = resolve(doc, op.responses[status]);
      var cell = el("td");
      Object.keys(r.content || {}).forEach(function (type) {
        cell.appendChild(el("div", {}, [el("code", {text: type}), document.createTextNode(" "), typeNode(r.content[type].schema)]));
        if (r.content[type].example) {
          var ex = r.content[type].example;
          cell.appendChild(el("pre", {text: typeof ex === "string" ? ex : JSON.stringify(ex)}));
        }
      });
      Object.keys(r.headers || {}).forEach(function (h) { cell.appendChild(el("div", {"class": "mono", text: "header " + h})); });
      return el("tr", {}, [el("td", {"class": "mono", text: status}), el("td", {text: r.description || ""}), cell]);
    }))));
    return el("details", {"class": "op", id: op.operationId || ""}, [
      el("summary", {}, [el("span", {"class": "method " + method, text: method}), el("span", {"class": "path", text: path}),
                         el("span", {"class": "summary", text: op.summary || ""})]),
      body]);
  }
  function render(doc) {
    document.title = doc.info.title;
    document.getElementById("title").textContent = doc.info.title + " " + doc.info.version;
    var desc = document.getElementById("description");
    desc.textContent = doc.info.description || "";
    desc.appendChild(document.createTextNode(" "));
    desc.appendChild(el("a", {href: "/openapi.json", text: "openapi.json"}));
    desc.style.color = "#c9d3df";
    var byTag = {};
    Object.keys(doc.paths).forEach(function (path) {
      Object.keys(doc.paths[path]).forEach(function (method) {
        var op = doc.paths[path][method];
        if (typeof op !== "object" || !op.responses) return;
        var tag = (op.tags && op.tags[0]) || "other";
        (byTag[tag] = byTag[tag] || []).push(operation(doc, path, method, op));
      });
    });
    (doc.tags || []).concat([{name: "other"}]).forEach(function (tag) {
      if (!byTag[tag.name]) return;
      content.appendChild(el("h2", {text: tag.name}));
      if (tag.description) content.appendChild(el("p", {text: tag.description}));
      byTag[tag.name].forEach(function (node) { content.appendChild(node); });
    });
    var schemes = (doc.components && doc.components.securitySchemes) || {};
    content.appendChild(el("h2", {text: "Authentication"}));
    Object.keys(schemes).forEach(function (name) {
      content.appendChild(el("p", {}, [el("code", {text: name}), document.createTextNode(": " + (schemes[name].description || schemes[name].scheme || ""))]));
    });
    content.appendChild(el("h2", {text: "Schemas"}));
    var schemas = (doc.components && doc.components.schemas) || {};
    Object.keys(schemas).forEach(function (name) {
      var s = schemas[name];
      var box = el("div", {"class": "schema", id: "schema-" + name}, [el("h3", {text: name})]);
      if (s.description) box.appendChild(el("p", {text: s.description}));
      box.appendChild(propertiesTable(doc, s));
      content.appendChild(box);
    });
  }
  fetch("/openapi.json", {headers: {"Accept": "application/json"}})
    .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
    .then(render)
    .catch(function (e) {
      content.appendChild(el("p", {"class": "error", text: "Could not load /openapi.json: " + e.message}));
    });
})();
</script>
</body>
</html>
)html";
  return page;
}

}  // namespace flux::controlplane::api
