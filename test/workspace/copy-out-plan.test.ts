import assert from "node:assert/strict";
import { test } from "node:test";
import { planCopyOut } from "../../src/workspace/copy-out-plan.ts";
import { checkoutPathProblem, parseTreeChanges, type TreeChange } from "../../src/workspace/tree-changes.ts";

const A = "a".repeat(40);
const B = "b".repeat(40);
const C = "c".repeat(40);
const Z = "0".repeat(40);

test("diff-tree -z output parses into changes on both sides", () => {
  const raw = `:100644 100755 ${A} ${B} M\0tool.sh\0:000000 120000 ${Z} ${C} A\0link\0:100644 000000 ${A} ${Z} D\0gone.txt\0`;
  assert.deepEqual(parseTreeChanges(raw), [
    { path: "tool.sh", before: { kind: "file", oid: A }, after: { kind: "executable", oid: B } },
    { path: "link", after: { kind: "symlink", oid: C } },
    { path: "gone.txt", before: { kind: "file", oid: A } },
  ]);
});

test("diff-tree output that is cut short or has unknown modes is refused", () => {
  assert.throws(() => parseTreeChanges(`:100644 100644 ${A} ${B} M\0`), /middle of an entry/);
  assert.throws(() => parseTreeChanges(`:100666 100644 ${A} ${B} M\0x\0`), /unexpected tree entry mode/);
  assert.throws(() => parseTreeChanges(`garbage\0x\0`), /unexpected diff-tree entry/);
});

test("only ordinary relative paths may be written in a checkout", () => {
  for (const ok of ["README.md", "src/a b/c.ts", ".github/workflows/ci.yml", "..hidden", "a/.gitignore"]) assert.equal(checkoutPathProblem(ok), undefined, ok);
  const bad: [string, RegExp][] = [
    ["", /empty/], ["/etc/passwd", /absolute/], ["..", /"\.\." component/], ["a/../../b", /"\.\." component/],
    ["a//b", /"" component/], ["./a", /"\." component/], [".git/hooks/pre-commit", /inside \.git/], ["sub/.GIT/config", /inside \.git/],
    ["a\nb", /control characters/], ["x".repeat(5000), /too long/], [`${"y".repeat(300)}/z`, /component is too long/],
  ];
  for (const [path, reason] of bad) assert.match(checkoutPathProblem(path) ?? "", reason, JSON.stringify(path.slice(0, 20)));
});

const change = (path: string, before?: string, after?: string): TreeChange => ({
  path, ...(before ? { before: { kind: "file", oid: before } } : {}), ...(after ? { after: { kind: "file", oid: after } } : {}),
});

test("a path changed here and in the sandbox differently is a conflict, unless forced", () => {
  const sandbox = [change("a.txt", A, B), change("b.txt", A, C), change("new.txt", undefined, B)];
  const local = new Map([["a.txt", change("a.txt", A, C)], ["b.txt", change("b.txt", A, C)]]);
  const plan = planCopyOut(sandbox, local, false);
  assert.deepEqual(plan.conflicts, [{ path: "a.txt", reason: "changed here and in the sandbox" }]);
  assert.deepEqual(plan.apply.map((c) => c.path), ["new.txt"]);
  assert.equal(plan.alreadyHere, 1, "b.txt already has the sandbox's content");
  assert.deepEqual(planCopyOut(sandbox, local, true).apply.map((c) => c.path), ["a.txt", "new.txt"]);
});

test("deletions come first; unsafe paths and submodules are skipped even when forced", () => {
  const sandbox: TreeChange[] = [
    change("z.txt", undefined, A), change("m.txt", A), change("../escape", undefined, A),
    { path: "vendor/lib", before: { kind: "submodule", oid: A }, after: { kind: "submodule", oid: B } },
  ];
  const plan = planCopyOut(sandbox, new Map(), true);
  assert.deepEqual(plan.apply.map((c) => c.path), ["m.txt", "z.txt"]);
  assert.deepEqual(plan.skipped.map((s) => s.path), ["../escape", "vendor/lib"]);
  assert.match(plan.skipped[0]!.reason, /unsafe path/);
});
