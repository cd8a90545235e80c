import { isMap, isPair, isScalar, LineCounter, parseDocument, type Document, type Node } from "yaml";
import type { ZodType } from "zod";
import { CleanroomError, type ReasonCode } from "../errors/index.ts";

import { MAX_YAML_BYTES } from "./limits.ts";

/**
 * Parses `text` as YAML and validates it with `schema`. Every failure is a CleanroomError whose message
 * names `file:line:column`, the key path and the rule broken, e.g.
 * `config.yaml:3:5: backends.linux.vcpus: expected a number, received a string`.
 */
export function parseYamlDocument<T>(text: string, schema: ZodType<T>, file: string, code: ReasonCode): T {
  if (Buffer.byteLength(text) > MAX_YAML_BYTES) throw new CleanroomError(code, `${file}: larger than ${MAX_YAML_BYTES} bytes`);
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const syntax = doc.errors[0];
  if (syntax) {
    const pos = lineCounter.linePos(syntax.pos[0]);
    throw new CleanroomError(code, `${file}:${pos.line}:${pos.col}: ${syntax.message.split("\n")[0]}`, { file, line: pos.line, column: pos.col });
  }
  const result = schema.safeParse(doc.toJS({ maxAliasCount: 100 }) ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const path = issue.path.filter((p): p is string | number => typeof p !== "symbol");
  const unknownKey = issue.code === "unrecognized_keys" ? String(issue.keys[0]) : undefined;
  const offset = locate(doc, path, unknownKey);
  const pos = lineCounter.linePos(offset);
  const where = [...path, ...(unknownKey ? [unknownKey] : [])].map((p, i) => (typeof p === "number" ? `[${p}]` : `${i ? "." : ""}${p}`)).join("");
  const message = unknownKey ? `unknown key "${unknownKey}"` : issue.message;
  throw new CleanroomError(code, `${file}:${pos.line}:${pos.col}: ${where || "(document)"}: ${message}`, { file, line: pos.line, column: pos.col, path: where });
}

/** Source offset of the node at `path` (or of `key` in the map there), else of the nearest ancestor that exists. */
function locate(doc: Document, path: (string | number)[], key: string | undefined): number {
  for (let depth = path.length; depth >= 0; depth--) {
    const node = depth === 0 ? (doc.contents as Node | null) : (doc.getIn(path.slice(0, depth), true) as Node | undefined);
    if (!node) continue;
    if (key !== undefined && depth === path.length && isMap(node)) {
      const pair = node.items.find((item) => isPair(item) && isScalar(item.key) && String(item.key.value) === key);
      if (pair && isScalar(pair.key) && pair.key.range) return pair.key.range[0];
    }
    if (node.range) return node.range[0];
  }
  return 0;
}
