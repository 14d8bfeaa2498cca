// An example monitoring agent in Node.js: reads events (JSON array) on stdin, streams them
// to MonitoringService.StreamEvents in messages of --batch events, and prints the
// server's answer as JSON. Usage:
//   node agent.js --address 127.0.0.1:50051 --token JWT [--batch 50] < events.json
// Each event: {event_id, attempt_id, event_type, occur_time: {seconds, nanos}, ...}.
"use strict";

const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? process.argv[at + 1] : fallback;
}

const protos = path.resolve(__dirname, "../../../protos");
const definition = protoLoader.loadSync("veritas/v1/monitoring.proto", {
  includeDirs: [protos],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
});
const veritas = grpc.loadPackageDefinition(definition).veritas.v1;

function readStdin() {
  return new Promise((resolve) => {
    let text = "";
    process.stdin.setEncoding("utf8");
    process.stdin.on("data", (chunk) => (text += chunk));
    process.stdin.on("end", () => resolve(JSON.parse(text)));
  });
}

async function main() {
  const events = await readStdin();
  const batch = Number(option("batch", "50"));
  const client = new veritas.MonitoringService(
    option("address", "127.0.0.1:50051"),
    grpc.credentials.createInsecure(),
  );
  const metadata = new grpc.Metadata();
  metadata.add("authorization", `Bearer ${option("token", "")}`);
  const call = client.StreamEvents(metadata, (error, response) => {
    if (error) {
      console.error(JSON.stringify({ code: error.code, details: error.details }));
      process.exit(1);
    }
    console.log(JSON.stringify(response));
    client.close();
  });
  for (let start = 0; start < events.length; start += batch) {
    call.write({ events: events.slice(start, start + batch) });
  }
  call.end();
}

main();
