// A sensormesh client with @grpc/grpc-js and @grpc/proto-loader: no generated code, only the
// repository's .proto sources, loaded at run time, through Envoy.
//
// It loads proto/sensormesh/v1/ (the device, ingest and query services) with the vendored
// third-party protos (third_party/proto/: buf/validate, google/api, google/rpc), so a clone
// of the repository is all it needs. Run against `sensormesh up` from the repository root:
//
//   SENSORMESH_API_KEY=$(cat .sensormesh/admin.key) .venv/bin/node examples/node-client/grpc-js.mjs
//
// It shows a field violation decoded from the `grpc-status-details-bin` trailer
// (google.rpc.Status, then its google.rpc.BadRequest), registers a device with labels, reads it
// back and prints one JSON line:
//
//   {"badRequest": {"code": "INVALID_ARGUMENT", "fields": ["device.device_id"]},
//    "created": {"deviceId": ..., "labels": {"lang": "grpc-js"}},
//    "fetched": {"deviceId": ..., "labels": {"lang": "grpc-js"}}}
//
// The test suite runs it against the real stack (tests/envoy/test_node_client.py).

import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const baseUrl = new URL(process.env.SENSORMESH_URL ?? "http://127.0.0.1:8080");
const apiKey = process.env.SENSORMESH_API_KEY;
const repository = fileURLToPath(new URL("../../", import.meta.url));

// The only option needed is includeDirs: the files import each other and buf/validate,
// google/api and google/rpc by their paths from proto/ and third_party/proto/; without both
// directories loading fails with ENOENT. Fields are lowerCamelCase by default (keepCase: true
// would make them snake_case, and camelCase input would then be dropped without a word), and
// map fields such as labels are plain objects: the "array expected" failure comes from loading
// the descriptor set (loadFileDescriptorSetFromBuffer), not the .proto sources. longs, enums and
// defaults only change how messages look (Long objects, enum numbers, unset fields absent), and
// this script reads no int64 or enum field.
const definitions = await protoLoader.load(
  [
    "sensormesh/v1/device.proto",
    "sensormesh/v1/ingest.proto",
    "sensormesh/v1/query.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
  ],
  { includeDirs: [`${repository}proto`, `${repository}third_party/proto`] },
);
const { sensormesh } = grpc.loadPackageDefinition(definitions);
const Status = definitions["google.rpc.Status"];
const BadRequest = definitions["google.rpc.BadRequest"];

/** grpc-js takes `host:port`, not a URL; TLS for https, plaintext HTTP/2 for http. */
function channel(url) {
  const secure = url.protocol === "https:";
  const target = `${url.hostname}:${url.port || (secure ? 443 : 80)}`;
  return [target, secure ? grpc.credentials.createSsl() : grpc.credentials.createInsecure()];
}

/** A unary call as a promise, carrying `authorization: Bearer <key>`. */
function call(client, method, request) {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${apiKey}`);
  return new Promise((resolve, reject) =>
    client[method](request, metadata, (error, response) => (error ? reject(error) : resolve(response))),
  );
}

/** The field paths of a refusal's google.rpc.BadRequest (from grpc-status-details-bin). */
function violatedFields(error) {
  const [details] = error.metadata?.get("grpc-status-details-bin") ?? [];
  if (!details) throw error;
  const status = Status.deserialize(details);
  return {
    code: grpc.status[status.code],
    // google.protobuf.Any comes from protobufjs's bundled copy, which keeps its snake_case names.
    fields: (status.details ?? [])
      .filter((any) => any.type_url === "type.googleapis.com/google.rpc.BadRequest")
      .flatMap((any) => (BadRequest.deserialize(any.value).fieldViolations ?? []).map((v) => v.field)),
  };
}

async function main() {
  if (!apiKey) throw new Error("set SENSORMESH_API_KEY (an operator or admin key)");
  const devices = new sensormesh.v1.DeviceService(...channel(baseUrl));
  const deviceId = process.env.SENSORMESH_DEVICE_ID ?? `grpc-js-example-${randomBytes(3).toString("hex")}`;
  const summary = {};
  try {
    try {
      await call(devices, "createDevice", { device: { deviceId: "Not_A_DNS_Label" } });
    } catch (error) {
      summary.badRequest = violatedFields(error);
    }

    const created = await call(devices, "createDevice", {
      device: { deviceId, displayName: "grpc-js example", labels: { lang: "grpc-js" } },
    });
    summary.created = { deviceId: created.device.deviceId, labels: created.device.labels };

    const fetched = await call(devices, "getDevice", { deviceId });
    summary.fetched = { deviceId: fetched.device.deviceId, labels: fetched.device.labels };
  } finally {
    devices.close();
  }
  console.log(JSON.stringify(summary));
}

main().catch((error) => {
  console.error(error.code !== undefined ? `${grpc.status[error.code]}: ${error.details}` : error);
  process.exit(1);
});
