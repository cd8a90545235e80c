import { DatabaseSync, type StatementSync } from "node:sqlite";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type {
  ExecutionRecord, ExecutionStatus, SandboxEventRecord, SandboxRecord, SandboxStatus, SnapshotRecord,
} from "./records.ts";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS sandboxes (
  id TEXT PRIMARY KEY,
  status TEXT NOT NULL,
  created_at TEXT NOT NULL,
  body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sandboxes_status ON sandboxes(status);
CREATE TABLE IF NOT EXISTS executions (
  id TEXT PRIMARY KEY,
  sandbox_id TEXT NOT NULL,
  status TEXT NOT NULL,
  created_at TEXT NOT NULL,
  body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_sandbox ON executions(sandbox_id, created_at);
CREATE TABLE IF NOT EXISTS events (
  sequence INTEGER PRIMARY KEY AUTOINCREMENT,
  sandbox_id TEXT NOT NULL,
  body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_sandbox ON events(sandbox_id, sequence);
CREATE TABLE IF NOT EXISTS snapshots (
  id TEXT PRIMARY KEY,
  created_at TEXT NOT NULL,
  body TEXT NOT NULL
);
`;

/**
 * The daemon's durable state in SQLite. Records are stored as JSON bodies with the columns queries need;
 * every write is synchronous so a record exists on disk before the host resource it describes is created.
 */
export class StateStore {
  readonly #db: DatabaseSync;
  readonly #putSandbox: StatementSync;
  readonly #getSandbox: StatementSync;
  readonly #putExecution: StatementSync;
  readonly #getExecution: StatementSync;
  readonly #addEvent: StatementSync;

  constructor(path: string) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.#db = new DatabaseSync(path);
    this.#db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;");
    this.#db.exec(SCHEMA);
    this.#putSandbox = this.#db.prepare(
      "INSERT INTO sandboxes (id, status, created_at, body) VALUES (?, ?, ?, ?) " +
        "ON CONFLICT(id) DO UPDATE SET status = excluded.status, body = excluded.body",
    );
    this.#getSandbox = this.#db.prepare("SELECT body FROM sandboxes WHERE id = ?");
    this.#putExecution = this.#db.prepare(
      "INSERT INTO executions (id, sandbox_id, status, created_at, body) VALUES (?, ?, ?, ?, ?) " +
        "ON CONFLICT(id) DO UPDATE SET status = excluded.status, body = excluded.body",
    );
    this.#getExecution = this.#db.prepare("SELECT body FROM executions WHERE id = ?");
    this.#addEvent = this.#db.prepare("INSERT INTO events (sandbox_id, body) VALUES (?, ?)");
  }

  putSandbox(record: SandboxRecord): void {
    this.#putSandbox.run(record.id, record.status, record.createdAt, JSON.stringify(record));
  }

  getSandbox(id: string): SandboxRecord | undefined {
    return parseBody<SandboxRecord>(this.#getSandbox.get(id));
  }

  listSandboxes(statuses?: readonly SandboxStatus[]): SandboxRecord[] {
    return this.#selectByStatus("sandboxes", statuses, "") as SandboxRecord[];
  }

  putExecution(record: ExecutionRecord): void {
    this.#putExecution.run(record.id, record.sandboxId, record.status, record.createdAt, JSON.stringify(record));
  }

  getExecution(id: string): ExecutionRecord | undefined {
    return parseBody<ExecutionRecord>(this.#getExecution.get(id));
  }

  listExecutions(filter: { sandboxId?: string; statuses?: readonly ExecutionStatus[] }): ExecutionRecord[] {
    return this.#selectByStatus("executions", filter.statuses, filter.sandboxId ?? "") as ExecutionRecord[];
  }

  /** Appends an event and returns it with its sequence number. */
  addEvent(event: Omit<SandboxEventRecord, "sequence">): SandboxEventRecord {
    const result = this.#addEvent.run(event.sandboxId, JSON.stringify(event));
    return { ...event, sequence: Number(result.lastInsertRowid) };
  }

  listEvents(sandboxId: string, afterSequence = 0, limit = 1000): SandboxEventRecord[] {
    const rows = this.#db
      .prepare("SELECT sequence, body FROM events WHERE sandbox_id = ? AND sequence > ? ORDER BY sequence LIMIT ?")
      .all(sandboxId, afterSequence, limit) as { sequence: number; body: string }[];
    return rows.map((row) => ({ ...(JSON.parse(row.body) as SandboxEventRecord), sequence: Number(row.sequence) }));
  }

  /** The newest `limit` events, oldest first. */
  recentEvents(sandboxId: string, limit: number): SandboxEventRecord[] {
    const rows = this.#db
      .prepare("SELECT sequence, body FROM events WHERE sandbox_id = ? ORDER BY sequence DESC LIMIT ?")
      .all(sandboxId, limit) as { sequence: number; body: string }[];
    return rows.reverse().map((row) => ({ ...(JSON.parse(row.body) as SandboxEventRecord), sequence: Number(row.sequence) }));
  }

  putSnapshot(record: SnapshotRecord): void {
    this.#db.prepare("INSERT INTO snapshots (id, created_at, body) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET body = excluded.body")
      .run(record.id, record.createdAt, JSON.stringify(record));
  }

  getSnapshot(id: string): SnapshotRecord | undefined {
    return parseBody<SnapshotRecord>(this.#db.prepare("SELECT body FROM snapshots WHERE id = ?").get(id));
  }

  listSnapshots(): SnapshotRecord[] {
    return (this.#db.prepare("SELECT body FROM snapshots ORDER BY created_at").all() as { body: string }[]).map((row) => JSON.parse(row.body) as SnapshotRecord);
  }

  deleteSnapshot(id: string): void {
    this.#db.prepare("DELETE FROM snapshots WHERE id = ?").run(id);
  }

  /** Forgets a terminated sandbox: its record, executions and events. */
  deleteSandbox(id: string): void {
    this.#db.prepare("DELETE FROM events WHERE sandbox_id = ?").run(id);
    this.#db.prepare("DELETE FROM executions WHERE sandbox_id = ?").run(id);
    this.#db.prepare("DELETE FROM sandboxes WHERE id = ?").run(id);
  }

  close(): void {
    this.#db.close();
  }

  #selectByStatus(table: "sandboxes" | "executions", statuses: readonly string[] | undefined, sandboxId: string): unknown[] {
    const where: string[] = [];
    const params: string[] = [];
    if (statuses) {
      where.push(`status IN (${statuses.map(() => "?").join(", ") || "NULL"})`);
      params.push(...statuses);
    }
    if (sandboxId) {
      where.push("sandbox_id = ?");
      params.push(sandboxId);
    }
    const sql = `SELECT body FROM ${table}${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY created_at`;
    return (this.#db.prepare(sql).all(...params) as { body: string }[]).map((row) => JSON.parse(row.body));
  }
}

function parseBody<T>(row: unknown): T | undefined {
  if (!row || typeof row !== "object" || !("body" in row)) return undefined;
  return JSON.parse(String(row.body)) as T;
}
