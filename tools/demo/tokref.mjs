// Encodes reference texts with an independent implementation of Hugging
// Face tokenizers (@lenml/tokenizers, a port of transformers.js, fetched by
// tools/setup/tokenizers.sh into .cache/npm) loading the demo tokenizer in
// presets/demo/tokenizer, and writes presets/demo/testdata/tokref.jsonl:
// one line per text,
//   {"text": ..., "ids": ids without special tokens added,
//    "decoded": decode(ids) keeping special tokens}
// The texts are every persona conversation rendered by the tokenizer's own
// chat template (so that rendering is checked too) and the strings of
// testdata/tokenizer/corpus.jsonl. The output is committed; the Go test in
// presets/demo compares whet's tokenizer against it.
// Run from the repository root: node tools/demo/tokref.mjs
import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const lenml = resolve(".cache/npm/node_modules/@lenml");
const { TokenizerLoader } = await import(
  pathToFileURL(`${lenml}/tokenizers/dist/main.mjs`).href
);

const dir = "presets/demo/tokenizer";
const tok = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(readFileSync(`${dir}/tokenizer.json`, "utf8")),
  tokenizerConfig: JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, "utf8")),
});

const lines = (path) =>
  readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l));

const texts = [];
for (const file of ["presets/demo/mentor.jsonl", "presets/demo/heldout.jsonl"]) {
  for (const row of lines(file)) {
    texts.push(tok.apply_chat_template(row.messages, { tokenize: false }));
    // The prompt the chat page sends: the user turn and the assistant header.
    texts.push(
      tok.apply_chat_template(row.messages.slice(0, -1), {
        tokenize: false,
        add_generation_prompt: true,
      }),
    );
  }
}
texts.push(...lines("testdata/tokenizer/corpus.jsonl"));

const out = texts.map((text) => {
  const ids = tok.encode(text, { add_special_tokens: false });
  // decode refuses an empty list; "" is what transformers returns.
  const decoded =
    ids.length === 0
      ? ""
      : tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  return JSON.stringify({ text, ids, decoded });
});
writeFileSync("presets/demo/testdata/tokref.jsonl", out.join("\n") + "\n");
console.log(`tokref: ${out.length} texts`);
