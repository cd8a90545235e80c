import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  cleanroomMarkBit,
  renderElementRefresh,
  renderSandboxRemoval,
  renderSandboxSetup,
  renderStageSwitch,
  renderTableSetup,
} from "../../src/network/nft-ruleset.ts";

const naming = { table: "cleanroom", interfacePrefix: "cr-" };
const table = { ...naming, pool: "10.213.0.0/16", blockedCidrs: ["192.168.0.0/16"], forwardGuard: true };
const sb = {
  sandboxId: "abc123def456",
  hostInterface: "cr-abc123def456",
  hostAddress: "10.213.0.1",
  sandboxAddress: "10.213.0.2",
  gatewayPort: 8170,
  dnsPort: 53,
  stages: ["dependencies", "execution"],
};
const mark = 0x9f883265;
const stage = { sandboxId: sb.sandboxId, activeStage: "dependencies", allowAll: false, mark };
const lines = (script: string) => script.trim().split("\n");

test("the table: dispatch by interface, never-forward ranges incl. the pool and metadata, return traffic only, masquerade, guard", () => {
  const script = lines(renderTableSetup(table));
  for (const expected of [
    "add table inet cleanroom",
    "add map inet cleanroom from_sandbox_fwd { type ifname : verdict ; }",
    "add element inet cleanroom never_forward { 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/3, 10.213.0.0/16, 192.168.0.0/16 }",
    "add chain inet cleanroom prerouting { type filter hook prerouting priority raw ; policy accept ; }",
    "add rule inet cleanroom prerouting iifname vmap @from_sandbox_pre",
    "add rule inet cleanroom input iifname vmap @from_sandbox_in",
    'add rule inet cleanroom input ip daddr 10.213.0.0/16 iif != "lo" iifname != "cr-*" drop',
    "add rule inet cleanroom forward iifname vmap @from_sandbox_fwd",
    'add rule inet cleanroom forward oifname "cr-*" ct state established,related accept',
    'add rule inet cleanroom forward oifname "cr-*" drop',
    "add rule inet cleanroom forward_guard ct mark and 0x80000000 != 0x80000000 drop",
    'add rule inet cleanroom postrouting ip saddr 10.213.0.0/16 oifname != "cr-*" masquerade',
  ]) {
    assert.ok(script.includes(expected), `missing: ${expected}`);
  }
  // re-applying on a restart refills the base chains without touching sandbox objects
  assert.ok(script.indexOf("flush chain inet cleanroom forward") < script.indexOf("add rule inet cleanroom forward iifname vmap @from_sandbox_fwd"));
  assert.ok(!script.some((l) => /^(flush|delete) (map|table)/.test(l) || l.includes("sb-")));
  assert.ok(!renderTableSetup({ ...table, forwardGuard: false }).includes("forward_guard ct mark"), "no guard when the host already forwarded");
});

