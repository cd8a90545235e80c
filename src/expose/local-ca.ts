// The local certificate authority behind HTTPS exposure. Created once per user, kept on disk (key 0600), and
// name-constrained to cleanroom.localhost: trusting it lets a browser or curl reach exposed dev servers, and cannot
// vouch for any other name, even if its key leaked. Leaf certificates are issued in memory per host name on first use.
import "reflect-metadata"; // @peculiar/x509 resolves its ASN.1 types through tsyringe, which needs the polyfill
import { createPrivateKey, randomBytes, webcrypto } from "node:crypto";
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createSecureContext, type SecureContext } from "node:tls";
import * as x509 from "@peculiar/x509";
import { AsnConvert } from "@peculiar/asn1-schema";
import { GeneralName, GeneralSubtree, GeneralSubtrees, NameConstraints } from "@peculiar/asn1-x509";
import { exposureDir } from "../config/index.ts";
import { CleanroomError } from "../errors/index.ts";
import { EXPOSURE_DOMAIN, exposureHostProblem } from "../policy/index.ts";

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const CA_YEARS = 10;
const LEAF_DAYS = 30;
const DAY_MS = 86_400_000;
/** certificates start an hour early, so a client whose clock runs a little behind still accepts them */
const BACKDATE_MS = 3_600_000;
/** a wildcard route matches endlessly many names; issued contexts are kept for at most this many */
const MAX_CACHED_LEAVES = 256;
const NAME_CONSTRAINTS_OID = "2.5.29.30";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export class ExposureCa {
  /** PEM of the CA certificate: what a client trusts */
  readonly certPem: string;
  readonly certPath: string;
  readonly #cert: x509.X509Certificate;
  readonly #signingKey: CryptoKey;
  #leafKey: Promise<{ keys: CryptoKeyPair; pem: string }> | undefined;
  readonly #leaves = new Map<string, { context: Promise<SecureContext>; renewAfter: number }>();

  private constructor(certPem: string, certPath: string, cert: x509.X509Certificate, signingKey: CryptoKey) {
    this.certPem = certPem;
    this.certPath = certPath;
    this.#cert = cert;
    this.#signingKey = signingKey;
  }

  /** The CA in `dir`, made there first if there is none; two processes making it at once agree on one. */
  static async loadOrCreate(dir: string = exposureDir()): Promise<ExposureCa> {
    const caDir = join(dir, "ca");
    const existing = await ExposureCa.#load(caDir);
    if (existing) return existing;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const staging = await mkdtemp(join(dir, ".ca-"));
    try {
      const { certPem, keyPem } = await createAuthority();
      await writeFile(join(staging, "key.pem"), keyPem, { mode: 0o600 });
      await writeFile(join(staging, "cert.pem"), certPem, { mode: 0o644 });
      await rename(staging, caDir).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== "ENOTEMPTY" && err.code !== "EEXIST") throw err; // another process won: use its CA
      });
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
    const made = await ExposureCa.#load(caDir);
    if (!made) throw new CleanroomError("internal", `the exposure CA in ${caDir} vanished while it was made`);
    return made;
  }

  static async #load(caDir: string): Promise<ExposureCa | undefined> {
    const certPath = join(caDir, "cert.pem");
    let certPem: string;
    let keyPem: string;
    try {
      [certPem, keyPem] = await Promise.all([readFile(certPath, "utf8"), readFile(join(caDir, "key.pem"), "utf8")]);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new CleanroomError("failed_precondition", `cannot read the exposure CA in ${caDir}: ${(err as Error).message}`);
    }
    try {
      const cert = new x509.X509Certificate(certPem);
      if (cert.notAfter.getTime() < Date.now() + DAY_MS) throw new Error(`it expires ${cert.notAfter.toISOString()}`);
      const signingKey = await createPrivateKey(keyPem).toCryptoKey(ALGORITHM, false, ["sign"]);
      return new ExposureCa(certPem, certPath, cert, signingKey);
    } catch (err) {
      throw new CleanroomError("failed_precondition", `the exposure CA in ${caDir} cannot be used (${(err as Error).message}); \`cleanroom ca uninstall\` removes it and the next exposure makes a new one`);
    }
  }

  /** A TLS context answering as `host` (under cleanroom.localhost, wildcards not allowed), issued once and reused. */
  contextFor(host: string): Promise<SecureContext> {
    const name = host.toLowerCase();
    const problem = name.includes("*") ? "is a pattern, not a host" : exposureHostProblem(name);
    if (problem) return Promise.reject(new CleanroomError("invalid_argument", `the exposure CA does not issue for "${host}": it ${problem}`));
    const cached = this.#leaves.get(name);
    if (cached && cached.renewAfter > Date.now()) return cached.context;
    if (this.#leaves.size >= MAX_CACHED_LEAVES) this.#leaves.delete(this.#leaves.keys().next().value!);
    const context = this.#issue([name]).then(createSecureContext);
    context.catch(() => this.#leaves.delete(name));
    this.#leaves.set(name, { context, renewAfter: Date.now() + (LEAF_DAYS - 1) * DAY_MS });
    return context;
  }

  /** Key and certificate for cleanroom.localhost and *.cleanroom.localhost: what clients without SNI are shown. */
  fallbackCredentials(): Promise<{ key: string; cert: string }> {
    return this.#issue([EXPOSURE_DOMAIN, `*.${EXPOSURE_DOMAIN}`]);
  }

  async #issue(names: string[]): Promise<{ key: string; cert: string }> {
    this.#leafKey ??= (async () => {
      const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]) as CryptoKeyPair;
      return { keys, pem: toPem("PRIVATE KEY", await webcrypto.subtle.exportKey("pkcs8", keys.privateKey)) };
    })();
    const leafKey = await this.#leafKey;
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serialNumber(),
      subject: `CN=${names[0]}`,
      issuer: this.#cert.subject,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(Math.min(now + LEAF_DAYS * DAY_MS, this.#cert.notAfter.getTime())),
      publicKey: leafKey.keys.publicKey,
      signingKey: this.#signingKey,
      signingAlgorithm: ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension(names.map((value) => ({ type: "dns" as const, value }))),
        await x509.AuthorityKeyIdentifierExtension.create(this.#cert),
      ],
    });
    return { key: leafKey.pem, cert: cert.toString("pem") };
  }
}

async function createAuthority(): Promise<{ certPem: string; keyPem: string }> {
  const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]) as CryptoKeyPair;
  const permitted = new NameConstraints({
    permittedSubtrees: new GeneralSubtrees([new GeneralSubtree({ base: new GeneralName({ dNSName: EXPOSURE_DOMAIN }) })]),
  });
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: `CN=Cleanroom local exposure CA ${randomBytes(4).toString("hex")}, O=Cleanroom`,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + CA_YEARS * 365 * DAY_MS),
    keys,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.Extension(NAME_CONSTRAINTS_OID, true, AsnConvert.serialize(permitted)),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString("pem"), keyPem: toPem("PRIVATE KEY", await webcrypto.subtle.exportKey("pkcs8", keys.privateKey)) };
}

/** 128 random bits, positive as DER integers must be (RFC 5280 §4.1.2.2). */
function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return bytes.toString("hex");
}

function toPem(label: string, der: ArrayBuffer): string {
  const base64 = Buffer.from(der).toString("base64").replace(/.{64}/g, "$&\n");
  return `-----BEGIN ${label}-----\n${base64}${base64.endsWith("\n") ? "" : "\n"}-----END ${label}-----\n`;
}
