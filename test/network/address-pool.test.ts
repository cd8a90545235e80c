import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AddressPool } from "../../src/network/address-pool.ts";

async function tempFile(t: { after(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "cleanroom-pool-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return join(dir, "state", "leases.json");
}

test("each sandbox gets its own /30 (.1 host, .2 sandbox); reserve is idempotent and survives a restart", async (t) => {
  const file = await tempFile(t);
  const pool = await AddressPool.open(file, "10.213.0.0/16");
  assert.deepEqual(await pool.reserve("aaaaaaaaaaaa"), { network: "10.213.0.0", hostAddress: "10.213.0.1", sandboxAddress: "10.213.0.2" });
  assert.deepEqual(await pool.reserve("bbbbbbbbbbbb"), { network: "10.213.0.4", hostAddress: "10.213.0.5", sandboxAddress: "10.213.0.6" });
  assert.equal((await pool.reserve("aaaaaaaaaaaa")).network, "10.213.0.0");
  assert.equal(((await stat(file)).mode & 0o777).toString(8), "600");
  const reopened = await AddressPool.open(file, "10.213.0.0/16");
  assert.deepEqual(reopened.sandboxIds(), ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]);
  assert.equal(reopened.lookup("bbbbbbbbbbbb")?.sandboxAddress, "10.213.0.6");
  assert.equal(reopened.holderOf("10.213.0.5"), "bbbbbbbbbbbb");
  assert.equal((await reopened.reserve("cccccccccccc")).network, "10.213.0.8");
});

test("a released pair is reused last (round robin), and a full pool says so", async (t) => {
  const file = await tempFile(t);
  const pool = await AddressPool.open(file, "10.99.0.0/28"); // four /30s
  for (const id of ["aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"]) await pool.reserve(id);
  await pool.release("aaaaaaaaaaaa");
  await pool.release("aaaaaaaaaaaa"); // idempotent
  assert.equal((await pool.reserve("dddddddddddd")).network, "10.99.0.12", "the never-used block first");
  assert.equal((await pool.reserve("eeeeeeeeeeee")).network, "10.99.0.0", "then the released one");
  await assert.rejects(pool.reserve("ffffffffffff"), /exhausted \(4 sandboxes\)/);
  await assert.rejects(pool.reserve("NOT AN ID"), /12 characters/);
});

test("bad pools and damaged lease files are refused with a message that says what to do", async (t) => {
  const file = await tempFile(t);
  await assert.rejects(AddressPool.open(file, "10.213.0.1/16"), /host bits are set; did you mean 10\.213\.0\.0\/16/);
  await assert.rejects(AddressPool.open(file, "10.213.0.0/31"), /smaller than one \/30/);
  await assert.rejects(AddressPool.open(file, "not-a-cidr"), /not an IPv4 CIDR/);
  await (await AddressPool.open(file, "10.213.0.0/16")).reserve("aaaaaaaaaaaa");
  const good = await readFile(file, "utf8");
  await writeFile(file, "{ not json");
  await assert.rejects(AddressPool.open(file, "10.213.0.0/16"), /not JSON.*move it away/);
  await writeFile(file, good.replace("10.213.0.0", "10.213.0.1"));
  await assert.rejects(AddressPool.open(file, "10.213.0.0/16"), /not the start of a \/30/);
});