test("a sandbox: anti-spoof, only gateway and DNS on its host address, allow sets per stage, logged rejects, dispatch last", () => {
  const script = lines(renderSandboxSetup(naming, sb, stage, [{ stage: "execution", address: "10.250.0.9", port: 443 }]));
  const t = "inet cleanroom";
  assert.deepEqual(script.filter((l) => l.includes("sb-abc123def456-pre") && l.startsWith("add rule")), [
    `add rule ${t} sb-abc123def456-pre meta nfproto != ipv4 drop`,
    `add rule ${t} sb-abc123def456-pre ip saddr != 10.213.0.2 limit rate 10/second burst 20 packets log prefix "cleanroom spoof abc123def456: " level info`,
    `add rule ${t} sb-abc123def456-pre ip saddr != 10.213.0.2 drop`,
  ]);
  assert.deepEqual(script.filter((l) => l.startsWith(`add rule ${t} sb-abc123def456-in`)), [
    `add rule ${t} sb-abc123def456-in ip daddr 10.213.0.1 tcp dport 8170 accept`,
    `add rule ${t} sb-abc123def456-in ip daddr 10.213.0.1 meta l4proto { tcp, udp } th dport 53 accept`,
    `add rule ${t} sb-abc123def456-in limit rate 10/second burst 20 packets log prefix "cleanroom host abc123def456: " level info`,
    `add rule ${t} sb-abc123def456-in meta l4proto tcp reject with tcp reset`,
    `add rule ${t} sb-abc123def456-in reject with icmpx admin-prohibited`,
  ]);
  assert.deepEqual(script.filter((l) => l.startsWith(`add rule ${t} sb-abc123def456-fwd`)), [
    `add rule ${t} sb-abc123def456-fwd ip daddr != @never_forward jump sb-abc123def456-stage`,
    `add rule ${t} sb-abc123def456-fwd limit rate 10/second burst 20 packets log prefix "cleanroom egress abc123def456: " level info`,
    `add rule ${t} sb-abc123def456-fwd meta l4proto tcp reject with tcp reset`,
    `add rule ${t} sb-abc123def456-fwd reject with icmpx admin-prohibited`,
  ]);
  assert.deepEqual(script.filter((l) => l.startsWith(`add rule ${t} sb-abc123def456-stage`)), [
    `add rule ${t} sb-abc123def456-stage ct state established,related ct mark 0x9f883265 accept`,
    `add rule ${t} sb-abc123def456-stage ct state new meta l4proto tcp ip daddr . tcp dport @allow-abc123def456-dependencies ct mark set 0x9f883265 accept`,
  ]);
  for (const s of sb.stages) assert.ok(script.includes(`add set ${t} allow-abc123def456-${s} { type ipv4_addr . inet_service ; flags timeout ; size 16384 ; }`));
  assert.ok(script.includes(`add element ${t} allow-abc123def456-execution { 10.250.0.9 . 443 }`), "IP literals never expire");
  // re-rendering (restore) replaces the chains' rules instead of doubling them
  assert.ok(script.indexOf(`flush chain ${t} sb-abc123def456-fwd`) < script.findIndex((l) => l.startsWith(`add rule ${t} sb-abc123def456-fwd`)));
  const dispatch = script.filter((l) => l.includes('{ "cr-abc123def456" : jump'));
  assert.equal(dispatch.length, 3);
  assert.ok(script.indexOf(dispatch[0]!) > script.findIndex((l) => l.startsWith(`add rule ${t} sb-abc123def456-stage`)), "dispatch only once the chains are complete");
  assert.ok(!script.some((l) => /cr-\*|never_forward \{|flush (set|map)/.test(l)), "nothing shared is touched");
});

test("stage switch: one flush-and-refill of the stage chain; allow-all accepts anything new; no stage accepts nothing new", () => {
  assert.deepEqual(lines(renderStageSwitch(naming, { ...stage, activeStage: "execution" })), [
    "flush chain inet cleanroom sb-abc123def456-stage",
    "add rule inet cleanroom sb-abc123def456-stage ct state established,related ct mark 0x9f883265 accept",
    "add rule inet cleanroom sb-abc123def456-stage ct state new meta l4proto tcp ip daddr . tcp dport @allow-abc123def456-execution ct mark set 0x9f883265 accept",
  ]);
  assert.deepEqual(lines(renderStageSwitch(naming, { ...stage, activeStage: null })).slice(1), [
    "add rule inet cleanroom sb-abc123def456-stage ct state established,related ct mark 0x9f883265 accept",
  ]);
  assert.equal(lines(renderStageSwitch(naming, { ...stage, allowAll: true }))[2], "add rule inet cleanroom sb-abc123def456-stage ct state new ct mark set 0x9f883265 accept");
  assert.throws(() => renderStageSwitch(naming, { ...stage, mark: 0x1234 }), /Cleanroom bit/);
  assert.equal(cleanroomMarkBit, 0x80000000);
});

test("element refresh renews the timeout atomically; removal deletes dispatch first and flushes before deleting", () => {
  assert.deepEqual(lines(renderElementRefresh(naming, sb.sandboxId, [{ stage: "dependencies", address: "10.250.0.2", port: 8080, timeoutS: 60 }])), [
    "add element inet cleanroom allow-abc123def456-dependencies { 10.250.0.2 . 8080 }",
    "delete element inet cleanroom allow-abc123def456-dependencies { 10.250.0.2 . 8080 }",
    "add element inet cleanroom allow-abc123def456-dependencies { 10.250.0.2 . 8080 timeout 60s }",
  ]);
  const removal = lines(
    renderSandboxRemoval(naming, sb.hostInterface, { chains: ["sb-abc123def456-fwd", "sb-abc123def456-stage"], sets: ["allow-abc123def456-execution"], dispatch: ["from_sandbox_fwd"] }),
  );
  assert.deepEqual(removal, [
    'delete element inet cleanroom from_sandbox_fwd { "cr-abc123def456" }',
    "flush chain inet cleanroom sb-abc123def456-fwd",
    "flush chain inet cleanroom sb-abc123def456-stage",
    "delete chain inet cleanroom sb-abc123def456-fwd",
    "delete chain inet cleanroom sb-abc123def456-stage",
    "delete set inet cleanroom allow-abc123def456-execution",
  ]);
  assert.equal(renderSandboxRemoval(naming, sb.hostInterface, { chains: [], sets: [], dispatch: [] }), "");
});

test("every rendered script is accepted by this host's nft (check mode, nothing committed)", { skip: process.getuid?.() !== 0 && "needs root" }, () => {
  const checkNaming = { table: `crcheck_${process.pid}`, interfacePrefix: "cr-" };
  const all = [
    renderTableSetup({ ...table, ...checkNaming }),
    renderSandboxSetup(checkNaming, sb, stage, [{ stage: "execution", address: "10.250.0.9", port: 443 }]),
    renderStageSwitch(checkNaming, { ...stage, allowAll: true }),
    renderElementRefresh(checkNaming, sb.sandboxId, [{ stage: "execution", address: "10.250.0.2", port: 8080, timeoutS: 30 }]),
  ].join("");
  execFileSync("nft", ["-c", "-f", "-"], { input: all, stdio: ["pipe", "pipe", "pipe"] });
});
