// Drives a real Node analytics SDK (posthog-node or @segment/analytics-node) through a script
// of calls against a collector: tests/capture_script.py writes the spec on stdin and reads one
// JSON lines back. Spec: {sdk, host, key, options, calls: [[method, args], ...]}; an argument
// named "timestamp" is an ISO string turned into a Date. Each request the SDK makes is a line
// {"status": n} as soon as it is answered (global fetch, observed, not changed); the last line
// is {"errors": [...]}, the errors the SDK reported.
"use strict";

const chunks = [];
process.stdin.on("data", (c) => chunks.push(c));
process.stdin.on("end", () => {
  main(JSON.parse(Buffer.concat(chunks).toString("utf8"))).then(
    (out) => {
      process.stdout.write(JSON.stringify({ errors: out }) + "\n");
      process.exit(0);
    },
    (err) => {
      process.stderr.write(String((err && err.stack) || err) + "\n");
      process.exit(1);
    },
  );
});

async function main(spec) {
  const errors = [];
  const realFetch = globalThis.fetch;
  globalThis.fetch = async (...args) => {
    const res = await realFetch(...args);
    process.stdout.write(JSON.stringify({ status: res.status }) + "\n");
    return res;
  };
  const args = (a) => (a.timestamp ? { ...a, timestamp: new Date(a.timestamp) } : a);
  if (spec.sdk === "posthog") {
    const { PostHog } = require("posthog-node");
    const client = new PostHog(spec.key, { host: spec.host, ...spec.options });
    client.on("error", (e) => errors.push(String(e && e.message)));
    for (const [method, a] of spec.calls) client[method](args(a));
    await client.shutdown(120000);
  } else if (spec.sdk === "segment") {
    const { Analytics } = require("@segment/analytics-node");
    const client = new Analytics({ writeKey: spec.key, host: spec.host, ...spec.options });
    client.on("error", (e) => errors.push(String((e && e.reason) || e)));
    for (const [method, a] of spec.calls) client[method](args(a));
    await client.closeAndFlush({ timeout: 120000 });
  } else {
    throw new Error("unknown sdk " + spec.sdk);
  }
  return errors;
}
