// Each flag file on stdin (a JSON array of documents) through flagd-core's own parser, strictly: the
// upstream flagd schema (flags and targeting, precompiled into the package), then its flag construction.
// Prints a JSON array: null for a document it accepts, else its error. Used by tests/routers/test_flagd.py.
const { MemoryStorage } = require(process.argv[2]);
const logger = { debug() {}, info() {}, warn() {}, error() {} };
let text = "";
process.stdin.on("data", (d) => (text += d)).on("end", () => {
  const out = JSON.parse(text).map((doc) => {
    try {
      new MemoryStorage(logger).setConfigurations(JSON.stringify(doc), true);
      return null;
    } catch (e) {
      return String(e.message);
    }
  });
  process.stdout.write(JSON.stringify(out));
});
