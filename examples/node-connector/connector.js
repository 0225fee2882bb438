// A Lethe connector in Node.js, written against the wire format alone.
//
// It uses kafkajs and nothing of Lethe's, and follows docs/connectors.md
// ("The wire format (any language)" and "Signed messages"): it reads its
// system's commands in its own consumer group, checks their signatures,
// erases, confirms with acks=all, and commits a command's offset only once
// its answer is acknowledged. It takes single and batch commands.
//
// The data it erases is a JSON file mapping an identifier value to how
// many records the service holds under it, a stand-in for a real database:
//
//   LETHE_SYSTEM=shop LETHE_KAFKA_BROKERS=127.0.0.1:9092 \
//   SHOP_DATA=/tmp/shop.json node examples/node-connector/connector.js
//
// LETHE_CONNECTOR_KEY_ID and LETHE_CONNECTOR_SECRET (64 hex characters),
// when set, make it verify commands and sign confirmations.
//
// `node connector.js seed` stores two records under $LETHE_SEED_VALUE, for
// `lethe conformance --seed 'node connector.js seed'` (docs/connectors.md,
// "Conformance").
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');

const SYSTEM = process.env.LETHE_SYSTEM;
const BROKERS = (process.env.LETHE_KAFKA_BROKERS || '127.0.0.1:9092').split(',');
const TOPIC = process.env.LETHE_TOPIC || `lethe.erasure.${SYSTEM}`;
const DATA = process.env.SHOP_DATA;
const KEY_ID = process.env.LETHE_CONNECTOR_KEY_ID || '';
const SECRET = Buffer.from(process.env.LETHE_CONNECTOR_SECRET || '', 'hex');
const CONFIRMATIONS = 'lethe.erasure.confirmations';

const sign = (value) => crypto.createHmac('sha256', SECRET).update(value).digest('hex');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const now = () => new Date().toISOString();

// refusal says why a command must not be handled (its signature), or null.
function refusal(headers, value) {
  if (SECRET.length === 0) return null;
  const keyID = headers['lethe-key-id'];
  const sig = headers['lethe-signature'];
  if (keyID === undefined || sig === undefined) return 'unsigned: the command carries no signature';
  const want = Buffer.from(sign(value));
  const got = Buffer.from(sig);
  if (keyID !== KEY_ID || got.length !== want.length || !crypto.timingSafeEqual(got, want)) {
    return 'bad_signature: the signature does not hold';
  }
  return null;
}

const load = () => JSON.parse(fs.readFileSync(DATA, 'utf8'));

function save(data) {
  fs.writeFileSync(`${DATA}.tmp`, JSON.stringify(data));
  fs.renameSync(`${DATA}.tmp`, DATA);
}

// erase removes what the data file holds under the identifiers and
// returns how many records that was.
function erase(identifiers, dryRun) {
  const data = load();
  let records = 0;
  for (const id of identifiers) records += data[id.value] || 0;
  if (!dryRun) {
    for (const id of identifiers) delete data[id.value];
    save(data);
  }
  return records;
}

// seed stores two records under value, as the service's users would.
function seed(value) {
  const data = load();
  data[value] = (data[value] || 0) + 2;
  save(data);
}

const outcome = (records) => (records > 0 ? 'erased' : 'not_found');

function valid(cmd) {
  if (cmd === null || typeof cmd !== 'object' || cmd.system !== SYSTEM || !cmd.command_id) return false;
  if (cmd.schema === 'erasure.command.v1') return !!cmd.request_id && Array.isArray(cmd.identifiers);
  if (cmd.schema === 'erasure.batch_command.v1') return !!cmd.batch_id && Array.isArray(cmd.items);
  return false;
}

// answer is the confirmation of a valid command, single or batch.
function answer(cmd) {
  if (cmd.schema === 'erasure.command.v1') {
    const records = erase(cmd.identifiers, cmd.dry_run);
    return { key: cmd.request_id, conf: {
      schema: 'erasure.confirmation.v1', command_id: cmd.command_id, request_id: cmd.request_id,
      system: SYSTEM, outcome: outcome(records), records, detail: '', retryable: false, confirmed_at: now() } };
  }
  const items = cmd.items.map((item) => {
    const records = erase(item.identifiers, cmd.dry_run);
    return { item_id: item.item_id, outcome: outcome(records), records, detail: '', retryable: false };
  });
  return { key: cmd.batch_id, conf: {
    schema: 'erasure.batch_confirmation.v1', command_id: cmd.command_id, batch_id: cmd.batch_id,
    system: SYSTEM, items, confirmed_at: now() } };
}

async function main() {
  if (!SYSTEM) throw new Error('LETHE_SYSTEM is not set');
  const kafka = new Kafka({ clientId: `lethe-connector-${SYSTEM}`, brokers: BROKERS, logLevel: logLevel.WARN });
  const consumer = kafka.consumer({ groupId: `lethe-connector-${SYSTEM}` });
  const producer = kafka.producer();
  await producer.connect();
  await consumer.connect();
  await consumer.subscribe({ topic: TOPIC, fromBeginning: true });
  const answered = new Map(); // command_id -> answer; use a durable store in production

  const handle = async (message) => {
    const value = message.value || Buffer.alloc(0);
    const headers = {};
    for (const [k, v] of Object.entries(message.headers || {})) headers[k] = v === null ? '' : v.toString();
    let why = refusal(headers, value);
    let cmd = null;
    if (why === null) {
      try { cmd = JSON.parse(value.toString('utf8')); } catch (e) { why = 'malformed: not JSON'; }
    }
    if (why === null && !valid(cmd)) why = `malformed: not a command of the wire format for ${SYSTEM}`;
    if (why !== null) {
      // Park it with the reason, never its content.
      await producer.send({ topic: `${TOPIC}.dlq`, acks: -1, messages: [{ key: message.key, value,
        headers: { ...(message.headers || {}), 'lethe-dlq-reason': why } }] });
      return;
    }
    // A repeated command_id is the same command: the same answer.
    const a = answered.get(cmd.command_id) || answer(cmd);
    answered.set(cmd.command_id, a);
    const body = Buffer.from(JSON.stringify(a.conf));
    const out = { 'lethe-schema': a.conf.schema };
    if (SECRET.length > 0) Object.assign(out, { 'lethe-key-id': KEY_ID, 'lethe-signature': sign(body) });
    await producer.send({ topic: CONFIRMATIONS, acks: -1, messages: [{ key: a.key, value: body, headers: out }] });
  };

  let running = true;
  const stop = async () => {
    running = false;
    await consumer.disconnect();
    await producer.disconnect();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);

  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ topic, partition, message }) => {
      // Answered and committed, or tried again: never skipped.
      while (running) {
        try {
          await handle(message);
          await consumer.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
          return;
        } catch (e) {
          console.error(`offset ${message.offset} not answered yet: ${e.message}`);
          await sleep(1000);
        }
      }
    },
  });
  console.error(`connector ${SYSTEM} reading ${TOPIC}`);
}

if (process.argv[2] === 'seed') {
  seed(process.env.LETHE_SEED_VALUE);
} else {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
