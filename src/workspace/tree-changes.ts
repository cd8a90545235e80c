/**
 * Differences between two Git trees as `git diff-tree -r -z --no-renames` prints them, and the rule for which
 * paths a change may touch. Trees that come out of a sandbox are hostile: a path is only ever used after
 * `checkoutPathProblem` found nothing wrong with it.
 */

/** What a path is in a tree: a file (644 or 755), a symlink, or a submodule commit. */
export type EntryKind = "file" | "executable" | "symlink" | "submodule";

export interface TreeEntry {
  kind: EntryKind;
  /** blob (or commit, for a submodule) id */
  oid: string;
}

export interface TreeChange {
  path: string;
  /** undefined: the path does not exist on that side */
  before?: TreeEntry;
  after?: TreeEntry;
}

const OID = /^[0-9a-f]{40}$/;
const ZERO_OID = "0".repeat(40);
const MODES: Record<string, EntryKind> = { "100644": "file", "100755": "executable", "120000": "symlink", "160000": "submodule" };
const GIT_MODE: Record<EntryKind, string> = { file: "100644", executable: "100755", symlink: "120000", submodule: "160000" };
/** a path deeper or longer than this is not one a checkout would hold */
const MAX_PATH_BYTES = 4096;
const MAX_COMPONENT_BYTES = 255;

/** Parses `git diff-tree -r -z --no-renames A B`; throws on anything else (a broken or hostile tree). */
export function parseTreeChanges(raw: string): TreeChange[] {
  const fields = raw.split("\0");
  if (fields.at(-1) === "") fields.pop();
  if (fields.length % 2) throw new Error("diff-tree output ends in the middle of an entry");
  const changes: TreeChange[] = [];
  for (let i = 0; i < fields.length; i += 2) {
    const meta = /^:(\d{6}) (\d{6}) ([0-9a-f]{40}) ([0-9a-f]{40}) ([AMDT])$/.exec(fields[i]!);
    if (!meta) throw new Error(`unexpected diff-tree entry ${JSON.stringify(fields[i]!.slice(0, 120))}`);
    const [, modeBefore, modeAfter, oidBefore, oidAfter] = meta as unknown as [string, string, string, string, string];
    changes.push({
      path: fields[i + 1]!,
      ...side("before", modeBefore, oidBefore),
      ...side("after", modeAfter, oidAfter),
    });
  }
  return changes;
}

function side(name: "before" | "after", mode: string, oid: string): Partial<TreeChange> {
  if (mode === "000000" && oid === ZERO_OID) return {};
  const kind = MODES[mode];
  if (!kind || !OID.test(oid)) throw new Error(`unexpected tree entry mode ${mode}`);
  return { [name]: { kind, oid } };
}

/** Git's mode for an entry kind (as `git update-index --cacheinfo` takes it). */
export function gitMode(kind: EntryKind): string {
  return GIT_MODE[kind];
}

/**
 * Why `path` must not be written in a checkout, or undefined when it is an ordinary relative path: no absolute
 * paths, no empty, `.` or `..` components, nothing inside `.git`, no control characters, bounded length.
 */
export function checkoutPathProblem(path: string): string | undefined {
  if (!path) return "the path is empty";
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) return "the path is too long";
  if (path.startsWith("/")) return "the path is absolute";
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(path)) return "the path has control characters";
  for (const component of path.split("/")) {
    if (component === "" || component === "." || component === "..") return `the path has a "${component}" component`;
    if (component.toLowerCase() === ".git") return "the path is inside .git";
    if (Buffer.byteLength(component) > MAX_COMPONENT_BYTES) return "a path component is too long";
  }
  return undefined;
}

/** True when two sides hold the same thing (both absent, or same kind and content). */
export function sameEntry(a: TreeEntry | undefined, b: TreeEntry | undefined): boolean {
  return a?.kind === b?.kind && a?.oid === b?.oid;
}
