import { Environment } from "@marcbachmann/cel-js";

/**
 * CEL in the auth policy. A binding's `when` sees the token (`token.issuer`, `token.subject`, `token.audience`)
 * and its claims (`claims.*`); a grant's `condition` sees `action`, `principal.*`, `resource.*` and `request.*`.
 * Expressions are parsed and type-checked when the config loads, so a typo in a variable name is a config
 * error, not a silent deny at request time.
 */
export type ExpressionKind = "when" | "condition";

const LIMITS = { maxAstNodes: 2000, maxDepth: 32, maxListElements: 256, maxMapEntries: 256, maxCallArguments: 16 };
export const MAX_EXPRESSION_CHARS = 4096;

const environments: Record<ExpressionKind, Environment> = {
  when: new Environment({ limits: LIMITS }).registerVariable("token", "map").registerVariable("claims", "map"),
  condition: new Environment({ limits: LIMITS })
    .registerVariable("action", "string")
    .registerVariable("principal", "map")
    .registerVariable("resource", "map")
    .registerVariable("request", "map"),
};

/** Why `source` is not a usable boolean expression, or undefined when it is. */
export function expressionProblem(kind: ExpressionKind, source: string): string | undefined {
  if (source.length > MAX_EXPRESSION_CHARS) return `longer than ${MAX_EXPRESSION_CHARS} characters`;
  try {
    const checked = environments[kind].parse(source).check();
    if (!checked.valid) return firstLine(checked.error?.message ?? "does not type-check");
    if (checked.type !== "bool" && checked.type !== "dyn") return `evaluates to ${checked.type}, not bool`;
    return undefined;
  } catch (err) {
    return firstLine((err as Error).message);
  }
}

export interface CompiledExpression {
  readonly source: string;
  /** true only when the expression evaluates to exactly true; an evaluation error (e.g. a missing claim) is false */
  test(context: Record<string, unknown>): boolean;
}

export function compileExpression(kind: ExpressionKind, source: string): CompiledExpression {
  const evaluate = environments[kind].parse(source);
  return {
    source,
    test(context) {
      try {
        return evaluate(context) === true;
      } catch {
        return false;
      }
    },
  };
}

function firstLine(message: string): string {
  return message.split("\n")[0] ?? message;
}
