// Calls one operation on cofferd through the AWS SDK for JavaScript v3: KMS (@aws-sdk/client-kms),
// for the operations Debian's AWS CLI and boto3 predate (RotateKeyOnDemand, ListKeyRotations,
// RotationPeriodInDays), and Secrets Manager (@aws-sdk/client-secrets-manager), the client most
// services read their secrets with. The integration tests run it:
//
//   node sdk_call.js SERVICE ENDPOINT CA_BUNDLE OPERATION '{"KeyId": "..."}'
//
// SERVICE is kms or secretsmanager, with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and
// AWS_REGION, default us-east-1) in the environment. Blob members (CiphertextBlob, Plaintext,
// SecretBinary) are given and printed as base64 strings.
// It prints one JSON line: {"ok": true, "output": {...}} or
// {"ok": false, "name": "<exception>", "message": "...", "status": <http status>}, and exits 0
// either way once cofferd answered (2 for a usage error or no answer at all).
"use strict";

const fs = require("fs");
const https = require("https");
const SERVICES = {
  kms: { module: "@aws-sdk/client-kms", client: "KMSClient" },
  secretsmanager: { module: "@aws-sdk/client-secrets-manager", client: "SecretsManagerClient" },
};

const BLOBS = ["CiphertextBlob", "Plaintext", "SecretBinary"];

function decodeBlobs(input) {
  for (const name of BLOBS) {
    if (typeof input[name] === "string") {
      input[name] = new Uint8Array(Buffer.from(input[name], "base64"));
    }
  }
  return input;
}

function encodeBlobs(key, value) {
  return value instanceof Uint8Array ? Buffer.from(value).toString("base64") : value;
}

async function main() {
  const [service, endpoint, ca, operation, input] = process.argv.slice(2);
  if (!SERVICES[service] || !endpoint || !ca || !operation) {
    console.error("usage: node sdk_call.js kms|secretsmanager ENDPOINT CA_BUNDLE OPERATION [JSON_INPUT]");
    return 2;
  }
  const sdk = require(SERVICES[service].module);
  const Command = sdk[operation + "Command"];
  if (typeof Command !== "function") {
    console.error("unknown operation " + operation);
    return 2;
  }
  const client = new sdk[SERVICES[service].client]({
    endpoint,
    region: process.env.AWS_REGION || "us-east-1",
    credentials: {
      accessKeyId: process.env.AWS_ACCESS_KEY_ID,
      secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY,
    },
    maxAttempts: 1,
    // Trust cofferd's own CA, as the CLI's AWS_CA_BUNDLE does.
    requestHandler: { httpsAgent: new https.Agent({ ca: fs.readFileSync(ca) }) },
  });
  try {
    const out = await client.send(new Command(decodeBlobs(input ? JSON.parse(input) : {})));
    delete out.$metadata;
    console.log(JSON.stringify({ ok: true, output: out }, encodeBlobs));
  } catch (e) {
    if (!e.$metadata || e.$metadata.httpStatusCode === undefined) {
      console.error(String(e && e.stack ? e.stack : e));
      return 2;
    }
    console.log(JSON.stringify({ ok: false, name: e.name, message: e.message, status: e.$metadata.httpStatusCode }));
  } finally {
    client.destroy();
  }
  return 0;
}

main().then((code) => process.exit(code));
