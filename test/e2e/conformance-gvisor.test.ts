// Egress conformance on the gvisor backend (runsc), skipped where runsc is not installed; see conformance-suite.ts.
import { conformanceSuite } from "./conformance-suite.ts";

conformanceSuite("gvisor");
