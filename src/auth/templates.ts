/**
 * Principal templates: text with `${token.issuer}`, `${token.subject}` or `${claims.NAME}` (`claims.a.b` for a
 * nested claim) placeholders, e.g. `repo:${claims.repository}`. Nothing else is substituted.
 */
const PLACEHOLDER = /\$\{([^}]*)\}/g;
const REFERENCE = /^(token\.(issuer|subject)|claims(\.[A-Za-z_][A-Za-z0-9_-]*)+)$/;
const MAX_TEMPLATE_CHARS = 512;
const MAX_RENDERED_CHARS = 1024;

/** Why `template` cannot be rendered, or undefined. */
export function templateProblem(template: string): string | undefined {
  if (template.length > MAX_TEMPLATE_CHARS) return `longer than ${MAX_TEMPLATE_CHARS} characters`;
  if (/[\u0000-\u001f\u007f]/.test(template)) return "control characters are not allowed";
  for (const [, reference] of template.matchAll(PLACEHOLDER)) {
    if (!REFERENCE.test(reference ?? "")) return `unknown placeholder \${${reference}}: use \${token.issuer}, \${token.subject} or \${claims.NAME}`;
  }
  if (template.replace(PLACEHOLDER, "").includes("${")) return "an unterminated ${ placeholder";
  return undefined;
}

export interface TemplateValues {
  token: { issuer: string; subject: string };
  claims: Record<string, unknown>;
}

/** The rendered text, or the first placeholder whose value is missing or not a string/number/boolean. */
export function renderTemplate(template: string, values: TemplateValues): { text: string } | { missing: string } {
  let missing: string | undefined;
  const text = template.replace(PLACEHOLDER, (_whole, reference: string) => {
    const value = valueAt(values, reference);
    if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") return String(value);
    missing ??= reference;
    return "";
  });
  if (missing !== undefined) return { missing };
  if (!text || text.length > MAX_RENDERED_CHARS || /[\u0000-\u001f\u007f]/.test(text)) return { missing: template };
  return { text };
}

function valueAt(values: TemplateValues, reference: string): unknown {
  let at: unknown = values;
  for (const key of reference.split(".")) {
    if (typeof at !== "object" || at === null || !Object.hasOwn(at, key)) return undefined;
    at = (at as Record<string, unknown>)[key];
  }
  return at;
}
