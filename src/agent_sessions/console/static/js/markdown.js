// Markdown to sanitised HTML with highlighted code: marked parses, DOMPurify cleans (the model's
// text is untrusted), highlight.js colours code blocks. All three are vendored (vendor/).

import { marked } from "../vendor/marked.esm.js";
import DOMPurify from "../vendor/purify.es.js";
import hljs from "../vendor/highlight/core.min.js";
import bash from "../vendor/highlight/languages/bash.min.js";
import css from "../vendor/highlight/languages/css.min.js";
import diff from "../vendor/highlight/languages/diff.min.js";
import go from "../vendor/highlight/languages/go.min.js";
import javascript from "../vendor/highlight/languages/javascript.min.js";
import json from "../vendor/highlight/languages/json.min.js";
import markdown from "../vendor/highlight/languages/markdown.min.js";
import python from "../vendor/highlight/languages/python.min.js";
import rust from "../vendor/highlight/languages/rust.min.js";
import shell from "../vendor/highlight/languages/shell.min.js";
import sql from "../vendor/highlight/languages/sql.min.js";
import typescript from "../vendor/highlight/languages/typescript.min.js";
import xml from "../vendor/highlight/languages/xml.min.js";
import yaml from "../vendor/highlight/languages/yaml.min.js";

const languages = {
  bash, css, diff, go, javascript, json, markdown, python, rust, shell, sql, typescript, xml, yaml,
};
for (const [name, grammar] of Object.entries(languages)) hljs.registerLanguage(name, grammar);

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.getAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

/** Render `text` as markdown into `element` (replacing what it held). */
export function renderMarkdown(element, text) {
  const html = marked.parse(text || "", { gfm: true, async: false });
  element.innerHTML = DOMPurify.sanitize(html, { FORBID_TAGS: ["style", "form", "input"] });
  for (const code of element.querySelectorAll("pre code")) highlightElement(code);
}

/** Colour a <code> element: by its language-* class when known, else guessed. */
export function highlightElement(code) {
  const lang = [...code.classList].find((c) => c.startsWith("language-"))?.slice(9);
  if (lang && !hljs.getLanguage(lang)) {
    code.classList.add("hljs");
    return;
  }
  hljs.highlightElement(code);
}

/** Highlighted HTML (escaped by highlight.js) for `text` in `language`, or guessed. */
export function highlight(text, language) {
  if (language && hljs.getLanguage(language)) {
    return hljs.highlight(text, { language, ignoreIllegals: true }).value;
  }
  return hljs.highlightAuto(text).value;
}

/** The highlight.js language of a file name, if one is registered. */
export function languageOf(path) {
  const ext = (path.split(".").pop() || "").toLowerCase();
  const byExt = {
    py: "python", js: "javascript", mjs: "javascript", ts: "typescript", tsx: "typescript",
    sh: "bash", json: "json", md: "markdown", yml: "yaml", yaml: "yaml", go: "go", rs: "rust",
    sql: "sql", html: "xml", xml: "xml", css: "css", diff: "diff", patch: "diff",
  };
  return byExt[ext];
}
