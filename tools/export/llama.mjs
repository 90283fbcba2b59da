// Drives llama.cpp (through node-llama-cpp's prebuilt CPU addon, installed
// by tools/setup/llamacpp.sh) on a GGUF file, for the export tests.
//
// Usage: node tools/export/llama.mjs < request.json > reply.json
//
// The request is a JSON list of jobs, answered by a list of replies in the
// same order (one process serves them all: starting llama.cpp takes
// seconds, a tiny model loads in milliseconds). A job is
//   {"model": "path/model.gguf",
//    "greedy": [[prompt ids], ...], "maxTokens": 16,   // greedy continuations
//    "stopAtEog": true,       // end a continuation at llama.cpp's end-of-generation tokens
//    "perplexity": [[ids], ...], // teacher-forced perplexity over these sequences
//    "scored": [[i, ...], ...],  // optional, per sequence: only the predictions of ids[i+1] count
//    "tokenize": ["text", ...]}  // llama.cpp's own tokenization (special tokens parsed)
// and the reply:
//   {"greedy": [{"tokens": [...], "firstLogits": [...], "eog": bool}], "perplexity": x,
//    "tokenize": [[ids], ...], "vocab": n, "eogTokens": [...]}
//
// Greedy decoding takes the argmax of the raw logits (lowest id on ties),
// the same rule as whet's Greedy, rather than llama.cpp's sampler chain.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const prefix = process.env.WHET_LLAMACPP_DIR || path.join(root, ".cache/npm-llama");
const require = createRequire(path.join(prefix, "package.json"));
let entry;
try {
  entry = require.resolve("node-llama-cpp");
} catch (e) {
  console.error(`llama.mjs: node-llama-cpp is not installed under ${prefix}; run tools/setup/llamacpp.sh`);
  process.exit(3);
}
const { getLlama, LlamaLogLevel } = await import(entry);

const jobs = JSON.parse(fs.readFileSync(0, "utf8"));
const llama = await getLlama({
  gpu: false,
  build: "never",
  usePrebuiltBinaries: true,
  skipDownload: true,
  logLevel: LlamaLogLevel.error,
  // One thread: the test models are tiny, and with two, ggml's threads
  // spin-wait for each other at every graph node; on a loaded 2-core CI
  // machine that spinning was 90% of the CPU time (36 s of user time
  // instead of 3 s for TestFamilyGGUFInLlamaCpp's jobs, same replies).
  maxThreads: 1,
});
let model;

function argmax(logits) {
  let best = -1, bestV = -Infinity;
  for (const [tok, v] of logits) {
    if (v > bestV || (v === bestV && tok < best)) { best = tok; bestV = v; }
  }
  return best;
}

function dense(logits, n) {
  const out = new Array(n).fill(null);
  for (const [tok, v] of logits) out[tok] = v;
  return out;
}

async function withSequence(n, fn) {
  const context = await model.createContext({ contextSize: Math.max(64, n), batchSize: Math.max(64, n), threads: 1 });
  try {
    return await fn(context.getSequence());
  } finally {
    await context.dispose();
  }
}

// evalLogits feeds ids and returns the logits after each position asked for.
async function evalLogits(seq, ids, wantAll) {
  const input = ids.map((id, i) => (wantAll || i === ids.length - 1) ? [id, { generateNext: { logits: true } }] : id);
  const res = await seq.controlledEvaluate(input);
  return res.map((r) => r?.next?.logits);
}

async function run(req) {
  model = await llama.loadModel({ modelPath: req.model, gpuLayers: 0 });
  const vocab = model.fileInfo.metadata?.tokenizer?.ggml?.tokens?.length ?? 0;
  const reply = { vocab, eogTokens: [] };
  for (let id = 0; id < vocab; id++) if (model.isEogToken(id)) reply.eogTokens.push(id);

  if (req.greedy) {
    reply.greedy = [];
    const maxTokens = req.maxTokens ?? 16;
    for (const prompt of req.greedy) {
      const out = await withSequence(prompt.length + maxTokens + 1, async (seq) => {
        let logits = (await evalLogits(seq, prompt, false))[prompt.length - 1];
        const firstLogits = dense(logits, vocab);
        const tokens = [];
        let eog = false;
        while (tokens.length < maxTokens) {
          const tok = argmax(logits);
          tokens.push(tok);
          if (req.stopAtEog && model.isEogToken(tok)) { eog = true; break; }
          if (tokens.length === maxTokens) break;
          logits = (await evalLogits(seq, [tok], false))[0];
        }
        return { tokens, firstLogits, eog };
      });
      reply.greedy.push(out);
    }
  }

  if (req.perplexity) {
    let nll = 0, count = 0;
    for (const [k, ids] of req.perplexity.entries()) {
      const scored = req.scored?.[k] ?? ids.slice(1).map((_, i) => i);
      await withSequence(ids.length + 1, async (seq) => {
        const all = await evalLogits(seq, ids, true);
        for (const i of scored) {
          const logits = all[i];
          let m = -Infinity;
          for (const v of logits.values()) m = Math.max(m, v);
          let sum = 0;
          for (const v of logits.values()) sum += Math.exp(v - m);
          nll -= logits.get(ids[i + 1]) - m - Math.log(sum);
          count++;
        }
      });
    }
    reply.perplexity = Math.exp(nll / count);
  }

  if (req.tokenize) {
    reply.tokenize = req.tokenize.map((t) => Array.from(model.tokenize(t, true)));
  }
  await model.dispose();
  return reply;
}

const replies = [];
for (const job of jobs) replies.push(await run(job));
await llama.dispose();
process.stdout.write(JSON.stringify(replies) + "\n");
