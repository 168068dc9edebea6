// Each object on stdin (a JSON array) through the upstream validators of @kubernetes-models/istio and
// @kubernetes-models/gateway-api (generated from the real CRDs), chosen by apiVersion and kind. Prints a
// JSON array: null for an object they accept, else the validator's error. argv[2]: the node_modules dir.
// Used by tests/helpers/mesh.py.
import { pathToFileURL } from "node:url";

const root = process.argv[2];
const models = {
  "networking.istio.io/v1/VirtualService": "@kubernetes-models/istio/networking.istio.io/v1/VirtualService.js",
  "gateway.networking.k8s.io/v1/HTTPRoute": "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute.js",
};
let text = "";
process.stdin.on("data", (d) => (text += d)).on("end", async () => {
  const out = [];
  for (const obj of JSON.parse(text)) {
    const file = models[`${obj.apiVersion}/${obj.kind}`];
    if (!file) {
      out.push(`no upstream model for ${obj.apiVersion} ${obj.kind}`);
      continue;
    }
    const module = await import(pathToFileURL(`${root}/${file}`).href);
    const Model = Object.values(module)[0];
    try {
      new Model(obj).validate();
      out.push(null);
    } catch (e) {
      out.push(String(e.message));
    }
  }
  process.stdout.write(JSON.stringify(out));
});
