// Egress conformance on the linux backend (runc); the suite is in conformance-suite.ts.
import { conformanceSuite } from "./conformance-suite.ts";

conformanceSuite("linux");
