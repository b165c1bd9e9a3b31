// A sensormesh client in Node.js: what a fleet integration does, end to end, through Envoy.
//
// The messages and service descriptors in gen/ are generated from proto/ by `make proto`
// (protoc-gen-es, buf.gen.yaml); the calls go over gRPC (Connect's gRPC transport, HTTP/2).
// Run against `sensormesh up` from the repository root:
//
//   SENSORMESH_API_KEY=$(cat .sensormesh/admin.key) .venv/bin/node examples/node-client/client.mjs
//
// It registers a device, shows a field violation, opens a live feed, uploads readings with the
// device's client stream and uploads them again (duplicates counted, nothing stored twice),
// reads the latest values and the history (raw and downsampled), and prints one JSON summary.
// The test suite runs it against the real stack (tests/envoy/test_node_client.py).

import { randomBytes } from "node:crypto";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { durationFromMs, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { DeviceService } from "./gen/sensormesh/v1/device_pb.js";
import { IngestService } from "./gen/sensormesh/v1/ingest_pb.js";
import { QueryService } from "./gen/sensormesh/v1/query_pb.js";
import { BadRequestSchema } from "./gen/google/rpc/error_details_pb.js";

const baseUrl = process.env.SENSORMESH_URL ?? "http://127.0.0.1:8080";
const apiKey = process.env.SENSORMESH_API_KEY;
const READINGS = 20;

/** A transport sending `authorization: Bearer <token>`: an API key, or a device's token. */
function transportFor(token) {
  const bearer = (next) => (request) => {
    request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };
  return createGrpcTransport({ baseUrl, interceptors: [bearer] });
}

/** The field paths of a refusal's google.rpc.BadRequest (from grpc-status-details-bin). */
function violatedFields(error) {
  const refusal = ConnectError.from(error);
  return {
    code: Code[refusal.code],
    fields: refusal.findDetails(BadRequestSchema).flatMap((bad) => bad.fieldViolations.map((v) => v.field)),
  };
}

/** `count` soil-moisture readings, one a second, ending now, numbered from `first`. */
function readings(first, count, end) {
  return Array.from({ length: count }, (_, i) => ({
    sequence: BigInt(first + i),
    reading: {
      sensor: "soil",
      sampleTime: timestampFromDate(new Date(end.getTime() - (count - 1 - i) * 1000)),
      payload: { case: "measurement", value: { name: "soil_moisture", value: 30 + i / 4, unit: "%" } },
    },
  }));
}

/** The device's client stream: one batch, answered once the batch is committed. */
async function upload(ingest, deviceId, batch) {
  async function* batches() {
    yield {
      deviceId,
      firstSequence: batch[0].sequence,
      lastSequence: batch[batch.length - 1].sequence,
      readings: batch,
    };
  }
  const answer = await ingest.uploadReadings(batches());
  return {
    committed: Number(answer.committedSequence),
    accepted: Number(answer.acceptedCount),
    duplicates: Number(answer.duplicateCount),
  };
}

/** The first readings the live feed delivers, until `count` have come. */
async function firstLive(queries, deviceId, count, signal) {
  const seen = [];
  for await (const message of queries.watchReadings({ deviceId }, { signal })) {
    seen.push(...message.readings.map((r) => r.payload.value.value));
    if (seen.length >= count) break;
  }
  return seen.slice(0, count);
}

async function main() {
  if (!apiKey) throw new Error("set SENSORMESH_API_KEY (an operator or admin key)");
  const operator = transportFor(apiKey);
  const devices = createClient(DeviceService, operator);
  const queries = createClient(QueryService, operator);
  const deviceId = process.env.SENSORMESH_DEVICE_ID ?? `node-example-${randomBytes(3).toString("hex")}`;
  const summary = { deviceId };

  let refused;
  try {
    await devices.createDevice({ device: { deviceId: "Not_A_DNS_Label" } });
  } catch (error) {
    refused = violatedFields(error);
  }
  summary.badRequest = refused;

  const created = await devices.createDevice({
    device: { deviceId, displayName: "Node.js example", labels: { lang: "node" } },
  });
  summary.created = { deviceId: created.device.deviceId, labels: created.device.labels };
  const ingest = createClient(IngestService, transportFor(created.token));

  const stop = new AbortController();
  const live = firstLive(queries, deviceId, READINGS, stop.signal);
  await new Promise((resolve) => setTimeout(resolve, 500)); // the feed subscribes before the upload
  const end = new Date();
  const batch = readings(1, READINGS, end);
  summary.upload = await upload(ingest, deviceId, batch);
  summary.replay = await upload(ingest, deviceId, batch);
  summary.live = await Promise.race([
    live,
    new Promise((_, reject) => setTimeout(() => reject(new Error("no live readings in 10 s")), 10_000)),
  ]);
  stop.abort();

  const latest = await queries.getLatestReadings({ deviceId });
  summary.latest = latest.values.map((v) => ({
    sensor: v.sensor,
    quantity: v.quantity,
    unit: v.unit,
    value: v.value,
    sampleTime: timestampDate(v.sampleTime).toISOString(),
  }));

  const range = { deviceId, startTime: timestampFromDate(new Date(end.getTime() - 60_000)), endTime: timestampFromDate(new Date(end.getTime() + 1000)) };
  const raw = await queries.listReadings({ ...range, pageSize: 10 });
  summary.rawPages = [raw.series[0].points.length];
  let token = raw.nextPageToken;
  while (token) {
    const page = await queries.listReadings({ ...range, pageSize: 10, pageToken: token });
    summary.rawPages.push(page.series.reduce((n, s) => n + s.points.length, 0));
    token = page.nextPageToken;
  }
  const buckets = await queries.listReadings({ ...range, interval: durationFromMs(60_000) });
  summary.buckets = buckets.series[0].buckets.map((b) => ({ count: Number(b.count), min: b.min, max: b.max, mean: b.mean }));

  console.log(JSON.stringify(summary));
}

main().catch((error) => {
  console.error(error instanceof ConnectError ? `${Code[error.code]}: ${error.rawMessage}` : error);
  process.exit(1);
});
