// One flag evaluated for many evaluation contexts by flagd's own JavaScript core (FlagdCore: the
// evaluator flagd's JavaScript providers embed), on a flag file it parsed strictly (the upstream schema).
// stdin: {"document": <flag file>, "flag": <key>, "contexts": [<evaluation context>, ...]}. Prints a JSON
// array: each context's variant, or {"error": <code>} where its evaluation failed. Used by
// tests/routers/test_flagd.py.
const { FlagdCore, MemoryStorage } = require(process.argv[2]);
const logger = { debug() {}, info() {}, warn() {}, error() {} };
let text = "";
process.stdin.on("data", (d) => (text += d)).on("end", () => {
  const { document, flag, contexts } = JSON.parse(text);
  const storage = new MemoryStorage(logger);
  storage.setConfigurations(JSON.stringify(document), true);
  const core = new FlagdCore(storage, logger);
  const out = contexts.map((context) => {
    const details = core.resolveObjectEvaluation(flag, {}, context, logger);
    return details.errorCode ? { error: details.errorCode } : details.variant;
  });
  process.stdout.write(JSON.stringify(out));
});
